// The write layer of lazy volumes (fuse-mount/layer_fs.h) without a kernel: a base commit built in
// memory, served by a source that counts what is read from it, and the layer's directory on disk.
// Namespace changes, file data at extent granularity (what a write copies from the base), xattrs
// and metadata, inode numbers, and crashes (the object dropped without a flush, then reopened).
#include <catch2/catch.hpp>

#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <algorithm>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "fuse-mount/commit_fs.h"
#include "fuse-mount/layer_fs.h"
#include "object/tree.h"
#include "repo/layer_tree.h"
#include "repo/readers.h"
#include "store/hash.h"
#include "memory_source.h"
#include "support.h"

using namespace dvol;
using namespace dvol::mountfs;
using dvol::test::TempDir;

namespace {

using dvol::test::MemorySource;

TreeEntry entry(const std::string& name, EntryType type, uint32_t mode = 0644) {
    TreeEntry e;
    e.name = name;
    e.type = type;
    e.mode = mode;
    e.uid = 1000;
    e.gid = 100;
    e.mtime_ns = 1'600'000'000'123'456'789;
    return e;
}

Tree tree_of(std::vector<TreeEntry> es) {
    std::sort(es.begin(), es.end(), [](const TreeEntry& a, const TreeEntry& b) { return a.name < b.name; });
    return Tree{std::move(es)};
}

TreeEntry dir(const std::string& name, const ObjectId& sub) {
    TreeEntry e = entry(name, EntryType::dir, 0755);
    e.subtree = sub;
    return e;
}

// A file of `chunks` chunks of `chunk_size` pseudo-random bytes, then a hole of `tail_hole`.
struct BigFile {
    std::string bytes;
    std::vector<ObjectId> ids;
    TreeEntry entry;
};
BigFile big_file(MemorySource& src, const std::string& name, size_t chunks, size_t chunk_size, uint64_t seed, size_t tail_hole = 0) {
    BigFile f;
    f.entry = entry(name, EntryType::file);
    auto data = dvol::test::random_bytes(chunks * chunk_size, seed);
    f.bytes.assign(reinterpret_cast<const char*>(data.data()), data.size());
    for (size_t i = 0; i < chunks; ++i) {
        ObjectId id = src.put(std::string_view(f.bytes).substr(i * chunk_size, chunk_size));
        f.ids.push_back(id);
        f.entry.content.extents.push_back(Extent{id, chunk_size, false});
    }
    if (tail_hole > 0) {
        f.entry.content.extents.push_back(Extent{{}, tail_hole, true});
        f.bytes.append(tail_hole, '\0');
    }
    f.entry.size = f.bytes.size();
    return f;
}

// The base used by most cases:
//   /big        4 chunks of 4096 random bytes, then a 8192-byte hole
//   /small      "hello"
//   /link       hard link to big... no: to small
//   /d/inner    "inner"
//   /d/sub/     empty directory
//   /sym -> small
struct Base {
    MemorySource src;
    BigFile big;
    ObjectId top;
    ObjectId commit = sha256(std::string_view("the base commit"));
    Base() {
        big = big_file(src, "big", 4, 4096, 7, 8192);
        TreeEntry small = entry("small", EntryType::file);
        small.content.extents = {Extent{src.put("hello"), 5, false}};
        small.size = 5;
        small.xattrs = {{"user.colour", "blue"}};
        TreeEntry link = entry("link", EntryType::hardlink);
        link.target = "small";
        TreeEntry inner = entry("inner", EntryType::file);
        inner.content.extents = {Extent{src.put("inner"), 5, false}};
        inner.size = 5;
        ObjectId sub = src.put_tree(Tree{});
        ObjectId d = src.put_tree(tree_of({inner, dir("sub", sub)}));
        TreeEntry sym = entry("sym", EntryType::symlink, 0777);
        sym.target = "small";
        sym.size = 5;
        ObjectId root = src.put_tree(tree_of({big.entry, small, link, dir("d", d), sym}));
        TreeEntry r = dir(std::string(kRootEntryName), root);
        r.mode = 0750;
        top = src.put_tree(tree_of({r}));
    }
};

struct Mounted {
    std::unique_ptr<CommitFs> base;
    std::unique_ptr<LayerFs> fs;
};

Mounted mount(Base& b, const std::string& dir) {
    Mounted m;
    auto c = CommitFs::open(b.src, b.top, {});
    REQUIRE(c);
    m.base = std::move(*c);
    auto l = LayerFs::open(*m.base, b.commit, dir);
    if (!l) FAIL(l.error().message);
    m.fs = std::move(*l);
    return m;
}

Attr look(LayerFs& fs, uint64_t parent, std::string_view name) {
    auto r = fs.lookup(parent, name);
    if (!r) FAIL(r.error().message);
    if (!r->has_value()) FAIL("no entry " << name);
    return **r;
}

bool exists(LayerFs& fs, uint64_t parent, std::string_view name) {
    auto r = fs.lookup(parent, name);
    REQUIRE(r);
    return r->has_value();
}

std::string read_all(LayerFs& fs, uint64_t ino) {
    auto h = fs.open_file(ino, false, false);
    if (!h) FAIL(h.error().message);
    std::string out;
    std::vector<std::byte> buf;
    for (uint64_t off = 0;; off += buf.size()) {
        REQUIRE(fs.read(**h, off, 5000, buf));
        if (buf.empty()) break;
        out.append(reinterpret_cast<const char*>(buf.data()), buf.size());
    }
    REQUIRE(fs.release(std::move(*h)));
    return out;
}

void write_at(LayerFs& fs, LayerFs::Handle& h, uint64_t off, std::string_view s) {
    auto n = fs.write(h, off, std::as_bytes(std::span(s.data(), s.size())));
    if (!n) FAIL(n.error().message);
    REQUIRE(*n == s.size());
}

std::unique_ptr<LayerFs::Handle> open_rw(LayerFs& fs, uint64_t ino, bool trunc = false) {
    auto h = fs.open_file(ino, true, trunc);
    if (!h) FAIL(h.error().message);
    return std::move(*h);
}

std::vector<std::string> names(LayerFs& fs, uint64_t ino) {
    auto d = fs.readdir(ino);
    if (!d) FAIL(d.error().message);
    std::vector<std::string> out;
    for (const auto& e : *d) out.push_back(e.name);
    return out;
}

NewEntry new_file(uint32_t perm = 0644) { return NewEntry{S_IFREG | perm, 1000, 100, 0, {}}; }

}  // namespace

