// Trees: the canonical encoding of one directory's entries, addressed by the SHA-256 of that
// encoding. The format carries everything a faithful restore needs (types incl. hard links,
// fifos and devices, full mode bits, numeric owner, nanosecond mtime, xattrs, holes), so later
// features fill fields in rather than change the format.
//
// The encoding ("DVT1" trees, file content, extents, "DVL1" extent lists) and the bounds the
// decoders enforce: docs/FORMAT.md, "Trees".
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"

namespace dvol {

enum class EntryType : uint8_t { file = 1, dir = 2, symlink = 3, hardlink = 4, fifo = 5, chardev = 6, blockdev = 7 };

const char* entry_type_name(EntryType t);

struct Extent {
    ObjectId id;          // unused for holes
    uint64_t length = 0;  // bytes of file content this extent covers
    bool hole = false;
    bool operator==(const Extent&) const = default;
};

struct ExtentListRef {
    ObjectId id;
    uint64_t length = 0;  // bytes covered by all extents of the list
    uint64_t count = 0;   // number of extents in the list
    bool operator==(const ExtentListRef&) const = default;
};

// A file's content: either the extents inline, or (for large files) references to extent-list
// objects, so no single object grows with the file.
struct FileContent {
    bool indirect = false;
    std::vector<Extent> extents;       // when !indirect
    std::vector<ExtentListRef> lists;  // when indirect
    bool operator==(const FileContent&) const = default;
};

using Xattrs = std::vector<std::pair<std::string, std::string>>;

struct TreeEntry {
    std::string name;
    EntryType type = EntryType::file;
    uint32_t mode = 0;  // permission bits with setuid/setgid/sticky (mode & 07777)
    uint32_t uid = 0;
    uint32_t gid = 0;
    int64_t mtime_ns = 0;
    uint64_t size = 0;
    Xattrs xattrs;
    FileContent content;  // file
    ObjectId subtree;     // dir
    std::string target;   // symlink target, or the earlier path a hard link points to
    uint64_t rdev = 0;    // chardev, blockdev
    bool operator==(const TreeEntry&) const = default;
};

struct Tree {
    std::vector<TreeEntry> entries;  // sorted by name, names unique
    const TreeEntry* find(std::string_view name) const;
};

// The name of the single entry of a commit's top tree, which describes the live directory
// itself (its mode, owner, mtime, xattrs) and points to its contents.
inline constexpr std::string_view kRootEntryName = "root";

// Bounds that decoders enforce on untrusted input.
inline constexpr size_t kMaxNameLength = 4096;
inline constexpr size_t kMaxTargetLength = 65536;
inline constexpr size_t kMaxXattrs = 4096;
inline constexpr size_t kMaxXattrValue = 1 << 20;
inline constexpr size_t kMaxEntries = 16 << 20;
inline constexpr size_t kMaxExtentsPerList = 4096;  // also the inline limit

// Entry names: non-empty, not "." or "..", no '/' and no NUL.
bool valid_entry_name(std::string_view name);

// Whether path `a` comes before path `b` in the order a scan records entries (depth-first,
// each directory's names in byte order): at the first component where they differ, a's is the
// smaller. An ancestor comes before what is below it, but no file is an ancestor, so for a hard
// link and its target (both files) this is the format's rule "the target comes earlier".
bool scan_order_before(std::string_view a, std::string_view b);

std::vector<std::byte> encode_tree(const Tree& tree);
// Rejects truncated, oversized, unsorted or otherwise malformed input.
Result<Tree> decode_tree(std::span<const std::byte> data);

std::vector<std::byte> encode_extent_list(std::span<const Extent> extents);
Result<std::vector<Extent>> decode_extent_list(std::span<const std::byte> data);

// The bytes `c` covers: the sum of its extents' (or lists') lengths, saturating at 2^64 - 1.
uint64_t content_length(const FileContent& c);

// The content field alone (used by the working-copy stat cache).
std::vector<std::byte> encode_content(const FileContent& c);
Result<FileContent> decode_content(std::span<const std::byte> data);
// An entry's xattrs field alone, as in the tree encoding (the stat cache keeps a file's).
// Decoding rejects what decode_tree would: more than kMaxXattrs, oversized, empty or unsorted
// names.
std::vector<std::byte> encode_xattrs(const Xattrs& x);
Result<Xattrs> decode_xattrs(std::span<const std::byte> data);

}  // namespace dvol
