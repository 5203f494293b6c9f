#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "store/codec.h"
#include "support.h"

using namespace dvol;
using dvol::test::bytes_of;
using dvol::test::random_bytes;

namespace {

std::vector<std::byte> compressible(size_t n) {
    std::string s;
    while (s.size() < n) s += "the quick brown fox jumps over the lazy dog " + std::to_string(s.size() % 97) + "\n";
    s.resize(n);
    return bytes_of(s);
}

}  // namespace

TEST_CASE("compressible data round-trips through zstd", "[codec]") {
    Compressor c;
    for (size_t n : {size_t{100}, size_t{4096}, size_t{256} << 10, size_t{1} << 20}) {
        INFO("size " << n);
        auto in = compressible(n);
        std::vector<std::byte> packed;
        REQUIRE(c.compress(in, packed) == Codec::zstd);
        CHECK(packed.size() < in.size() - in.size() / 32);
        std::vector<std::byte> out;
        REQUIRE(decompress(Codec::zstd, packed, in.size(), out));
        CHECK(out == in);
    }
}

TEST_CASE("a Compressor can be reused and other levels round-trip", "[codec]") {
    Compressor fast(1), strong(19);
    std::vector<std::byte> a, b, out;
    auto in1 = compressible(50000), in2 = compressible(70000);
    REQUIRE(fast.compress(in1, a) == Codec::zstd);
    REQUIRE(fast.compress(in2, b) == Codec::zstd);
    REQUIRE(decompress(Codec::zstd, a, in1.size(), out));
    CHECK(out == in1);
    REQUIRE(decompress(Codec::zstd, b, in2.size(), out));
    CHECK(out == in2);
    REQUIRE(strong.compress(in2, a) == Codec::zstd);
    REQUIRE(decompress(Codec::zstd, a, in2.size(), out));
    CHECK(out == in2);
}

TEST_CASE("incompressible data is stored raw", "[codec]") {
    Compressor c;
    auto in = random_bytes(100000, 3);
    std::vector<std::byte> packed;
    REQUIRE(c.compress(in, packed) == Codec::raw);
    CHECK(packed == in);
    std::vector<std::byte> out;
    REQUIRE(decompress(Codec::raw, packed, in.size(), out));
    CHECK(out == in);
}

TEST_CASE("compress_or_keep: data left raw is not copied, compressed data is as compress gives it", "[codec]") {
    Compressor c;
    auto noise = random_bytes(3u << 20, 11);  // past 1 MiB: the scratch on huge pages
    std::vector<std::byte> out = random_bytes(64, 12);
    REQUIRE(c.compress_or_keep(noise, out) == Codec::raw);
    CHECK(out.empty());
    auto text = compressible(3u << 20);
    REQUIRE(c.compress_or_keep(text, out) == Codec::zstd);
    std::vector<std::byte> same;
    REQUIRE(c.compress(text, same) == Codec::zstd);
    CHECK(out == same);
    std::vector<std::byte> back;
    REQUIRE(decompress(Codec::zstd, out, text.size(), back));
    CHECK(back == text);
}

TEST_CASE("empty and tiny inputs round-trip", "[codec]") {
    Compressor c;
    for (size_t n : {size_t{0}, size_t{1}, size_t{31}}) {
        INFO("size " << n);
        auto in = random_bytes(n, 5);
        std::vector<std::byte> packed = random_bytes(64, 6);  // stale contents must be replaced
        Codec codec = c.compress(in, packed);
        std::vector<std::byte> out = random_bytes(10, 7);
        REQUIRE(decompress(codec, packed, in.size(), out));
        CHECK(out == in);
    }
}

TEST_CASE("decompress rejects a wrong size", "[codec]") {
    Compressor c;
    auto in = compressible(10000);
    std::vector<std::byte> packed, out;
    REQUIRE(c.compress(in, packed) == Codec::zstd);
    for (size_t wrong : {in.size() - 1, in.size() + 1, size_t{0}, in.size() * 2}) {
        INFO("claimed size " << wrong);
        auto st = decompress(Codec::zstd, packed, wrong, out);
        REQUIRE_FALSE(st);
        CHECK(st.error().code == Errc::corrupt);
    }
    auto raw = random_bytes(100, 1);
    for (size_t wrong : {size_t{99}, size_t{101}, size_t{0}}) {
        auto st = decompress(Codec::raw, raw, wrong, out);
        REQUIRE_FALSE(st);
        CHECK(st.error().code == Errc::corrupt);
    }
}

TEST_CASE("decompress rejects garbage and truncated frames", "[codec]") {
    std::vector<std::byte> out;
    auto garbage = random_bytes(1000, 99);
    auto st = decompress(Codec::zstd, garbage, 5000, out);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == Errc::corrupt);

    auto empty = decompress(Codec::zstd, {}, 0, out);
    REQUIRE_FALSE(empty);
    CHECK(empty.error().code == Errc::corrupt);

    Compressor c;
    auto in = compressible(200000);
    std::vector<std::byte> packed;
    REQUIRE(c.compress(in, packed) == Codec::zstd);
    for (size_t keep : {size_t{1}, size_t{4}, size_t{10}, packed.size() / 2, packed.size() - 1}) {
        INFO("kept " << keep << " of " << packed.size());
        auto cut = std::span<const std::byte>(packed).first(keep);
        auto r = decompress(Codec::zstd, cut, in.size(), out);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == Errc::corrupt);
    }
    // Trailing junk after a valid frame.
    auto longer = packed;
    longer.push_back(std::byte{0x42});
    auto r = decompress(Codec::zstd, longer, in.size(), out);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
}

TEST_CASE("decompress rejects an unknown codec", "[codec]") {
    std::vector<std::byte> out;
    auto data = random_bytes(16, 2);
    for (int codec : {2, 7, 255}) {
        auto st = decompress(static_cast<Codec>(codec), data, data.size(), out);
        REQUIRE_FALSE(st);
        CHECK(st.error().code == Errc::corrupt);
        CHECK(st.error().message.find(std::to_string(codec)) != std::string::npos);
    }
}

TEST_CASE("the default compressor takes level 3 for text and the fast strategy for pages that compress well", "[codec]") {
    // Text of random words compresses about 4x: below the 5x the fast strategy needs.
    std::string text;
    uint64_t x = 12345;
    while (text.size() < (1 << 20)) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t len = 2 + (x >> 60) % 9;
        for (size_t i = 0; i < len; ++i) text += static_cast<char>('a' + ((x >> (8 + 5 * i)) % 26));
        text += (x >> 59) % 8 == 0 ? '\n' : ' ';
    }
    // Database-like pages: the same row layout over and over with a counter in it, ~20x.
    std::string pages;
    for (int i = 0; pages.size() < (1 << 20); ++i) pages += "\x01\x00" + std::to_string(i) + std::string(84, ' ') + "\x7f";
    Compressor dflt, level3(3);
    std::vector<std::byte> a, b, out;
    auto t = bytes_of(text), p = bytes_of(pages);
    REQUIRE(dflt.compress(t, a) == Codec::zstd);
    REQUIRE(level3.compress(t, b) == Codec::zstd);
    CHECK(a == b);  // level 3's frame
    REQUIRE(dflt.compress(p, a) == Codec::zstd);
    REQUIRE(level3.compress(p, b) == Codec::zstd);
    CHECK(a != b);  // the fast strategy's
    CHECK(a.size() * 5 < p.size());
    REQUIRE(decompress(Codec::zstd, a, p.size(), out));
    CHECK(out == p);
}
