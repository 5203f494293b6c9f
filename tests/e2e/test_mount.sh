#!/usr/bin/env bash
# dvol mount and dvol umount for real, through the kernel's FUSE:
#   - the fidelity tree (tests/e2e/fidelity_tree.sh) committed, mounted, and compared with the
#     same commit reset into the live directory (compare_trees.py): identical, but for what a
#     FUSE mount cannot show (listed below, each with its reason);
#   - a 10,020-file commit (100,200 files with DVOL_TEST_LONG=1): listing one directory loads
#     that directory's tree and no other (the mount's --verbose log counts tree loads), `ls -lR`
#     of all of it, the mount process's peak memory;
#   - a commit without any xattr: getxattr "not supported" (the kernel stops asking), listxattr
#     empty; one with an xattr deep down shows it;
#   - VOLUME@HEAD~1 shows the older state; SEEK_DATA/SEEK_HOLE on a sparse file; a 64 MiB random
#     file read byte for byte (sha256); hard links share st_ino; `dvol umount` leaves the
#     directory empty;
#   - a damaged chunk (a flipped byte in a pack) fails reads of its file with EIO, logged with the
#     object's id, while the mount goes on serving the other files;
#   - gc while mounted: the mounted commit's objects are kept even when no branch reaches them
#     (the mount's pin), and records gc moves to a new pack are still found;
#   - four readers at once on a fresh mount; umount of a busy mount refused; a foreground mount
#     ended by SIGTERM unmounts and drops its pin; @REF alone mounts the active volume;
#   - the mount process killed with SIGKILL: `dvol umount` frees the directory;
#   - refusals: an unknown volume or revision, a directory that is a dvol mount already, umount
#     of a directory that is not a dvol mount.
# Needs /dev/fuse, and root or fusermount3; SKIP otherwise. Every mount it makes it unmounts, and
# the only processes it ends are the mount processes it started (by pid, from their pins).
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/../cli/lib.sh"
# shellcheck source=tests/e2e/fidelity_tree.sh
. "$(dirname "$0")/fidelity_tree.sh"

