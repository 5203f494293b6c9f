// The Docker volume plugin protocol (docker-plugin/volume_driver.cpp), without a socket.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/size.h"
#include "repo/repository.h"
#include "support.h"
#include "volume_driver.h"

using namespace dvol;
using dvol::plugin::Reply;
using dvol::plugin::VolumeDriver;
using dvol::test::TempDir;
using nlohmann::json;

namespace {

struct DriverFixture {
    TempDir dir;
    std::unique_ptr<Repository> repo;
    std::unique_ptr<VolumeDriver> driver;
    DriverFixture() {
        auto r = Repository::open(dir.path());
        REQUIRE(r.ok());
        repo = std::move(*r);
        driver = std::make_unique<VolumeDriver>(*repo);
    }
    json call(std::string_view endpoint, std::string_view body) {
        Reply r = driver->handle(endpoint, body);
        json j = json::parse(r.body, nullptr, false);
        REQUIRE(j.is_object());
        j["_status"] = r.status;
        return j;
    }
    std::string err(std::string_view endpoint, std::string_view body) {
        json j = call(endpoint, body);
        REQUIRE(j.contains("Err"));
        return j["Err"].get<std::string>();
    }
};

}  // namespace

TEST_CASE("activate and capabilities", "[volume_driver]") {
    DriverFixture f;
    auto a = f.call("Plugin.Activate", "");
    CHECK(a["Implements"] == json::array({"VolumeDriver"}));
    auto c = f.call("VolumeDriver.Capabilities", "{}");
    CHECK(c["Capabilities"]["Scope"] == "local");
}

TEST_CASE("create, get, list, path, mount, unmount, remove", "[volume_driver]") {
    DriverFixture f;
    CHECK(f.err("VolumeDriver.Create", R"({"Name":"frob_mysql","Opts":{}})").empty());
    CHECK(f.err("VolumeDriver.Create", R"({"Name":"frob_mysql"})").empty());  // again: no error
    auto active = f.repo->active_volume();
    CHECK_FALSE(active->has_value());  // the plugin does not change the active volume

    std::string live = f.repo->live_dir("frob_mysql");
    auto g = f.call("VolumeDriver.Get", R"({"Name":"frob_mysql"})");
    CHECK(g["Err"] == "");
    CHECK(g["Volume"]["Name"] == "frob_mysql");
    CHECK(g["Volume"]["Mountpoint"] == live);
    CHECK(g["Volume"]["Status"]["branch"] == "master");

    auto l = f.call("VolumeDriver.List", "{}");
    REQUIRE(l["Volumes"].size() == 1);
    CHECK(l["Volumes"][0]["Name"] == "frob_mysql");

    CHECK(f.call("VolumeDriver.Path", R"({"Name":"frob_mysql"})")["Mountpoint"] == live);
    auto m = f.call("VolumeDriver.Mount", R"({"Name":"frob_mysql","ID":"abc"})");
    CHECK(m["Err"] == "");
    CHECK(m["Mountpoint"] == live);
    CHECK(f.call("VolumeDriver.Get", R"({"Name":"frob_mysql"})")["Volume"]["Status"]["mounts"] == 1);

    // A mounted volume is not removed.
    CHECK(f.err("VolumeDriver.Remove", R"({"Name":"frob_mysql"})").find("mounted") != std::string::npos);
    CHECK(f.err("VolumeDriver.Unmount", R"({"Name":"frob_mysql","ID":"abc"})").empty());
    CHECK(f.err("VolumeDriver.Unmount", R"({"Name":"frob_mysql","ID":"abc"})").empty());  // idempotent
    CHECK(f.err("VolumeDriver.Remove", R"({"Name":"frob_mysql"})").empty());
    CHECK_FALSE(f.err("VolumeDriver.Get", R"({"Name":"frob_mysql"})").empty());
    CHECK(f.call("VolumeDriver.List", "{}")["Volumes"].empty());
}

