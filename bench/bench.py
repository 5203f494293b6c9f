#!/usr/bin/env python3
"""dvol benchmark harness (run it through bench/run.sh, which builds dvol and installs the tools).

Every tool works on the same data: the data sets are generated once from fixed seeds under
BENCH_DIR/data, and for each run every tool gets a fresh store and the first state copied in
(untimed). Operations are measured one after the other, and for each operation every tool runs
in turn (the order rotates from run to run), with the page cache warmed alike before each timed
command. A tool that exits non-zero fails the whole run.
"""
import argparse
import datetime
import fcntl
import json
import os
import platform
import pwd
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
GiB = 1 << 30

SIZES = {
    # pgbench scale, synthetic files, synthetic total bytes, largest file
    "small": dict(pg_scale=5, synth_files=500, synth_total=1 * GiB, synth_max=256 * MiB),
    "full": dict(pg_scale=30, synth_files=2000, synth_total=8 * GiB, synth_max=1 * GiB),
}
PG_TRANSACTIONS = 6000
MANY_FILES = 100_000
SMALL_FILES, SMALL_DIRS = 100_000, 300      # the many-small-files restore: 100-2,000 bytes each
BIG_FILE = {"big2g": 2 * GiB, "big4g": 4 * GiB}  # one file of random bytes, restored whole
RESTORE_SETS = ("smallfiles", "big2g", "big4g")

OPS = {
    "commit-initial": "initial commit",
    "commit-nochange": "commit, nothing changed",
    "commit-second": "commit of the second state",
    "reset": "reset --hard to the first state",
    "checkout": "checkout of another branch",
    "status": "status, nothing changed",
    "restore": "restore into an empty directory",
}
# A data set name with this suffix (pg-replaced, synth-replaced): the same data, the second state
# applied by replacing the changed files instead of writing them in place.
REPLACED = "-replaced"
TOOLS_ALL = ["dvol", "cp", "borg", "restic", "git"]
TOOL_LABEL = {"dvol": "dvol", "cp": "cp -a", "borg": "borg", "restic": "restic", "git": "git"}


class BenchError(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    """Untimed helper command; its failure fails the run."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if r.returncode != 0:
        raise BenchError(f"command failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr[-2000:]}")
    return r.stdout


# User + system CPU seconds of the command measure() ran last (it and its descendants).
LAST_CPU = 0.0


def measure(cmd, cwd=None, env=None):
    """Runs cmd, returns (wall seconds, peak RSS KiB of it and its descendants, stdout); its CPU
    time goes to LAST_CPU."""
    global LAST_CPU
    # GNU time forks the command from a small process, so the peak RSS is the command's (a fork
    # of this Python process would count Python's own RSS); the wall time is taken here, finer
    # than time's 10 ms.
    # The program's own file is warmed too, as the files it works on are (see README.md): the
    # bench VM drops page-cache pages idle for a minute, and a 2.7 MB binary read back from disk
    # cost a 25 ms commit another 25 ms.
    exe = shutil.which(cmd[0])
    if exe:
        with open(exe, "rb") as f:
            while f.read(1 << 20):
                pass
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as tf:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", tf.name, *cmd], cwd=cwd, env=env,
                           stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        o, e = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        rss_lines = [x for x in tf.read().splitlines() if x.strip()]
    if p.returncode != 0:
        raise BenchError(f"measured command failed ({p.returncode}): {' '.join(map(str, cmd))}\n{e[-2000:]}")
    rss, user, system = rss_lines[-1].split()
    LAST_CPU = float(user) + float(system)
    return wall, int(rss), o


def tree_bytes(path, exclude=None):
    """Apparent size of every regular file under path (as du -sb counts files)."""
    total = 0
    for root, dirs, files in os.walk(path):
        if exclude and os.path.abspath(root) == exclude:
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not (exclude and os.path.join(os.path.abspath(root), d) == exclude)]
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except FileNotFoundError:
                continue
            if not os.path.islink(os.path.join(root, f)):
                total += st.st_size
    return total


def warm(*paths):
    """Reads every file under the paths, so each tool starts with the same warm page cache."""
    buf = bytearray(MiB)
    for path in paths:
        if not os.path.exists(path):
            continue
        for root, _, files in os.walk(path):
            for f in files:
                fp = os.path.join(root, f)
                if os.path.islink(fp) or not os.path.isfile(fp):
                    continue
                try:
                    with open(fp, "rb", buffering=0) as fh:
                        while fh.readinto(buf):
                            pass
                except OSError:
                    pass


def rmtree(path):
    if os.path.lexists(path):
        run(["rm", "-rf", "--one-file-system", path])


# On ext4 without a journal (this machine's root file system), an inode freed less than a minute
# ago is not reused, nor one freed less than six minutes ago while its inode table block is dirty
# (as new inodes beside it make it), and every file created meanwhile scans past each such inode
# of its group (fs/ext4/ialloc.c, recently_deleted()): creating 100,000 files within minutes of
# deleting 100,000 took 5-15x longer, for every tool alike (bench/RESULTS.md, the small-file
# restore of 2026-12-05). So the many-small-files set deletes nothing until its runs are over
# (each run's work directory is moved aside), and starts this long after the deletions before it.
SETTLE_AFTER_DELETE_S = 370


def settle_after_delete():
    os.sync()
    time.sleep(SETTLE_AFTER_DELETE_S)


def sync_into(state, dst, replace=False):
    """Applies a state in place, as a running program changes its files; with replace, by
    replacing each changed file with a new one (a new inode), as a restore, a dump reload or
    any tool that rewrites files does (rsync's default: a temporary file renamed over)."""
    os.makedirs(dst, exist_ok=True)
    run(["rsync", "-a", "--delete", *([] if replace else ["--inplace"]), state + "/", dst + "/"])


# ----------------------------------------------------------------------------- data sets

def text_pool(rng):
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
             for _ in range(3000)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) + "\n" for _ in range(8000)]