TEST_CASE("the base shows through unchanged, and reading it changes nothing", "[layer_fs]") {
    Base b;
    TempDir tmp;
    auto m = mount(b, tmp / "layer");
    auto& fs = *m.fs;
    CHECK(names(fs, kRootIno) == std::vector<std::string>{"big", "d", "link", "small", "sym"});
    Attr big = look(fs, kRootIno, "big");
    CHECK(big.size == b.big.bytes.size());
    CHECK(big.ino < kLayerInoBase);
    CHECK(read_all(fs, big.ino) == b.big.bytes);
    Attr small = look(fs, kRootIno, "small");
    Attr link = look(fs, kRootIno, "link");
    CHECK(link.ino == small.ino);  // a hard link is one inode
    CHECK(read_all(fs, small.ino) == "hello");
    Attr d = look(fs, kRootIno, "d");
    CHECK(read_all(fs, look(fs, d.ino, "inner").ino) == "inner");
    auto t = fs.readlink(look(fs, kRootIno, "sym").ino);
    REQUIRE(t);
    CHECK(*t == "small");
    auto x = fs.getxattr(small.ino, "user.colour");
    REQUIRE(x);
    CHECK(x->value_or("") == "blue");
    CHECK(!exists(fs, kRootIno, "nothing"));
    // Numbers are the base paths': the same in another layer over the same base.
    TempDir tmp2;
    auto m2 = mount(b, tmp2 / "layer");
    CHECK(look(*m2.fs, kRootIno, "big").ino == big.ino);
    // Nothing was written to the layer for reads.
    CHECK(m.fs->counters().extents_copied == 0);
}

TEST_CASE("a read across base extents is one read of the base: random reads hint no read ahead", "[layer_fs]") {
    // With the base's read ahead on (as the lazy mount has it), a read that spans two extents
    // must reach CommitFs as one read: read extent by extent, the second piece would start where
    // the first ended, look sequential, and hint the chunks after it to the source (a lazy
    // volume's random reads then fetched 4x their bytes).
    Base b;
    TempDir tmp;
    Options o;
    o.readahead_chunks = 16;
    auto c = CommitFs::open(b.src, b.top, o);
    REQUIRE(c);
    auto l = LayerFs::open(**c, b.commit, tmp / "layer");
    REQUIRE(l);
    auto& fs = **l;
    Attr big = look(fs, kRootIno, "big");
    auto h = fs.open_file(big.ino, false, false);
    REQUIRE(h);
    std::vector<std::byte> buf;
    auto text = [&] { return std::string(reinterpret_cast<const char*>(buf.data()), buf.size()); };
    // Across chunks 0 and 1, then across 1 and 2: neither continues the read before it.
    REQUIRE(fs.read(**h, 4096 - 100, 200, buf));
    CHECK(text() == b.big.bytes.substr(4096 - 100, 200));
    REQUIRE(fs.read(**h, 2 * 4096 - 50, 100, buf));
    CHECK(text() == b.big.bytes.substr(2 * 4096 - 50, 100));
    CHECK(b.src.hinted() == 0);
    // A read that continues the last one is sequential: the chunk after it (3) is hinted.
    REQUIRE(fs.read(**h, 2 * 4096 + 50, 10, buf));
    CHECK(text() == b.big.bytes.substr(2 * 4096 + 50, 10));
    CHECK(b.src.hinted() == 1);
    REQUIRE(fs.release(std::move(*h)));
}

