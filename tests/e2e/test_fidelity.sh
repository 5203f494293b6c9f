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

CMP="$(cd "$(dirname "$0")" && pwd)/compare_trees.py"
command -v python3 >/dev/null || { echo "SKIP: python3 is needed for the tree comparator"; exit 77; }

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
[ "$IS_ROOT" = 1 ] || echo "note: not root: owners, devices and mode-0000 files are not exercised"

GiB=$((1024 * 1024 * 1024))
MiB=$((1024 * 1024))

# xa OP ARGS...: extended attributes through python3 (setfattr/setfacl are often missing).
#   xa set PATH NAME VALUE         VALUE as text
#   xa sethex PATH NAME HEX        VALUE as hex bytes
#   xa del PATH NAME
#   xa acl PATH access|default SPEC    SPEC like "u::rw,u:1234:rwx,g::r,g:99:rx,m::rwx,o::r"
xa() {
    python3 - "$@" <<'EOF'
import os, struct, sys
op, path, name = sys.argv[1], os.fsencode(sys.argv[2]), sys.argv[3]
if op == "set":
    os.setxattr(path, name, os.fsencode(sys.argv[4]), follow_symlinks=False)
elif op == "sethex":
    os.setxattr(path, name, bytes.fromhex(sys.argv[4]), follow_symlinks=False)
elif op == "del":
    os.removexattr(path, name, follow_symlinks=False)
elif op == "acl":
    tags = {"u": (1, 2), "g": (4, 8), "m": (0x10, 0x10), "o": (0x20, 0x20)}
    entries = []
    for item in sys.argv[4].split(","):
        kind, qual, perms = item.split(":")
        perm = (4 if "r" in perms else 0) | (2 if "w" in perms else 0) | (1 if "x" in perms else 0)
        tag = tags[kind][1 if qual else 0]
        entries.append((tag, perm, int(qual) if qual else 0xFFFFFFFF))
    entries.sort(key=lambda e: (e[0], e[2]))
    value = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    os.setxattr(path, "system.posix_acl_" + name, value, follow_symlinks=False)
else:
    sys.exit("unknown op " + op)
EOF
}

# put_random FILE OFFSET BYTES: random bytes at OFFSET, the rest of FILE untouched.
put_random() {
    head -c "$3" /dev/urandom |
        dd of="$1" bs=64K seek="$2" oflag=seek_bytes conv=notrunc iflag=fullblock status=none
}

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

# --- what this file system and user can do ---------------------------------------------------------
XATTR_OK=0
ACL_OK=0
MKNOD_OK=0
: >"$P/.probe"
if xa set "$P/.probe" user.probe x 2>/dev/null; then XATTR_OK=1; fi
if xa acl "$P/.probe" access "u::rw,u:1234:r,g::r,m::r,o::r" 2>/dev/null; then ACL_OK=1; fi
if [ "$IS_ROOT" = 1 ] && mknod "$P/.probe-dev" c 1 3 2>/dev/null; then MKNOD_OK=1; fi
rm -f "$P/.probe" "$P/.probe-dev"
[ "$XATTR_OK" = 1 ] || echo "note: no user.* xattrs on this file system; xattrs not exercised"
[ "$ACL_OK" = 1 ] || echo "note: POSIX ACLs cannot be set here (system.posix_acl_access); ACLs not exercised"
[ "$MKNOD_OK" = 1 ] || echo "note: cannot create device nodes; devices not exercised"

# Names with odd bytes: newline, tab, backslash, 0xff, leading dash, spaces, UTF-8, control.
ODD_NAMES=(
    $'new\nline'
    $'tab\there'
    'back\slash'
    $'\xff\xfe-not-utf8'
    '-leading-dash'
    '--'
    ' spaces around '
    $'caf\xc3\xa9 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac'
    $'\x01ctrl\x7f'
    'quote"and'"'"'apostrophe'
)
ODD_DIR=$'odd dir\nwith newline \xff'

