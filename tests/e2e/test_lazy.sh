#!/usr/bin/env bash
# Lazy volumes (dvol clone --lazy) for real, through the kernel's FUSE, against one kind of remote
# (the argument: dir, a directory; s3, a Ceph RGW started by tests/e2e/rgw.sh):
#   - a volume of a 1 GiB file (sparse: 16 random 2 MiB regions, 64 MiB apart, so that pushing
#     it costs seconds; a read in a hole fetches nothing, which is checked too), a 24 MiB random
#     file and small files is pushed, then cloned lazily into a second store;
#   - a 4 KiB read at a random offset in the 1 GiB file fetches at most one record of the remote
#     (counted by the mount's $DVOL_TEST_FETCH_LOG: every ranged read the remote answered, with
#     its bytes) and no index (the indexes were read by the clone);
#   - reading everything twice, with the mount restarted in between (so that neither the
#     kernel's page cache nor the mount's memory can serve the second pass), fetches each record
#     once, and every byte matches the source;
#   - with --cache-size 8M, reading 7x the bound keeps the cache directory within the bound plus
#     one chunk (sampled all along the reads);
#   - the remote stopped mid-read: reads fail with EIO and the mount logs why; the remote back:
#     the same reads succeed;
#   - a corrupted record on the remote (its pack rewritten with flipped bytes): its read fails
#     with EIO, and the cache holds nothing but verified chunks;
#   - the mount process killed with SIGKILL: `dvol path` mounts the volume again and every file
#     reads back right;
#   - unchanged, status is clean, commit has nothing to commit, push finds the remote up to
#     date; a write on a new branch is seen by status and committed; an uncommitted one refuses
#     a checkout to the other commit (one line); checkout between the two commits mounts each one
#     again (--force drops the uncommitted write); that commit pushed and cloned in full into
#     the same store (whose packs lack its trees); a new commit fetched and pulled into it
#     (the mount follows), a pull from another remote refused; gc and fsck leave the lazy volume readable; rm unmounts it and frees
#     its cache. (The write layer itself: test_lazy_write.sh.)
# Needs /dev/fuse and root or fusermount3 (s3: root, for Ceph); SKIP otherwise. It ends only the
# processes it started (mount processes by the pid in their cache's lock file; RGW by rgw.sh).
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/../cli/lib.sh"
# shellcheck source=tests/e2e/rgw.sh
. "$(dirname "$0")/rgw.sh"

