// decompress on untrusted records. Input: a little-endian u32 raw size (capped, as the object
// store caps it from the index), then the stored payload. decompress must never crash, and on
// success must produce exactly raw_size bytes. The payload is also compressed and decompressed
// again, which must give it back unchanged.
#include <algorithm>

#include "fuzz_common.h"
#include "store/codec.h"

namespace {
// The store allows 256 MiB objects; the cap keeps each run inside -rss_limit_mb.
constexpr size_t kMaxRawSize = 4u << 20;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 4) return 0;
    uint32_t declared = static_cast<uint32_t>(data[0]) | static_cast<uint32_t>(data[1]) << 8 |
                        static_cast<uint32_t>(data[2]) << 16 | static_cast<uint32_t>(data[3]) << 24;
    size_t raw_size = std::min<size_t>(declared, kMaxRawSize);
    auto payload = dvol_fuzz::as_bytes(data + 4, size - 4);

    std::vector<std::byte> out;
    if (dvol::decompress(dvol::Codec::zstd, payload, raw_size, out))
        dvol_fuzz::check(out.size() == raw_size, "fuzz_zstd", "decompress succeeded with the wrong size");
    if (dvol::decompress(dvol::Codec::raw, payload, raw_size, out))
        dvol_fuzz::check(dvol_fuzz::same_bytes(payload, out), "fuzz_zstd", "raw decompress changed the bytes");
    // Unknown codec bytes come straight from a record header.
    dvol_fuzz::check(!dvol::decompress(static_cast<dvol::Codec>(data[0] | 2), payload, raw_size, out), "fuzz_zstd",
                     "decompress accepted an unknown codec");

    static dvol::Compressor compressor;
    std::vector<std::byte> packed, back;
    dvol::Codec codec = compressor.compress(payload, packed);
    dvol_fuzz::check(static_cast<bool>(dvol::decompress(codec, packed, payload.size(), back)), "fuzz_zstd",
                     "decompress rejected what Compressor produced");
    dvol_fuzz::check(dvol_fuzz::same_bytes(payload, back), "fuzz_zstd", "compress/decompress changed the bytes");
    return 0;
}
