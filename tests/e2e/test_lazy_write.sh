#!/usr/bin/env bash
# The write layer of lazy volumes (fuse-mount/layer_fs.h) for real, through the kernel's FUSE,
# against a directory remote.
#   - a volume of a 64 MiB random file and small files is pushed, then cloned lazily;
#   - a 4 KiB write into the 64 MiB file fetches at most one record (the chunk it lands in,
#     counted by $DVOL_TEST_FETCH_LOG) and the layer's data grows by at most one chunk;
#   - the same script of file system operations (O_EXCL, rename over a file and over an empty
#     directory, hard links, symlinks, a fifo, xattrs with their flags, chmod/chown/utimens,
#     truncate, unlink of an open file, rmdir of a non-empty directory, ...) run on the mount and
#     on a copy of the source in a real directory gives the same answers and the same tree
#     (tests/e2e/compare_trees.py; only the allocated sizes are left out: a layer's file shows its
#     size in blocks);
#   - 20 times: a writer doing random 4 KiB writes (half of them fsync'ed) and creating fsync'ed
#     files, with readers going on beside it, and the mount process killed with SIGKILL at a
#     random moment: every fsync'ed write is there after `dvol path` mounts the volume again,
#     every other slot holds bytes that were written to it (or the base's), and the volume mounts
#     every time;
#   - status lists the layer's changes against the tip, commit records them fetching nothing and
#     storing only the layer's new chunks, gc keeps those, status is then clean, also after a
#     remount (the mount shows the layer's base commit with the layer); the commit mounted
#     read-only (its new chunks from the store's packs) is the real directory's tree;
#   - diff shows a text file written into the layer (a unified diff), and nothing once it is
#     deleted again;
#   - reset --hard drops the layer (an uncommitted file goes) and mounts the target: HEAD, the
#     first commit of the layer (the real directory's tree again), the clone's commit.
# Needs /dev/fuse and root or fusermount3; SKIP otherwise. It ends only the processes it started.
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/../cli/lib.sh"
E2E_DIR="$(cd "$(dirname "$0")" && pwd)"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
command -v python3 >/dev/null || { echo "SKIP: python3 is needed to make and check the test files"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse here (FUSE is not available: load the fuse module; in a container, --device /dev/fuse)"; exit 77; }
command -v fusermount3 >/dev/null || apt_install fuse3
if [ "$IS_ROOT" != 1 ] && ! command -v fusermount3 >/dev/null; then
    echo "SKIP: not root and no fusermount3 (fuse3 could not be installed: $(apt_errors))"
    exit 77
fi

MOUNTED=()
BG_PIDS=()
# shellcheck disable=SC2317  # run by the EXIT trap
unmount_all() {
    local p
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    unmount_dvol_mounts "${MOUNTED[@]}"
}
trap 'unmount_all; cleanup' EXIT

REMOTE="$TEST_TMP/remote"
mkdir -p "$REMOTE"

section "source volume, pushed"
use_store src
expect_ok dvol init data || abort
SRC=$(dvol path data)
python3 - "$SRC" <<'EOF'
import os, random, sys
d = sys.argv[1]
rng = random.Random(3)
with open(os.path.join(d, "big"), "wb") as f:
    f.write(rng.randbytes(64 << 20))
os.mkdir(os.path.join(d, "small"))
for i in range(10):
    with open(os.path.join(d, "small", "f%02d" % i), "wb") as f:
        f.write(rng.randbytes(rng.randrange(1, 100000)))
os.mkdir(os.path.join(d, "full"))
with open(os.path.join(d, "full", "x"), "w") as f:
    f.write("x")
os.mkdir(os.path.join(d, "empty"))
with open(os.path.join(d, "over"), "w") as f:
    f.write("to be replaced")
EOF
expect_ok dvol commit -m data data || abort
expect_ok tdvol push "$REMOTE" data || abort
cp -a "$SRC" "$TEST_TMP/real"

export DVOL_TEST_FETCH_LOG="$TEST_TMP/fetch.log"
fetched_records() { grep -c '^read packs/' "$DVOL_TEST_FETCH_LOG" 2>/dev/null || true; }
mount_pid() { head -n 1 "$DVOL_ROOT/volumes/$1/cache/mount.lock" 2>/dev/null; }

section "lazy clone; a 4 KiB write into a 64 MiB file"
use_store lazy
run tdvol clone --lazy --cache-size 256M "$REMOTE" data
if [ "$RC" -ne 0 ]; then
    case $ERR in
        *"without FUSE support"*) echo "SKIP: this dvol was built without FUSE support"; exit 77 ;;
        *"fuse: device not found"* | *"Operation not permitted"* | *"Permission denied"* | *"fusermount"*)
            echo "SKIP: FUSE mounts are not permitted here: $ERR"; exit 77 ;;
    esac
    fail "clone --lazy" "$ERR"
    abort
