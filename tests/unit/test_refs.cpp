#include <catch2/catch.hpp>

#include "meta/db.h"
#include "meta/refs.h"
#include "meta/schema.h"
#include "store/hash.h"
#include "support.h"

using namespace dvol;
using dvol::test::TempDir;

namespace {

struct RefsFixture {
    TempDir dir;
    std::unique_ptr<meta::Db> db;
    std::unique_ptr<meta::Refs> refs;
    int64_t vol = 0;

    RefsFixture() {
        auto d = meta::Db::open(dir / "dvol.db");
        REQUIRE(d);
        db = std::move(*d);
        REQUIRE(meta::init_schema(*db));
        refs = std::make_unique<meta::Refs>(*db);
        auto v = refs->add_volume("v", "master", 1);
        REQUIRE(v);
        vol = *v;
    }

    std::optional<ObjectId> tip(const std::string& branch) {
        auto b = refs->branch(vol, branch);
        REQUIRE(b);
        REQUIRE(*b);
        return (*b)->tip;
    }
};

}  // namespace

TEST_CASE("a volume starts with one branch without commits", "[refs]") {
    RefsFixture f;
    auto v = f.refs->volume("v");
    REQUIRE(v);
    REQUIRE(*v);
    CHECK((*v)->id == f.vol);
    CHECK((*v)->branch == "master");
    CHECK_FALSE(f.tip("master"));
    auto again = f.refs->add_volume("v", "master", 2);
    REQUIRE_FALSE(again);
    CHECK(again.error().code == Errc::already_exists);
    auto none = f.refs->volume("w");
    REQUIRE(none);
    CHECK_FALSE(*none);
}

TEST_CASE("swap_tip moves a tip only from what it expects, and logs the move", "[refs]") {
    RefsFixture f;
    ObjectId c1 = sha256("c1"), c2 = sha256("c2"), c3 = sha256("c3");
    REQUIRE(f.refs->swap_tip(f.vol, "master", std::nullopt, c1, "commit (initial): one"));
    CHECK(f.tip("master") == c1);

    // A writer that read the tip before c1 landed loses, and nothing changes.
    auto stale = f.refs->swap_tip(f.vol, "master", std::nullopt, c3, "commit: lost");
    REQUIRE_FALSE(stale);
    CHECK(stale.error().code == Errc::conflict);
    auto wrong = f.refs->swap_tip(f.vol, "master", c3, c2, "commit: lost");
    REQUIRE_FALSE(wrong);
    CHECK(wrong.error().code == Errc::conflict);
    CHECK(f.tip("master") == c1);

    REQUIRE(f.refs->swap_tip(f.vol, "master", c1, c2, "commit: two"));
    CHECK(f.tip("master") == c2);
    auto missing = f.refs->swap_tip(f.vol, "nosuch", std::nullopt, c1, "x");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code == Errc::not_found);

    auto log = f.refs->reflog(f.vol);
    REQUIRE(log);
    REQUIRE(log->size() == 2);  // failed swaps leave no entry
    CHECK((*log)[0].action == "commit: two");
    CHECK((*log)[0].old_tip == c1);
    CHECK((*log)[0].new_tip == c2);
    CHECK((*log)[1].old_tip == std::nullopt);
}

TEST_CASE("branches, commit rows and dangling tips", "[refs]") {
    RefsFixture f;
    ObjectId c1 = sha256("c1"), tree = sha256("tree");
    std::vector<std::byte> enc{std::byte{1}, std::byte{2}};
    REQUIRE(f.refs->add_commit(f.vol, c1, tree, 10, enc));
    REQUIRE(f.refs->add_commit(f.vol, c1, tree, 10, enc));  // the same row again is fine
    REQUIRE(f.refs->swap_tip(f.vol, "master", std::nullopt, c1, "commit"));
    REQUIRE(f.refs->add_branch(f.vol, "dev", c1));
    auto dup = f.refs->add_branch(f.vol, "dev", std::nullopt);
    REQUIRE_FALSE(dup);
    CHECK(dup.error().code == Errc::already_exists);
    auto bs = f.refs->branches(f.vol);
    REQUIRE(bs);
    REQUIRE(bs->size() == 2);
    CHECK((*bs)[0].name == "dev");

    auto got = f.refs->commit(c1);
    REQUIRE(got);
    REQUIRE(*got);
    CHECK(**got == enc);
    auto between = f.refs->commits_between(f.vol, ObjectId{}, c1, 10);
    REQUIRE(between);
    CHECK(*between == std::vector<ObjectId>{c1});

    auto clean = f.refs->dangling_branches(f.vol);
    REQUIRE(clean);
    CHECK(clean->empty());
    REQUIRE(f.refs->drop_commits(std::vector<std::pair<int64_t, ObjectId>>{{f.vol, c1}}));
    auto dangling = f.refs->dangling_branches(f.vol);
    REQUIRE(dangling);
    CHECK(dangling->size() == 2);
    auto log = f.refs->reflog(f.vol);
    REQUIRE(log);
    CHECK(log->empty());  // entries leading to a dropped commit go with it

    auto dropped = f.refs->drop_branch(f.vol, "dev");
    REQUIRE(dropped);
    CHECK(*dropped);
    auto again = f.refs->drop_branch(f.vol, "dev");
    REQUIRE(again);
    CHECK_FALSE(*again);
}

TEST_CASE("dropping a volume drops what belongs to it", "[refs]") {
    RefsFixture f;
    REQUIRE(f.refs->set_volume_option(f.vol, "exclusive", "true"));
    REQUIRE(f.refs->add_docker_mount(f.vol, "m1", 1));
    REQUIRE(f.refs->add_docker_mount(f.vol, "m1", 2));
    auto ms = f.refs->docker_mounts(f.vol);
    REQUIRE(ms);
    REQUIRE(ms->size() == 1);
    CHECK((*ms)[0].count == 2);
    REQUIRE(f.refs->set_config("core.active_volume", "v"));
    REQUIRE(f.refs->unset_config_if("core.active_volume", "other"));
    CHECK(*f.refs->config("core.active_volume") == std::optional<std::string>("v"));
    REQUIRE(f.refs->unset_config_if("core.active_volume", "v"));
    CHECK(*f.refs->config("core.active_volume") == std::nullopt);

    REQUIRE(f.refs->drop_volume(f.vol));
    auto v = f.refs->volume("v");
    REQUIRE(v);
    CHECK_FALSE(*v);
    auto opt = f.refs->volume_option(f.vol, "exclusive");
    REQUIRE(opt);
    CHECK_FALSE(*opt);
    auto after = f.refs->docker_mounts(f.vol);
    REQUIRE(after);
    CHECK(after->empty());
}
