// RetryingBackend (lib/remote/retry.cpp) over a fake backend that fails on demand, with a fake
// clock: attempts, delays, give-up, and the ref calls whose answer was lost.
#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "remote/retry.h"
#include "support.h"

using namespace dvol;
using namespace std::chrono_literals;
using dvol::remote::RefValue;
using dvol::remote::RetryingBackend;
using dvol::remote::RetryPolicy;

namespace {

// Objects and refs in memory. The next fail[op] calls of `op` fail with code[op] (unavailable
// unless said); with land[op], such a call does its work before it fails, as a request whose
// answer was lost.
class FakeBackend final : public remote::Backend {
public:
    std::map<std::string, int> fail;
    std::map<std::string, Errc> code;
    std::map<std::string, bool> land;
    std::map<std::string, int> calls;
    std::map<std::string, std::string> objects;
    std::map<std::string, RefValue> refs;

    const std::string& location() const override { return location_; }

    Result<std::vector<remote::Entry>> list(const std::string& prefix) override {
        if (auto e = failure("list")) return *e;
        std::vector<remote::Entry> out;
        for (const auto& [k, v] : objects)
            if (k.starts_with(prefix)) out.push_back({k, v.size()});
        return out;
    }
    Status read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) override {
        if (auto e = failure("read")) return *e;
        auto it = objects.find(key);
        if (it == objects.end()) return make_error(Errc::not_found, "no " + key);
        auto b = as_bytes(it->second);
        offset = std::min<uint64_t>(offset, b.size());
        length = std::min<uint64_t>(length, b.size() - offset);
        out.assign(b.begin() + static_cast<ptrdiff_t>(offset), b.begin() + static_cast<ptrdiff_t>(offset + length));
        return {};
    }
    Status read_all(const std::string& key, std::vector<std::byte>& out) override {
        if (auto e = failure("read_all")) return *e;
        auto it = objects.find(key);
        if (it == objects.end()) return make_error(Errc::not_found, "no " + key);
        out = test::bytes_of(it->second);
        return {};
    }
    Status write(const std::string& key, std::span<const std::byte> data) override {
        bool landed = landing("write");
        if (landed) objects[key] = std::string(as_chars(data));
        if (auto e = failure("write")) return *e;
        objects[key] = std::string(as_chars(data));
        return {};
    }
    Status write_file(const std::string&, int, uint64_t) override { return make_error(Errc::unsupported, "fake"); }
    Result<std::optional<RefValue>> read_ref(const std::string& key) override {
        if (auto e = failure("read_ref")) return *e;
        auto it = refs.find(key);
        if (it == refs.end()) return std::optional<RefValue>();
        return std::optional<RefValue>(it->second);
    }
    Result<std::string> create_ref(const std::string& key, std::string_view data) override {
        if (landing("create_ref") && !refs.contains(key)) set(key, data);
        if (auto e = failure("create_ref")) return *e;
        if (refs.contains(key)) return make_error(Errc::conflict, key + " exists");
        return set(key, data);
    }
    Result<std::string> update_ref(const std::string& key, std::string_view data, const std::string& expected) override {
        auto it = refs.find(key);
        bool matches = it != refs.end() && it->second.version == expected;
        if (landing("update_ref") && matches) set(key, data);
        if (auto e = failure("update_ref")) return *e;
        if (!matches) return make_error(Errc::conflict, key + " changed");
        return set(key, data);
    }
    Status remove(const std::string& key) override {
        if (auto e = failure("remove")) return *e;
        objects.erase(key);
        refs.erase(key);
        return {};
    }

    std::string set(const std::string& key, std::string_view data) {
        std::string v = "v" + std::to_string(++generation_);
        refs[key] = RefValue{std::string(data), v};
        return v;
    }

private:
    // Counts the call; whether this one is to fail after doing its work.
    bool landing(const std::string& op) { return fail[op] > 0 && land[op]; }
    std::optional<Error> failure(const std::string& op) {
        ++calls[op];
        if (fail[op] <= 0) return std::nullopt;
        --fail[op];
        Errc c = code.contains(op) ? code[op] : Errc::unavailable;
        return make_error(c, op + " failed (fake)");
    }

    std::string location_ = "fake://remote";
    int generation_ = 0;
};

// A clock that only sleep() moves.
struct FakeClock {
    std::chrono::steady_clock::time_point now{};
    std::vector<std::chrono::milliseconds> sleeps;

    RetryPolicy policy(RetryPolicy p = {}) {
        p.sleep = [this](std::chrono::milliseconds d) {
            sleeps.push_back(d);
            now += d;
        };
        p.now = [this] { return now; };
        return p;
    }
};

struct Fixture {
    FakeClock clock;
    FakeBackend* fake = nullptr;
    std::unique_ptr<RetryingBackend> backend;

    explicit Fixture(RetryPolicy p = {}) {
        auto f = std::make_unique<FakeBackend>();
        fake = f.get();
        backend = std::make_unique<RetryingBackend>(std::move(f), clock.policy(std::move(p)));
    }
};

}  // namespace

TEST_CASE("transient failures are retried after growing, jittered delays", "[remote_retry]") {
    Fixture f;
    f.fake->objects["k"] = "value";
    f.fake->fail["read_all"] = 3;
    std::vector<std::byte> out;
    REQUIRE(f.backend->read_all("k", out).ok());
    CHECK(test::string_of(out) == "value");
    CHECK(f.fake->calls["read_all"] == 4);
    REQUIRE(f.clock.sleeps.size() == 3);
    // Each wait lies between half and all of 100, 200, 400 ms.
    std::chrono::milliseconds base = 100ms;
    for (auto d : f.clock.sleeps) {
        CHECK(d >= base / 2);
        CHECK(d <= base);
        base *= 2;
    }
}

