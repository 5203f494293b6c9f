#include "store/hash.h"

#include <openssl/evp.h>

#include <cstring>
#include <stdexcept>

namespace dvol {

std::string ObjectId::hex() const {
    static const char digits[] = "0123456789abcdef";
    std::string s(size * 2, '0');
    for (size_t i = 0; i < size; ++i) {
        s[2 * i] = digits[bytes[i] >> 4];
        s[2 * i + 1] = digits[bytes[i] & 15];
    }
    return s;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
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

struct Sha256::Ctx {
    EVP_MD_CTX* md = nullptr;
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
    ctx_->md = EVP_MD_CTX_new();
    if (!ctx_->md || EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) != 1)
        throw std::bad_alloc();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_->md); }

void Sha256::update(std::span<const std::byte> data) { EVP_DigestUpdate(ctx_->md, data.data(), data.size()); }

ObjectId Sha256::finish() {
    ObjectId id;
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx_->md, id.bytes.data(), &len);
    EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr);
    return id;
}

ObjectId sha256(std::span<const std::byte> data) {
    ObjectId id;
    unsigned len = 0;
    EVP_Digest(data.data(), data.size(), id.bytes.data(), &len, EVP_sha256(), nullptr);
    return id;
}

}  // namespace dvol