TEST_CASE("the first small write into a big base file copies the one extent it touches", "[layer_fs]") {
    Base b;
    TempDir tmp;
    auto m = mount(b, tmp / "layer");
    auto& fs = *m.fs;
    Attr big = look(fs, kRootIno, "big");
    {
        auto h = open_rw(fs, big.ino);
        write_at(fs, *h, 4096 + 100, "XYZ");
        REQUIRE(fs.release(std::move(h)));
    }
    // Chunk 1 was read to be copied; chunks 0, 2 and 3 were never read.
    CHECK(b.src.gets(b.big.ids[0]) == 0);
    CHECK(b.src.gets(b.big.ids[1]) == 1);
    CHECK(b.src.gets(b.big.ids[2]) == 0);
    CHECK(b.src.gets(b.big.ids[3]) == 0);
    CHECK(fs.counters().extents_copied == 1);
    CHECK(fs.counters().bytes_copied == 4096);
    // The data file holds that chunk only: sparse, never the whole file.
    struct stat st;
    REQUIRE(::stat((tmp / "layer/data").c_str(), &st) == 0);
    std::string expect = b.big.bytes;
    expect.replace(4096 + 100, 3, "XYZ");
    CHECK(read_all(fs, big.ino) == expect);
    CHECK(fs.getattr(big.ino)->size == b.big.bytes.size());
    CHECK(fs.getattr(big.ino)->ino == big.ino);

    // A write covering a whole extent reads nothing of it; a write into the hole reads nothing.
    auto copied_before = fs.counters();
    {
        auto h = open_rw(fs, big.ino);
        std::string whole(4096, 'w');
        write_at(fs, *h, 8192, whole);
        write_at(fs, *h, 16384 + 10, "in the hole");
        REQUIRE(fs.release(std::move(h)));
    }
    CHECK(fs.counters().extents_copied == copied_before.extents_copied + 2);  // chunk 2 and the hole
    CHECK(fs.counters().bytes_copied == copied_before.bytes_copied);           // neither read
    expect.replace(8192, 4096, std::string(4096, 'w'));
    expect.replace(16384 + 10, 11, "in the hole");
    CHECK(read_all(fs, big.ino) == expect);

    // Appending past the end, then a truncate below the base and an extension: zeros after the cut.
    {
        auto h = open_rw(fs, big.ino);
        write_at(fs, *h, expect.size() + 5, "tail");
        expect += std::string(5, '\0') + "tail";
        REQUIRE(fs.release(std::move(h)));
    }
    CHECK(read_all(fs, big.ino) == expect);
    SetAttr cut;
    cut.size = 5000;
    REQUIRE(fs.setattr(big.ino, cut));
    expect.resize(5000);
    CHECK(read_all(fs, big.ino) == expect);
    SetAttr grow;
    grow.size = 9000;
    REQUIRE(fs.setattr(big.ino, grow));
    expect.resize(9000, '\0');
    CHECK(read_all(fs, big.ino) == expect);
    // O_TRUNC.
    {
        auto h = open_rw(fs, big.ino, true);
        REQUIRE(fs.release(std::move(h)));
    }
    CHECK(read_all(fs, big.ino).empty());
}

TEST_CASE("create, O_EXCL, mkdir, symlink, fifo, devices, rename, link, unlink, rmdir", "[layer_fs]") {
    Base b;
    TempDir tmp;
    auto m = mount(b, tmp / "layer");
    auto& fs = *m.fs;
    Attr d = look(fs, kRootIno, "d");

    auto f = fs.mknod(d.ino, "new", new_file(0600));
    REQUIRE(f);
    CHECK(f->ino >= kLayerInoBase);
    CHECK(f->mode == (S_IFREG | 0600));
    auto again = fs.mknod(d.ino, "new", new_file());
    REQUIRE(!again);
    CHECK(again.error().sys == EEXIST);
    auto over_base = fs.mknod(d.ino, "inner", new_file());
    REQUIRE(!over_base);
    CHECK(over_base.error().sys == EEXIST);
    {
        auto h = open_rw(fs, f->ino);
        write_at(fs, *h, 0, "new data");
        REQUIRE(fs.release(std::move(h)));
    }
    CHECK(names(fs, d.ino) == std::vector<std::string>{"inner", "new", "sub"});

    auto sd = fs.mknod(kRootIno, "newdir", NewEntry{S_IFDIR | 0700, 0, 0, 0, {}});
    REQUIRE(sd);
    auto sl = fs.mknod(sd->ino, "s", NewEntry{S_IFLNK | 0777, 0, 0, 0, "../small"});
    REQUIRE(sl);
    CHECK(*fs.readlink(sl->ino) == "../small");
    CHECK(sl->size == 8);
    auto fifo = fs.mknod(sd->ino, "p", NewEntry{S_IFIFO | 0640, 0, 0, 0, {}});
    REQUIRE(fifo);
    CHECK((fifo->mode & S_IFMT) == S_IFIFO);
    auto dev = fs.mknod(sd->ino, "c", NewEntry{S_IFCHR | 0600, 0, 0, makedev(1, 3), {}});
    REQUIRE(dev);
    CHECK(dev->rdev == makedev(1, 3));

    // Rename a base file: same inode, new name; the old name is gone.
    Attr inner = look(fs, d.ino, "inner");
    REQUIRE(fs.rename(d.ino, "inner", kRootIno, "moved", 0));
    CHECK(!exists(fs, d.ino, "inner"));
    Attr moved = look(fs, kRootIno, "moved");
    CHECK(moved.ino == inner.ino);
    CHECK(read_all(fs, moved.ino) == "inner");
    // Rename over an existing file replaces it; RENAME_NOREPLACE refuses.
    auto nr = fs.rename(kRootIno, "moved", d.ino, "new", RENAME_NOREPLACE);
    REQUIRE(!nr);
    CHECK(nr.error().sys == EEXIST);
    REQUIRE(fs.rename(kRootIno, "moved", d.ino, "new", 0));
    CHECK(read_all(fs, look(fs, d.ino, "new").ino) == "inner");
    CHECK(!exists(fs, kRootIno, "moved"));
    // RENAME_EXCHANGE swaps.
    REQUIRE(fs.rename(kRootIno, "small", kRootIno, "sym", RENAME_EXCHANGE));
    CHECK(read_all(fs, look(fs, kRootIno, "sym").ino) == "hello");
    CHECK(*fs.readlink(look(fs, kRootIno, "small").ino) == "small");
    REQUIRE(fs.rename(kRootIno, "small", kRootIno, "sym", RENAME_EXCHANGE));
    // A directory over a file, a file over a directory, over a non-empty directory.
    CHECK(fs.rename(kRootIno, "newdir", kRootIno, "small", 0).error().sys == ENOTDIR);
    CHECK(fs.rename(kRootIno, "small", kRootIno, "newdir", 0).error().sys == EISDIR);
    auto empty_dir = fs.mknod(kRootIno, "empty", NewEntry{S_IFDIR | 0755, 0, 0, 0, {}});
    REQUIRE(empty_dir);
    CHECK(fs.rename(kRootIno, "empty", kRootIno, "d", 0).error().sys == ENOTEMPTY);
    // A base directory renamed: what is below it comes along.
    REQUIRE(fs.rename(kRootIno, "d", kRootIno, "d2", 0));
    Attr d2 = look(fs, kRootIno, "d2");
    CHECK(d2.ino == d.ino);
    CHECK(names(fs, d2.ino) == std::vector<std::string>{"new", "sub"});
    REQUIRE(fs.rename(kRootIno, "empty", d2.ino, "sub", 0));  // over an empty base directory
    CHECK(names(fs, d2.ino) == std::vector<std::string>{"new", "sub"});

    // Hard links: a new name of a base file, then writes through one name show in the other,
    // also through the base's own hard link.
    Attr small = look(fs, kRootIno, "small");
    auto l = fs.link(small.ino, d2.ino, "small2");
    REQUIRE(l);
    CHECK(l->ino == small.ino);
    CHECK(l->nlink == 3);  // small, the base's hard link "link", and small2
    {
        auto h = open_rw(fs, small.ino);
        write_at(fs, *h, 0, "J");
        REQUIRE(fs.release(std::move(h)));
    }
    CHECK(read_all(fs, look(fs, d2.ino, "small2").ino) == "Jello");
    CHECK(read_all(fs, look(fs, kRootIno, "link").ino) == "Jello");
    CHECK(fs.link(d2.ino, kRootIno, "dirlink").error().sys == EPERM);

    // unlink and rmdir.
    CHECK(fs.unlink(kRootIno, "d2").error().sys == EISDIR);
    CHECK(fs.rmdir(kRootIno, "small").error().sys == ENOTDIR);
    CHECK(fs.rmdir(kRootIno, "d2").error().sys == ENOTEMPTY);
    CHECK(fs.unlink(kRootIno, "nothing").error().sys == ENOENT);
    REQUIRE(fs.unlink(kRootIno, "small"));
    CHECK(!exists(fs, kRootIno, "small"));
    CHECK(read_all(fs, look(fs, d2.ino, "small2").ino) == "Jello");
    REQUIRE(fs.rmdir(d2.ino, "sub"));
    REQUIRE(fs.unlink(d2.ino, "new"));
    REQUIRE(fs.unlink(d2.ino, "small2"));
    REQUIRE(fs.rmdir(kRootIno, "d2"));
    CHECK(names(fs, kRootIno) == std::vector<std::string>{"big", "link", "newdir", "sym"});
    // Names are checked.
    CHECK(fs.mknod(kRootIno, "a/b", new_file()).error().sys == EINVAL);
    CHECK(fs.mknod(kRootIno, std::string(256, 'n'), new_file()).error().sys == ENAMETOOLONG);
}

