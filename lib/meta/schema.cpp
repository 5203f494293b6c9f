#include "meta/schema.h"

#include <cstdlib>
#include <map>

#include <fmt/format.h>

namespace dvol::meta {

namespace {

// Ids (commit, tree, object) are 32-byte SHA-256 blobs. Paths in the stat cache are raw bytes
// relative to the live directory. What every table and column holds: docs/FORMAT.md, "SQLite".
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS config(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS volumes(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  active_branch TEXT NOT NULL,
  created_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS branches(
  volume_id INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  tip BLOB,
  PRIMARY KEY(volume_id, name));
-- A commit belongs to each volume that recorded it: two volumes can record the very same
-- commit (same tree, parents, author, second and message), and each keeps its own row.
CREATE TABLE IF NOT EXISTS commits(
  volume_id INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  id BLOB NOT NULL,
  tree BLOB NOT NULL,
  time INTEGER NOT NULL,
  encoded BLOB NOT NULL,
  PRIMARY KEY(volume_id, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS commits_by_id ON commits(id);
-- Branch tip changes, so that commits dropped by reset or branch -D can be found until gc.
CREATE TABLE IF NOT EXISTS reflog(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  volume_id INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  branch TEXT NOT NULL,
  old BLOB,
  new BLOB,
  time INTEGER NOT NULL,
  action TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS packs(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS objects(
  id BLOB PRIMARY KEY,
  pack_id INTEGER NOT NULL REFERENCES packs(id),
  offset INTEGER NOT NULL,
  stored_len INTEGER NOT NULL,
  raw_len INTEGER NOT NULL,
  crc INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stat_cache(
  volume_id INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  path BLOB NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  ctime_ns INTEGER NOT NULL,
  ino INTEGER NOT NULL,
  mode INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  scan_ns INTEGER NOT NULL,
  content BLOB NOT NULL,
  xattrs BLOB,
  PRIMARY KEY(volume_id, path)) WITHOUT ROWID;
-- Per-volume settings given at creation, e.g. exclusive=true from `docker volume create -o`.
CREATE TABLE IF NOT EXISTS volume_options(
  volume_id INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY(volume_id, key)) WITHOUT ROWID;
-- Docker's mounts of a volume, counted per mount ID, so a restarted plugin loses none.
CREATE TABLE IF NOT EXISTS mounts(
  volume_id INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  mount_id TEXT NOT NULL,
  count INTEGER NOT NULL,
  time INTEGER NOT NULL,
  PRIMARY KEY(volume_id, mount_id)) WITHOUT ROWID;
-- Remotes this store has talked to, by URL (their names are config keys remote.<name>.url).
CREATE TABLE IF NOT EXISTS remotes(
  id INTEGER PRIMARY KEY,
  url TEXT NOT NULL UNIQUE);
-- What this store knows of each remote's packs, from the pack indexes it wrote there or read
-- from there: which objects the remote holds and where, so that a push sends only what the
-- remote lacks and a fetch reads one record with one ranged request.
CREATE TABLE IF NOT EXISTS remote_packs(
  id INTEGER PRIMARY KEY,
  remote_id INTEGER NOT NULL REFERENCES remotes(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  kind INTEGER NOT NULL,
  size INTEGER NOT NULL,
  UNIQUE(remote_id, name));
CREATE TABLE IF NOT EXISTS remote_objects(
  remote_id INTEGER NOT NULL REFERENCES remotes(id) ON DELETE CASCADE,
  id BLOB NOT NULL,
  pack_id INTEGER NOT NULL REFERENCES remote_packs(id) ON DELETE CASCADE,
  offset INTEGER NOT NULL,
  stored_len INTEGER NOT NULL,
  raw_len INTEGER NOT NULL,
  PRIMARY KEY(remote_id, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS remote_objects_by_pack ON remote_objects(pack_id);
-- Remote-tracking branches: a remote branch's tip as last pushed or fetched, for a local volume.
CREATE TABLE IF NOT EXISTS remote_branches(
  volume_id INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  remote_id INTEGER NOT NULL REFERENCES remotes(id) ON DELETE CASCADE,
  branch TEXT NOT NULL,
  tip BLOB NOT NULL,
  PRIMARY KEY(volume_id, remote_id, branch)) WITHOUT ROWID;
-- Facts about a tree and everything below it, found once by walking the trees: a tree's id
-- names its content, so a row never goes stale (gc drops the rows of trees it deletes).
CREATE TABLE IF NOT EXISTS tree_facts(
  tree BLOB PRIMARY KEY,
  has_xattrs INTEGER NOT NULL) WITHOUT ROWID;
-- The directory cache (lib/repo/stat_cache.h): per directory of a volume's live directory
-- that a commit scanned, the fingerprints of its entries and its tree.
CREATE TABLE IF NOT EXISTS dir_cache(
  volume_id INTEGER NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  path BLOB NOT NULL,
  own BLOB NOT NULL,
  full BLOB NOT NULL,
  tree BLOB NOT NULL,
  scan_ns INTEGER NOT NULL,
  PRIMARY KEY(volume_id, path)) WITHOUT ROWID;
)sql";

Result<bool> has_column(Db& db, const char* table, const char* column) {
    DVOL_TRY(auto q, db.prepare(fmt::format("SELECT count(*) FROM pragma_table_info('{}') WHERE name = '{}'", table, column)));
    DVOL_TRY(bool row, q.step());
    return row && q.int64(0) > 0;
}

}  // namespace

Status init_schema(Db& db) {
    // The common case, an existing store of this version, needs no write lock.
    {
        DVOL_TRY(auto probe, db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'"));
        DVOL_TRY(bool row, probe.step());
        if (row && probe.int64(0) == 1) {
            DVOL_TRY(auto q, db.prepare("SELECT value FROM meta WHERE key='schema_version'"));
            DVOL_TRY(bool has, q.step());
            if (has && q.text(0) == std::to_string(kSchemaVersion)) return {};
        }
    }
    DVOL_TRY(auto txn, Db::Transaction::begin(db));
    DVOL_CHECK(db.exec(kSchema));
    DVOL_TRY(auto q, db.prepare("SELECT value FROM meta WHERE key='schema_version'"));
    DVOL_TRY(bool row, q.step());
    std::string version = row ? q.text(0) : "";
    q.reset();  // no statement pending while the tables change
    if (!row) {
        DVOL_TRY(auto ins, db.prepare("INSERT INTO meta(key, value) VALUES('schema_version', ?)"));
        DVOL_CHECK(ins.bind(1, std::to_string(kSchemaVersion)).run());
    } else if (version == "1" || version == "2" || version == "3" || version == "4" || version == "5" ||
               version == "6" || version == "7") {
        // v1 -> v2 -> v3 -> v4: kSchema above created the reflog, volume_options and mounts
        // tables, and the remotes' tables. v4 -> v5: objects gains crc, left NULL (unknown) in
        // the rows already there. v5 -> v6: stat_cache gains xattrs, NULL (unknown) in the rows
        // already there, so those files' xattrs are listed until a commit records them. v7 -> v8:
        // dir_cache, empty (the next commit fills it).
        DVOL_TRY(bool has_crc, has_column(db, "objects", "crc"));
        if (!has_crc) DVOL_CHECK(db.exec("ALTER TABLE objects ADD COLUMN crc INTEGER"));
        DVOL_TRY(bool has_xattrs, has_column(db, "stat_cache", "xattrs"));
        if (!has_xattrs) DVOL_CHECK(db.exec("ALTER TABLE stat_cache ADD COLUMN xattrs BLOB"));
        DVOL_TRY(auto up, db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'"));
        DVOL_CHECK(up.bind(1, std::to_string(kSchemaVersion)).run());
    } else if (version != std::to_string(kSchemaVersion)) {
        return make_error(Errc::unsupported, fmt::format("the store has schema version {}; this dvol understands version {}",
                                                         version, kSchemaVersion));
    }
    return txn.commit();
}

Status rebuild_stat_cache(Db& db) {
    auto sound = [&]() -> bool {
        auto q = db.prepare("PRAGMA quick_check");
        if (!q) return false;
        auto row = q->step();
        return row && *row && q->text(0) == "ok";
    };
    {
        DVOL_TRY(auto txn, Db::Transaction::begin(db));
        if (db.exec("DELETE FROM stat_cache") && db.exec("DELETE FROM dir_cache") && txn.commit() && sound()) return {};
    }
    // Pages too damaged for SQLite to walk (or to free): the table is taken out of the schema
    // by hand, its pages left unused, and VACUUM writes the database again without them.
    {
        DVOL_TRY(auto txn, Db::Transaction::begin(db));
        DVOL_CHECK(db.exec("PRAGMA writable_schema = ON"));
        Status st = db.exec("DELETE FROM sqlite_master WHERE tbl_name IN ('stat_cache', 'dir_cache')");
        if (st) st = txn.commit();
        (void)db.exec("PRAGMA writable_schema = OFF");
        DVOL_CHECK(st);
    }
    DVOL_CHECK(db.exec("VACUUM"));
    DVOL_TRY(auto txn, Db::Transaction::begin(db));
    DVOL_CHECK(db.exec(kSchema));
    return txn.commit();
}

namespace {

// SQLite's own words in one of Db's error messages ("cannot run a query on PATH: WORDS (hint)").
std::string sqlite_words(std::string m) {
    if (auto hint = m.rfind(" ("); hint != std::string::npos && m.ends_with(")")) m.resize(hint);
    if (auto colon = m.rfind(": "); colon != std::string::npos) m.erase(0, colon + 2);
    return m;
}

}  // namespace

Result<std::vector<DbDamage>> check_integrity(Db& db) {
    // The whole check; when SQLite cannot even run it, one check per table, so the damaged
    // ones can still be named.
    auto run_check = [&](const std::string& sql, std::vector<std::string>& into) -> Status {
        DVOL_TRY(auto q, db.prepare(sql));
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) return {};
            into.push_back(q.text(0));
        }
    };
    std::vector<std::string> messages;
    std::vector<DbDamage> per_table;
    if (auto whole = run_check("PRAGMA integrity_check", messages); !whole) {
        messages.clear();
        std::vector<std::string> tables;
        {
            DVOL_TRY(auto q, db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'"));
            for (;;) {
                DVOL_TRY(bool row, q.step());
                if (!row) break;
                tables.push_back(q.text(0));
            }
        }
        for (const auto& t : tables) {
            std::vector<std::string> mine;
            auto st = run_check(fmt::format("PRAGMA integrity_check(\"{}\")", t), mine);
            if (!st) per_table.push_back(DbDamage{t, sqlite_words(st.error().message)});
            for (auto& m : mine)
                if (m != "ok") per_table.push_back(DbDamage{t, m});
        }
        if (per_table.empty()) per_table.push_back(DbDamage{"", sqlite_words(whole.error().message)});
        return per_table;
    }
    std::vector<DbDamage> out;
    if (messages.size() == 1 && messages[0] == "ok") return out;
    // Which table each b-tree belongs to (an index's is its table's), when the schema still reads.
    std::map<int64_t, std::string> by_root;
    std::map<std::string, std::string> by_name;
    if (auto q = db.prepare("SELECT name, tbl_name, rootpage FROM sqlite_master WHERE rootpage > 0")) {
        for (;;) {
            auto row = q->step();
            if (!row || !*row) break;
            by_root[q->int64(2)] = q->text(1);
            by_name[q->text(0)] = q->text(1);
        }
    }
    for (auto& m : messages) {
        DbDamage d{"", m};
        // "Tree 17 page 45 cell 3: ...", "wrong # of entries in index X", "row 5 missing from index X",
        // "NULL value in X.col", "non-unique entry in index X".
        if (auto t = m.find("Tree "); t != std::string::npos) {
            int64_t root = std::atoll(m.c_str() + t + 5);
            if (auto it = by_root.find(root); it != by_root.end()) d.table = it->second;
        }
        if (d.table.empty()) {
            for (const auto& key : {std::string("index "), std::string("NULL value in ")}) {
                auto at = m.find(key);
                if (at == std::string::npos) continue;
                std::string name = m.substr(at + key.size());
                name = name.substr(0, name.find_first_of(". "));
                if (auto it = by_name.find(name); it != by_name.end()) d.table = it->second;
            }
        }
        out.push_back(std::move(d));
    }
    return out;
}

}  // namespace dvol::meta
