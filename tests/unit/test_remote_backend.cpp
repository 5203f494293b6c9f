// The conformance suite of remote::Backend (lib/remote/backend.h): what every backend must do,
// run against a fresh directory, or against any remote with DVOL_TEST_REMOTE_URL (see
// remote_support.h), e.g.
//   DVOL_TEST_REMOTE_URL=s3://bucket/x DVOL_TEST_REMOTE_ENDPOINT=http://127.0.0.1:7480
//   build/tests/unit/unit_tests '[remote_backend]'
#include <catch2/catch.hpp>

#include <fcntl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "remote/backend.h"
#include "remote_support.h"
#include "support.h"

using namespace dvol;
using dvol::test::bytes_of;
using dvol::test::Outcome;
using dvol::test::random_bytes;
using dvol::test::RemoteUnderTest;
using dvol::test::string_of;

namespace {

std::vector<std::string> keys_of(const std::vector<remote::Entry>& entries) {
    std::vector<std::string> out;
    for (const auto& e : entries) out.push_back(e.key);
    return out;
}

void put(remote::Backend& b, const std::string& key, std::string_view data) {
    auto st = b.write(key, as_bytes(data));
    INFO("write " << key << ": " << (st ? std::string("ok") : st.error().message));
    REQUIRE(st.ok());
}

std::string get(remote::Backend& b, const std::string& key) {
    std::vector<std::byte> out;
    auto st = b.read_all(key, out);
    INFO("read_all " << key << ": " << (st ? std::string("ok") : st.error().message));
    REQUIRE(st.ok());
    return string_of(out);
}

std::string range(remote::Backend& b, const std::string& key, uint64_t offset, uint64_t length) {
    std::vector<std::byte> out(3, std::byte{'?'});
    auto st = b.read(key, offset, length, out);
    INFO("read " << key << " [" << offset << ", +" << length << "): " << (st ? std::string("ok") : st.error().message));
    REQUIRE(st.ok());
    return string_of(out);
}

int count(const std::vector<Outcome>& v, Outcome o) { return static_cast<int>(std::count(v.begin(), v.end(), o)); }

std::string describe(const std::vector<Outcome>& v) {
    std::string s;
    for (auto o : v) s += o == Outcome::won ? 'W' : o == Outcome::conflict ? 'c' : '!';
    return s;
}

}  // namespace

TEST_CASE("list: plain string prefixes, sorted, with sizes, refs included", "[remote_backend]") {
    RemoteUnderTest remote;
    auto b = remote.open();
    auto k = [&](std::string_view rel) { return remote.key(rel); };
    // Written out of order, with a key that extends another's directory name ("a/bc").
    put(*b, k("b"), "bb");
    put(*b, k("a/b/d"), "dddd");
    put(*b, k("a/bc"), "");
    put(*b, k("a/b/c"), "ccc");
    put(*b, k("ab"), "a-b");
    REQUIRE(b->create_ref(k("refs/main"), "tip-1").ok());

    auto all = b->list(remote.prefix());
    REQUIRE(all.ok());
    CHECK(keys_of(*all) == std::vector<std::string>{k("a/b/c"), k("a/b/d"), k("a/bc"), k("ab"), k("b"), k("refs/main")});
    std::vector<uint64_t> sizes;
    for (const auto& e : *all) sizes.push_back(e.size);
    CHECK(sizes == std::vector<uint64_t>{3, 4, 0, 3, 2, 5});

    CHECK(keys_of(*b->list(k("a/b"))) == std::vector<std::string>{k("a/b/c"), k("a/b/d"), k("a/bc")});
    CHECK(keys_of(*b->list(k("a/b/"))) == std::vector<std::string>{k("a/b/c"), k("a/b/d")});
    CHECK(keys_of(*b->list(k("a/b/c"))) == std::vector<std::string>{k("a/b/c")});
    CHECK(keys_of(*b->list(k("a"))) == std::vector<std::string>{k("a/b/c"), k("a/b/d"), k("a/bc"), k("ab")});
    CHECK(keys_of(*b->list(k("a/"))) == std::vector<std::string>{k("a/b/c"), k("a/b/d"), k("a/bc")});
    CHECK(keys_of(*b->list(k("re"))) == std::vector<std::string>{k("refs/main")});
    auto none = b->list(k("a/b/cx"));
    REQUIRE(none.ok());
    CHECK(none->empty());
    CHECK(b->list(k("zzz"))->empty());
    CHECK(b->list(remote.prefix() + "nothing/at/all/")->empty());

    // The whole remote: our keys, in order, among whatever else a shared remote holds.
    auto everything = b->list("");
    REQUIRE(everything.ok());
    auto ours = keys_of(*everything);
    std::erase_if(ours, [&](const std::string& key) { return !key.starts_with(remote.prefix()); });
    CHECK(ours == keys_of(*all));
    CHECK(std::is_sorted(everything->begin(), everything->end(),
                         [](const remote::Entry& x, const remote::Entry& y) { return x.key < y.key; }));
    if (remote.dir()) CHECK(everything->size() == all->size());
}