TEST_CASE("metadata and xattrs of base and new entries", "[layer_fs]") {
    Base b;
    TempDir tmp;
    auto m = mount(b, tmp / "layer");
    auto& fs = *m.fs;
    Attr small = look(fs, kRootIno, "small");
    SetAttr s;
    s.mode = 04711;
    s.uid = 7;
    s.gid = 8;
    s.mtime_ns = 123'456'789;
    auto a = fs.setattr(small.ino, s);
    REQUIRE(a);
    CHECK(a->mode == (S_IFREG | 04711));
    CHECK(a->uid == 7);
    CHECK(a->gid == 8);
    CHECK(a->mtime_ns == 123'456'789);
    CHECK(a->ino == small.ino);
    CHECK(read_all(fs, small.ino) == "hello");  // metadata only: no data copied
    CHECK(fs.counters().extents_copied == 0);
    // The root itself.
    SetAttr r;
    r.mode = 0700;
    REQUIRE(fs.setattr(kRootIno, r));
    CHECK(fs.getattr(kRootIno)->mode == (S_IFDIR | 0700));

    // xattrs: the base's are kept on copy-up; create/replace flags.
    auto x = fs.getxattr(small.ino, "user.colour");
    REQUIRE(x);
    CHECK(x->value_or("") == "blue");
    CHECK(fs.setxattr(small.ino, "user.colour", "red", XATTR_CREATE).error().sys == EEXIST);
    CHECK(fs.setxattr(small.ino, "user.size", "big", XATTR_REPLACE).error().sys == ENODATA);
    REQUIRE(fs.setxattr(small.ino, "user.colour", "red", XATTR_REPLACE));
    REQUIRE(fs.setxattr(small.ino, "user.size", std::string("\0\xff", 2), XATTR_CREATE));
    CHECK(*fs.listxattr(small.ino) == std::vector<std::string>{"user.colour", "user.size"});
    CHECK(fs.getxattr(small.ino, "user.size")->value_or("") == std::string("\0\xff", 2));
    REQUIRE(fs.removexattr(small.ino, "user.colour"));
    CHECK(fs.removexattr(small.ino, "user.colour").error().sys == ENODATA);
    CHECK(!fs.getxattr(small.ino, "user.colour")->has_value());
    // A failed flag check on a base entry leaves it the base's.
    Attr inner = look(fs, look(fs, kRootIno, "d").ino, "inner");
    CHECK(fs.setxattr(inner.ino, "user.none", "x", XATTR_REPLACE).error().sys == ENODATA);
    CHECK(fs.listxattr(inner.ino)->empty());
}

