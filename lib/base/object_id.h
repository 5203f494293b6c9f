// ObjectId: the name of an object (a file chunk, a tree, an extent list, a commit): the SHA-256
// of its plain bytes (store/hash.h computes it). The same bytes have the same id on every
// machine, which push and pull rely on. A leaf type: the formats (object/), the store and the
// refs all use it without depending on each other.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>

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
        std::memcpy(&h, id.bytes.data(), sizeof(h));
        return h;
    }
};

using ObjectIdSet = std::unordered_set<ObjectId, ObjectIdHash>;

}  // namespace dvol
