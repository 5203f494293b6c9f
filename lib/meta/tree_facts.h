// Facts about a tree and everything below it (table tree_facts; docs/FORMAT.md, "SQLite"),
// each found once by walking the trees and kept: a tree's id names its content, so a fact
// recorded for it never goes stale. Today one fact: whether any entry has an extended attribute,
// which lets a read-only mount of a commit without any tell the kernel to stop asking
// (docs/DECISIONS.md, "FUSE mount"). Not thread-safe (one connection).
#pragma once

#include <functional>
#include <optional>

#include "base/error.h"
#include "base/object_id.h"

namespace dvol::meta {

class Db;

class TreeFacts {
public:
    explicit TreeFacts(Db& db) : db_(db) {}

    // Whether some entry of tree `tree` or of a tree below it has an extended attribute;
    // nullopt when not known yet.
    Result<std::optional<bool>> has_xattrs(const ObjectId& tree);
    // Records it (a second record of the same tree keeps the first: the fact cannot differ).
    Status set_has_xattrs(const ObjectId& tree, bool has);
    // Drops the rows of the trees `keep` says false of (gc, in its transaction), and returns how
    // many went.
    Result<uint64_t> drop_unless(const std::function<Result<bool>(const ObjectId&)>& keep);

private:
    Db& db_;
};

}  // namespace dvol::meta
