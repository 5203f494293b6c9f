// The layout of a dvol remote (docs/FORMAT.md, "Remotes"): which keys hold what, and the
// encodings of its small files. One remote holds any number of volumes pushed from any number
// of stores:
//
//   dvol-remote                       marker: "dvol remote 1\n"; written by the first push
//   packs/<name>.pack                 immutable pack, the local pack format (store/pack_format.h)
//   index/<name>                      immutable index of packs/<name>.pack: every record's id,
//                                     offset and lengths, so one record is one ranged read
//   refs/<volume>/branches/<branch>   mutable: "dvol ref 1\ncommit <hex>\n", or a tombstone
//                                     "dvol ref 1\ndeleted\n" for a deleted branch
//   refs/<volume>/HEAD                mutable: "dvol ref 1\nbranch <name>\n", the branch a clone
//                                     checks out
//
// <name> is the SHA-256 (hex) of the pack file's bytes. Objects are written before the refs
// that name them, and a pack before its index, so whatever an index names is there in full.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"

namespace dvol::remote {

inline constexpr std::string_view kMarkerKey = "dvol-remote";
inline constexpr std::string_view kMarker = "dvol remote 1\n";
inline constexpr std::string_view kIndexPrefix = "index/";

std::string pack_key(const std::string& name);
std::string index_key(const std::string& name);
// "refs/<volume>/": every ref of a volume.
std::string volume_refs_prefix(const std::string& volume);
std::string branch_ref_key(const std::string& volume, const std::string& branch);
std::string head_key(const std::string& volume);
// The branch a key of refs/<volume>/branches/ names, or nullopt for any other key.
std::optional<std::string> branch_of_key(const std::string& volume, std::string_view key);
// The volume a key under refs/ belongs to, or nullopt.
std::optional<std::string> volume_of_key(std::string_view key);

// A branch ref: the commit it names, or nullopt for a tombstone (a deleted branch).
std::string encode_branch_ref(const std::optional<ObjectId>& tip);
Result<std::optional<ObjectId>> decode_branch_ref(std::string_view data);
std::string encode_head(const std::string& branch);
Result<std::string> decode_head(std::string_view data);

// What a pack holds: chunks of file content, or what describes them (trees, extent lists,
// commits). A fetch reads metadata packs whole and data packs by ranges.
enum class PackKind : uint8_t { data = 0, metadata = 1 };

struct IndexEntry {
    ObjectId id;
    uint64_t offset = 0;  // of the record's header in the pack
    uint32_t stored_len = 0;
    uint32_t raw_len = 0;
};

struct PackIndexFile {
    PackKind kind = PackKind::data;
    uint64_t pack_size = 0;
    std::vector<IndexEntry> entries;  // sorted by id
};

// Encoding: "DVOLIDX1", u32le version 1, u8 kind, 3 zero bytes, u64le pack size, u32le count,
// count x (32-byte id, u64le offset, u32le stored length, u32le raw length) sorted by id, then
// the SHA-256 of everything before it. encode sorts the entries.
std::vector<std::byte> encode_pack_index(PackIndexFile index);
// Rejects anything malformed, unsorted, out of the pack's bounds, or whose checksum differs.
Result<PackIndexFile> decode_pack_index(std::span<const std::byte> data);

// A pack's name as published: lowercase hex, 64 digits.
bool valid_pack_name(std::string_view name);

}  // namespace dvol::remote
