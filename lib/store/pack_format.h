// The pack and record formats (docs/FORMAT.md, "Pack files"): what is in a pack's bytes,
// independent of where the pack lies (the local store, a remote, a chunk cache).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"
#include "store/codec.h"

namespace dvol {

inline constexpr size_t kPackHeaderSize = 16;
inline constexpr size_t kRecordHeaderSize = 48;
inline constexpr uint32_t kMaxObjectSize = 256u << 20;
// A stored payload may exceed its plain size a little (zstd's worst case on random bytes is
// stored raw instead, but a damaged index must still be bounded).
inline constexpr uint32_t kMaxStoredSize = kMaxObjectSize + kMaxObjectSize / 8;
inline constexpr uint64_t kMaxPackSize = 256u << 20;  // a pack is sealed once it grows past this

// The header every pack file starts with ("DVOLPACK", version 1).
std::array<std::byte, kPackHeaderSize> pack_header();
// Whether `h` (kPackHeaderSize bytes) is a pack header of a version this dvol reads.
bool valid_pack_header(std::span<const std::byte> h);

// Writes the header of the record of object `id` into h[0, kRecordHeaderSize).
void encode_record_header(std::byte* h, const ObjectId& id, Codec codec, uint32_t raw_len, uint32_t stored_len);
// What is wrong with the record header `h` read for object `id` whose index entry gives these
// lengths, or null when nothing is.
const char* record_header_problem(const std::byte* h, const ObjectId& id, uint32_t raw_len, uint32_t stored_len);
// The codec byte of a record header.
inline Codec record_codec(const std::byte* h) { return static_cast<Codec>(h[4]); }

// Decodes the whole record `record` (header and payload, header already checked) of an object
// of `raw_len` plain bytes into `out`; with `check_hash`, verifies that the bytes hash to `id`.
// Errors are `corrupt`, with a message saying only what is wrong (the caller names the object).
Status decode_record(std::span<const std::byte> record, const ObjectId& id, uint32_t raw_len, std::vector<std::byte>& out,
                     bool check_hash);

}  // namespace dvol
