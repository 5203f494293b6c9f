#!/usr/bin/env bash
# Lazy volumes (dvol clone --lazy), issue 16's figures: a 1 GiB file of random data (fixed seed)
# pushed to a directory remote and, as root when Ceph can be started (tests/e2e/rgw.sh), to a
# Ceph RGW; then, for each, a lazy clone into a fresh store and
#   - the first byte of three random 4 KiB reads (POSIX_FADV_RANDOM: no kernel readahead),
#   - a cold sequential read of the whole file (MB/s) and the bytes fetched for it,
#   - the same read from the disk cache by a new mount process, then from the page cache,
#   - the mount process's peak RSS (VmHWM),
# with `uptime` before and after, since the machine may be shared.
#
#   bench/lazy.sh [DVOL]      (default: build-bench/cli/dvol, else build/cli/dvol)
#
# Everything is made under $BENCH_DIR/lazy (default /var/tmp/dvol-bench/lazy) and deleted after.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lazy_lib.sh
. "$ROOT/bench/lazy_lib.sh"
lazy_find_dvol "${1:-}"
[ -c /dev/fuse ] || { echo "no /dev/fuse: lazy volumes need FUSE" >&2; exit 1; }
W=${BENCH_DIR:-/var/tmp/dvol-bench}/lazy
rm -rf "$W"
mkdir -p "$W"
d() { "$DVOL" --disable-docker-integration "$@"; }
RGW_UP=0
cleanup() {
    for s in "$W"/lazy-*; do [ -d "$s" ] && DVOL_ROOT=$s d rm -f v >/dev/null 2>&1; done
    [ "$RGW_UP" = 1 ] && rgw_stop "$W/rgw"
    rm -rf "$W"
}
trap cleanup EXIT

echo "dvol: $DVOL"
export DVOL_ROOT=$W/src
d init v >/dev/null
lazy_random_gib "$(d path v)/big"
d commit -m big v >/dev/null

measure() { # NAME URL
    local name=$1 url=$2 live pid t0 t1
    export DVOL_ROOT=$W/lazy-$name DVOL_TEST_FETCH_LOG=$W/fetch-$name.log
    echo "## $name ($(uptime | sed 's/.*load/load/'))"
    d clone --lazy --cache-size 2G "$url" v >/dev/null || { echo "clone failed"; return 1; }
    live=$(d path v)
    python3 - "$live/big" <<'EOF'
import os, random, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
for seed in (5, 6, 7):
    off = random.Random(seed).randrange(0, (1 << 30) - 4096)
    t = time.perf_counter()
    os.pread(fd, 4096, off)
    print("first byte of a random 4 KiB read: %.1f ms" % ((time.perf_counter() - t) * 1000))
EOF
    : >"$DVOL_TEST_FETCH_LOG"
    pid=$(head -n 1 "$DVOL_ROOT/volumes/v/cache/mount.lock")
    t0=$EPOCHREALTIME; cat "$live/big" >/dev/null; t1=$EPOCHREALTIME
    echo "sequential read, cold: $(python3 -c "print('%.0f' % (2**30 / ($t1 - $t0) / 1e6))") MB/s," \
        "$(awk '$1 == "read" { s += $5; n++ } END { printf "%.1f MiB in %d requests", s / 1048576, n }' "$DVOL_TEST_FETCH_LOG")"
    echo "mount process peak RSS: $(awk '/VmHWM/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$pid/status")"
    d umount "$live" && d mount v >/dev/null
    t0=$EPOCHREALTIME; cat "$live/big" >/dev/null; t1=$EPOCHREALTIME
    echo "sequential read, disk cache (new mount process): $(python3 -c "print('%.0f' % (2**30 / ($t1 - $t0) / 1e6))") MB/s"
    t0=$EPOCHREALTIME; cat "$live/big" >/dev/null; t1=$EPOCHREALTIME
    echo "sequential read, page cache: $(python3 -c "print('%.0f' % (2**30 / ($t1 - $t0) / 1e6))") MB/s"
    echo "($(uptime | sed 's/.*load/load/'))"
    d rm -f v >/dev/null
}

mkdir -p "$W/remote"
DVOL_ROOT=$W/src d push "$W/remote" v >/dev/null
measure dir "$W/remote"

if [ "$(id -u)" = 0 ]; then
    # shellcheck source=tests/e2e/rgw.sh
    . "$ROOT/tests/e2e/rgw.sh"
    export RGW_SIZE=$((3 * 1024 * 1024 * 1024))
    if rgw_start "$W/rgw"; then
        RGW_UP=1
        rgw_client_env
        rgw_make_bucket lazybench || { echo "$RGW_SKIP_REASON" >&2; exit 1; }
        DVOL_ROOT=$W/src d push s3://lazybench/x v >/dev/null
        measure rgw s3://lazybench/x
    else
        echo "## rgw: skipped ($RGW_SKIP_REASON)"
    fi
else
    echo "## rgw: skipped (starting Ceph needs root)"
fi
