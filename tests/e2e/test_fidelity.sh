#!/usr/bin/env bash
# Fidelity of commit / reset --hard / checkout: a tree holding everything a commit records
# (regular, empty and sparse files, a sparse file over 4 GiB, empty and nested directories,
# symlinks (dangling too), a hard-link group of 3 across directories, user xattrs and POSIX
# ACLs, setuid/setgid/sticky bits, fifos, devices, nanosecond mtimes before 1970 and after
# 2038, numeric owners, names with newlines, tabs, backslashes, 0xff bytes, leading dashes,
# spaces and UTF-8) is snapshotted into a JSON manifest by compare_trees.py; then everything is
# changed, and `reset --hard HEAD` and `checkout` between branches must bring back exactly the
# manifest's state: type, content, all 12 mode bits, uid, gid, mtime_ns, xattrs, which paths
# share an inode, and the allocated size (a sparse file stays sparse).
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/../cli/lib.sh"

# shellcheck source=tests/e2e/fidelity_tree.sh
. "$(dirname "$0")/fidelity_tree.sh"

CMP="$(cd "$(dirname "$0")" && pwd)/compare_trees.py"
command -v python3 >/dev/null || { echo "SKIP: python3 is needed for the tree comparator"; exit 77; }

# compare_with WHAT MANIFEST: the live directory must match MANIFEST exactly.
compare_with() {
    run python3 "$CMP" compare "$2" "$P"
    if [ "$RC" -eq 0 ]; then
        pass
    else
        fail "$1" "$(printf '%s\n%s' "$OUT" "$ERR" | head -c 12000)"
    fi
}

snapshot_to() {
    python3 "$CMP" snapshot "$P" "$1" || { fail "snapshot of the live directory into $1"; abort; }
}

T_START=$(date +%s)
expect_ok dvol init fid || abort
P=$(dvol path)
fidelity_probe

# --- the first state (fidelity_tree.sh) ------------------------------------------------------------
build_tree
snapshot_to "$TEST_TMP/m1.json"
SUMMARY1=$(python3 "$CMP" summary "$TEST_TMP/m1.json")
echo "first state: $SUMMARY1"
OUT=$SUMMARY1
json_check "the first state has many entries" 'd["entries"] >= 70'
json_check "the first state holds a hard-link group of 3 and a pair" 'd["link_groups"] == [2, 3]'
json_check "the first state holds 3 sparse files, one over 4 GiB" 'd["sparse_files"] == 3 and d["max_size"] > 4 * 2**30'
json_check "the first state holds symlinks, fifos and directories" \
    'd["types"]["symlink"] >= 8 and d["types"]["fifo"] == 2 and d["types"]["dir"] >= 20'
[ "$MKNOD_OK" = 1 ] && json_check "the first state holds devices" 'd["types"]["chr"] == 2 and d["types"]["blk"] == 1'
[ "$XATTR_OK" = 1 ] && json_check "the first state holds xattrs" 'd["xattrs"] >= 10'
[ "$ACL_OK" = 1 ] && json_check "the first state holds ACLs (access and default)" 'd["acls"] >= 6'

t0=$(date +%s)
expect_ok dvol commit -m "state 1" || abort
C1=$OUT
echo "commit of the first state: $(($(date +%s) - t0)) s"
compare_with "commit does not change the live directory" "$TEST_TMP/m1.json"
expect_ok dvol status
expect_stdout_contains "nothing to commit"

# --- change everything (fidelity_tree.sh) -------------------------------------------------------------
change_everything
run python3 "$CMP" compare "$TEST_TMP/m1.json" "$P"
DIFFS=$OUT
check "the comparator sees the changes" test "$RC" -eq 1
for what in "content differs" ": type:" ": mode:" ": mtime_ns:" ": missing" ": unexpected" ": links:" \
    "allocated bytes" ": target:"; do
    check "the comparator reports '$what' after the change" grep -qF -- "$what" <<<"$DIFFS"
