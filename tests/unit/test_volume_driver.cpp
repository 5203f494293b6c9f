// The Docker volume plugin protocol (docker-plugin/volume_driver.cpp), without a socket.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

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
