#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/fs.h"
#include "meta/db.h"
#include "meta/schema.h"
#include "repo/stat_cache.h"
#include "support.h"

using namespace dvol;
using dvol::test::StoreFixture;

namespace {

struct CacheFixture : StoreFixture {
    int64_t vol = 0;
    int64_t other_vol = 0;
    CacheFixture() {
        REQUIRE(db->exec("INSERT INTO volumes(name, active_branch, created_ns) VALUES('v1', 'master', 0)"));
        vol = db->last_insert_rowid();
        REQUIRE(db->exec("INSERT INTO volumes(name, active_branch, created_ns) VALUES('v2', 'master', 0)"));
        other_vol = db->last_insert_rowid();
    }
};

StatKey key_at(int64_t mtime_ns) {
    StatKey k;
    k.size = 12345;
    k.mtime_ns = mtime_ns;
    k.ctime_ns = mtime_ns + 7;
    k.ino = 987654;
    k.mode = S_IFREG | 0644;
    k.uid = 1000;
    k.gid = 100;
    return k;
}

FileContent content_of(std::string_view tag) {
    FileContent c;
    c.extents = {Extent{sha256(tag), 12000, false}, Extent{{}, 345, true}};
    return c;
}

constexpr int64_t kT = 1'700'000'000'000'000'000;
constexpr int64_t kLater = kT + kRacyWindowNs + 1'000'000;  // a scan well after the write

std::optional<FileContent> lookup(StatCache& c, const std::string& path, const StatKey& k) {
    auto r = c.lookup(path, k);
    REQUIRE(r);
    return *r;
}

}  // namespace

TEST_CASE("lookup hits when the stat key matches and the file is old", "[stat_cache]") {
    CacheFixture f;
    StatCache cache(*f.db, f.vol);
    StatKey k = key_at(kT);
    REQUIRE(cache.store("dir/file", k, kLater, content_of("a")));
    auto hit = lookup(cache, "dir/file", k);
    REQUIRE(hit);
    CHECK(*hit == content_of("a"));
    // Another StatCache object on the same volume sees the row; another volume does not.
    StatCache again(*f.db, f.vol);
    CHECK(lookup(again, "dir/file", k));
    StatCache other(*f.db, f.other_vol);
    CHECK_FALSE(lookup(other, "dir/file", k));
    CHECK_FALSE(lookup(cache, "dir/file2", k));
    CHECK_FALSE(lookup(cache, "dir", k));
}

TEST_CASE("lookup misses when any stat field differs", "[stat_cache]") {
    CacheFixture f;
    StatCache cache(*f.db, f.vol);
    StatKey k = key_at(kT);
    REQUIRE(cache.store("f", k, kLater, content_of("a")));
    REQUIRE(lookup(cache, "f", k));
    std::vector<std::pair<std::string, StatKey>> variants;
    StatKey v = k;
    v.size += 1;
    variants.emplace_back("size", v);
    v = k;
    v.mtime_ns += 1;
    variants.emplace_back("mtime", v);
    v = k;
    v.ctime_ns += 1;
    variants.emplace_back("ctime", v);
    v = k;
    v.ino += 1;
    variants.emplace_back("inode", v);
    v = k;
    v.mode = S_IFREG | 0755;
    variants.emplace_back("mode", v);
    v = k;
    v.uid += 1;
    variants.emplace_back("uid", v);
    v = k;
    v.gid += 1;
    variants.emplace_back("gid", v);
    for (const auto& [what, key] : variants) {
        INFO(what << " differs");
        CHECK_FALSE(lookup(cache, "f", key));
    }
}