TEST_CASE("create options: branch, exclusive, unknown ones", "[volume_driver]") {
    DriverFixture f;
    CHECK(f.err("VolumeDriver.Create", R"({"Name":"v","Opts":{"branch":"dev","exclusive":"true"}})").empty());
    CHECK(*f.repo->active_branch("v") == "dev");
    CHECK(f.err("VolumeDriver.Mount", R"({"Name":"v","ID":"one"})").empty());
    CHECK(f.err("VolumeDriver.Mount", R"({"Name":"v","ID":"two"})").find("exclusive") != std::string::npos);

    auto bogus = f.err("VolumeDriver.Create", R"({"Name":"w","Opts":{"bogus":"1"}})");
    CHECK(bogus.find("bogus") != std::string::npos);
    CHECK(f.repo->list_volumes()->size() == 1);  // w was not created
    CHECK_FALSE(f.err("VolumeDriver.Create", R"({"Name":"w","Opts":{"exclusive":"maybe"}})").empty());
    CHECK_FALSE(f.err("VolumeDriver.Create", R"({"Name":"w","Opts":{"branch":"../x"}})").empty());
    CHECK_FALSE(f.err("VolumeDriver.Create", R"({"Name":"w","Opts":{"branch":5}})").empty());
    CHECK_FALSE(f.err("VolumeDriver.Create", R"({"Name":"w","Opts":[1]})").empty());
    CHECK(f.repo->list_volumes()->size() == 1);
}

TEST_CASE("malformed requests get an Err and change nothing", "[volume_driver]") {
    DriverFixture f;
    const char* bodies[] = {"{bad", "[]", "42", R"({"Name":42})", R"({"Name":""})", R"({"Name":"../x"})",
                            R"({"Name":"a/b"})", R"({"Name":".."})", R"({"Name":null})", "{}", "\xff\xfe"};
    for (const char* endpoint : {"VolumeDriver.Create", "VolumeDriver.Remove", "VolumeDriver.Mount", "VolumeDriver.Get"})
        for (const char* body : bodies) {
            INFO(endpoint << " " << body);
            CHECK_FALSE(f.err(endpoint, body).empty());
        }
    CHECK_FALSE(f.err("VolumeDriver.Create", std::string(R"({"Name":")") + "\xc3\x28" + "\"}").empty());
    CHECK(f.repo->list_volumes()->empty());

    REQUIRE(f.err("VolumeDriver.Create", R"({"Name":"v"})").empty());
    CHECK_FALSE(f.err("VolumeDriver.Mount", R"({"Name":"v"})").empty());             // no ID
    CHECK_FALSE(f.err("VolumeDriver.Mount", R"({"Name":"v","ID":""})").empty());
    CHECK_FALSE(f.err("VolumeDriver.Mount", R"({"Name":"v","ID":"a b"})").empty());
    CHECK_FALSE(f.err("VolumeDriver.Mount", "{\"Name\":\"v\",\"ID\":\"" + std::string(300, 'a') + "\"}").empty());
    CHECK(f.repo->docker_mounts("v")->empty());

    auto unknown = f.call("VolumeDriver.Frobnicate", R"({"Name":"v"})");
    CHECK(unknown["_status"] == 404);
    CHECK_FALSE(unknown["Err"].get<std::string>().empty());
    CHECK(json::parse(VolumeDriver::too_large("VolumeDriver.Create").body)["Err"].get<std::string>().find("larger") !=
          std::string::npos);
}

namespace {

// Clones the test runs by hand: start() is only recorded.
struct FakeClones : plugin::Clones {
    std::vector<plugin::CloneJob> started;
    plugin::CloneState now;
    void start(const plugin::CloneJob& job) override {
        started.push_back(job);
        now = plugin::CloneState{plugin::CloneState::Kind::running, {}, 1, 2};
    }
    plugin::CloneState state(const std::string&) override { return now; }
};

// A store that pushed volume "pg" (branches master and dev) to a directory remote, and a
// plugin on another store with that remote added as "team".
struct FromFixture {
    TempDir remote_dir, source_dir, dir;
    std::unique_ptr<Repository> source, repo;
    FakeClones clones;
    std::unique_ptr<VolumeDriver> driver;

