#include "store/hash.h"

#include <openssl/evp.h>

#include <cstring>
#include <stdexcept>

namespace dvol {

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