fi
LIVE=$(dvol path data)
MOUNTED+=("$LIVE")
LAYER="$DVOL_ROOT/volumes/data/cache/layer"
: >"$DVOL_TEST_FETCH_LOG"
OFF=$((40 * MIB + 123))
python3 - "$LIVE/big" "$TEST_TMP/real/big" "$OFF" <<'EOF'
import os, sys
for p in sys.argv[1:3]:
    fd = os.open(p, os.O_WRONLY)
    os.pwrite(fd, b"W" * 4096, int(sys.argv[3]))
    os.close(fd)
EOF
check "the write fetched at most one record ($(fetched_records))" test "$(fetched_records)" -le 1
USED=$(du -sk "$LAYER/data" | cut -f1)
check "the layer's data holds at most one chunk (${USED} KiB)" test "$USED" -le 4200
expect_eq "the file reads back with the write" "$(sha256sum <"$TEST_TMP/real/big")" "$(sha256sum <"$LIVE/big")"

section "file system operations: the mount against a real directory"
cat >"$TEST_TMP/ops.py" <<'EOF'
import errno, os, stat, sys
d = sys.argv[1]
root = os.getuid() == 0
out = []
def p(*a):
    return os.path.join(d, *a)
def attempt(what, f):
    try:
        r = f()
        out.append("%s: ok %s" % (what, "" if r is None else r))
    except OSError as e:
        out.append("%s: %s" % (what, errno.errorcode.get(e.errno, e.errno)))