    FromFixture() {
        auto s = Repository::open(source_dir.path());
        REQUIRE(s.ok());
        source = std::move(*s);
        REQUIRE(source->config_set("user.name", "T"));
        REQUIRE(source->config_set("user.email", "t@example.com"));
        REQUIRE(source->create_volume("pg"));
        test::write_file(source->live_dir("pg") + "/table", "rows");
        REQUIRE(source->commit("pg", "m", nullptr));
        REQUIRE(source->checkout("pg", "dev", CheckoutMode::create, false));
        test::write_file(source->live_dir("pg") + "/table", "dev rows");
        REQUIRE(source->commit("pg", "d", nullptr));
        REQUIRE(source->push(RemoteSpec{remote_dir.path(), ""}, "pg", std::string("master")));
        REQUIRE(source->push(RemoteSpec{remote_dir.path(), ""}, "pg", std::string("dev")));
        auto r = Repository::open(dir.path());
        REQUIRE(r.ok());
        repo = std::move(*r);
        REQUIRE(repo->add_remote("team", remote_dir.path()));
        driver = std::make_unique<VolumeDriver>(*repo, &clones, std::chrono::milliseconds(300));
    }
    json call(std::string_view endpoint, std::string_view body) {
        json j = json::parse(driver->handle(endpoint, body).body, nullptr, false);
        REQUIRE(j.is_object());
        return j;
    }
    std::string err(std::string_view endpoint, std::string_view body) { return call(endpoint, body)["Err"].get<std::string>(); }
};

}  // namespace

TEST_CASE("from=: Create answers at once, Mount waits for the clone", "[volume_driver]") {
    FromFixture f;
    CHECK(f.err("VolumeDriver.Create", R"({"Name":"db","Opts":{"from":"team/pg/dev"}})").empty());
    REQUIRE(f.clones.started.size() == 1);
    CHECK(f.clones.started[0].volume == "db");
    CHECK(f.clones.started[0].remote_volume == "pg");
    CHECK(f.clones.started[0].branch == std::optional<std::string>("dev"));
    // Get and List answer from the store while the clone runs.
    auto g = f.call("VolumeDriver.Get", R"({"Name":"db"})");
    CHECK(g["Err"] == "");
    CHECK(g["Volume"]["Status"]["from"] == "team/pg/dev");
    CHECK(g["Volume"]["Status"]["clone"]["done"] == false);
    CHECK(f.call("VolumeDriver.List", "{}")["Volumes"].size() == 1);
    // Creating it again with the same from= is fine; another source is not.
    CHECK(f.err("VolumeDriver.Create", R"({"Name":"db","Opts":{"from":"team/pg/dev"}})").empty());
    CHECK_FALSE(f.err("VolumeDriver.Create", R"({"Name":"db","Opts":{"from":"team/other"}})").empty());
    // Not removed while it is being cloned; a Mount gives up after its wait, naming progress.
    CHECK(f.err("VolumeDriver.Remove", R"({"Name":"db"})").find("being cloned") != std::string::npos);
    CHECK(f.err("VolumeDriver.Mount", R"({"Name":"db","ID":"c1"})").find("still being cloned") != std::string::npos);
    CHECK(f.repo->docker_mounts("db")->empty());

    // The clone (run here as the plugin's thread would) finishes it; Mount then succeeds.
    CloneOptions options;
    options.name = "db";
    options.branch = "dev";
    auto done = f.repo->clone(RemoteSpec{"team", ""}, "pg", options);
    REQUIRE(done);
    CHECK(done->resumed);
    f.clones.now = plugin::CloneState{};
    auto m = f.call("VolumeDriver.Mount", R"({"Name":"db","ID":"c1"})");
    CHECK(m["Err"] == "");
    CHECK(test::read_file(f.repo->live_dir("db") + "/table") == "dev rows");
    CHECK(*f.repo->active_branch("db") == "dev");
    CHECK_FALSE(f.call("VolumeDriver.Get", R"({"Name":"db"})")["Volume"]["Status"].contains("clone"));
}

TEST_CASE("from=: a failed clone is reported by Mount and started again", "[volume_driver]") {
    FromFixture f;
    REQUIRE(f.err("VolumeDriver.Create", R"({"Name":"db","Opts":{"from":"team/pg"}})").empty());
    f.clones.now = plugin::CloneState{plugin::CloneState::Kind::failed, "the remote went away", 0, 0};
    // Mount starts it again (the fake then says running, and the wait runs out).
    CHECK_FALSE(f.err("VolumeDriver.Mount", R"({"Name":"db","ID":"c1"})").empty());
    CHECK(f.clones.started.size() == 2);
}

