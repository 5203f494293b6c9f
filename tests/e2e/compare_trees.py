#!/usr/bin/env python3
"""Snapshot a directory tree into a JSON manifest, and compare a tree with a manifest.

    compare_trees.py snapshot DIR MANIFEST.json
    compare_trees.py compare MANIFEST.json DIR
    compare_trees.py summary MANIFEST.json

Per path (relative to DIR, raw bytes; "." is DIR itself) the manifest records:

    type        file, dir, symlink, fifo, chr, blk, socket
    mode        all 12 permission bits (setuid, setgid, sticky included)
    uid, gid    numeric
    mtime_ns    nanoseconds
    xattrs      every attribute llistxattr returns (POSIX ACLs included), raw values
    file:       size, allocated bytes (st_blocks * 512), content (see below), nlink, and
                `links`: the other paths of the tree that share its inode (hard links)
    symlink:    target (raw bytes)
    chr, blk:   major, minor

File content is fingerprinted without reading holes: the file is cut into 1 MiB blocks at fixed
offsets; every block that is not all zeros is hashed (SHA-256), and the content is the list of
(block index, hash) plus the size. Two files have the same fingerprint exactly when they have
the same bytes, whatever their layout of holes, and a 4 GiB sparse file costs only its data.
The fingerprint of the whole file is the SHA-256 of that list.

`compare` prints every difference, one line each, naming the path (as a Python bytes literal,
so newlines, tabs and odd bytes show), the field, the expected and the actual value, and exits
1 if there is any; 0 when the tree matches.

Allocated size: for a regular file the actual allocation may differ from the expected one by a
slack of 2 MiB + 2% (a restore at chunk granularity may allocate a little more or less around
data), but a file that was sparse (allocated less than half of its size, size >= 1 MiB) must
still be sparse.
"""

import errno
import hashlib
import json
import os
import stat
import sys

BLOCK = 1 << 20
ZERO = bytes(BLOCK)


def show(path):
    """A path for messages: a bytes literal, so every odd byte is visible."""
    return repr(os.fsencode(path))


def hexbytes(b):
    return b.hex()


def content_blocks(full, size):
    """[(block index, sha256 hex)] of the non-zero 1 MiB blocks of the file."""
    out = []
    fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        seen = set()
        off = 0
        while off < size:
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break
                raise
            try:
                hole = os.lseek(fd, data, os.SEEK_HOLE)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    hole = size
                else:
                    raise
            hole = min(hole, size)
            first = data // BLOCK
            last = (hole + BLOCK - 1) // BLOCK
            for idx in range(first, last):
                if idx in seen:
                    continue
                seen.add(idx)
                buf = os.pread(fd, BLOCK, idx * BLOCK)
                if len(buf) == BLOCK:
                    if buf == ZERO:
                        continue
                elif buf == bytes(len(buf)):
                    continue
                out.append([idx, hashlib.sha256(buf).hexdigest()])
            if hole <= off:
                break
            off = hole
    finally:
        os.close(fd)
    out.sort()
    return out


def content_digest(size, blocks):
    h = hashlib.sha256()
    h.update(str(size).encode())
    for idx, digest in blocks:
        h.update(b"|%d:%s" % (idx, digest.encode()))
    return h.hexdigest()


