// The remote layout (lib/remote/layout.cpp): the keys, the ref and HEAD encodings, and the pack
// index encoding, whose decoder reads what a remote (possibly a hostile one) serves.
#include <catch2/catch.hpp>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "remote/layout.h"
#include "store/hash.h"
#include "store/pack_format.h"
#include "support.h"

using namespace dvol;
using namespace dvol::remote;

namespace {

ObjectId id_of(int n) { return sha256("object " + std::to_string(n)); }

void put_le(std::byte* p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}

// Recomputes the trailing checksum after a test changed the body, so that what is checked is
// the field changed, not the checksum.
void reseal(std::vector<std::byte>& index) {
    ObjectId sum = sha256(std::span(index).first(index.size() - 32));
    std::memcpy(index.data() + index.size() - 32, sum.bytes.data(), 32);
}

constexpr size_t kHeader = 28;  // magic, version, kind, 3 zero bytes, pack size, count
constexpr size_t kEntry = 48;   // id, offset, stored length, raw length

// A data pack of three records of 100, 200 and 300 stored bytes, laid out one after the other.
PackIndexFile sample_index() {
    PackIndexFile index;
    index.kind = PackKind::data;
    uint64_t at = kPackHeaderSize;
    for (int i = 0; i < 3; ++i) {
        uint32_t len = static_cast<uint32_t>(100 * (i + 1));
        index.entries.push_back(IndexEntry{id_of(i), at, len, len * 2});
        at += kRecordHeaderSize + len;
    }
    index.pack_size = at;
    return index;
}

// The index entry for `id` in an encoded index (entries are sorted by id).
std::byte* entry_for(std::vector<std::byte>& encoded, const ObjectId& id) {
    for (size_t at = kHeader; at + kEntry <= encoded.size() - 32; at += kEntry)
        if (std::memcmp(encoded.data() + at, id.bytes.data(), 32) == 0) return encoded.data() + at;
    FAIL("no entry for " << id.hex());
    return nullptr;
}

void check_rejected(const std::vector<std::byte>& encoded, const std::string& why) {
    auto r = decode_pack_index(encoded);
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message);
    CHECK(r.error().code == Errc::corrupt);
    CHECK(r.error().message.find(why) != std::string::npos);
}

}  // namespace

TEST_CASE("remote keys: packs, indexes, refs and the volume or branch a key names", "[remote_layout]") {
    std::string name(64, 'a');
    CHECK(pack_key(name) == "packs/" + name + ".pack");
    CHECK(index_key(name) == "index/" + name);
    CHECK(branch_ref_key("vol", "master") == "refs/vol/branches/master");
    CHECK(head_key("vol") == "refs/vol/HEAD");
    CHECK(volume_refs_prefix("vol") == "refs/vol/");

    CHECK(branch_of_key("vol", "refs/vol/branches/dev") == std::optional<std::string>("dev"));
    CHECK_FALSE(branch_of_key("vol", "refs/vol/HEAD"));
    CHECK_FALSE(branch_of_key("vol", "refs/vol/branches/"));
    CHECK_FALSE(branch_of_key("vol", "refs/vol/branches/a/b"));
    CHECK_FALSE(branch_of_key("vol", "refs/volume/branches/dev"));  // another volume sharing a prefix
    CHECK_FALSE(branch_of_key("vol", "refs/vo/branches/dev"));

    CHECK(volume_of_key("refs/vol/branches/dev") == std::optional<std::string>("vol"));
    CHECK(volume_of_key("refs/vol/HEAD") == std::optional<std::string>("vol"));
    CHECK_FALSE(volume_of_key("refs/vol"));
    CHECK_FALSE(volume_of_key("refs//HEAD"));
    CHECK_FALSE(volume_of_key("packs/x.pack"));

    CHECK(valid_pack_name(std::string(64, '0')));
    CHECK(valid_pack_name(sha256("x").hex()));
    CHECK_FALSE(valid_pack_name(std::string(63, 'a')));
    CHECK_FALSE(valid_pack_name(std::string(65, 'a')));
    CHECK_FALSE(valid_pack_name(std::string(64, 'A')));
    CHECK_FALSE(valid_pack_name(std::string(63, 'a') + "g"));
}