TEST_CASE("from=: bad values and unknown remotes create nothing", "[volume_driver]") {
    FromFixture f;
    for (const char* v : {"team", "team/", "/pg", "team/pg/dev/x", "team/../pg", "a b/pg"}) {
        INFO(v);
        CHECK(f.err("VolumeDriver.Create", json{{"Name", "db"}, {"Opts", {{"from", v}}}}.dump()).find("option from") != std::string::npos);
    }
    CHECK(f.err("VolumeDriver.Create", R"({"Name":"db","Opts":{"from":"nosuch/pg"}})").find("no remote named nosuch") != std::string::npos);
    CHECK(f.err("VolumeDriver.Create", R"({"Name":"db","Opts":{"from":"team/missing"}})").find("no volume missing") != std::string::npos);
    CHECK(f.err("VolumeDriver.Create", R"({"Name":"db","Opts":{"from":"team/pg/nob"}})").find("no branch") != std::string::npos);
    CHECK_FALSE(f.err("VolumeDriver.Create", R"({"Name":"db","Opts":{"from":"team/pg/dev","branch":"master"}})").empty());
    CHECK(f.repo->list_volumes()->empty());
    CHECK(f.clones.started.empty());
}

namespace {

// Lazy mounts the test watches: each call recorded; a mount fails while `fail` is set.
struct FakeLazyMounts : plugin::LazyMounts {
    std::vector<std::string> mounted, unmounted;
    std::optional<std::string> fail;
    Status mount(const std::string& volume) override {
        if (fail) return make_error(Errc::io, *fail);
        mounted.push_back(volume);
        return {};
    }
    Status unmount(const std::string& volume, const std::string& live_dir) override {
        unmounted.push_back(volume + " " + live_dir);
        return {};
    }
};

struct LazyFixture : FromFixture {
    FakeLazyMounts lazy;
    LazyFixture() { driver = std::make_unique<VolumeDriver>(*repo, &clones, std::chrono::milliseconds(300), &lazy); }
};

}  // namespace

TEST_CASE("parse_size: bytes with K, M, G or T", "[volume_driver]") {
    CHECK(parse_size("1048576") == std::optional<uint64_t>(1048576));
    CHECK(parse_size("512M") == std::optional<uint64_t>(512ull << 20));
    CHECK(parse_size("20g") == std::optional<uint64_t>(20ull << 30));
    CHECK(parse_size("1GB") == std::optional<uint64_t>(1ull << 30));
    CHECK(parse_size("2T") == std::optional<uint64_t>(2ull << 40));
    for (const char* bad : {"", "M", "B", "MB", "-1", "1.5G", " 1G", "1 G", "1X", "9999999999999", "999999999999T"}) {
        INFO(bad);
        CHECK_FALSE(parse_size(bad));
    }
}

