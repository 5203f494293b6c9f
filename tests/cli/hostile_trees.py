#!/usr/bin/env python3
"""Hand-made hostile trees (issue 17): a generator of trees written straight into a store, and
the rule they are checked against:

    whatever fsck accepts, reset restores exactly;
    whatever reset refuses, it refuses before changing anything.

Each case is a fresh store with a volume whose live directory holds a committed file. The case's
tree (random but valid, or one of a list of hand-made hostile mutations of one) is encoded here,
byte for byte as docs/FORMAT.md says, in a pack of its own registered in dvol.db, and named by a
commit row of the volume. Then:

  - `dvol fsck`; a case marked hostile (it breaks a rule FORMAT.md states) must be refused;
  - `dvol reset --hard <commit>`: when fsck accepted, it must succeed and the live directory must
    be exactly the tree (types, modes, mtimes, content, symlink targets, hard links); when fsck
    refused, reset must refuse too, with the branch, reflog and live directory as they were.

Usage: hostile_trees.py DVOL WORKDIR [CASES] [SEED]. Deterministic for a given seed. Prints one
line per failure and "N cases, M failures"; exits 1 on a failure.
"""
import hashlib
import json
import os
import random
import sqlite3
import stat
import struct
import subprocess
import sys

DVOL = sys.argv[1]
WORK = sys.argv[2]
NCASES = int(sys.argv[3]) if len(sys.argv) > 3 else 40
SEED = int(sys.argv[4]) if len(sys.argv) > 4 else 17

FILE, DIR, SYMLINK, HARDLINK, FIFO = 1, 2, 3, 4, 5
UID, GID = os.getuid(), os.getgid()


def varint(n):
    assert n >= 0
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def svarint(n):
    return varint((n << 1) ^ (n >> 63) if n < 0 else n << 1)


def blob(b):
    return varint(len(b)) + b


def sha(b):
    return hashlib.sha256(b).digest()


# --- the model ------------------------------------------------------------------------------
# An entry: dict(name=bytes, type, mode, mtime, and by type: extents [(chunk bytes|None, length)]
# for files (None: a hole), size, entries for dirs, target for links).


def encode_extents(exts, chunks):
    out = bytearray()
    for data, length in exts:
        if data is None:
            out += b"\x01" + varint(length)
        else:
            cid = sha(data)
            chunks[cid] = data
            out += b"\x00" + cid + varint(length)
    return bytes(out)


def encode_tree(entries, objects):
    """Encodes a directory's entries (and, into `objects`, everything below); returns its id."""
    out = bytearray(b"DVT1" + varint(len(entries)))
    for e in entries:  # the caller keeps them in the order it wants (sorted unless hostile)
        out += blob(e["name"]) + bytes([e["type"]]) + varint(e["mode"]) + varint(UID) + varint(GID)
        out += svarint(e["mtime"]) + varint(e.get("size", 0)) + varint(0)
        t = e["type"]
        if t == FILE:
            if "lists" in e:
                out += b"\x01" + varint(len(e["lists"]))
                for exts, count, covered in e["lists"]:
                    body = b"DVL1" + varint(len(exts)) + encode_extents(exts, objects)
                    objects[sha(body)] = body
                    out += sha(body) + varint(covered) + varint(count)
            else:
                out += b"\x00" + varint(len(e["extents"])) + encode_extents(e["extents"], objects)
        elif t == DIR:
            out += e.get("subtree_id") or encode_tree(e["entries"], objects)
        elif t in (SYMLINK, HARDLINK):
            out += blob(e["target"])
    body = bytes(out)
    objects[sha(body)] = body
    return sha(body)


def content_of(e):
    data = bytearray()
    for chunk, length in e["extents"]:
        data += bytes(length) if chunk is None else chunk[:length]
    return bytes(data)


