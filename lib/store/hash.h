// SHA-256, the hash that names every object (base/object_id.h), and CRC-32C, the checksum the
// pack index keeps of each stored record (docs/FORMAT.md, "SQLite").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "base/object_id.h"

namespace dvol {

// Streaming SHA-256 (OpenSSL's, loaded when first needed; the CPU's SHA extensions where
// present).
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

// CRC-32C (Castagnoli, reflected, as iSCSI and ext4 use it): `crc32c(data)` of a whole buffer,
// or continued from the value of the bytes before it. The CPU's crc32 instruction where it has
// one (SSE 4.2), a table otherwise.
uint32_t crc32c(std::span<const std::byte> data, uint32_t crc = 0);
// The same with a table, a byte at a time, whatever the CPU (what crc32c does without SSE 4.2;
// the tests compare the two).
uint32_t crc32c_portable(std::span<const std::byte> data, uint32_t crc = 0);

}  // namespace dvol
