#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "object/codec_util.h"
#include "object/tree.h"
#include "store/hash.h"
#include "support.h"

using namespace dvol;

namespace {

ObjectId id_of(std::string_view s) { return sha256(s); }

TreeEntry base_entry(std::string name, EntryType type) {
    TreeEntry e;
    e.name = std::move(name);
    e.type = type;
    e.mode = 0644;
    e.uid = 1000;
    e.gid = 100;
    e.mtime_ns = 1'700'000'000'123'456'789;
    return e;
}

TreeEntry inline_file(std::string name) {
    TreeEntry e = base_entry(std::move(name), EntryType::file);
    e.content.extents = {Extent{id_of("c1"), 65536, false}, Extent{{}, 1 << 20, true}, Extent{id_of("c2"), 1234, false}};
    e.size = 65536 + (1 << 20) + 1234;
    return e;
}

TreeEntry indirect_file(std::string name) {
    TreeEntry e = base_entry(std::move(name), EntryType::file);
    e.content.indirect = true;
    e.content.lists = {ExtentListRef{id_of("l1"), 4096ull * 65536, 4096}, ExtentListRef{id_of("l2"), 777, 3}};
    e.size = 4096ull * 65536 + 777;
    e.mode = 04755;
    return e;
}

// One entry of every type, sorted by name.
Tree all_types_tree() {
    Tree t;
    TreeEntry blk = base_entry("blk", EntryType::blockdev);
    blk.rdev = (8u << 8) | 1;
    blk.mode = 0660;
    TreeEntry chr = base_entry("chr", EntryType::chardev);
    chr.rdev = (1u << 8) | 3;
    TreeEntry dir = base_entry("dir", EntryType::dir);
    dir.subtree = id_of("subtree");
    dir.mode = 01777;
    TreeEntry empty = base_entry("empty", EntryType::file);  // no extents at all
    TreeEntry fifo = base_entry("fifo", EntryType::fifo);
    fifo.mode = 0600;
    TreeEntry hard = base_entry("hard", EntryType::hardlink);
    hard.target = "dir/sub/file";
    TreeEntry sym = base_entry("link", EntryType::symlink);
    sym.target = "../outside/is fine for a symlink";
    sym.size = sym.target.size();
    sym.mode = 0777;
    TreeEntry withx = inline_file("with-xattrs");
    withx.xattrs = {{"security.selinux", std::string("system_u:object_r\0", 18)},
                    {"system.posix_acl_access", std::string("\x02\x00\x00\x00\x01\x00\x06\x00", 8)},
                    {"user.empty", ""}};
    withx.uid = 4000000000u;
    withx.gid = 0;
    withx.mtime_ns = -1'500'000'001;  // before the epoch
    t.entries = {blk, chr, dir, empty, fifo, hard, indirect_file("huge"), inline_file("inline"), sym, withx};
    return t;
}

void require_rejected(std::span<const std::byte> bytes, std::string_view why) {
    INFO(why);
    auto r = decode_tree(bytes);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
}

// Encodes the common header of one entry by hand (for fields encode_tree cannot produce).
void raw_entry_head(Encoder& e, std::string_view name, uint8_t type, uint64_t mode = 0644, uint64_t uid = 0, uint64_t gid = 0) {
    e.bytes(name);
    e.u8(type);
    e.varint(mode);
    e.varint(uid);
    e.varint(gid);
    e.svarint(0);
}

}  // namespace

TEST_CASE("every entry type round-trips", "[tree]") {
    Tree t = all_types_tree();
    auto bytes = encode_tree(t);
    auto back = decode_tree(bytes);
    REQUIRE(back);
    REQUIRE(back->entries.size() == t.entries.size());
    for (size_t i = 0; i < t.entries.size(); ++i) {
        INFO("entry " << t.entries[i].name);
        CHECK(back->entries[i] == t.entries[i]);
    }
    CHECK(back->find("huge")->content.indirect);
    CHECK(back->find("huge")->content.lists.size() == 2);
    CHECK(back->find("with-xattrs")->xattrs.size() == 3);
    CHECK(back->find("with-xattrs")->xattrs[0].second.size() == 18);
    CHECK(back->find("blk")->rdev == ((8u << 8) | 1));
    CHECK(back->find("dir")->mode == 01777);
    CHECK(back->find("huge")->mode == 04755);
}

