// ObjectId: the SHA-256 of an object's plain bytes (chunks, trees, commits alike). The same
// bytes have the same id on every machine, which push and pull rely on.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace dvol {

struct ObjectId {
    static constexpr size_t size = 32;
    std::array<uint8_t, size> bytes{};

    std::string hex() const;
    // Parses exactly 64 lower- or upper-case hex digits.
    static std::optional<ObjectId> from_hex(std::string_view hex);
    static ObjectId from_bytes(std::span<const std::byte> b);  // b.size() must be 32

    std::span<const std::byte> as_span() const { return std::as_bytes(std::span(bytes)); }
    auto operator<=>(const ObjectId&) const = default;
};

struct ObjectIdHash {
    size_t operator()(const ObjectId& id) const noexcept {
        size_t h;
        static_assert(sizeof(h) <= ObjectId::size);
        __builtin_memcpy(&h, id.bytes.data(), sizeof(h));
        return h;
    }
};

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