TEST_CASE("read: ranges, the end of the object, missing keys", "[remote_backend]") {
    RemoteUnderTest remote;
    auto b = remote.open();
    std::string text;
    for (int i = 0; i < 100; ++i) text += fmt::format("{:09}\n", i);  // 1000 bytes
    put(*b, remote.key("obj"), text);

    CHECK(range(*b, remote.key("obj"), 0, 10) == text.substr(0, 10));
    CHECK(range(*b, remote.key("obj"), 500, 123) == text.substr(500, 123));
    CHECK(range(*b, remote.key("obj"), 990, 100) == text.substr(990));  // short: the object ends
    CHECK(range(*b, remote.key("obj"), 10, UINT64_MAX) == text.substr(10));
    CHECK(range(*b, remote.key("obj"), 1000, 10).empty());  // at the end
    CHECK(range(*b, remote.key("obj"), 5000, 10).empty());  // past it
    CHECK(range(*b, remote.key("obj"), 300, 0).empty());
    CHECK(get(*b, remote.key("obj")) == text);

    std::vector<std::byte> out;
    auto missing = b->read(remote.key("nope"), 0, 10, out);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == Errc::not_found);
    INFO(missing.error().message);
    CHECK(missing.error().message.find(remote.key("nope")) != std::string::npos);
    CHECK(b->read_all(remote.key("nope"), out).error().code == Errc::not_found);
    // A "directory" of other keys is not an object.
    put(*b, remote.key("dir/inner"), "x");
    CHECK(b->read_all(remote.key("dir"), out).error().code == Errc::not_found);
    CHECK(b->read(remote.key("dir"), 0, 1, out).error().code == Errc::not_found);
}

TEST_CASE("write and write_file: large objects byte-exact, rewriting the same bytes is fine", "[remote_backend]") {
    RemoteUnderTest remote;
    auto b = remote.open();
    test::TempDir local;
    const auto big = random_bytes((21u << 20) + 12345, 7);
    test::write_file(local / "big.pack", big);
    auto fd = open_file(local / "big.pack", O_RDONLY);
    REQUIRE(fd);
    // The caller's file position is left alone: write_file reads from offset 0 whatever it is.
    REQUIRE(::lseek(fd->get(), 1000, SEEK_SET) == 1000);

    auto st = b->write_file(remote.key("packs/big.pack"), fd->get(), big.size());
    INFO((st ? std::string("ok") : st.error().message));
    REQUIRE(st.ok());
    CHECK(::lseek(fd->get(), 0, SEEK_CUR) == 1000);
    std::vector<std::byte> back;
    REQUIRE(b->read_all(remote.key("packs/big.pack"), back).ok());
    CHECK(back.size() == big.size());
    CHECK(back == big);
    std::vector<std::byte> middle;
    REQUIRE(b->read(remote.key("packs/big.pack"), 20u << 20, 4096, middle).ok());
    CHECK(std::equal(middle.begin(), middle.end(), big.begin() + (20 << 20)));
    auto listed = b->list(remote.key("packs/"));
    REQUIRE(listed.ok());
    REQUIRE(listed->size() == 1);
    CHECK(listed->at(0).size == big.size());

    // Again, by both calls, with the same bytes.
    CHECK(b->write_file(remote.key("packs/big.pack"), fd->get(), big.size()).ok());
    CHECK(b->write(remote.key("packs/big.pack"), big).ok());
    REQUIRE(b->read_all(remote.key("packs/big.pack"), back).ok());
    CHECK(back == big);

    // Small and empty objects, through both calls.
    put(*b, remote.key("small"), "hello");
    CHECK(get(*b, remote.key("small")) == "hello");
    put(*b, remote.key("small"), "hello");
    put(*b, remote.key("empty"), "");
    CHECK(get(*b, remote.key("empty")).empty());
    test::write_file(local / "part", std::string_view("0123456789"));
    auto part = open_file(local / "part", O_RDONLY);
    REQUIRE(part);
    REQUIRE(b->write_file(remote.key("first4"), part->get(), 4).ok());
    CHECK(get(*b, remote.key("first4")) == "0123");
    REQUIRE(b->write_file(remote.key("none"), part->get(), 0).ok());
    CHECK(get(*b, remote.key("none")).empty());
    // A source shorter than announced stores nothing.
    auto shorter = b->write_file(remote.key("short"), part->get(), 11);
    CHECK_FALSE(shorter.ok());
    std::vector<std::byte> out;
    CHECK(b->read_all(remote.key("short"), out).error().code == Errc::not_found);
}