E2E_DIR="$(cd "$(dirname "$0")" && pwd)"
CMP="$E2E_DIR/compare_trees.py"
command -v python3 >/dev/null || { echo "SKIP: python3 is needed for the tree comparator"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse here (FUSE is not available: load the fuse module; in a container, --device /dev/fuse)"; exit 77; }
# fusermount3 (package fuse3): how a user other than root mounts and unmounts; root needs none,
# but the cleanup uses it when dvol umount fails.
command -v fusermount3 >/dev/null || apt_install fuse3
if [ "$IS_ROOT" != 1 ] && ! command -v fusermount3 >/dev/null; then
    echo "SKIP: not root and no fusermount3 (fuse3 could not be installed: $(apt_errors))"
    exit 77
fi

# --- mounts and their processes ----------------------------------------------------------------------
MOUNTED=()   # directories this test mounted
FG_PIDS=()   # foreground mount processes it started
# shellcheck disable=SC2317  # run by the EXIT trap
unmount_all() {
    local d p
    for d in "${MOUNTED[@]}"; do
        if is_mounted "$d"; then
            "$DVOL" umount "$d" >/dev/null 2>&1 || { umount "$d" 2>/dev/null || fusermount3 -u "$d" 2>/dev/null; }
        fi
    done
    for p in "${FG_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
}
trap 'unmount_all; cleanup' EXIT

# mount_bg TARGET DIR [OPTIONS...]: dvol mount (a daemon); the directory is remembered for cleanup.
mount_bg() {
    local target=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    MOUNTED+=("$dir")
    expect_ok tdvol mount "$@" "$target" "$dir"
}

# mount_fg TARGET DIR LOG [OPTIONS...]: dvol mount -f in the background of this script, its stderr
# in LOG; returns once it has printed "Mounted" (or ended). Sets MPID.
mount_fg() {
    local target=$1 dir=$2 log=$3
    shift 3
    mkdir -p "$dir"
    MOUNTED+=("$dir")
    "$DVOL" --disable-docker-integration mount -f "$@" "$target" "$dir" >"$log.out" 2>"$log" </dev/null &
    MPID=$!
    FG_PIDS+=("$MPID")
    local i
    for ((i = 0; i < 1200; i++)); do
        grep -q '^Mounted ' "$log.out" 2>/dev/null && return 0
        kill -0 "$MPID" 2>/dev/null || break
        sleep 0.1
    done
    fail "dvol mount -f $target $dir did not report its mount" "$(cat "$log.out" "$log" 2>/dev/null | head -40)"
    return 1
}

# The pid of the mount process serving DIR, from its pin in the store.
mount_pid() {
    grep -l "^holder=mount $1\$" "$DVOL_ROOT"/pins/*.pin 2>/dev/null | head -n1 | xargs -r sed -n 's/^pid=//p'
}

# compare_mount WHAT MANIFEST DIR [FIELD...]: DIR (a mount) must match MANIFEST, leaving out the
# named fields of files (see "what a FUSE mount cannot show" below).
compare_mount() {
    local what=$1 manifest=$2 dir=$3
    shift 3
    run python3 "$TEST_TMP/compare_mount.py" "$E2E_DIR" "$manifest" "$dir" "$@"
    if [ "$RC" -eq 0 ]; then pass; else fail "$what" "$(printf '%s\n%s' "$OUT" "$ERR" | head -c 12000)"; fi
}
# (run gives its command /dev/null as stdin: the Python it runs is in files.)
cat >"$TEST_TMP/compare_mount.py" <<'EOF'
import json, sys
sys.path.insert(0, sys.argv[1])
import compare_trees
expected = json.load(open(sys.argv[2]))
actual = compare_trees.snapshot(sys.argv[3])
for m in (expected, actual):
    for e in m["entries"].values():
        for field in sys.argv[4:]:
            e.pop(field, None)
diffs = compare_trees.compare(expected, actual)
for d in diffs[:200]:
    print(d)
sys.exit(1 if diffs else 0)
EOF

sha() { sha256sum "$1" | cut -d' ' -f1; }

# --- can this machine mount? -------------------------------------------------------------------------
section "probe"
expect_ok dvol init probe || abort
echo "probe" >"$(dvol path probe)/f"
expect_ok dvol commit -m probe probe || abort
mkdir -p "$TEST_TMP/probe"
run tdvol mount probe "$TEST_TMP/probe"
if [ "$RC" -ne 0 ]; then
    case $ERR in
        *"without FUSE support"*) echo "SKIP: this dvol was built without FUSE support"; exit 77 ;;
        *"no /dev/fuse here"* | *"fuse: device not found"* | *"Operation not permitted"* | *"Permission denied"* | *"fusermount"*)
            echo "SKIP: FUSE mounts are not permitted here: $ERR"; exit 77 ;;
    esac
    fail "the first mount" "$(last_details)"
    abort
fi
MOUNTED+=("$TEST_TMP/probe")
expect_stdout_contains "Mounted probe at "
check "the probe mount serves its file" grep -qx probe "$TEST_TMP/probe/f"
expect_ok tdvol umount "$TEST_TMP/probe"

# --- the fidelity tree ---------------------------------------------------------------------------------
section "fidelity"
expect_ok dvol init fid || abort
P=$(dvol path fid)
fidelity_probe
build_tree
expect_ok dvol commit -m "state 1" fid || abort
C1=$OUT
# The reference: the commit reset into the live directory.
expect_ok tdvol reset --hard HEAD fid
snapshot_ref() { python3 "$CMP" snapshot "$P" "$1" || { fail "snapshot of $P"; abort; }; }
snapshot_ref "$TEST_TMP/m1.json"

# What a FUSE mount cannot show, and is therefore left out or checked apart:
#   - st_dev: the mount is a device of its own (compare_trees.py does not look at it);
#   - directory sizes and link counts: a directory's size would need its tree (the mount shows 0)
#     and its link count the count of its subdirectories (the mount shows 1, "unknown", as btrfs
#     does); compare_trees.py does not look at them;
#   - atime and ctime: a commit records only the mtime; the mount shows it as all three (checked
#     below);
#   - allocated size: the mount counts a file's bytes in chunks (holes excluded), to the byte;
#     within compare_trees.py's slack of the restored file's blocks;
#   - nlink of hard-linked files, without --count-links: the mount counts the names it has met
#     so far (the commit does not record the count); with --count-links it is exact.
M1="$TEST_TMP/mnt-fid"
mount_bg "fid" "$M1" --count-links
expect_stdout_eq "Mounted fid at ${C1:0:12} on $M1"
compare_mount "the mount (--count-links) shows exactly the commit" "$TEST_TMP/m1.json" "$M1"
check "atime and ctime show the mtime" python3 -c '
import os, sys
st = os.lstat(sys.argv[1])
sys.exit(0 if st.st_atime_ns == st.st_mtime_ns == st.st_ctime_ns else 1)' "$M1/hello.txt"
check "a directory's link count is 1 (unknown)" test "$(stat -c %h "$M1/nested")" = 1
expect_ok tdvol umount "$M1"

M1b="$TEST_TMP/mnt-fid-lazy"
mount_bg "fid@${C1:0:8}" "$M1b"
compare_mount "the mount (lazy link counts) shows the commit, nlink aside" "$TEST_TMP/m1.json" "$M1b" nlink

# Hard links: one inode number for every name of a group.
i1=$(stat -c %i "$M1b/hl/a/one") i2=$(stat -c %i "$M1b/hl/b/c/two") i3=$(stat -c %i "$M1b/hl/three")
check "hard links share st_ino ($i1 $i2 $i3)" test "$i1" = "$i2" -a "$i2" = "$i3"
check "a file that is no hard link has its own st_ino" test "$(stat -c %i "$M1b/hello.txt")" != "$i1"
# Writing is refused.
run sh -c "echo x >> '$M1b/hello.txt'"
check "the mount is read-only" test "$RC" -ne 0
check "... and says so" grep -q "Read-only file system" <<<"$ERR"
run mkdir "$M1b/newdir"
check "mkdir in the mount is refused" test "$RC" -ne 0

# --- a commit without any xattr ---------------------------------------------------------------------
# The mount of a commit that has no xattr at all answers getxattr with ENOSYS, after which the
# kernel fails every getxattr itself ("Operation not supported") and asks the mount no more (ls -l
# asks two of every file); listxattr still answers, with nothing. A commit with one xattr, deep
# down, shows it (and the fidelity tree's above were all shown).
section "xattrs"
cat >"$TEST_TMP/xattrs.py" <<'EOF'
import errno, os, sys
path, want = sys.argv[1], sys.argv[2]
names = os.listxattr(path, follow_symlinks=False)
try:
    value = os.getxattr(path, "user.deep", follow_symlinks=False)
    got = "value " + value.decode()
except OSError as e:
    got = {errno.ENODATA: "no such attribute", errno.EOPNOTSUPP: "not supported"}.get(e.errno, "errno %d" % e.errno)
print("listxattr %s, getxattr %s" % (names, got))
sys.exit(0 if got == want and (names == ["user.deep"]) == want.startswith("value") else 1)
EOF
M_NOX="$TEST_TMP/mnt-noxattr"
mount_bg "probe" "$M_NOX"
expect_script_ok "a commit without xattrs: getxattr not supported, listxattr empty" python3 "$TEST_TMP/xattrs.py" "$M_NOX/f" "not supported"
expect_script_ok "... of the root directory too" python3 "$TEST_TMP/xattrs.py" "$M_NOX" "not supported"
check "... and its files read as always" grep -qx probe "$M_NOX/f"
expect_ok tdvol umount "$M_NOX"
if [ "$XATTR_OK" = 1 ]; then
    expect_ok dvol init deepx || abort
    PX=$(dvol path deepx)
    mkdir -p "$PX/a/b/c"
    echo plain >"$PX/top"
    echo deep >"$PX/a/b/c/f"
    python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.deep", b"down here")' "$PX/a/b/c/f"
    expect_ok dvol commit -m "one xattr, deep down" deepx || abort
    M_X="$TEST_TMP/mnt-deepx"
    mount_bg "deepx" "$M_X"
    expect_script_ok "a commit with one xattr deep down shows it" python3 "$TEST_TMP/xattrs.py" "$M_X/a/b/c/f" "value down here"
    expect_script_ok "... and its other files have none (ENODATA, not ENOSYS)" python3 "$TEST_TMP/xattrs.py" "$M_X/top" "no such attribute"
    expect_ok tdvol umount "$M_X"
fi

# --- older revisions, sparse files, big files ---------------------------------------------------
section "revisions and content"
expect_ok dvol init content || abort
P2=$(dvol path content)
echo "first state" >"$P2/state.txt"
echo "only in the first" >"$P2/old-only.txt"
expect_ok dvol commit -m first content
C_FIRST=$OUT
echo "second state" >"$P2/state.txt"
rm "$P2/old-only.txt"
head -c $((64 * MiB)) /dev/urandom >"$P2/random64"
# A sparse file: data at [0, 1 MiB) and [32 MiB, 33 MiB), holes around, 64 MiB in all.
truncate -s $((64 * MiB)) "$P2/sparse"
put_random "$P2/sparse" 0 $MiB
put_random "$P2/sparse" $((32 * MiB)) $MiB
expect_ok dvol commit -m second content
C_SECOND=$OUT

M2="$TEST_TMP/mnt-old"
mount_bg "content@HEAD~1" "$M2"
expect_stdout_eq "Mounted content at ${C_FIRST:0:12} on $M2"
check "HEAD~1 shows the older content" grep -qx "first state" "$M2/state.txt"
check "HEAD~1 shows the file deleted since" test -f "$M2/old-only.txt"
check "HEAD~1 does not show the files added since" test ! -e "$M2/random64"

M3="$TEST_TMP/mnt-new"
mount_bg "content" "$M3"
expect_stdout_eq "Mounted content at ${C_SECOND:0:12} on $M3"
expect_eq "a 64 MiB random file reads byte for byte (sha256)" "$(sha "$P2/random64")" "$(sha "$M3/random64")"
expect_eq "and again, from the page cache" "$(sha "$P2/random64")" "$(sha "$M3/random64")"
expect_eq "the sparse file reads byte for byte" "$(sha "$P2/sparse")" "$(sha "$M3/sparse")"
cat >"$TEST_TMP/seek.py" <<'EOF'
import errno, os, sys
MiB = 1 << 20
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
regions, off = [], 0
while True:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError as e:
        assert e.errno == errno.ENXIO, e
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    regions.append((d, h))
    off = h
    if off >= size:
        break
print(regions)
# Data where data was written, holes elsewhere: two regions, around 0 and 32 MiB.
assert len(regions) == 2, regions
assert regions[0][0] == 0 and MiB <= regions[0][1] <= 6 * MiB, regions
assert 27 * MiB <= regions[1][0] <= 32 * MiB and 33 * MiB <= regions[1][1] <= 38 * MiB, regions
assert os.lseek(fd, 16 * MiB, os.SEEK_HOLE) == 16 * MiB
assert os.lseek(fd, 16 * MiB, os.SEEK_DATA) == regions[1][0]
assert os.lseek(fd, 50 * MiB, os.SEEK_HOLE) == 50 * MiB
try:
    os.lseek(fd, 50 * MiB, os.SEEK_DATA)
    sys.exit("SEEK_DATA past the last data should be ENXIO")
except OSError as e:
    assert e.errno == errno.ENXIO
try:
    os.lseek(fd, size, os.SEEK_HOLE)
    sys.exit("SEEK_HOLE at the end should be ENXIO")
except OSError as e:
    assert e.errno == errno.ENXIO
assert os.pread(fd, 4096, 16 * MiB) == bytes(4096)
st = os.fstat(fd)
assert st.st_blocks * 512 <= 10 * MiB, st.st_blocks
EOF
expect_script_ok "SEEK_DATA/SEEK_HOLE find the data and the holes of the sparse file" python3 "$TEST_TMP/seek.py" "$M3/sparse"
echo "sparse file regions: $OUT"

expect_ok tdvol umount "$M2"
check "after umount the directory is empty again" test -z "$(ls -A "$M2")"
check "after umount the directory is no mount" test -z "$(awk -v d="$M2" '$5 == d' /proc/self/mountinfo)"

# --- refusals -------------------------------------------------------------------------------------
section "refusals"
mkdir -p "$TEST_TMP/mnt-x"
expect_fail 1 tdvol mount nosuchvolume "$TEST_TMP/mnt-x"
expect_stderr_contains "volume 'nosuchvolume' does not exist"
expect_fail 1 tdvol mount content@nosuchref "$TEST_TMP/mnt-x"
expect_stderr_contains "unknown revision 'nosuchref'"
expect_fail 1 tdvol mount content@HEAD~5 "$TEST_TMP/mnt-x"
expect_stderr_contains "does not exist"
check "a failed mount leaves no mount" test -z "$(awk -v d="$TEST_TMP/mnt-x" '$5 == d' /proc/self/mountinfo)"
check "a failed mount leaves no pin" bash -c "! grep -ls 'holder=mount $TEST_TMP/mnt-x\$' $DVOL_ROOT/pins/*.pin"
expect_fail 1 tdvol mount content "$P2/state.txt"
expect_stderr_contains "is not a directory"
expect_fail 1 tdvol mount content "$M3"
expect_stderr_contains "is already a dvol mount"
mkdir -p "$TEST_TMP/mnt-full"
echo x >"$TEST_TMP/mnt-full/f"
expect_fail 1 tdvol mount content "$TEST_TMP/mnt-full"
expect_stderr_contains "is not empty: mount on an empty directory"
expect_fail 1 tdvol mount content "$TEST_TMP/no-such-dir"
expect_stderr_contains "no-such-dir"
expect_fail 2 tdvol mount content
expect_fail 1 tdvol umount "$TEST_TMP/mnt-x"
expect_stderr_contains "is not a dvol mount: nothing is mounted there"
if [ "$IS_ROOT" = 1 ] && mount -t tmpfs -o size=1m tmpfs "$TEST_TMP/mnt-x" 2>/dev/null; then
    expect_fail 1 tdvol umount "$TEST_TMP/mnt-x"
    expect_stderr_contains "a tmpfs file system is mounted there"
    umount "$TEST_TMP/mnt-x"
fi

# --- a damaged chunk ------------------------------------------------------------------------------
section "damaged object"
expect_ok dvol init dmg || abort
P3=$(dvol path dmg)
head -c $MiB /dev/urandom >"$P3/good.bin"
expect_ok dvol commit -m good dmg
packs_before=$(ls "$DVOL_ROOT/objects/packs")
head -c $MiB /dev/urandom >"$P3/bad.bin"
expect_ok dvol commit -m bad dmg
NEWPACK=$(comm -13 <(echo "$packs_before") <(ls "$DVOL_ROOT/objects/packs") | head -n1)
check "the second commit wrote a pack of its own" test -n "$NEWPACK" || abort
# The biggest record of that pack is a chunk of bad.bin (random data is stored raw).
read -r off stored FLIP_ID < <(python3 - "$DVOL_ROOT/objects/packs/$NEWPACK" <<'EOF'
import struct, sys
data = open(sys.argv[1], 'rb').read()
off, best = 16, None
while off < len(data):
    raw, stored = struct.unpack_from('<II', data, off + 8)
    if best is None or stored > best[1]:
        best = (off, stored, data[off + 16:off + 48].hex())
    off += 48 + stored
print(*best)
EOF
)
python3 - "$DVOL_ROOT/objects/packs/$NEWPACK" $((off + 48 + stored / 2)) <<'EOF'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)
    f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0x5a]))
EOF
M4="$TEST_TMP/mnt-dmg"
mount_fg dmg "$M4" "$TEST_TMP/dmg.log"
run cat "$M4/bad.bin"
check "reading the damaged file fails" test "$RC" -ne 0
check "... with EIO" grep -q "Input/output error" <<<"$ERR"
check "the mount logs the damaged object by its id" grep -q "$FLIP_ID" "$TEST_TMP/dmg.log"
expect_eq "the mount keeps serving the other files" "$(sha "$P3/good.bin")" "$(sha "$M4/good.bin")"
check "the damaged file's attributes are still shown" test "$(stat -c %s "$M4/bad.bin")" = $MiB
check "the mount process still runs" kill -0 "$MPID"
expect_ok tdvol umount "$M4"
wait "$MPID"
check "the foreground mount process ends with status 0 after umount" test $? -eq 0
# The damaged commit goes, so that the fsck below looks at sound objects only (gc drops them).
expect_ok tdvol rm -f dmg

# --- gc while mounted -----------------------------------------------------------------------------
section "gc while mounted"
# g1: x, y (kept by g2 too) and d (only g1's), all in one pack; g2: x and y, deduplicated.
expect_ok dvol init g1 || abort
PG1=$(dvol path g1)
head -c $((2 * MiB)) /dev/urandom >"$PG1/x"
head -c $((2 * MiB)) /dev/urandom >"$PG1/y"
head -c $((16 * MiB)) /dev/urandom >"$PG1/d"
expect_ok dvol commit -m g1 g1
expect_ok dvol init g2 || abort
cp "$PG1/x" "$PG1/y" "$(dvol path g2)/"
expect_ok dvol commit -m g2 g2
SX=$(sha "$PG1/x") SY=$(sha "$PG1/y") SD=$(sha "$PG1/d")
MG1="$TEST_TMP/mnt-g1" MG2="$TEST_TMP/mnt-g2"
mount_bg g1 "$MG1"
mount_bg g2 "$MG2"
expect_eq "x reads through g2's mount" "$SX" "$(sha "$MG2/x")"
# g1 goes: its commit is reachable from no branch, only from its mount's pin.
expect_ok tdvol rm -f g1
expect_ok tdvol gc
check "gc says it kept what the mounts use" grep -qE "kept everything [0-9]+ mounted commit\(s\) use" <<<"$ERR"
expect_eq "the removed volume's mount still reads d" "$SD" "$(sha "$MG1/d")"
expect_eq "... and y" "$SY" "$(sha "$MG1/y")"
expect_ok tdvol umount "$MG1"
# Now d is garbage: gc drains the pack holding x, y and d into a new one, under g2's mount.
expect_ok tdvol gc
check "gc rewrote the mostly-dead pack" grep -qE "rewrote [1-9]" <<<"$OUT"
expect_eq "y, never read before, reads from its new pack through the mount" "$SY" "$(sha "$MG2/y")"
expect_eq "x reads too" "$SX" "$(sha "$MG2/x")"
expect_ok tdvol fsck
expect_ok tdvol umount "$MG2"

# --- concurrent readers, a busy mount, SIGTERM -------------------------------------------------------
section "readers, busy, SIGTERM"
M6="$TEST_TMP/mnt-par"
expect_ok dvol switch content
mount_fg "@HEAD" "$M6" "$TEST_TMP/par.log"
check "@REF alone mounts the active volume" grep -qx "Mounted content at ${C_SECOND:0:12} on $M6" "$TEST_TMP/par.log.out"
# Four readers at once on a fresh mount (nothing cached): the worker threads serve them side by side.
readers=()
for i in 1 2 3 4; do
    f=random64
    [ $((i % 2)) = 0 ] && f=sparse
    sha "$M6/$f" >"$TEST_TMP/par.$i" &
    readers+=($!)
done
wait "${readers[@]}"  # (not a bare wait: the mount process is a job of this script too)
for i in 1 3; do expect_eq "reader $i of four at once reads random64 byte for byte" "$(sha "$P2/random64")" "$(cat "$TEST_TMP/par.$i")"; done
for i in 2 4; do expect_eq "reader $i of four at once reads sparse byte for byte" "$(sha "$P2/sparse")" "$(cat "$TEST_TMP/par.$i")"; done
# A file held open keeps the mount busy: umount refuses, and works once it is closed.
exec 3<"$M6/state.txt"
expect_fail 1 tdvol umount "$M6"
expect_stderr_contains "is busy"
exec 3<&-
# SIGTERM ends a foreground mount cleanly: it unmounts, and its pin goes.
kill -TERM "$MPID"
wait "$MPID"
check "a foreground mount ends with status 0 on SIGTERM" test $? -eq 0
check "... and unmounts" test -z "$(awk -v d="$M6" '$5 == d' /proc/self/mountinfo)"
check "... and drops its pin" bash -c "! grep -ls 'holder=mount $M6\$' $DVOL_ROOT/pins/*.pin"

# --- SIGKILL --------------------------------------------------------------------------------------
section "SIGKILL"
M5="$TEST_TMP/mnt-kill"
mount_bg content "$M5"
KPID=$(mount_pid "$M5")
check "the mount's pin names its process" test -n "$KPID" || abort
kill -KILL "$KPID"
for ((i = 0; i < 600; i++)); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.1; done
run ls "$M5"
check "a killed mount's directory fails" test "$RC" -ne 0
expect_fail 1 tdvol mount content "$M5"
expect_stderr_contains "whose process is gone"
expect_ok tdvol umount "$M5"
check "umount freed the directory" test -z "$(ls -A "$M5")"
check "... which is no mount any more" test -z "$(awk -v d="$M5" '$5 == d' /proc/self/mountinfo)"
expect_ok tdvol gc
check "gc deleted the killed mount's pin" bash -c "! grep -ls 'holder=mount $M5\$' $DVOL_ROOT/pins/*.pin"

# --- many files ----------------------------------------------------------------------------------
# 30 directories of 334 files; 300 (100,200 files) with DVOL_TEST_LONG=1. Making and deleting
# the 100,200 files took most of this test's time on a busy disk (up to 4 minutes).
NDIRS=30
[ "${DVOL_TEST_LONG:-0}" = 1 ] && NDIRS=300
NFILES=$((NDIRS * 334))
section "$NFILES files"
expect_ok dvol init many || abort
PM=$(dvol path many)
python3 - "$PM" "$NDIRS" <<'EOF'
import os, sys
root = sys.argv[1]
for d in range(int(sys.argv[2])):
    dd = os.path.join(root, "d%03d" % d)
    os.mkdir(dd)
    for f in range(334):
        with open(os.path.join(dd, "f%03d" % f), "w") as fh:
            fh.write("%d/%d\n" % (d, f))
EOF
check "$NFILES files made" test "$(find "$PM" -type f | wc -l)" = "$NFILES"
t0=$EPOCHREALTIME
expect_ok tdvol commit -m many many
echo "commit of $NFILES files: $(((${EPOCHREALTIME/./} - ${t0/./}) / 1000)) ms"
MM="$TEST_TMP/mnt-many"
mount_fg many "$MM" "$TEST_TMP/many.log" --verbose
trees() { grep -c 'loaded tree' "$TEST_TMP/many.log"; }
ls "$MM" >/dev/null
n0=$(trees)
expect_eq "mounting and listing the root loaded the top tree and the root's" 2 "$n0"
ls -l "$MM/d021" >/dev/null
expect_eq "ls -l of one directory loads that directory's tree, no other" $((n0 + 1)) "$(trees)"
ls -l "$MM/d021" >/dev/null
cat "$MM/d021/f007" >/dev/null
expect_eq "listing it again and reading a file loads no tree" $((n0 + 1)) "$(trees)"
check "a file's content" grep -qx "21/7" "$MM/d021/f007"
t0=$EPOCHREALTIME
lines=$(ls -lR "$MM" | wc -l)
echo "ls -lR of the $NFILES-file mount: $(((${EPOCHREALTIME/./} - ${t0/./}) / 1000)) ms, $lines lines"
check "ls -lR lists every file" test "$lines" -ge "$NFILES"
check "ls -lR loaded every directory's tree" test "$(trees)" -ge $((n0 + NDIRS))
grep -E '^Vm(HWM|RSS)' "/proc/$MPID/status" | tr -s ' \t' ' '
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$MPID/status")
# Bounded: the caches (64 + 32 + 16 MiB at most) and the inodes the kernel holds, far below
# what a commit loaded whole would take.
check "the mount process's peak memory stays below 256 MiB ($hwm KiB)" test "$hwm" -lt $((256 * 1024))
expect_ok tdvol umount "$MM"
wait "$MPID"

expect_ok tdvol umount "$M1b"
expect_ok tdvol umount "$M3"
check "no pin is left" bash -c "! ls $DVOL_ROOT/pins/*.pin 2>/dev/null | grep -q ."
finish
