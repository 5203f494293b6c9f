// SHA-256, the hash that names every object (base/object_id.h).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "base/object_id.h"

namespace dvol {

// Streaming SHA-256 (OpenSSL; uses the CPU's SHA extensions where present).
class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    void update(std::span<const std::byte> data);
    ObjectId finish();

private:
    struct Ctx;
    std::unique_ptr<Ctx> ctx_;
};

ObjectId sha256(std::span<const std::byte> data);
inline ObjectId sha256(std::string_view s) {
    return sha256(std::span(reinterpret_cast<const std::byte*>(s.data()), s.size()));
}

}  // namespace dvol
