# shellcheck shell=bash
# What the lazy-volume benches (lazy.sh, lazy_set.sh, lazy_seq.sh, lazy_pg.sh) share. Sourced,
# with ROOT set to the top of the repository.

# DVOL := $1, else build-bench's dvol, else build's; made absolute. Stops the bench when there is none.
lazy_find_dvol() {
    DVOL=${1:-}
    [ -n "$DVOL" ] || { [ -x "$ROOT/build-bench/cli/dvol" ] && DVOL=$ROOT/build-bench/cli/dvol; }
    [ -n "$DVOL" ] || DVOL=$ROOT/build/cli/dvol
    [ -x "$DVOL" ] || { echo "no dvol at $DVOL: build it first" >&2; exit 1; }
    DVOL=$(cd "$(dirname "$DVOL")" && pwd)/$(basename "$DVOL")
}

# 1 GiB of random bytes (always the same ones) into file $1.
lazy_random_gib() {
    python3 - "$1" <<'PY'
import random, sys
r = random.Random(1)
with open(sys.argv[1], "wb") as f:
    for _ in range(256):
        f.write(r.randbytes(4 << 20))
PY
}

# Starts a Ceph RGW (bluestore, $2 MiB) under $1 with bucket $3, sets RGW_UP=1 and the client's
# environment. Stops the bench when it cannot.
lazy_rgw_up() {
    # shellcheck source=tests/e2e/rgw.sh
    . "$ROOT/tests/e2e/rgw.sh"
    export RGW_STORE=bluestore RGW_SIZE=$(($2 * 1024 * 1024))
    rgw_start "$1" || { echo "rgw: cannot start ($RGW_SKIP_REASON)"; exit 1; }
    # shellcheck disable=SC2034  # read by the sourcing bench's cleanup
    RGW_UP=1
    rgw_client_env
    rgw_make_bucket "$3" || { echo "$RGW_SKIP_REASON" >&2; exit 1; }
}
