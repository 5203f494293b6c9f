#include "base/object_id.h"

namespace dvol {

namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::string ObjectId::hex() const {
    static const char digits[] = "0123456789abcdef";
    std::string s(size * 2, '0');
    for (size_t i = 0; i < size; ++i) {
        s[2 * i] = digits[bytes[i] >> 4];
        s[2 * i + 1] = digits[bytes[i] & 15];
    }
    return s;
}

std::optional<ObjectId> ObjectId::from_hex(std::string_view hex) {
    if (hex.size() != size * 2) return std::nullopt;
    ObjectId id;
    for (size_t i = 0; i < size; ++i) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        id.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    return id;
}

ObjectId ObjectId::from_bytes(std::span<const std::byte> b) {
    ObjectId id;
    std::memcpy(id.bytes.data(), b.data(), size);
    return id;
}

}  // namespace dvol
