// Walking everything a tree references: subtrees, extent lists and chunks. Shared by gc (mark)
// and fsck (which objects a damaged one affects).
#pragma once

#include <functional>
#include <string>

#include "base/error.h"
#include "object/tree.h"
#include "store/object_source.h"

namespace dvol {

enum class ObjectKind { tree, extent_list, chunk };

struct ObjectWalker {
    // Called for every object reached, before it is read. Return false to skip what lies below
    // it (a tree or extent list already handled). `path` is the entry path, "" for the root.
    std::function<Result<bool>(const ObjectId& id, ObjectKind kind, const std::string& path)> visit;
    // Called when a tree or extent list cannot be read or decoded; the walk goes on without it.
    std::function<void(const ObjectId& id, const std::string& path, const Error& e)> unreadable;
    // Optional: called for a tree or extent list that visit() let the walk descend into, once
    // everything below it has been walked. The calls come in post-order: each object after
    // every object below it that visit() let through (an object reached again was finished
    // when it was first reached, as a hash cannot name its own ancestor). That is the order in
    // which to store objects so that whatever is stored has all below it stored before.
    std::function<Status(const ObjectId& id, ObjectKind kind)> leave;
};

// Walks the tree `id` and everything below it; `top` when it is a commit's top tree (whose one
// entry is the live directory itself, reported with `path`). Fails only when a callback fails.
Status walk_tree(ObjectSource& source, const ObjectId& id, const std::string& path, const ObjectWalker& w, bool top = false);

}  // namespace dvol
