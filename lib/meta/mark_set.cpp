#include "meta/mark_set.h"

#include "meta/db.h"

namespace dvol::meta {

Result<MarkSet> MarkSet::begin(Db& db) {
    DVOL_CHECK(db.exec("PRAGMA temp_store = FILE; CREATE TEMP TABLE IF NOT EXISTS gc_marked(id BLOB PRIMARY KEY) WITHOUT ROWID; "
                       "DELETE FROM gc_marked;"));
    MarkSet set(&db);
    // One transaction over the whole marking: thousands of inserts, and a stable view of the
    // refs they follow.
    DVOL_CHECK(db.exec("BEGIN"));
    set.marking_ = true;
    return set;
}

MarkSet::~MarkSet() {
    if (!db_) return;
    if (marking_) (void)db_->exec("ROLLBACK");
    (void)db_->exec("DELETE FROM gc_marked");
}

Result<bool> MarkSet::insert(const ObjectId& id) {
    DVOL_TRY(auto mark, db_->prepare("INSERT OR IGNORE INTO gc_marked(id) VALUES(?)"));
    DVOL_CHECK(mark.bind_blob(1, id.as_span()).run());
    return db_->changes() > 0;
}

Status MarkSet::end_marking() {
    DVOL_CHECK(db_->exec("COMMIT"));
    marking_ = false;
    return {};
}

Result<bool> MarkSet::contains(const ObjectId& id) {
    DVOL_TRY(auto q, db_->prepare("SELECT 1 FROM gc_marked WHERE id = ?"));
    q.bind_blob(1, id.as_span());
    auto row = q.step();
    q.reset();
    return row;
}

}  // namespace dvol::meta
