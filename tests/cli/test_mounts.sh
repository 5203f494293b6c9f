#!/usr/bin/env bash
# Hostile file systems: mounts in and at live directories, and a full disk. The regression tests
# of the issue "Hostile data and hostile file systems" that need mount(8), hence root:
#   - rm -f of a volume whose live directory is a mount point deleted the mount's files, failed,
#     and left a leftover that made every later commit, reset and gc of every volume fail;
#   - reset --hard deleted files outside the live directory through a bind mount inside it,
#     then failed with the branch already moved;
#   - a full disk during reset reported the database's error, not the file write that failed;
#     and after any failure once the branch has moved, 'reset --hard HEAD' finishes the job.
# Everything it mounts is under the test's directory and unmounted on exit.
# shellcheck source=tests/cli/lib.sh disable=SC2016  # checks eval single-quoted tests on purpose
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: mounting needs root"
    exit 77
fi
mkdir -p "$TEST_TMP/probe"
if ! mount -t tmpfs tmpfs "$TEST_TMP/probe" 2>/dev/null; then
    echo "SKIP: mount -t tmpfs is not permitted here (a container without CAP_SYS_ADMIN?)"
    exit 77
fi
umount "$TEST_TMP/probe"

MOUNTS=()
# mnt ARGS... TARGET: mount, remembering TARGET to unmount on exit.
mnt() {
    local target=${*: -1}
    mount "$@" || return 1
    MOUNTS+=("$target")
}
unmount_all() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        mountpoint -q "${MOUNTS[i]}" && { umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}"; }
    done
    MOUNTS=()
}
trap 'unmount_all; cleanup' EXIT

# --- 3. A bind mount inside a live directory --------------------------------------------------
# reset --hard deleted /tmp/outside/precious through "$(dvol path bm)/m", then failed with the
# branch moved. It must refuse, naming the mount, before changing anything.
echo "== a bind mount inside the live directory"
use_store bind
expect_ok tdvol init bm || abort
BM=$(tdvol path bm)
mkdir -p "$BM/m"
echo "a" >"$BM/a.txt"
expect_ok tdvol commit -m A bm || abort
A=$OUT
echo "b" >"$BM/b.txt"
expect_ok tdvol commit -m B bm || abort
expect_ok tdvol checkout -b side bm || abort
expect_ok tdvol checkout master bm || abort
OUTSIDE="$TEST_TMP/outside"
mkdir -p "$OUTSIDE/deeper"
echo "precious" >"$OUTSIDE/precious"
echo "precious too" >"$OUTSIDE/deeper/more"
touch "$BM/fm"
mnt --bind "$OUTSIDE" "$BM/m" || abort
OUTSIDE_BEFORE=$(manifest "$OUTSIDE")
REFS_BEFORE=$(refs_state bm)
LIVE_BEFORE=$(manifest "$BM")
for cmd in "reset --hard $A bm" "reset --hard HEAD bm" "checkout -f side bm"; do
    # shellcheck disable=SC2086  # the command's words
    expect_fail 1 tdvol $cmd
    expect_stderr_contains "$BM/m is a mount point"
    expect_stderr_one_line
done
expect_eq "nothing outside the live directory changed" "$OUTSIDE_BEFORE" "$(manifest "$OUTSIDE")"
expect_eq "the branch did not move" "$REFS_BEFORE" "$(refs_state bm)"
expect_eq "the live directory did not change" "$LIVE_BEFORE" "$(manifest "$BM")"
umount "$BM/m"
# A file bind-mounted over an entry: writing it would write the file outside.
mnt --bind "$OUTSIDE/precious" "$BM/fm" || abort
expect_fail 1 tdvol reset --hard "$A" bm
expect_stderr_contains "$BM/fm is a mount point"
expect_eq "the file outside is intact" "precious" "$(cat "$OUTSIDE/precious")"
umount "$BM/fm"
expect_ok tdvol reset --hard "$A" bm
expect_eq "without the mounts, the reset goes ahead" "a" "$(cat "$BM/a.txt")"
check "and removes what A does not have" test ! -e "$BM/b.txt"
expect_eq "and the directory outside is still intact" "$OUTSIDE_BEFORE" "$(manifest "$OUTSIDE")"

