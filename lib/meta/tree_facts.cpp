#include "meta/tree_facts.h"

#include <vector>

#include "meta/db.h"

namespace dvol::meta {

Result<std::optional<bool>> TreeFacts::has_xattrs(const ObjectId& tree) {
    DVOL_TRY(auto q, db_.prepare("SELECT has_xattrs FROM tree_facts WHERE tree = ?"));
    q.bind_blob(1, tree.as_span());
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<bool>();
    return std::optional<bool>(q.int64(0) != 0);
}

Status TreeFacts::set_has_xattrs(const ObjectId& tree, bool has) {
    DVOL_TRY(auto ins, db_.prepare("INSERT OR IGNORE INTO tree_facts(tree, has_xattrs) VALUES(?, ?)"));
    return ins.bind_blob(1, tree.as_span()).bind(2, has ? 1 : 0).run();
}

Result<uint64_t> TreeFacts::drop_unless(const std::function<Result<bool>(const ObjectId&)>& keep) {
    std::vector<ObjectId> gone;
    {
        DVOL_TRY(auto q, db_.prepare("SELECT tree FROM tree_facts"));
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) break;
            if (q.blob_view(0).size() != ObjectId::size) continue;  // cannot be a tree of ours: left alone
            ObjectId id = ObjectId::from_bytes(q.blob_view(0));
            DVOL_TRY(bool kept, keep(id));
            if (!kept) gone.push_back(id);
        }
    }
    DVOL_TRY(auto del, db_.prepare("DELETE FROM tree_facts WHERE tree = ?"));
    for (const auto& id : gone) DVOL_CHECK(del.bind_blob(1, id.as_span()).run());
    return static_cast<uint64_t>(gone.size());
}

}  // namespace dvol::meta