TEST_CASE("extreme field values round-trip", "[tree]") {
    for (int64_t mtime : {int64_t{0}, int64_t{-1}, int64_t{1}, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()}) {
        INFO("mtime " << mtime);
        Tree t;
        TreeEntry e = base_entry("f", EntryType::chardev);
        e.mtime_ns = mtime;
        e.uid = UINT32_MAX;
        e.gid = UINT32_MAX;
        e.mode = 07777;
        e.rdev = UINT64_MAX;
        t.entries = {e};
        auto back = decode_tree(encode_tree(t));
        REQUIRE(back);
        CHECK(back->entries[0] == e);
        t.entries[0].size = 1;  // only files and symlinks have a size
        require_rejected(encode_tree(t), "a device with a size");
    }
}

TEST_CASE("an empty tree round-trips", "[tree]") {
    auto bytes = encode_tree(Tree{});
    CHECK(bytes.size() == 5);
    auto back = decode_tree(bytes);
    REQUIRE(back);
    CHECK(back->entries.empty());
}

TEST_CASE("minimal entries decode (mode 0, mtime 0, one-letter names)", "[tree]") {
    // A fifo with mode 0 and mtime 0 and a one-byte name encodes in 9 bytes; the decoder's
    // cheap bound on the entry count must not reject such valid trees.
    for (size_t n : {size_t{1}, size_t{2}, size_t{5}}) {
        Tree t;
        for (size_t i = 0; i < n; ++i) {
            TreeEntry e;
            e.name = std::string(1, static_cast<char>('a' + i));
            e.type = EntryType::fifo;
            t.entries.push_back(e);
        }
        auto bytes = encode_tree(t);
        INFO(n << " fifo entries, " << bytes.size() << " bytes");
        auto back = decode_tree(bytes);
        REQUIRE(back);
        CHECK(back->entries.size() == n);
    }
}

TEST_CASE("the encoding is canonical", "[tree]") {
    Tree a = all_types_tree(), b = all_types_tree();
    auto ea = encode_tree(a);
    CHECK(ea == encode_tree(b));
    CHECK(sha256(ea) == sha256(encode_tree(b)));
    auto back = decode_tree(ea);
    REQUIRE(back);
    CHECK(encode_tree(*back) == ea);
    // Any change to any field changes the bytes.
    b.entries[3].mtime_ns += 1;
    CHECK(encode_tree(b) != ea);
    b = all_types_tree();
    b.entries[9].xattrs[2].second = "x";
    CHECK(encode_tree(b) != ea);
}

TEST_CASE("entries are sorted by raw bytes", "[tree]") {
    Tree t;
    t.entries = {base_entry("B", EntryType::fifo), base_entry("a", EntryType::fifo), base_entry("z", EntryType::fifo),
                 base_entry("\xc3\xa9t\xc3\xa9", EntryType::fifo)};
    auto back = decode_tree(encode_tree(t));
    REQUIRE(back);
    CHECK(back->find("\xc3\xa9t\xc3\xa9") != nullptr);
    std::swap(t.entries[2], t.entries[3]);
    require_rejected(encode_tree(t), "high bytes sort after ASCII");
}

TEST_CASE("Tree::find", "[tree]") {
    Tree t = all_types_tree();
    for (const auto& e : t.entries) {
        const TreeEntry* f = t.find(e.name);
        REQUIRE(f);
        CHECK(f->name == e.name);
    }
    CHECK(t.find("") == nullptr);
    CHECK(t.find("a") == nullptr);
    CHECK(t.find("zzz") == nullptr);
    CHECK(t.find("dirx") == nullptr);
    CHECK(Tree{}.find("x") == nullptr);
}

TEST_CASE("valid_entry_name", "[tree]") {
    CHECK(valid_entry_name("a"));
    CHECK(valid_entry_name("..."));
    CHECK(valid_entry_name(".hidden"));
    CHECK(valid_entry_name("a b\tc\n"));
    CHECK(valid_entry_name(std::string(kMaxNameLength, 'x')));
    CHECK_FALSE(valid_entry_name(""));
    CHECK_FALSE(valid_entry_name("."));
    CHECK_FALSE(valid_entry_name(".."));
    CHECK_FALSE(valid_entry_name("a/b"));
    CHECK_FALSE(valid_entry_name("/"));
    CHECK_FALSE(valid_entry_name(std::string("a\0b", 3)));
    CHECK_FALSE(valid_entry_name(std::string(kMaxNameLength + 1, 'x')));
}