def write_file(path, size, kind, rng, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, MiB)
            if kind == "random":
                f.write(rng.randbytes(n))
            else:
                block = "".join(rng.choices(lines, k=n // 40 + 8)).encode()
                while len(block) < n:
                    block += block
                f.write(block[:n])
            left -= n


def synth_sizes(rng, count, total, lo, hi):
    us = [rng.random() for _ in range(count)]

    def sizes(k):
        return [int(lo * (hi / lo) ** (u ** k)) for u in us]
    a, b = 1.0, 500.0
    for _ in range(60):
        k = (a + b) / 2
        if sum(sizes(k)) > total:
            a = k
        else:
            b = k
    s = sizes(b)
    s[max(range(count), key=lambda i: s[i])] = hi
    return s


def gen_synth(d, cfg):
    s1, s2 = os.path.join(d, "s1"), os.path.join(d, "s2")
    rng = random.Random(20240601)
    lines = text_pool(rng)
    sizes = synth_sizes(rng, cfg["synth_files"], cfg["synth_total"], 4096, cfg["synth_max"])
    big = None
    done = 0
    for i, size in enumerate(sizes):
        kind = "random" if i % 2 == 0 else "text"
        p = os.path.join(s1, f"d{i % 40:02d}", f"f{i:05d}.{'bin' if kind == 'random' else 'txt'}")
        write_file(p, size, kind, rng, lines)
        if size == cfg["synth_max"] and big is None:
            big = p
        done += size
        if i % 100 == 99:
            log(f"  synthetic tree: {i + 1}/{len(sizes)} files, {done / GiB:.2f} GiB")
    # Second state: 1 MiB changed in the largest file, ten small files added. The unchanged
    # files are hard links to the first state's (rsync -a copies them as plain files).
    run(["cp", "-al", s1, s2])
    rel = os.path.relpath(big, s1)
    tmp = os.path.join(s2, rel + ".tmp")
    shutil.copyfile(big, tmp)
    shutil.copymode(big, tmp)   # a new mtime: the change is visible to every tool's quick check
    with open(tmp, "r+b") as f:
        f.seek((cfg["synth_max"] // 2) & ~4095)
        f.write(rng.randbytes(MiB))
    # A clearly later mtime: rsync's quick check (size and mtime) then sees the change, whatever
    # its time resolution, and so does every tool's.
    st = os.stat(big)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns + 60 * 10**9))
    os.replace(tmp, os.path.join(s2, rel))
    for j in range(10):
        write_file(os.path.join(s2, "added", f"new{j:02d}.txt"), rng.randint(4096, 65536), "text", rng, lines)


def gen_files(d):
    s1 = os.path.join(d, "s1")
    rng = random.Random(100000)
    pool = "".join(text_pool(rng)).encode()
    for i in range(MANY_FILES):
        p = os.path.join(s1, f"d{i // 100:04d}", f"f{i:06d}.txt")
        if i % 100 == 0:
            os.makedirs(os.path.dirname(p), exist_ok=True)
        n = rng.randint(256, 8192)
        off = rng.randint(0, len(pool) - n)
        with open(p, "wb") as f:
            f.write(pool[off:off + n])
        if i % 20000 == 19999:
            log(f"  many files: {i + 1}/{MANY_FILES}")


def gen_smallfiles(d):
    """100,000 files of 100 to 2,000 bytes of text, spread over 300 directories."""
    s1 = os.path.join(d, "s1")
    rng = random.Random(19)
    pool = "".join(text_pool(rng)).encode()
    for i in range(SMALL_FILES):
        p = os.path.join(s1, f"d{i % SMALL_DIRS:03d}", f"f{i:06d}.txt")
        if i < SMALL_DIRS:
            os.makedirs(os.path.dirname(p), exist_ok=True)
        n = rng.randint(100, 2000)
        off = rng.randint(0, len(pool) - n)
        with open(p, "wb") as f:
            f.write(pool[off:off + n])
        if i % 20000 == 19999:
            log(f"  small files: {i + 1}/{SMALL_FILES}")


def gen_big(d, size):
    """One file of `size` random (incompressible) bytes."""
    s1 = os.path.join(d, "s1")
    os.makedirs(s1)
    rng = random.Random(size)
    with open(os.path.join(s1, "big.bin"), "wb") as f:
        for _ in range(size // (64 * MiB)):
            f.write(rng.randbytes(64 * MiB))


def pg_bin():
    vs = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v) if v.isdigit() else 0)
    return f"/usr/lib/postgresql/{vs[-1]}/bin"


def gen_pg(d, cfg):
    pb = pg_bin()
    work = os.path.join(d, "pg-work")
    rmtree(work)
    os.makedirs(os.path.join(work, "sock"))
    pw = pwd.getpwnam("postgres")
    for p in (work, os.path.join(work, "sock")):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    data = os.path.join(work, "data")
    as_pg = ["runuser", "-u", "postgres", "--"]
    sock = os.path.join(work, "sock")
    opts = f"-k {sock} -c listen_addresses='' -c synchronous_commit=off"
    run(as_pg + [f"{pb}/initdb", "-D", data, "-A", "trust", "-E", "UTF8", "--locale=C", "-U", "postgres"])
    started = False

    def start():
        nonlocal started
        run(as_pg + [f"{pb}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(work, "log"), "-w", "start"])
        started = True

    def stop():
        nonlocal started
        run(as_pg + [f"{pb}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"])
        started = False
    try:
        start()
        log(f"  pgbench -i -s {cfg['pg_scale']}")
        run(as_pg + [f"{pb}/pgbench", "-h", sock, "-U", "postgres", "-i", "-q", "-s", str(cfg["pg_scale"]), "postgres"])
        stop()
        run(["cp", "-a", data, os.path.join(d, "s1")])
        start()
        log(f"  pgbench -t {PG_TRANSACTIONS}")
        run(as_pg + [f"{pb}/pgbench", "-h", sock, "-U", "postgres", "-c", "1", "-t", str(PG_TRANSACTIONS),
                     "--random-seed=42", "postgres"])
        stop()
        run(["cp", "-a", data, os.path.join(d, "s2")])
    finally:
        if started:
            # only the postmaster this script started, through its own data directory
            subprocess.run(as_pg + [f"{pb}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"])
    rmtree(work)


def prepare(bench_dir, name, size, cfg):
    key = name if name in ("files",) + RESTORE_SETS else f"{name}-{size}"
    d = os.path.join(bench_dir, "data", key)
    marker = d + ".done"
    if os.path.exists(marker):
        log(f"data set {key}: present ({d})")
        return d
    log(f"data set {key}: generating in {d}")
    rmtree(d)
    os.makedirs(d)
    t0 = time.time()
    if name == "pg":
        gen_pg(d, cfg)
    elif name == "synth":
        gen_synth(d, cfg)
    elif name == "smallfiles":
        gen_smallfiles(d)
    elif name in BIG_FILE:
        gen_big(d, BIG_FILE[name])
    else:
        gen_files(d)
    open(marker, "w").close()
    log(f"data set {key}: done in {time.time() - t0:.0f} s, first state {tree_bytes(os.path.join(d, 's1')) / MiB:.0f} MiB")
    return d


# ----------------------------------------------------------------------------- tools

class Tool:
    """One tool's store and source directory for one run."""
    def __init__(self, name, ws, src):
        self.name, self.ws, self.src = name, ws, src
        self.restore = os.path.join(ws, "restore")

    def store_bytes(self):
        return tree_bytes(self.store)


class Dvol(Tool):
    def __init__(self, ws, exe):
        super().__init__("dvol", ws, None)
        self.exe, self.store = exe, os.path.join(ws, "dvol-store")
        self.env = dict(os.environ, DVOL_ROOT=self.store)
        self.ids = {}

    def cmd(self, *a):
        return [self.exe, "--disable-docker-integration", *a]

    def setup(self, state1):
        run(self.cmd("init", "bench"), env=self.env)
        self.src = run(self.cmd("path", "bench"), env=self.env).strip()
        sync_into(state1, self.src)

    def store_bytes(self):
        return tree_bytes(self.store, exclude=os.path.join(os.path.abspath(self.store), "volumes"))

    def op(self, op, label):
        if op.startswith("commit"):
            return self.cmd("commit", "-m", label, "bench"), None, [self.src, self.store]
        if op == "reset":
            return self.cmd("reset", "--hard", self.ids["s1"], "bench"), None, [self.store]
        if op == "checkout":
            return self.cmd("checkout", "state2", "bench"), None, [self.store]
        if op == "status":
            return self.cmd("status", "bench"), None, [self.src]
        if op == "restore":
            # Into an empty live directory: every file is made anew, as the others restore. Its
            # contents are moved aside, not deleted: the others restore into a directory no mass
            # delete has just preceded (ext4 then skips recently freed inodes, and its journal
            # and discards are still busy), and the run's work directory goes at its end anyway.
            trash = os.path.join(self.ws, "trash")
            os.makedirs(trash, exist_ok=True)
            aside = tempfile.mkdtemp(dir=trash)
            for n in os.listdir(self.src):
                os.rename(os.path.join(self.src, n), os.path.join(aside, n))
            return self.cmd("reset", "--hard", self.ids["s1"], "bench"), None, [self.store]

    def after(self, op, label, out):
        if op.startswith("commit"):
            self.ids[label] = out.strip()
        if op == "commit-second":
            run(self.cmd("checkout", "-b", "state2", "bench"), env=self.env)
            run(self.cmd("checkout", "master", "bench"), env=self.env)


class Cp(Tool):
    """The original dvol: a commit is a full copy of the directory, a reset a copy back."""
    def __init__(self, ws, src):
        super().__init__("cp", ws, src)
        self.store = os.path.join(ws, "cp-store")
        self.env = None

    def setup(self, state1):
        os.makedirs(self.store)

    def op(self, op, label):
        if op.startswith("commit"):
            return ["cp", "-a", self.src, os.path.join(self.store, label)], None, [self.src]
        if op in ("reset", "checkout", "restore"):
            rmtree(self.restore)
            which = "s2" if op == "checkout" else "s1"
            return ["cp", "-a", os.path.join(self.store, which), self.restore], None, [os.path.join(self.store, which)]

    def after(self, op, label, out):
        pass


class Borg(Tool):
    def __init__(self, ws, src):
        super().__init__("borg", ws, src)
        self.store = os.path.join(ws, "borg-repo")
        self.env = dict(os.environ, BORG_BASE_DIR=os.path.join(ws, "borg-home"),
                        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes", BORG_PASSPHRASE="")

    def setup(self, state1):
        run(["borg", "init", "-e", "none", self.store], env=self.env)

    def op(self, op, label):
        if op.startswith("commit"):
            return (["borg", "create", "--compression", "zstd", f"{self.store}::{label}", "."], self.src,
                    [self.src, self.store, self.env["BORG_BASE_DIR"]])
        if op in ("reset", "checkout", "restore"):
            rmtree(self.restore)
            os.makedirs(self.restore)
            return (["borg", "extract", f"{self.store}::{'s2' if op == 'checkout' else 's1'}"],
                    self.restore, [self.store])

    def after(self, op, label, out):
        pass


class Restic(Tool):
    def __init__(self, ws, src):
        super().__init__("restic", ws, src)
        self.store = os.path.join(ws, "restic-repo")
        self.env = dict(os.environ, RESTIC_PASSWORD="bench", RESTIC_CACHE_DIR=os.path.join(ws, "restic-cache"))

    def setup(self, state1):
        run(["restic", "-r", self.store, "init", "--repository-version", "2"], env=self.env)

    def op(self, op, label):
        if op.startswith("commit"):
            return (["restic", "-r", self.store, "backup", "-q", "--compression", "auto", "--tag", label, "."],
                    self.src, [self.src, self.store, self.env["RESTIC_CACHE_DIR"]])
        if op in ("reset", "checkout", "restore"):
            rmtree(self.restore)
            return (["restic", "-r", self.store, "restore", "-q", "latest", "--tag", "s2" if op == "checkout" else "s1",
                     "--target", self.restore], None, [self.store])

    def after(self, op, label, out):
        pass


class Git(Tool):
    """git add -A + commit into a bare repository, the data directory as the work tree."""
    def __init__(self, ws, src):
        super().__init__("git", ws, src)
        self.store = os.path.join(ws, "git.git")
        self.env = dict(os.environ, GIT_DIR=self.store, GIT_WORK_TREE=src,
                        GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
                        GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com",
                        GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*")

    def setup(self, state1):
        run(["git", "init", "-q", "--bare", "-b", "master", self.store], env=dict(os.environ))
        run(["git", "config", "gc.auto", "0"], env=self.env)

    def op(self, op, label):
        if op.startswith("commit"):
            return (["sh", "-c", f"git add -A && git commit -q --allow-empty -m {label}"], self.src, [self.src, self.store])
        if op == "reset":
            return ["git", "reset", "-q", "--hard", "s1"], self.src, [self.store, self.src]
        if op == "checkout":
            return ["git", "checkout", "-q", "state2"], self.src, [self.store, self.src]
        if op == "status":
            return ["git", "status", "--porcelain"], self.src, [self.src]

    def after(self, op, label, out):
        if op.startswith("commit"):
            run(["git", "tag", label], env=self.env, cwd=self.src)
        if op == "commit-second":
            run(["git", "branch", "state2"], env=self.env, cwd=self.src)


# ----------------------------------------------------------------------------- runs

def run_dataset(name, d, tools, runs, bench_dir, dvol_exe, results):
    s1, s2 = os.path.join(d, "s1"), os.path.join(d, "s2")
    replace = name.endswith(REPLACED)   # the second state applied by replacing files
    if name == "files":
        ops = [("commit-initial", "s1"), ("commit-nochange", "s1b"), ("status", None)]
    elif name in RESTORE_SETS:
        ops = [("commit-initial", "s1"), ("restore", None)]
    else:
        ops = [("commit-initial", "s1"), ("commit-nochange", "s1b"), ("commit-second", "s2"),
               ("reset", None), ("checkout", None)]
    keep = name == "smallfiles"   # nothing deleted until the runs are over (settle_after_delete)
    trash = os.path.join(bench_dir, "trash")
    if keep:
        rmtree(trash)
        rmtree(os.path.join(bench_dir, "work"))
        settle_after_delete()
    for r in range(runs):
        ws_root = os.path.join(bench_dir, "work")
        if keep and os.path.lexists(ws_root):
            os.makedirs(trash, exist_ok=True)
            os.rename(ws_root, tempfile.mkdtemp(dir=trash))
        rmtree(ws_root)
        os.makedirs(ws_root)
        src = os.path.join(ws_root, "src")   # shared by cp, borg, restic, git (dvol has its live dir)
        sync_into(s1, src)
        objs = []
        for t in tools:
            ws = os.path.join(ws_root, t)
            os.makedirs(ws)
            o = {"dvol": lambda: Dvol(ws, dvol_exe), "cp": lambda: Cp(ws, src), "borg": lambda: Borg(ws, src),
                 "restic": lambda: Restic(ws, src), "git": lambda: Git(ws, src)}[t]()
            o.setup(s1)
            objs.append(o)
        order = objs[r % len(objs):] + objs[:r % len(objs)]
        for op, label in ops:
            if op == "commit-second":
                sync_into(s2, src, replace)
                for o in objs:
                    if o.name == "dvol":
                        sync_into(s2, o.src, replace)
            for o in order:
                cmd, cwd, warm_paths = o.op(op, label)
                os.sync()   # no write-back of the previous tool's output during this one
                warm(*warm_paths)
                before = o.store_bytes() if op.startswith("commit") else None
                wall, rss, out = measure(cmd, cwd=cwd, env=o.env)
                added = o.store_bytes() - before if before is not None else None
                o.after(op, label, out)
                results.setdefault((name, op, o.name), []).append((wall, rss, added))
                log(f"[{name} run {r + 1}/{runs}] {op:16s} {TOOL_LABEL[o.name]:7s} {wall:9.3f} s  "
                    f"{rss / 1024:7.1f} MiB" + (f"  +{added / MiB:.1f} MiB" if added is not None else ""))
                if o.name == "cp" and op == "commit-nochange":
                    rmtree(os.path.join(o.store, label))   # keep the disk use down
                if op in ("reset", "checkout", "restore"):
                    if keep and os.path.lexists(o.restore):
                        os.rename(o.restore, tempfile.mkdtemp(dir=ws_root, prefix="trash-"))
                    else:
                        rmtree(o.restore)
        if not keep:
            rmtree(ws_root)
    if keep:
        rmtree(ws_root)
        rmtree(trash)


# ----------------------------------------------------------------------------- remotes

REMOTE_OPS = {
    "push-initial": "commit + push of the first state",
    "push-nochange": "push, nothing to send",
    "pull-nochange": "pull, nothing to receive",
    "push-second": "commit + push of the second state",
    "clone": "clone (live directory ready)",
}
REMOTE_TOOL_LABEL = {"dvol": "dvol", "restic": "restic", "rclone": "dvol commit + rclone copy", "cp": "cp -a"}
REMOTE_KIND_LABEL = {"dir": "directory", "s3": "Ceph RGW (S3)"}
RGW_RANGE = 16 * MiB   # dvol's largest ranged read of a remote pack (remote::RemoteObjects::kMaxRange)


class Rgw:
    """A single-node Ceph RGW on 127.0.0.1, started and stopped by tests/e2e/rgw.sh (sourced, not
    copied), with its daemons' pid files under its directory. Counts requests from radosgw's log:
    the beast front end writes one access line per HTTP request at debug_rgw level 1 (the default)."""
    def __init__(self, bench_dir, size_bytes):
        self.dir = os.path.join(bench_dir, "rgw")
        self.script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "e2e", "rgw.sh")
        self.size = size_bytes
        self.started = False

    def start(self):
        rmtree(self.dir)
        out = self.dir + ".start"
        env = dict(os.environ, RGW_STORE="bluestore", RGW_SIZE=str(self.size))
        # The daemons fork into the background with their output in the cluster's log files;
        # ours goes to a file, so no daemon holds a pipe of ours open.
        with open(out, "w") as f:
            p = subprocess.run(["bash", "-c", '. "$1" || exit 1\n'
                                'if rgw_start "$2"; then\n'
                                '  printf "%s\\n" "$RGW_ENDPOINT" "$RGW_ACCESS_KEY" "$RGW_SECRET_KEY" "$RGW_START_SECONDS"\n'
                                'else echo "SKIP: $RGW_SKIP_REASON" >&2; exit 77; fi', "rgw", self.script, self.dir],
                               env=env, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.PIPE, text=True)
        lines = open(out).read().splitlines()
        os.unlink(out)
        if p.returncode != 0 or len(lines) < 4:
            raise BenchError(f"cannot start the Ceph RGW: {p.stderr.strip()[-1500:]}")
        self.started = True
        self.endpoint, self.access, self.secret, self.start_s = lines[:4]
        self.log = os.path.join(self.dir, "log", "client.rgw.a.log")
        self.asok = os.path.join(self.dir, "run", "client.rgw.a.asok")
        self.env = {"AWS_ACCESS_KEY_ID": self.access, "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_REGION": "us-east-1",
                    "RCLONE_CONFIG": os.path.join(self.dir, "rclone.conf"), "RCLONE_S3_PROVIDER": "Ceph",
                    "RCLONE_S3_ENDPOINT": self.endpoint, "RCLONE_S3_ACCESS_KEY_ID": self.access,
                    "RCLONE_S3_SECRET_ACCESS_KEY": self.secret, "RCLONE_S3_REGION": "us-east-1"}
        open(self.env["RCLONE_CONFIG"], "w").close()
        log(f"Ceph RGW (bluestore, {self.size / GiB:.0f} GiB sparse) at {self.endpoint}, started in {self.start_s} s")

    def stop(self):
        if not self.started:
            return
        # rgw_stop: TERM to each daemon whose pid file is under the directory (and whose command
        # line names its ceph.conf), KILL after 30 s, then the directory is removed.
        subprocess.run(["bash", "-c", '. "$1" && rgw_stop "$2"', "rgw", self.script, self.dir],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.started = False
        log("Ceph RGW stopped")

    def full_env(self, base=None):
        # Plain HTTP on loopback: no CA bundle (rclone's AWS SDK refuses AWS_CA_BUNDLE with its
        # own transport), and no other AWS setting of this machine's environment.
        env = {k: v for k, v in (base or os.environ).items()
               if k not in ("AWS_CA_BUNDLE", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                            "AWS_DEFAULT_REGION", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE")}
        return dict(env, **self.env)

    def daemon_cpu(self):
        """User + system CPU seconds the gateway's daemons (radosgw, ceph-osd, ceph-mon) have used."""
        total = 0
        run_dir = os.path.join(self.dir, "run")
        for name in os.listdir(run_dir):
            if not name.endswith(".pid"):
                continue
            try:
                pid = open(os.path.join(run_dir, name)).read().strip()
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            total += int(fields[11]) + int(fields[12])   # utime, stime (fields 14, 15 of stat)
        return total / os.sysconf("SC_CLK_TCK")

    def mark(self):
        self.flush()
        return os.path.getsize(self.log)

    def flush(self):
        subprocess.run(["timeout", "20", "ceph", "--admin-daemon", self.asok, "log", "flush"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def requests_since(self, mark):
        """(number of HTTP requests, bytes sent + received by radosgw) logged after mark."""
        self.flush()
        n = nbytes = 0
        with open(self.log, "rb") as f:
            f.seek(mark)
            for line in f.read().decode(errors="replace").splitlines():
                # beast: 0x7f..: 127.0.0.1 - test [date] "GET /bucket/key?x HTTP/1.1" 200 1234 - "ua" - latency=...
                i = line.find(" beast: ")
                if i < 0 or '" ' not in line[i:]:
                    continue
                rest = line[i:].split('" ', 1)[1].split()
                if len(rest) >= 2 and rest[0].isdigit():
                    n += 1
                    nbytes += int(rest[1]) if rest[1].isdigit() else 0
        return n, nbytes

    def mkbucket(self, bucket):
        run(["rclone", "mkdir", f":s3:{bucket}"], env=self.full_env())

    def bucket_bytes(self, bucket):
        out = run(["rclone", "size", "--json", f":s3:{bucket}"], env=self.full_env())
        return json.loads(out)["bytes"]


class RemoteTarget:
    """Where one tool sends one data set: a directory or a bucket of the RGW."""
    def __init__(self, kind, path=None, rgw=None, bucket=None):
        self.kind, self.path, self.rgw, self.bucket = kind, path, rgw, bucket

    def setup(self):
        if self.kind == "dir":
            os.makedirs(self.path, exist_ok=True)
        else:
            self.rgw.mkbucket(self.bucket)

    def size(self):
        return tree_bytes(self.path) if self.kind == "dir" else self.rgw.bucket_bytes(self.bucket)


class RDvol:
    """dvol: one store; a commit, then a push to each remote (so 'commit + push' is the commit's
    time plus that remote's push). The clone goes into a fresh store."""
    name = "dvol"

    def __init__(self, ws, exe, targets, rgw):
        self.ws, self.exe, self.targets, self.rgw = ws, exe, targets, rgw
        self.store = os.path.join(ws, "store")
        self.env = dict(os.environ, DVOL_ROOT=self.store)
        if rgw:
            self.env = rgw.full_env(self.env)
        self.remote_names = {}

    def cmd(self, *a):
        return [self.exe, "--disable-docker-integration", *a]

    def url(self, t):
        return t.path if t.kind == "dir" else f"s3://{t.bucket}/vols"

    def setup(self, state1):
        run(self.cmd("init", "bench"), env=self.env)
        self.src = run(self.cmd("path", "bench"), env=self.env).strip()
        sync_into(state1, self.src)
        for kind, t in self.targets.items():
            t.setup()
            extra = ["--endpoint", self.rgw.endpoint] if kind == "s3" else []
            run(self.cmd("remote", "add", f"r{kind}", self.url(t), *extra), env=self.env)
            self.remote_names[kind] = f"r{kind}"

    def live_dirs(self):
        return [self.src]

    def commit(self, label):
        return self.cmd("commit", "-m", label, "bench"), None, [self.src, self.store]

    def transfer(self, op, kind, label):
        t = self.targets[kind]
        if op in ("push-initial", "push-nochange", "push-second"):
            return self.cmd("push", "--json", self.remote_names[kind], "bench"), None, [self.store]
        if op == "pull-nochange":
            return self.cmd("pull", "--json", self.remote_names[kind], "bench"), None, [self.store]
        if op == "clone":
            dest = os.path.join(self.ws, "clone")
            rmtree(dest)
            extra = ["--endpoint", self.rgw.endpoint] if kind == "s3" else []
            env = dict(self.env, DVOL_ROOT=dest)
            return ([self.exe, "--disable-docker-integration", "clone", "--json", self.url(t), "bench", *extra], None,
                    [t.path] if kind == "dir" else [], env)

    def clone_cleanup(self):
        rmtree(os.path.join(self.ws, "clone"))


class RRclone(RDvol):
    """A dvol store committed locally, then its directory (without the live data) copied to the
    remote by rclone: what syncing the store with a generic tool would cost."""
    name = "rclone"

    def setup(self, state1):
        run(self.cmd("init", "bench"), env=self.env)
        self.src = run(self.cmd("path", "bench"), env=self.env).strip()
        sync_into(state1, self.src)
        for t in self.targets.values():
            t.setup()

    def transfer(self, op, kind, label):
        if op not in ("push-initial", "push-nochange", "push-second"):
            return None
        t = self.targets[kind]
        dst = os.path.join(t.path, "store") if kind == "dir" else f":s3:{t.bucket}/store"
        return (["rclone", "copy", "--exclude", "/volumes/**", "--exclude", "/tmp/**", self.store, dst], None,
                [self.store] + ([t.path] if kind == "dir" else []))


class RRestic:
    """restic backup straight from the source directory to the remote (its local and s3 backends);
    the restore is a new machine's: an empty cache."""
    name = "restic"

    def __init__(self, ws, src, targets, rgw):
        self.ws, self.src, self.targets, self.rgw = ws, src, targets, rgw
        self.env = dict(os.environ, RESTIC_PASSWORD="bench", RESTIC_CACHE_DIR=os.path.join(ws, "cache"))
        if rgw:
            self.env = rgw.full_env(self.env)

    def repo(self, kind):
        t = self.targets[kind]
        return t.path if kind == "dir" else f"s3:{self.rgw.endpoint}/{t.bucket}"

    def setup(self, state1):
        for kind, t in self.targets.items():
            if kind == "s3":
                t.setup()
            run(["restic", "-r", self.repo(kind), "init", "--repository-version", "2"], env=self.env)

    def live_dirs(self):
        return []

    def commit(self, label):
        return None

    def transfer(self, op, kind, label):
        t = self.targets[kind]
        if op in ("push-initial", "push-second"):
            return (["restic", "-r", self.repo(kind), "backup", "-q", "--compression", "auto", "--tag", label, "."], self.src,
                    [self.src, self.env["RESTIC_CACHE_DIR"]] + ([t.path] if kind == "dir" else []))
        if op == "clone":
            dest = os.path.join(self.ws, "restore")
            rmtree(dest)
            env = dict(self.env, RESTIC_CACHE_DIR=os.path.join(self.ws, "cache-clone"))
            rmtree(env["RESTIC_CACHE_DIR"])
            return (["restic", "-r", self.repo(kind), "restore", "-q", "latest", "--tag", "s2", "--target", dest], None,
                    [t.path] if kind == "dir" else [], env)
        return None

    def clone_cleanup(self):
        rmtree(os.path.join(self.ws, "restore"))
        rmtree(os.path.join(self.ws, "cache-clone"))


class RCp:
    """cp -a of the whole directory into the directory remote, and back."""
    name = "cp"

    def __init__(self, ws, src, targets):
        self.ws, self.src, self.targets = ws, src, {k: v for k, v in targets.items() if k == "dir"}
        self.env = None

    def setup(self, state1):
        for t in self.targets.values():
            t.setup()

    def live_dirs(self):
        return []

    def commit(self, label):
        return None

    def transfer(self, op, kind, label):
        if kind != "dir":
            return None
        t = self.targets[kind]
        if op in ("push-initial", "push-second"):
            return ["cp", "-a", self.src, os.path.join(t.path, label)], None, [self.src]
        if op == "clone":
            dest = os.path.join(self.ws, "restore")
            rmtree(dest)
            return ["cp", "-a", os.path.join(t.path, "s2"), dest], None, [os.path.join(t.path, "s2")], None
        return None

    def clone_cleanup(self):
        rmtree(os.path.join(self.ws, "restore"))


def remote_tools_for(ds):
    return ["dvol", "restic", "rclone", "cp"] if ds == "remote-pg" else ["dvol"]


def run_remote_dataset(name, d, tools, remotes, runs, bench_dir, dvol_exe, rgw, results):
    s1, s2 = os.path.join(d, "s1"), os.path.join(d, "s2")
    has_s2 = os.path.isdir(s2)
    ops = ["push-initial", "push-nochange", "pull-nochange"] + (["push-second"] if has_s2 else []) + ["clone"]
    for r in range(runs):
        ws_root = os.path.join(bench_dir, "work")
        rmtree(ws_root)
        os.makedirs(ws_root)
        remote_root = os.path.join(bench_dir, "remote")   # the directory remote: another directory of this disk
        rmtree(remote_root)
        src = os.path.join(ws_root, "src")   # restic's and cp's source (dvol has its live directory)
        if any(t in ("restic", "cp") for t in tools):
            sync_into(s1, src)
        objs = []
        for t in tools:
            ws = os.path.join(ws_root, t)
            os.makedirs(ws)
            tg = {}
            for kind in remotes:
                if kind == "dir":
                    tg[kind] = RemoteTarget("dir", path=os.path.join(remote_root, t))
                else:
                    tg[kind] = RemoteTarget("s3", rgw=rgw, bucket=f"b{int(time.time())}-{r}-{t}")
            o = {"dvol": lambda: RDvol(ws, dvol_exe, tg, rgw), "rclone": lambda: RRclone(ws, dvol_exe, tg, rgw),
                 "restic": lambda: RRestic(ws, src, tg, rgw), "cp": lambda: RCp(ws, src, tg)}[t]()
            o.setup(s1)
            objs.append(o)
        order = objs[r % len(objs):] + objs[:r % len(objs)]
        kinds = remotes[r % len(remotes):] + remotes[:r % len(remotes)]
        for op in ops:
            label = {"push-initial": "s1", "push-second": "s2"}.get(op)
            if op == "push-second":
                if src and os.path.isdir(src):
                    sync_into(s2, src)
                for o in objs:
                    for live in o.live_dirs():
                        sync_into(s2, live)
            for o in order:
                commit_wall = commit_rss = None
                if op in ("push-initial", "push-second") and o.commit(label):
                    cmd, cwd, warm_paths = o.commit(label)
                    os.sync()
                    warm(*warm_paths)
                    commit_wall, commit_rss, _ = measure(cmd, cwd=cwd, env=o.env)
                for kind in kinds:
                    if kind not in o.targets:
                        continue
                    spec = o.transfer(op, kind, label)
                    if spec is None:
                        continue
                    cmd, cwd, warm_paths = spec[:3]
                    env = spec[3] if len(spec) > 3 and spec[3] is not None else o.env
                    t = o.targets[kind]
                    before = t.size() if op.startswith("push") else None
                    os.sync()
                    warm(*warm_paths)
                    mark = rgw.mark() if kind == "s3" else None
                    gw0 = rgw.daemon_cpu() if kind == "s3" else None
                    wall, rss, out = measure(cmd, cwd=cwd, env=env)
                    cpu = LAST_CPU
                    gw_cpu = rgw.daemon_cpu() - gw0 if kind == "s3" else None
                    reqs, rbytes = rgw.requests_since(mark) if kind == "s3" else (None, None)
                    added = t.size() - before if before is not None else None
                    info = {}
                    if o.name == "dvol" and out.strip().startswith("{"):
                        try:
                            info = json.loads(out)
                        except ValueError:
                            info = {}
                    if op == "clone" and o.name == "dvol":
                        if kind == "s3":
                            info["remote_packs"] = len(run(["rclone", "lsf", f":s3:{t.bucket}/vols/packs"],
                                                           env=rgw.full_env()).split())
                        else:
                            info["remote_packs"] = len(os.listdir(os.path.join(t.path, "packs")))
                    if op == "clone":
                        o.clone_cleanup()
                    rec = dict(wall=wall + (commit_wall or 0), transfer=wall, commit=commit_wall,
                               rss=max(rss, commit_rss or 0), transfer_rss=rss, added=added, requests=reqs,
                               rgw_bytes=rbytes, info=info)
                    results.setdefault((name, op, o.name, kind), []).append(rec)
                    extra = (f"  +{added / MiB:.1f} MiB" if added is not None else "") + \
                        (f"  {reqs} requests, {rbytes / MiB:.1f} MiB over HTTP" if reqs is not None else "") + \
                        f"  cpu {cpu:.2f} s" + (f", gateway cpu {gw_cpu:.2f} s" if gw_cpu is not None else "")
                    log(f"[{name} run {r + 1}/{runs}] {op:13s} {REMOTE_TOOL_LABEL[o.name]:7s} {kind:3s} "
                        f"{wall + (commit_wall or 0):9.3f} s" + (f" (commit {commit_wall:.3f})" if commit_wall else "") +
                        f"  {max(rss, commit_rss or 0) / 1024:7.1f} MiB" + extra)
        rmtree(ws_root)
        rmtree(remote_root)


def summarise_remote(results):
    s = {}
    for k, v in results.items():
        if len(k) != 4:
            continue

        def med(f):
            xs = [x[f] for x in v if x[f] is not None]
            return statistics.median(xs) if xs else None
        s[k] = dict(wall=med("wall"), transfer=med("transfer"), commit=med("commit"), rss=max(x["rss"] for x in v),
                    transfer_rss=max(x["transfer_rss"] for x in v), added=med("added"), requests=med("requests"),
                    requests_all=[x["requests"] for x in v], rgw_bytes=med("rgw_bytes"), info=v[-1]["info"], n=len(v))
    return s


def remote_tables(s, datasets, remotes, data_info):
    out = []
    titles = {"remote-pg": "Remotes: PostgreSQL data directory", "remote-synth": "Remotes: synthetic tree",
              "remote-files": "Remotes: 100,000 small files"}
    for ds in datasets:
        out.append(f"### {titles[ds]} ({data_info.get(ds, '')})\n")
        out.append("| operation | tool | remote | wall s (median) | of which transfer s | peak RSS MiB | "
                   "bytes added to remote | HTTP requests | bytes over HTTP | time ÷ dvol |")
        out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for op in REMOTE_OPS:
            for kind in remotes:
                dv = s.get((ds, op, "dvol", kind))
                for t in ("dvol", "restic", "rclone", "cp"):
                    x = s.get((ds, op, t, kind))
                    if not x:
                        continue
                    ratio = f"{x['wall'] / dv['wall']:.1f}x" if dv and dv["wall"] > 0 else "–"
                    req = "–" if x["requests"] is None else (
                        f"{x['requests']:.0f}" if len(set(x["requests_all"])) == 1 else
                        f"{x['requests']:.0f} ({min(x['requests_all'])}-{max(x['requests_all'])})")
                    out.append(f"| {REMOTE_OPS[op]} | {REMOTE_TOOL_LABEL[t]} | {REMOTE_KIND_LABEL[kind]} | {x['wall']:.3f} | "
                               f"{x['transfer']:.3f} | {x['rss'] / 1024:.1f} | {fmt_bytes(x['added'])} | {req} | "
                               f"{fmt_bytes(x['rgw_bytes'])} | {ratio} |")
        out.append("")
    # Requests of each clone from the RGW against its bytes and chunks.
    rows = []
    for ds in datasets:
        x = s.get((ds, "clone", "dvol", "s3"))
        if not x:
            continue
        i = x["info"]
        got = i.get("bytes") or 0
        ranges = -(-got // RGW_RANGE)
        rows.append((ds, i.get("objects"), got, i.get("remote_packs"), ranges, x["requests"], i.get("requests")))
    if rows:
        out.append("### Requests of a clone from the RGW against its size\n")
        out.append("| data set | objects received | bytes received | packs on the remote | ⌈bytes ÷ 16 MiB⌉ | "
                   "HTTP requests (RGW log) | dvol's count of its ranged reads |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for ds, objs, got, packs, ranges, reqs, own in rows:
            out.append(f"| {ds} | {objs if objs is not None else '–'} | {fmt_bytes(got)} | {packs if packs is not None else '–'} | "
                       f"{ranges} | {reqs:.0f} | {own if own is not None else '–'} |")
        out.append("")
    return "\n".join(out), rows


HANDFUL = 5


def remote_targets(s, rows_scale):
    rows = []

    def g(ds, op, t, kind, f="wall"):
        x = s.get((ds, op, t, kind))
        return x[f] if x else None

    def ratio(desc, op, other, factor):
        a, b = g("remote-pg", op, other, "s3"), g("remote-pg", op, "dvol", "s3")
        if a is not None and b is not None:
            rows.append((desc, f"{a / b:.1f}x ({REMOTE_TOOL_LABEL[other]} {a:.3f} s / dvol {b:.3f} s)", a / b >= factor))
    ratio("PG commit + push to the RGW ≥ 2x faster than restic backup to it", "push-initial", "restic", 2)
    ratio("PG second state: commit + push to the RGW ≥ 3x faster than restic backup", "push-second", "restic", 3)
    a, b = g("remote-pg", "push-second", "restic", "s3", "added"), g("remote-pg", "push-second", "dvol", "s3", "added")
    if a is not None and b is not None:
        rows.append(("PG second state: uploads no more bytes than restic", f"dvol {fmt_bytes(b)}, restic {fmt_bytes(a)}", b <= a))
    ratio("PG clone from the RGW ≥ 2x faster than restic restore from it", "clone", "restic", 2)
    for ds in ("remote-pg", "remote-synth", "remote-files"):
        for op, what in (("push-nochange", "push"), ("pull-nochange", "pull")):
            b = g(ds, op, "dvol", "dir")
            if b is not None:
                rows.append((f"{ds}: {what} with nothing to send, directory remote < 100 ms", f"{b * 1000:.1f} ms", b < 0.100))
            x = s.get((ds, op, "dvol", "s3"))
            if x is not None:
                worst = max(x["requests_all"])
                rows.append((f"{ds}: {what} with nothing to send, at most a handful (≤ {HANDFUL}) of S3 requests",
                             f"{worst} requests ({x['wall'] * 1000:.0f} ms)", worst <= HANDFUL))
    if rows_scale:
        # A clone reads each pack's index and its chunks in ranged reads of up to 16 MiB: its
        # requests are bounded by a constant, the packs and the bytes, whatever the chunk count.
        worst = []
        ok = True
        for ds, objs, got, packs, ranges, reqs, own in rows_scale:
            bound = 10 + 2 * (packs or 0) + ranges
            worst.append(f"{ds} {reqs:.0f} ≤ {bound}" + (f", {objs} objects" if objs else ""))
            ok = ok and reqs <= bound
        rows.append(("Clone requests scale with bytes ÷ pack size, not chunks (≤ 10 + 2 × packs + ⌈bytes ÷ 16 MiB⌉)",
                     "; ".join(worst), ok))
    for ds in ("remote-synth",):
        for op, what in (("push-initial", "push"), ("clone", "clone")):
            xs = [s.get((ds, op, "dvol", k)) for k in ("dir", "s3")]
            xs = [x for x in xs if x]
            if xs:
                m = max(x["transfer_rss"] for x in xs)
                rows.append((f"Synthetic set: peak RSS of {what} < 256 MiB", f"{m / 1024:.1f} MiB", m < 256 * 1024))
    out = ["### Targets (remotes)\n", "| target | measured | result |", "|---|---|---|"]
    for desc, meas, ok in rows:
        out.append(f"| {desc} | {meas} | {'PASS' if ok else 'MISS'} |")
    return "\n".join(out) + "\n", rows


# ----------------------------------------------------------------------------- mounts

MOUNT_OPS = {
    "read-cold": "sequential read of the largest file, first read",
    "read-warm": "the same read again (page cache)",
    "ls": "ls -lR of the 100,000-file set",
}
MOUNT_TOOL_LABEL = {"dvol": "dvol mount", "restic": "restic mount", "borg": "borg mount"}


def wait_mounted(path, proc, what, timeout=600):
    t0 = time.time()
    while not os.path.ismount(path):
        if proc.poll() is not None:
            raise BenchError(f"{what} exited ({proc.returncode}) before {path} was mounted")
        if time.time() - t0 > timeout:
            raise BenchError(f"{what}: {path} not mounted after {timeout} s")
        time.sleep(0.05)


def find_below(top, name):
    """The path of the first entry called `name` below `top` (restic's snapshots hold the
    backed-up directory under its absolute path)."""
    for root, dirs, files in os.walk(top):
        if name in files or name in dirs:
            return os.path.join(root, name)
    raise BenchError(f"{name} not found below {top}")


class MountTool:
    """One tool's store holding two snapshots (the big file, the many files), each mounted by a
    foreground process of the tool (started and stopped here, by its pid)."""
    def __init__(self, name, ws):
        self.name, self.ws = name, ws
        self.procs = {}
        self.peak_rss = {}

    def mount(self, which, mnt):
        os.makedirs(mnt, exist_ok=True)
        cmd = self.mount_cmd(which, mnt)
        proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        self.procs[mnt] = proc
        wait_mounted(mnt, proc, " ".join(cmd[:2]))
        return self.root_of(which, mnt)

    def rss_of(self, mnt):
        """The mount process's peak RSS so far, KiB (VmHWM)."""
        proc = self.procs[mnt]
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def umount(self, mnt):
        proc = self.procs.pop(mnt)
        run(["fusermount3", "-u", mnt])
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()   # this bench's own process, by its pid
            proc.wait()


class MDvol(MountTool):
    def __init__(self, ws, exe):
        super().__init__("dvol", ws)
        self.exe, self.store = exe, os.path.join(ws, "dvol-store")
        self.env = dict(os.environ, DVOL_ROOT=self.store)

    def cmd(self, *a):
        return [self.exe, "--disable-docker-integration", *a]

    def setup(self, big, files_dir):
        for vol, fill in (("big", lambda live: os.link(big, os.path.join(live, os.path.basename(big)))),
                          ("files", lambda live: sync_into(files_dir, live))):
            run(self.cmd("init", vol), env=self.env)
            fill(run(self.cmd("path", vol), env=self.env).strip())
            run(self.cmd("commit", "-m", vol, vol), env=self.env)

    def mount_cmd(self, which, mnt):
        return self.cmd("mount", "-f", which, mnt)

    def root_of(self, which, mnt):
        return mnt

    def warm_paths(self):
        return [os.path.join(self.store, "objects")]


class MRestic(MountTool):
    def __init__(self, ws):
        super().__init__("restic", ws)
        self.store = os.path.join(ws, "restic-repo")
        self.env = dict(os.environ, RESTIC_PASSWORD="bench", RESTIC_CACHE_DIR=os.path.join(ws, "restic-cache"))

    def setup(self, big, files_dir):
        run(["restic", "-r", self.store, "init", "--repository-version", "2"], env=self.env)
        run(["restic", "-r", self.store, "backup", "-q", "--compression", "auto", "--tag", "big", big], env=self.env)
        run(["restic", "-r", self.store, "backup", "-q", "--compression", "auto", "--tag", "files", os.path.abspath(files_dir)],
            env=self.env)
        self.files_name = os.path.basename(os.path.abspath(files_dir))
        self.big_name = os.path.basename(big)

    def mount_cmd(self, which, mnt):
        return ["restic", "-r", self.store, "mount", "--tag", which, mnt]

    def root_of(self, which, mnt):
        snap = os.path.join(mnt, "tags", which, "latest")
        return os.path.dirname(find_below(snap, self.big_name)) if which == "big" else find_below(snap, self.files_name)

    def warm_paths(self):
        return [self.store, self.env["RESTIC_CACHE_DIR"]]


class MBorg(MountTool):
    def __init__(self, ws):
        super().__init__("borg", ws)
        self.store = os.path.join(ws, "borg-repo")
        self.env = dict(os.environ, BORG_BASE_DIR=os.path.join(ws, "borg-home"),
                        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes", BORG_PASSPHRASE="")

    def setup(self, big, files_dir):
        run(["borg", "init", "-e", "none", self.store], env=self.env)
        run(["borg", "create", "--compression", "zstd", f"{self.store}::big", os.path.basename(big)],
            env=self.env, cwd=os.path.dirname(big))
        run(["borg", "create", "--compression", "zstd", f"{self.store}::files", "."], env=self.env, cwd=files_dir)

    def mount_cmd(self, which, mnt):
        return ["borg", "mount", "-f", f"{self.store}::{which}", mnt]

    def root_of(self, which, mnt):
        return mnt

    def warm_paths(self):
        return [self.store, self.env["BORG_BASE_DIR"]]


def largest_file(top):
    best = (0, None)
    for root, _, files in os.walk(top):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                best = max(best, (os.path.getsize(p), p))
    return best


def run_mount_dataset(synth_dir, files_dir, tools, runs, bench_dir, dvol_exe, results, data_info):
    size, big = largest_file(os.path.join(synth_dir, "s1"))
    files_s1 = os.path.join(files_dir, "s1")
    data_info["mount"] = (f"the largest file of the synthetic set ({size / MiB:,.0f} MiB, {os.path.basename(big)}) "
                          f"and the 100,000-file set")
    for r in range(runs):
        ws_root = os.path.join(bench_dir, "work")
        rmtree(ws_root)
        os.makedirs(ws_root)
        objs = []
        for t in tools:
            ws = os.path.join(ws_root, t)
            os.makedirs(ws)
            o = {"dvol": lambda: MDvol(ws, dvol_exe), "restic": lambda: MRestic(ws), "borg": lambda: MBorg(ws)}[t]()
            log(f"[mount run {r + 1}/{runs}] {t}: storing the two snapshots (untimed)")
            o.setup(big, files_s1)
            objs.append(o)
        order = objs[r % len(objs):] + objs[:r % len(objs)]
        for o in order:
            try:
                mnt = os.path.join(o.ws, "mnt-big")
                root = o.mount("big", mnt)
                path = os.path.join(root, os.path.basename(big))
                for op in ("read-cold", "read-warm"):
                    os.sync()
                    warm(*o.warm_paths())
                    wall, _, _ = measure(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"])
                    rss = o.rss_of(mnt)
                    results.setdefault(("mount", op, o.name), []).append((wall, rss, None))
                    log(f"[mount run {r + 1}/{runs}] {op:9s} {MOUNT_TOOL_LABEL[o.name]:12s} {wall:8.3f} s "
                        f"{size / wall / 1e6:8.0f} MB/s  mount process {rss / 1024:.1f} MiB")
                o.umount(mnt)
                mnt = os.path.join(o.ws, "mnt-files")
                os.sync()
                warm(*o.warm_paths())
                t0 = time.perf_counter()
                root = o.mount("files", mnt)
                mount_s = time.perf_counter() - t0
                wall, _, out = measure(["ls", "-lR", root])
                nlines = out.count("\n")
                rss = o.rss_of(mnt)
                results.setdefault(("mount", "ls", o.name), []).append((wall, rss, mount_s))
                log(f"[mount run {r + 1}/{runs}] ls        {MOUNT_TOOL_LABEL[o.name]:12s} {wall:8.3f} s "
                    f"({nlines} lines; mounting took {mount_s:.1f} s)  mount process {rss / 1024:.1f} MiB")
                if nlines < MANY_FILES:   # a mount that shows less would be fast for nothing
                    raise BenchError(f"ls -lR through {MOUNT_TOOL_LABEL[o.name]} printed {nlines} lines, fewer than the files")
                o.umount(mnt)
            finally:
                for m in list(o.procs):
                    o.umount(m)
        rmtree(ws_root)
    return size


def mount_report(results, data_info, tools, size):
    """The mount table and targets; `size`: the bytes of the file read."""
    s = {}
    for (ds, op, t), v in results.items():
        if ds == "mount":
            s[(op, t)] = dict(wall=statistics.median(x[0] for x in v), rss=max(x[1] for x in v),
                              mount_s=(statistics.median(x[2] for x in v) if v[0][2] is not None else None))
    if not s:
        return ""
    out = [f"### Mounts ({data_info.get('mount', '')})\n",
           "| operation | tool | wall s (median) | MB/s | mount process peak RSS MiB | time ÷ dvol |",
           "|---|---|---:|---:|---:|---:|"]
    for op, what in MOUNT_OPS.items():
        dv = s.get((op, "dvol"))
        for t in tools:
            x = s.get((op, t))
            if not x:
                continue
            rate = f"{size / x['wall'] / 1e6:,.0f}" if op.startswith("read") else "–"
            ratio = f"{x['wall'] / dv['wall']:.1f}x" if dv else "–"
            label = what + (f" (mounting took {x['mount_s']:.1f} s, untimed)" if x.get("mount_s") is not None else "")
            out.append(f"| {label} | {MOUNT_TOOL_LABEL[t]} | {x['wall']:.3f} | {rate} | {x['rss'] / 1024:.1f} | {ratio} |")
    out.append("")
    rows = []
    for op, what in (("read-cold", "Sequential read of the largest file"), ("ls", "ls -lR of the 100,000-file set")):
        dv = s.get((op, "dvol"))
        for t in ("restic", "borg"):
            x = s.get((op, t))
            if dv and x:
                f = x["wall"] / dv["wall"]
                rows.append((f"{what} through dvol mount ≥ 5x faster than {MOUNT_TOOL_LABEL[t]}",
                             f"{f:.1f}x ({x['wall']:.3f} s / {dv['wall']:.3f} s)", f >= 5))
    dv = s.get(("read-warm", "dvol"))
    if dv:
        rate = size / dv["wall"] / 1e9
        rows.append(("Sequential read of cached data through dvol mount ≥ 1 GB/s", f"{rate:.2f} GB/s", rate >= 1))
    dvr = [x["rss"] for (op, t), x in s.items() if t == "dvol"]
    if dvr:
        rows.append(("Peak RSS of the dvol mount process < 256 MiB", f"{max(dvr) / 1024:.1f} MiB", max(dvr) < 256 * 1024))
    out += ["### Targets (mounts)\n", "| target | measured | result |", "|---|---|---|"]
    for desc, meas, ok in rows:
        out.append(f"| {desc} | {meas} | {'PASS' if ok else 'MISS'} |")
    return "\n".join(out) + "\n"


def fmt_bytes(b):
    if b is None:
        return "–"
    if b < 10 * MiB:
        return f"{b / 1024:.0f} KiB"
    return f"{b / MiB:.1f} MiB"


def summarise(results):
    s = {}
    for k, v in results.items():
        s[k] = dict(wall=statistics.median(x[0] for x in v), rss=max(x[1] for x in v),
                    added=(statistics.median(x[2] for x in v) if v[0][2] is not None else None), n=len(v))
    return s


def tables(s, datasets, tools, data_info):
    out = []
    titles = {"pg": "PostgreSQL data directory", "synth": "Synthetic tree", "files": "100,000 small files",
              "pg" + REPLACED: "PostgreSQL data directory, second state applied by replacing files",
              "synth" + REPLACED: "Synthetic tree, second state applied by replacing files",
              "smallfiles": "Restore of 100,000 files of 100-2,000 bytes", "big2g": "Restore of one 2 GiB file of random bytes",
              "big4g": "Restore of one 4 GiB file of random bytes"}
    for ds in datasets:
        out.append(f"### {titles[ds]} ({data_info.get(ds, '')})\n")
        out.append("| operation | tool | wall s (median) | peak RSS MiB | bytes added to store | time ÷ dvol |")
        out.append("|---|---|---:|---:|---:|---:|")
        for op in OPS:
            dv = s.get((ds, op, "dvol"))
            for t in tools:
                x = s.get((ds, op, t))
                if not x:
                    continue
                ratio = f"{x['wall'] / dv['wall']:.1f}x" if dv and dv["wall"] > 0 else "–"
                rate = f" ({BIG_FILE[ds] / x['wall'] / 1e9:.2f} GB/s)" if ds in BIG_FILE and op == "restore" else ""
                out.append(f"| {OPS[op]} | {TOOL_LABEL[t]} | {x['wall']:.3f}{rate} | {x['rss'] / 1024:.1f} | "
                           f"{fmt_bytes(x['added'])} | {ratio} |")
        out.append("")
    return "\n".join(out)


def targets(s, size):
    rows = []

    def g(ds, op, t, f="wall"):
        x = s.get((ds, op, t))
        return x[f] if x else None

    def ratio_target(desc, ds, op, other, factor):
        a, b = g(ds, op, other), g(ds, op, "dvol")
        if a is None or b is None:
            return
        rows.append((desc, f"{a / b:.1f}x ({TOOL_LABEL[other]} {a:.3f} s / dvol {b:.3f} s)", a / b >= factor))

    def bytes_target(desc, ds, op, other):
        a, b = g(ds, op, other, "added"), g(ds, op, "dvol", "added")
        if a is None or b is None:
            return
        rows.append((desc, f"dvol {fmt_bytes(b)}, {TOOL_LABEL[other]} {fmt_bytes(a)}", b <= a))

    def abs_target(desc, ds, op, limit):
        b = g(ds, op, "dvol")
        if b is None:
            return
        rows.append((desc, f"{b * 1000:.1f} ms", b < limit))

    ratio_target("PG initial commit ≥ 3x faster than borg", "pg", "commit-initial", "borg", 3)
    bytes_target("PG initial commit: store no larger than borg's", "pg", "commit-initial", "borg")
    abs_target("PG commit, nothing changed < 50 ms", "pg", "commit-nochange", 0.050)
    abs_target("100,000 files commit, nothing changed < 1 s", "files", "commit-nochange", 1.0)
    a, b = g("files", "status", "git"), g("files", "status", "dvol")
    if a is not None and b is not None:
        rows.append(("100,000 files status no slower than git status", f"dvol {b:.3f} s, git {a:.3f} s", b <= a))
    for ds, how in (("pg", ""), ("pg" + REPLACED, " (second state by replacement)")):
        ratio_target(f"PG second-state commit{how} ≥ 3x faster than borg", ds, "commit-second", "borg", 3)
        bytes_target(f"PG second-state commit{how} adds no more than borg", ds, "commit-second", "borg")
        a, b = g(ds, "reset", "cp"), g(ds, "reset", "dvol")
        if a is not None and b is not None:
            rows.append((f"PG reset --hard{how} no slower than cp -a", f"dvol {b:.3f} s, cp -a {a:.3f} s", b <= a))
        ratio_target(f"PG reset --hard{how} ≥ 5x faster than borg extract", ds, "reset", "borg", 5)
    ratio_target("Synthetic: commit of the 1 MiB change ≥ 20x faster than cp -a", "synth", "commit-second", "cp", 20)
    ratio_target("Synthetic: reset of the 1 MiB change ≥ 20x faster than cp -a", "synth", "reset", "cp", 20)
    a, b = g("smallfiles", "restore", "cp"), g("smallfiles", "restore", "dvol")
    if a is not None and b is not None:
        rows.append(("100,000 small files: restore no slower than cp -a", f"dvol {b:.3f} s, cp -a {a:.3f} s", b <= a))
    for ds, nbytes in BIG_FILE.items():
        b = g(ds, "restore", "dvol")
        if b is None:
            continue
        a = g(ds, "restore", "cp")
        rows.append((f"{nbytes // GiB} GiB random file: restore ≥ 1 GB/s", f"{nbytes / b / 1e9:.2f} GB/s ({b:.3f} s"
                     + (f"; cp -a {nbytes / a / 1e9:.2f} GB/s" if a else "") + ")", nbytes / b >= 1e9))
        rss = g(ds, "restore", "dvol", "rss")
        rows.append((f"{nbytes // GiB} GiB random file: restore peak RSS < 256 MiB", f"{rss / 1024:.1f} MiB", rss < 256 * 1024))
    dv = [(k, v["rss"]) for k, v in s.items() if k[2] == "dvol"]
    if dv:
        worst = max(dv, key=lambda x: x[1])
        rows.append(("Peak RSS < 256 MiB for every dvol operation",
                     f"max {worst[1] / 1024:.1f} MiB ({worst[0][0]} {worst[0][1]})", worst[1] < 256 * 1024))
    out = [f"### Targets ({size} size)\n", "| target | measured | result |", "|---|---|---|"]
    for desc, meas, ok in rows:
        out.append(f"| {desc} | {meas} | {'PASS' if ok else 'MISS'} |")
    if size != "full":
        out.append("\n(The targets are stated for the full size; at the small size they are indicative.)")
    return "\n".join(out) + "\n", rows


def ver_of(cmd):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout.splitlines()[0].strip()
    except Exception:
        return "?"


def machine_info(dvol_exe):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = subprocess.run(["free", "-h"], stdout=subprocess.PIPE, text=True).stdout.splitlines()
    memline = mem[1].split()[1] if len(mem) > 1 else "?"

    def ver(cmd):
        try:
            return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout.splitlines()[0].strip()
        except Exception:
            return "?"
    # The commit of the tree the binary under test was built from (its build directory lies in
    # that tree, which may be another worktree than this script's).
    top = os.path.dirname(os.path.abspath(dvol_exe))
    rev = ver(["git", "-C", top, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    return {
        "dvol": rev + (" with uncommitted changes" if dirty else ""),
        "cpu": cpu, "nproc": os.cpu_count(), "memory": memline, "kernel": platform.release(),
        "borg": ver(["borg", "--version"]), "restic": ver(["restic", "version"]), "git": ver(["git", "--version"]),
        "postgresql": ver([f"{pg_bin()}/postgres", "--version"]),
        "rclone": ver(["rclone", "version"]),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dvol", required=True)
    ap.add_argument("--size", choices=["small", "full"], default="small")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="pg,synth,files",
                    help="comma-separated: pg, synth, files, pg-replaced, synth-replaced, smallfiles, big2g, big4g, remote-pg, remote-synth, remote-files, mount")
    ap.add_argument("--tools", default=None,
                    help=f"comma-separated (default all): {','.join(TOOLS_ALL)}; for remote-*: dvol,restic,rclone,cp")
    ap.add_argument("--remote", default="dir,s3", help="for remote-*: dir (a directory remote), s3 (a Ceph RGW on 127.0.0.1)")
    ap.add_argument("--record", help="also write the report to this file")
    a = ap.parse_args()
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    datasets = [x for x in a.only.split(",") if x]
    for x in datasets:
        if x not in ("pg", "synth", "files", "pg" + REPLACED, "synth" + REPLACED) + RESTORE_SETS + ("remote-pg", "remote-synth", "remote-files", "mount"):
            ap.error(f"unknown data set {x}")
    remotes = [x for x in a.remote.split(",") if x]
    for x in remotes:
        if x not in ("dir", "s3"):
            ap.error(f"unknown remote kind {x} (dir, s3)")
    tools = [t for t in (a.tools or ",".join(TOOLS_ALL + ["rclone"])).split(",") if t]
    bench_dir = os.path.abspath(os.environ.get("BENCH_DIR", "/var/tmp/dvol-bench"))
    os.makedirs(bench_dir, exist_ok=True)
    # One run per bench directory: each run empties BENCH_DIR/work, which a second run would
    # pull from under the first (its stores, its mounts). Held until this process exits.
    lock_fd = os.open(os.path.join(bench_dir, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"bench: another run is using {bench_dir} (set BENCH_DIR to another directory to run beside it)")
    dvol_exe = os.path.abspath(a.dvol)
    cfg = SIZES[a.size]
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    info = machine_info(dvol_exe)   # now, while the tree is what run.sh just built (edits may follow)
    free = shutil.disk_usage(bench_dir).free
    log(f"bench dir {bench_dir}, {free / GiB:.0f} GiB free; size {a.size}, {a.runs} runs; data sets {datasets}")
    results, data_info, loads = {}, {}, {}
    mount_size = None
    rgw = None
    remote_ds = [ds for ds in datasets if ds.startswith("remote-")]
    try:
        if remote_ds and "s3" in remotes:
            rgw = Rgw(bench_dir, (48 if "remote-synth" in remote_ds and a.size == "full" else 20) * GiB)
            rgw.start()
            info["ceph"] = ver_of(["radosgw", "--version"])
        for ds in datasets:
            if ds == "mount":
                l0 = os.getloadavg()[0]
                m_tools = [t for t in ("dvol", "restic", "borg") if t in tools]
                log(f"data set mount: tools {m_tools}")
                mount_size = run_mount_dataset(prepare(bench_dir, "synth", a.size, cfg), prepare(bench_dir, "files", a.size, cfg),
                                               m_tools, a.runs, bench_dir, dvol_exe, results, data_info)
                loads[ds] = (l0, os.getloadavg()[0])
                continue
            base = ds[len("remote-"):] if ds.startswith("remote-") else ds
            base = base[:-len(REPLACED)] if base.endswith(REPLACED) else base
            d = prepare(bench_dir, base, a.size, cfg)
            s1 = tree_bytes(os.path.join(d, "s1"))
            nfiles = sum(len(f) for _, _, f in os.walk(os.path.join(d, "s1")))
            data_info[ds] = f"{s1 / MiB:,.0f} MiB in {nfiles:,} files"
            if base == "pg":
                data_info[ds] += f"; pgbench -i -s {cfg['pg_scale']}, then {PG_TRANSACTIONS} transactions"
            if base == "synth":
                data_info[ds] += "; second state: 1 MiB changed in the largest file, 10 small files added"
            if ds.endswith(REPLACED):
                data_info[ds] += "; the second state applied by replacement (rsync -a --delete: changed files get new inodes)"
            l0 = os.getloadavg()[0]
            if ds.startswith("remote-"):
                ds_tools = [t for t in remote_tools_for(ds) if t in tools]
                log(f"data set {ds}: {data_info[ds]}; tools {ds_tools}; remotes {remotes}")
                run_remote_dataset(ds, d, ds_tools, remotes, a.runs, bench_dir, dvol_exe, rgw, results)
            else:
                ds_tools = [t for t in tools if t in (("dvol", "git") if ds == "files" else
                                                      ("dvol", "cp", "borg", "restic") if ds in RESTORE_SETS else TOOLS_ALL)]
                log(f"data set {ds}: {data_info[ds]}; tools {ds_tools}")
                run_dataset(ds, d, ds_tools, a.runs, bench_dir, dvol_exe, results)
            loads[ds] = (l0, os.getloadavg()[0])
    finally:
        if rgw:
            rgw.stop()
    local = {k: v for k, v in results.items() if len(k) == 3 and k[0] != "mount"}
    s = summarise(local)
    rs = summarise_remote(results)
    cmdline = "bench/run.sh " + " ".join(sys.argv[3:]) if sys.argv[1] == "--dvol" else " ".join(sys.argv)
    hdr = [f"## {a.size} size, {started.strftime('%Y-%m-%d %H:%M UTC')}\n",
           f"Command: `{cmdline.strip()}` ({a.runs} runs; wall time is the median, peak RSS the largest of the runs, "
           "bytes added the median).\n",
           f"dvol: commit {info['dvol']}, release build ({dvol_exe}).\n",
           f"Machine: {info['cpu']}, {info['nproc']} cores, {info['memory']} RAM, Linux {info['kernel']}; "
           f"{info['borg']}, {info['restic']}, {info['git']}, {info['postgresql']}"
           + (f", {info['rclone']}" if remote_ds else "") + (f", {info['ceph']}" if rgw else "") + ".\n"]
    load1 = os.getloadavg()
    hdr.append(f"Load average (1/5/15 min) at the start {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, at the end "
               f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f}; 1 min at the start and end of each data set: "
               + ", ".join(f"{ds} {x:.2f} to {y:.2f}" for ds, (x, y) in loads.items())
               + f" (on {info['nproc']} cores; anything else running skews the times).\n")
    if rgw:
        hdr.append(f"Remotes: a directory on the same disk (`{bench_dir}/remote`), and a single-node Ceph RGW on "
                   f"127.0.0.1 (tests/e2e/rgw.sh, bluestore in a sparse file on the same disk, started in {rgw.start_s} s); "
                   "HTTP requests and bytes counted from radosgw's access log lines.\n")
    report = "\n".join(hdr) + "\n"
    local_ds = [ds for ds in datasets if not ds.startswith("remote-") and ds != "mount"]
    if local_ds:
        report += tables(s, local_ds, [t for t in tools if t in TOOLS_ALL], data_info) + "\n" + targets(s, a.size)[0]
    if remote_ds:
        rt, scale = remote_tables(rs, remote_ds, remotes, data_info)
        report += ("\n" if local_ds else "") + rt + "\n" + remote_targets(rs, scale)[0]
    if mount_size is not None:
        report += ("\n" if local_ds or remote_ds else "") + mount_report(results, data_info, ["dvol", "restic", "borg"], mount_size)
    print(report)
    with open(os.path.join(bench_dir, f"results-{a.size}.md"), "w") as f:
        f.write(report)
    with open(os.path.join(bench_dir, f"results-{a.size}.json"), "w") as f:
        json.dump({"|".join(k): v for k, v in results.items()}, f, indent=1)
    if a.record:
        with open(a.record, "w") as f:
            f.write(report)
    log("done")


def _on_term(signum, frame):
    raise KeyboardInterrupt   # subprocess.run then kills the command being measured


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_term)
    try:
        main()
    except BenchError as e:
        log(f"FAILED: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