TEST_CASE("a crash keeps fsync'ed writes and every namespace change, and leaves the layer consistent", "[layer_fs]") {
    Base b;
    TempDir tmp;
    std::string dir = tmp / "layer";
    std::string expect;
    uint64_t big_ino, new_ino;
    {
        auto m = mount(b, dir);
        auto& fs = *m.fs;
        big_ino = look(fs, kRootIno, "big").ino;
        auto h = open_rw(fs, big_ino);
        write_at(fs, *h, 100, "synced");
        write_at(fs, *h, 30000, "past the end, synced");
        REQUIRE(fs.fsync(big_ino));
        expect = b.big.bytes;
        expect.replace(100, 6, "synced");
        expect.resize(30000, '\0');
        expect += "past the end, synced";
        // Not synced: a write into another extent, and past the end.
        write_at(fs, *h, 9000, "lost?");
        write_at(fs, *h, 40000, "lost past the end");
        auto f = fs.mknod(kRootIno, "created", new_file());
        REQUIRE(f);
        new_ino = f->ino;
        REQUIRE(fs.rename(kRootIno, "small", kRootIno, "renamed", 0));
        // The process dies: handles and memory gone, nothing flushed.
        (void)h.release();
    }
    auto m = mount(b, dir);
    auto& fs = *m.fs;
    Attr big = look(fs, kRootIno, "big");
    CHECK(big.ino == big_ino);
    std::string got = read_all(fs, big.ino);
    CHECK(got.size() == expect.size());
    // The unsynced write into extent 2 may be there or not; everything else is what was synced.
    std::string variant = expect;
    variant.replace(9000, 5, "lost?");
    CHECK((got == expect || got == variant));
    // Namespace changes survive the process.
    CHECK(look(fs, kRootIno, "created").ino == new_ino);
    CHECK(exists(fs, kRootIno, "renamed"));
    CHECK(!exists(fs, kRootIno, "small"));
    // New inodes get new numbers.
    auto f2 = fs.mknod(kRootIno, "another", new_file());
    REQUIRE(f2);
    CHECK(f2->ino > new_ino);

    // Another base commit is refused.
    auto c = CommitFs::open(b.src, b.top, {});
    REQUIRE(c);
    auto wrong = LayerFs::open(**c, sha256(std::string_view("another commit")), tmp / "layer2");
    REQUIRE(wrong);  // a new directory is a new layer
    auto refused = LayerFs::open(**c, sha256(std::string_view("another commit")), dir);
    REQUIRE(!refused);
    CHECK(refused.error().code == Errc::conflict);
}

TEST_CASE("fdatasync of a file whose size and extents are recorded syncs its data alone, and keeps it", "[layer_fs]") {
    Base b;
    TempDir tmp;
    std::string dir = tmp / "layer";
    std::string expect = b.big.bytes;
    {
        auto m = mount(b, dir);
        auto& fs = *m.fs;
        uint64_t ino = look(fs, kRootIno, "big").ino;
        auto h = open_rw(fs, ino);
        write_at(fs, *h, 10, "first");  // copies extent 0: recorded at this fsync
        REQUIRE(fs.fsync(ino, true));
        write_at(fs, *h, 20, "second");  // same extent, same size: the data file only
        REQUIRE(fs.fsync(ino, true));
        write_at(fs, *h, expect.size(), "grown");  // a new size: recorded
        REQUIRE(fs.fsync(ino, true));
        (void)h.release();  // crash
    }
    expect.replace(10, 5, "first");
    expect.replace(20, 6, "second");
    expect += "grown";
    auto m = mount(b, dir);
    CHECK(read_all(*m.fs, look(*m.fs, kRootIno, "big").ino) == expect);
}

TEST_CASE("a file unlinked while open lives until its last release, and a crash does not leak it", "[layer_fs]") {
    Base b;
    TempDir tmp;
    std::string dir = tmp / "layer";
    {
        auto m = mount(b, dir);
        auto& fs = *m.fs;
        auto f = fs.mknod(kRootIno, "tmpfile", new_file());
        REQUIRE(f);
        auto h = open_rw(fs, f->ino);
        write_at(fs, *h, 0, "still here");
        REQUIRE(fs.unlink(kRootIno, "tmpfile"));
        CHECK(!exists(fs, kRootIno, "tmpfile"));
        std::vector<std::byte> buf;
        REQUIRE(fs.read(*h, 0, 100, buf));
        CHECK(std::string(reinterpret_cast<const char*>(buf.data()), buf.size()) == "still here");
        REQUIRE(fs.release(std::move(h)));
        // Gone with its data file.
        CHECK(::access(fmt::format("{}/data/{:016x}", dir, f->ino).c_str(), F_OK) != 0);

        auto g = fs.mknod(kRootIno, "orphan", new_file());
        REQUIRE(g);
        auto h2 = open_rw(fs, g->ino);
        write_at(fs, *h2, 0, "x");
        REQUIRE(fs.fsync(g->ino));
        REQUIRE(fs.unlink(kRootIno, "orphan"));
        (void)h2.release();  // the process dies with it open
    }
    auto m = mount(b, dir);
    auto d = dvol::list_dir(dvol::open_dir_nofollow(dir + "/data")->get(), dir + "/data");
    REQUIRE(d);
    CHECK(d->empty());
}

