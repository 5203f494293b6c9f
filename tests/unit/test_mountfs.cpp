// The FUSE mount's file system layer (fuse-mount/commit_fs.h) without a kernel: commits built in
// memory, served by a source that counts what is read from it. Inode numbers, hard links, lazy
// tree loading, the read path (offsets to chunks, holes, extent lists), SEEK_DATA/SEEK_HOLE,
// damaged objects, the caches; and the small pieces around it (PooledSource, mountinfo lines).
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fuse-mount/commit_fs.h"
#include "fuse-mount/mountinfo.h"
#include "object/tree.h"
#include "store/hash.h"
#include "memory_source.h"
#include "store/pooled_source.h"

using namespace dvol;
using namespace dvol::mountfs;

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

TreeEntry file(const std::string& name, std::vector<Extent> extents) {
    TreeEntry e = entry(name, EntryType::file);
    for (const auto& x : extents) e.size += x.length;
    e.content.extents = std::move(extents);
    return e;
}

TreeEntry dir(const std::string& name, const ObjectId& sub) {
    TreeEntry e = entry(name, EntryType::dir, 0755);
    e.subtree = sub;
    return e;
}

TreeEntry hardlink(const std::string& name, const std::string& target) {
    TreeEntry e = entry(name, EntryType::hardlink);
    e.target = target;
    return e;
}

Tree tree_of(std::vector<TreeEntry> es) {
    std::sort(es.begin(), es.end(), [](const TreeEntry& a, const TreeEntry& b) { return a.name < b.name; });
    return Tree{std::move(es)};
}

// The top tree over a root directory tree.
ObjectId top_of(MemorySource& src, const ObjectId& root_dir) {
    TreeEntry r = dir(std::string(kRootEntryName), root_dir);
    r.mode = 0750;
    return src.put_tree(tree_of({r}));
}

Extent chunk(const ObjectId& id, uint64_t len) { return Extent{id, len, false}; }
Extent hole(uint64_t len) { return Extent{{}, len, true}; }

std::string text(const ReadResult& r) {
    std::string s;
    for (const auto& p : r.pieces) s.append(reinterpret_cast<const char*>(p.data()), p.size());
    return s;
}

std::unique_ptr<CommitFs> open_fs(MemorySource& src, const ObjectId& top, Options o = {}) {
    auto fs = CommitFs::open(src, top, std::move(o));
    REQUIRE(fs);
    return std::move(*fs);
}

Attr must_lookup(CommitFs& fs, uint64_t parent, std::string_view name) {
    auto r = fs.lookup(parent, name);
    REQUIRE(r);
    REQUIRE(r->has_value());
    return **r;
}

}  // namespace

TEST_CASE("the root shows the top tree's root entry; the top tree's shape is checked", "[mountfs]") {
    MemorySource src;
    ObjectId empty = src.put_tree(Tree{});
    ObjectId top = top_of(src, empty);
    auto fs = open_fs(src, top);
    auto a = fs->getattr(kRootIno);
    REQUIRE(a);
    CHECK(a->ino == kRootIno);
    CHECK(a->mode == (S_IFDIR | 0750));
    CHECK(a->uid == 1000);
    CHECK(a->mtime_ns == 1'600'000'000'123'456'789);
    auto d = fs->opendir(kRootIno);
    REQUIRE(d);
    CHECK((*d)->size() == 0);
    auto none = fs->lookup(kRootIno, "nothing");
    REQUIRE(none);
    CHECK(!none->has_value());

    // Not a top tree: two entries, or one that is not "root".
    ObjectId bad = src.put_tree(tree_of({dir("root", empty), dir("zzz", empty)}));
    auto r = CommitFs::open(src, bad, {});
    REQUIRE(!r);
    CHECK(r.error().code == Errc::corrupt);
    ObjectId bad2 = src.put_tree(tree_of({dir("other", empty)}));
    CHECK(!CommitFs::open(src, bad2, {}));
}