TEST_CASE("lazy=true: Create makes a lazy clone, Mount mounts it, Remove unmounts it", "[volume_driver]") {
    LazyFixture f;
    CHECK(f.err("VolumeDriver.Create", R"({"Name":"db","Opts":{"from":"team/pg/dev","lazy":"true","cache-size":"64M"}})").empty());
    REQUIRE(f.clones.started.size() == 1);
    CHECK(f.clones.started[0].lazy);
    CHECK(*f.repo->volume_option("db", kLazyCacheOption) == std::optional<std::string>(std::to_string(64ull << 20)));
    auto g = f.call("VolumeDriver.Get", R"({"Name":"db"})");
    CHECK(g["Volume"]["Status"]["lazy"] == true);
    CHECK(g["Volume"]["Status"]["clone"]["done"] == false);
    // The same options again are fine; without lazy=true they name another volume.
    CHECK(f.err("VolumeDriver.Create", R"({"Name":"db","Opts":{"from":"team/pg/dev","lazy":"true"}})").empty());
    CHECK(f.err("VolumeDriver.Create", R"({"Name":"db","Opts":{"from":"team/pg/dev"}})").find("lazy") != std::string::npos);
    // Mount waits for the clone (metadata only) and mounts nothing before it is done.
    CHECK(f.err("VolumeDriver.Mount", R"({"Name":"db","ID":"c1"})").find("still being cloned") != std::string::npos);
    CHECK(f.lazy.mounted.empty());

    CloneOptions options;
    options.name = "db";
    options.branch = "dev";
    options.lazy = true;
    auto done = f.repo->clone(RemoteSpec{"team", ""}, "pg", options);
    REQUIRE(done);
    CHECK(done->resumed);
    CHECK(done->fetched.received.objects > 0);
    f.clones.now = plugin::CloneState{};
    CHECK_FALSE(path_exists(f.repo->live_dir("db") + "/table"));  // nothing restored: the mount shows it

    // A mount that fails is Mount's error, and counts no mount.
    f.lazy.fail = "no /dev/fuse here";
    CHECK(f.err("VolumeDriver.Mount", R"({"Name":"db","ID":"c1"})").find("no /dev/fuse") != std::string::npos);
    CHECK(f.repo->docker_mounts("db")->empty());
    f.lazy.fail.reset();
    auto m = f.call("VolumeDriver.Mount", R"({"Name":"db","ID":"c1"})");
    CHECK(m["Err"] == "");
    CHECK(m["Mountpoint"] == f.repo->live_dir("db"));
    CHECK(f.lazy.mounted == std::vector<std::string>{"db"});
    // Path, Get and List do not mount (nor fetch).
    CHECK(f.call("VolumeDriver.Path", R"({"Name":"db"})")["Mountpoint"] == f.repo->live_dir("db"));
    CHECK(f.call("VolumeDriver.Get", R"({"Name":"db"})")["Volume"]["Status"]["cache-size"] == std::to_string(64ull << 20));
    CHECK(f.call("VolumeDriver.List", "{}")["Volumes"].size() == 1);
    CHECK(f.lazy.mounted.size() == 1);

    CHECK(f.err("VolumeDriver.Remove", R"({"Name":"db"})").find("is mounted") != std::string::npos);
    CHECK(f.lazy.unmounted.empty());
    CHECK(f.err("VolumeDriver.Unmount", R"({"Name":"db","ID":"c1"})").empty());
    CHECK(f.lazy.unmounted.empty());  // the FUSE mount stays (and its cache) until the volume goes
    CHECK(f.err("VolumeDriver.Remove", R"({"Name":"db"})").empty());
    CHECK(f.lazy.unmounted == std::vector<std::string>{"db " + f.repo->live_dir("db")});
    CHECK(f.repo->list_volumes()->empty());
}

TEST_CASE("lazy=true: bad combinations create nothing", "[volume_driver]") {
    LazyFixture f;
    auto err = [&](const json& opts) { return f.err("VolumeDriver.Create", json{{"Name", "db"}, {"Opts", opts}}.dump()); };
    CHECK(err({{"lazy", "true"}}).find("needs from=") != std::string::npos);
    CHECK(err({{"from", "team/pg"}, {"lazy", "yes"}}).find("true or false") != std::string::npos);
    CHECK(err({{"from", "team/pg"}, {"cache-size", "64M"}}).find("goes with lazy=true") != std::string::npos);
    CHECK(err({{"from", "team/pg"}, {"lazy", "true"}, {"cache-size", "lots"}}).find("must be a size") != std::string::npos);
    CHECK(err({{"from", "team/pg"}, {"lazy", "true"}, {"cache-size", "1M"}}).find("below the least") != std::string::npos);
    CHECK(err({{"from", "team/missing"}, {"lazy", "true"}}).find("no volume missing") != std::string::npos);
    // A plugin that cannot mount lazy volumes refuses the option.
    VolumeDriver no_lazy(*f.repo, &f.clones, std::chrono::milliseconds(300));
    auto r = json::parse(no_lazy.handle("VolumeDriver.Create", R"({"Name":"db","Opts":{"from":"team/pg","lazy":"true"}})").body);
    CHECK(r["Err"].get<std::string>().find("does not mount lazy volumes") != std::string::npos);
    CHECK(f.repo->list_volumes()->empty());
    CHECK(f.clones.started.empty());
    // lazy=false is an ordinary clone.
    CHECK(err({{"from", "team/pg"}, {"lazy", "false"}}).empty());
    REQUIRE(f.clones.started.size() == 1);
    CHECK_FALSE(f.clones.started[0].lazy);
}
