#include "meta/db.h"

#include <sqlite3.h>

#include <fmt/format.h>

namespace dvol::meta {

Stmt::~Stmt() {
    if (s_) {
        sqlite3_reset(s_);
        sqlite3_clear_bindings(s_);
    }
}

Stmt& Stmt::bind(int idx, int64_t v) {
    sqlite3_bind_int64(s_, idx, v);
    return *this;
}

Stmt& Stmt::bind(int idx, std::string_view text) {
    sqlite3_bind_text(s_, idx, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
}

Stmt& Stmt::bind_blob(int idx, std::span<const std::byte> blob) {
    // A zero-length blob must still be a blob, not NULL.
    static const char empty = 0;
    const void* p = blob.empty() ? static_cast<const void*>(&empty) : blob.data();
    sqlite3_bind_blob(s_, idx, p, static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    return *this;
}

Stmt& Stmt::bind_null(int idx) {
    sqlite3_bind_null(s_, idx);
    return *this;
}

Result<bool> Stmt::step() {
    if (db_->reading_ && !sqlite3_stmt_readonly(s_))
        return make_error(Errc::internal, fmt::format("a write ran inside a read scope on {}: {}", db_->path_, sqlite3_sql(s_)));
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return db_->last_error("run a query on");
}

Status Stmt::run() {
    for (;;) {
        auto row = step();
        if (!row || !*row) {
            sqlite3_reset(s_);  // ready to be bound and run again
            if (!row) return std::move(row).error();
            return {};
        }
    }
}

void Stmt::reset() { sqlite3_reset(s_); }

int64_t Stmt::int64(int col) const { return sqlite3_column_int64(s_, col); }

std::string Stmt::text(int col) const {
    auto p = sqlite3_column_text(s_, col);
    int n = sqlite3_column_bytes(s_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

std::span<const std::byte> Stmt::blob_view(int col) const {
    auto p = static_cast<const std::byte*>(sqlite3_column_blob(s_, col));
    int n = sqlite3_column_bytes(s_, col);
    if (!p) return {};
    return {p, static_cast<size_t>(n)};
}

std::vector<std::byte> Stmt::blob(int col) const {
    auto v = blob_view(col);
    return {v.begin(), v.end()};
}

bool Stmt::is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

Result<std::unique_ptr<Db>> Db::open(const std::string& path) {
    std::unique_ptr<Db> db(new Db());
    db->path_ = path;
    int rc = sqlite3_open_v2(path.c_str(), &db->db_,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) return db->last_error("open");
    // Long enough for another command's metadata transaction; bulk work never holds the
    // write lock for long (see repo/), so waiting longer than this means something is stuck.
    sqlite3_busy_timeout(db->db_, 60'000);
    DVOL_CHECK(db->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"));
    return db;
}

Db::~Db() {
    for (auto& [sql, s] : cache_) sqlite3_finalize(s);
    sqlite3_close(db_);
}

Result<Stmt> Db::prepare(std::string_view sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
        sqlite3_stmt* s = nullptr;
        if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &s, nullptr) != SQLITE_OK)
            return last_error("prepare a query on");
        it = cache_.emplace(std::string(sql), s).first;
    }
    return Stmt(*this, it->second);
}

Status Db::exec(std::string_view sql) {
    if (reading_) return make_error(Errc::internal, fmt::format("a statement ran inside a read scope on {}: {}", path_, sql));
    std::string s(sql);
    char* msg = nullptr;
    if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
        Error e = last_error("update");
        sqlite3_free(msg);
        return e;
    }
    return {};
}

int64_t Db::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
int64_t Db::changes() const { return sqlite3_changes64(db_); }

Error Db::last_error(std::string_view what) const {
    int code = sqlite3_extended_errcode(db_);
    Errc errc = Errc::io;
    if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED) errc = Errc::busy;
    if ((code & 0xff) == SQLITE_CORRUPT || (code & 0xff) == SQLITE_NOTADB) errc = Errc::corrupt;
    if ((code & 0xff) == SQLITE_CONSTRAINT) errc = Errc::already_exists;
    std::string msg = fmt::format("cannot {} {}: {}", what, path_, sqlite3_errmsg(db_));
    if (errc == Errc::busy) msg += " (another dvol process holds the store; try again)";
    if (errc == Errc::corrupt) msg += " (run dvol fsck)";
    return make_error(errc, msg);
}

Result<Db::Transaction> Db::Transaction::begin(Db& db) {
    db.stop_reading();
    if (auto st = db.exec("BEGIN IMMEDIATE"); !st) {
        db.resume_reading();
        return std::move(st).error();
    }
    db.writing_ = true;
    return Transaction(&db);
}

void Db::Transaction::end() {
    db_->writing_ = false;
    db_->resume_reading();
    db_ = nullptr;
}

Db::Transaction::~Transaction() {
    if (!db_) return;
    (void)db_->exec("ROLLBACK");
    end();
}

Status Db::Transaction::commit() {
    DVOL_CHECK(db_->exec("COMMIT"));
    end();
    return {};
}

Status Db::start_reading() {
    DVOL_CHECK(exec("BEGIN"));
    reading_ = true;
    return {};
}

void Db::resume_reading() {
    if (read_scopes_ > 0) (void)start_reading();  // should BEGIN fail, the reads run in autocommit
}

void Db::stop_reading() {
    if (!reading_) return;
    // Only reads ran since BEGIN (Stmt::step refuses writes), so COMMIT cannot lose anything;
    // should it fail, ROLLBACK still ends the transaction.
    reading_ = false;
    if (!exec("COMMIT")) (void)exec("ROLLBACK");
}

Result<Db::ReadScope> Db::ReadScope::begin(Db& db) {
    if (db.read_scopes_ == 0 && !db.writing_) DVOL_CHECK(db.start_reading());
    db.read_scopes_++;
    return ReadScope(&db);
}

Db::ReadScope::~ReadScope() {
    if (!db_) return;
    if (--db_->read_scopes_ == 0) db_->stop_reading();
}

}  // namespace dvol::meta
