#include "store/chunker.h"

#include <algorithm>
#include <array>
#include <bit>

namespace dvol {

namespace {

// The gear table is part of the chunk format: fixed, generated from a constant seed by
// splitmix64, so no 2 KiB table of magic numbers sits in the source.
constexpr std::array<uint64_t, 256> make_gear() {
    std::array<uint64_t, 256> t{};
    uint64_t x = 0x64766f6c2d636463ULL;  // "dvol-cdc"
    for (auto& v : t) {
        x += 0x9e3779b97f4a7c15ULL;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        v = z ^ (z >> 31);
    }
    return t;
}

constexpr auto gear = make_gear();

// A mask of `bits` ones in the top bits: with a left-shifting gear hash the top bits mix the
// most recent 64 bytes.
constexpr uint64_t top_mask(int bits) { return bits <= 0 ? 0 : ~uint64_t{0} << (64 - bits); }

// Scans [i, end) for the first position whose hash has none of `mask`'s bits set; true with
// `cut` just past it. Two bytes per step: the hash after the second byte is computed from
// the one before the first ((fp << 2) + (g[a] << 1) + g[b]), so the chain of dependent
// operations is half as long, while every position is still checked: the cuts are those of
// a byte-at-a-time loop.
bool scan_for_cut(const uint8_t* src, size_t& pos, size_t end, uint64_t& hash, uint64_t mask, size_t& cut) {
    // Locals, not the references: stores through them (which may alias src) would put a
    // store-to-load round trip into every step's dependency chain.
    size_t i = pos;
    uint64_t fp = hash;
    bool found = false;
    for (; i + 2 <= end; i += 2) {
        uint64_t a = gear[src[i]], b = gear[src[i + 1]];
        uint64_t first = (fp << 1) + a;
        fp = (fp << 2) + ((a << 1) + b);
        if (!(first & mask)) {
            cut = i + 1;
            found = true;
            break;
        }
        if (!(fp & mask)) {
            cut = i + 2;
            found = true;
            break;
        }
    }
    for (; !found && i < end; ++i) {
        fp = (fp << 1) + gear[src[i]];
        if (!(fp & mask)) {
            cut = i + 1;
            found = true;
        }
    }
    pos = i;
    hash = fp;
    return found;
}

// The hash after bytes [from, to), started from zero. A byte's gear value is shifted out after
// 64 steps, so with 63 bytes or more this differs from the hash of any longer run ending at
// `to` in the top bit only, which the next step shifts out: the hash after byte `to`, the
// first one tested, is exact.
uint64_t hash_from(const uint8_t* src, size_t from, size_t to) {
    uint64_t fp = 0;
    for (size_t i = from; i < to; ++i) fp = (fp << 1) + gear[src[i]];
    return fp;
}

constexpr int kLanes = 4;

// The first cut in [from, to) with the hash `fp` of the bytes before `from`: the strict mask
// before `normal`, the loose one from there; 0 when there is none.
size_t exact_scan(const uint8_t* src, size_t from, size_t to, uint64_t fp, size_t normal, uint64_t strict, uint64_t loose) {
    size_t i = from, cut = 0;
    if (i < normal && scan_for_cut(src, i, std::min(to, normal), fp, strict, cut)) return cut;
    if (scan_for_cut(src, i, to, fp, loose, cut)) return cut;
    return 0;
}

// Scans four stripes of `stripe` bytes from `begin` side by side, one hash per stripe, so four
// dependency chains overlap (one chain alone is latency-bound: docs/DECISIONS.md, "Four
// stripes side by side"; figures in bench/RESULTS.md).
// Each stripe's hash starts 63 bytes before it, which gives the value the one running hash
// has there; the first stripe of a chunk starts from zero at the minimum size instead
// (`from_zero`), as the format says. The side-by-side loop only notes which stripes have a
// hit under the loose mask (every strict hit is one too); those are scanned again, in order,
// exactly. Returns the first cut, or 0 when the block has none.
size_t scan_block(const uint8_t* src, size_t begin, size_t stripe, bool from_zero, size_t normal, uint64_t strict,
                  uint64_t loose) {
    const uint8_t* p[kLanes];
    uint64_t fp[kLanes], start_fp[kLanes];
    for (int l = 0; l < kLanes; ++l) {
        size_t start = begin + static_cast<size_t>(l) * stripe;
        p[l] = src + start;
        fp[l] = start_fp[l] = l == 0 && from_zero ? 0 : hash_from(src, start - 63, start);
    }
    unsigned hits = 0;
    for (size_t k = 0; k + 2 <= stripe; k += 2) {
#pragma GCC unroll 4
        for (int l = 0; l < kLanes; ++l) {
            uint64_t a = gear[p[l][k]], b = gear[p[l][k + 1]];
            uint64_t first = (fp[l] << 1) + a;
            fp[l] = (fp[l] << 2) + ((a << 1) + b);
            if (!(first & loose) || !(fp[l] & loose)) [[unlikely]]
                hits |= 1u << l;
        }
    }
    for (int l = 0; l < kLanes; ++l) {
        if (!(hits & (1u << l))) continue;
        size_t start = static_cast<size_t>(p[l] - src);
        if (size_t cut = exact_scan(src, start, start + stripe, start_fp[l], normal, strict, loose)) return cut;
    }
    return 0;
}

}  // namespace

Chunker::Chunker(ChunkerParams p) : p_(p) {
    int bits = std::countr_zero(p_.avg_size);
    // One bit either side of the average, not FastCDC's two: with two, most cuts fall past the
    // average under the looser mask, and after a change a new chain of chunks reaches those
    // old cuts while still under the stricter one, so it takes many chunks to fall back in
    // step (docs/DECISIONS.md, "Normalization by one bit, not two"; figures in
    // bench/RESULTS.md).
    mask_small_ = top_mask(bits + 1);
    mask_large_ = top_mask(bits - 1);
    // Stripes of 16 KiB for 1 MiB chunks: a block of four scanned past the cut costs ~3% more
    // hashing on average; the 63-byte start of each stripe, 0.4%. Even, and at least 64.
    stripe_ = std::max<size_t>(64, p_.avg_size / 64) & ~size_t{1};
}

size_t Chunker::next_cut(std::span<const std::byte> data) const {
    size_t n = data.size();
    if (n <= p_.min_size) return n;
    n = std::min(n, p_.max_size);
    size_t normal = std::min(n, p_.avg_size);
    const auto* src = reinterpret_cast<const uint8_t*>(data.data());
    size_t i = p_.min_size, block = kLanes * stripe_;
    for (; n - i >= block; i += block)
        if (size_t cut = scan_block(src, i, stripe_, i == p_.min_size, normal, mask_small_, mask_large_)) return cut;
    uint64_t fp = i == p_.min_size ? 0 : hash_from(src, i - 63, i);
    size_t cut = exact_scan(src, i, n, fp, normal, mask_small_, mask_large_);
    return cut ? cut : n;
}

bool Chunker::cuts_at(std::span<const std::byte> data, size_t len) const {
    if (len <= p_.min_size || len > p_.max_size || len > data.size()) return false;
    if (len == p_.max_size) return true;
    // The hash after byte len - 1, started from zero at the minimum size as next_cut's is;
    // 64 bytes make it exact (hash_from). Cuts up to the average size meet the stricter mask.
    size_t from = len - p_.min_size > 64 ? len - 64 : p_.min_size;
    uint64_t fp = hash_from(reinterpret_cast<const uint8_t*>(data.data()), from, len);
    return !(fp & (len <= p_.avg_size ? mask_small_ : mask_large_));
}

}  // namespace dvol