done
[ "$IS_ROOT" = 1 ] && check "the comparator reports owner changes" grep -qE ': (uid|gid):' <<<"$DIFFS"
[ "$XATTR_OK" = 1 ] && check "the comparator reports xattr changes" grep -qF ': xattr user.' <<<"$DIFFS"
[ "$ACL_OK" = 1 ] && check "the comparator reports ACL changes" grep -qF 'xattr system.posix_acl' <<<"$DIFFS"
echo "the change made $(grep -c '' <<<"$DIFFS") difference lines"

expect_ok dvol status
check "status sees many changes" test "$(grep -cE '^  (added|deleted|modified|typechange|metadata): ' <<<"$OUT")" -ge 40
expect_ok dvol status --json
json_check "status --json sees many changes" 'd["clean"] is False and len(d["changes"]) >= 40'

t0=$(date +%s)
expect_ok dvol reset --hard HEAD || abort
echo "reset --hard HEAD: $(($(date +%s) - t0)) s"
expect_stdout_eq "HEAD is now at ${C1:0:12} state 1"
compare_with "reset --hard HEAD brings back the first state exactly" "$TEST_TMP/m1.json"
expect_ok dvol status
expect_stdout_contains "nothing to commit"
expect_ok dvol reset --hard HEAD
compare_with "a second reset --hard HEAD changes nothing" "$TEST_TMP/m1.json"

# --- through checkout between branches --------------------------------------------------------------
expect_ok dvol checkout -b other || abort
compare_with "checkout -b keeps the live directory" "$TEST_TMP/m1.json"

# The other branch: a different tree of the same kinds of things.
change_other
snapshot_to "$TEST_TMP/m2.json"
t0=$(date +%s)
expect_ok dvol commit -m "other" || abort
echo "commit on other: $(($(date +%s) - t0)) s"
compare_with "commit on other does not change the live directory" "$TEST_TMP/m2.json"

expect_ok dvol checkout master
compare_with "checkout master brings back the first state exactly" "$TEST_TMP/m1.json"
expect_ok dvol status
expect_stdout_contains "nothing to commit"
expect_ok dvol checkout other
compare_with "checkout other brings back other's state exactly" "$TEST_TMP/m2.json"
expect_ok dvol checkout master
compare_with "and master again" "$TEST_TMP/m1.json"

# checkout --force over uncommitted changes of everything, both ways.
change_everything
expect_fail 1 dvol checkout other
expect_stderr_contains "uncommitted changes"
t0=$(date +%s)
expect_ok dvol checkout --force other
echo "checkout --force other over changes: $(($(date +%s) - t0)) s"
compare_with "checkout --force other discards the changes and brings other's state" "$TEST_TMP/m2.json"
expect_ok dvol checkout master
compare_with "checkout master from other once more" "$TEST_TMP/m1.json"
expect_ok dvol status
expect_stdout_contains "nothing to commit"

# --- the live directory's own xattrs ---------------------------------------------------------------
# Checked apart from the big tree, so that a failure here does not hide anything else.
if [ "$XATTR_OK" = 1 ]; then
    xa set "$P" user.live-root "the live directory itself"
    expect_ok dvol status
    check "status sees an xattr added to the live directory itself" grep -q "Changes not committed" <<<"$OUT"
    expect_ok dvol commit -m "root xattr" || abort
    snapshot_to "$TEST_TMP/m3.json"
    xa del "$P" user.live-root
    xa set "$P" user.other-root "x"
    expect_ok dvol status
    check "status sees xattrs of the live directory itself changed" grep -q "Changes not committed" <<<"$OUT"
    expect_ok dvol reset --hard HEAD
    compare_with "reset --hard HEAD restores the xattrs of the live directory itself" "$TEST_TMP/m3.json"
    expect_ok dvol checkout other
    expect_ok dvol checkout master
    compare_with "checkout restores the xattrs of the live directory itself" "$TEST_TMP/m3.json"
fi

echo "runtime: $(($(date +%s) - T_START)) s"
finish
