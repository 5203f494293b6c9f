#include "remote/layout.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "store/hash.h"
#include "store/pack_format.h"

namespace dvol::remote {

namespace {

constexpr std::string_view kRefHeader = "dvol ref 1\n";
constexpr std::string_view kIndexMagic = "DVOLIDX1";
constexpr size_t kIndexHeader = 8 + 4 + 4 + 8 + 4;
constexpr size_t kIndexEntry = 32 + 8 + 4 + 4;

void put_le(std::vector<std::byte>& out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}

uint64_t get_le(const std::byte* p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
    return v;
}

}  // namespace

std::string pack_key(const std::string& name) { return "packs/" + name + ".pack"; }
std::string index_key(const std::string& name) { return std::string(kIndexPrefix) + name; }
std::string volume_refs_prefix(const std::string& volume) { return "refs/" + volume + "/"; }
std::string branch_ref_key(const std::string& volume, const std::string& branch) {
    return volume_refs_prefix(volume) + "branches/" + branch;
}
std::string head_key(const std::string& volume) { return volume_refs_prefix(volume) + "HEAD"; }

std::optional<std::string> branch_of_key(const std::string& volume, std::string_view key) {
    std::string prefix = volume_refs_prefix(volume) + "branches/";
    if (!key.starts_with(prefix)) return std::nullopt;
    std::string_view rest = key.substr(prefix.size());
    if (rest.empty() || rest.find('/') != std::string_view::npos) return std::nullopt;
    return std::string(rest);
}

std::optional<std::string> volume_of_key(std::string_view key) {
    if (!key.starts_with("refs/")) return std::nullopt;
    std::string_view rest = key.substr(5);
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos || slash == 0) return std::nullopt;
    return std::string(rest.substr(0, slash));
}

std::string encode_branch_ref(const std::optional<ObjectId>& tip) {
    return std::string(kRefHeader) + (tip ? "commit " + tip->hex() + "\n" : std::string("deleted\n"));
}

Result<std::optional<ObjectId>> decode_branch_ref(std::string_view data) {
    auto bad = [] { return make_error(Errc::corrupt, "a branch ref is malformed (not 'dvol ref 1' with a commit id)"); };
    if (!data.starts_with(kRefHeader)) return bad();
    data.remove_prefix(kRefHeader.size());
    if (data == "deleted\n") return std::optional<ObjectId>();
    if (!data.starts_with("commit ") || data.size() != 7 + 64 + 1 || data.back() != '\n') return bad();
    auto id = ObjectId::from_hex(data.substr(7, 64));
    if (!id) return bad();
    return std::optional<ObjectId>(*id);
}

std::string encode_head(const std::string& branch) { return std::string(kRefHeader) + "branch " + branch + "\n"; }

Result<std::string> decode_head(std::string_view data) {
    if (!data.starts_with(kRefHeader)) return make_error(Errc::corrupt, "the remote's HEAD is malformed");
    data.remove_prefix(kRefHeader.size());
    if (!data.starts_with("branch ") || data.size() < 9 || data.back() != '\n' || data.size() > 7 + 128 + 1)
        return make_error(Errc::corrupt, "the remote's HEAD is malformed");
    return std::string(data.substr(7, data.size() - 8));
}

std::vector<std::byte> encode_pack_index(PackIndexFile index) {
    std::sort(index.entries.begin(), index.entries.end(), [](const IndexEntry& a, const IndexEntry& b) { return a.id < b.id; });
    std::vector<std::byte> out;
    out.reserve(kIndexHeader + index.entries.size() * kIndexEntry + 32);
    for (char c : kIndexMagic) out.push_back(static_cast<std::byte>(c));
    put_le(out, 1, 4);
    out.push_back(static_cast<std::byte>(index.kind));
    put_le(out, 0, 3);
    put_le(out, index.pack_size, 8);
    put_le(out, index.entries.size(), 4);
    for (const auto& e : index.entries) {
        auto id = e.id.as_span();
        out.insert(out.end(), id.begin(), id.end());
        put_le(out, e.offset, 8);
        put_le(out, e.stored_len, 4);
        put_le(out, e.raw_len, 4);
    }
    ObjectId sum = sha256(out);
    auto s = sum.as_span();
    out.insert(out.end(), s.begin(), s.end());
    return out;
}

Result<PackIndexFile> decode_pack_index(std::span<const std::byte> data) {
    auto bad = [](std::string_view why) { return make_error(Errc::corrupt, fmt::format("pack index is malformed: {}", why)); };
    if (data.size() < kIndexHeader + 32) return bad("truncated");
    if (std::memcmp(data.data(), kIndexMagic.data(), kIndexMagic.size()) != 0) return bad("bad magic");
    if (get_le(data.data() + 8, 4) != 1) return make_error(Errc::unsupported, "pack index of an unknown version");
    PackIndexFile index;
    uint8_t kind = static_cast<uint8_t>(data[12]);
    if (kind > 1 || get_le(data.data() + 13, 3) != 0) return bad("unknown kind");
    index.kind = static_cast<PackKind>(kind);
    index.pack_size = get_le(data.data() + 16, 8);
    uint64_t count = get_le(data.data() + 24, 4);
    if (data.size() != kIndexHeader + count * kIndexEntry + 32) return bad("its length does not match its count");
    auto body = data.first(data.size() - 32);
    if (sha256(body) != ObjectId::from_bytes(data.last(32))) return bad("checksum mismatch");
    if (index.pack_size > (uint64_t{1} << 40)) return bad("impossible pack size");
    index.entries.reserve(count);
    const std::byte* p = data.data() + kIndexHeader;
    for (uint64_t i = 0; i < count; ++i, p += kIndexEntry) {
        IndexEntry e;
        e.id = ObjectId::from_bytes(std::span(p, 32));
        e.offset = get_le(p + 32, 8);
        e.stored_len = static_cast<uint32_t>(get_le(p + 40, 4));
        e.raw_len = static_cast<uint32_t>(get_le(p + 44, 4));
        if (e.raw_len > kMaxObjectSize || e.stored_len > kMaxStoredSize) return bad("an entry gives an impossible size");
        // Compared without adding to the offset, which the remote chose: a sum could wrap.
        if (e.offset < kPackHeaderSize || e.offset > index.pack_size ||
            index.pack_size - e.offset < kRecordHeaderSize + uint64_t{e.stored_len})
            return bad("an entry lies outside the pack");
        if (i > 0 && !(index.entries.back().id < e.id)) return bad("entries are not sorted");
        index.entries.push_back(e);
    }
    return index;
}

bool valid_pack_name(std::string_view name) {
    return name.size() == 64 && std::all_of(name.begin(), name.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace dvol::remote