TEST_CASE("branch refs and HEAD round-trip", "[remote_layout]") {
    ObjectId tip = id_of(7);
    std::string ref = encode_branch_ref(tip);
    CHECK(ref == "dvol ref 1\ncommit " + tip.hex() + "\n");
    auto back = decode_branch_ref(ref);
    REQUIRE(back.ok());
    CHECK(*back == std::optional<ObjectId>(tip));

    std::string tomb = encode_branch_ref(std::nullopt);
    CHECK(tomb == "dvol ref 1\ndeleted\n");
    auto gone = decode_branch_ref(tomb);
    REQUIRE(gone.ok());
    CHECK_FALSE(gone->has_value());

    for (const std::string& b : std::vector<std::string>{"master", "a", "feature-1.2_x", std::string(128, 'b')}) {
        INFO(b);
        auto h = decode_head(encode_head(b));
        REQUIRE(h.ok());
        CHECK(*h == b);
    }
}

TEST_CASE("malformed branch refs and HEADs are corrupt", "[remote_layout]") {
    std::string hex = id_of(1).hex();
    for (const std::string& bad : std::vector<std::string>{"", "dvol ref 1\n", "dvol ref 2\ncommit " + hex + "\n", "commit " + hex + "\n",
                            "dvol ref 1\ncommit " + hex, "dvol ref 1\ncommit " + hex + "\n\n", "dvol ref 1\ncommit " + hex.substr(1) + "\n",
                            "dvol ref 1\ncommit " + hex + "0\n", "dvol ref 1\ncommit " + hex.substr(1) + "g\n",
                            "dvol ref 1\ncommit  " + hex + "\n", std::string("dvol ref 1\ndeleted"), std::string("dvol ref 1\ndeleted\nx"),
                            "dvol ref 1\nbranch master\n"}) {
        INFO(bad);
        auto r = decode_branch_ref(bad);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::corrupt);
    }
    for (const std::string& bad : std::vector<std::string>{"", "dvol ref 1\n", "dvol ref 1\nbranch \n",
                            std::string("dvol ref 1\nbranch master"), std::string("dvol ref 2\nbranch master\n"),
                            std::string("branch master\n"), "dvol ref 1\nbranch " + std::string(129, 'b') + "\n",
                            "dvol ref 1\ncommit " + hex + "\n"}) {
        INFO(bad);
        auto r = decode_head(bad);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::corrupt);
    }
}

TEST_CASE("pack index round-trip, entries sorted by id", "[remote_layout]") {
    PackIndexFile index = sample_index();
    std::swap(index.entries[0], index.entries[2]);  // encode sorts them
    auto encoded = encode_pack_index(index);
    CHECK(encoded.size() == kHeader + 3 * kEntry + 32);
    CHECK(std::memcmp(encoded.data(), "DVOLIDX1", 8) == 0);
    auto back = decode_pack_index(encoded);
    REQUIRE(back.ok());
    CHECK(back->kind == PackKind::data);
    CHECK(back->pack_size == index.pack_size);
    REQUIRE(back->entries.size() == 3);
    for (size_t i = 1; i < 3; ++i) CHECK(back->entries[i - 1].id < back->entries[i].id);
    for (const auto& want : sample_index().entries) {
        auto it = std::find_if(back->entries.begin(), back->entries.end(), [&](const IndexEntry& e) { return e.id == want.id; });
        REQUIRE(it != back->entries.end());
        CHECK(it->offset == want.offset);
        CHECK(it->stored_len == want.stored_len);
        CHECK(it->raw_len == want.raw_len);
    }

    PackIndexFile meta;
    meta.kind = PackKind::metadata;
    meta.pack_size = kPackHeaderSize;
    auto empty = decode_pack_index(encode_pack_index(meta));
    REQUIRE(empty.ok());
    CHECK(empty->kind == PackKind::metadata);
    CHECK(empty->entries.empty());
}

TEST_CASE("a truncated or extended pack index is corrupt", "[remote_layout]") {
    auto encoded = encode_pack_index(sample_index());
    for (size_t keep : {size_t{0}, size_t{8}, kHeader, kHeader + 31, kHeader + 32, encoded.size() - kEntry, encoded.size() - 1}) {
        INFO("first " << keep << " bytes");
        auto r = decode_pack_index(std::span(encoded).first(keep));
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::corrupt);
    }
    auto longer = encoded;
    longer.push_back(std::byte{0});
    CHECK(decode_pack_index(longer).error().code == Errc::corrupt);
    // A count that claims more entries than the bytes hold (resealed: the length is what fails).
    auto more = encoded;
    put_le(more.data() + 24, 4, 4);
    reseal(more);
    check_rejected(more, "does not match its count");
    put_le(more.data() + 24, 0xffffffff, 4);
    reseal(more);
    check_rejected(more, "does not match its count");
}