TEST_CASE("decode_tree rejects a bad magic", "[tree]") {
    auto bytes = encode_tree(all_types_tree());
    for (size_t i = 0; i < 4; ++i) {
        auto bad = bytes;
        bad[i] ^= std::byte{0x20};
        require_rejected(bad, "flipped magic byte");
    }
    require_rejected({}, "empty input");
    auto list = encode_extent_list(std::vector<Extent>{Extent{{}, 10, true}});
    require_rejected(list, "an extent list is not a tree");
}

TEST_CASE("decode_tree rejects truncation at every offset", "[tree]") {
    auto bytes = encode_tree(all_types_tree());
    REQUIRE(decode_tree(bytes));
    for (size_t n = 0; n < bytes.size(); ++n) {
        auto r = decode_tree(std::span<const std::byte>(bytes).first(n));
        if (r) FAIL_CHECK("a prefix of " << n << " of " << bytes.size() << " bytes was accepted");
        else CHECK(r.error().code == Errc::corrupt);
    }
    auto longer = bytes;
    longer.push_back(std::byte{0});
    require_rejected(longer, "trailing byte");
}

TEST_CASE("decode_tree survives every single-byte corruption", "[tree]") {
    // Either an error, or a tree whose canonical encoding is exactly the input.
    auto bytes = encode_tree(all_types_tree());
    size_t accepted = 0;
    for (size_t i = 0; i < bytes.size(); ++i) {
        for (uint8_t flip : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
            auto bad = bytes;
            bad[i] ^= std::byte{flip};
            auto r = decode_tree(bad);
            if (!r) {
                CHECK(r.error().code == Errc::corrupt);
                continue;
            }
            ++accepted;
            if (encode_tree(*r) != bad) FAIL_CHECK("byte " << i << " ^ " << int(flip) << " accepted in a non-canonical form");
        }
    }
    CHECK(accepted > 0);  // ids and names can change freely
}

TEST_CASE("decode_tree rejects unsorted or duplicate names", "[tree]") {
    Tree t;
    t.entries = {base_entry("b", EntryType::fifo), base_entry("a", EntryType::fifo)};
    require_rejected(encode_tree(t), "unsorted");
    t.entries = {base_entry("a", EntryType::fifo), base_entry("a", EntryType::fifo)};
    require_rejected(encode_tree(t), "duplicate");
    t.entries = {base_entry("a", EntryType::fifo), base_entry("b", EntryType::fifo), base_entry("b", EntryType::dir)};
    require_rejected(encode_tree(t), "duplicate of another type");
}

TEST_CASE("decode_tree rejects invalid names", "[tree]") {
    for (std::string name : {std::string(".."), std::string("."), std::string("a/b"), std::string("/"), std::string("a\0b", 3),
                             std::string("\0", 1), std::string(""), std::string(kMaxNameLength + 1, 'n')}) {
        Tree t;
        t.entries = {base_entry(name, EntryType::fifo)};
        require_rejected(encode_tree(t), "name '" + name + "'");
        // Also when it is not the first entry.
        Tree t2;
        t2.entries = {base_entry("", EntryType::fifo), base_entry(name, EntryType::fifo)};
        t2.entries[0].name = std::string(1, '\x01');
        require_rejected(encode_tree(t2), "second name '" + name + "'");
    }
    Tree ok;
    ok.entries = {base_entry(std::string(kMaxNameLength, 'n'), EntryType::fifo)};
    CHECK(decode_tree(encode_tree(ok)));
}

TEST_CASE("decode_tree rejects bad types, modes and owners", "[tree]") {
    auto fifo_like = [](uint8_t type, uint64_t mode, uint64_t uid, uint64_t gid) {
        Encoder e;
        e.raw("DVT1");
        e.varint(1);
        raw_entry_head(e, "xy", type, mode, uid, gid);
        e.varint(0);  // size
        e.varint(0);  // xattrs
        return std::move(e.data());
    };
    REQUIRE(decode_tree(fifo_like(static_cast<uint8_t>(EntryType::fifo), 0644, 0, 0)));
    for (uint8_t type : {uint8_t{0}, uint8_t{8}, uint8_t{255}})
        require_rejected(fifo_like(type, 0644, 0, 0), "type " + std::to_string(type));
    uint8_t fifo = static_cast<uint8_t>(EntryType::fifo);
    require_rejected(fifo_like(fifo, 010000, 0, 0), "file type bits in mode");
    require_rejected(fifo_like(fifo, 0644, uint64_t{UINT32_MAX} + 1, 0), "uid above 32 bits");
    require_rejected(fifo_like(fifo, 0644, 0, uint64_t{1} << 40), "gid above 32 bits");
    REQUIRE(decode_tree(fifo_like(fifo, 07777, UINT32_MAX, UINT32_MAX)));
}

