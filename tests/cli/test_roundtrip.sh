#!/usr/bin/env bash
# Everything a commit records comes back exactly: contents, types, permission bits, owners,
# mtimes, symlinks (dangling ones too), empty and nested directories, through reset --hard and
# through checkout between branches.
# shellcheck source=tests/cli/lib.sh disable=SC2016  # checks eval single-quoted tests on purpose
. "$(dirname "$0")/lib.sh"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
[ "$IS_ROOT" = 1 ] || echo "note: not root, owners are not changed (only checked to be kept)"

expect_ok dvol init rt || abort
P=$(dvol path)

# Builds the first state of the volume.
build_tree() {
    mkdir -p "$P/nested/a/b/c/d" "$P/empty" "$P/empty2/inner_empty" "$P/private" "$P/shared"
    echo "hello" >"$P/hello.txt"
    printf 'no newline at the end' >"$P/nonl.txt"
    : >"$P/empty.txt"
    head -c 300000 /dev/urandom >"$P/random.bin"
    head -c 3000000 /dev/urandom >"$P/nested/a/b/c/d/deep.bin"
    seq 1 100000 >"$P/nested/a/numbers.txt"
    echo "secret" >"$P/private/key"
    echo "run me" >"$P/script.sh"
    echo "read only" >"$P/readonly.txt"
    echo "setuid" >"$P/suid"
    echo "spaces" >"$P/name with spaces.txt"
    echo "dash" >"$P/-leading-dash"
    echo "utf8" >"$P/caf$(printf '\303\251').txt"
    echo "star" >"$P/weird*name?[x]"
    echo "long" >"$P/$(printf 'n%.0s' $(seq 1 250)).txt"
    ln -s hello.txt "$P/link-rel"
    ln -s /etc/hostname "$P/link-abs"
    ln -s does/not/exist "$P/link-dangling"
    ln -s nested/a "$P/link-dir"
    ln -s ../../hello.txt "$P/nested/a/link-up"
    chmod 0600 "$P/private/key"
    chmod 0755 "$P/script.sh"
    chmod 0444 "$P/readonly.txt"
    chmod 4755 "$P/suid"
    chmod 0700 "$P/private"
    chmod 2775 "$P/shared"
    chmod 1777 "$P/empty2"
    chmod 0750 "$P/nested/a/b"
    if [ "$IS_ROOT" = 1 ]; then
        chown 1234:5678 "$P/hello.txt" "$P/nested/a" "$P/random.bin"
        chown 0:4321 "$P/script.sh"
        chown 4000000000:3000000000 "$P/nested/a/numbers.txt"
        chown -h 2222:3333 "$P/link-rel" "$P/link-dangling"
        chown 1234:1234 "$P/private" "$P/private/key"
        chmod 0700 "$P/private"  # chown may clear bits; set them again
        chmod 4755 "$P/suid"
    fi
    # mtimes last (deepest first, so creating entries does not move a parent's mtime again),
    # with nanoseconds, before 1970 too.
    touch -d '2001-02-03 04:05:06.123456789' "$P/hello.txt"
    touch -d '1969-07-20 20:17:40.5' "$P/nonl.txt"
    touch -d '2038-01-19 03:14:08' "$P/random.bin"
    touch -d '2010-10-10 10:10:10.000000001' "$P/nested/a/b/c/d/deep.bin"
    touch -h -d '2005-05-05 05:05:05.555' "$P/link-rel"
    touch -h -d '2006-06-06 06:06:06' "$P/link-dangling"
    local d
    for d in nested/a/b/c/d nested/a/b/c nested/a/b nested/a nested empty empty2/inner_empty empty2 private shared; do
        touch -d "2015-03-0$((RANDOM % 9 + 1)) 12:34:56.$RANDOM" "$P/$d"
    done
}

build_tree
L1=$(tree_listing "$P")
L1_NODIR=$(TREE_NO_DIR_MTIME=1 tree_listing "$P")
check "the first state has many entries" test "$(wc -l <<<"$L1")" -gt 40
expect_ok dvol commit -m "state 1" || abort
C1=$OUT
expect_eq "commit does not change the live directory" "$L1" "$(tree_listing "$P")"
expect_ok dvol status
expect_stdout_contains "nothing to commit"

