#include "store/pack_format.h"

#include <cstring>
#include <string_view>

#include "store/hash.h"

namespace dvol {

namespace {

constexpr std::string_view kPackMagic = "DVOLPACK";
constexpr std::string_view kRecordMagic = "DVR1";
constexpr uint32_t kPackVersion = 1;

void put_u32(std::byte* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}

uint32_t get_u32(const std::byte* p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
    return v;
}

}  // namespace

std::array<std::byte, kPackHeaderSize> pack_header() {
    std::array<std::byte, kPackHeaderSize> h{};
    std::memcpy(h.data(), kPackMagic.data(), kPackMagic.size());
    put_u32(h.data() + 8, kPackVersion);
    return h;
}

bool valid_pack_header(std::span<const std::byte> h) {
    return h.size() >= kPackHeaderSize && std::memcmp(h.data(), kPackMagic.data(), kPackMagic.size()) == 0 &&
           get_u32(h.data() + 8) == kPackVersion && get_u32(h.data() + 12) == 0;
}

void encode_record_header(std::byte* h, const ObjectId& id, Codec codec, uint32_t raw_len, uint32_t stored_len) {
    std::memcpy(h, kRecordMagic.data(), 4);
    h[4] = static_cast<std::byte>(codec);
    h[5] = h[6] = h[7] = std::byte{0};
    put_u32(h + 8, raw_len);
    put_u32(h + 12, stored_len);
    std::memcpy(h + 16, id.bytes.data(), ObjectId::size);
}

const char* record_header_problem(const std::byte* h, const ObjectId& id, uint32_t raw_len, uint32_t stored_len) {
    if (std::memcmp(h, kRecordMagic.data(), 4) != 0) return "bad record header";
    if (get_u32(h + 8) != raw_len || get_u32(h + 12) != stored_len) return "record lengths differ from the index";
    if (std::memcmp(h + 16, id.bytes.data(), ObjectId::size) != 0) return "record names another object";
    return nullptr;
}

Status decode_record(std::span<const std::byte> record, const ObjectId& id, uint32_t raw_len, std::vector<std::byte>& out,
                     bool check_hash) {
    if (record.size() < kRecordHeaderSize) return make_error(Errc::corrupt, "truncated record");
    DVOL_CHECK(decompress(record_codec(record.data()), record.subspan(kRecordHeaderSize), raw_len, out));
    if (check_hash && sha256(out) != id) return make_error(Errc::corrupt, "content does not match its hash");
    return {};
}

}  // namespace dvol
