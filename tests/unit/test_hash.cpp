#include <catch2/catch.hpp>

#include <random>

#include <set>
#include <string>

#include "store/hash.h"
#include "support.h"

using namespace dvol;
using dvol::test::random_bytes;

namespace {
constexpr const char* kAbc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr const char* kEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr const char* kTwoBlocks = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
constexpr const char* kTwoBlocksInput = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
}  // namespace

TEST_CASE("sha256 matches the FIPS 180-2 vectors", "[hash]") {
    CHECK(sha256("abc").hex() == kAbc);
    CHECK(sha256("").hex() == kEmpty);
    CHECK(sha256(kTwoBlocksInput).hex() == kTwoBlocks);
}

TEST_CASE("ObjectId hex round trip", "[hash]") {
    ObjectId id = sha256("abc");
    std::string hex = id.hex();
    REQUIRE(hex.size() == 64);
    auto back = ObjectId::from_hex(hex);
    REQUIRE(back);
    CHECK(*back == id);

    // Every byte value survives the round trip, including 0x00 and 0xff.
    ObjectId all;
    for (size_t i = 0; i < ObjectId::size; ++i) all.bytes[i] = static_cast<uint8_t>(i * 8 + 7);
    all.bytes[0] = 0x00;
    all.bytes[31] = 0xff;
    auto again = ObjectId::from_hex(all.hex());
    REQUIRE(again);
    CHECK(*again == all);
    CHECK(all.hex().substr(0, 2) == "00");
    CHECK(all.hex().substr(62) == "ff");
}

TEST_CASE("ObjectId::from_hex accepts upper case", "[hash]") {
    std::string upper = kAbc;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    auto id = ObjectId::from_hex(upper);
    REQUIRE(id);
    CHECK(id->hex() == kAbc);
}

TEST_CASE("ObjectId::from_hex rejects bad input", "[hash]") {
    std::string good = kAbc;
    CHECK_FALSE(ObjectId::from_hex(""));
    CHECK_FALSE(ObjectId::from_hex(good.substr(0, 63)));
    CHECK_FALSE(ObjectId::from_hex(good + "0"));
    CHECK_FALSE(ObjectId::from_hex(good + good));
    for (char bad : {'g', 'G', 'x', ' ', '-', '+', '\0', '/', ':', '@', '`'}) {
        for (size_t pos : {size_t{0}, size_t{1}, size_t{31}, size_t{62}, size_t{63}}) {
            std::string s = good;
            s[pos] = bad;
            INFO("char " << static_cast<int>(bad) << " at " << pos);
            CHECK_FALSE(ObjectId::from_hex(s));
        }
    }
    CHECK_FALSE(ObjectId::from_hex(" " + good.substr(1)));
}

TEST_CASE("ObjectId::from_bytes and as_span agree", "[hash]") {
    ObjectId id = sha256("xyz");
    ObjectId copy = ObjectId::from_bytes(id.as_span());
    CHECK(copy == id);
    CHECK(id.as_span().size() == ObjectId::size);
}

TEST_CASE("ObjectId ordering and hashing", "[hash]") {
    ObjectId a, b;
    b.bytes[0] = 1;
    CHECK(a < b);
    CHECK(a != b);
    ObjectId c;
    c.bytes[31] = 1;
    CHECK(a < c);
    CHECK(c < b);  // lexicographic by byte
    std::set<ObjectId> ids{sha256("1"), sha256("2"), sha256("1")};
    CHECK(ids.size() == 2);
    CHECK(ObjectIdHash{}(sha256("1")) == ObjectIdHash{}(sha256("1")));
}

TEST_CASE("streaming Sha256 equals the one-shot hash", "[hash]") {
    auto data = random_bytes(1 << 20, 42);
    ObjectId whole = sha256(data);

    SECTION("one update") {
        Sha256 h;
        h.update(data);
        CHECK(h.finish() == whole);
    }
    SECTION("uneven pieces") {
        Sha256 h;
        std::span<const std::byte> rest(data);
        size_t step = 1;
        while (!rest.empty()) {
            size_t n = std::min(step, rest.size());
            h.update(rest.first(n));
            rest = rest.subspan(n);
            step = step * 3 + 1;
        }
        CHECK(h.finish() == whole);
    }
    SECTION("empty updates change nothing") {
        Sha256 h;
        h.update({});
        h.update(data);
        h.update({});
        CHECK(h.finish() == whole);
    }
    SECTION("finish resets the hasher for reuse") {
        Sha256 h;
        h.update(dvol::as_bytes("garbage"));
        (void)h.finish();
        h.update(dvol::as_bytes("abc"));
        CHECK(h.finish().hex() == kAbc);
        CHECK(h.finish().hex() == kEmpty);
    }
}

TEST_CASE("different data gives different ids", "[hash]") {
    auto a = random_bytes(4096, 1);
    auto b = a;
    b[2048] ^= std::byte{1};
    CHECK(sha256(a) != sha256(b));
}

TEST_CASE("crc32c matches the known vectors, whole or in pieces", "[hash]") {
    auto bytes = [](std::string_view s) { return std::span(reinterpret_cast<const std::byte*>(s.data()), s.size()); };
    CHECK(crc32c({}) == 0u);
    CHECK(crc32c(bytes("123456789")) == 0xe3069283u);  // the check value of CRC-32C
    CHECK(crc32c(bytes("a")) == 0xc1d04330u);
    // 32 zero bytes (RFC 3720, B.4)
    std::string zeros(32, '\0');
    CHECK(crc32c(bytes(zeros)) == 0x8a9136aau);
    // Any split of a buffer continues to the same value; odd lengths and offsets exercise the
    // tail and the unaligned loads.
    auto data = random_bytes(1001, 7);
    uint32_t whole = crc32c(data);
    for (size_t cut : {0, 1, 7, 8, 9, 500, 1000, 1001}) {
        auto a = std::span<const std::byte>(data).first(cut);
        auto b = std::span<const std::byte>(data).subspan(cut);
        CHECK(crc32c(b, crc32c(a)) == whole);
    }
    // One flipped bit changes it.
    data[500] ^= std::byte{0x10};
    CHECK(crc32c(data) != whole);
}

TEST_CASE("crc32c with the crc32 instruction (three streams at once on long buffers) matches the table", "[hash]") {
    std::mt19937_64 rng(42);
    std::vector<std::byte> data(5 * 3 * 8192 + 777);
    for (auto& b : data) b = static_cast<std::byte>(rng());
    // Lengths around the three-stream step (3 x 8 KiB), odd offsets, and a running crc.
    for (size_t len : {size_t{0}, size_t{7}, size_t{8191}, size_t{24575}, size_t{24576}, size_t{24577}, size_t{49152}, size_t{49159},
                       size_t{65536}, data.size() - 1}) {
        for (size_t off : {size_t{0}, size_t{1}, size_t{5}}) {
            if (off + len > data.size()) continue;
            std::span<const std::byte> s(data.data() + off, len);
            INFO("length " << len << " offset " << off);
            CHECK(crc32c(s) == crc32c_portable(s));
            CHECK(crc32c(s, 0x12345678u) == crc32c_portable(s, 0x12345678u));
        }
    }
    // A long run of zeros and of ones.
    std::vector<std::byte> z(100000, std::byte{0}), o(100000, std::byte{0xff});
    CHECK(crc32c(z) == crc32c_portable(z));
    CHECK(crc32c(o) == crc32c_portable(o));
}