BACKEND=${1:-dir}
IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
command -v python3 >/dev/null || { echo "SKIP: python3 is needed to make and read the test files"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse here (FUSE is not available: load the fuse module; in a container, --device /dev/fuse)"; exit 77; }
command -v fusermount3 >/dev/null || apt_install fuse3
if [ "$IS_ROOT" != 1 ] && ! command -v fusermount3 >/dev/null; then
    echo "SKIP: not root and no fusermount3 (fuse3 could not be installed: $(apt_errors))"
    exit 77
fi

MOUNTED=()  # live directories of lazy volumes this test made
FG_PIDS=()
# shellcheck disable=SC2317  # run by the EXIT trap
unmount_all() {
    local p
    for p in "${FG_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    unmount_dvol_mounts "${MOUNTED[@]}"
    [ "$BACKEND" = s3 ] && rgw_stop "$TEST_TMP/rgw"
}
trap 'unmount_all; cleanup' EXIT

# --- the remote ---------------------------------------------------------------------------------------
case "$BACKEND" in
dir)
    REMOTE="$TEST_TMP/remote"
    mkdir -p "$REMOTE"
    remote_stop() { mv "$REMOTE" "$REMOTE.away"; }
    remote_start() { mv "$REMOTE.away" "$REMOTE"; }
    list_packs() { for p in "$REMOTE"/packs/*; do echo "$(basename "$p") $(stat -c %s "$p")"; done; }
    get_pack() { cp "$REMOTE/packs/$1" "$2"; }
    put_pack() { cp "$2" "$REMOTE/packs/$1.new" && mv "$REMOTE/packs/$1.new" "$REMOTE/packs/$1"; }
    ;;
s3)
    export RGW_SIZE=${RGW_SIZE:-$((1024 * 1024 * 1024))}
    if ! rgw_start "$TEST_TMP/rgw"; then
        echo "SKIP: no Ceph RGW here: $RGW_SKIP_REASON"
        exit 77
    fi
    echo "Ceph RGW at $RGW_ENDPOINT, started in $RGW_START_SECONDS s"
    rgw_client_env
    rgw_make_bucket dvol-lazy || { echo "SKIP: $RGW_SKIP_REASON"; exit 77; }
    REMOTE="s3://dvol-lazy/e2e"
    remote_stop() { rgw_gateway_stop "$TEST_TMP/rgw"; }
    remote_start() { rgw_gateway_start "$TEST_TMP/rgw"; }
    s3() { curl -s --max-time 120 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"; }
    # "NAME SIZE" of each pack on the remote.
    list_packs() {
        s3 "$RGW_ENDPOINT/dvol-lazy?list-type=2&prefix=e2e%2Fpacks%2F" |
            python3 -c "import re,sys; d=sys.stdin.read(); [print(k.rsplit('/',1)[1], n) for k, n in re.findall(r'<Key>([^<]*)</Key>.*?<Size>(\\d+)</Size>', d, re.S)]"
    }
    get_pack() { s3 -o "$2" "$RGW_ENDPOINT/dvol-lazy/e2e/packs/$1"; }
    put_pack() { s3 -X PUT --data-binary "@$2" -o /dev/null "$RGW_ENDPOINT/dvol-lazy/e2e/packs/$1"; }
    ;;
*)
    echo "usage: test_lazy.sh dir|s3" >&2
    exit 2
    ;;
esac

# --- the source -------------------------------------------------------------------------------------
section "source volume, pushed"
use_store src
expect_ok dvol init data || abort
SRC=$(dvol path data)
python3 - "$SRC" <<'EOF'
import os, random, sys
d = sys.argv[1]
rng = random.Random(16)
with open(os.path.join(d, "big"), "wb") as f:
    f.truncate(1 << 30)
    for i in range(16):
        f.seek(i * (64 << 20))
        f.write(rng.randbytes(2 << 20))
for name, size in (("mid", 24 << 20), ("late", 8 << 20)):
    with open(os.path.join(d, name), "wb") as f:
        f.write(rng.randbytes(size))
os.mkdir(os.path.join(d, "small"))
for i in range(20):
    with open(os.path.join(d, "small", "f%02d" % i), "wb") as f:
        f.write(rng.randbytes(rng.randrange(1, 300000)))
EOF
sums() { (cd "$1" && find . -type f | sort | xargs -d '\n' sha256sum); }
SUMS=$(sums "$SRC")
expect_ok dvol commit -m data data || abort
expect_ok tdvol push "$REMOTE" data || abort

# The mount's log of what its remote served: "read KEY OFFSET LENGTH BYTES".
export DVOL_TEST_FETCH_LOG="$TEST_TMP/fetch.log"
fetched_records() { grep -c '^read packs/' "$DVOL_TEST_FETCH_LOG" 2>/dev/null || true; }
fetched_bytes() { awk '$1 == "read" { s += $5 } END { print s + 0 }' "$DVOL_TEST_FETCH_LOG" 2>/dev/null; }
mount_pid() { head -n 1 "$DVOL_ROOT/volumes/$1/cache/mount.lock" 2>/dev/null; }

# --- one record per random read --------------------------------------------------------------------------
section "lazy clone; a random 4 KiB read"
use_store lazy
expect_ok tdvol clone --lazy --cache-size 256M "$REMOTE" data || abort
expect_stdout_contains "Created lazy volume data"
LIVE=$(dvol path data)
MOUNTED+=("$LIVE")
check "the live directory is a dvol mount" is_mounted "$LIVE"
expect_eq "the clone fetched no chunk (the mount fetched nothing yet)" 0 "$(fetched_records)"
expect_eq "the listing shows the files" "big late mid small" "$(ls "$LIVE" | tr '\n' ' ' | sed 's/ $//')"
# 4 KiB at 5 * 64 MiB + 700 KiB + 8 KiB (inside the sixth random region), then one in a hole;
# POSIX_FADV_RANDOM so that the kernel reads no more than asked.
read_at() { # FILE OFFSET LENGTH
    python3 - "$1" "$2" "$3" <<'EOF'
import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
print(hashlib.sha256(os.pread(fd, int(sys.argv[3]), int(sys.argv[2]))).hexdigest())
EOF
}
OFF=$((5 * 64 * MIB + 708 * 1024))
expect_eq "a random 4 KiB read gives the source's bytes" "$(read_at "$SRC/big" $OFF 4096)" "$(read_at "$LIVE/big" $OFF 4096)"
expect_eq "it fetched one record" 1 "$(fetched_records)"
check "no index was read by the mount" bash -c "! grep -q '^read index/' '$DVOL_TEST_FETCH_LOG'"
BYTES=$(fetched_bytes)
check "at most one chunk's bytes (4 MiB) were fetched: $BYTES" test "$BYTES" -le $((4 * MIB + 64))
expect_eq "a read in a hole" "$(read_at "$SRC/big" $((40 * MIB)) 4096)" "$(read_at "$LIVE/big" $((40 * MIB)) 4096)"
expect_eq "a read in a hole fetches nothing" 1 "$(fetched_records)"
expect_ok dvol umount "$LIVE"
check "umount leaves the live directory empty" test -z "$(ls -A "$LIVE")"
# Unmounted, with a file put into the bare directory: none of the volume's, which status and
# commit (reading the write layer) would call clean: refused.
echo stray >"$LIVE/stray"
expect_fail 1 dvol status data
expect_stderr_one_line
expect_stderr_contains "lazy volume data is not mounted"
expect_fail 1 dvol commit -m stray data
expect_stderr_contains "lazy volume data is not mounted"
rm "$LIVE/stray"
if [ "$BACKEND" = s3 ]; then
    # Credentials the remote refuses: the mount says so, instead of coming up to fail every read.
    AWS_SECRET_ACCESS_KEY="wrong$RANDOM" expect_fail 1 tdvol mount data
    expect_stderr_contains "refused the credentials"
    check "a refused mount leaves the live directory unmounted" bash -c "! mountpoint -q '$LIVE'"
fi

section "everything read twice, the mount restarted in between"
: >"$DVOL_TEST_FETCH_LOG"
expect_ok tdvol mount data || abort
expect_eq "first pass: every byte right" "$SUMS" "$(sums "$LIVE")"
FIRST=$(fetched_records)
expect_ok dvol umount "$LIVE"
expect_ok tdvol mount data || abort
expect_eq "second pass: every byte right" "$SUMS" "$(sums "$LIVE")"
expect_eq "the second pass fetched nothing" "$FIRST" "$(fetched_records)"
DUPS=$(awk '$1 == "read" && $2 ~ /^packs\// { print $2, $3 }' "$DVOL_TEST_FETCH_LOG" | sort | uniq -d | wc -l)
expect_eq "no record was fetched twice (of $FIRST)" 0 "$DUPS"
# 16 regions of 2 MiB, 32 MiB: at least 8 chunks (4 MiB at most each); 24 and 8 MiB: at least 8.
check "the first pass fetched the data's records ($FIRST)" test "$FIRST" -ge 16

section "commands on a lazy volume"
expect_ok dvol status data
expect_stdout_contains "nothing to commit"
expect_fail 1 dvol commit -m x data
expect_stderr_contains "nothing to commit"
expect_ok dvol push "$REMOTE" data
expect_stdout_contains "Everything up-to-date"
expect_ok dvol reset --hard HEAD data
expect_ok dvol log data
expect_ok dvol checkout -b other data
expect_ok dvol checkout master data
expect_eq "checkout between branches at the mounted commit" master "$(dvol branch data | sed -n 's/^\* //p')"
# Writable: a branch with a commit of its own, and checkout between commits (the mount follows).
expect_ok dvol checkout other data
expect_ok sh -c "echo lazy-write > '$LIVE/new'"
expect_ok dvol status data
expect_stdout_contains "new"
expect_ok dvol commit -m "a file on branch other" data
expect_ok dvol status data
expect_stdout_contains "nothing to commit"
expect_ok sh -c "echo pending > '$LIVE/new2'"
expect_fail 1 dvol checkout master data
expect_stderr_one_line
expect_stderr_contains "uncommitted changes"
expect_eq "the refused checkout kept the write" pending "$(cat "$LIVE/new2")"
expect_ok dvol checkout --force master data
check "master's tip, mounted again, has neither new file" test ! -e "$LIVE/new" -a ! -e "$LIVE/new2"
expect_eq "master: every byte right" "$SUMS" "$(sums "$LIVE")"
expect_ok dvol checkout other data
expect_eq "other's tip, mounted again, has its file" lazy-write "$(cat "$LIVE/new")"
check "checkout --force dropped the uncommitted file" test ! -e "$LIVE/new2"
expect_ok dvol checkout master data
expect_ok dvol gc
expect_ok dvol fsck
expect_eq "after gc and fsck: every byte right" "$SUMS" "$(sums "$LIVE")"

# --- the bound -------------------------------------------------------------------------------------------
section "a cache of 8 MiB while reading 7 times as much"
use_store small
expect_ok tdvol clone --lazy --cache-size 8M "$REMOTE" data || abort
SLIVE=$(dvol path data)
MOUNTED+=("$SLIVE")
CHUNKS="$DVOL_ROOT/volumes/data/cache/chunks"
: >"$TEST_TMP/du.log"
(while [ ! -e "$TEST_TMP/du.stop" ]; do du -sb "$CHUNKS" | cut -f1 >>"$TEST_TMP/du.log"; sleep 0.05; done) &
DU_PID=$!
expect_eq "every byte right through a small cache" "$SUMS" "$(sums "$SLIVE")"
touch "$TEST_TMP/du.stop"
wait "$DU_PID"
du -sb "$CHUNKS" | cut -f1 >>"$TEST_TMP/du.log"
MAX=$(sort -n "$TEST_TMP/du.log" | tail -n 1)
check "the cache stayed within 8 MiB + one chunk (largest seen $MAX bytes, $(wc -l <"$TEST_TMP/du.log") samples)" \
    test "$MAX" -le $((12 * MIB + 4096))
expect_ok dvol rm -f data
check "rm unmounted the live directory" bash -c "! grep -qF ' $SLIVE ' /proc/self/mountinfo"
check "rm freed the cache" test ! -e "$DVOL_ROOT/volumes/data"

# --- failures ----------------------------------------------------------------------------------------------
section "the remote stopped mid-read, then back"
use_store lazy
expect_ok dvol umount "$LIVE"
# In the foreground, so that its log is at hand; a fresh cache, so that every read needs the remote.
rm -rf "$DVOL_ROOT/volumes/data/cache/chunks"
"$DVOL" --disable-docker-integration mount -f data >"$TEST_TMP/fg.out" 2>"$TEST_TMP/fg.log" </dev/null &
FG_PIDS+=($!)
for _ in $(seq 1 600); do grep -q Mounted "$TEST_TMP/fg.out" && break; sleep 0.1; done
check "the foreground mount is up" is_mounted "$LIVE"
head -c $MIB "$LIVE/mid" >/dev/null
remote_stop
run cat "$LIVE/late"
check "a read while the remote is away fails with EIO" bash -c "[ $RC -ne 0 ] && grep -q 'Input/output error' '$ERR_FILE'"
check "the mount logged the failed fetch" grep -q "fetching object .* failed" "$TEST_TMP/fg.log"
remote_start || fail "the remote did not come back: ${RGW_SKIP_REASON:-}"
expect_eq "the remote back: the reads succeed" "$(sha256sum <"$SRC/late")" "$(sha256sum <"$LIVE/late")"

section "SIGKILL of the mount process"
kill -KILL "${FG_PIDS[0]}"
wait "${FG_PIDS[0]}" 2>/dev/null
FG_PIDS=()
run ls "$LIVE"
check "the killed mount answers no more" test "$RC" -ne 0
expect_ok tdvol path data
expect_stderr_contains "mounted lazy volume data again"
expect_eq "after the kill: every byte right" "$SUMS" "$(sums "$LIVE")"
PID=$(mount_pid data)
check "the new mount process is alive" kill -0 "$PID"
kill -KILL "$PID"
for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
expect_ok tdvol mount data
expect_stdout_contains "Mounted data"
expect_eq "and again: every byte right" "$SUMS" "$(sums "$LIVE")"

section "a corrupted record on the remote"
use_store src
expect_ok dvol init victim || abort
python3 -c "import random,sys; sys.stdout.buffer.write(random.Random(9).randbytes(3 << 20))" >"$(dvol path victim)/f"
expect_ok dvol commit -m victim victim
list_packs | sort >"$TEST_TMP/packs.before"
expect_ok tdvol push "$REMOTE" victim
use_store lazy
expect_ok tdvol clone --lazy "$REMOTE" victim || abort
VLIVE=$(dvol path victim)
MOUNTED+=("$VLIVE")
# Every byte of each new data pack past its first record's header flipped: no record of it can
# verify. (Metadata packs, small, which the clone read, are left alone.)
list_packs | sort | comm -13 "$TEST_TMP/packs.before" - | while read -r name size; do
    [ "$size" -gt $((1024 * 1024)) ] || continue
    get_pack "$name" "$TEST_TMP/pack" || { echo "cannot read pack $name" >&2; continue; }
    python3 - "$TEST_TMP/pack" <<'EOF2'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
for i in range(4096, len(b) - 64):
    b[i] ^= 0x5A
open(p, "wb").write(b)
EOF2
    put_pack "$name" "$TEST_TMP/pack" || echo "cannot write pack $name" >&2
done
run cat "$VLIVE/f"
check "a corrupted record gives EIO" bash -c "[ $RC -ne 0 ] && grep -q 'Input/output error' '$ERR_FILE'"
# A chunk file is the chunk's bytes and a 16-byte trailer (docs/FORMAT.md), named <hex>.chunk.
BAD=$(python3 - "$DVOL_ROOT/volumes/victim/cache/chunks" <<'EOF2'
import hashlib, os, sys
d = sys.argv[1]
names = os.listdir(d) if os.path.isdir(d) else []
print(sum(1 for n in names if hashlib.sha256(open(os.path.join(d, n), "rb").read()[:-16]).hexdigest() + ".chunk" != n))
EOF2
)
expect_eq "the cache holds no unverified chunk" 0 "$BAD"
expect_ok dvol rm -f victim

section "a lazy volume's commit pushed, cloned in full into its store"
# Last: the full clone puts the data's chunks in the store's packs, which a lazy mount reads first.
# The store knows the commit (the lazy volume's), but its trees are in the lazy volume's cache,
# not the packs, so the clone fetches them.
expect_ok tdvol push "$REMOTE" data other
# Pushed anywhere else it stops at the first chunk only its own remote holds, before anything is
# written there: a new directory is left as it was, not made a dvol remote.
mkdir -p "$TEST_TMP/new-remote"
expect_fail 1 tdvol push "$TEST_TMP/new-remote" data other
expect_stderr_one_line
expect_stderr_contains "has its data on the remote it was cloned from"
expect_eq "the refused push wrote nothing there" "" "$(ls -A "$TEST_TMP/new-remote")"
expect_ok tdvol clone -b other "$REMOTE" data full
expect_eq "a full clone in the same store has the lazy volume's commit" lazy-write "$(cat "$(dvol path full)/new" 2>&1)"
expect_eq "and the rest of it" "$SUMS" "$(sums "$(dvol path full)" | grep -v ' ./new$')"
expect_ok dvol rm -f full
expect_ok dvol branch -D other data

section "fetch and pull into a lazy volume"
use_store src
printf 'pulled\n' >"$(dvol path data)/pulled"
expect_ok dvol commit -m "a file to pull" data
expect_ok tdvol push "$REMOTE" data
use_store lazy
expect_ok tdvol fetch "$REMOTE" data
expect_ok tdvol pull "$REMOTE" data
check "the live directory, mounted again, has the pulled file" test "$(cat "$LIVE/pulled" 2>&1)" = pulled
expect_eq "and the rest of it" "$SUMS" "$(sums "$LIVE" | grep -v ' ./pulled$')"
expect_ok dvol status data
expect_stdout_contains "nothing to commit"
expect_ok tdvol pull "$REMOTE" data
mkdir -p "$TEST_TMP/elsewhere"
expect_fail 1 tdvol pull "$TEST_TMP/elsewhere" data
expect_stderr_one_line
expect_stderr_contains "reads its data from"

section "rm of a mounted lazy volume"
expect_ok dvol rm -f data
check "rm unmounted and removed it" test ! -e "$DVOL_ROOT/volumes/data"
finish