TEST_CASE("random writes, truncates and crashes against a model", "[layer_fs]") {
    // One base file of 8 chunks and a hole; each round: random writes and truncates, an fsync,
    // more writes, then a crash. After the reopen the file is what it was at the fsync (or,
    // for bytes written after it, either value).
    Base b;
    MemorySource& src = b.src;
    (void)src;
    TempDir tmp;
    std::string dir = tmp / "layer";
    std::mt19937_64 rng(42);
    std::string model = b.big.bytes;
    uint64_t ino = 0;
    for (int round = 0; round < 12; ++round) {
        auto m = mount(b, dir);
        auto& fs = *m.fs;
        ino = look(fs, kRootIno, "big").ino;
        REQUIRE(read_all(fs, ino) == model);
        auto h = open_rw(fs, ino);
        for (int i = 0; i < 20; ++i) {
            uint64_t limit = model.size() + 6000;
            if (rng() % 6 == 0) {
                uint64_t size = rng() % limit;
                SetAttr s;
                s.size = size;
                REQUIRE(fs.setattr(ino, s));
                model.resize(size, '\0');
            } else {
                uint64_t off = rng() % limit;
                std::string data(1 + rng() % 5000, static_cast<char>('a' + rng() % 26));
                write_at(fs, *h, off, data);
                if (model.size() < off + data.size()) model.resize(off + data.size(), '\0');
                model.replace(off, data.size(), data);
            }
            if (i % 7 == 0) REQUIRE(read_all(fs, ino) == model);
        }
        REQUIRE(fs.fsync(ino));
        REQUIRE(read_all(fs, ino) == model);
        // Writes after the fsync land in the data file but are not recorded: all within the
        // base's extents that are already copied, or lost.
        (void)h.release();
    }
}

TEST_CASE("concurrent writers and readers of one file and of the namespace", "[layer_fs]") {
    Base b;
    TempDir tmp;
    auto m = mount(b, tmp / "layer");
    auto& fs = *m.fs;
    uint64_t big = look(fs, kRootIno, "big").ino;
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t) {
        ts.emplace_back([&, t] {
            auto h = fs.open_file(big, true, false);
            REQUIRE(h);
            for (int i = 0; i < 50; ++i) {
                std::string s(100, static_cast<char>('A' + t));
                REQUIRE(fs.write(**h, static_cast<uint64_t>(t) * 6000 + static_cast<uint64_t>(i) * 10, std::as_bytes(std::span(s.data(), s.size()))));
                std::vector<std::byte> buf;
                REQUIRE(fs.read(**h, static_cast<uint64_t>(t) * 6000, 200, buf));
                auto name = fmt::format("f{}-{}", t, i);
                auto f = fs.mknod(kRootIno, name, new_file());
                REQUIRE(f);
                REQUIRE(fs.unlink(kRootIno, name));
            }
            REQUIRE(fs.release(std::move(*h)));
        });
    }
    for (auto& t : ts) t.join();
    std::string expect = b.big.bytes;
    for (int t = 0; t < 4; ++t)
        for (int i = 0; i < 50; ++i) expect.replace(static_cast<size_t>(t) * 6000 + static_cast<size_t>(i) * 10, 100, std::string(100, static_cast<char>('A' + t)));
    CHECK(read_all(fs, big) == expect);
    CHECK(names(fs, kRootIno) == std::vector<std::string>{"big", "d", "link", "small", "sym"});
}

namespace {

// path -> what stat, readlink, xattrs and the content show (inode numbers and link counts left out).
std::string describe(const Attr& a) { return fmt::format("mode {:o} uid {} gid {} size {} mtime {} rdev {}", a.mode, a.uid, a.gid, a.size, a.mtime_ns, a.rdev); }

void snapshot_layer(LayerFs& fs, uint64_t dir, const std::string& prefix, std::map<std::string, std::string>& out) {
    auto entries = fs.readdir(dir);
    REQUIRE(entries);
    for (const auto& e : *entries) {
        Attr a = look(fs, dir, e.name);
        std::string path = prefix + e.name;
        std::string d = describe(a);
        auto names = fs.listxattr(a.ino);
        REQUIRE(names);
        for (const auto& x : *names) d += fmt::format(" xattr {}={}", x, fs.getxattr(a.ino, x)->value_or("?"));
        if ((a.mode & S_IFMT) == S_IFREG) d += " content " + sha256(read_all(fs, a.ino)).hex();
        if ((a.mode & S_IFMT) == S_IFLNK) d += " target " + *fs.readlink(a.ino);
        out[path] = d;
        if ((a.mode & S_IFMT) == S_IFDIR) snapshot_layer(fs, a.ino, path + "/", out);
    }
}

void snapshot_commit(CommitFs& fs, uint64_t dir, const std::string& prefix, std::map<std::string, std::string>& out) {
    auto d = fs.opendir(dir);
    if (!d) FAIL(prefix << ": " << d.error().message);
    for (size_t i = 0; i < (*d)->size(); ++i) {
        std::string name = (*d)->entry(i).name;
        auto r = fs.lookup(dir, name);
        REQUIRE(r);
        REQUIRE(r->has_value());
        Attr a = **r;
        std::string path = prefix + name;
        std::string desc = describe(a);
        auto names = fs.listxattr(a.ino);
        REQUIRE(names);
        for (const auto& x : *names) desc += fmt::format(" xattr {}={}", x, fs.getxattr(a.ino, x)->value_or("?"));
        if ((a.mode & S_IFMT) == S_IFREG) {
            auto f = fs.open_file(a.ino);
            REQUIRE(f);
            std::string all;
            ReadResult rr;
            for (uint64_t off = 0; off < (*f)->size(); off += rr.bytes) {
                REQUIRE(fs.read(**f, off, 1 << 20, rr));
                for (const auto& p : rr.pieces) all.append(reinterpret_cast<const char*>(p.data()), p.size());
                if (rr.bytes == 0) break;
            }
            desc += " content " + sha256(all).hex();
        }
        if ((a.mode & S_IFMT) == S_IFLNK) desc += " target " + *fs.readlink(a.ino);
        out[path] = desc;
        if ((a.mode & S_IFMT) == S_IFDIR) snapshot_commit(fs, a.ino, path + "/", out);
    }
}

// Sinks for build_layer_tree that keep what it makes in `src`, each checked against its id.
LayerTreeSinks sinks_into(MemorySource& src) {
    LayerTreeSinks sinks;
    sinks.meta = [&src](const ObjectId& id, std::span<const std::byte> bytes) -> Status {
        CHECK(sha256(bytes) == id);
        src.put(bytes);
        return {};
    };
    sinks.chunk = [&src](const ObjectId& id, std::span<const std::byte> bytes) -> Status {
        CHECK(sha256(bytes) == id);
        src.put(bytes);
        return {};
    };
    return sinks;
}

}  // namespace

