#include "store/codec.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <new>

#include <fmt/format.h>

#include "base/big_buffer.h"

namespace dvol {

struct Compressor::Ctx {
    ZSTD_CCtx* cctx = nullptr;
    ZSTD_CCtx* strong = nullptr;  // level 3, for what the fast strategy compresses poorly
    // zstd writes here, then the frame is copied to `out`: a vector resized up to the bound
    // for every call would zero-fill it each time, and a caller's buffer would keep the full
    // bound's capacity. Small bounds in a vector; from 1 MiB on (large chunks) a BigBuffer,
    // grown by doubling: on huge pages, a few page faults instead of one per 4 KiB.
    std::vector<std::byte> small;
    BigBuffer big;
    std::span<std::byte> scratch;
    void reserve(size_t bound) {
        if (scratch.size() >= bound) return;
        if (bound < (size_t{1} << 20)) {
            small.resize(bound);
            scratch = small;
        } else {
            big = BigBuffer(std::max(bound, 2 * big.size()));
            scratch = big.span();
        }
    }
    ~Ctx() {
        ZSTD_freeCCtx(cctx);
        ZSTD_freeCCtx(strong);
    }
};

namespace {

ZSTD_CCtx* new_cctx() {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    if (!c) throw std::bad_alloc();
    return c;
}

}  // namespace

Compressor::Compressor() : ctx_(std::make_unique<Ctx>()) {
    ctx_->cctx = new_cctx();
    // zstd's fast strategy (that of level 1) with level 3's 5-byte minimum match and window,
    // and a 64 Ki-entry hash table (256 KiB, within a core's L2), for data it compresses well
    // (database pages: 2% smaller than level 3 at 20% less CPU); level 3 for the rest (text:
    // the fast strategy's frames are up to 27% larger there). See compress() and
    // docs/DECISIONS.md.
    ZSTD_CCtx_setParameter(ctx_->cctx, ZSTD_c_strategy, ZSTD_fast);
    ZSTD_CCtx_setParameter(ctx_->cctx, ZSTD_c_windowLog, 21);
    ZSTD_CCtx_setParameter(ctx_->cctx, ZSTD_c_hashLog, 16);
    ZSTD_CCtx_setParameter(ctx_->cctx, ZSTD_c_minMatch, 5);
    ctx_->strong = new_cctx();
    ZSTD_CCtx_setParameter(ctx_->strong, ZSTD_c_compressionLevel, 3);
}

Compressor::Compressor(int level) : ctx_(std::make_unique<Ctx>()) {
    ctx_->cctx = new_cctx();
    ZSTD_CCtx_setParameter(ctx_->cctx, ZSTD_c_compressionLevel, level);
}

Compressor::~Compressor() = default;

ZSTD_CCtx* Compressor::pick(std::span<const std::byte> in) {
    if (!ctx_->strong) return ctx_->cctx;  // a numbered level
    // The first 64 KiB, compressed the fast way, tell which way to take: at 5x or better the
    // fast strategy (the PostgreSQL set's pages: 19x), below it level 3 (generated text:
    // 3.9x). Objects no larger than the sample take the fast strategy: sampling would double
    // their cost, and level 3 did no better on the 100,000 small files.
    constexpr size_t kSample = 64 * 1024;
    if (in.size() <= kSample) return ctx_->cctx;
    auto scratch = ctx_->scratch;
    size_t n = ZSTD_compress2(ctx_->cctx, scratch.data(), scratch.size(), in.data(), kSample);
    return !ZSTD_isError(n) && n * 5 <= kSample ? ctx_->cctx : ctx_->strong;
}

Codec Compressor::compress(std::span<const std::byte> in, std::vector<std::byte>& out) {
    Codec codec = compress_or_keep(in, out);
    if (codec == Codec::raw) out.assign(in.begin(), in.end());
    return codec;
}

Codec Compressor::compress_or_keep(std::span<const std::byte> in, std::vector<std::byte>& out) {
    ctx_->reserve(ZSTD_compressBound(in.size()));
    auto scratch = ctx_->scratch;
    size_t n = ZSTD_compress2(pick(in), scratch.data(), scratch.size(), in.data(), in.size());
    if (!ZSTD_isError(n) && n < in.size() - in.size() / 32) {
        // Grown by doubling, not to each larger frame exactly (assign's way): a caller that
        // keeps `out` for its next chunks does not take new memory (page faults) for each.
        if (out.capacity() < n) {
            out.clear();
            out.reserve(std::max(n, 2 * out.capacity()));
        }
        out.assign(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(n));
        return Codec::zstd;
    }
    out.clear();
    return Codec::raw;
}

Status decompress(Codec codec, std::span<const std::byte> in, size_t raw_size, std::vector<std::byte>& out) {
    if (codec == Codec::raw) {
        if (in.size() != raw_size) return make_error(Errc::corrupt, "raw record length does not match its header");
        out.assign(in.begin(), in.end());
        return {};
    }
    if (codec != Codec::zstd) return make_error(Errc::corrupt, fmt::format("unknown codec {}", static_cast<int>(codec)));
    unsigned long long declared = ZSTD_getFrameContentSize(in.data(), in.size());
    if (declared != raw_size) return make_error(Errc::corrupt, "compressed frame size does not match its header");
    // The frame must span the input exactly before anything is allocated for it: a bare header
    // claiming a huge size must not cost that much memory.
    size_t frame = ZSTD_findFrameCompressedSize(in.data(), in.size());
    if (ZSTD_isError(frame) || frame != in.size()) return make_error(Errc::corrupt, "truncated or malformed compressed frame");
    // Grown at once, on huge pages (see big_buffer.h), and by doubling as resize would; what
    // it held is not copied over (it is all replaced).
    if (out.capacity() < raw_size) {
        size_t grown = std::max(raw_size, 2 * out.capacity());
        out.clear();
        reserve_huge(out, grown);
    }
    out.resize(raw_size);
    // One decompression context per thread, kept: ZSTD_decompress makes and frees one per
    // call, which cost a restore of 100,000 small files a fifth of its CPU time.
    struct Dctx {
        ZSTD_DCtx* ctx = ZSTD_createDCtx();
        ~Dctx() { ZSTD_freeDCtx(ctx); }
    };
    thread_local Dctx dctx;
    if (!dctx.ctx) throw std::bad_alloc();
    size_t n = ZSTD_decompressDCtx(dctx.ctx, out.data(), out.size(), in.data(), in.size());
    if (ZSTD_isError(n) || n != raw_size)
        return make_error(Errc::corrupt, fmt::format("cannot decompress: {}", ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short output"));
    return {};
}

}  // namespace dvol