def expected(entries, prefix=b""):
    """The manifest the live directory must match: path -> description."""
    out = {}
    for e in entries:
        p = prefix + e["name"]
        t = e["type"]
        if t == FILE:
            out[p] = ("file", e["mode"], e["mtime"], hashlib.sha256(content_of(e)).hexdigest())
        elif t == DIR:
            out[p] = ("dir", e["mode"], e["mtime"])
            out.update(expected(e["entries"], p + b"/"))
        elif t == SYMLINK:
            out[p] = ("symlink", e["target"])
        elif t == HARDLINK:
            out[p] = ("link", e["target"])
        elif t == FIFO:
            out[p] = ("fifo", e["mode"], e["mtime"])
    return out


def actual(root):
    out = {}
    inodes = {}
    stack = [b""]
    while stack:
        rel = stack.pop()
        for name in sorted(os.listdir(os.path.join(root, rel) if rel else root)):
            p = rel + b"/" + name if rel else name
            st = os.lstat(os.path.join(root, p))
            mode, mt = stat.S_IMODE(st.st_mode), st.st_mtime_ns
            if stat.S_ISREG(st.st_mode):
                inodes.setdefault((st.st_dev, st.st_ino), []).append(p)
                with open(os.path.join(root, p), "rb") as f:
                    out[p] = ("file", mode, mt, hashlib.sha256(f.read()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                out[p] = ("dir", mode, mt)
                stack.append(p)
            elif stat.S_ISLNK(st.st_mode):
                out[p] = ("symlink", os.readlink(os.path.join(root, p)))
            elif stat.S_ISFIFO(st.st_mode):
                out[p] = ("fifo", mode, mt)
            else:
                out[p] = ("other",)
    # Of the paths of one inode, the first in scan order (component by component) is the file.
    for paths in inodes.values():
        paths.sort(key=lambda p: p.split(b"/"))
        for p in paths[1:]:
            out[p] = ("link", paths[0])
    return out


def scan_order(entries, prefix=b""):
    """Paths of files in the order a scan records them (hard links name an earlier one)."""
    for e in entries:
        p = prefix + e["name"]
        if e["type"] == FILE:
            yield p, e
        elif e["type"] == DIR:
            yield from scan_order(e["entries"], p + b"/")


# --- random valid trees ---------------------------------------------------------------------
NAMES = [b"a", b"a-c", b"a.b", b"b", b"z", b"\xc3\xa9t\xc3\xa9", b"\xff\xfe", b" sp ace", b"x" * 200, b"-n", b"new\nline"]


def rand_file(rng, name):
    exts = []
    for _ in range(rng.randint(0, 4)):
        if rng.random() < 0.3 and not (exts and exts[-1][0] is None):
            exts.append((None, rng.choice([1, 100, 4096, 70000])))
        else:
            n = rng.randint(1, 3000)
            data = bytes(rng.randrange(1, 256) for _ in range(n))
            exts.append((data, n))
    return dict(name=name, type=FILE, mode=rng.choice([0o644, 0o600, 0o755, 0o4755, 0o444]), mtime=rng.randint(946684800, 1900000000) * 10**9 + rng.randint(0, 10**9 - 1), extents=exts,
                size=sum(length for _, length in exts))


def rand_dir(rng, depth, name=b"root"):
    entries = []
    for nm in rng.sample(NAMES, rng.randint(0, 5)):
        r = rng.random()
        if r < 0.45:
            entries.append(rand_file(rng, nm))
        elif r < 0.6 and depth < 3:
            entries.append(rand_dir(rng, depth + 1, nm))
        elif r < 0.75:
            tgt = rng.choice([b"a", b"../up", b"/abs/x", b"\xff", b"t" * 300])
            entries.append(dict(name=nm, type=SYMLINK, mode=0o777, mtime=10**18, target=tgt, size=len(tgt)))
        elif r < 0.85:
            entries.append(dict(name=nm, type=FIFO, mode=rng.choice([0o644, 0o600]), mtime=1234567890123456789))
        else:
            entries.append(dict(name=nm, type=HARDLINK, mode=0, mtime=0, target=None))  # filled below
    entries.sort(key=lambda e: e["name"])
    return dict(name=name, type=DIR, mode=rng.choice([0o755, 0o700, 0o1777]), mtime=rng.randint(946684800, 1900000000) * 10**9, entries=entries)


def fix_links(rng, top):
    """Points each hard link at a file earlier in scan order, with that file's metadata; drops
    links that have none."""
    seen = []

    def walk(d, prefix):
        keep = []
        for e in d["entries"]:
            p = prefix + e["name"]
            if e["type"] == HARDLINK:
                if not seen:
                    continue
                tp, te = rng.choice(seen)
                e.update(target=tp, mode=te["mode"], mtime=te["mtime"])
            elif e["type"] == FILE:
                seen.append((p, e))
            elif e["type"] == DIR:
                walk(e, p + b"/")
            keep.append(e)
        d["entries"] = keep

    walk(top, b"")


# --- hostile mutations: each breaks a rule of FORMAT.md, so fsck and reset must refuse it -----
def first(top, pred):
    for p, e in walk_all(top["entries"]):
        if pred(e):
            return e
    return None


def walk_all(entries, prefix=b""):
    for e in entries:
        yield prefix + e["name"], e
        if e["type"] == DIR:
            yield from walk_all(e["entries"], prefix + e["name"] + b"/")


def m_link_later(rng, top):
    # A hard link to a file that comes after it: the restore would look for it before making it.
    top["entries"] = [e for e in top["entries"] if e["name"] not in (b"a", b"z")]
    top["entries"] += [dict(name=b"a", type=HARDLINK, mode=0o644, mtime=0, target=b"z"),
                       dict(name=b"z", type=FILE, mode=0o644, mtime=0, extents=[(b"zed", 3)], size=3)]
    top["entries"].sort(key=lambda e: e["name"])
    return True


def m_link_missing(rng, top):
    top["entries"] = [e for e in top["entries"] if e["name"] != b"z"]
    top["entries"].append(dict(name=b"z", type=HARDLINK, mode=0o644, mtime=0, target=b"nowhere/at/all"))
    return True


def m_link_to_dir(rng, top):
    top["entries"] = [e for e in top["entries"] if e["name"] not in (b"a", b"z")]
    top["entries"] += [dict(name=b"a", type=DIR, mode=0o755, mtime=0, entries=[]),
                       dict(name=b"z", type=HARDLINK, mode=0o755, mtime=0, target=b"a")]
    top["entries"].sort(key=lambda e: e["name"])
    return True


def m_extent_too_long(rng, top):
    # An extent claiming 64 MiB for a 22-byte chunk (the case).
    top["entries"] = [e for e in top["entries"] if e["name"] != b"z"]
    top["entries"].append(dict(name=b"z", type=FILE, mode=0o644, mtime=0, extents=[(b"twenty-two bytes long!", 64 << 20)], size=64 << 20))
    return True


def m_extent_too_short(rng, top):
    top["entries"] = [e for e in top["entries"] if e["name"] != b"z"]
    top["entries"].append(dict(name=b"z", type=FILE, mode=0o644, mtime=0, extents=[(b"twenty-two bytes long!", 5)], size=5))
    return True


def m_two_holes(rng, top):
    top["entries"] = [e for e in top["entries"] if e["name"] != b"z"]
    top["entries"].append(dict(name=b"z", type=FILE, mode=0o644, mtime=0, extents=[(None, 10), (None, 20), (b"x", 1)], size=31))
    return True


def m_size_mismatch(rng, top):
    e = first(top, lambda e: e["type"] == FILE)
    if not e:
        top["entries"] = [e for e in top["entries"] if e["name"] != b"z"]
        e = dict(name=b"z", type=FILE, mode=0o644, mtime=0, extents=[(b"abc", 3)], size=3)
        top["entries"].append(e)
    e["size"] = e["size"] + 1
    return True


def m_symlink_size(rng, top):
    top["entries"] = [e for e in top["entries"] if e["name"] != b"z"]
    top["entries"].append(dict(name=b"z", type=SYMLINK, mode=0o777, mtime=0, target=b"target", size=7))
    return True


def m_fifo_size(rng, top):
    top["entries"] = [e for e in top["entries"] if e["name"] != b"z"]
    top["entries"].append(dict(name=b"z", type=FIFO, mode=0o644, mtime=0, size=5))
    return True


def m_unsorted(rng, top):
    top["entries"] = [e for e in top["entries"] if e["name"] not in (b"a", b"z")]
    top["entries"].sort(key=lambda e: e["name"])
    top["entries"] += [dict(name=b"z", type=FIFO, mode=0o644, mtime=0), dict(name=b"a", type=FIFO, mode=0o644, mtime=0)]
    top["no_sort"] = True
    return True


def m_dotdot(rng, top):
    top["entries"] = [e for e in top["entries"] if e["name"] != b".."]
    top["entries"].insert(0, dict(name=b"..", type=FIFO, mode=0o644, mtime=0))
    top["no_sort"] = True
    return True


def m_missing_chunk(rng, top):
    top["entries"] = [e for e in top["entries"] if e["name"] != b"z"]
    top["entries"].append(dict(name=b"z", type=FILE, mode=0o644, mtime=0, extents=[(b"never stored", 12)], size=12, drop_chunks=True))
    return True


def m_list_wrong_count(rng, top):
    # An extent list holding another number of extents than its reference says.
    top["entries"] = [e for e in top["entries"] if e["name"] != b"z"]
    top["entries"].append(dict(name=b"z", type=FILE, mode=0o644, mtime=0, lists=[([(b"abc", 3)], 2, 3)], extents=[(b"abc", 3)], size=3))
    return True


def m_list_wrong_cover(rng, top):
    top["entries"] = [e for e in top["entries"] if e["name"] != b"z"]
    full = [(b"q", 1)] * 4096
    top["entries"].append(dict(name=b"z", type=FILE, mode=0o644, mtime=0, lists=[(full, 4096, 4000), ([(b"r", 1)], 1, 97)],
                               extents=full + [(b"r", 1)], size=4097))
    return True


HOSTILE = [m_link_later, m_link_missing, m_link_to_dir, m_extent_too_long, m_extent_too_short, m_two_holes, m_size_mismatch,
           m_symlink_size, m_fifo_size, m_unsorted, m_dotdot, m_missing_chunk, m_list_wrong_count, m_list_wrong_cover]


def sort_all(d):
    if d.get("no_sort"):
        return
    d["entries"].sort(key=lambda e: e["name"])
    for e in d["entries"]:
        if e["type"] == DIR:
            sort_all(e)


# --- the store ------------------------------------------------------------------------------
def run(args, store):
    env = dict(os.environ, DVOL_ROOT=store)
    p = subprocess.run([DVOL, "--disable-docker-integration"] + args, env=env, capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def add_objects(store, objects):
    name = os.urandom(16).hex()
    path = os.path.join(store, "objects", "packs", name + ".pack")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rows = []
    with open(path, "wb") as f:
        f.write(b"DVOLPACK" + struct.pack("<II", 1, 0))
        for oid, data in objects.items():
            rows.append((oid, f.tell(), len(data)))
            f.write(b"DVR1" + bytes([0, 0, 0, 0]) + struct.pack("<II", len(data), len(data)) + oid + data)
        size = f.tell()
    db = sqlite3.connect(os.path.join(store, "dvol.db"))
    with db:
        cur = db.execute("INSERT INTO packs(name, size) VALUES(?, ?)", (name, size))
        pid = cur.lastrowid
        db.executemany("INSERT OR IGNORE INTO objects(id, pack_id, offset, stored_len, raw_len) VALUES(?, ?, ?, ?, ?)",
                       [(oid, pid, off, n, n) for oid, off, n in rows])
    db.close()


def add_commit(store, volume, top_id, message):
    text = ("dvol commit 1\ntree %s\nauthor Hostile <h@example.org> 1700000000 +0000\n\n%s\n" % (top_id.hex(), message)).encode()
    cid = sha(text)
    db = sqlite3.connect(os.path.join(store, "dvol.db"))
    with db:
        vid = db.execute("SELECT id FROM volumes WHERE name = ?", (volume,)).fetchone()[0]
        db.execute("INSERT INTO commits(volume_id, id, tree, time, encoded) VALUES(?, ?, ?, ?, ?)", (vid, cid, top_id, 1700000000, text))
    db.close()
    return cid.hex()


def refs_state(store, vol):
    return [run(["log", "--json", vol], store)[1], run(["branch", "--json", vol], store)[1], run(["reflog", "--json", vol], store)[1]]


def one_case(n, rng, mutate):
    store = os.path.join(WORK, "case%d" % n)
    os.makedirs(store)
    rc, out, err = run(["init", "g"], store)
    if rc != 0:
        return ["init failed: " + err.strip()]
    rc, live, _ = run(["path", "g"], store)
    live = live.strip()
    with open(os.path.join(live, "base"), "w") as f:
        f.write("committed before the case\n")
    run(["commit", "-m", "base", "g"], store)

    top = rand_dir(rng, 0)
    fix_links(rng, top)
    hostile = mutate(rng, top) if mutate else False
    sort_all(top)
    objects = {}
    root_id = encode_tree(top["entries"], objects)
    dropped = [sha(c) for p, e in walk_all(top["entries"]) if e.get("drop_chunks") for c, _ in e["extents"] if c]
    for d in dropped:
        objects.pop(d, None)
    top_entry = dict(top, subtree_id=root_id)
    top_id = encode_tree([top_entry], objects)
    add_objects(store, objects)
    label = mutate.__name__ if mutate else "valid"
    cid = add_commit(store, "g", top_id, "case %d %s" % (n, label))

    fails = []
    frc, fout, ferr = run(["fsck"], store)
    accepted = frc == 0
    if hostile and accepted:
        fails.append("%s: fsck accepted a tree that breaks the format: %s" % (label, fout.strip()))
    if not hostile and not accepted:
        fails.append("%s: fsck refused a valid tree: %s%s" % (label, fout.strip(), ferr.strip()))
    before_refs = refs_state(store, "g")
    before_live = actual(live.encode())
    rrc, rout, rerr = run(["reset", "--hard", cid, "g"], store)
    if os.environ.get("HOSTILE_VERBOSE"):
        print("case %d %s: fsck %d %s | reset %d %s" % (n, label, frc, (fout.strip().splitlines() or [""])[0], rrc, rerr.strip()))
    if accepted:
        if rrc != 0:
            fails.append("%s: fsck accepted it but reset failed: %s" % (label, rerr.strip()))
        else:
            want, got = expected(top["entries"]), actual(live.encode())
            if want != got:
                diff = sorted(set(want.items()) ^ set(got.items()))[:4]
                fails.append("%s: reset did not restore the tree exactly: %r" % (label, diff))
            want_root = (stat.S_IMODE(os.lstat(live).st_mode), os.lstat(live).st_mtime_ns)
            if want_root != (top["mode"], top["mtime"]):
                fails.append("%s: the live directory's own metadata is %r, not %r" % (label, want_root, (top["mode"], top["mtime"])))
    else:
        if rrc == 0:
            fails.append("%s: fsck refused it but reset restored it" % label)
        if refs_state(store, "g") != before_refs:
            fails.append("%s: reset refused but the branch or reflog changed: %s" % (label, rerr.strip()))
        if actual(live.encode()) != before_live:
            fails.append("%s: reset refused but the live directory changed: %s" % (label, rerr.strip()))
        if rrc != 0 and len(rerr.strip().splitlines()) != 1:
            fails.append("%s: reset's refusal is not one line: %r" % (label, rerr))
    return fails


def main():
    rng = random.Random(SEED)
    failures = []
    n = 0
    # Every hostile mutation once, then random valid trees and random mutations.
    plan = list(HOSTILE) + [None] * 6
    while len(plan) < NCASES:
        plan.append(None if rng.random() < 0.5 else rng.choice(HOSTILE))  # half valid
    for mutate in plan:
        n += 1
        for f in one_case(n, rng, mutate):
            print("FAIL: case %d: %s" % (n, f))
            failures.append(f)
    print("%d cases (%d hostile), %d failures" % (n, sum(1 for m in plan if m), len(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