TEST_CASE("the layer as a tree (status, commit): the same files, new chunks only for the layer's bytes, nothing of the base read", "[layer_fs]") {
    Base b;
    TempDir tmp;
    std::string dir = tmp / "layer";
    auto m = mount(b, dir);
    auto& fs = *m.fs;
    // Changes of every kind.
    uint64_t big = look(fs, kRootIno, "big").ino;
    {
        auto h = open_rw(fs, big);
        write_at(fs, *h, 5000, "changed");         // inside chunk 1
        write_at(fs, *h, 20000, "in the hole");    // inside the hole
        REQUIRE(fs.release(std::move(h)));
    }
    Attr d = look(fs, kRootIno, "d");
    auto f = fs.mknod(d.ino, "new", new_file(0600));
    REQUIRE(f);
    {
        auto h = open_rw(fs, f->ino);
        write_at(fs, *h, 0, "a new file");
        REQUIRE(fs.release(std::move(h)));
    }
    REQUIRE(fs.link(f->ino, kRootIno, "newlink"));
    REQUIRE(fs.rename(kRootIno, "small", d.ino, "small-moved", 0));
    SetAttr s;
    s.mode = 0600;
    s.mtime_ns = 42;
    REQUIRE(fs.setattr(look(fs, d.ino, "inner").ino, s));
    REQUIRE(fs.setxattr(look(fs, kRootIno, "sym").ino, "user.x", "y", 0));
    REQUIRE(fs.mknod(kRootIno, "fifo", NewEntry{S_IFIFO | 0640, 1, 2, 0, {}}));
    REQUIRE(fs.rmdir(look(fs, kRootIno, "d").ino, "sub"));
    // A truncate inside an extent not copied copies it (so the tree never needs base bytes).
    SetAttr cut;
    cut.size = 14000;
    REQUIRE(fs.setattr(big, cut));
    SetAttr grow;
    grow.size = 15000;
    REQUIRE(fs.setattr(big, grow));
    REQUIRE(fs.flush_all());

    std::map<ObjectId, int> before;
    for (const auto& id : b.big.ids) before[id] = b.src.gets(id);
    auto lt = build_layer_tree(b.src, b.top, dir, sinks_into(b.src));
    if (!lt) FAIL(lt.error().message);
    // No chunk of the base was read to build it.
    for (const auto& id : b.big.ids) CHECK(b.src.gets(id) == before[id]);
    // Big's copied extent 1, its copied extent 3 with the bytes past it, the new file's bytes.
    CHECK(lt->chunks >= 3);
    CHECK(lt->chunks <= 5);

    auto c = CommitFs::open(b.src, lt->top, {});
    REQUIRE(c);
    std::map<std::string, std::string> want, got;
    snapshot_layer(fs, kRootIno, "", want);
    snapshot_commit(**c, kRootIno, "", got);
    CHECK(want == got);
    CHECK(got.contains("d/small-moved"));
    CHECK(got.contains("newlink"));
    CHECK(!got.contains("d/sub"));

    // The same layer gives the same tree again (status after a commit is clean).
    auto again = build_layer_tree(b.src, b.top, dir, {});
    REQUIRE(again);
    CHECK(again->top == lt->top);
}