TEST_CASE("a racily clean file always misses", "[stat_cache]") {
    CacheFixture f;
    StatCache cache(*f.db, f.vol);
    StatKey k = key_at(kT);
    SECTION("scanned in the same instant") {
        REQUIRE(cache.store("f", k, kT, content_of("a")));
        CHECK_FALSE(lookup(cache, "f", k));
    }
    SECTION("scanned just inside the window") {
        REQUIRE(cache.store("f", k, kT + kRacyWindowNs - 1, content_of("a")));
        CHECK_FALSE(lookup(cache, "f", k));
    }
    SECTION("scanned exactly at the window's end") {
        REQUIRE(cache.store("f", k, kT + kRacyWindowNs, content_of("a")));
        CHECK(lookup(cache, "f", k));
    }
    SECTION("mtime in the future of the scan") {
        REQUIRE(cache.store("f", k, kT - 1'000'000'000, content_of("a")));
        CHECK_FALSE(lookup(cache, "f", k));
    }
    SECTION("a row recorded as never seen") {
        REQUIRE(cache.store("f", k, 0, content_of("a")));
        CHECK_FALSE(lookup(cache, "f", k));
    }
}

TEST_CASE("store replaces an earlier row", "[stat_cache]") {
    CacheFixture f;
    StatCache cache(*f.db, f.vol);
    StatKey k1 = key_at(kT), k2 = key_at(kT + 5);
    REQUIRE(cache.store("f", k1, kLater, content_of("old")));
    REQUIRE(cache.store("f", k2, kLater, content_of("new")));
    CHECK_FALSE(lookup(cache, "f", k1));
    auto hit = lookup(cache, "f", k2);
    REQUIRE(hit);
    CHECK(*hit == content_of("new"));
}

TEST_CASE("indirect content survives the cache", "[stat_cache]") {
    CacheFixture f;
    StatCache cache(*f.db, f.vol);
    FileContent c;
    c.indirect = true;
    c.lists = {ExtentListRef{sha256("l1"), 1 << 20, kMaxExtentsPerList}, ExtentListRef{sha256("l2"), 2000, 20}};
    REQUIRE(cache.store("big", key_at(kT), kLater, c));
    auto hit = lookup(cache, "big", key_at(kT));
    REQUIRE(hit);
    CHECK(*hit == c);
}

TEST_CASE("forget(dir) removes the directory's rows but not siblings with the same prefix", "[stat_cache]") {
    CacheFixture f;
    StatCache cache(*f.db, f.vol);
    StatKey k = key_at(kT);
    std::vector<std::string> below = {"dir", "dir/a", "dir/sub/b", "dir/sub/deeper/c", "dir/\xff\xfe"};
    std::vector<std::string> kept = {"dirX", "dir.x", "dir-x", "dir0", "di", "dirx/a", "dir_/a", "adir/b", "x/dir/a", "dir "};
    for (const auto& p : below) REQUIRE(cache.store(p, k, kLater, content_of(p)));
    for (const auto& p : kept) REQUIRE(cache.store(p, k, kLater, content_of(p)));
    StatCache other(*f.db, f.other_vol);
    REQUIRE(other.store("dir/a", k, kLater, content_of("other")));

    REQUIRE(cache.forget("dir"));
    for (const auto& p : below) {
        INFO(p);
        CHECK_FALSE(lookup(cache, p, k));
    }
    for (const auto& p : kept) {
        INFO(p);
        CHECK(lookup(cache, p, k));
    }
    CHECK(lookup(other, "dir/a", k));

    REQUIRE(cache.forget("dir/sub"));  // nothing left there: fine
    REQUIRE(cache.forget("dirx/a"));
    CHECK_FALSE(lookup(cache, "dirx/a", k));
    CHECK(lookup(cache, "dirX", k));
}

TEST_CASE("batching queues writes until write_batch", "[stat_cache]") {
    CacheFixture f;
    StatCache cache(*f.db, f.vol);
    StatKey k = key_at(kT);
    REQUIRE(cache.store("gone", k, kLater, content_of("gone")));
    REQUIRE(cache.store("tree/x", k, kLater, content_of("x")));

    cache.begin_batch();
    REQUIRE(cache.store("new", k, kLater, content_of("new")));
    REQUIRE(cache.forget("gone"));
    REQUIRE(cache.forget("tree"));
    REQUIRE(cache.store("tree/y", k, kLater, content_of("y")));  // after the forget: must survive
    // Nothing has reached the database yet.
    CHECK_FALSE(lookup(cache, "new", k));
    CHECK(lookup(cache, "gone", k));
    CHECK(lookup(cache, "tree/x", k));

    {
        auto txn = meta::Db::Transaction::begin(*f.db);
        REQUIRE(txn);
        REQUIRE(cache.write_batch());
        REQUIRE(txn->commit());
    }
    CHECK(lookup(cache, "new", k));
    CHECK_FALSE(lookup(cache, "gone", k));
    CHECK_FALSE(lookup(cache, "tree/x", k));
    CHECK(lookup(cache, "tree/y", k));

    // write_batch ends batching: later writes go straight through.
    REQUIRE(cache.store("direct", k, kLater, content_of("d")));
    CHECK(lookup(cache, "direct", k));
}

TEST_CASE("a batch rolled back with its transaction leaves nothing", "[stat_cache]") {
    CacheFixture f;
    StatCache cache(*f.db, f.vol);
    StatKey k = key_at(kT);
    cache.begin_batch();
    REQUIRE(cache.store("a", k, kLater, content_of("a")));
    {
        auto txn = meta::Db::Transaction::begin(*f.db);
        REQUIRE(txn);
        REQUIRE(cache.write_batch());
        // destroyed without commit: rolled back
    }
    CHECK_FALSE(lookup(cache, "a", k));
}

TEST_CASE("forget_all and prune", "[stat_cache]") {
    CacheFixture f;
    dvol::test::TempDir live;
    REQUIRE(make_dirs(live / "sub"));
    dvol::test::write_file(live / "sub/present", "x");
    dvol::test::write_file(live / "top", "y");
    StatCache cache(*f.db, f.vol);
    StatKey k = key_at(kT);
    for (std::string p : {"sub/present", "top", "sub/absent", "absent"}) REQUIRE(cache.store(p, k, kLater, content_of(p)));
    StatCache other(*f.db, f.other_vol);
    REQUIRE(other.store("absent", k, kLater, content_of("o")));

    {
        auto txn = meta::Db::Transaction::begin(*f.db);
        REQUIRE(txn);
        REQUIRE(cache.prune(live.path()));
        REQUIRE(txn->commit());
    }
    CHECK(lookup(cache, "sub/present", k));
    CHECK(lookup(cache, "top", k));
    CHECK_FALSE(lookup(cache, "sub/absent", k));
    CHECK_FALSE(lookup(cache, "absent", k));
    CHECK(lookup(other, "absent", k));  // other volumes are untouched

    REQUIRE(cache.forget_all());
    CHECK_FALSE(lookup(cache, "sub/present", k));
    CHECK_FALSE(lookup(cache, "top", k));
    CHECK(lookup(other, "absent", k));
}

TEST_CASE("a damaged cache row is a miss, not an error", "[stat_cache]") {
    CacheFixture f;
    StatCache cache(*f.db, f.vol);
    StatKey k = key_at(kT);
    REQUIRE(cache.store("f", k, kLater, content_of("a")));
    REQUIRE(f.db->exec("UPDATE stat_cache SET content = x'02ff'"));
    auto r = cache.lookup("f", k);
    REQUIRE(r);
    CHECK_FALSE(*r);
}

TEST_CASE("stat_key takes every field from stat", "[stat_cache]") {
    dvol::test::TempDir d;
    dvol::test::write_file(d / "f", "hello");
    dvol::test::set_mtime_ns(d / "f", 1'600'000'000'123'456'789);
    struct stat st = dvol::test::lstat_of(d / "f");
    StatKey k = stat_key(st);
    CHECK(k.size == 5);
    CHECK(k.mtime_ns == 1'600'000'000'123'456'789);
    CHECK(k.ctime_ns == static_cast<int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec);
    CHECK(k.ino == st.st_ino);
    CHECK(k.mode == st.st_mode);
    CHECK(k.uid == st.st_uid);
    CHECK(k.gid == st.st_gid);
    int64_t before = now_ns();
    CHECK(now_ns() >= before);
    CHECK(before > k.mtime_ns);
}

TEST_CASE("read-ahead lookups find every row, in the walk's order and out of it", "[stat_cache]") {
    // A scan visits the directory `a` (so a/...) before the file `a.b`, which sorts before
    // a/... in byte order; and more rows than a batch or than are kept aside must be found or
    // asked for, never answered wrongly.
    CacheFixture f;
    StatKey k = key_at(kT);
    std::vector<std::string> walk;
    for (int i = 0; i < 5000; ++i) walk.push_back(fmt::format("a/f{:05d}", i));
    walk.push_back("a.b");
    walk.push_back("b");
    {
        StatCache writer(*f.db, f.vol);
        for (const auto& p : walk) REQUIRE(writer.store(p, k, kLater, content_of(p)));
        REQUIRE(writer.store("gone", k, kLater, content_of("gone")));  // a file no longer there
        StatCache other(*f.db, f.other_vol);
        REQUIRE(other.store("b", k, kLater, content_of("other")));
    }
    StatCache cache(*f.db, f.vol);
    cache.read_ahead();
    for (const auto& p : walk) {
        INFO(p);
        auto got = lookup(cache, p, k);
        REQUIRE(got);
        CHECK(*got == content_of(p));
    }
    CHECK_FALSE(lookup(cache, "missing", k));
    // A row put aside and let go (more than 4,096 aside) is asked for by a point query.
    StatCache again(*f.db, f.vol);
    again.read_ahead();
    auto last = lookup(again, "b", k);
    REQUIRE(last);
    CHECK(*last == content_of("b"));
    for (int i : {0, 100, 4999}) {
        auto got = lookup(again, fmt::format("a/f{:05d}", i), k);
        REQUIRE(got);
        CHECK(*got == content_of(fmt::format("a/f{:05d}", i)));
    }
    auto ab = lookup(again, "a.b", k);
    REQUIRE(ab);
    CHECK(*ab == content_of("a.b"));
    // A stale row still gives the previous content.
    std::optional<FileContent> stale;
    StatCache third(*f.db, f.vol);
    third.read_ahead();
    auto miss = third.lookup("a/f00001", key_at(kT + 1), &stale);
    REQUIRE(miss);
    CHECK_FALSE(*miss);
    REQUIRE(stale);
    CHECK(*stale == content_of("a/f00001"));
}

namespace {

// The xattrs a lookup gives for `k` (none: read them), asserting the content is a hit.
std::optional<Xattrs> xattrs_of(StatCache& c, const std::string& path, const StatKey& k, bool read_ahead = false) {
    if (read_ahead) c.read_ahead();
    std::optional<Xattrs> x;
    auto r = c.lookup(path, k, nullptr, &x);
    REQUIRE(r);
    REQUIRE(*r);
    return x;
}

}  // namespace

TEST_CASE("a row's xattrs are given only when its ctime too is older than its scan by the racy window", "[stat_cache]") {
    CacheFixture f;
    StatCache cache(*f.db, f.vol);
    StatKey k = key_at(kT);  // ctime kT + 7
    Xattrs x = {{"security.selinux", std::string("system_u:object_r\0", 18)}, {"user.a", ""}};
    bool ahead = GENERATE(false, true);  // one query per lookup, or the scan's read-ahead
    INFO("read ahead: " << ahead);
    SECTION("ctime well before the scan") {
        REQUIRE(cache.store("f", k, kLater, content_of("a"), &x));
        auto got = xattrs_of(cache, "f", k, ahead);
        REQUIRE(got);
        CHECK(*got == x);
    }
    SECTION("no xattrs is a list too") {
        Xattrs none;
        REQUIRE(cache.store("f", k, kLater, content_of("a"), &none));
        auto got = xattrs_of(cache, "f", k, ahead);
        REQUIRE(got);
        CHECK(got->empty());
    }
    SECTION("ctime inside the window: the content is trusted, the xattrs are not") {
        // mtime + 2 s <= scan, but ctime (7 ns later) + 2 s > scan: an xattr changed in the
        // tick the row's stat was taken in would leave ctime as it is.
        REQUIRE(cache.store("f", k, kT + kRacyWindowNs, content_of("a"), &x));
        CHECK_FALSE(xattrs_of(cache, "f", k, ahead));
    }
    SECTION("ctime exactly at the window's end") {
        REQUIRE(cache.store("f", k, k.ctime_ns + kRacyWindowNs, content_of("a"), &x));
        CHECK(xattrs_of(cache, "f", k, ahead));
    }
    SECTION("a row without xattrs (restore's, or an older dvol's) does not know them") {
        REQUIRE(cache.store("f", k, kLater, content_of("a")));
        CHECK_FALSE(xattrs_of(cache, "f", k, ahead));
    }
    SECTION("xattrs that do not decode are not known, and the content still is") {
        REQUIRE(cache.store("f", k, kLater, content_of("a"), &x));
        REQUIRE(f.db->exec("UPDATE stat_cache SET xattrs = x'05ff'"));
        CHECK_FALSE(xattrs_of(cache, "f", k, ahead));
    }
    SECTION("a stat that differs gives neither") {
        REQUIRE(cache.store("f", k, kLater, content_of("a"), &x));
        StatKey moved = k;
        moved.ctime_ns += 1;  // what an xattr change does
        std::optional<Xattrs> got = Xattrs{};
        auto r = cache.lookup("f", moved, nullptr, &got);
        REQUIRE(r);
        CHECK_FALSE(*r);
        CHECK_FALSE(got);
    }
}

TEST_CASE("batched rows keep their xattrs, or their lack", "[stat_cache]") {
    CacheFixture f;
    StatCache cache(*f.db, f.vol);
    StatKey k = key_at(kT);
    Xattrs x = {{"user.b", "2"}};
    cache.begin_batch();
    REQUIRE(cache.store("known", k, kLater, content_of("a"), &x));
    REQUIRE(cache.store("unknown", k, kLater, content_of("b")));
    REQUIRE(cache.write_batch());
    auto got = xattrs_of(cache, "known", k);
    REQUIRE(got);
    CHECK(*got == x);
    CHECK_FALSE(xattrs_of(cache, "unknown", k));
    std::map<std::string, bool> has;
    REQUIRE(cache.for_each_row([&](const StatCache::Row& r) -> Status {
        has[r.path] = r.xattrs.has_value();
        return {};
    }));
    CHECK(has == std::map<std::string, bool>{{"known", true}, {"unknown", false}});
}

TEST_CASE("a version 4 store gets the xattrs column, its rows not knowing them", "[stat_cache]") {
    dvol::test::TempDir dir;
    auto opened = meta::Db::open(dir / "dvol.db");
    REQUIRE(opened);
    auto& db = **opened;
    // The tables of schema version 4 that matter here, with a row written by that version.
    REQUIRE(db.exec("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                    "INSERT INTO meta VALUES('schema_version', '4');"
                    "CREATE TABLE volumes(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, active_branch TEXT NOT NULL, created_ns INTEGER NOT NULL);"
                    "INSERT INTO volumes VALUES(1, 'v', 'master', 0);"
                    "CREATE TABLE stat_cache(volume_id INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE, path BLOB NOT NULL, "
                    "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, ino INTEGER NOT NULL, mode INTEGER NOT NULL, "
                    "uid INTEGER NOT NULL, gid INTEGER NOT NULL, scan_ns INTEGER NOT NULL, content BLOB NOT NULL, "
                    "PRIMARY KEY(volume_id, path)) WITHOUT ROWID;"));
    StatKey k = key_at(kT);
    {
        auto q = db.prepare("INSERT INTO stat_cache VALUES(1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        REQUIRE(q);
        auto enc = encode_content(content_of("old"));
        q->bind_blob(1, as_bytes(std::string("f"))).bind(2, static_cast<int64_t>(k.size)).bind(3, k.mtime_ns).bind(4, k.ctime_ns);
        q->bind(5, static_cast<int64_t>(k.ino)).bind(6, k.mode).bind(7, k.uid).bind(8, k.gid).bind(9, kLater).bind_blob(10, enc);
        REQUIRE(q->run());
    }
    REQUIRE(meta::init_schema(db));
    {
        auto q = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'");
        REQUIRE(q);
        auto row = q->step();
        REQUIRE(row);
        REQUIRE(*row);
        CHECK(q->text(0) == std::to_string(meta::kSchemaVersion));
    }
    StatCache cache(db, 1);
    auto hit = lookup(cache, "f", k);
    REQUIRE(hit);
    CHECK(*hit == content_of("old"));
    CHECK_FALSE(xattrs_of(cache, "f", k));
    // New rows record them; opening again changes nothing.
    Xattrs x = {{"user.c", "3"}};
    REQUIRE(cache.store("g", k, kLater, content_of("new"), &x));
    REQUIRE(meta::init_schema(db));
    auto got = xattrs_of(cache, "g", k);
    REQUIRE(got);
    CHECK(*got == x);
}
