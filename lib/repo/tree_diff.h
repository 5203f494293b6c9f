// Comparing two volume states (top trees) entry by entry. Subtrees with the same id are
// skipped, so the work follows the size of the change, not of the volume.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "object/tree.h"
#include "repo/change.h"
#include "repo/readers.h"
#include "store/object_source.h"

namespace dvol {

// Changes from `old_top` to `new_top` (either may be null: an empty volume). Trees are loaded
// from `overlay` first, then from `source`. With `prefix`, only paths equal to it or below it.
Result<std::vector<Change>> diff_trees(ObjectSource& source, const TreeOverlay* overlay, const ObjectId* old_top,
                                       const ObjectId* new_top, const std::string& prefix = "");

}  // namespace dvol
