#include <catch2/catch.hpp>

#include <limits>
#include <string>

#include "object/commit.h"
#include "store/hash.h"
#include "support.h"

using namespace dvol;
using dvol::test::bytes_of;
using dvol::test::string_of;

namespace {

Commit sample() {
    Commit c;
    c.tree = sha256("tree");
    c.parents = {sha256("p1"), sha256("p2")};
    c.author_name = "Ada Lovelace";
    c.author_email = "ada@example.org";
    c.time = 1'700'000'000;
    c.tz_offset_min = -(3 * 60 + 30);
    c.metadata = {{"build", "42"}, {"ci.job-id", "a=b=c"}, {"z_last", " spaced value "}};
    c.message = "Subject line\n\nBody line one\n  indented line\n\nmeta not=metadata\nparent notaparent\n";
    return c;
}

void check_same(const Commit& a, const Commit& b) {
    CHECK(a.tree == b.tree);
    CHECK(a.parents == b.parents);
    CHECK(a.author_name == b.author_name);
    CHECK(a.author_email == b.author_email);
    CHECK(a.time == b.time);
    CHECK(a.tz_offset_min == b.tz_offset_min);
    CHECK(a.metadata == b.metadata);
    CHECK(a.message == b.message);
}

Commit round_trip(const Commit& c) {
    auto enc = encode_commit(c);
    REQUIRE(enc);
    auto dec = decode_commit(*enc);
    REQUIRE(dec);
    return *dec;
}

void require_decode_fails(std::string_view text, std::string_view why) {
    INFO(why);
    auto r = decode_commit(dvol::as_bytes(text));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
}

std::string header(std::string_view tree_hex, std::string_view author_line) {
    return "dvol commit 1\ntree " + std::string(tree_hex) + "\n" + std::string(author_line) + "\n\nmsg";
}

}  // namespace

TEST_CASE("commits round-trip with parents, metadata, multi-line messages and a negative time zone", "[commit]") {
    Commit c = sample();
    check_same(round_trip(c), c);

    Commit root = sample();
    root.parents.clear();
    root.metadata.clear();
    check_same(round_trip(root), root);

    Commit odd = sample();
    odd.author_name = " spaced name ";
    odd.author_email = "";
    odd.message = "";
    odd.time = -86400;
    odd.tz_offset_min = 14 * 60;
    check_same(round_trip(odd), odd);

    Commit extreme = sample();
    extreme.time = std::numeric_limits<int64_t>::min();
    extreme.tz_offset_min = -(23 * 60 + 59);
    check_same(round_trip(extreme), extreme);
    extreme.time = std::numeric_limits<int64_t>::max();
    extreme.message = "no trailing newline";
    check_same(round_trip(extreme), extreme);
}

TEST_CASE("the commit encoding is the documented text", "[commit]") {
    Commit c;
    c.tree = sha256("t");
    c.parents = {sha256("p")};
    c.author_name = "A U Thor";
    c.author_email = "a@u.th";
    c.time = 1234567890;
    c.tz_offset_min = 330;
    c.metadata = {{"k", "v"}};
    c.message = "hello\n";
    auto enc = encode_commit(c);
    REQUIRE(enc);
    std::string expected = "dvol commit 1\ntree " + c.tree.hex() + "\nparent " + sha256("p").hex() +
                           "\nauthor A U Thor <a@u.th> 1234567890 +0530\nmeta k=v\n\nhello\n";
    CHECK(string_of(*enc) == expected);
    // Same fields, same bytes, same id.
    auto again = encode_commit(c);
    REQUIRE(again);
    CHECK(sha256(*again) == sha256(*enc));
}

TEST_CASE("format_tz", "[commit]") {
    CHECK(format_tz(0) == "+0000");
    CHECK(format_tz(60) == "+0100");
    CHECK(format_tz(330) == "+0530");
    CHECK(format_tz(-210) == "-0330");
    CHECK(format_tz(-1) == "-0001");
    CHECK(format_tz(59) == "+0059");
    CHECK(format_tz(14 * 60) == "+1400");
}