# --- the first state ------------------------------------------------------------------------------
build_tree() {
    mkdir -p "$P/nested/a/b/c/d/e" "$P/empty" "$P/empties/x/y/z" "$P/hl/a" "$P/hl/b/c" \
        "$P/sticky" "$P/sgid_dir" "$P/readonly_dir" "$P/$ODD_DIR/inner"
    echo "hello" >"$P/hello.txt"
    printf 'no newline at the end' >"$P/nonl.txt"
    : >"$P/empty.txt"
    head -c 300000 /dev/urandom >"$P/random.bin"
    head -c 2500000 /dev/urandom >"$P/nested/a/b/c/d/e/deep.bin"
    seq 1 100000 >"$P/nested/a/numbers.txt"
    local n i=0
    for n in "${ODD_NAMES[@]}"; do
        i=$((i + 1))
        printf 'odd name %d: %s\n' "$i" "$n" >"$P/$n"
        printf 'inside %d\n' "$i" >"$P/$ODD_DIR/$n"
    done
    echo "in the odd directory" >"$P/$ODD_DIR/inner/file"

    # Symlinks: relative, absolute, dangling, to a directory, upwards, to odd names.
    ln -s hello.txt "$P/link-rel"
    ln -s /etc/hostname "$P/link-abs"
    ln -s does/not/exist "$P/link-dangling"
    ln -s nested/a "$P/link-dir"
    ln -s ../../../hello.txt "$P/nested/a/b/link-up"
    ln -s "$ODD_DIR/inner" "$P/link-to-odd-dir"
    ln -s $'target\nwith newline\xff' "$P/link-odd-target"
    ln -s "$(printf 'x%.0s' $(seq 1 500))" "$P/link-long-target"

    # A hard-link group of 3 across directories, and a pair.
    echo "one inode, three names" >"$P/hl/a/one"
    ln "$P/hl/a/one" "$P/hl/b/c/two"
    ln "$P/hl/a/one" "$P/hl/three"
    head -c 70000 /dev/urandom >"$P/pair-1"
    ln "$P/pair-1" "$P/$ODD_DIR/pair-2"

    # Special files.
    mkfifo "$P/fifo"
    mkfifo "$P/nested/fifo-deep"
    if [ "$MKNOD_OK" = 1 ]; then
        mknod "$P/dev-null" c 1 3
        mknod "$P/nested/dev-blk" b 7 250
        mknod "$P/dev-big-numbers" c 300 70000
    fi

    # Sparse files: 2 GiB apparent with 3 MiB of data, and one over 4 GiB with data at the
    # start, past 4 GiB (unaligned) and at the very end.
    truncate -s $((2 * GiB)) "$P/sparse-2g"
    put_random "$P/sparse-2g" 0 $MiB
    put_random "$P/sparse-2g" $((GiB + 4097)) $MiB
    put_random "$P/sparse-2g" $((2 * GiB - MiB)) $MiB
    truncate -s $((4 * GiB + 3 * MiB + 7)) "$P/sparse-4g"
    put_random "$P/sparse-4g" 0 $MiB
    put_random "$P/sparse-4g" $((4 * GiB + 12345)) $MiB
    put_random "$P/sparse-4g" $((4 * GiB + 3 * MiB + 7 - 100000)) 100000
    # A small file that is all hole.
    truncate -s 5M "$P/all-hole"

    # Owners (before modes: chown clears setuid/setgid).
    if [ "$IS_ROOT" = 1 ]; then
        chown 1234:5678 "$P/hello.txt" "$P/nested/a" "$P/random.bin" "$P/fifo"
        chown 0:4321 "$P/nonl.txt"
        chown 4000000000:3000000000 "$P/nested/a/numbers.txt"
        chown -h 2222:3333 "$P/link-rel" "$P/link-dangling" "$P/link-odd-target"
        chown 77:88 "$P/hl/a/one" "$P/sparse-4g" "$P/$ODD_DIR" "$P/${ODD_NAMES[0]}" "$P/${ODD_NAMES[3]}"
        chown 1000:1000 "$P/sticky" "$P/sgid_dir" "$P/empties/x/y"
        chown 65534:65534 "$P/sparse-2g"
        [ "$MKNOD_OK" = 1 ] && chown 0:6 "$P/nested/dev-blk"
        chown 4294967294:4294967294 "$P/empty.txt"
    fi

    # Modes: setuid, setgid, sticky, all bits, none.
    echo "setuid" >"$P/suid"
    echo "setgid" >"$P/sgid"
    echo "everything" >"$P/all-bits"
    echo "sticky file" >"$P/sticky-file"
    chmod 4755 "$P/suid"
    chmod 2710 "$P/sgid"
    chmod 7777 "$P/all-bits"
    chmod 1644 "$P/sticky-file"
    chmod 6750 "$P/hl/a/one"
    chmod 1777 "$P/sticky"
    chmod 2775 "$P/sgid_dir"
    chmod 3770 "$P/empties/x/y"
    chmod 0750 "$P/nested/a/b"
    chmod 0640 "$P/fifo"
    chmod 0604 "$P/sparse-4g"
    chmod 0700 "$P/$ODD_DIR/inner"
    chmod 0400 "$P/${ODD_NAMES[2]}"
    echo "in a read-only dir" >"$P/readonly_dir/file"
    chmod 0555 "$P/readonly_dir"
    if [ "$IS_ROOT" = 1 ]; then
        echo "no permissions at all" >"$P/mode-0000"
        chmod 0000 "$P/mode-0000"
        mkdir "$P/dir-0000"
        echo "hidden" >"$P/dir-0000/file"
        chmod 0000 "$P/dir-0000"
    fi
    [ "$MKNOD_OK" = 1 ] && chmod 0620 "$P/nested/dev-blk"

    # Extended attributes and ACLs.
    if [ "$XATTR_OK" = 1 ]; then
        xa set "$P/hello.txt" user.colour blue
        xa set "$P/hello.txt" user.empty ""
        xa sethex "$P/random.bin" user.binary 00ff0a0d5c2000
        xa set "$P/nested/a" user.dir "a directory's xattr"
        xa set "$P/empty" user.on-empty-dir yes
        xa set "$P/hl/b/c/two" user.shared "one inode"
        xa set "$P/${ODD_NAMES[0]}" user.odd $'value\nwith newline'
        xa set "$P/sparse-4g" user.big "$(printf 'v%.0s' $(seq 1 2000))"
        xa set "$P/suid" user.keep-suid yes
    fi
    if [ "$ACL_OK" = 1 ]; then
        echo "with an access ACL" >"$P/acl-file"
        xa acl "$P/acl-file" access "u::rw,u:1234:rwx,u:4321:r,g::r,g:5678:rx,m::rwx,o::r"
        mkdir "$P/acl-dir"
        xa acl "$P/acl-dir" access "u::rwx,u:1234:rwx,g::rx,m::rwx,o::x"
        xa acl "$P/acl-dir" default "u::rwx,u:1234:rx,g::rx,g:99:rwx,m::rwx,o::"
        # Created inside a directory with a default ACL: they inherit ACLs from it.
        echo "inherits" >"$P/acl-dir/inherited"
        mkdir "$P/acl-dir/subdir"
        echo "deep" >"$P/acl-dir/subdir/file"
        # This one has its inherited ACL taken away: a restore must not leave one on it.
        echo "no ACL" >"$P/acl-dir/plain"
        xa del "$P/acl-dir/plain" system.posix_acl_access
        chmod 0640 "$P/acl-dir/plain"
    fi

    # mtimes last: everything but directories, then directories deepest first, then the root.
    local f s=978307200 k=0
    while IFS= read -r -d '' f; do
        k=$((k + 1))
        touch -h -d "@$((s + k * 86400)).$(printf '%09d' $(((k * 7919 + 123456789) % 1000000000)))" "$f"
    done < <(find "$P" -mindepth 1 ! -type d -print0 | LC_ALL=C sort -z)
    touch -h -d '@-1234567.5' "$P/nonl.txt"                 # before 1970
    touch -h -d '@4102444800.999999999' "$P/random.bin"     # 2100
    touch -h -d '@0' "$P/empty.txt"
    while IFS= read -r -d '' f; do
        k=$((k + 1))
        touch -h -d "@$((s + k * 86400)).$(printf '%09d' $(((k * 104729 + 1) % 1000000000)))" "$f"
    done < <(find "$P" -mindepth 1 -depth -type d -print0)
    touch -d '@1500000000.000000001' "$P"
}

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

