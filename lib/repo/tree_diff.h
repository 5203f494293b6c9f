// Comparing two volume states (top trees) entry by entry. Subtrees with the same id are
// skipped, so the work follows the size of the change, not of the volume.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "object/tree.h"
#include "repo/scan.h"
#include "store/object_store.h"

namespace dvol {

enum class ChangeKind { added, deleted, modified, type_changed, metadata };

const char* change_kind_name(ChangeKind k);

struct Change {
    ChangeKind kind;
    std::string path;               // relative to the live directory; "." for the root itself
    std::optional<TreeEntry> old_entry;
    std::optional<TreeEntry> new_entry;
    std::vector<std::string> what;  // for metadata changes: "mode", "owner", "mtime", "xattrs"
};

// Changes from `old_top` to `new_top` (either may be null: an empty volume). Trees are loaded
// from `overlay` first, then from the store. With `prefix`, only paths equal to it or below it.
Result<std::vector<Change>> diff_trees(ObjectStore& store, const TreeOverlay* overlay, const ObjectId* old_top,
                                       const ObjectId* new_top, const std::string& prefix = "");

}  // namespace dvol
