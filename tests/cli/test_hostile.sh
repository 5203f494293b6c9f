#!/usr/bin/env bash
# Hostile data: what a container can put in its volume, and damage to a store that fsck must see
# and reset must survive. Each section is the regression test of one failure of the issue
# "Hostile data and hostile file systems" (the mount-based ones are in test_mounts.sh): trees
# thousands of levels deep, a live directory replaced by a symlink, a damaged dvol.db, damaged
# stat-cache rows, trees fsck accepted but reset could not restore, a damaged pack header.
# shellcheck source=tests/cli/lib.sh disable=SC2016  # checks eval single-quoted tests on purpose
. "$(dirname "$0")/lib.sh"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# Mounts this test made (a tmpfs for the deepest tree), unmounted before the pool is removed.
MOUNTS=()
unmount_all() {
    local m
    for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
}
trap 'unmount_all; cleanup' EXIT

# section N: whether section N runs (all of them, or those DVOL_HOSTILE_SECTIONS lists, e.g.
# "4 7", to run a few while working on them).
section() {
    [ -z "${DVOL_HOSTILE_SECTIONS:-}" ] || [[ " $DVOL_HOSTILE_SECTIONS " == *" $1 "* ]]
}

# use_store NAME: a fresh store under the test's directory.
use_store() {
    export DVOL_ROOT="$TEST_TMP/$1"
    mkdir -p "$DVOL_ROOT"
}

# refs_state VOLUME: the volume's log, branches and reflog, to compare before and after.
refs_state() {
    tdvol log --json "$1" 2>&1
    tdvol branch --json "$1" 2>&1
    tdvol reflog --json "$1" 2>&1
}

# deep_chain DIR N: N nested directories named d under DIR, and in the last one a file f.
deep_chain() {
    python3 - "$1" "$2" <<'EOF'
import os, sys
os.chdir(sys.argv[1])
for _ in range(int(sys.argv[2])):
    os.mkdir('d')
    os.chdir('d')
with open('f', 'w') as f:
    f.write('bottom\n')
EOF
}

# chain_depth DIR: "N TEXT": how many nested directories d DIR holds, and the text of the file f
# in the last one ("-" when there is none).
chain_depth() {
    python3 - "$1" <<'EOF'
import os, sys
os.chdir(sys.argv[1])
n = 0
while os.path.isdir('d') and not os.path.islink('d'):
    os.chdir('d')
    n += 1
print(n, open('f').read().strip() if os.path.isfile('f') else '-')
EOF
}

# deep_round STORE LEVELS: a chain LEVELS deep is committed, reported clean, checked and
# collected around, removed by a reset and brought back by another, exactly, and removed with
# its volume.
deep_round() {
    local levels=$2 c0 c1 live
    use_store "$1"
    expect_ok tdvol init deep || abort
    live=$(tdvol path deep)
    expect_ok tdvol commit -m empty deep || abort
    c0=$OUT
    deep_chain "$live" "$levels"
    expect_ok tdvol commit -m "$levels levels" deep || abort
    c1=$OUT
    expect_ok tdvol status --json deep
    json_check "a $levels-level tree just committed is clean" 'd["clean"] is True'
    expect_ok tdvol fsck
    # gc marks through every level (and drops nothing: the branch names the deep commit).
    expect_ok tdvol gc
    expect_ok tdvol reset --hard "$c0" deep
    expect_eq "reset to the empty commit removes all $levels levels" "" "$(ls -A "$live")"
    expect_ok tdvol reset --hard "$c1" deep
    expect_eq "reset to the deep commit restores every level and the file at the bottom" "$levels bottom" "$(chain_depth "$live")"
    expect_ok tdvol status --json deep
    json_check "and the live directory is clean" 'd["clean"] is True'
    # The chain goes with its volume (rm removes without recursion too).
    expect_ok tdvol rm -f deep
    check "rm removes the deep volume's directory" test ! -e "$DVOL_ROOT/volumes/deep"
}

