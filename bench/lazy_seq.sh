#!/usr/bin/env bash
# Issue 16's "lazy cold sequential read of a 1 GiB file >= 200 MB/s", binaries alternated: the
# 8 GiB set's 1 GiB file (bench.py's synthetic tree, --size full; or a 1 GiB random file when the
# set is not there) committed once and pushed once to a Ceph RGW (bluestore, as bench/lazy_set.sh),
# then for each round and each binary in turn, in a fresh store:
#   - a lazy clone, the page cache dropped, `cat` of the file (MB/s, the remote's requests and
#     bytes from the mount's $DVOL_TEST_FETCH_LOG, the mount process's user and system CPU, and
#     the CPU of the gateway and the OSD, which share the machine),
#   - the same read from the disk cache by a new mount process, the page cache dropped first,
# with the load average before each read, since the machine may be shared.
#
#   bench/lazy_seq.sh DVOL [DVOL...]      (ROUNDS=3 by default; needs root and FUSE)
#
# The set is looked for under $BENCH_DIR/data (default /var/tmp/dvol-bench; bench/lazy_set.sh
# and bench/run.sh make it); everything else goes under $BENCH_DIR/lazy-seq, deleted after.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lazy_lib.sh
. "$ROOT/bench/lazy_lib.sh"
[ $# -ge 1 ] || { echo "usage: bench/lazy_seq.sh DVOL [DVOL...]" >&2; exit 2; }
BINS=()
for b in "$@"; do
    [ -x "$b" ] || { echo "no dvol at $b" >&2; exit 1; }
    BINS+=("$(cd "$(dirname "$b")" && pwd)/$(basename "$b")")
done
[ -c /dev/fuse ] || { echo "no /dev/fuse: lazy volumes need FUSE" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "starting Ceph and dropping the page cache need root" >&2; exit 1; }
ROUNDS=${ROUNDS:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/dvol-bench}
W=$BENCH_DIR/lazy-seq
rm -rf "$W"
mkdir -p "$W"
RGW_UP=0
cleanup() {
    for s in "$W"/lazy-*; do [ -d "$s" ] && DVOL_ROOT=$s "${BINS[0]}" --disable-docker-integration rm -f v >/dev/null 2>&1; done
    [ "$RGW_UP" = 1 ] && rgw_stop "$W/rgw"
    rm -rf "$W"
}
trap cleanup EXIT
load() { uptime | sed 's/.*load average: //'; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# user and system CPU seconds of process $1
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f %.2f", $14 / hz, $15 / hz }' "/proc/$1/stat"; }
# user + system CPU seconds of the gateway and the OSD together
ceph_cpu() {
    local t=0 p
    for p in "$(cat "$W/rgw/run/client.rgw.a.pid" 2>/dev/null)" "$(cat "$W/rgw/run/osd.0.pid" 2>/dev/null)"; do
        [ -n "$p" ] && t=$(python3 -c "a = '$(cpu "$p")'.split(); print($t + float(a[0]) + float(a[1]))")
    done
    echo "$t"
}

BIG=$(find "$BENCH_DIR/data/synth-full/s1" -type f -size 1048576k 2>/dev/null | sort | head -n 1)
export DVOL_ROOT=$W/src
d0() { "${BINS[0]}" --disable-docker-integration "$@"; }
d0 init v >/dev/null
if [ -n "$BIG" ]; then
    echo "the file: $BIG (the 8 GiB set's 1 GiB file)"
    cp "$BIG" "$(d0 path v)/big"
else
    echo "the file: 1 GiB of random bytes (no 8 GiB set under $BENCH_DIR/data)"
    lazy_random_gib "$(d0 path v)/big"
fi
d0 commit -m big v >/dev/null || { echo "commit failed"; exit 1; }

lazy_rgw_up "$W/rgw" $((4 * 1024)) lazyseq
d0 push s3://lazyseq/x v >/dev/null || { echo "push failed"; exit 1; }

printf '| round | binary | load before | cold MB/s | requests, MiB fetched | mount CPU user + sys s | RGW + OSD CPU s | disk cache MB/s (new mount) |\n'
printf '|---|---|---|---:|---|---|---:|---:|\n'
for r in $(seq 1 "$ROUNDS"); do
    for i in "${!BINS[@]}"; do
        b=${BINS[$i]}
        d() { "$b" --disable-docker-integration "$@"; }
        export DVOL_ROOT=$W/lazy-$i DVOL_TEST_FETCH_LOG=$W/fetch-$i.log
        d clone --lazy --cache-size 2G s3://lazyseq/x v >/dev/null || { echo "clone failed ($b)"; exit 1; }
        live=$(d path v)
        pid=$(head -n 1 "$DVOL_ROOT/volumes/v/cache/mount.lock")
        : >"$DVOL_TEST_FETCH_LOG"
        cold
        l=$(load)
        c0=$(cpu "$pid")
        g0=$(ceph_cpu)
        t0=$EPOCHREALTIME; cat "$live/big" >/dev/null; t1=$EPOCHREALTIME
        c1=$(cpu "$pid")
        g1=$(ceph_cpu)
        mbs=$(python3 -c "print('%.0f' % (2**30 / ($t1 - $t0) / 1e6))")
        req=$(awk '$1 == "read" { s += $5; n++ } END { printf "%d, %.0f", n, s / 1048576 }' "$DVOL_TEST_FETCH_LOG")
        used=$(python3 -c "a='$c0'.split(); b='$c1'.split(); print('%.2f + %.2f' % (float(b[0])-float(a[0]), float(b[1])-float(a[1])))")
        d umount "$live" && d mount v >/dev/null
        cold
        t0=$EPOCHREALTIME; cat "$live/big" >/dev/null; t1=$EPOCHREALTIME
        disk=$(python3 -c "print('%.0f' % (2**30 / ($t1 - $t0) / 1e6))")
        printf '| %d | %s | %s | %s | %s | %s | %.2f | %s |\n' "$r" "$b" "$l" "$mbs" "$req" "$used" "$(python3 -c "print($g1 - $g0)")" "$disk"
        d rm -f v >/dev/null
        rm -rf "$DVOL_ROOT"
    done
done
echo "(load at the end: $(load))"
