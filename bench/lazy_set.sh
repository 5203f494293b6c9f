#!/usr/bin/env bash
# Issue 16's bench of a lazy clone of the 8 GiB set (bench.py's synthetic tree, --size full:
# 2,000 files of 4 KiB to 1 GiB, half random bytes, half text) from a Ceph RGW:
#   - the first byte of random 4 KiB reads (three files of 1 MiB or more, at random offsets,
#     POSIX_FADV_RANDOM)                                                         target < 100 ms
#   - reading 1% of the volume at random (1 MiB reads at random offsets of files drawn by
#     size, POSIX_FADV_RANDOM): the bytes fetched, against the volume's          target < 2%
#   - a cold sequential read of the set's 1 GiB file                            target >= 200 MB/s
#   - the mount process's peak RSS (VmHWM)                                       target < 256 MiB
#   - the chunk cache (--cache-size 512M, less than what is read) sampled every 0.1 s while
#     all of the above runs: never above the bound + one chunk (4 MiB)
# with `uptime` before and after, since the machine may be shared. Needs root (Ceph) and FUSE.
#
#   bench/lazy_set.sh [DVOL]      (default: build-bench/cli/dvol, else build/cli/dvol)
#
# The data set is made under $BENCH_DIR/data (default /var/tmp/dvol-bench) by bench.py's own
# generator, once (bench/run.sh's runs reuse it, and this reuses theirs); everything else under
# $BENCH_DIR/lazy-set, deleted after.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lazy_lib.sh
. "$ROOT/bench/lazy_lib.sh"
lazy_find_dvol "${1:-}"
[ -c /dev/fuse ] || { echo "no /dev/fuse: lazy volumes need FUSE" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "starting Ceph needs root" >&2; exit 1; }
BENCH_DIR=${BENCH_DIR:-/var/tmp/dvol-bench}
W=$BENCH_DIR/lazy-set
MIB=$((1024 * 1024))
BOUND=$((512 * MIB))
rm -rf "$W"
mkdir -p "$W"
d() { "$DVOL" --disable-docker-integration "$@"; }
RGW_UP=0
SAMPLER=""
cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
    [ -d "$W/lazy" ] && DVOL_ROOT=$W/lazy d rm -f v >/dev/null 2>&1
    [ "$RGW_UP" = 1 ] && rgw_stop "$W/rgw"
    rm -rf "$W"
}
trap cleanup EXIT
load() { uptime | sed 's/.*load/load/'; }

echo "dvol: $DVOL"
echo "($(load))"
python3 - "$ROOT/bench" "$BENCH_DIR" <<'EOF' || exit 1
import sys
sys.path.insert(0, sys.argv[1])
import bench
bench.prepare(sys.argv[2], "synth", "full", bench.SIZES["full"])
EOF
SET=$BENCH_DIR/data/synth-full/s1
TOTAL=$(du -sb --apparent-size "$SET" | cut -f1)
BIG=$(find "$SET" -type f -size 1048576k | sort | head -n 1)
echo "the set: $(find "$SET" -type f | wc -l) files, $((TOTAL / MIB)) MiB; its 1 GiB file: ${BIG#"$SET"/}"

export DVOL_ROOT=$W/src
d init v >/dev/null
t0=$EPOCHREALTIME
cp -a "$SET/." "$(d path v)/"
d commit -m set v >/dev/null || { echo "commit failed"; exit 1; }
echo "source store: copied and committed in $(python3 -c "print('%.0f' % ($EPOCHREALTIME - $t0))") s"

lazy_rgw_up "$W/rgw" $((32 * 1024)) lazyset
t0=$EPOCHREALTIME
d push s3://lazyset/x v >/dev/null || { echo "push failed"; exit 1; }
echo "pushed to the RGW in $(python3 -c "print('%.0f' % ($EPOCHREALTIME - $t0))") s"

export DVOL_ROOT=$W/lazy DVOL_TEST_FETCH_LOG=$W/fetch.log
echo "## lazy clone from the RGW, --cache-size 512M ($(load))"
t0=$EPOCHREALTIME
d clone --lazy --cache-size 512M s3://lazyset/x v >/dev/null || { echo "clone failed"; exit 1; }
echo "lazy clone (metadata only): $(python3 -c "print('%.1f' % ($EPOCHREALTIME - $t0))") s"
LIVE=$(d path v)
PID=$(head -n 1 "$DVOL_ROOT/volumes/v/cache/mount.lock")
CHUNKS=$DVOL_ROOT/volumes/v/cache/chunks
: >"$W/du.log"
# (du may meet a file evicted while it counts: its complaint is dropped, the file not counted.)
(while :; do du -sb "$CHUNKS" 2>/dev/null | cut -f1 >>"$W/du.log"; sleep 0.1; done) &
SAMPLER=$!
fetched() { awk '$1 == "read" && $2 ~ /^packs\// { s += $5; n++ } END { printf "%d %d", s, n }' "$DVOL_TEST_FETCH_LOG"; }

