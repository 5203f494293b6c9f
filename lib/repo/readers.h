// Reading what a commit holds through an ObjectSource: trees, the extents of a file's content
// (extent lists of large files loaded one at a time, so memory stays bounded), and a file's
// bytes. Every reader of trees and content goes through these, so any source serves them: the
// local store, or a chunk cache in front of a remote.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "object/tree.h"
#include "store/object_source.h"

namespace dvol {

// Trees that status and diff computed from the live directory but did not store: looked up
// before the source.
using TreeOverlay = std::unordered_map<ObjectId, Tree, ObjectIdHash>;

// Tree `id`, from `overlay` (may be null) or `source`; a tree that does not decode is corrupt.
Result<Tree> load_tree(ObjectSource& source, const TreeOverlay* overlay, const ObjectId& id);

// Whether the volume state with top tree `top` has an entry at `path` (relative to the live
// directory, '/'-separated).
Result<bool> path_in_tree(ObjectSource& source, const TreeOverlay* overlay, const ObjectId& top, const std::string& path);

// Streams a FileContent's extents with their file offsets. Borrows both arguments. Besides
// what the decoders check, it checks what only the lists together show: each list has the count
// and covers the bytes its reference gives, and no list starts with a hole after a hole.
class ExtentCursor {
public:
    ExtentCursor(ObjectSource& source, const FileContent& content) : source_(source), content_(content) {}
    // The next extent, or nullopt at the end.
    Result<std::optional<Extent>> next();
    uint64_t offset() const { return offset_; }  // offset of the extent last returned

private:
    ObjectSource& source_;
    const FileContent& content_;
    std::vector<Extent> list_;
    size_t list_index_ = 0;  // next list to load (indirect)
    size_t pos_ = 0;         // next extent in the current vector
    uint64_t offset_ = 0;
    uint64_t next_offset_ = 0;
    uint64_t list_start_ = 0;  // offset of the current list's first extent
    bool last_hole_ = false;   // the extent last returned was a hole
};

// Entries of a volume's tree by path: the tree of `root` (a commit's live directory, not its
// top tree) is walked down one directory at a time, and the trees of the last path's
// directories are kept, so hard links into one directory load it once.
class TreePaths {
public:
    TreePaths(ObjectSource& source, const ObjectId& root) : source_(source), root_(root) {}
    // The entry at `path` (names joined by '/'), or nullopt when a component is missing or a
    // directory on the way is not one. A tree that cannot be read is an error.
    Result<std::optional<TreeEntry>> find(std::string_view path);
    const ObjectId& root() const { return root_; }

private:
    ObjectSource& source_;
    ObjectId root_;
    std::vector<std::pair<std::string, Tree>> chain_;  // (directory name, its tree), from the root ("")
};

// Why a hard link at `path` naming `target` (both relative to the live directory) breaks the
// format's rule, or nullopt when it keeps it: the target must come earlier in the order a scan
// records entries, and be a file of the same tree (docs/FORMAT.md, "Trees"). A restore walks in
// that order, so it has made the target before it makes the link.
Result<std::optional<std::string>> hardlink_problem(TreePaths& paths, const std::string& path, const std::string& target);

// The whole content as bytes, or nullopt when it is larger than `limit`.
Result<std::optional<std::string>> read_content(ObjectSource& source, const FileContent& content, uint64_t size, uint64_t limit);

}  // namespace dvol