TEST_CASE("decode_tree rejects a huge entry count with a tiny input", "[tree]") {
    for (uint64_t n : {uint64_t{1} << 20, uint64_t{kMaxEntries}, uint64_t{kMaxEntries} + 1, uint64_t{1} << 40, UINT64_MAX}) {
        Encoder e;
        e.raw("DVT1");
        e.varint(n);
        raw_entry_head(e, "a", static_cast<uint8_t>(EntryType::fifo));
        e.varint(0);
        e.varint(0);
        require_rejected(e.data(), "count " + std::to_string(n));
    }
}

TEST_CASE("decode_tree rejects a huge xattr or extent count with a tiny input", "[tree]") {
    {
        Encoder e;
        e.raw("DVT1");
        e.varint(1);
        raw_entry_head(e, "a", static_cast<uint8_t>(EntryType::fifo));
        e.varint(0);
        e.varint(uint64_t{1} << 40);
        e.raw(std::string(20, '\0'));
        require_rejected(e.data(), "xattr count");
    }
    for (uint8_t form : {uint8_t{0}, uint8_t{1}}) {
        Encoder e;
        e.raw("DVT1");
        e.varint(1);
        raw_entry_head(e, "a", static_cast<uint8_t>(EntryType::file));
        e.varint(0);
        e.varint(0);
        e.u8(form);
        e.varint(uint64_t{1} << 40);
        e.raw(std::string(20, '\0'));
        require_rejected(e.data(), "extent count, form " + std::to_string(form));
    }
}

TEST_CASE("decode_tree rejects unsorted, duplicate or empty xattr keys", "[tree]") {
    Tree t;
    t.entries = {inline_file("f")};
    t.entries[0].xattrs = {{"user.b", "1"}, {"user.a", "2"}};
    require_rejected(encode_tree(t), "unsorted xattrs");
    t.entries[0].xattrs = {{"user.a", "1"}, {"user.a", "2"}};
    require_rejected(encode_tree(t), "duplicate xattrs");
    t.entries[0].xattrs = {{"", "1"}};
    require_rejected(encode_tree(t), "empty xattr key");
}

TEST_CASE("decode_tree rejects a size that does not match the extents", "[tree]") {
    Tree t;
    t.entries = {inline_file("f")};
    t.entries[0].size += 1;
    require_rejected(encode_tree(t), "size one more than the extents");
    t.entries[0].size -= 2;
    require_rejected(encode_tree(t), "size one less than the extents");
    t.entries = {indirect_file("g")};
    t.entries[0].size -= 1;
    require_rejected(encode_tree(t), "indirect size mismatch");
    t.entries = {base_entry("e", EntryType::file)};
    t.entries[0].size = 1;
    require_rejected(encode_tree(t), "empty content with a size");
}

TEST_CASE("decode_tree rejects indirect lengths that overflow when summed", "[tree]") {
    // Two lists of 2^63 bytes each add up to 0 modulo 2^64; size 0 must not match them.
    Tree t;
    TreeEntry e = base_entry("f", EntryType::file);
    e.content.indirect = true;
    e.content.lists = {ExtentListRef{id_of("a"), uint64_t{1} << 63, kMaxExtentsPerList}, ExtentListRef{id_of("b"), uint64_t{1} << 63, 1}};
    e.size = 0;
    t.entries = {e};
    require_rejected(encode_tree(t), "overflowing list lengths");
}

TEST_CASE("decode_extent_list rejects two holes in a row", "[tree]") {
    std::vector<Extent> xs{Extent{{}, 5, true}, Extent{id_of("c"), 3, false}, Extent{{}, 2, true}};
    CHECK(decode_extent_list(encode_extent_list(xs)));
    xs.push_back(Extent{{}, 1, true});
    CHECK_FALSE(decode_extent_list(encode_extent_list(xs)));
}