TEST_CASE("invalid keys are refused by every call", "[remote_backend]") {
    RemoteUnderTest remote;
    auto b = remote.open();
    test::TempDir local;
    test::write_file(local / "f", std::string_view("data"));
    auto fd = open_file(local / "f", O_RDONLY);
    REQUIRE(fd);
    for (std::string key : {"../x", "a/../b", "/abs", "a//b", "a/./b", "./a", "", "a b", "a/", "x\ny", "tab\t", "caf\xc3\xa9",
                            "back\\slash", "star*", "lock~"}) {
        INFO("key '" << key << "'");
        std::vector<std::byte> out;
        CHECK(b->read(key, 0, 1, out).error().code == Errc::invalid_argument);
        CHECK(b->read_all(key, out).error().code == Errc::invalid_argument);
        CHECK(b->write(key, as_bytes("x")).error().code == Errc::invalid_argument);
        CHECK(b->write_file(key, fd->get(), 4).error().code == Errc::invalid_argument);
        CHECK(b->read_ref(key).error().code == Errc::invalid_argument);
        CHECK(b->create_ref(key, "x").error().code == Errc::invalid_argument);
        CHECK(b->update_ref(key, "x", "v").error().code == Errc::invalid_argument);
        CHECK(b->remove(key).error().code == Errc::invalid_argument);
    }
    if (remote.dir()) CHECK(b->list("")->empty());
}

TEST_CASE("refs: create, compare-and-swap, conflicts, remove", "[remote_backend]") {
    RemoteUnderTest remote;
    auto b = remote.open();
    const std::string ref = remote.key("refs/heads/main");

    auto missing = b->read_ref(ref);
    REQUIRE(missing.ok());
    CHECK_FALSE(missing->has_value());

    auto v1 = b->create_ref(ref, "commit-1");
    REQUIRE(v1.ok());
    CHECK_FALSE(v1->empty());
    auto r1 = b->read_ref(ref);
    REQUIRE(r1.ok());
    REQUIRE(r1->has_value());
    CHECK((*r1)->data == "commit-1");
    CHECK((*r1)->version == *v1);

    auto again = b->create_ref(ref, "commit-other");
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().code == Errc::conflict);
    CHECK(again.error().message.find(ref) != std::string::npos);
    CHECK((*b->read_ref(ref))->data == "commit-1");

    auto v2 = b->update_ref(ref, "commit-2", *v1);
    REQUIRE(v2.ok());
    CHECK(*v2 != *v1);
    auto r2 = b->read_ref(ref);
    REQUIRE(r2->has_value());
    CHECK((*r2)->data == "commit-2");
    CHECK((*r2)->version == *v2);

    // A stale version loses and changes nothing.
    auto stale = b->update_ref(ref, "commit-3", *v1);
    REQUIRE_FALSE(stale.ok());
    CHECK(stale.error().code == Errc::conflict);
    CHECK(stale.error().message.find(ref) != std::string::npos);
    auto r3 = b->read_ref(ref);
    CHECK((*r3)->data == "commit-2");
    CHECK((*r3)->version == *v2);
    CHECK(b->update_ref(ref, "commit-3", "not-a-version").error().code == Errc::conflict);

    // A missing ref cannot be updated, whatever the version.
    CHECK(b->update_ref(remote.key("refs/heads/none"), "x", *v2).error().code == Errc::conflict);
    CHECK(b->update_ref(remote.key("refs/nodir/none"), "x", *v2).error().code == Errc::conflict);
    CHECK_FALSE(b->read_ref(remote.key("refs/heads/none"))->has_value());

    // Empty and binary values round-trip.
    std::string binary("a\0b\n\xff", 5);
    auto v4 = b->update_ref(ref, binary, *v2);
    REQUIRE(v4.ok());
    CHECK((*b->read_ref(ref))->data == binary);
    auto v5 = b->update_ref(ref, "", *v4);
    REQUIRE(v5.ok());
    CHECK((*b->read_ref(ref))->data.empty());
    CHECK((*b->read_ref(ref))->version == *v5);

    // A ref is also a key of the listing and can be read as an object.
    REQUIRE(b->update_ref(ref, "commit-6", *v5).ok());
    auto listed = b->list(remote.key("refs/"));
    REQUIRE(listed.ok());
    REQUIRE(listed->size() == 1);
    CHECK(listed->at(0).key == ref);
    CHECK(listed->at(0).size == 8);

    REQUIRE(b->remove(ref).ok());
    CHECK_FALSE(b->read_ref(ref)->has_value());
    CHECK(b->list(remote.key("refs/"))->empty());
    CHECK(b->remove(ref).ok());  // missing: fine
    CHECK(b->remove(remote.key("never/was")).ok());
    auto v7 = b->create_ref(ref, "commit-7");  // and it can be made again
    REQUIRE(v7.ok());
    CHECK((*b->read_ref(ref))->data == "commit-7");

    // Objects go the same way.
    put(*b, remote.key("obj"), "o");
    REQUIRE(b->remove(remote.key("obj")).ok());
    std::vector<std::byte> out;
    CHECK(b->read_all(remote.key("obj"), out).error().code == Errc::not_found);
}