attempt("create excl", lambda: os.close(os.open(p("new"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)))
attempt("create excl again", lambda: os.close(os.open(p("new"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)))
attempt("create excl over a base file", lambda: os.close(os.open(p("over"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)))
def write(name, data, flags=os.O_WRONLY):
    fd = os.open(p(name), flags, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
attempt("write new", lambda: write("new", b"new content\n"))
attempt("append", lambda: write("small/f01", b"appended", os.O_WRONLY | os.O_APPEND))
attempt("trunc", lambda: write("small/f02", b"short", os.O_WRONLY | os.O_TRUNC))
attempt("truncate down", lambda: os.truncate(p("small/f03"), 1000))
attempt("truncate up", lambda: os.truncate(p("small/f04"), 300000))
attempt("rename over", lambda: os.rename(p("new"), p("over")))
attempt("read renamed", lambda: open(p("over"), "rb").read())
attempt("old name gone", lambda: os.stat(p("new")))
attempt("rename dir over empty dir", lambda: os.rename(p("small"), p("empty")))
attempt("rename dir over non-empty", lambda: os.rename(p("empty"), p("full")))
attempt("rmdir non-empty", lambda: os.rmdir(p("full")))
attempt("unlink a dir", lambda: os.unlink(p("full")))
attempt("rename into a file", lambda: os.rename(p("full"), p("over")))
attempt("link", lambda: os.link(p("over"), p("full", "hard")))
attempt("link count", lambda: os.stat(p("over")).st_nlink)
attempt("same inode", lambda: os.stat(p("over")).st_ino == os.stat(p("full", "hard")).st_ino)
attempt("write through a link", lambda: write("full/hard", b"via link", os.O_WRONLY | os.O_APPEND))
attempt("read other name", lambda: open(p("over"), "rb").read())
attempt("link a dir", lambda: os.link(p("full"), p("dirlink")))
attempt("symlink", lambda: os.symlink("over", p("sym")))
attempt("readlink", lambda: os.readlink(p("sym")))
attempt("symlink exists", lambda: os.symlink("x", p("sym")))
attempt("mkfifo", lambda: os.mkfifo(p("fifo"), 0o600))
attempt("fifo type", lambda: stat.S_ISFIFO(os.lstat(p("fifo")).st_mode))
attempt("mkdir", lambda: os.mkdir(p("dir"), 0o750))
attempt("mkdir again", lambda: os.mkdir(p("dir")))
attempt("mkdir nested", lambda: os.makedirs(p("dir", "a", "b")))
attempt("rename dir", lambda: os.rename(p("dir", "a"), p("dir", "c")))
attempt("listing", lambda: sorted(os.listdir(p("dir"))))
try:
    os.setxattr(p("over"), "user.probe", b"1")
    os.removexattr(p("over"), "user.probe")
    xattrs = True
except OSError:
    xattrs = False
if xattrs:
    attempt("setxattr", lambda: os.setxattr(p("over"), "user.a", b"value"))
    attempt("setxattr create exists", lambda: os.setxattr(p("over"), "user.a", b"v", os.XATTR_CREATE))
    attempt("setxattr replace missing", lambda: os.setxattr(p("over"), "user.b", b"v", os.XATTR_REPLACE))
    attempt("setxattr replace", lambda: os.setxattr(p("over"), "user.a", b"other", os.XATTR_REPLACE))
    attempt("getxattr", lambda: os.getxattr(p("over"), "user.a"))
    attempt("getxattr missing", lambda: os.getxattr(p("over"), "user.zz"))
    attempt("xattr on a base file", lambda: os.setxattr(p("empty", "f05"), "user.c", b"base"))
    attempt("removexattr", lambda: os.removexattr(p("over"), "user.a"))
    attempt("removexattr missing", lambda: os.removexattr(p("over"), "user.a"))
    attempt("listxattr", lambda: sorted(os.listxattr(p("empty", "f05"))))
attempt("chmod", lambda: os.chmod(p("empty", "f06"), 0o4755))
attempt("chmod dir", lambda: os.chmod(p("full"), 0o711))
if root:
    attempt("chown", lambda: os.chown(p("empty", "f07"), 1234, 5678))
    attempt("lchown", lambda: os.lchown(p("sym"), 42, 43))
def open_unlinked():
    fd = os.open(p("empty", "f08"), os.O_RDWR)
    os.unlink(p("empty", "f08"))
    os.pwrite(fd, b"still writable", 0)
    data = os.pread(fd, 14, 0)
    os.close(fd)
    return data
attempt("unlink while open", open_unlinked)
attempt("unlinked gone", lambda: os.stat(p("empty", "f08")))
def sparse():
    fd = os.open(p("sparse"), os.O_CREAT | os.O_WRONLY, 0o600)
    os.pwrite(fd, b"end", 5 << 20)
    os.close(fd)
    return os.stat(p("sparse")).st_size
attempt("sparse", sparse)
# Every entry's mtime set, deepest first, so that the trees compare times too.
for top, dirs, files in os.walk(d, topdown=False):
    for n in files + dirs:
        os.utime(os.path.join(top, n), ns=(1, 1_600_000_000_123_456_789), follow_symlinks=False)
os.utime(d, ns=(1, 1_600_000_000_123_456_789))
print("\n".join(out))
EOF
run python3 "$TEST_TMP/ops.py" "$TEST_TMP/real"
REAL_OUT=$OUT
run python3 "$TEST_TMP/ops.py" "$LIVE"
expect_eq "the same answers as a real directory" "$REAL_OUT" "$OUT"
python3 "$E2E_DIR/compare_trees.py" snapshot "$TEST_TMP/real" "$TEST_TMP/real.json"
cat >"$TEST_TMP/compare.py" <<'EOF'
import json, sys
sys.path.insert(0, sys.argv[1])
import compare_trees
expected = json.load(open(sys.argv[2]))
actual = compare_trees.snapshot(sys.argv[3])
for m in (expected, actual):
    for e in m["entries"].values():
        if "allocated" in e:
            e["allocated"] = 0  # a layer file shows its size in blocks
diffs = compare_trees.compare(expected, actual)
for d in diffs[:200]:
    print(d)
sys.exit(1 if diffs else 0)
EOF
# Passes when the live directory's tree is the one recorded of the real directory (real.json).
live_is_real() {
    run python3 "$TEST_TMP/compare.py" "$E2E_DIR" "$TEST_TMP/real.json" "$LIVE"
    if [ "$RC" -eq 0 ]; then pass; else fail "$1" "$(printf '%s\n%s' "$OUT" "$ERR" | head -c 12000)"; fi
}
live_is_real "the mount's tree is the real directory's"

section "the mount remounted keeps it all"
expect_ok dvol umount "$LIVE"
expect_ok tdvol mount data
live_is_real "after a remount, the same tree"

section "status and commit see the layer"
pack_bytes() { cat "$DVOL_ROOT"/objects/packs/*.pack 2>/dev/null | wc -c; }
expect_ok dvol status data
expect_stdout_contains "typechange: over"  # a hard link now: full/hard comes first
expect_stdout_contains "added:      sparse"
expect_stdout_contains "deleted:    small"
BEFORE=$(pack_bytes)
: >"$DVOL_TEST_FETCH_LOG"
expect_ok tdvol commit -m "the layer" data
expect_eq "the commit fetched nothing" 0 "$(fetched_records)"
GREW=$(( $(pack_bytes) - BEFORE ))
# New bytes: the copied chunk of big (4 MiB at most), the small files written (under 1 MiB).
check "the commit stored only the layer's new chunks ($GREW bytes)" test "$GREW" -le $((6 * MIB))
expect_ok dvol status data
expect_stdout_contains "nothing to commit"
expect_eq "two commits" 2 "$(dvol log data | grep -c '^commit ')"
expect_ok dvol gc
check "gc keeps the chunks of the lazy volume's own commit ($(pack_bytes) bytes in packs)" test "$(pack_bytes)" -ge "$GREW"
# fsck walks a lazy volume's commits through the trees and lists in its cache (and the chunks
# its own commits stored): clean now; a damaged kept tree is named, and clean again once mended.
expect_ok tdvol fsck
expect_stdout_contains "no problems found"
META="$DVOL_ROOT/volumes/data/cache/meta"
KEPT=$(find "$META" -type f | head -n 1)
cp "$KEPT" "$TEST_TMP/kept.bak"
python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0xFF; open(p, "wb").write(b)' "$KEPT"
expect_fail 1 tdvol fsck
expect_stdout_contains "$(basename "$KEPT")"
cp "$TEST_TMP/kept.bak" "$KEPT"
expect_ok tdvol fsck
# reset --hard HEAD drops the layer and mounts the tip itself: the new commit, whose new chunks
# come from the store's packs and the rest from the remote.
expect_ok tdvol reset --hard HEAD data
expect_eq "reset dropped the layer's data files" 0 "$(find "$LAYER/data" -type f | wc -l)"
live_is_real "the commit, mounted without a layer, is the real directory's tree"
expect_ok dvol umount "$LIVE"
expect_ok tdvol mount data
live_is_real "after the commit and a remount, the same tree"
expect_ok dvol status data
expect_stdout_contains "nothing to commit"

section "diff sees the layer and the commits"
expect_ok dvol diff --volume data
expect_eq "no change, no diff" "" "$OUT"
printf 'hello lazy\nsecond line\n' >"$LIVE/notes.txt"
expect_ok dvol diff --volume data
expect_stdout_contains "+++ b/notes.txt"
expect_stdout_contains "+hello lazy"
expect_ok dvol diff --volume data -- notes.txt
expect_stdout_contains "+second line"
# Between commits (the clone's and the layer's), and from a commit to the live state.
expect_ok dvol diff --volume data HEAD^ HEAD
expect_stdout_contains "Binary files /dev/null and b/sparse differ"
expect_stdout_contains "metadata of full: mode"
expect_ok dvol diff --volume data HEAD HEAD^
expect_stdout_contains "Binary files a/sparse and /dev/null differ"
expect_ok dvol diff --volume data HEAD^
expect_stdout_contains "+hello lazy"
expect_stdout_contains "Binary files /dev/null and b/sparse differ"
rm "$LIVE/notes.txt"
expect_ok dvol diff --volume data
expect_eq "the file gone again, no diff" "" "$OUT"
expect_ok dvol status data
expect_stdout_contains "nothing to commit"

section "SIGKILL of the mount process under writes and reads, 20 times"
cat >"$TEST_TMP/writer.py" <<'EOF'
# Random 4 KiB writes into 64 slots of big (slot i at i MiB + 12 KiB), half fsync'ed, and new
# files fsync'ed with their directory; the journal says what was meant ("intent") before each
# write and what is durable ("done") after its fsync.
import hashlib, os, random, sys
live, journal, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
j = open(journal, "a", buffering=1)
try:
    fd = os.open(os.path.join(live, "big"), os.O_RDWR)
    dfd = os.open(os.path.join(live, "made"), os.O_RDONLY)
    n = 0
    while True:
        slot = rng.randrange(64)
        data = rng.randbytes(4096)
        h = hashlib.sha256(data).hexdigest()
        j.write("intent %d %s\n" % (slot, h))
        os.pwrite(fd, data, slot * (1 << 20) + 12288)
        if rng.random() < 0.5:
            os.fsync(fd)
            j.write("done %d %s\n" % (slot, h))
        if rng.random() < 0.1:
            name = "f-%d-%d" % (seed, n)
            ffd = os.open(os.path.join(live, "made", name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(ffd, data)
            os.fsync(ffd)
            os.close(ffd)
            os.fsync(dfd)
            j.write("file %s %s\n" % (name, h))
        n += 1
except OSError:
    pass
EOF
cat >"$TEST_TMP/verify.py" <<'EOF'
import hashlib, os, sys
live, journal, base = sys.argv[1], sys.argv[2], sys.argv[3]
bad = []
with open(base, "rb") as f:
    base_h = {}
    for s in range(64):
        f.seek(s * (1 << 20) + 12288)
        base_h[s] = hashlib.sha256(f.read(4096)).hexdigest()
slots = {s: [] for s in range(64)}
files = {}
for line in open(journal):
    parts = line.split()
    if len(parts) != 3:
        continue  # a line cut by the kill
    kind, a, h = parts
    if kind == "file":
        files[a] = h
    else:
        slots[int(a)].append((kind, h))
fd = os.open(os.path.join(live, "big"), os.O_RDONLY)
for s, events in slots.items():
    got = hashlib.sha256(os.pread(fd, 4096, s * (1 << 20) + 12288)).hexdigest()
    last_done = max((i for i, (k, _) in enumerate(events) if k == "done"), default=-1)
    allowed = {h for k, h in events[last_done + 1:] if k == "intent"}
    allowed.add(events[last_done][1] if last_done >= 0 else base_h[s])
    if last_done < 0:
        allowed |= {h for k, h in events}
    if got not in allowed:
        bad.append("slot %d: %s, not one of the %d allowed" % (s, got[:12], len(allowed)))
for name, h in files.items():
    try:
        got = hashlib.sha256(open(os.path.join(live, "made", name), "rb").read()).hexdigest()
    except OSError as e:
        bad.append("file %s: %s" % (name, e))
        continue
    if got != h:
        bad.append("file %s: wrong content" % name)
print("%d slots, %d files checked" % (len(slots), len(files)))
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
mkdir "$LIVE/made"
sync -f "$LIVE" 2>/dev/null || true
JOURNAL="$TEST_TMP/journal"
: >"$JOURNAL"
cp "$SRC/big" "$TEST_TMP/base-big"
for i in $(seq 1 20); do
    PID=$(mount_pid data)
    python3 "$TEST_TMP/writer.py" "$LIVE" "$JOURNAL" "$i" &
    W=$!
    ( while cat "$LIVE/big" >/dev/null 2>&1; do :; done ) &
    R1=$!
    ( while ls -lR "$LIVE" >/dev/null 2>&1; do :; done ) &
    R2=$!
    BG_PIDS=("$W" "$R1" "$R2")
    sleep "0.$((RANDOM % 9 + 1))"
    kill -KILL "$PID"
    wait "$W" 2>/dev/null
    kill "$R1" "$R2" 2>/dev/null
    wait "$R1" "$R2" 2>/dev/null
    BG_PIDS=()
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    run tdvol path data
    if [ "$RC" -ne 0 ]; then
        fail "round $i: the volume mounts again" "$ERR"
        break
    fi
    pass
    run python3 "$TEST_TMP/verify.py" "$LIVE" "$JOURNAL" "$TEST_TMP/base-big"
    if [ "$RC" -eq 0 ]; then pass; else fail "round $i: every fsync'ed write kept" "$OUT"; break; fi
done
echo "journal: $(grep -c '^done' "$JOURNAL") fsync'ed writes, $(grep -c '^intent' "$JOURNAL") writes, $(grep -c '^file' "$JOURNAL") files"
check "the writers got writes in" test "$(grep -c '^done' "$JOURNAL")" -gt 20

section "status and commit after the kills"
expect_ok dvol status data
expect_stdout_contains "modified:   big"
expect_stdout_contains "added:      made"
expect_ok tdvol commit -m "after the kills" data
expect_ok dvol status data
expect_stdout_contains "nothing to commit"

section "reset --hard drops the layer and mounts the target"
echo "not committed" >"$LIVE/uncommitted"
expect_ok dvol status data
expect_stdout_contains "added:      uncommitted"
expect_ok tdvol reset --hard HEAD data
check "the live directory is mounted again" is_mounted "$LIVE"
check "the uncommitted file is gone" test ! -e "$LIVE/uncommitted"
expect_ok dvol status data
expect_stdout_contains "nothing to commit"
: >"$DVOL_TEST_FETCH_LOG"
expect_ok tdvol reset --hard HEAD^ data
check "made/ is gone: it came with the last commit" test ! -e "$LIVE/made"
live_is_real "reset to the first commit of the layer: the real directory's tree"
expect_ok dvol status data
expect_stdout_contains "nothing to commit"
expect_ok tdvol reset --hard HEAD^ data
expect_eq "reset to the clone's commit: the source's big file" "$(sha256sum <"$SRC/big")" "$(sha256sum <"$LIVE/big")"
expect_eq "and the source's small files" "$(cd "$SRC/small" && sha256sum f*)" "$(cd "$LIVE/small" && sha256sum f*)"

section "rm of a writable lazy volume"
expect_ok dvol rm -f data
check "rm unmounted and removed it" test ! -e "$DVOL_ROOT/volumes/data"
finish
