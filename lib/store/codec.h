// Chunk compression: zstd when it pays, raw otherwise. The codec byte is stored with each
// record so a reader knows which it is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/error.h"

struct ZSTD_CCtx_s;

namespace dvol {

enum class Codec : uint8_t { raw = 0, zstd = 1 };

// Not thread-safe: one per thread.
class Compressor {
public:
    // dvol's parameters (see codec.cpp); the chunk format does not depend on them.
    Compressor();
    // One of zstd's numbered levels instead.
    explicit Compressor(int level);
    ~Compressor();
    Compressor(const Compressor&) = delete;
    Compressor& operator=(const Compressor&) = delete;

    // Compresses `in` into `out` (replacing its contents) and returns the codec used; returns
    // Codec::raw, with `out` a copy of the input, when zstd saves less than 1/32 of the size.
    Codec compress(std::span<const std::byte> in, std::vector<std::byte>& out);
    // The same, except that data left raw is not copied: `out` is emptied and the record's
    // payload is `in` itself (a large incompressible chunk is not copied into new memory).
    Codec compress_or_keep(std::span<const std::byte> in, std::vector<std::byte>& out);

private:
    struct Ctx;
    ::ZSTD_CCtx_s* pick(std::span<const std::byte> in);  // the context to compress `in` with
    std::unique_ptr<Ctx> ctx_;
};

// Decodes `in` into `out`, which must end up exactly `raw_size` bytes long; anything else is a
// `corrupt` error.
Status decompress(Codec codec, std::span<const std::byte> in, size_t raw_size, std::vector<std::byte>& out);

}  // namespace dvol
