// Scanning a live directory into trees. With store_objects, every chunk, extent list and tree
// goes into the object store (commit); without, ids are computed and new trees kept in an
// in-memory overlay so status and diff can compare them (nothing is written).
#pragma once

#include <sys/stat.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "base/xattr.h"
#include "object/tree.h"
#include "repo/content.h"
#include "repo/progress.h"
#include "repo/readers.h"
#include "repo/stat_cache.h"
#include "repo/walk_ahead.h"
#include "store/chunker.h"
#include "store/object_store.h"

namespace dvol {

class Scanner {
public:
    Scanner(ObjectStore& store, StatCache& cache, bool store_objects, WarnFn warn)
        : store_(store), cache_(cache), store_objects_(store_objects), warn_(std::move(warn)) {}

    // Scans `live_dir` and returns the id of the top tree (see kRootEntryName).
    Result<ObjectId> scan(const std::string& live_dir);
    // Stat-cache rows for the files read during the scan; commit stores them after the commit
    // is durable.
    Status save_cache();
    TreeOverlay& overlay() { return overlay_; }
    void set_progress(ProgressFn fn) { progress_ = std::move(fn); }

    struct Stats {
        uint64_t files = 0;
        uint64_t files_read = 0;
        uint64_t bytes_read = 0;
    };
    const Stats& stats() const { return stats_; }

private:
    // The tree of the live directory's contents (opened as root_fd), any depth.
    Result<ObjectId> scan_tree(int root_fd, const std::string& live_dir);
    Result<bool> content_present(const FileContent& c);  // every chunk or extent list of c is stored (or in fresh_)
    ObjectIdSet fresh_;  // chunks and extent lists of the files this scan read
    Result<ObjectId> put_tree(const Tree& tree);
    // What scan_tree does with an entry: leave it out (a socket, or gone meanwhile), keep it, or
    // keep it and scan the directory it is (its subtree is filled in once scanned).
    enum class Visit { skip, keep, descend };
    // An entry's lstat, stat-cache row and extended attributes, taken ahead of scan_entry: the
    // lstat and the xattrs on two threads (each system call a path lookup, most of the cost of
    // an unchanged file), the row in between on this one. A file whose row records its xattrs
    // (and is trusted) has them from there, without listing them.
    struct Probe {
        int stat_errno = 0;  // 0: `st` holds the entry's lstat
        struct stat st;
        bool xattrs_read = false;  // false: read them again (on the scanning thread) for the error
        bool xattrs_cached = false;  // the stat-cache row gave the xattrs (and so `xattrs` holds them)
        XattrList xattrs;
        bool looked_up = false;  // a regular file's row was looked up: `cached` and `previous` hold the answer
        std::optional<FileContent> cached;    // its content from its row
        std::optional<FileContent> previous;  // or the row's stale content (previous cuts)
    };
    // Probes names[first, first + count) of the directory `dirfd` (at `dir_path`, relative to
    // the live directory) into `out`.
    // `ahead`: the walk ahead's listing of the directory, whose lstats are taken instead.
    Status probe(int dirfd, const std::string& dir_path, const std::vector<std::string>& names, size_t first, size_t count,
                 const WalkAhead::Dir* ahead, std::vector<Probe>& out);
    Result<Visit> scan_entry(int dirfd, const std::string& name, const std::string& rel, Probe& probe, TreeEntry& out);
    // previous_ := the cuts and chunks of a file's previous content (none without one).
    void set_previous(const std::optional<FileContent>& previous);

    // What a directory's entries say for the directory cache (StatCache::DirRow), from the
    // walk's listing and lstats: nullopt when no row can be kept for it (an lstat failed, it
    // holds a socket, or a file with several links, whose entries depend on other directories).
    struct DirPrint {
        ObjectId own;
        int64_t newest = 0;  // the latest mtime or ctime of its entries
        uint64_t files = 0;  // regular files
    };
    static std::optional<DirPrint> dir_print(const WalkAhead::Dir& d);
    // `own` with the trees of the subdirectories, in the order of their names.
    static ObjectId full_print(const ObjectId& own, const std::vector<ObjectId>& subtrees);
    // The stat-cache row of a regular file (see StatCache::lookup), after a seek when a
    // directory's rows were skipped since the last one.
    Result<std::optional<FileContent>> lookup(const std::string& path, const StatKey& key, std::optional<FileContent>* stale,
                                              std::optional<Xattrs>* xattrs);

    struct PendingRow {
        std::string path;
        StatKey key;
        int64_t scan_ns;
        FileContent content;
        Xattrs xattrs;  // read after `key` was taken
    };
    ObjectStore& store_;
    StatCache& cache_;
    bool store_objects_;
    WarnFn warn_;
    ProgressFn progress_;
    Chunker chunker_;
    ChunkWorkers workers_;
    TreeOverlay overlay_;
    std::vector<PendingRow> pending_;
    StatCache::DirRows dir_rows_;  // as the scan found them
    std::vector<std::pair<std::string, StatCache::DirRow>> dir_rows_seen_;  // rows for this scan's directories
    bool skipped_rows_ = false;  // files of a directory taken from its row since the last lookup
    bool unstable_ = false;      // scan_entry met an entry that changed or went while scanned
    PreviousCuts previous_;  // of the file being read
    // First path seen of each multiply-linked file (device, inode): later paths become links.
    std::map<std::pair<uint64_t, uint64_t>, std::string> links_;
    Stats stats_;
    int64_t scan_ns_ = 0;
};

// Fills an entry's common metadata from lstat.
void fill_metadata(TreeEntry& e, const struct stat& st);

}  // namespace dvol