// Hard links of the base whose group's first name the layer deleted or renamed: the first name
// left (in the tree's order) holds the content, the others link to it. Base:
//   /c        "shared" (first name of c, d/a, d/b)      /e   "other" (first name of e, f)
//   /d/a, /d/b  hard links to c                        /f   hard link to e
//   /g/x      "kept" (first name of g/x, h)            /h   hard link to g/x
// Layer: unlink c, rename d/a to d/z, unlink e; g, which the layer leaves alone, keeps its tree
// id and h its link.
TEST_CASE("the layer as a tree: hard links whose first base name is gone or moved stay valid", "[layer_fs]") {
    MemorySource src;
    TreeEntry c = entry("c", EntryType::file);
    c.content.extents = {Extent{src.put("shared"), 6, false}};
    c.size = 6;
    TreeEntry a = entry("a", EntryType::hardlink);
    a.target = "c";
    TreeEntry bl = entry("b", EntryType::hardlink);
    bl.target = "c";
    TreeEntry e = entry("e", EntryType::file);
    e.content.extents = {Extent{src.put("other"), 5, false}};
    e.size = 5;
    TreeEntry f = entry("f", EntryType::hardlink);
    f.target = "e";
    TreeEntry x = entry("x", EntryType::file);
    x.content.extents = {Extent{src.put("kept"), 4, false}};
    x.size = 4;
    TreeEntry h = entry("h", EntryType::hardlink);
    h.target = "g/x";
    ObjectId d = src.put_tree(tree_of({a, bl}));
    ObjectId g = src.put_tree(tree_of({x}));
    ObjectId root = src.put_tree(tree_of({c, dir("d", d), e, f, dir("g", g), h}));
    TreeEntry r = dir(std::string(kRootEntryName), root);
    ObjectId top = src.put_tree(tree_of({r}));

    TempDir tmp;
    std::string ldir = tmp / "layer";
    auto base = CommitFs::open(src, top, {});
    REQUIRE(base);
    auto fs = LayerFs::open(**base, sha256(std::string_view("links base")), ldir);
    REQUIRE(fs);
    Attr dd = look(**fs, kRootIno, "d");
    REQUIRE((*fs)->unlink(kRootIno, "c"));
    REQUIRE((*fs)->rename(dd.ino, "a", dd.ino, "z", 0));
    REQUIRE((*fs)->unlink(kRootIno, "e"));
    REQUIRE((*fs)->flush_all());

    auto lt = build_layer_tree(src, top, ldir, sinks_into(src));
    if (!lt) FAIL(lt.error().message);
    // Every hard link names a file that comes before it in the tree.
    std::vector<std::pair<std::string, std::string>> links;
    std::map<std::string, std::string> files;
    std::function<void(const ObjectId&, const std::string&)> walk = [&](const ObjectId& id, const std::string& prefix) {
        auto t = load_tree(src, nullptr, id);
        REQUIRE(t);
        for (const auto& x : t->entries) {
            std::string p = prefix.empty() ? x.name : prefix + "/" + x.name;
            if (x.type == EntryType::dir) walk(x.subtree, p);
            if (x.type == EntryType::hardlink) links.emplace_back(p, x.target);
            if (x.type == EntryType::file) files[p] = std::string(x.content.extents.empty() ? "" : x.content.extents[0].id.hex());
        }
    };
    auto top_tree = load_tree(src, nullptr, lt->top);
    REQUIRE(top_tree);
    walk(top_tree->entries[0].subtree, "");
    CHECK(files.size() == 3);
    CHECK(files.contains("d/b"));  // the group of c: d/b comes first now
    CHECK(files.contains("f"));    // the group of e: f alone
    CHECK(files.contains("g/x"));  // as it was
    REQUIRE(links.size() == 2);
    CHECK(links[0] == std::pair<std::string, std::string>("d/z", "d/b"));
    CHECK(links[1] == std::pair<std::string, std::string>("h", "g/x"));
    TreePaths paths(src, top_tree->entries[0].subtree);
    for (const auto& [p, t] : links) {
        auto why = hardlink_problem(paths, p, t);
        REQUIRE(why);
        INFO(why->value_or(""));
        CHECK(!why->has_value());
    }
    // And the tree shows what the layer shows.
    auto cf = CommitFs::open(src, lt->top, {});
    REQUIRE(cf);
    std::map<std::string, std::string> want, got;
    snapshot_layer(**fs, kRootIno, "", want);
    snapshot_commit(**cf, kRootIno, "", got);
    CHECK(want == got);
}

// The content cache: a commit's contents are taken as they are by the next build while the file's
// row and data file are unchanged; a write (also one not yet flushed to the row) or a recent
// change makes the file read again. The builds here are "10 s later", so nothing is too recent.
TEST_CASE("the layer as a tree: a file unchanged since the last commit is not read again", "[layer_fs]") {
    Base b;
    TempDir tmp;
    std::string dir = tmp / "layer";
    auto m = mount(b, dir);
    auto& fs = *m.fs;
    uint64_t big = look(fs, kRootIno, "big").ino;
    auto f = fs.mknod(kRootIno, "new", new_file());
    REQUIRE(f);
    {
        auto h = open_rw(fs, big);
        write_at(fs, *h, 5000, "changed");
        REQUIRE(fs.release(std::move(h)));
        auto n = open_rw(fs, f->ino);
        write_at(fs, *n, 0, std::string(50000, 'n'));
        REQUIRE(fs.release(std::move(n)));
    }
    REQUIRE(fs.flush_all());
    auto later = [] {
        struct timespec ts;
        ::clock_gettime(CLOCK_REALTIME, &ts);
        return static_cast<int64_t>(ts.tv_sec + 10) * 1000000000 + ts.tv_nsec;
    };
    auto first = build_layer_tree(b.src, b.top, dir, sinks_into(b.src), later());
    if (!first) FAIL(first.error().message);
    CHECK(first->cache_hits == 0);
    CHECK(first->fresh.size() == 2);
    CHECK(first->chunks >= 2);
    // Not saved (no commit): the next build reads the bytes again.
    auto again = build_layer_tree(b.src, b.top, dir, {}, later());
    REQUIRE(again);
    CHECK(again->cache_hits == 0);
    CHECK(again->top == first->top);
    REQUIRE(save_layer_contents(dir, first->fresh));
    auto cached = build_layer_tree(b.src, b.top, dir, {}, later());
    REQUIRE(cached);
    CHECK(cached->cache_hits == 2);
    CHECK(cached->chunks == 0);
    CHECK(cached->top == first->top);
    // A write to new, not flushed to its row: new is read again, big is not.
    {
        auto n = open_rw(fs, f->ino);
        write_at(fs, *n, 100, "x");
        auto after = build_layer_tree(b.src, b.top, dir, {}, later());
        REQUIRE(after);
        CHECK(after->cache_hits == 1);
        CHECK(after->top != first->top);
        REQUIRE(fs.release(std::move(n)));
    }
    REQUIRE(fs.flush_all());
    auto flushed = build_layer_tree(b.src, b.top, dir, {}, later());
    REQUIRE(flushed);
    CHECK(flushed->cache_hits == 1);
    // As of now, what was just written is too recent to be cached.
    auto now = build_layer_tree(b.src, b.top, dir, {});
    REQUIRE(now);
    CHECK(now->fresh.empty());
    CHECK(now->top == flushed->top);
}