namespace {

// Twenty rounds of `n` racers creating one new ref, then updating it from one version: one
// winner each time, whose value the ref holds; every other racer lost by a conflict.
void race_refs(const RemoteUnderTest& remote, int n,
               std::vector<Outcome> (*race)(const RemoteUnderTest&, int, const dvol::test::RaceFn&)) {
    auto b = remote.open();
    for (int round = 0; round < 20; ++round) {
        INFO("round " << round);
        const std::string key = remote.key(fmt::format("refs/race-{}", round));
        auto created = race(remote, n, [&](remote::Backend& mine, int i) {
            return dvol::test::outcome_of(mine.create_ref(key, fmt::format("created by {}", i)));
        });
        INFO("create: " << describe(created));
        REQUIRE(count(created, Outcome::won) == 1);
        REQUIRE(count(created, Outcome::conflict) == n - 1);
        auto winner = std::find(created.begin(), created.end(), Outcome::won) - created.begin();
        auto after_create = b->read_ref(key);
        REQUIRE(after_create.ok());
        REQUIRE(after_create->has_value());
        CHECK((*after_create)->data == fmt::format("created by {}", winner));

        const std::string base = (*after_create)->version;
        auto updated = race(remote, n, [&](remote::Backend& mine, int i) {
            return dvol::test::outcome_of(mine.update_ref(key, fmt::format("updated by {} in round {}", i, round), base));
        });
        INFO("update: " << describe(updated));
        REQUIRE(count(updated, Outcome::won) == 1);
        REQUIRE(count(updated, Outcome::conflict) == n - 1);
        winner = std::find(updated.begin(), updated.end(), Outcome::won) - updated.begin();
        auto after_update = b->read_ref(key);
        REQUIRE(after_update.ok());
        REQUIRE(after_update->has_value());
        CHECK((*after_update)->data == fmt::format("updated by {} in round {}", winner, round));
        CHECK((*after_update)->version != base);
    }
}

}  // namespace

TEST_CASE("races between threads, each with its own Backend: one winner per round", "[remote_backend]") {
    RemoteUnderTest remote;
    race_refs(remote, 4, [](const RemoteUnderTest& r, int n, const dvol::test::RaceFn& fn) {
        return dvol::test::race_threads(r, n, fn);
    });
}

TEST_CASE("races between processes: one winner per round", "[remote_backend]") {
    RemoteUnderTest remote;
    race_refs(remote, 4, dvol::test::race_processes);
}