TEST_CASE("encode_commit rejects fields the format cannot carry", "[commit]") {
    auto rejects = [](Commit c, std::string_view why) {
        INFO(why);
        auto r = encode_commit(c);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == Errc::invalid_argument);
    };
    Commit c = sample();
    c.author_name = "Ada\nLovelace";
    rejects(c, "newline in name");
    c.author_name = "Ada <x>";
    rejects(c, "'<' in name");
    c.author_name = "Ada>";
    rejects(c, "'>' in name");
    c.author_name = std::string("Ada\0", 4);
    rejects(c, "NUL in name");
    c = sample();
    c.author_email = "ada@example.org\n";
    rejects(c, "newline in email");
    c.author_email = "<ada@example.org";
    rejects(c, "'<' in email");
    c.author_email = "ada>@example.org";
    rejects(c, "'>' in email");
    c = sample();
    c.message = std::string("a\0b", 3);
    rejects(c, "NUL in message");
    for (std::string key : {std::string(""), std::string("a b"), std::string("a=b"), std::string("k\n"), std::string("caf\xc3\xa9"),
                            std::string("a:b"), std::string(257, 'k')}) {
        c = sample();
        c.metadata = {{key, "v"}};
        rejects(c, "metadata key '" + key + "'");
    }
    c = sample();
    c.metadata = {{std::string(256, 'k'), "v"}};
    CHECK(encode_commit(c));
    c.metadata = {{"k", "line\nbreak"}};
    rejects(c, "newline in a metadata value");
    c.metadata = {{"b", "1"}, {"a", "2"}};
    rejects(c, "unsorted metadata");
    c.metadata = {{"a", "1"}, {"a", "2"}};
    rejects(c, "duplicate metadata");
    c = sample();
    c.message = std::string(kMaxCommitSize, 'm');
    rejects(c, "too large");
}

TEST_CASE("whatever encode_commit accepts decodes back", "[commit]") {
    // Fields encode does not validate must still produce a decodable commit (or be refused).
    auto check = [](Commit c, std::string_view why) {
        INFO(why);
        auto enc = encode_commit(c);
        if (!enc) return;
        auto dec = decode_commit(*enc);
        if (!dec) FAIL_CHECK("encoded but cannot decode: " << dec.error().message);
        else check_same(*dec, c);
    };
    Commit c = sample();
    c.tz_offset_min = 24 * 60;
    check(c, "time zone +24:00");
    c.tz_offset_min = -100 * 60;
    check(c, "time zone -100:00");
    c = sample();
    c.parents.assign(65, sha256("p"));
    check(c, "65 parents");
}

TEST_CASE("decode_commit never crashes on a truncation and rejects truncated headers", "[commit]") {
    Commit c = sample();
    auto enc = encode_commit(c);
    REQUIRE(enc);
    std::string text = string_of(*enc);
    size_t body = text.find("\n\n") + 2;  // where the message starts
    for (size_t n = 0; n <= text.size(); ++n) {
        auto r = decode_commit(std::span<const std::byte>(*enc).first(n));
        INFO("prefix of " << n << " bytes");
        if (n < body) {
            CHECK_FALSE(r);
        } else {
            REQUIRE(r);
            CHECK(r->message == text.substr(body, n - body));
            CHECK(r->parents == c.parents);
            CHECK(r->metadata == c.metadata);
        }
    }
}

TEST_CASE("decode_commit survives every single-byte corruption of the header", "[commit]") {
    auto enc = encode_commit(sample());
    REQUIRE(enc);
    std::string text = string_of(*enc);
    size_t body = text.find("\n\n") + 2;
    for (size_t i = 0; i < body; ++i) {
        for (char repl : {'\n', '\0', ' ', '<', '>', '0', 'z', '='}) {
            std::string bad = text;
            bad[i] = repl;
            auto r = decode_commit(dvol::as_bytes(bad));
            // Either rejected, or the result re-encodes to a commit (never a crash).
            if (r) (void)encode_commit(*r);
        }
    }
    SUCCEED();
}

TEST_CASE("decode_commit rejects bad ids", "[commit]") {
    std::string author = "author A <a@b> 1 +0000";
    std::string good = sha256("x").hex();
    REQUIRE(decode_commit(dvol::as_bytes(header(good, author))));
    require_decode_fails(header(good.substr(1), author), "63 digits");
    require_decode_fails(header(good + "0", author), "65 digits");
    require_decode_fails(header("g" + good.substr(1), author), "non-hex digit");
    require_decode_fails(header(" " + good.substr(1), author), "space");
    require_decode_fails(header("", author), "empty tree id");
    std::string with_parent = "dvol commit 1\ntree " + good + "\nparent " + good.substr(2) + "\n" + author + "\n\n";
    require_decode_fails(with_parent, "short parent id");
    std::string parents = "dvol commit 1\ntree " + good + "\n";
    for (int i = 0; i < 65; ++i) parents += "parent " + good + "\n";
    parents += author + "\n\n";
    require_decode_fails(parents, "more than 64 parents");
}