# --- change everything -------------------------------------------------------------------------------
change_everything() {
    # Contents.
    echo "changed" >>"$P/hello.txt"
    put_random "$P/random.bin" 150000 1000
    : >"$P/nested/a/numbers.txt"
    echo "now has content" >"$P/empty.txt"
    printf 'ODD!' | dd of="$P/${ODD_NAMES[1]}" conv=notrunc status=none   # same size
    put_random "$P/sparse-2g" $((GiB / 2)) $MiB                             # data in a hole
    put_random "$P/sparse-2g" $((GiB + 4097 + 1000)) 10                     # inside the data
    truncate -s $((4 * GiB)) "$P/sparse-4g"                                 # end data cut...
    truncate -s $((5 * GiB)) "$P/sparse-4g"                                 # ...and longer
    dd if=/dev/zero of="$P/all-hole" bs=1M count=5 conv=notrunc status=none   # zeros as data
    put_random "$P/all-hole" $MiB 4096
    dd if=/dev/zero of="$P/sparse-2g" bs=1M seek=1536 count=8 conv=notrunc status=none  # same bytes
    # Deletions, type changes, additions.
    rm "$P/nonl.txt" "$P/-leading-dash" "$P/${ODD_NAMES[3]}" "$P/${ODD_NAMES[7]}"
    rm -r "$P/nested/a/b" "$P/$ODD_DIR/inner"
    rmdir "$P/empty" "$P/empties/x/y/z"
    echo "file where a directory was" >"$P/empty"
    rm "$P/${ODD_NAMES[0]}"
    mkdir -p "$P/${ODD_NAMES[0]}/sub"
    echo "directory where a file was" >"$P/${ODD_NAMES[0]}/sub/f"
    rm "$P/fifo"
    echo "file where a fifo was" >"$P/fifo"
    rm "$P/link-rel" "$P/link-dangling" "$P/link-dir"
    ln -s nonl.txt "$P/link-rel"
    echo "not a link" >"$P/link-dangling"
    mkdir "$P/link-dir"
    mkdir -p "$P/brand/new/tree"
    echo "added" >"$P/brand/new/tree/file"
    ln -s ../.. "$P/brand/new/up"
    mkfifo "$P/brand/fifo"
    head -c 100000 /dev/urandom >"$P/$ODD_DIR/added"
    if [ "$MKNOD_OK" = 1 ]; then
        rm "$P/dev-null" "$P/nested/dev-blk"
        mknod "$P/dev-null" c 1 5
        mkfifo "$P/nested/dev-blk"
    fi
    # Hard links: the group broken apart, another file linked in, a new link to a plain file.
    rm "$P/hl/b/c/two" "$P/hl/three"
    cp -p "$P/hl/a/one" "$P/hl/three"
    ln "$P/hello.txt" "$P/hl/b/c/two"
    rm "$P/$ODD_DIR/pair-2"
    ln "$P/random.bin" "$P/extra-link-to-random"
    # Modes, owners, mtimes, xattrs of everything left.
    find "$P" ! -type l ! -type d -exec chmod 0600 {} +
    find "$P" -type d -exec chmod 0700 {} +
    [ "$IS_ROOT" = 1 ] && chown -R -h 4242:4243 "$P"
    if [ "$XATTR_OK" = 1 ]; then
        xa set "$P/hello.txt" user.colour red
        xa del "$P/hello.txt" user.empty
        xa del "$P/random.bin" user.binary
        xa set "$P/nested/a" user.dir "changed"
        xa set "$P/nested/a" user.added "new"
        xa set "$P/suid" user.keep-suid no
        xa set "$P/sparse-2g" user.new "on a sparse file"
    fi
    if [ "$ACL_OK" = 1 ]; then
        xa del "$P/acl-file" system.posix_acl_access
        xa acl "$P/acl-dir" default "u::rwx,g::r,m::r,o::"
        xa acl "$P/acl-dir/plain" access "u::rw,u:7:rw,g::r,m::rw,o::"
        xa del "$P/acl-dir/subdir" system.posix_acl_default
    fi
    find "$P" -exec touch -h -d '2024-02-29 12:00:00.5' {} +
}

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
change_other() {
    rm -r "$P/nested" "$P/hl/b"
    echo "only on other" >"$P/other.txt"
    chmod 2640 "$P/other.txt"
    put_random "$P/sparse-2g" $((3 * GiB / 2)) $((2 * MiB))
    truncate -s $((6 * GiB + 1)) "$P/sparse-4g"
    put_random "$P/sparse-4g" $((5 * GiB)) 333333
    mkdir -p "$P/other-dir/x"
    ln "$P/hl/a/one" "$P/other-dir/x/one-again"       # the group now: one, three, one-again
    ln "$P/suid" "$P/other-dir/suid-link"
    ln -s "${ODD_NAMES[1]}" "$P/other-dir/link-to-tab"
    mkfifo "$P/other-dir/fifo"
    chmod 1750 "$P/other-dir"
    if [ "$IS_ROOT" = 1 ]; then
        chown 31337:31338 "$P/other.txt"
        chmod 2640 "$P/other.txt"
        chown -h 5:5 "$P/link-abs"
    fi
    if [ "$XATTR_OK" = 1 ]; then
        xa set "$P/other.txt" user.branch other
        xa set "$P/hello.txt" user.colour green
    fi
    [ "$ACL_OK" = 1 ] && xa acl "$P/other.txt" access "u::rw,g::r,g:1:rw,m::rw,o::"
    touch -h -d '1999-12-31 23:59:59.999999999' "$P/other.txt" "$P/link-abs" "$P/other-dir/link-to-tab"
    touch -d '1980-01-01 00:00:00.000000042' "$P/other-dir/x" "$P/other-dir" "$P/hl" "$P"
}
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
