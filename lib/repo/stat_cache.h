// The working-copy index: for each file of a volume's live directory, the stat it had when dvol
// last read or wrote it and the content it had then. A file whose stat still matches is not
// read again. A file modified within kRacyWindowNs of the scan that recorded it is "racily
// clean" (a later write in the same timestamp tick would leave its stat unchanged) and is
// always re-read: git's rule. A row may also keep the file's extended attributes as they were
// when its stat was taken; they are trusted under the same rule with ctime in place of mtime (an
// xattr change moves only ctime), so a scan of unchanged files lists no xattrs. The rows:
// docs/FORMAT.md, "SQLite".
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <deque>
#include <map>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/error.h"
#include "object/tree.h"

namespace dvol::meta {
class Db;
}

namespace dvol {

inline constexpr int64_t kRacyWindowNs = 2'000'000'000;

struct StatKey {
    uint64_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    uint64_t ino = 0;
    uint32_t mode = 0;
    uint32_t uid = 0;
    uint32_t gid = 0;
    bool operator==(const StatKey&) const = default;
};

StatKey stat_key(const struct stat& st);
int64_t now_ns();

class StatCache {
public:
    // A damaged stat cache (SQLite says its pages are corrupt) is not an error: the cache turns
    // itself off for the rest of the command (every lookup misses, every write is dropped), so
    // files are read instead of trusted and no command wedges on it; `on_damage` hears of it
    // once. `dvol fsck` names the damage and `dvol fsck --repair` rebuilds the cache.
    StatCache(meta::Db& db, int64_t volume_id, std::function<void(const std::string&)> on_damage = {})
        : db_(db), volume_id_(volume_id), on_damage_(std::move(on_damage)) {}
    bool damaged() const { return damaged_; }

    meta::Db& db() { return db_; }
    // The cached content of `path` when its stat matches `key` and it is not racily clean.
    // Otherwise, with `stale`, the content recorded last (if any) goes there: the file's
    // previous cuts, for chunk_file's hints. With `xattrs`, the file's extended attributes go
    // there when the content is returned, the row records them, and its ctime too is older
    // than its scan by kRacyWindowNs; otherwise it is left empty (read them).
    Result<std::optional<FileContent>> lookup(const std::string& path, const StatKey& key,
                                              std::optional<FileContent>* stale = nullptr,
                                              std::optional<Xattrs>* xattrs = nullptr);
    // From now on, lookups read the volume's rows ahead in path order, a batch per query,
    // instead of one query each: for a scan, whose lookups come in (nearly) ascending path
    // order. A path looked up twice, or out of order beyond what is kept aside, may find no row
    // (so its file is read: never a wrong answer). Rows read ahead and not yet looked up stay in
    // memory, at most kAsideRows of them beside a batch.
    void read_ahead() { ahead_ = true; }
    // The lookups skipped a stretch of the paths read ahead (a scan that took directories'
    // trees from their rows): the next is `path`, so the reading ahead goes on from there rather
    // than through every row in between. A row in between asked for later is queried alone.
    void seek(const std::string& path);
    // Records `content` for `path` as seen at `scan_ns`, with the file's extended attributes
    // when `xattrs` is given (read after the stat `key` was taken; none: unknown). While
    // batching, the write is queued.
    Status store(const std::string& path, const StatKey& key, int64_t scan_ns, const FileContent& content,
                 const Xattrs* xattrs = nullptr);
    // Forgets `path` and, when it was a directory, everything below it (queued while batching).
    Status forget(const std::string& path);
    // Queue store() and forget() in memory until write_batch(), which the caller runs inside
    // its own transaction: a long restore then holds no write lock while it works.
    void begin_batch() { batching_ = true; }
    Status write_batch();
    Status forget_all();
    // Deletes rows for paths that no longer exist under `live_dir`.
    Status prune(const std::string& live_dir);
    // How many rows the volume has.
    Result<uint64_t> row_count();

    // The directory cache, git's cache-tree decided by stat: for a directory of the live
    // directory that a commit scanned, `own` fingerprints its entries (names and lstats, see
    // Scanner), `full` the same with the trees of its subdirectories, and `tree` is its tree. A
    // scan that finds the same `own`, none of the entries changed within kRacyWindowNs before
    // `scan_ns`, takes the directory's files from `tree` without a file row each.
    struct DirRow {
        ObjectId own;
        ObjectId full;
        ObjectId tree;
        int64_t scan_ns = 0;
        bool operator==(const DirRow&) const = default;
    };
    using DirRows = std::unordered_map<std::string, DirRow>;  // by path, "" for the live directory
    // Every directory row of the volume (none when the cache is damaged).
    Result<DirRows> dir_rows();
    // Writes `put` over the rows of their paths and deletes the rows of `drop` (a commit, in its
    // transaction).
    Status save_dir_rows(const std::vector<std::pair<std::string, DirRow>>& put, const std::vector<std::string>& drop);

    // Every row of the volume: path, stat, scan time and the content field's bytes (fsck).
    struct Row {
        std::string path;
        StatKey key;
        int64_t scan_ns = 0;
        std::vector<std::byte> content;
        std::optional<std::vector<std::byte>> xattrs;  // the xattrs field's bytes; none: unknown (NULL)
    };
    Status for_each_row(const std::function<Status(const Row&)>& fn);

    // Over every volume's rows: drops each row whose content `keep` rejects or that does not
    // decode, and returns how many went (gc: a row must never outlive its chunks).
    static Result<uint64_t> drop_rows(meta::Db& db, const std::function<Result<bool>(const FileContent&)>& keep);

private:
    Result<std::optional<FileContent>> lookup_now(const std::string& path, const StatKey& key, std::optional<FileContent>* stale,
                                                  std::optional<Xattrs>* xattrs);
    Status prune_now(const std::string& live_dir);
    Status store_now(const std::string& path, const StatKey& key, int64_t scan_ns, const FileContent& content, const Xattrs* xattrs);
    Status forget_now(const std::string& path);
    // The row of `path` from the rows read ahead (`found` false: none there); `ask` set when
    // they cannot tell (a row put aside may have been dropped) and a query must.
    Status take_ahead(const std::string& path, Row& out, bool& found, bool& ask);
    Status read_batch();
    static constexpr size_t kBatchRows = 512;
    static constexpr size_t kAsideRows = 4096;
    bool ahead_ = false;
    std::deque<Row> batch_;          // read ahead, in path order, not yet reached by lookups
    std::map<std::string, Row, std::less<>> aside_;  // passed over by a later path, not yet looked up
    std::string read_to_;            // the last path read ahead
    bool read_all_ = false;          // every row has been read ahead
    std::optional<std::string> dropped_to_;  // rows aside up to this path were let go
    struct Op {
        bool forget;
        std::string path;
        StatKey key;
        int64_t scan_ns;
        FileContent content;
        std::optional<Xattrs> xattrs;
    };
    // For an operation's result: a corrupt database turns the cache off (and is no error).
    Status tolerate(Status st);
    meta::Db& db_;
    int64_t volume_id_;
    std::function<void(const std::string&)> on_damage_;
    bool damaged_ = false;
    bool batching_ = false;
    std::vector<Op> queued_;
};

}  // namespace dvol
