#include <catch2/catch.hpp>

#include <string>

#include "meta/db.h"
#include "support.h"

using namespace dvol;
using dvol::test::StoreFixture;

namespace {

// The names of the volumes table, as `db` sees them now.
std::string volume_names(meta::Db& db) {
    auto q = db.prepare("SELECT name FROM volumes ORDER BY name");
    REQUIRE(q);
    std::string out;
    for (;;) {
        auto row = q->step();
        REQUIRE(row);
        if (!*row) break;
        out += q->text(0) + " ";
    }
    return out;
}

Status add_volume(meta::Db& db, const std::string& name) {
    DVOL_TRY(auto q, db.prepare("INSERT INTO volumes(name, active_branch, created_ns) VALUES(?, 'master', 0)"));
    return q.bind(1, name).run();
}

struct TwoConnections : StoreFixture {
    std::unique_ptr<meta::Db> other;
    TwoConnections() {
        auto d = meta::Db::open(dir / "dvol.db");
        REQUIRE(d);
        other = std::move(*d);
    }
};

}  // namespace

TEST_CASE("a read scope reads one snapshot until it ends", "[db]") {
    TwoConnections f;
    REQUIRE(add_volume(*f.db, "a"));
    {
        auto scope = meta::Db::ReadScope::begin(*f.db);
        REQUIRE(scope);
        CHECK(volume_names(*f.db) == "a ");
        REQUIRE(add_volume(*f.other, "b"));  // committed by another connection meanwhile
        CHECK(volume_names(*f.db) == "a ");  // one read transaction: the snapshot holds
        {
            auto inner = meta::Db::ReadScope::begin(*f.db);  // nested: same transaction
            REQUIRE(inner);
            CHECK(volume_names(*f.db) == "a ");
        }
        CHECK(volume_names(*f.db) == "a ");  // the inner scope did not end it
    }
    CHECK(volume_names(*f.db) == "a b ");
}

TEST_CASE("a write transaction inside a read scope commits, and the reads after it see it", "[db]") {
    TwoConnections f;
    auto scope = meta::Db::ReadScope::begin(*f.db);
    REQUIRE(scope);
    CHECK(volume_names(*f.db) == "");
    {
        auto txn = meta::Db::Transaction::begin(*f.db);
        REQUIRE(txn);
        REQUIRE(add_volume(*f.db, "mine"));
        REQUIRE(txn->commit());
    }
    CHECK(volume_names(*f.other) == "mine ");  // durable, not held in the read transaction
    CHECK(volume_names(*f.db) == "mine ");
    // The scope reads one snapshot again after the write transaction.
    REQUIRE(add_volume(*f.other, "theirs"));
    CHECK(volume_names(*f.db) == "mine ");
    {
        auto txn = meta::Db::Transaction::begin(*f.db);
        REQUIRE(txn);
        REQUIRE(add_volume(*f.db, "rolled-back"));
    }  // rolled back
    CHECK(volume_names(*f.db) == "mine theirs ");
}

TEST_CASE("a write outside a transaction inside a read scope is refused and changes nothing", "[db]") {
    TwoConnections f;
    {
        auto scope = meta::Db::ReadScope::begin(*f.db);
        REQUIRE(scope);
        auto st = add_volume(*f.db, "stray");
        REQUIRE_FALSE(st);
        CHECK(st.error().code == Errc::internal);
        auto ex = f.db->exec("DELETE FROM volumes");
        REQUIRE_FALSE(ex);
        CHECK(ex.error().code == Errc::internal);
    }
    CHECK(volume_names(*f.other) == "");
    REQUIRE(add_volume(*f.db, "after"));  // outside the scope, autocommit as before
    CHECK(volume_names(*f.other) == "after ");
}
