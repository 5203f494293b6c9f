// A set of object ids kept in a temporary SQLite table, so that its memory does not grow with
// the store: gc's mark of everything reachable.
#pragma once

#include "base/error.h"
#include "base/object_id.h"

namespace dvol::meta {

class Db;

class MarkSet {
public:
    // An empty set, open for marking: the inserts (and the reads of the refs and objects that
    // decide them) run in one transaction of `db` until end_marking().
    static Result<MarkSet> begin(Db& db);
    MarkSet(MarkSet&& o) noexcept : db_(o.db_), marking_(o.marking_) { o.db_ = nullptr; }
    MarkSet(const MarkSet&) = delete;
    MarkSet& operator=(const MarkSet&) = delete;
    // Rolls back a marking still open and empties the table.
    ~MarkSet();

    // Adds `id`; true when it was not there yet. Only while marking.
    Result<bool> insert(const ObjectId& id);
    // Ends the marking transaction.
    Status end_marking();
    Result<bool> contains(const ObjectId& id);

private:
    explicit MarkSet(Db* db) : db_(db) {}
    Db* db_;
    bool marking_ = false;
};

}  // namespace dvol::meta
