# The fidelity tree: a directory tree holding everything a dvol commit records, and two ways of
# changing it. Sourced by test_fidelity.sh, test_remotes.sh and test_mount.sh (after tests/cli/lib.sh).
#
#   fidelity_probe          what this file system and user can do, tried in $P: sets XATTR_OK,
#                           ACL_OK, MKNOD_OK (and IS_ROOT, set on sourcing) to 0 or 1, and says
#                           what will not be exercised
#   build_tree              the first state, in $P (an empty directory): regular, empty and
#                           sparse files (one over 4 GiB), empty and nested directories,
#                           symlinks (dangling too), a hard-link group of 3 across directories
#                           and a pair, fifos, devices, user xattrs and POSIX ACLs,
#                           setuid/setgid/sticky bits, numeric owners, nanosecond mtimes before
#                           1970 and after 2038, names with newlines, tabs, backslashes, 0xff
#                           bytes, leading dashes, spaces and UTF-8
#   change_everything       changes every kind of thing build_tree made (content, type, mode,
#                           owner, mtime, xattrs, links, deletions, additions)
#   change_other            another state of the same kinds of things, from build_tree's
#   xa OP ARGS...           extended attributes and ACLs through python3
#   put_random FILE OFFSET BYTES
#
# $P is the directory they work in; owners, devices and mode-0000 files only as root.
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

# --- what this file system and user can do ---------------------------------------------------------
fidelity_probe() {
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
}

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

# The other branch of test_fidelity.sh: a different tree of the same kinds of things.
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
