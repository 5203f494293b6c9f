// Volume options and Docker's mount counts (lib/repo/docker_mounts.cpp).
#include <catch2/catch.hpp>

#include "repo/repository.h"
#include "support.h"

using namespace dvol;
using dvol::test::TempDir;

namespace {

std::unique_ptr<Repository> open_repo(const TempDir& dir) {
    auto r = Repository::open(dir.path());
    REQUIRE(r.ok());
    return std::move(*r);
}

int64_t total(Repository& repo, const std::string& volume) {
    auto ms = repo.docker_mounts(volume);
    REQUIRE(ms.ok());
    int64_t n = 0;
    for (const auto& m : *ms) n += m.count;
    return n;
}

}  // namespace

TEST_CASE("mounts are counted per mount ID and survive reopening the store", "[mounts]") {
    TempDir dir;
    {
        auto repo = open_repo(dir);
        REQUIRE(repo->create_volume("db", false).ok());
        REQUIRE(repo->add_docker_mount("db", "c1").ok());
        REQUIRE(repo->add_docker_mount("db", "c1").ok());  // Docker may send one ID twice
        REQUIRE(repo->add_docker_mount("db", "c2").ok());
        CHECK(total(*repo, "db") == 3);
    }
    auto repo = open_repo(dir);
    auto ms = repo->docker_mounts("db");
    REQUIRE(ms.ok());
    REQUIRE(ms->size() == 2);
    CHECK(ms->at(0).id == "c1");
    CHECK(ms->at(0).count == 2);
    auto r = repo->remove_docker_mount("db", "c1");
    REQUIRE(r.ok());
    CHECK(*r);
    CHECK(total(*repo, "db") == 2);
    CHECK(*repo->remove_docker_mount("db", "c1"));
    CHECK_FALSE(*repo->remove_docker_mount("db", "c1"));  // that ID holds nothing any more
    CHECK_FALSE(*repo->remove_docker_mount("db", "never"));
    CHECK(total(*repo, "db") == 1);
}

TEST_CASE("an exclusive volume refuses a second mount ID", "[mounts]") {
    TempDir dir;
    auto repo = open_repo(dir);
    REQUIRE(repo->create_volume("db", false).ok());
    REQUIRE(repo->set_volume_option("db", "exclusive", "true").ok());
    auto opt = repo->volume_option("db", "exclusive");
    REQUIRE(opt.ok());
    CHECK(*opt == std::optional<std::string>("true"));
    REQUIRE(repo->add_docker_mount("db", "c1").ok());
    REQUIRE(repo->add_docker_mount("db", "c1").ok());
    auto second = repo->add_docker_mount("db", "c2");
    REQUIRE_FALSE(second.ok());
    CHECK(second.error().code == Errc::busy);
    CHECK(second.error().message.find("exclusive") != std::string::npos);
    CHECK(total(*repo, "db") == 2);
    REQUIRE(*repo->remove_docker_mount("db", "c1"));
    REQUIRE(*repo->remove_docker_mount("db", "c1"));
    CHECK(repo->add_docker_mount("db", "c2").ok());
}

TEST_CASE("create_volume without make_active leaves the active volume alone", "[mounts]") {
    TempDir dir;
    auto repo = open_repo(dir);
    REQUIRE(repo->create_volume("first").ok());
    REQUIRE(repo->create_volume("second", false).ok());
    auto active = repo->active_volume();
    REQUIRE(active.ok());
    CHECK(*active == std::optional<std::string>("first"));
}

TEST_CASE("options and mounts of an unknown volume are errors, and go with a removed volume", "[mounts]") {
    TempDir dir;
    auto repo = open_repo(dir);
    CHECK(repo->add_docker_mount("nosuch", "c1").error().code == Errc::not_found);
    CHECK(repo->docker_mounts("../x").error().code == Errc::invalid_argument);
    REQUIRE(repo->create_volume("db", false).ok());
    REQUIRE(repo->add_docker_mount("db", "c1").ok());
    REQUIRE(repo->set_volume_option("db", "exclusive", "true").ok());
    REQUIRE(repo->remove_volume("db").ok());
    REQUIRE(repo->create_volume("db", false).ok());
    CHECK(total(*repo, "db") == 0);
    CHECK_FALSE(repo->volume_option("db", "exclusive")->has_value());
}