TEST_CASE("a pack index whose checksum differs is corrupt", "[remote_layout]") {
    auto encoded = encode_pack_index(sample_index());
    for (size_t at : {size_t{16}, kHeader + 5, kHeader + kEntry + 40, encoded.size() - 1}) {
        INFO("byte " << at << " flipped");
        auto bad = encoded;
        bad[at] ^= std::byte{0x10};
        check_rejected(bad, "checksum mismatch");
    }
}

TEST_CASE("a pack index with a bad magic, version or kind is refused", "[remote_layout]") {
    auto encoded = encode_pack_index(sample_index());
    auto magic = encoded;
    magic[0] = std::byte{'X'};
    reseal(magic);
    check_rejected(magic, "bad magic");
    auto version = encoded;
    put_le(version.data() + 8, 2, 4);
    reseal(version);
    auto v = decode_pack_index(version);
    REQUIRE_FALSE(v.ok());
    CHECK(v.error().code == Errc::unsupported);
    for (auto [at, value] : {std::pair<size_t, uint8_t>{12, 2}, {13, 1}, {15, 1}}) {
        auto kind = encoded;
        kind[at] = std::byte{value};
        reseal(kind);
        check_rejected(kind, "unknown kind");
    }
}

TEST_CASE("a pack index with unsorted or duplicate entries is corrupt", "[remote_layout]") {
    auto encoded = encode_pack_index(sample_index());
    // Swap the first two entries.
    auto swapped = encoded;
    std::swap_ranges(swapped.begin() + kHeader, swapped.begin() + kHeader + kEntry, swapped.begin() + kHeader + kEntry);
    reseal(swapped);
    check_rejected(swapped, "not sorted");
    // The second entry's id equal to the first's.
    auto dup = encoded;
    std::memcpy(dup.data() + kHeader + kEntry, dup.data() + kHeader, 32);
    reseal(dup);
    check_rejected(dup, "not sorted");
}

TEST_CASE("a pack index entry outside its pack is corrupt", "[remote_layout]") {
    PackIndexFile index = sample_index();
    const IndexEntry last = index.entries[2];  // the record that ends the pack
    auto encoded = encode_pack_index(index);
    auto with = [&](uint64_t offset, uint64_t pack_size) {
        auto bad = encoded;
        put_le(entry_for(bad, last.id) + 32, offset, 8);
        put_le(bad.data() + 16, pack_size, 8);
        reseal(bad);
        return bad;
    };
    // The unchanged index is accepted: the last record ends exactly at the end of the pack.
    REQUIRE(decode_pack_index(with(last.offset, index.pack_size)).ok());
    check_rejected(with(last.offset, index.pack_size - 1), "outside the pack");
    check_rejected(with(last.offset + 1, index.pack_size), "outside the pack");
    check_rejected(with(0, index.pack_size), "outside the pack");                     // inside the pack header
    check_rejected(with(kPackHeaderSize - 1, index.pack_size), "outside the pack");
    check_rejected(with(index.pack_size, index.pack_size), "outside the pack");
    check_rejected(with(uint64_t{1} << 50, index.pack_size), "outside the pack");
    // Offsets so large that offset + length wraps around to a small number.
    check_rejected(with(std::numeric_limits<uint64_t>::max(), index.pack_size), "outside the pack");
    check_rejected(with(std::numeric_limits<uint64_t>::max() - kRecordHeaderSize - last.stored_len + 100, index.pack_size),
                   "outside the pack");
    check_rejected(with(last.offset, uint64_t{1} << 41), "impossible pack size");
}

TEST_CASE("a pack index entry with an impossible size is corrupt", "[remote_layout]") {
    PackIndexFile index = sample_index();
    index.pack_size = uint64_t{1} << 30;  // room for any record
    auto encoded = encode_pack_index(index);
    const ObjectId first = index.entries[0].id;
    auto with = [&](uint32_t stored, uint32_t raw) {
        auto bad = encoded;
        std::byte* e = entry_for(bad, first);
        put_le(e + 40, stored, 4);
        put_le(e + 44, raw, 4);
        reseal(bad);
        return bad;
    };
    REQUIRE(decode_pack_index(with(kMaxStoredSize, kMaxObjectSize)).ok());
    check_rejected(with(100, kMaxObjectSize + 1), "impossible size");
    check_rejected(with(kMaxStoredSize + 1, 100), "impossible size");
    check_rejected(with(0xffffffff, 0xffffffff), "impossible size");
}
