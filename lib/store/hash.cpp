#include "store/hash.h"

// OpenSSL's SHA-256 functions, not EVP: EVP's first digest in a process reads openssl.cnf and
// sets up the providers (2-3 ms of every dvol process that hashes, measured), and each EVP
// digest fetches its method; these run the same code (the SHA extensions where the CPU has
// them) with none of that. OpenSSL 3 deprecates them, and keeps them through 3.x.
//
// libcrypto is loaded with dlopen by the first hash, not linked: linked, its 4,000 symbol
// relocations (all bound at start) cost every dvol process about 3 ms before main, hashing or
// not (list, log, branch, --help do not).
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/dynlib.h"
#include "dvol_config.h"

namespace dvol {

namespace {

struct Crypto {
    int (*init)(SHA256_CTX*) = nullptr;
    int (*update)(SHA256_CTX*, const void*, size_t) = nullptr;
    int (*final)(unsigned char*, SHA256_CTX*) = nullptr;

    Crypto() {
        SharedLibrary lib(DVOL_LIBCRYPTO_SONAME);
        lib.take(init, "SHA256_Init");
        lib.take(update, "SHA256_Update");
        lib.take(final, "SHA256_Final");
        if (!lib.loaded() || !lib.missing().empty()) {
            // As when a linked library is missing, the program cannot run: every object is
            // named by this hash.
            std::fprintf(stderr, "dvol: cannot use OpenSSL's %s, which names every object: %s\n", DVOL_LIBCRYPTO_SONAME,
                         lib.loaded() ? ("no " + lib.missing()).c_str() : lib.error().c_str());
            std::_Exit(3);
        }
    }
};

// Loaded once, by whichever thread comes first; the others wait (a function-local static).
// Never destroyed: a hash may run while the process exits.
const Crypto& crypto() {
    static const Crypto* c = new Crypto();
    return *c;
}

}  // namespace

struct Sha256::Ctx {
    SHA256_CTX sha;
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) { crypto().init(&ctx_->sha); }

Sha256::~Sha256() = default;

void Sha256::update(std::span<const std::byte> data) { crypto().update(&ctx_->sha, data.data(), data.size()); }

ObjectId Sha256::finish() {
    const Crypto& c = crypto();
    ObjectId id;
    c.final(id.bytes.data(), &ctx_->sha);
    c.init(&ctx_->sha);
    return id;
}

ObjectId sha256(std::span<const std::byte> data) {
    const Crypto& c = crypto();
    SHA256_CTX sha;
    c.init(&sha);
    c.update(&sha, data.data(), data.size());
    ObjectId id;
    c.final(id.bytes.data(), &sha);
    return id;
}

namespace {

constexpr uint32_t kCastagnoli = 0x82f63b78;  // the polynomial, reflected

constexpr std::array<uint32_t, 256> crc_table() {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1) ? kCastagnoli : 0);
        t[i] = c;
    }
    return t;
}
constexpr auto kCrcTable = crc_table();

uint32_t crc32c_table(const unsigned char* p, size_t n, uint32_t c) {
    while (n--) c = kCrcTable[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

// The register after `n` zero bytes, from register `x`, as a linear map over GF(2): four
// tables of the images of each byte of x. Three streams of one buffer are hashed at once below
// (the crc32 instruction takes 3 cycles, one can start every cycle) and joined with it:
// reg(A || B, x) = shift_|B|(reg(A, x)) ^ reg(B, 0).
struct CrcShift {
    uint32_t t[4][256];
    explicit CrcShift(size_t n) {
        uint32_t col[32];
        for (int i = 0; i < 32; ++i) {
            uint32_t x = 1u << i;
            for (size_t k = 0; k < n; ++k) x = kCrcTable[x & 0xff] ^ (x >> 8);
            col[i] = x;
        }
        for (int k = 0; k < 4; ++k)
            for (uint32_t b = 0; b < 256; ++b) {
                uint32_t v = 0;
                for (int i = 0; i < 8; ++i)
                    if ((b >> i) & 1) v ^= col[8 * k + i];
                t[k][b] = v;
            }
    }
    uint32_t operator()(uint32_t x) const { return t[0][x & 0xff] ^ t[1][(x >> 8) & 0xff] ^ t[2][(x >> 16) & 0xff] ^ t[3][x >> 24]; }
};

#if defined(__x86_64__)
constexpr size_t kCrcStream = 8192;  // bytes per stream of a three-stream step

__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(const unsigned char* p, size_t n, uint32_t c) {
    if (n >= 3 * kCrcStream) {
        static const CrcShift shift(kCrcStream);
        while (n >= 3 * kCrcStream) {
            uint64_t c0 = c, c1 = 0, c2 = 0;
            for (const unsigned char* end = p + kCrcStream; p < end; p += 8) {
                uint64_t v0, v1, v2;
                std::memcpy(&v0, p, 8);
                std::memcpy(&v1, p + kCrcStream, 8);
                std::memcpy(&v2, p + 2 * kCrcStream, 8);
                c0 = __builtin_ia32_crc32di(c0, v0);
                c1 = __builtin_ia32_crc32di(c1, v1);
                c2 = __builtin_ia32_crc32di(c2, v2);
            }
            c = shift(static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1);
            c = shift(c) ^ static_cast<uint32_t>(c2);
            p += 2 * kCrcStream;
            n -= 3 * kCrcStream;
        }
    }
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
        p += 8;
        n -= 8;
    }
    c = static_cast<uint32_t>(c64);
    while (n--) c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
const bool kHaveSse42 = __builtin_cpu_supports("sse4.2");
#endif

}  // namespace

uint32_t crc32c_portable(std::span<const std::byte> data, uint32_t crc) {
    return ~crc32c_table(reinterpret_cast<const unsigned char*>(data.data()), data.size(), ~crc);
}

uint32_t crc32c(std::span<const std::byte> data, uint32_t crc) {
    auto p = reinterpret_cast<const unsigned char*>(data.data());
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (kHaveSse42) return ~crc32c_sse42(p, data.size(), c);
#endif
    return ~crc32c_table(p, data.size(), c);
}

}  // namespace dvol
