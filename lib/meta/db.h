// A thin RAII layer over SQLite: one connection, cached prepared statements, and write
// transactions. sqlite3.h is included by meta/ only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

struct sqlite3;
struct sqlite3_stmt;

namespace dvol::meta {

class Db;

// A prepared statement borrowed from the Db's cache; reset when the Stmt goes out of scope.
class Stmt {
public:
    Stmt(Db& db, sqlite3_stmt* s) : db_(&db), s_(s) {}
    Stmt(Stmt&& o) noexcept : db_(o.db_), s_(o.s_) { o.s_ = nullptr; }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    ~Stmt();

    Stmt& bind(int idx, int64_t v);
    Stmt& bind(int idx, std::string_view text);
    Stmt& bind_blob(int idx, std::span<const std::byte> blob);
    Stmt& bind_null(int idx);

    // Steps once: true when a row is available, false when done.
    Result<bool> step();
    // Runs to completion, ignoring rows, then resets so it can be bound and run again.
    Status run();
    // Ends the current execution early so the statement can be bound and run again.
    void reset();

    int64_t int64(int col) const;
    std::string text(int col) const;
    std::vector<std::byte> blob(int col) const;
    std::span<const std::byte> blob_view(int col) const;  // valid until the next step
    bool is_null(int col) const;

private:
    Db* db_;
    sqlite3_stmt* s_;
};

class Db {
public:
    // Opens (creating if needed) the database at `path` in WAL mode with a busy timeout.
    static Result<std::unique_ptr<Db>> open(const std::string& path);
    ~Db();
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    Result<Stmt> prepare(std::string_view sql);
    Status exec(std::string_view sql);  // one or more statements, no results
    int64_t last_insert_rowid() const;
    int64_t changes() const;
    Error last_error(std::string_view what) const;

    // BEGIN IMMEDIATE on construction (taking the write lock, waiting up to the busy timeout);
    // ROLLBACK on destruction unless commit() succeeded. Not nestable.
    class Transaction {
    public:
        static Result<Transaction> begin(Db& db);
        Transaction(Transaction&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
        Transaction(const Transaction&) = delete;
        Transaction& operator=(const Transaction&) = delete;
        ~Transaction();
        Status commit();

    private:
        explicit Transaction(Db* db) : db_(db) {}
        void end();
        Db* db_;
    };

    // One read transaction over many reads (a scan's stat-cache and object lookups), so that
    // each does not take and drop SQLite's shared lock alone. A Transaction begun inside it
    // ends the read transaction first and starts a fresh one when it is over: writes are not
    // held back, and the reads after one see it. Outside a Transaction only reads may run in
    // it (a write is an `internal` error). Scopes nest; the outermost ends the transaction.
    class ReadScope {
    public:
        static Result<ReadScope> begin(Db& db);
        ReadScope(ReadScope&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
        ReadScope(const ReadScope&) = delete;
        ReadScope& operator=(const ReadScope&) = delete;
        ~ReadScope();

    private:
        explicit ReadScope(Db* db) : db_(db) {}
        Db* db_;
    };

private:
    friend class Stmt;
    Db() = default;
    Status start_reading();
    void resume_reading();  // after a Transaction: reading again when a ReadScope is open
    void stop_reading();
    sqlite3* db_ = nullptr;
    int read_scopes_ = 0;
    bool reading_ = false;  // a ReadScope's BEGIN is open
    bool writing_ = false;  // a Transaction is open
    std::string path_;
    std::map<std::string, sqlite3_stmt*, std::less<>> cache_;
};

}  // namespace dvol::meta
