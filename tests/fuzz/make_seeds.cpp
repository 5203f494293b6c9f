// Writes a seed corpus of valid encodings, made with the real encoders, so fuzzing starts from
// inputs that get past the magic and the first checks:
//   make_seeds <dir>  ->  <dir>/{tree,extent_list,content,commit,zstd}/seed-<n>
// Each seed is checked to decode back to what was encoded; a failure there is a bug in dvol.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "object/commit.h"
#include "object/tree.h"
#include "store/codec.h"
#include "store/hash.h"

namespace fs = std::filesystem;
using namespace dvol;

namespace {

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "make_seeds: %s\n", what.c_str());
    std::exit(1);
}

class Writer {
public:
    Writer(const fs::path& root, const char* target) : dir_(root / target) { fs::create_directories(dir_); }
    void write(const std::vector<std::byte>& bytes) {
        fs::path p = dir_ / ("seed-" + std::to_string(n_++));
        std::ofstream f(p, std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        if (!f) die("cannot write " + p.string());
    }

private:
    fs::path dir_;
    int n_ = 0;
};

ObjectId id_of(std::string_view s) { return sha256(s); }

Extent chunk(std::string_view seed, uint64_t length) { return Extent{id_of(seed), length, false}; }
Extent hole(uint64_t length) { return Extent{ObjectId{}, length, true}; }

uint64_t total(const FileContent& c) {
    uint64_t t = 0;
    if (c.indirect)
        for (const auto& l : c.lists) t += l.length;
    else
        for (const auto& x : c.extents) t += x.length;
    return t;
}

TreeEntry entry(std::string name, EntryType type) {
    TreeEntry e;
    e.name = std::move(name);
    e.type = type;
    e.mode = type == EntryType::dir ? 0755 : 0644;
    e.uid = 1000;
    e.gid = 1000;
    e.mtime_ns = 1700000000123456789;
    return e;
}

TreeEntry file(std::string name, FileContent content) {
    TreeEntry e = entry(std::move(name), EntryType::file);
    e.size = total(content);
    e.content = std::move(content);
    return e;
}

FileContent inline_content(std::vector<Extent> extents) { return FileContent{false, std::move(extents), {}}; }
FileContent indirect_content(std::vector<ExtentListRef> lists) { return FileContent{true, {}, std::move(lists)}; }

std::vector<Tree> trees() {
    std::vector<Tree> out;
    out.push_back(Tree{});  // empty directory

    Tree all;  // every entry type, xattrs, odd modes and owners; names sorted by bytes
    {
        auto f = file("a.txt", inline_content({chunk("a", 4096), hole(8192), chunk("b", 17)}));
        f.xattrs = {{"security.selinux", "system_u:object_r:etc_t:s0"}, {"user.comment", std::string("v\0x", 3)}};
        f.mode = 04755;
        all.entries.push_back(std::move(f));
    }
    all.entries.push_back(file("big.bin", indirect_content({{id_of("l1"), 1 << 20, 4096}, {id_of("l2"), 5, 1}})));
    {
        auto d = entry("dir", EntryType::dir);
        d.subtree = id_of("subtree");
        d.xattrs = {{"user.x", ""}};
        all.entries.push_back(std::move(d));
    }
    all.entries.push_back(file("empty", inline_content({})));
    {
        auto fifo = entry("fifo", EntryType::fifo);
        fifo.mtime_ns = -1;
        all.entries.push_back(std::move(fifo));
    }
    {
        auto h = entry("link", EntryType::hardlink);
        h.target = "dir/a.txt";
        all.entries.push_back(std::move(h));
    }
    {
        auto c = entry("null", EntryType::chardev);
        c.rdev = (1 << 8) | 3;
        c.mode = 0666;
        c.uid = 0;
        c.gid = 0;
        all.entries.push_back(std::move(c));
    }
    {
        auto b = entry("sda", EntryType::blockdev);
        b.rdev = 8 << 8;
        b.uid = UINT32_MAX;
        b.gid = UINT32_MAX;
        all.entries.push_back(std::move(b));
    }
    {
        auto s = entry("sym", EntryType::symlink);
        s.target = "../elsewhere/target";
        s.size = s.target.size();  // a symlink's size is its target's length (FORMAT.md)
        s.mode = 0777;
        s.mtime_ns = INT64_MIN;
        all.entries.push_back(std::move(s));
    }
    {
        auto u = file("\xc3\xa9t\xc3\xa9", inline_content({hole(1)}));  // UTF-8 sorts after ASCII
        u.mode = 07777;
        u.mtime_ns = INT64_MAX;
        all.entries.push_back(std::move(u));
    }
    out.push_back(all);

    Tree one;  // a single small file
    one.entries.push_back(file("f", inline_content({chunk("x", 1)})));
    out.push_back(one);
    return out;
}

std::vector<std::vector<Extent>> extent_lists() {
    return {
        {chunk("only", 65536)},
        {chunk("c0", 1 << 20), hole(uint64_t{1} << 40), chunk("c1", 64 << 20), hole(1)},
        {hole((uint64_t{1} << 62) - 1)},
    };
}

std::vector<FileContent> contents() {
    return {
        inline_content({}),
        inline_content({chunk("a", 300), hole(70000), chunk("b", 1)}),
        indirect_content({{id_of("list0"), 4096ull << 20, 4096}, {id_of("list1"), 12345, 3}}),
    };
}

std::vector<Commit> commits() {
    std::vector<Commit> out;
    Commit root;
    root.tree = id_of("tree0");
    root.author_name = "Ada Lovelace";
    root.author_email = "ada@example.org";
    root.time = 1700000000;
    root.message = "Initial snapshot\n";
    out.push_back(root);

    Commit merge;
    merge.tree = id_of("tree1");
    merge.parents = {id_of("p1"), id_of("p2")};
    merge.author_name = "J\xc3\xb6rg M\xc3\xbcller";
    merge.author_email = "joerg@example.de";
    merge.time = -86400;
    merge.tz_offset_min = -(9 * 60 + 30);
    merge.metadata = {{"host", "build-01"}, {"tool.version", "0.1.0 = rc"}, {"volume", "data"}};
    merge.message = "Merge\n\nwith a body\n  and indentation\n";
    out.push_back(merge);

    Commit bare;  // empty name, email and message, maximal offset
    bare.tree = ObjectId{};
    bare.parents = {id_of("p")};
    bare.time = 0;
    bare.tz_offset_min = 23 * 60 + 59;
    out.push_back(bare);
    return out;
}

std::vector<std::byte> to_bytes(std::string_view s) {
    auto b = reinterpret_cast<const std::byte*>(s.data());
    return {b, b + s.size()};
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) die("usage: make_seeds <output dir>");
    fs::path root = argv[1];