: >"$DVOL_TEST_FETCH_LOG"
FIRST=$(python3 - "$SET" "$LIVE" <<'EOF'
import os, random, sys, time
src, live = sys.argv[1], sys.argv[2]
files = sorted(os.path.relpath(os.path.join(dp, f), src) for dp, _, fs in os.walk(src) for f in fs)
files = [f for f in files if os.path.getsize(os.path.join(src, f)) >= 1 << 20]
rng = random.Random(11)
worst = 0.0
for rel in rng.sample(files, 3):
    fd = os.open(os.path.join(live, rel), os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    size = os.fstat(fd).st_size
    off = rng.randrange(0, max(1, size - 4096)) & ~4095
    t = time.perf_counter()
    os.pread(fd, 4096, off)
    ms = (time.perf_counter() - t) * 1000
    worst = max(worst, ms)
    print("first byte of a random 4 KiB read (%s, %d KiB in): %.1f ms" % (rel, off // 1024, ms), file=sys.stderr)
    os.close(fd)
print("%.1f" % worst)
EOF
)

: >"$DVOL_TEST_FETCH_LOG"
python3 - "$SET" "$LIVE" "$TOTAL" <<'EOF'
import bisect, hashlib, os, random, sys, time
src, live, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = sorted(os.path.relpath(os.path.join(dp, f), src) for dp, _, fs in os.walk(src) for f in fs)
sizes = [os.path.getsize(os.path.join(src, f)) for f in files]
cum = []
acc = 0
for s in sizes:
    acc += s
    cum.append(acc)
rng = random.Random(12)
want, done, reads, bad = total // 100, 0, 0, 0
t = time.perf_counter()
while done < want:
    i = bisect.bisect_right(cum, rng.randrange(cum[-1]))
    n = min(1 << 20, sizes[i])
    off = rng.randrange(0, sizes[i] - n + 1) & ~4095
    fd = os.open(os.path.join(live, files[i]), os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    got = os.pread(fd, n, off)
    os.close(fd)
    with open(os.path.join(src, files[i]), "rb") as f:
        f.seek(off)
        if f.read(n) != got:
            bad += 1
    done += len(got)
    reads += 1
print("random reads: %d of up to 1 MiB, %.1f MiB (1%% of the volume) in %.1f s, %d differing from the source"
      % (reads, done / 2**20, time.perf_counter() - t, bad))
EOF
read -r FB FN < <(fetched)
echo "  fetched for them: $((FB / MIB)) MiB in $FN requests = $(python3 -c "print('%.2f' % (100 * $FB / $TOTAL))")% of the volume"
RANDOM_PCT=$(python3 -c "print(100 * $FB / $TOTAL)")

# The kernel's page cache would serve pages read above: the sequential read is of the 1 GiB
# file, whose chunks the random reads may have fetched only in part (counted in the figure).
: >"$DVOL_TEST_FETCH_LOG"
sync
echo 1 >/proc/sys/vm/drop_caches
t0=$EPOCHREALTIME
cat "$LIVE/${BIG#"$SET"/}" >/dev/null
t1=$EPOCHREALTIME
SEQ=$(python3 -c "print('%.0f' % (2**30 / ($t1 - $t0) / 1e6))")
read -r FB FN < <(fetched)
echo "sequential read of the 1 GiB file, cold: $SEQ MB/s, $((FB / MIB)) MiB fetched in $FN requests"
RSS=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status")
echo "mount process peak RSS: $RSS MiB"
kill "$SAMPLER" 2>/dev/null
wait "$SAMPLER" 2>/dev/null
SAMPLER=""
du -sb "$CHUNKS" 2>/dev/null | cut -f1 >>"$W/du.log"
MAX=$(sort -n "$W/du.log" | tail -n 1)
echo "chunk cache: largest of $(wc -l <"$W/du.log") samples $((MAX / MIB)) MiB (bound 512 MiB)"
echo "($(load))"

echo "## targets"
mark() { if [ "$1" = 1 ]; then echo "PASS: $2"; else echo "MISS: $2"; fi; }
mark "$(python3 -c "print(int($FIRST < 100))")" "first byte of a random read < 100 ms (the slowest of three: $FIRST ms)"
mark "$(python3 -c "print(int($RANDOM_PCT < 2))")" "reading 1% of the volume at random fetches < 2% of its bytes ($(printf '%.2f' "$RANDOM_PCT")%)"
mark "$((SEQ >= 200 ? 1 : 0))" "a sequential read of a 1 GiB file >= 200 MB/s ($SEQ MB/s)"
mark "$((RSS < 256 ? 1 : 0))" "peak RSS of the mount process < 256 MiB ($RSS MiB)"
mark "$((MAX <= BOUND + 4 * MIB ? 1 : 0))" "cache never above its bound + one chunk ($((MAX / MIB)) MiB <= 516 MiB)"
