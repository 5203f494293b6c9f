// The rows of a lazy volume's write layer (layer.db, docs/FORMAT.md "The write layer"), read the
// same way by its writer (fuse-mount/layer_fs.h, which owns the schema) and by what builds trees
// from it (repo/layer_tree.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace dvol {

namespace meta {
class Db;
}

// One row of `nodes`: an inode the layer created or changed.
struct LayerRow {
    uint64_t ino = 0;
    uint32_t mode = 0;  // S_IF* and permission bits
    uint32_t uid = 0;
    uint32_t gid = 0;
    uint64_t rdev = 0;
    uint64_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    std::string target;
    uint32_t nlink = 1;
    std::optional<std::string> origin;  // the base path it was copied up from; none for a new inode
    uint64_t base_limit = 0;
    bool listed = false;
};

// Inode numbers from 2^63 up are stored as their two's complement (SQLite integers are signed).
inline int64_t layer_sql_ino(uint64_t ino) { return static_cast<int64_t>(ino); }
inline uint64_t layer_ino(int64_t v) { return static_cast<uint64_t>(v); }

// The row of inode `ino`; nullopt when it has none.
Result<std::optional<LayerRow>> load_layer_row(meta::Db& db, uint64_t ino);
// The inode whose row was copied up from base path `path`; nullopt when none was.
Result<std::optional<uint64_t>> layer_ino_by_origin(meta::Db& db, std::string_view path);

}  // namespace dvol