    Writer tw(root, "tree");
    for (const auto& t : trees()) {
        auto b = encode_tree(t);
        auto back = decode_tree(b);
        if (!back || back->entries != t.entries) die("a seed tree does not decode back");
        tw.write(b);
    }

    Writer lw(root, "extent_list");
    for (const auto& l : extent_lists()) {
        auto b = encode_extent_list(l);
        auto back = decode_extent_list(b);
        if (!back || *back != l) die("a seed extent list does not decode back");
        lw.write(b);
    }

    Writer cw(root, "content");
    for (const auto& c : contents()) {
        auto b = encode_content(c);
        auto back = decode_content(b);
        if (!back || *back != c) die("a seed content field does not decode back");
        cw.write(b);
    }

    Writer mw(root, "commit");
    for (const auto& c : commits()) {
        auto b = encode_commit(c);
        if (!b) die("encode_commit rejected a seed commit: " + b.error().message);
        auto back = decode_commit(*b);
        if (!back || back->tree != c.tree || back->parents != c.parents || back->author_name != c.author_name ||
            back->author_email != c.author_email || back->time != c.time || back->tz_offset_min != c.tz_offset_min ||
            back->metadata != c.metadata || back->message != c.message)
            die("a seed commit does not decode back");
        mw.write(*b);
    }

    // zstd: little-endian u32 raw size, then the compressed frame.
    Writer zw(root, "zstd");
    Compressor compressor;
    std::string text;
    for (int i = 0; i < 200; ++i) text += "line " + std::to_string(i % 17) + " of some compressible text\n";
    for (const auto& raw : {to_bytes(text), std::vector<std::byte>(4096), to_bytes(std::string(100, 'a') + "xyz")}) {
        std::vector<std::byte> packed, back;
        if (compressor.compress(raw, packed) != Codec::zstd) die("a zstd seed did not compress");
        if (!decompress(Codec::zstd, packed, raw.size(), back) || back != raw) die("a zstd seed does not decompress back");
        auto n = static_cast<uint32_t>(raw.size());
        std::vector<std::byte> seed{std::byte(n & 0xff), std::byte((n >> 8) & 0xff), std::byte((n >> 16) & 0xff),
                                    std::byte(n >> 24)};
        seed.insert(seed.end(), packed.begin(), packed.end());
        zw.write(seed);
    }
    return 0;
}