TEST_CASE("decode_commit rejects bad time zones and dates", "[commit]") {
    std::string tree = sha256("x").hex();
    for (std::string tz : {"+2400", "+0060", "0000", "+000", "+00000", "+-100", "+ab00", "-0a00", "", "Z", "+ 100"}) {
        require_decode_fails(header(tree, "author A <a@b> 1 " + tz), "time zone '" + tz + "'");
    }
    for (std::string t : {"", "1.5", "+1", "abc", "99999999999999999999", "1 "}) {
        require_decode_fails(header(tree, "author A <a@b> " + t + " +0000"), "time '" + t + "'");
    }
    auto ok = decode_commit(dvol::as_bytes(header(tree, "author A <a@b> -5 -1130")));
    REQUIRE(ok);
    CHECK(ok->time == -5);
    CHECK(ok->tz_offset_min == -(11 * 60 + 30));
}

TEST_CASE("decode_commit accepts only the canonical form of numbers", "[commit]") {
    // The id is the hash of the bytes, so one commit must have one encoding: a decoded commit
    // re-encodes to exactly its input, or the input is rejected.
    std::string tree = sha256("x").hex();
    for (std::string date : {"1 -0000", "007 +0100", "-0 +0000", "1 +0-01"}) {
        std::string text = header(tree, "author A <a@b> " + date);
        INFO("date '" << date << "'");
        auto r = decode_commit(dvol::as_bytes(text));
        if (!r) continue;
        auto again = encode_commit(*r);
        REQUIRE(again);
        CHECK(string_of(*again) == text);
    }
    std::string upper = tree;
    for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    std::string text = header(upper, "author A <a@b> 1 +0000");
    auto r = decode_commit(dvol::as_bytes(text));
    if (r) {
        INFO("upper-case tree id");
        auto again = encode_commit(*r);
        REQUIRE(again);
        CHECK(string_of(*again) == text);
    }
}

TEST_CASE("decode_commit rejects malformed headers", "[commit]") {
    std::string tree = sha256("x").hex();
    std::string author = "author A <a@b> 1 +0000";
    require_decode_fails("", "empty");
    require_decode_fails("dvol commit 2\ntree " + tree + "\n" + author + "\n\n", "version 2");
    require_decode_fails("tree " + tree + "\n" + author + "\n\n", "no header line");
    require_decode_fails("dvol commit 1\n" + author + "\n\n", "no tree");
    require_decode_fails("dvol commit 1\ntree " + tree + "\n\n", "no author");
    require_decode_fails("dvol commit 1\ntree " + tree + "\nauthor A a@b 1 +0000\n\n", "email without brackets");
    require_decode_fails("dvol commit 1\ntree " + tree + "\nauthor A <a<b> 1 +0000\n\n", "'<' in email");
    require_decode_fails("dvol commit 1\ntree " + tree + "\n" + author + "\nbogus line\n\n", "unknown header line");
    require_decode_fails("dvol commit 1\ntree " + tree + "\n" + author + "\nmeta novalue\n\n", "meta without '='");
    require_decode_fails("dvol commit 1\ntree " + tree + "\n" + author + "\nmeta a b=1\n\n", "bad meta key");
    require_decode_fails("dvol commit 1\ntree " + tree + "\n" + author + "\nmeta b=1\nmeta a=2\n\n", "unsorted meta");
    require_decode_fails("dvol commit 1\ntree " + tree + "\n" + author + "\nmeta a=1\nmeta a=2\n\n", "duplicate meta");
    require_decode_fails("dvol commit 1\ntree " + tree + "\n" + author + "\n", "no blank line");
    require_decode_fails(header(tree, author) + std::string("\0", 1), "NUL in message");
    std::string big = header(tree, author) + std::string(kMaxCommitSize, 'm');
    require_decode_fails(big, "too large");
}