# --- 2. A live directory that is a mount point -------------------------------------------------
# rm -f deleted the rows and the mount's files, then failed on tmp/rm-*/data (busy), and from
# then on every commit, reset and gc of every volume failed. A live directory may be a file
# system of its own (commit, reset and status work in it), but rm refuses before deleting
# anything, and a leftover the cleaner cannot remove never blocks another command.
echo "== a live directory that is a mount point"
use_store mounted
expect_ok tdvol init other || abort
OTHER=$(tdvol path other)
echo "other" >"$OTHER/o.txt"
expect_ok tdvol commit -m O other || abort
expect_ok tdvol init mv || abort
MV=$(tdvol path mv)
echo "before" >"$MV/x.txt"
expect_ok tdvol commit -m X mv || abort
X=$OUT
mnt -t tmpfs -o size=16m tmpfs "$MV" || abort
echo "in the tmpfs" >"$MV/t.txt"
expect_ok tdvol status --json mv
json_check "status sees the tmpfs's content as the live directory's" 'any(c["path"] == "t.txt" for c in d["changes"])'
expect_ok tdvol reset --hard "$X" mv
expect_eq "reset restores into the mounted live directory" "before" "$(cat "$MV/x.txt")"
echo "in the tmpfs" >"$MV/t.txt"
expect_ok tdvol commit -m T mv
expect_fail 1 tdvol rm -f mv
expect_stderr_contains "cannot remove volume mv: $MV is a mount point (tmpfs)"
expect_stderr_one_line
expect_ok tdvol list
expect_stdout_contains "mv"
expect_eq "the mount's files are intact" "in the tmpfs" "$(cat "$MV/t.txt")"
check "nothing was moved to tmp/" test -z "$(ls -A "$DVOL_ROOT/tmp")"
# Every other command on every volume still works.
echo "more" >>"$OTHER/o.txt"
expect_ok tdvol commit -m O2 other
expect_ok tdvol reset --hard HEAD^ other
expect_ok tdvol gc
expect_ok tdvol fsck
umount "$MV"
expect_ok tdvol rm -f mv
check "with the mount gone, rm removes the volume" test ! -e "$DVOL_ROOT/volumes/mv"

# The leftover of an rm by an earlier dvol: a removed volume's directory in tmp/ with a mount in
# it. The cleaner leaves it (and never enters the mount); other commands go on.
LEFT="$DVOL_ROOT/tmp/rm-0123456789abcdef0123456789abcdef"
mkdir -p "$LEFT/data"
mnt -t tmpfs -o size=1m tmpfs "$LEFT/data" || abort
echo "not dvol's to delete" >"$LEFT/data/keep"
echo "garbage" >"$LEFT/junk"
touch -d '2 hours ago' "$LEFT" "$LEFT/junk"
echo "again" >>"$OTHER/o.txt"
expect_ok tdvol commit -m O3 other
expect_ok tdvol reset --hard HEAD^ other
expect_ok tdvol gc
expect_eq "the cleaner did not enter the mount" "not dvol's to delete" "$(cat "$LEFT/data/keep")"
umount "$LEFT/data"
touch -d '2 hours ago' "$LEFT"
expect_ok tdvol gc
check "once unmounted, the leftover is removed" test ! -e "$LEFT"

# --- a full disk during reset, and the reset contract ------------------------------------------
# The restore's failed write is what the user must hear about, not the database error that
# follows it on the same full disk. The branch has moved by then (git's contract: everything
# that can be refused is refused before); once space is freed, reset --hard HEAD finishes.
echo "== a full disk during reset"
FULL="$TEST_TMP/full"
mkdir -p "$FULL"
mnt -t tmpfs -o size=48m tmpfs "$FULL" || abort
export DVOL_ROOT="$FULL/store"
mkdir -p "$DVOL_ROOT"
expect_ok tdvol init fv || abort
FV=$(tdvol path fv)
echo "small" >"$FV/small.txt"
expect_ok tdvol commit -m small fv || abort
SMALL=$OUT
random_file "$FV/big.bin" $((16 * MIB))
expect_ok tdvol commit -m big fv || abort
BIG=$OUT
BIG_MANIFEST=$(manifest "$FV")
expect_ok tdvol reset --hard "$SMALL" fv || abort
# Leave about 4 MiB free: the pack (16 MiB) is in the store, big.bin is not in the live directory.
avail=$(df --output=avail -k "$FULL" | tail -n 1)
head -c $(((avail - 4096) * 1024)) /dev/zero >"$FULL/filler" 2>/dev/null
expect_fail 1 tdvol reset --hard "$BIG" fv
expect_stderr_contains "big.bin: No space left on device"
expect_stderr_contains "once this is fixed, 'dvol reset --hard HEAD' finishes the restore"
expect_stderr_one_line
check "the database's error is not what is reported: $ERR" eval '[[ "$ERR" != *"database or disk is full"* ]]'
expect_ok tdvol log --json fv
json_check "the branch names the target (git's contract)" "d[0]['id'] == '$BIG'"
rm -f "$FULL/filler"
expect_ok tdvol reset --hard HEAD fv
expect_eq "reset --hard HEAD finishes the job" "$BIG_MANIFEST" "$(manifest "$FV")"
expect_ok tdvol status --json fv
json_check "and the live directory is clean" 'd["clean"] is True'
expect_ok tdvol fsck

unmount_all
finish