TEST_CASE("decode_tree rejects a symlink whose size is not its target's length", "[tree]") {
    Tree t;
    TreeEntry e = base_entry("l", EntryType::symlink);
    e.target = "target";
    e.size = 6;
    t.entries = {e};
    CHECK(decode_tree(encode_tree(t)));
    t.entries[0].size = 7;
    require_rejected(encode_tree(t), "symlink size 7 for a 6-byte target");
    t.entries[0] = base_entry("l", EntryType::hardlink);
    t.entries[0].target = "a/b";
    t.entries[0].size = 3;
    require_rejected(encode_tree(t), "hard link with a size");
}

TEST_CASE("scan_order_before orders paths as a scan records them", "[tree]") {
    CHECK(scan_order_before("a", "b"));
    CHECK_FALSE(scan_order_before("b", "a"));
    CHECK_FALSE(scan_order_before("a", "a"));
    CHECK(scan_order_before("a/b", "a-c"));  // a's subtree comes before a-c, though '/' > '-'
    CHECK_FALSE(scan_order_before("a-c", "a/b"));
    CHECK(scan_order_before("a/z", "b/a"));
    CHECK(scan_order_before("d/e/f", "d/f"));
    CHECK(scan_order_before("x", "x/y"));  // an ancestor comes first
    CHECK_FALSE(scan_order_before("x/y", "x"));
    CHECK(scan_order_before(std::string("a\x01"), std::string("a\xff")));  // bytes, unsigned
}

TEST_CASE("decode_tree rejects bad extents inside a tree", "[tree]") {
    Tree t;
    t.entries = {inline_file("f")};
    t.entries[0].content.extents.push_back(Extent{id_of("z"), 0, false});
    require_rejected(encode_tree(t), "zero-length chunk");
    t.entries = {inline_file("f")};
    t.entries[0].content.extents = {Extent{id_of("z"), (64u << 20) + 1, false}};
    t.entries[0].size = (64u << 20) + 1;
    require_rejected(encode_tree(t), "chunk longer than 64 MiB");
    t.entries[0].content.extents = {Extent{{}, 0, true}};
    t.entries[0].size = 0;
    require_rejected(encode_tree(t), "zero-length hole");
    t.entries[0].content.extents.assign(kMaxExtentsPerList + 1, Extent{{}, 1, true});
    t.entries[0].size = kMaxExtentsPerList + 1;
    require_rejected(encode_tree(t), "too many inline extents");
    t.entries[0].content.extents.assign(kMaxExtentsPerList, Extent{id_of("z"), 1, false});
    t.entries[0].size = kMaxExtentsPerList;
    CHECK(decode_tree(encode_tree(t)));
    t.entries[0].content.extents[7].hole = true;
    CHECK(decode_tree(encode_tree(t)));
    t.entries[0].content.extents[8].hole = true;
    require_rejected(encode_tree(t), "two holes in a row (writers merge them)");
    t.entries[0].content = FileContent{};
    t.entries[0].content.indirect = true;
    t.entries[0].content.lists = {ExtentListRef{id_of("l"), 10, 0}};
    t.entries[0].size = 10;
    require_rejected(encode_tree(t), "empty extent list");
    t.entries[0].content.lists = {ExtentListRef{id_of("l"), 10, kMaxExtentsPerList + 1}};
    require_rejected(encode_tree(t), "extent list too long");
}

TEST_CASE("decode_tree rejects bad link targets", "[tree]") {
    auto with_target = [](EntryType type, std::string target) {
        Tree t;
        TreeEntry e = base_entry("l", type);
        e.target = std::move(target);
        if (type == EntryType::symlink) e.size = e.target.size();
        t.entries = {e};
        return encode_tree(t);
    };
    require_rejected(with_target(EntryType::symlink, ""), "empty symlink target");
    require_rejected(with_target(EntryType::symlink, std::string("a\0b", 3)), "NUL in symlink target");
    require_rejected(with_target(EntryType::symlink, std::string(kMaxTargetLength + 1, 'x')), "symlink target too long");
    CHECK(decode_tree(with_target(EntryType::symlink, "/etc/passwd")));
    CHECK(decode_tree(with_target(EntryType::symlink, "../../x")));
    for (std::string bad : {"", "/abs", "../x", "a/../b", "a//b", "a/", "./a", "..", "a/./b"}) {
        require_rejected(with_target(EntryType::hardlink, bad), "hard link target '" + bad + "'");
    }
    CHECK(decode_tree(with_target(EntryType::hardlink, "a")));
    CHECK(decode_tree(with_target(EntryType::hardlink, "dir/sub/file")));
}

