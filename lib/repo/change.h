// One difference between two states of a volume, as status and diff report it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "object/tree.h"

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

}  // namespace dvol