# Changes everything about the tree.
change_everything() {
    echo "changed" >>"$P/hello.txt"
    head -c 1000 /dev/urandom | dd of="$P/random.bin" bs=1 seek=150000 conv=notrunc status=none
    rm "$P/nonl.txt"
    : >"$P/nested/a/numbers.txt"
    echo "now has content" >"$P/empty.txt"
    rm -r "$P/nested/a/b"
    rmdir "$P/empty"
    echo "file where a directory was" >"$P/empty"
    rm "$P/readonly.txt"
    mkdir "$P/readonly.txt"
    echo "new" >"$P/empty2/inner_empty/new.txt"
    rm "$P/link-rel"
    ln -s nonl.txt "$P/link-rel"
    rm "$P/link-dangling"
    echo "not a link" >"$P/link-dangling"
    rm "$P/link-dir"
    mkdir "$P/link-dir"
    rm "$P/hello.txt"
    echo "hello" >"$P/hello.txt"
    chmod 0644 "$P/private/key" "$P/suid"
    chmod 0755 "$P/private" "$P/shared" "$P/empty2"
    chmod 0600 "$P/script.sh"
    touch -d '2020-01-01' "$P/random.bin" "$P/caf$(printf '\303\251').txt"
    if [ "$IS_ROOT" = 1 ]; then
        chown 0:0 "$P/nested/a" "$P/private/key"
        chown 42:42 "$P/name with spaces.txt"
    fi
    mkdir -p "$P/brand/new/tree"
    echo "added" >"$P/brand/new/tree/file"
    ln -s ../.. "$P/brand/new/up"
    rm "$P/-leading-dash"
}

change_everything
L_CHANGED=$(tree_listing "$P")
check "the change made a difference" test "$L1" != "$L_CHANGED"
expect_ok dvol status --json
json_check "status sees many changes" 'd["clean"] is False and len(d["changes"]) >= 20'
json_check "status sees the mode change of private/key" \
    'any(c["path"] == "private/key" and c["status"] == "metadata" for c in d["changes"])'
if [ "$IS_ROOT" = 1 ]; then
    json_check "status sees the owner change" \
        'any(c["path"] == "name with spaces.txt" and c["status"] == "metadata" and any("owner" in x for x in c["details"]) for c in d["changes"])'
fi
json_check "status sees the type change of empty (dir -> file)" \
    'any(c["path"] == "empty" and c["status"] in ("typechange", "added", "deleted") for c in d["changes"])'

expect_ok dvol reset --hard HEAD || abort
expect_stdout_eq "HEAD is now at ${C1:0:12} state 1"
L_AFTER=$(tree_listing "$P")
expect_eq "reset --hard HEAD restores every entry, byte, mode, owner and mtime" "$L1" "$L_AFTER"
# The same without directory mtimes, to tell a lost directory mtime from anything else.
expect_eq "reset --hard HEAD restores everything but directory mtimes" \
    "$L1_NODIR" "$(TREE_NO_DIR_MTIME=1 tree_listing "$P")"
expect_ok dvol status
expect_stdout_contains "nothing to commit"

# Commit the changed state, then move between the two commits.
change_everything
L2=$(tree_listing "$P")
expect_ok dvol commit -m "state 2" || abort
C2=$OUT
expect_eq "commit of state 2 does not change the live directory" "$L2" "$(tree_listing "$P")"
expect_ok dvol reset --hard HEAD^
expect_eq "reset --hard HEAD^ restores state 1" "$L1" "$(tree_listing "$P")"
expect_ok dvol status
expect_stdout_contains "nothing to commit"
expect_ok dvol reset --hard "$C2"
expect_eq "reset --hard to state 2's id restores state 2" "$L2" "$(tree_listing "$P")"
expect_ok dvol reset --hard "$C1"
expect_eq "and back to state 1" "$L1" "$(tree_listing "$P")"

# A change that keeps size and mtime is still seen (the stat cache also looks at ctime).
sleep 1.1
cp -p "$P/hello.txt" "$TEST_TMP/hello.saved"
printf 'HELLO\n' >"$P/hello.txt"
touch -r "$TEST_TMP/hello.saved" "$P/hello.txt"
expect_eq "same size" "$(stat -c %s "$TEST_TMP/hello.saved")" "$(stat -c %s "$P/hello.txt")"
expect_ok dvol status --json
json_check "a same-size same-mtime edit shows as modified" \
    '[(c["path"], c["status"]) for c in d["changes"]] == [("hello.txt", "modified")]'
expect_ok dvol reset --hard HEAD
expect_eq "hello.txt content restored" "hello" "$(cat "$P/hello.txt")"
expect_eq "and the whole tree" "$L1" "$(tree_listing "$P")"

# The live directory's own mode.
chmod 0750 "$P"
expect_ok dvol status --json
json_check "a mode change of the live directory itself shows" 'd["clean"] is False'
expect_ok dvol reset --hard HEAD
expect_eq "reset restores the mode of the live directory" 755 "$(stat -c %a "$P")"
chmod 0755 "$P"

# --- checkout between two branches with different content ------------------------------------------
expect_ok dvol checkout -b other || abort
expect_eq "checkout -b keeps the live data" "$L1" "$(tree_listing "$P")"
rm -r "$P/nested"
echo "only on other" >"$P/other.txt"
chmod 0640 "$P/other.txt"
touch -d '1999-12-31 23:59:59.999999999' "$P/other.txt"
ln -s other.txt "$P/link-rel2"
head -c 500000 /dev/urandom >"$P/random.bin"
L_OTHER=$(tree_listing "$P")
expect_ok dvol commit -m "other" || abort
expect_ok dvol checkout master
expect_eq "checkout master restores master's state exactly" "$L1" "$(tree_listing "$P")"
expect_ok dvol checkout other
expect_eq "checkout other restores other's state exactly" "$L_OTHER" "$(tree_listing "$P")"
expect_ok dvol checkout master
expect_eq "and master again" "$L1" "$(tree_listing "$P")"
expect_ok dvol status
expect_stdout_contains "nothing to commit"