# --- 1. Deep nesting --------------------------------------------------------------------------
# A container can nest directories as deep as it likes; commit and status crashed (exit 139)
# past about 5,400 levels with an 8 MiB stack, fsck and reset on deeper trees. 6,000 levels as
# in the issue, on the test's own file system; 100,000 on a tmpfs when root (rmdir of each
# level costs milliseconds on some disks).
if section 1; then
echo "== deep nesting: 6,000 levels"
deep_round deep6k 6000
if [ "$IS_ROOT" = 1 ] && mkdir -p "$TEST_TMP/deepfs" && mount -t tmpfs -o size=1g tmpfs "$TEST_TMP/deepfs" 2>/dev/null; then
    MOUNTS+=("$TEST_TMP/deepfs")
    echo "== deep nesting: 100,000 levels (on a tmpfs)"
    TEST_TMP_SAVED=$TEST_TMP
    TEST_TMP="$TEST_TMP/deepfs"
    deep_round deep100k 100000
    TEST_TMP=$TEST_TMP_SAVED
    umount "$TEST_TMP/deepfs" && MOUNTS=()
else
    echo "note: 100,000 levels skipped: not root, or a tmpfs cannot be mounted here"
fi
fi

# --- 4. A live directory replaced by a symlink ------------------------------------------------
# With volumes/lv/data a symlink to another directory, reset --hard HEAD deleted that
# directory's files and wrote the commit there. The live directory is opened with O_NOFOLLOW:
# every command that reads or writes it refuses, naming it, and changes nothing.
if section 4; then
echo "== a symlinked live directory"
use_store symlinked
expect_ok tdvol init lv || abort
LV=$(tdvol path lv)
echo "committed" >"$LV/a.txt"
expect_ok tdvol commit -m A lv || abort
OTHER="$TEST_TMP/other"
mkdir -p "$OTHER/sub"
echo "precious" >"$OTHER/precious"
echo "also precious" >"$OTHER/sub/more"
OTHER_BEFORE=$(manifest "$OTHER")
mv "$LV" "$TEST_TMP/lv-data"
ln -s "$OTHER" "$LV"
expect_ok tdvol checkout -b other lv  # moves no data: allowed
REFS_BEFORE=$(refs_state lv)
for cmd in "reset --hard HEAD lv" "reset --hard master lv" "checkout -f master lv" "commit -m B lv" "status lv" \
    "diff --volume lv"; do
    # shellcheck disable=SC2086  # the command's words
    expect_fail 1 tdvol $cmd
    expect_stderr_contains "is a symlink, not a directory"
done
expect_eq "nothing in the symlink's target changed" "$OTHER_BEFORE" "$(manifest "$OTHER")"
expect_eq "no branch moved, no commit was made" "$REFS_BEFORE" "$(refs_state lv)"
rm "$LV"
mv "$TEST_TMP/lv-data" "$LV"
expect_ok tdvol checkout master lv
expect_ok tdvol reset --hard HEAD lv
expect_eq "with the directory back, the live directory holds the commit" "committed" "$(cat "$LV/a.txt")"
fi

# --- 7. Trees fsck accepts but reset cannot restore -------------------------------------------
# A hard link whose target came later (reset moved the branch, deleted files, then failed every
# time) and an extent claiming 64 MiB for a 22-byte chunk (reset wrote 22 bytes and zeros) were
# accepted by fsck. hostile_trees.py writes hand-made trees straight into fresh stores, random
# valid ones and one per rule of FORMAT.md broken, and checks the rule: whatever fsck accepts,
# reset restores exactly; whatever reset refuses, it refuses before changing anything (and every
# broken rule is refused by both).
if section 7; then
echo "== hand-made hostile trees"
mkdir -p "$TEST_TMP/trees"
run python3 "$(dirname "$0")/hostile_trees.py" "$DVOL" "$TEST_TMP/trees" 40 17
printf '%s\n' "$OUT" | tail -n 5
check "every hand-made tree keeps the rule (fsck accepts => reset restores exactly; refusals change nothing)" test "$RC" = 0
fi

finish