def read_xattrs(full):
    out = {}
    try:
        names = os.listxattr(full, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return out
        raise
    for name in sorted(names):
        try:
            out[name] = hexbytes(os.getxattr(full, name, follow_symlinks=False))
        except OSError as e:
            if e.errno == errno.ENODATA:
                continue
            raise
    return out


TYPES = [
    (stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
    (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chr"), (stat.S_ISBLK, "blk"),
    (stat.S_ISSOCK, "socket"),
]


def entry_of(full):
    st = os.lstat(full)
    typ = next((name for test, name in TYPES if test(st.st_mode)), "unknown")
    e = {
        "type": typ,
        "mode": "%04o" % stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime_ns": st.st_mtime_ns,
        "xattrs": read_xattrs(full),
    }
    if typ == "file":
        blocks = content_blocks(full, st.st_size)
        e["size"] = st.st_size
        e["allocated"] = st.st_blocks * 512
        e["nlink"] = st.st_nlink
        e["content"] = content_digest(st.st_size, blocks)
        e["blocks"] = blocks
    elif typ == "symlink":
        e["target"] = hexbytes(os.readlink(full))
    elif typ in ("chr", "blk"):
        e["major"] = os.major(st.st_rdev)
        e["minor"] = os.minor(st.st_rdev)
    return e, (st.st_dev, st.st_ino)


def snapshot(root):
    root_b = os.fsencode(root)
    entries = {}
    inodes = {}

    def visit(rel_b):
        full = os.path.join(root_b, rel_b) if rel_b != b"." else root_b
        e, key = entry_of(full)
        rel = os.fsdecode(rel_b)
        entries[rel] = e
        if e["type"] == "file":
            inodes.setdefault(key, []).append(rel)
        if e["type"] == "dir":
            for name in sorted(os.listdir(full)):
                visit(name if rel_b == b"." else os.path.join(rel_b, name))

    visit(b".")
    for paths in inodes.values():
        for p in paths:
            entries[p]["links"] = sorted(q for q in paths if q != p)
    return {"root": os.fsdecode(root_b), "entries": entries}


def allocation_slack(expected):
    return 2 * BLOCK + expected // 50


def compare(expected, actual):
    """A list of difference messages."""
    diffs = []
    exp = expected["entries"]
    act = actual["entries"]
    for p in sorted(set(exp) - set(act), key=os.fsencode):
        diffs.append("%s: missing (expected a %s)" % (show(p), exp[p]["type"]))
    for p in sorted(set(act) - set(exp), key=os.fsencode):
        diffs.append("%s: unexpected %s (not in the expected tree)" % (show(p), act[p]["type"]))
    for p in sorted(set(exp) & set(act), key=os.fsencode):
        e, a = exp[p], act[p]
        if e["type"] != a["type"]:
            diffs.append("%s: type: expected %s, actual %s" % (show(p), e["type"], a["type"]))
            continue
        for field in ("mode", "uid", "gid", "mtime_ns", "size", "target", "major", "minor",
                      "links", "nlink"):
            if field in e and e.get(field) != a.get(field):
                ev, av = e.get(field), a.get(field)
                if field == "target":
                    ev = bytes.fromhex(ev) if ev is not None else None
                    av = bytes.fromhex(av) if av is not None else None
                if field == "links":
                    ev = [show(x) for x in ev or []]
                    av = [show(x) for x in av or []]
                diffs.append("%s: %s: expected %s, actual %s" % (show(p), field, ev, av))
        ex, ax = e["xattrs"], a["xattrs"]
        for k in sorted(set(ex) | set(ax)):
            if k not in ax:
                diffs.append("%s: xattr %s: missing (expected %s)" % (show(p), k, ex[k]))
            elif k not in ex:
                diffs.append("%s: xattr %s: unexpected (value %s)" % (show(p), k, ax[k]))
            elif ex[k] != ax[k]:
                diffs.append("%s: xattr %s: expected %s, actual %s" % (show(p), k, ex[k], ax[k]))
        if e["type"] == "file":
            if e["content"] != a["content"]:
                eb = dict(map(tuple, e["blocks"]))
                ab = dict(map(tuple, a["blocks"]))
                bad = sorted(i for i in set(eb) | set(ab) if eb.get(i) != ab.get(i))
                where = ", ".join("MiB %d (%s)" % (i, "expected zeros" if i not in eb else
                                                   "now zeros" if i not in ab else "differs")
                                  for i in bad[:8])
                if len(bad) > 8:
                    where += ", ... %d blocks in all" % len(bad)
                diffs.append("%s: content differs: %s" % (show(p), where or "size only"))
            ea, aa = e["allocated"], a["allocated"]
            if abs(ea - aa) > allocation_slack(ea):
                diffs.append("%s: allocated bytes: expected %d (+-%d), actual %d"
                             % (show(p), ea, allocation_slack(ea), aa))
            if e["size"] >= BLOCK and ea < e["size"] // 2 and aa >= a["size"] // 2:
                diffs.append("%s: no longer sparse: %d bytes, %d allocated (was %d allocated)"
                             % (show(p), a["size"], aa, ea))
    return diffs


def summary(m):
    counts = {}
    for e in m["entries"].values():
        counts[e["type"]] = counts.get(e["type"], 0) + 1
    xattrs = sum(len(e["xattrs"]) for e in m["entries"].values())
    acls = sum(1 for e in m["entries"].values() for k in e["xattrs"] if k.startswith("system.posix_acl"))
    groups = {tuple(sorted([p] + e["links"])) for p, e in m["entries"].items() if e.get("links")}
    sparse = sum(1 for e in m["entries"].values()
                 if e["type"] == "file" and e["size"] >= BLOCK and e["allocated"] < e["size"] // 2)
    return {"entries": len(m["entries"]), "types": counts, "xattrs": xattrs, "acls": acls,
            "link_groups": sorted(len(g) for g in groups), "sparse_files": sparse,
            "max_size": max([e.get("size", 0) for e in m["entries"].values()] or [0])}


def main(argv):
    if len(argv) == 4 and argv[1] == "snapshot":
        m = snapshot(argv[2])
        with open(argv[3], "w") as f:
            json.dump(m, f, indent=1, sort_keys=True)
        return 0
    if len(argv) == 4 and argv[1] == "compare":
        with open(argv[2]) as f:
            expected = json.load(f)
        actual = snapshot(argv[3])
        diffs = compare(expected, actual)
        for d in diffs[:300]:
            print(d)
        if len(diffs) > 300:
            print("... and %d more differences" % (len(diffs) - 300))
        if diffs:
            print("%d difference(s) between %s (the manifest) and %s" % (len(diffs), argv[2], argv[3]))
            return 1
        return 0
    if len(argv) == 3 and argv[1] == "summary":
        with open(argv[2]) as f:
            print(json.dumps(summary(json.load(f)), sort_keys=True))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