# --- things the tree format records beyond the basics --------------------------------------------------
# Each one separately, so a missing feature shows by name.
expect_ok dvol checkout -b extras || abort
echo "linked" >"$P/hl1"
ln "$P/hl1" "$P/hl2"
mkdir -p "$P/hldir"
ln "$P/hl1" "$P/hldir/hl3"
expect_ok dvol commit -m "hardlinks"
rm "$P/hl2" "$P/hldir/hl3"
echo "linked" >"$P/hl2"
expect_ok dvol reset --hard HEAD
expect_eq "hard links come back as one inode (link count)" "3 3 3" \
    "$(stat -c %h "$P/hl1" "$P/hl2" "$P/hldir/hl3" 2>&1 | tr '\n' ' ' | sed 's/ $//')"
expect_eq "hard links come back as one inode (inode numbers)" 1 \
    "$(stat -c %i "$P/hl1" "$P/hl2" "$P/hldir/hl3" 2>/dev/null | sort -u | wc -l)"

mkfifo "$P/fifo"
expect_ok dvol commit -m "fifo"
rm "$P/fifo"
expect_ok dvol reset --hard HEAD
check "a fifo comes back" test -p "$P/fifo"

if [ "$IS_ROOT" = 1 ] && mknod "$P/nulldev" c 1 3 2>/dev/null; then
    expect_ok dvol commit -m "device"
    rm "$P/nulldev"
    expect_ok dvol reset --hard HEAD
    check "a character device comes back" test -c "$P/nulldev"
    expect_eq "with its numbers" "1 3" "$(stat -c '%t %T' "$P/nulldev" 2>&1)"
else
    echo "note: cannot make device nodes here; device round trip not checked"
fi

# A sparse file: content exact, and the hole stays a hole.
truncate -s 64M "$P/sparse"
printf 'start' | dd of="$P/sparse" conv=notrunc status=none
printf 'end' | dd of="$P/sparse" bs=1 seek=$((64 * 1024 * 1024 - 3)) conv=notrunc status=none
SPARSE_SUM=$(sha256sum <"$P/sparse")
expect_ok dvol commit -m "sparse"
rm "$P/sparse"
expect_ok dvol reset --hard HEAD
expect_eq "the sparse file's bytes" "$SPARSE_SUM" "$(sha256sum <"$P/sparse")"
check "the sparse file stays sparse (under 8 MiB allocated of 64 MiB)" \
    test "$(du -k "$P/sparse" | cut -f1)" -lt 8192

# Extended attributes, set through python3 (setfattr is often not installed).
xattr() { python3 -c '
import os, sys
op, path, name = sys.argv[1:4]
if op == "set": os.setxattr(path, name, sys.argv[4].encode(), follow_symlinks=False)
elif op == "del": os.removexattr(path, name, follow_symlinks=False)
else: sys.stdout.write(os.getxattr(path, name, follow_symlinks=False).decode())
' "$@"; }
if xattr set "$P/hl1" user.dvoltest probe 2>/dev/null; then
    xattr set "$P/hello.txt" user.colour blue
    xattr set "$P/hldir" user.dir "a directory's xattr"
    expect_ok dvol commit -m "xattr"
    xattr del "$P/hello.txt" user.colour
    xattr set "$P/hldir" user.dir "changed"
    expect_ok dvol status --json
    json_check "removing an xattr shows as a metadata change" \
        'any(c["path"] == "hello.txt" and c["status"] == "metadata" and "xattrs" in " ".join(c["details"]) for c in d["changes"])'
    json_check "changing a directory's xattr shows as a metadata change" \
        'any(c["path"] == "hldir" and c["status"] == "metadata" for c in d["changes"])'
    expect_ok dvol reset --hard HEAD
    expect_eq "a file's xattr comes back" "blue" "$(xattr get "$P/hello.txt" user.colour 2>&1)"
    expect_eq "a directory's xattr comes back" "a directory's xattr" "$(xattr get "$P/hldir" user.dir 2>&1)"
else
    echo "note: no user xattrs on this file system; xattrs not checked"
fi

# Files committed separately but hard-linked in the live directory since: restoring one must not
# change the other through the shared inode.
echo "first" >"$P/sep1"
echo "second" >"$P/sep2"
expect_ok dvol commit -m "separate files"
rm "$P/sep2"
ln "$P/sep1" "$P/sep2"
echo "changed through the link" >"$P/sep2"
expect_ok dvol reset --hard HEAD
expect_eq "the first file's own content" "first" "$(cat "$P/sep1")"
expect_eq "the second file's own content" "second" "$(cat "$P/sep2")"
expect_eq "two inodes again" "1 1" "$(stat -c %h "$P/sep1" "$P/sep2" | tr '\n' ' ' | sed 's/ $//')"
expect_ok dvol status
expect_stdout_contains "nothing to commit"

finish
