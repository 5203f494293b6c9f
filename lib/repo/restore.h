// Materialising a tree in a live directory, rewriting only what differs: entries that match
// are left alone, files whose stat still matches the stat cache are compared by their extents
// without being read, and inside a changed file only the chunk ranges that differ are written.
// Nothing below the live directory is ever followed through a symlink.
#pragma once

#include <string>

#include "base/error.h"
#include "object/tree.h"
#include "repo/scan.h"
#include "repo/stat_cache.h"
#include "store/object_store.h"

namespace dvol {

class Restorer {
public:
    Restorer(ObjectStore& store, StatCache& cache) : store_(store), cache_(cache) {}

    // Makes `live_dir` hold exactly the top tree `top` (see kRootEntryName); a null top means
    // an empty volume. The stat cache is updated for every file written or verified.
    Status restore(const std::string& live_dir, const ObjectId* top);

    struct Stats {
        uint64_t files_written = 0;   // files created or changed
        uint64_t bytes_written = 0;
        uint64_t files_compared = 0;  // files read to find the ranges that differ
        uint64_t removed = 0;
    };
    const Stats& stats() const { return stats_; }
    void set_progress(ProgressFn fn) { progress_ = std::move(fn); }

private:
    Status sync_dir(int dirfd, const std::string& rel, const Tree& target);
    Status sync_entry(int dirfd, const std::string& rel, const TreeEntry& want, const struct stat* have);
    Status write_new_file(int dirfd, const std::string& rel, const TreeEntry& want);
    // Makes the content right; true when anything was written or the content was verified by
    // reading (either way the stat cache row must be refreshed).
    Result<bool> update_file(int fd, const std::string& rel, const TreeEntry& want, const struct stat& have);
    Status write_extent(int fd, const std::string& rel, uint64_t offset, const Extent& x);
    // Sets owner, mode and mtime where they differ; true when anything changed.
    Result<bool> apply_metadata(int fd, const std::string& rel, const TreeEntry& want);
    Status remember(int fd, const std::string& rel, const TreeEntry& want);

    ObjectStore& store_;
    StatCache& cache_;
    std::vector<std::byte> buf_;
    std::vector<std::byte> read_buf_;
    Stats stats_;
    ProgressFn progress_;
    uint64_t visited_ = 0;
    bool is_root_ = false;
};

}  // namespace dvol