TEST_CASE("extent lists round-trip", "[tree]") {
    std::vector<Extent> xs = {Extent{id_of("a"), 1, false}, Extent{{}, uint64_t{1} << 40, true}, Extent{id_of("b"), 64u << 20, false}};
    auto bytes = encode_extent_list(xs);
    auto back = decode_extent_list(bytes);
    REQUIRE(back);
    CHECK(*back == xs);
    std::vector<Extent> full(kMaxExtentsPerList, Extent{id_of("c"), 100, false});
    auto fb = decode_extent_list(encode_extent_list(full));
    REQUIRE(fb);
    CHECK(fb->size() == kMaxExtentsPerList);
}

TEST_CASE("decode_extent_list rejects malformed input", "[tree]") {
    auto reject = [](std::span<const std::byte> b, std::string_view why) {
        INFO(why);
        auto r = decode_extent_list(b);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == Errc::corrupt);
    };
    std::vector<Extent> xs = {Extent{id_of("a"), 10, false}, Extent{{}, 20, true}};
    auto good = encode_extent_list(xs);
    for (size_t n = 0; n < good.size(); ++n) reject(std::span<const std::byte>(good).first(n), "truncated at " + std::to_string(n));
    auto longer = good;
    longer.push_back(std::byte{0});
    reject(longer, "trailing byte");
    auto bad_magic = good;
    bad_magic[3] = std::byte{'2'};
    reject(bad_magic, "bad magic");
    reject(encode_extent_list(std::vector<Extent>{}), "empty list");
    reject(encode_extent_list(std::vector<Extent>(kMaxExtentsPerList + 1, Extent{{}, 1, true})), "too many extents");
    reject(encode_extent_list(std::vector<Extent>{Extent{id_of("a"), 0, false}}), "zero-length chunk");
    reject(encode_extent_list(std::vector<Extent>{Extent{{}, 0, true}}), "zero-length hole");
    reject(encode_extent_list(std::vector<Extent>{Extent{{}, uint64_t{1} << 62, true}}), "hole too long");
    reject(encode_extent_list(std::vector<Extent>{Extent{id_of("a"), (64u << 20) + 1, false}}), "chunk too long");
    {
        Encoder e;
        e.raw("DVL1");
        e.varint(1);
        e.u8(2);  // unknown kind
        e.varint(5);
        reject(e.data(), "unknown extent kind");
    }
    {
        Encoder e;
        e.raw("DVL1");
        e.varint(4000);  // within the limit but far more than the input holds
        e.u8(1);
        e.varint(5);
        reject(e.data(), "count larger than the input");
    }
    {
        Encoder e;
        e.raw("DVL1");
        e.u8(0x81);  // non-canonical varint for 1
        e.u8(0x00);
        e.u8(1);
        e.varint(5);
        reject(e.data(), "non-canonical varint");
    }
}

TEST_CASE("file content encodes and decodes alone", "[tree]") {
    FileContent inl = inline_file("x").content;
    auto a = decode_content(encode_content(inl));
    REQUIRE(a);
    CHECK(*a == inl);
    FileContent ind = indirect_file("y").content;
    auto b = decode_content(encode_content(ind));
    REQUIRE(b);
    CHECK(*b == ind);
    auto c = decode_content(encode_content(FileContent{}));
    REQUIRE(c);
    CHECK(*c == FileContent{});

    auto enc = encode_content(inl);
    for (size_t n = 0; n < enc.size(); ++n) {
        auto r = decode_content(std::span<const std::byte>(enc).first(n));
        CHECK_FALSE(r);
    }
    enc.push_back(std::byte{0});
    CHECK_FALSE(decode_content(enc));
    Encoder e;
    e.u8(2);
    e.varint(0);
    CHECK_FALSE(decode_content(e.data()));
}

TEST_CASE("entry_type_name names every type", "[tree]") {
    CHECK(std::string(entry_type_name(EntryType::file)) == "file");
    CHECK(std::string(entry_type_name(EntryType::dir)) == "directory");
    CHECK(std::string(entry_type_name(EntryType::symlink)) == "symlink");
    CHECK(std::string(entry_type_name(static_cast<EntryType>(99))) == "unknown");
}