TEST_CASE("retries stop after max_attempts, with the last error and the count", "[remote_retry]") {
    Fixture f;
    f.fake->fail["list"] = 1000;
    auto r = f.backend->list("");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unavailable);
    CHECK(r.error().message.find("list failed (fake)") != std::string::npos);
    CHECK(r.error().message.find("after 8 attempts") != std::string::npos);
    CHECK(f.fake->calls["list"] == 8);
    REQUIRE(f.clock.sleeps.size() == 7);
    for (auto d : f.clock.sleeps) CHECK(d <= 5000ms);
    CHECK(f.clock.sleeps.back() >= 2500ms);  // the cap, jittered
}

TEST_CASE("retries stop when the next wait would pass max_total", "[remote_retry]") {
    RetryPolicy p;
    p.max_total = 500ms;
    Fixture f(p);
    f.fake->fail["remove"] = 1000;
    auto r = f.backend->remove("k");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unavailable);
    // Waits of at least 50, 100, 200, 400 ms: two always fit in 500 ms, four never do.
    CHECK(f.clock.sleeps.size() >= 2);
    CHECK(f.clock.sleeps.size() <= 3);
    std::chrono::milliseconds total{0};
    for (auto d : f.clock.sleeps) total += d;
    CHECK(total <= 500ms);
    CHECK(f.fake->calls["remove"] == static_cast<int>(f.clock.sleeps.size()) + 1);
}

TEST_CASE("errors other than unavailable pass through at once", "[remote_retry]") {
    for (Errc c : {Errc::not_found, Errc::denied, Errc::no_space, Errc::io, Errc::conflict, Errc::busy, Errc::invalid_argument}) {
        Fixture f;
        f.fake->fail["write"] = 1;
        f.fake->code["write"] = c;
        auto r = f.backend->write("k", as_bytes("x"));
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == c);
        CHECK(r.error().message == "write failed (fake)");
        CHECK(f.fake->calls["write"] == 1);
        CHECK(f.clock.sleeps.empty());
    }
}

TEST_CASE("a write retried stores its bytes once they get through", "[remote_retry]") {
    Fixture f;
    f.fake->fail["write"] = 2;
    f.fake->land["write"] = true;
    REQUIRE(f.backend->write("k", as_bytes("bytes")).ok());
    CHECK(f.fake->objects["k"] == "bytes");
    CHECK(f.fake->calls["write"] == 3);
}

TEST_CASE("a create_ref that landed before its answer was lost ends as success", "[remote_retry]") {
    Fixture f;
    f.fake->fail["create_ref"] = 1;
    f.fake->land["create_ref"] = true;
    auto v = f.backend->create_ref("refs/main", "tip");
    REQUIRE(v.ok());
    CHECK(*v == f.fake->refs["refs/main"].version);
    CHECK(f.fake->refs["refs/main"].data == "tip");
    CHECK(f.fake->calls["create_ref"] == 2);  // the lost one, then a conflict with ourselves
    CHECK(f.fake->calls["read_ref"] == 1);
}

TEST_CASE("an update_ref that landed before its answer was lost ends as success", "[remote_retry]") {
    Fixture f;
    std::string v1 = f.fake->set("refs/main", "one");
    f.fake->fail["update_ref"] = 2;
    f.fake->land["update_ref"] = true;
    auto v = f.backend->update_ref("refs/main", "two", v1);
    REQUIRE(v.ok());
    CHECK(*v == f.fake->refs["refs/main"].version);
    CHECK(*v != v1);
    CHECK(f.fake->refs["refs/main"].data == "two");
    CHECK(f.fake->calls["update_ref"] == 3);
    CHECK(f.fake->calls["read_ref"] == 1);
}

TEST_CASE("a ref call that did not land and then conflicts is a conflict", "[remote_retry]") {
    Fixture f;
    f.fake->set("refs/main", "someone else's");
    f.fake->fail["create_ref"] = 1;
    auto c = f.backend->create_ref("refs/main", "ours");
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == Errc::conflict);
    CHECK(f.fake->refs["refs/main"].data == "someone else's");

    std::string v = f.fake->refs["refs/main"].version;
    f.fake->fail["update_ref"] = 1;
    auto u = f.backend->update_ref("refs/main", "ours", "stale");
    REQUIRE_FALSE(u.ok());
    CHECK(u.error().code == Errc::conflict);
    CHECK(f.fake->refs["refs/main"].version == v);
}

TEST_CASE("a first-attempt conflict is not read back", "[remote_retry]") {
    Fixture f;
    f.fake->set("refs/main", "ours");
    auto c = f.backend->create_ref("refs/main", "ours");
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == Errc::conflict);
    CHECK(f.fake->calls["read_ref"] == 0);
}

TEST_CASE("a lost ref change that cannot be read back is unavailable, not a conflict", "[remote_retry]") {
    Fixture f;
    std::string v1 = f.fake->set("refs/main", "one");
    f.fake->fail["update_ref"] = 1;
    f.fake->land["update_ref"] = true;
    f.fake->fail["read_ref"] = 1;
    f.fake->code["read_ref"] = Errc::denied;
    auto u = f.backend->update_ref("refs/main", "two", v1);
    REQUIRE_FALSE(u.ok());
    CHECK(u.error().code == Errc::unavailable);
    CHECK(u.error().message.find("cannot tell") != std::string::npos);
}
