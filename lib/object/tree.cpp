#include "object/tree.h"

#include <algorithm>

#include <fmt/format.h>

#include "object/codec_util.h"

namespace dvol {

namespace {

constexpr std::string_view kTreeMagic = "DVT1";
constexpr std::string_view kListMagic = "DVL1";
constexpr uint64_t kMaxChunkLength = 64 << 20;

void put_extent(Encoder& e, const Extent& x) {
    if (x.hole) {
        e.u8(1);
        e.varint(x.length);
    } else {
        e.u8(0);
        e.id(x.id);
        e.varint(x.length);
    }
}

bool get_extent(Decoder& d, Extent& x) {
    uint8_t kind = d.u8();
    if (kind == 0) {
        x.hole = false;
        x.id = d.id();
        x.length = d.varint();
        return d.ok() && x.length > 0 && x.length <= kMaxChunkLength;
    }
    if (kind == 1) {
        x.hole = true;
        x.length = d.varint();
        return d.ok() && x.length > 0 && x.length < (uint64_t{1} << 62);
    }
    return false;
}

void put_content(Encoder& e, const FileContent& c) {
    if (!c.indirect) {
        e.u8(0);
        e.varint(c.extents.size());
        for (const auto& x : c.extents) put_extent(e, x);
    } else {
        e.u8(1);
        e.varint(c.lists.size());
        for (const auto& l : c.lists) {
            e.id(l.id);
            e.varint(l.length);
            e.varint(l.count);
        }
    }
}

// Extents in canonical form: a hole never follows a hole (writers merge them).
bool get_extents(Decoder& d, std::vector<Extent>& xs, uint64_t& total) {
    for (size_t i = 0; i < xs.size(); ++i) {
        auto& x = xs[i];
        if (!get_extent(d, x) || x.length > UINT64_MAX - total) return false;
        if (x.hole && i > 0 && xs[i - 1].hole) return false;
        total += x.length;
    }
    return true;
}

bool get_content(Decoder& d, FileContent& c, uint64_t& total) {
    uint8_t form = d.u8();
    uint64_t n = d.varint();
    if (!d.ok()) return false;
    total = 0;
    if (form == 0) {
        if (n > kMaxExtentsPerList || n > d.remaining()) return false;
        c.indirect = false;
        c.extents.resize(n);
        return get_extents(d, c.extents, total);
    }
    if (form == 1) {
        // Writers make a file of more than 4096 extents indirect, in lists of 4096 but the last;
        // readers accept any split (each list is checked against its reference).
        if (n > d.remaining()) return false;
        c.indirect = true;
        c.lists.resize(n);
        for (size_t i = 0; i < n; ++i) {
            auto& l = c.lists[i];
            l.id = d.id();
            l.length = d.varint();
            l.count = d.varint();
            if (!d.ok() || l.count == 0 || l.count > kMaxExtentsPerList || l.length == 0 || l.length > UINT64_MAX - total)
                return false;
            total += l.length;
        }
        return true;
    }
    return false;
}

Error malformed(std::string_view what, std::string_view why) {
    return make_error(Errc::corrupt, fmt::format("malformed {}: {}", what, why));
}

bool valid_relative_path(std::string_view p) {
    if (p.empty() || p.front() == '/') return false;
    size_t start = 0;
    while (start <= p.size()) {
        size_t end = p.find('/', start);
        if (end == std::string_view::npos) end = p.size();
        if (!valid_entry_name(p.substr(start, end - start))) return false;
        start = end + 1;
    }
    return true;
}

}  // namespace

const char* entry_type_name(EntryType t) {
    switch (t) {
        case EntryType::file: return "file";
        case EntryType::dir: return "directory";
        case EntryType::symlink: return "symlink";
        case EntryType::hardlink: return "hardlink";
        case EntryType::fifo: return "fifo";
        case EntryType::chardev: return "character device";
        case EntryType::blockdev: return "block device";
    }
    return "unknown";
}

const TreeEntry* Tree::find(std::string_view name) const {
    auto it = std::lower_bound(entries.begin(), entries.end(), name,
                               [](const TreeEntry& e, std::string_view n) { return e.name < n; });
    if (it == entries.end() || it->name != name) return nullptr;
    return &*it;
}

bool scan_order_before(std::string_view a, std::string_view b) {
    // Component by component: "a/b" comes before "a-c" (the directory a is entered before the
    // name a-c comes), though '/' sorts after '-' as a byte.
    for (;;) {
        size_t ea = a.find('/'), eb = b.find('/');
        std::string_view ca = a.substr(0, ea), cb = b.substr(0, eb);
        if (ca != cb) return ca < cb;
        if (ea == std::string_view::npos) return eb != std::string_view::npos;  // a is b, or above it
        if (eb == std::string_view::npos) return false;                         // b is above a
        a.remove_prefix(ea + 1);
        b.remove_prefix(eb + 1);
    }
}

namespace {

void put_xattrs(Encoder& e, const Xattrs& x) {
    e.varint(x.size());
    for (const auto& [k, v] : x) {
        e.bytes(k);
        e.bytes(v);
    }
}

bool get_xattrs(Decoder& d, Xattrs& x) {
    uint64_t nx = d.varint();
    if (!d.ok() || nx > kMaxXattrs || nx > d.remaining()) return false;
    x.resize(nx);
    for (size_t k = 0; k < nx; ++k) {
        x[k].first = d.bytes(kMaxNameLength);
        x[k].second = d.bytes(kMaxXattrValue);
        if (!d.ok() || x[k].first.empty() || (k > 0 && !(x[k - 1].first < x[k].first))) return false;
    }
    return true;
}

}  // namespace

bool valid_entry_name(std::string_view name) {
    if (name.empty() || name == "." || name == ".." || name.size() > kMaxNameLength) return false;
    return name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

std::vector<std::byte> encode_tree(const Tree& tree) {
    Encoder e;
    e.raw(kTreeMagic);
    e.varint(tree.entries.size());
    for (const auto& en : tree.entries) {
        e.bytes(en.name);
        e.u8(static_cast<uint8_t>(en.type));
        e.varint(en.mode);
        e.varint(en.uid);
        e.varint(en.gid);
        e.svarint(en.mtime_ns);
        e.varint(en.size);
        put_xattrs(e, en.xattrs);
        switch (en.type) {
            case EntryType::file: put_content(e, en.content); break;
            case EntryType::dir: e.id(en.subtree); break;
            case EntryType::symlink:
            case EntryType::hardlink: e.bytes(en.target); break;
            case EntryType::fifo: break;
            case EntryType::chardev:
            case EntryType::blockdev: e.varint(en.rdev); break;
        }
    }
    return std::move(e.data());
}

Result<Tree> decode_tree(std::span<const std::byte> data) {
    Decoder d(data);
    if (!d.expect(kTreeMagic)) return malformed("tree", "bad magic");
    uint64_t n = d.varint();
    // Every entry takes at least 9 bytes (a fifo with a one-byte name and zero fields), so a
    // count beyond that is a lie; check before allocating.
    if (!d.ok() || n > kMaxEntries || n > d.remaining() / 9) return malformed("tree", "bad entry count");
    Tree tree;
    tree.entries.resize(n);
    for (size_t i = 0; i < n; ++i) {
        auto& en = tree.entries[i];
        en.name = d.bytes(kMaxNameLength);
        if (!d.ok() || !valid_entry_name(en.name)) return malformed("tree", fmt::format("invalid entry name at index {}", i));
        if (i > 0 && !(tree.entries[i - 1].name < en.name)) return malformed("tree", "entries not sorted or duplicated");
        uint8_t type = d.u8();
        if (type < 1 || type > 7) return malformed("tree", fmt::format("unknown type {} for {}", type, en.name));
        en.type = static_cast<EntryType>(type);
        uint64_t mode = d.varint(), uid = d.varint(), gid = d.varint();
        if (mode > 07777 || uid > UINT32_MAX || gid > UINT32_MAX) return malformed("tree", fmt::format("bad mode or owner for {}", en.name));
        en.mode = static_cast<uint32_t>(mode);
        en.uid = static_cast<uint32_t>(uid);
        en.gid = static_cast<uint32_t>(gid);
        en.mtime_ns = d.svarint();
        en.size = d.varint();
        // Size is a file's content length and a symlink's target length (both checked below);
        // every other type has 0.
        if (d.ok() && en.size != 0 && en.type != EntryType::file && en.type != EntryType::symlink)
            return malformed("tree", fmt::format("{} of type {} has a size", en.name, entry_type_name(en.type)));
        if (!get_xattrs(d, en.xattrs)) return malformed("tree", fmt::format("bad xattrs for {}", en.name));
        switch (en.type) {
            case EntryType::file: {
                uint64_t total = 0;
                if (!get_content(d, en.content, total)) return malformed("tree", fmt::format("bad content for {}", en.name));
                if (total != en.size) return malformed("tree", fmt::format("content of {} does not add up to its size", en.name));
                break;
            }
            case EntryType::dir: en.subtree = d.id(); break;
            case EntryType::symlink:
                en.target = d.bytes(kMaxTargetLength);
                if (en.target.empty() || en.target.find('\0') != std::string::npos || en.size != en.target.size())
                    return malformed("tree", fmt::format("bad symlink target for {}", en.name));
                break;
            case EntryType::hardlink:
                en.target = d.bytes(kMaxTargetLength);
                if (!valid_relative_path(en.target)) return malformed("tree", fmt::format("bad hard link target for {}", en.name));
                break;
            case EntryType::fifo: break;
            case EntryType::chardev:
            case EntryType::blockdev: en.rdev = d.varint(); break;
        }
        if (!d.ok()) return malformed("tree", "truncated");
    }
    if (!d.at_end()) return malformed("tree", "trailing bytes");
    return tree;
}

std::vector<std::byte> encode_extent_list(std::span<const Extent> extents) {
    Encoder e;
    e.raw(kListMagic);
    e.varint(extents.size());
    for (const auto& x : extents) put_extent(e, x);
    return std::move(e.data());
}

Result<std::vector<Extent>> decode_extent_list(std::span<const std::byte> data) {
    Decoder d(data);
    if (!d.expect(kListMagic)) return malformed("extent list", "bad magic");
    uint64_t n = d.varint();
    if (!d.ok() || n == 0 || n > kMaxExtentsPerList || n > d.remaining()) return malformed("extent list", "bad count");
    std::vector<Extent> out(n);
    uint64_t total = 0;
    if (!get_extents(d, out, total)) return malformed("extent list", "bad extent");
    if (!d.at_end()) return malformed("extent list", "trailing bytes");
    return out;
}

std::vector<std::byte> encode_content(const FileContent& c) {
    Encoder e;
    put_content(e, c);
    return std::move(e.data());
}

uint64_t content_length(const FileContent& c) {
    uint64_t total = 0;
    auto add = [&](uint64_t n) { total = n > UINT64_MAX - total ? UINT64_MAX : total + n; };
    if (c.indirect) {
        for (const auto& l : c.lists) add(l.length);
    } else {
        for (const auto& x : c.extents) add(x.length);
    }
    return total;
}

Result<FileContent> decode_content(std::span<const std::byte> data) {
    Decoder d(data);
    FileContent c;
    uint64_t total = 0;
    if (!get_content(d, c, total) || !d.at_end()) return malformed("content", "bad encoding");
    return c;
}

std::vector<std::byte> encode_xattrs(const Xattrs& x) {
    Encoder e;
    put_xattrs(e, x);
    return std::move(e.data());
}

Result<Xattrs> decode_xattrs(std::span<const std::byte> data) {
    Decoder d(data);
    Xattrs x;
    if (!get_xattrs(d, x) || !d.at_end()) return malformed("xattrs", "bad encoding");
    return x;
}

}  // namespace dvol