TEST_CASE("every entry type shows what the commit recorded", "[mountfs]") {
    MemorySource src;
    ObjectId data = src.put("0123456789");
    TreeEntry f = file("f", {chunk(data, 10)});
    f.mode = 06755;
    f.uid = 4000000000u;
    f.gid = 3000000000u;
    f.mtime_ns = -1'234'567'500'000'000;
    f.xattrs = {{"user.a", "1"}, {"user.b", std::string("\0\xff", 2)}};
    TreeEntry l = entry("l", EntryType::symlink, 0777);
    l.target = "does/not/exist";
    l.size = l.target.size();
    TreeEntry fifo = entry("p", EntryType::fifo, 0640);
    TreeEntry c = entry("c", EntryType::chardev, 0620);
    c.rdev = makedev(1, 3);
    TreeEntry b = entry("b", EntryType::blockdev, 0600);
    b.rdev = makedev(7, 250);
    ObjectId root = src.put_tree(tree_of({f, l, fifo, c, b}));
    auto fs = open_fs(src, top_of(src, root));

    Attr af = must_lookup(*fs, kRootIno, "f");
    CHECK(af.mode == (S_IFREG | 06755));
    CHECK(af.uid == 4000000000u);
    CHECK(af.gid == 3000000000u);
    CHECK(af.size == 10);
    CHECK(af.blocks == 1);
    CHECK(af.nlink == 1);
    CHECK(af.mtime_ns == -1'234'567'500'000'000);
    auto names = fs->listxattr(af.ino);
    REQUIRE(names);
    CHECK(*names == std::vector<std::string>{"user.a", "user.b"});
    auto v = fs->getxattr(af.ino, "user.b");
    REQUIRE(v);
    REQUIRE(v->has_value());
    CHECK(**v == std::string("\0\xff", 2));
    auto missing = fs->getxattr(af.ino, "user.c");
    REQUIRE(missing);
    CHECK(!missing->has_value());

    Attr al = must_lookup(*fs, kRootIno, "l");
    CHECK(al.mode == (S_IFLNK | 0777));
    CHECK(al.size == 14);
    auto t = fs->readlink(al.ino);
    REQUIRE(t);
    CHECK(*t == "does/not/exist");
    CHECK(!fs->readlink(af.ino));  // not a symlink

    CHECK(must_lookup(*fs, kRootIno, "p").mode == (S_IFIFO | 0640));
    Attr ac = must_lookup(*fs, kRootIno, "c");
    CHECK(ac.mode == (S_IFCHR | 0620));
    CHECK(ac.rdev == makedev(1, 3));
    Attr ab = must_lookup(*fs, kRootIno, "b");
    CHECK(ab.mode == (S_IFBLK | 0600));
    CHECK(ab.rdev == makedev(7, 250));
}

TEST_CASE("inode numbers follow the path: stable across forget, shared by hard links", "[mountfs]") {
    MemorySource src;
    ObjectId data = src.put("one inode, three names");
    ObjectId other = src.put("another file");
    ObjectId c_dir = src.put_tree(tree_of({hardlink("two", "hl/a/one")}));
    ObjectId b_dir = src.put_tree(tree_of({dir("c", c_dir)}));
    ObjectId a_dir = src.put_tree(tree_of({file("one", {chunk(data, 22)}), file("other", {chunk(other, 12)})}));
    ObjectId hl = src.put_tree(tree_of({dir("a", a_dir), dir("b", b_dir), hardlink("three", "hl/a/one")}));
    ObjectId root = src.put_tree(tree_of({dir("hl", hl)}));
    ObjectId top = top_of(src, root);

    SECTION("lazy link counts") {
        auto fs = open_fs(src, top);
        Attr hla = must_lookup(*fs, kRootIno, "hl");
        Attr a = must_lookup(*fs, hla.ino, "a");
        Attr one = must_lookup(*fs, a.ino, "one");
        // hl/ has been looked into: its link "three" is counted; hl/b/c/two not yet.
        CHECK(one.nlink == 2);
        Attr three = must_lookup(*fs, hla.ino, "three");
        CHECK(three.ino == one.ino);
        CHECK(three.size == 22);
        Attr b = must_lookup(*fs, hla.ino, "b");
        Attr c = must_lookup(*fs, b.ino, "c");
        Attr two = must_lookup(*fs, c.ino, "two");
        CHECK(two.ino == one.ino);
        CHECK(two.nlink == 3);
        auto again = fs->getattr(one.ino);
        REQUIRE(again);
        CHECK(again->nlink == 3);
        CHECK(must_lookup(*fs, a.ino, "other").nlink == 1);

        // The content through any name is the file's.
        auto f = fs->open_file(two.ino);
        REQUIRE(f);
        ReadResult r;
        REQUIRE(fs->read(**f, 0, 100, r));
        CHECK(text(r) == "one inode, three names");

        // Three lookups of one inode: it stays until all three are given back, and comes back
        // with the same number.
        size_t before = fs->stats().inodes;
        fs->forget(one.ino, 2);
        CHECK(fs->getattr(one.ino));
        fs->forget(one.ino, 1);
        CHECK(fs->stats().inodes == before - 1);
        CHECK(!fs->getattr(one.ino));
        CHECK(must_lookup(*fs, a.ino, "one").ino == one.ino);
    }

    SECTION("--count-links: exact from the start") {
        Options o;
        o.count_links = true;
        auto fs = open_fs(src, top, o);
        Attr hla = must_lookup(*fs, kRootIno, "hl");
        Attr a = must_lookup(*fs, hla.ino, "a");
        CHECK(must_lookup(*fs, a.ino, "one").nlink == 3);
        CHECK(must_lookup(*fs, a.ino, "other").nlink == 1);
    }

    SECTION("readdir shows the inode numbers lookup gives") {
        auto fs = open_fs(src, top);
        Attr hla = must_lookup(*fs, kRootIno, "hl");
        auto d = fs->opendir(hla.ino);
        REQUIRE(d);
        REQUIRE((*d)->size() == 3);
        CHECK((*d)->entry(2).name == "three");
        uint64_t listed = fs->entry_ino(**d, 2);
        auto plus = fs->lookup_entry(**d, 2);
        REQUIRE(plus);
        CHECK(plus->ino == listed);
        Attr a = must_lookup(*fs, hla.ino, "a");
        CHECK(must_lookup(*fs, a.ino, "one").ino == listed);
        CHECK(CommitFs::entry_type_bits((*d)->entry(2)) == S_IFREG);
    }

    SECTION("a hard link to nowhere is a damaged commit, not a missing file") {
        ObjectId bad = src.put_tree(tree_of({hardlink("x", "hl/a/none"), hardlink("y", "hl/a"), dir("hl", hl)}));
        auto fs = open_fs(src, top_of(src, bad));
        auto x = fs->lookup(kRootIno, "x");
        REQUIRE(!x);
        CHECK(x.error().code == Errc::corrupt);
        auto y = fs->lookup(kRootIno, "y");  // a directory
        REQUIRE(!y);
        CHECK(y.error().code == Errc::corrupt);
    }
}

TEST_CASE("trees are loaded when a directory is looked into, and no others", "[mountfs]") {
    MemorySource src;
    std::vector<TreeEntry> dirs;
    std::vector<ObjectId> subs;
    for (int d = 0; d < 50; ++d) {
        std::vector<TreeEntry> files;
        for (int f = 0; f < 20; ++f) {
            ObjectId c = src.put("d" + std::to_string(d) + "f" + std::to_string(f));
            files.push_back(file("f" + std::to_string(f), {chunk(c, 4 + std::to_string(d).size() + std::to_string(f).size())}));
        }
        subs.push_back(src.put_tree(tree_of(files)));
        dirs.push_back(dir("d" + std::to_string(d), subs.back()));
    }
    ObjectId root = src.put_tree(tree_of(dirs));
    auto fs = open_fs(src, top_of(src, root));
    CHECK(fs->stats().tree_loads == 1);  // the top tree
    auto rd = fs->opendir(kRootIno);
    REQUIRE(rd);
    CHECK((*rd)->size() == 50);
    CHECK(fs->stats().tree_loads == 2);
    Attr d7 = must_lookup(*fs, kRootIno, "d7");
    CHECK(fs->stats().tree_loads == 2);  // a directory's own attributes need no tree of its own
    auto dd = fs->opendir(d7.ino);
    REQUIRE(dd);
    CHECK((*dd)->size() == 20);
    for (size_t i = 0; i < (*dd)->size(); ++i) REQUIRE(fs->lookup_entry(**dd, i));
    CHECK(fs->stats().tree_loads == 3);
    CHECK(src.gets(subs[7]) == 1);
    CHECK(src.gets(subs[8]) == 0);
    CHECK(fs->stats().chunk_loads == 0);  // attributes need no content
}

TEST_CASE("reads map offsets to chunks and holes", "[mountfs]") {
    MemorySource src;
    ObjectId a = src.put("AAAAAAAAAA");   // 10
    ObjectId b = src.put("BBBBB");        // 5
    ObjectId c = src.put("CCCCCCCCCCCC");  // 12
    // 0..10 A, 10..17 hole, 17..22 B, 22..34 C, 34..40 hole
    TreeEntry f = file("f", {chunk(a, 10), hole(7), chunk(b, 5), chunk(c, 12), hole(6)});
    ObjectId root = src.put_tree(tree_of({f}));
    auto fs = open_fs(src, top_of(src, root));
    Attr af = must_lookup(*fs, kRootIno, "f");
    CHECK(af.size == 40);
    CHECK(af.blocks == 1);  // 27 bytes of data
    auto h = fs->open_file(af.ino);
    REQUIRE(h);
    const std::string whole = std::string(10, 'A') + std::string(7, '\0') + "BBBBB" + std::string(12, 'C') + std::string(6, '\0');
    ReadResult r;
    for (uint64_t off = 0; off <= 41; ++off) {
        for (size_t len : {size_t{0}, size_t{1}, size_t{3}, size_t{7}, size_t{13}, size_t{40}, size_t{100}}) {
            REQUIRE(fs->read(**h, off, len, r));
            std::string want = off >= whole.size() ? "" : whole.substr(off, len);
            INFO("offset " << off << " length " << len);
            REQUIRE(text(r) == want);
            REQUIRE(r.bytes == want.size());
        }
    }
    // Each chunk was read from the source once: the cache serves the rest.
    CHECK(src.gets(a) == 1);
    CHECK(src.gets(c) == 1);
    CHECK(fs->stats().chunk_hits > 0);
}

TEST_CASE("sequential reads hint the next chunks to the source; other reads hint nothing", "[mountfs]") {
    MemorySource src;
    std::vector<ObjectId> ids;
    std::vector<Extent> extents;
    for (int i = 0; i < 8; ++i) {
        ids.push_back(src.put(std::string(10, static_cast<char>('a' + i))));
        extents.push_back(chunk(ids.back(), 10));
        if (i == 2) extents.push_back(hole(10));  // holes are skipped, not counted as chunks
    }
    ObjectId root = src.put_tree(tree_of({file("f", extents)}));
    Options o;
    o.readahead_chunks = 3;
    auto fs = open_fs(src, top_of(src, root), o);
    Attr af = must_lookup(*fs, kRootIno, "f");
    auto h = fs->open_file(af.ino);
    REQUIRE(h);
    ReadResult r;
    REQUIRE(fs->read(**h, 0, 10, r));  // chunk 0, from the start: sequential
    CHECK(src.prefetched == std::vector<ObjectId>{ids[1], ids[2]});  // then the hole: 3 extents, 2 chunks
    src.prefetched.clear();
    REQUIRE(fs->read(**h, 10, 10, r));  // chunk 1, where the last read ended
    CHECK(src.prefetched == std::vector<ObjectId>{ids[2], ids[3]});
    src.prefetched.clear();
    REQUIRE(fs->read(**h, 65, 5, r));  // a jump: no hint
    CHECK(src.prefetched.empty());
    REQUIRE(fs->read(**h, 70, 10, r));  // sequential again from there (chunk 6): only chunk 7 is left
    CHECK(src.prefetched == std::vector<ObjectId>{ids[7]});

    SECTION("with a window, reads a little out of order still count as sequential; a jump still does not") {
        o.sequential_window = 20;
        auto win = open_fs(src, top_of(src, root), o);
        auto hw = win->open_file(must_lookup(*win, kRootIno, "f").ino);
        REQUIRE(hw);
        REQUIRE(win->read(**hw, 0, 10, r));
        src.prefetched.clear();
        REQUIRE(win->read(**hw, 20, 10, r));  // 10 bytes after the last end (chunk 2; 1 was skipped)
        CHECK_FALSE(src.prefetched.empty());
        src.prefetched.clear();
        REQUIRE(win->read(**hw, 10, 10, r));  // 20 bytes before it (chunk 1, arriving late)
        CHECK_FALSE(src.prefetched.empty());
        src.prefetched.clear();
        REQUIRE(win->read(**hw, 70, 5, r));  // 50 bytes on: a jump
        CHECK(src.prefetched.empty());
    }
    SECTION("without readahead_chunks, nothing is hinted") {
        auto plain = open_fs(src, top_of(src, root));
        auto h2 = plain->open_file(must_lookup(*plain, kRootIno, "f").ino);
        REQUIRE(h2);
        src.prefetched.clear();
        REQUIRE(plain->read(**h2, 0, 10, r));
        REQUIRE(plain->read(**h2, 10, 10, r));
        CHECK(src.prefetched.empty());
    }
}

TEST_CASE("readahead_self: a sequential read loads the next chunks into the cache itself, once each", "[mountfs]") {
    MemorySource src;
    std::vector<ObjectId> ids;
    std::vector<Extent> extents;
    for (int i = 0; i < 8; ++i) {
        ids.push_back(src.put(std::string(10, static_cast<char>('a' + i))));
        extents.push_back(chunk(ids.back(), 10));
    }
    ObjectId root = src.put_tree(tree_of({file("f", extents)}));
    Options o;
    o.readahead_chunks = 3;
    o.readahead_self = true;
    auto fs = open_fs(src, top_of(src, root), o);
    auto h = fs->open_file(must_lookup(*fs, kRootIno, "f").ino);
    REQUIRE(h);
    ReadResult r;
    REQUIRE(fs->read(**h, 0, 10, r));  // chunk 0: chunks 1 to 3 are loaded ahead, on the CommitFs's thread
    // No timing is asserted: wait (at most a minute, on a busy machine) until they are loaded.
    for (int i = 0; i < 6000 && (src.gets(ids[1]) == 0 || src.gets(ids[2]) == 0 || src.gets(ids[3]) == 0); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(src.gets(ids[1]) == 1);
    CHECK(src.gets(ids[2]) == 1);
    CHECK(src.gets(ids[3]) == 1);
    CHECK(src.prefetched.empty());  // the source was not asked to
    // The reads that follow are served from the cache: nothing read twice.
    for (uint64_t off = 10; off < 40; off += 10) {
        REQUIRE(fs->read(**h, off, 10, r));
        CHECK(r.bytes == 10);
    }
    CHECK(src.gets(ids[1]) == 1);
    CHECK(src.gets(ids[2]) == 1);
    CHECK(src.gets(ids[3]) == 1);
    CHECK(src.gets(ids[0]) == 1);
    fs.reset();  // stops the thread, whatever it is loading
}

TEST_CASE("large files: extent lists are read one at a time, offsets across them", "[mountfs]") {
    MemorySource src;
    // Three lists: [x x hole], [y hole y], [z]; each chunk 8 bytes.
    ObjectId x = src.put("xxxxxxxx"), y = src.put("yyyyyyyy"), z = src.put("zzzzzzzz");
    std::vector<std::vector<Extent>> lists{{chunk(x, 8), chunk(x, 8), hole(8)}, {chunk(y, 8), hole(8), chunk(y, 8)}, {chunk(z, 8)}};
    TreeEntry f = entry("big", EntryType::file);
    f.content.indirect = true;
    std::vector<ObjectId> list_ids;
    for (const auto& l : lists) {
        ObjectId id = src.put(encode_extent_list(l));
        list_ids.push_back(id);
        f.content.lists.push_back(ExtentListRef{id, 8 * l.size(), l.size()});
        f.size += 8 * l.size();
    }
    ObjectId root = src.put_tree(tree_of({f}));
    auto fs = open_fs(src, top_of(src, root));
    Attr a = must_lookup(*fs, kRootIno, "big");
    CHECK(a.size == 56);
    CHECK(a.blocks == 1);
    auto h = fs->open_file(a.ino);
    REQUIRE(h);
    const std::string whole = std::string(16, 'x') + std::string(8, '\0') + std::string(8, 'y') + std::string(8, '\0') +
                              std::string(8, 'y') + std::string(8, 'z');
    ReadResult r;
    for (uint64_t off = 0; off < 56; off += 5) {
        REQUIRE(fs->read(**h, off, 17, r));
        CHECK(text(r) == whole.substr(off, 17));
    }
    REQUIRE(fs->read(**h, 0, 1000, r));
    CHECK(text(r) == whole);

    // SEEK_DATA / SEEK_HOLE across lists.
    auto seek = [&](uint64_t off, bool data) {
        auto s = fs->seek(**h, off, data);
        REQUIRE(s);
        return s->value_or(UINT64_MAX);
    };
    CHECK(seek(0, true) == 0);
    CHECK(seek(0, false) == 16);
    CHECK(seek(17, true) == 24);
    CHECK(seek(24, false) == 32);
    CHECK(seek(33, true) == 40);
    CHECK(seek(41, false) == 56);  // the end of the file is a hole
    CHECK(seek(56, true) == UINT64_MAX);

    // A list that does not hold what its reference says is damage.
    TreeEntry g = f;
    g.name = "lying";
    g.content.lists[1].count = 2;
    g.content.lists[1].length = 16;
    g.size -= 8;
    ObjectId root2 = src.put_tree(tree_of({g}));
    auto fs2 = open_fs(src, top_of(src, root2));
    auto lying = fs2->lookup(kRootIno, "lying");  // its block count needs every list
    REQUIRE(!lying);
    CHECK(lying.error().code == Errc::corrupt);
}

TEST_CASE("SEEK_DATA and SEEK_HOLE on inline extents", "[mountfs]") {
    MemorySource src;
    ObjectId d = src.put("dddd");
    ObjectId root = src.put_tree(tree_of({file("sparse", {hole(100), chunk(d, 4), hole(50), chunk(d, 4)}), file("all-hole", {hole(1000)}),
                                          file("dense", {chunk(d, 4)}), file("empty", {})}));
    auto fs = open_fs(src, top_of(src, root));
    auto open = [&](const char* n) {
        auto f = fs->open_file(must_lookup(*fs, kRootIno, n).ino);
        REQUIRE(f);
        return std::move(*f);
    };
    auto seek = [&](const CommitFs::File& f, uint64_t off, bool data) {
        auto s = fs->seek(f, off, data);
        REQUIRE(s);
        return s->value_or(UINT64_MAX);
    };
    auto s = open("sparse");
    CHECK(seek(*s, 0, true) == 100);
    CHECK(seek(*s, 0, false) == 0);
    CHECK(seek(*s, 101, true) == 101);
    CHECK(seek(*s, 101, false) == 104);
    CHECK(seek(*s, 104, true) == 154);
    CHECK(seek(*s, 155, false) == 158);
    CHECK(seek(*s, 158, true) == UINT64_MAX);  // at the end: ENXIO
    auto h = open("all-hole");
    CHECK(seek(*h, 0, true) == UINT64_MAX);
    CHECK(seek(*h, 10, false) == 10);
    auto dn = open("dense");
    CHECK(seek(*dn, 0, false) == 4);
    CHECK(seek(*dn, 3, true) == 3);
    auto e = open("empty");
    CHECK(seek(*e, 0, true) == UINT64_MAX);
    CHECK(seek(*e, 0, false) == UINT64_MAX);
    ReadResult r;
    REQUIRE(fs->read(*h, 0, 1000, r));
    CHECK(text(r) == std::string(1000, '\0'));
}

TEST_CASE("a damaged or missing object fails its reads only, as corrupt", "[mountfs]") {
    MemorySource src;
    ObjectId good = src.put("good data"), bad = src.put("bad data!"), gone = src.put("gone");
    ObjectId sub = src.put_tree(tree_of({file("x", {chunk(good, 9)})}));
    ObjectId root = src.put_tree(tree_of({file("good", {chunk(good, 9)}), file("bad", {chunk(bad, 9)}), file("gone", {chunk(gone, 4)}),
                                          dir("sub", sub)}));
    src.damage(bad);
    src.drop(gone);
    src.damage(sub);
    auto fs = open_fs(src, top_of(src, root));
    ReadResult r;
    for (const char* n : {"bad", "gone"}) {
        auto f = fs->open_file(must_lookup(*fs, kRootIno, n).ino);
        REQUIRE(f);
        auto st = fs->read(**f, 0, 100, r);
        REQUIRE(!st);
        CHECK(st.error().code == Errc::corrupt);  // never "no such file"
        CHECK(st.error().message.find(n == std::string("bad") ? bad.hex() : gone.hex()) != std::string::npos);
    }
    // The rest is served.
    auto g = fs->open_file(must_lookup(*fs, kRootIno, "good").ino);
    REQUIRE(g);
    REQUIRE(fs->read(**g, 0, 100, r));
    CHECK(text(r) == "good data");
    Attr s = must_lookup(*fs, kRootIno, "sub");  // its own attributes are in the root's tree
    auto d = fs->opendir(s.ino);
    REQUIRE(!d);
    CHECK(d.error().code == Errc::corrupt);
    // Failed loads are not cached: once repaired, it reads.
    int before = src.gets(bad);
    auto f = fs->open_file(must_lookup(*fs, kRootIno, "bad").ino);
    REQUIRE(!fs->read(**f, 0, 100, r));
    CHECK(src.gets(bad) == before + 1);
}

TEST_CASE("the chunk cache stays within its bound and loads a chunk once for concurrent readers", "[mountfs]") {
    MemorySource src;
    std::vector<Extent> xs;
    for (int i = 0; i < 16; ++i) xs.push_back(chunk(src.put(std::string(1000, static_cast<char>('a' + i))), 1000));
    ObjectId root = src.put_tree(tree_of({file("f", xs)}));
    Options o;
    o.limits.chunk_cache = 4500;  // four chunks and their bookkeeping
    auto fs = open_fs(src, top_of(src, root), o);
    auto f = fs->open_file(must_lookup(*fs, kRootIno, "f").ino);
    REQUIRE(f);
    ReadResult r;
    for (uint64_t off = 0; off < 16000; off += 1000) {
        REQUIRE(fs->read(**f, off, 1000, r));
        CHECK(text(r) == std::string(1000, static_cast<char>('a' + off / 1000)));
        CHECK(fs->stats().cached_bytes <= o.limits.chunk_cache + 1000 + 4096);  // + the trees
    }
    CHECK(fs->stats().chunk_loads == 16);
    REQUIRE(fs->read(**f, 0, 1000, r));  // long evicted: read again
    CHECK(fs->stats().chunk_loads == 17);

    // Eight threads read one chunk at once: one load.
    ObjectId one = src.put(std::string(5000, 'z'));
    ObjectId root2 = src.put_tree(tree_of({file("g", {chunk(one, 5000)})}));
    auto fs2 = open_fs(src, top_of(src, root2));
    auto g = fs2->open_file(must_lookup(*fs2, kRootIno, "g").ino);
    REQUIRE(g);
    std::atomic<int> ok{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t)
        ts.emplace_back([&, t] {
            ReadResult mine;
            if (fs2->read(**g, static_cast<uint64_t>(t) * 500, 500, mine) && text(mine) == std::string(500, 'z')) ok++;
        });
    for (auto& t : ts) t.join();
    CHECK(ok == 8);
    CHECK(src.gets(one) == 1);
}

TEST_CASE("a sequential read lets go of the chunks it has passed but the last few; other reads keep them", "[mountfs]") {
    MemorySource src;
    std::vector<ObjectId> ids;
    std::vector<Extent> xs;
    for (int i = 0; i < 20; ++i) {
        ids.push_back(src.put(std::string(1000, static_cast<char>('a' + i))));
        xs.push_back(chunk(ids.back(), 1000));
    }
    ObjectId root = src.put_tree(tree_of({file("f", xs)}));
    Options o;
    o.readahead_chunks = 1;  // sequential reads are told apart (the hints go to the source)
    auto fs = open_fs(src, top_of(src, root), o);
    auto f = fs->open_file(must_lookup(*fs, kRootIno, "f").ino);
    REQUIRE(f);
    ReadResult r;
    // Two reads a chunk, the second reaching its end: every chunk is loaded once.
    for (uint64_t off = 0; off < 20000; off += 500) {
        REQUIRE(fs->read(**f, off, 500, r));
        CHECK(text(r) == std::string(500, static_cast<char>('a' + off / 1000)));
    }
    for (const auto& id : ids) CHECK(src.gets(id) == 1);
    // The last chunks passed are still there (reads of one stretch arrive in any order); the
    // first ones were let go although the cache had room for them.
    uint64_t loads = fs->stats().chunk_loads;
    REQUIRE(fs->read(**f, 19000, 1000, r));
    REQUIRE(fs->read(**f, 14000, 1000, r));
    CHECK(fs->stats().chunk_loads == loads);
    REQUIRE(fs->read(**f, 0, 1000, r));
    CHECK(text(r) == std::string(1000, 'a'));
    CHECK(src.gets(ids[0]) == 2);

    // Reads that are not sequential keep what they load while it fits.
    auto fs2 = open_fs(src, top_of(src, root), o);
    auto g = fs2->open_file(must_lookup(*fs2, kRootIno, "f").ino);
    REQUIRE(g);
    for (uint64_t off = 19000;; off -= 1000) {
        REQUIRE(fs2->read(**g, off, 1000, r));
        if (off == 0) break;
    }
    loads = fs2->stats().chunk_loads;
    CHECK(loads == 20);
    REQUIRE(fs2->read(**g, 19000, 1000, r));
    CHECK(fs2->stats().chunk_loads == loads);
}

TEST_CASE("PooledSource lends each source to one thread at a time", "[mountfs]") {
    struct Exclusive : ObjectSource {
        MemorySource& mem;
        std::atomic<int> inside{0};
        std::atomic<bool> overlapped{false};
        explicit Exclusive(MemorySource& m) : mem(m) {}
        Result<bool> has(const ObjectId& id) override { return mem.has(id); }
        Status get(const ObjectId& id, std::vector<std::byte>& out) override {
            if (inside.fetch_add(1) != 0) overlapped = true;
            std::this_thread::yield();
            auto st = mem.get(id, out);
            inside.fetch_sub(1);
            return st;
        }
    };
    MemorySource mem;
    ObjectId id = mem.put("shared");
    std::vector<std::unique_ptr<ObjectSource>> sources;
    std::vector<Exclusive*> raw;
    for (int i = 0; i < 2; ++i) {
        auto s = std::make_unique<Exclusive>(mem);
        raw.push_back(s.get());
        sources.push_back(std::move(s));
    }
    PooledSource pool(std::move(sources));
    std::vector<std::thread> ts;
    std::atomic<int> ok{0};
    for (int t = 0; t < 6; ++t)
        ts.emplace_back([&] {
            for (int i = 0; i < 200; ++i) {
                auto b = pool.get(id);
                if (b && b->size() == 6) ok++;
            }
        });
    for (auto& t : ts) t.join();
    CHECK(ok == 1200);
    for (auto* s : raw) CHECK(!s->overlapped);
}

TEST_CASE("mountinfo lines: mount point and type, escapes undone", "[mountfs]") {
    auto m = parse_mountinfo_line("36 35 0:45 / /mnt/with\\040space\\012nl rw,nosuid,nodev - fuse.dvol dvol:vol@0123456789ab rw,user_id=0");
    REQUIRE(m);
    CHECK(m->mount_point == "/mnt/with space\nnl");
    CHECK(m->fstype == "fuse.dvol");
    CHECK(m->source == "dvol:vol@0123456789ab");
    auto opt = parse_mountinfo_line("24 1 8:1 / / rw,relatime shared:1 master:2 - ext4 /dev/sda1 rw");
    REQUIRE(opt);
    CHECK(opt->mount_point == "/");
    CHECK(opt->fstype == "ext4");
    CHECK(!parse_mountinfo_line("garbage"));
}
