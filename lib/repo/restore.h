// Materialising a tree in a live directory, rewriting only what differs: entries that match
// are left alone, files whose stat still matches the stat cache are compared by their extents
// without being read, and inside a changed file only the chunk ranges that differ are written.
// Nothing below the live directory is ever followed through a symlink.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "base/parallel.h"
#include "object/tree.h"
#include "repo/progress.h"
#include "repo/readers.h"
#include "repo/stat_cache.h"
#include "store/object_store.h"

namespace dvol {

class Restorer {
public:
    Restorer(ObjectStore& store, StatCache& cache) : store_(store), cache_(cache) {}

    // Makes `live_dir` hold exactly the top tree `top` (see kRootEntryName); a null top means
    // an empty volume. The stat cache is updated for every file written or verified; it must be
    // batching (StatCache::begin_batch): the restore runs in one read transaction.
    Status restore(const std::string& live_dir, const ObjectId* top);

    // Reads and verifies every object that restore(live_dir, top) would need (trees, extent
    // lists, and the chunks of every file whose content would change) without changing
    // anything, so a damaged store is found before the live directory is touched.
    Status verify(const std::string& live_dir, const ObjectId* top);

    using ChunkSet = ObjectIdSet;
    // The chunks verify() read and verified; hand them to the Restorer that restores, in the
    // same command and under the same store lock, which then decodes them without hashing
    // them again.
    ChunkSet take_verified() { return std::move(verified_); }
    void trust(ChunkSet verified) { verified_ = std::move(verified); }

    struct Stats {
        uint64_t files_written = 0;   // files created or changed
        uint64_t bytes_written = 0;
        uint64_t files_compared = 0;  // files read to find the ranges that differ
        uint64_t removed = 0;
    };
    const Stats& stats() const { return stats_; }
    // Attributes the kernel would not let us set (see write_xattrs), one message each.
    const std::vector<std::string>& warnings() const { return warnings_; }
    void set_progress(ProgressFn fn) { progress_ = std::move(fn); }

private:
    // The entry being restored: its directory, its name there, and its path for messages and
    // the stat cache.
    struct Where {
        int dirfd;
        const std::string& name;
        const std::string& rel;
    };
    // What a directory of the live directory holds, by name.
    using Listing = std::map<std::string, struct stat>;
    Result<Listing> list_have(int dirfd, const std::string& rel);
    // Removes what `have` holds and `target` does not.
    Status remove_extra(int dirfd, const std::string& rel, const Listing& have, const Tree& target);
    // Makes the live directory (root_fd_) hold `target`, depth-first without recursion.
    Status sync_tree(const std::string& live_dir, Tree target);
    // Makes one entry right. For a directory (made when missing) it returns the tree to restore
    // inside it, which sync_tree does before setting its metadata.
    Result<std::optional<Tree>> sync_entry(const Where& at, const TreeEntry& want, const struct stat* have);
    Status sync_hardlink(const Where& at, const TreeEntry& want, const struct stat* have);
    // Creates the file and queues its chunks; its size and metadata are set, and its stat
    // cache row written, by finish_new_files once the chunks are written (so that the chunks of
    // many small files are written together, on two threads). A file of one chunk, as most
    // small files are, is made, written and given its metadata by a worker (system calls are
    // most of the cost of a small file); only its stat cache row is left to this thread.
    Status write_new_file(const Where& at, const TreeEntry& want);
    Status finish_new_files();
    // Makes the content right; true when anything was written or the content was verified by
    // reading (either way the stat cache row must be refreshed).
    Result<bool> update_file(int fd, const std::string& rel, const TreeEntry& want, const struct stat& have);
    // Whether the file's current content is known (stat cache) to equal want's.
    Result<bool> known_same(const std::string& rel, const TreeEntry& want, const struct stat& have);
    // Writes a hole at once; queues a chunk (read here, decoded and written by flush_writes).
    // With `compare_first`, only the pages of the chunk that differ from what the file holds
    // are written (write_changed).
    Status write_extent(int fd, const std::string& rel, uint64_t offset, const Extent& x, bool compare_first);
    // Reads, decodes, verifies (unless verify() did) and writes the queued chunks, on two
    // threads, then finishes the new files whose chunks they were. Called before anything that
    // must follow the writes: ftruncate, metadata, closing the fd, and leaving or entering a
    // directory (a new file's metadata is set through its directory's fd).
    Status flush_writes();
    // Sets owner, mode, xattrs and mtime where they differ; true when anything changed. `fd` is
    // the entry opened (files, directories) or -1 (symlinks, fifos, devices).
    // `warnings`: where refused xattrs are reported (a worker's own list), warnings_ when null.
    Result<bool> apply_metadata(int fd, const Where& at, const TreeEntry& want, std::vector<std::string>* warnings = nullptr);
    Status remember(int fd, const std::string& rel, const TreeEntry& want);
    Status verify_tree(int root_fd, const std::string& live_dir, Tree target);
    Status verify_file(const std::string& rel, const TreeEntry& want, const struct stat* have);
    Status verify_chunk(const ObjectStore::StoredRef& ref);
    // Finds where the record of `id` lies (the index is read on this thread: the store is not
    // thread-safe) into the next slot of pending_; the workers read it.
    Status queue_record(const ObjectId& id);
    // A queued record as a worker handles it: its index in pending_ (and writes_), the worker
    // (0 or 1, naming the thread's buffers), and its decoded bytes, unless `copy_first`: a
    // large chunk checked already and written whole, which put() first tries to copy inside the
    // kernel from its pack (a raw record), loading it only when that fails.
    struct Chunk {
        size_t i;
        int worker;
        std::span<const std::byte> plain;
        bool copy_first;
    };
    static constexpr uint32_t kCopyInKernel = 256u << 10;
    // Reads record c.i into the worker's records_ slot and decodes it (hashed where its Write
    // says so) into c.plain.
    Status load(Chunk& c);
    // Writes chunk c to fd at its Write's offset.
    Status put(Chunk& c, int fd, const std::string& rel);
    // The chunk's length against its extent's.
    Status check_length(const Chunk& c) const;
    // Runs fn for every queued record on two threads, each record read and decoded first
    // (load) unless it is to be copied; empties the queue (records and writes_) and returns the
    // first error. With `verify_only`, each record is checked (check_stored_decodes) instead
    // and fn is not called.
    Status run_batch(const std::function<Status(Chunk&)>& fn, bool verify_only);
    // Reads and checks the chunks queued by verify_chunk, on two threads: each record against
    // the CRC-32C the index keeps of it, and decompressed when compressed (hashed only for rows
    // without a checksum).
    Status verify_pending();
    Result<Tree> load_root(const ObjectId& top, TreeEntry& root);

    ObjectStore& store_;
    StatCache& cache_;
    UniqueFd root_fd_;
    std::vector<std::byte> read_buf_;
    Stats stats_;
    std::vector<std::string> warnings_;
    ProgressFn progress_;
    uint64_t visited_ = 0;
    bool is_root_ = false;
    // Chunks verified by verify() (or queued for it): restore decodes them without hashing
    // them again (see ObjectStore::get_verified).
    ChunkSet verified_;
    TreePaths* links_ = nullptr;  // during verify(): the target's entries, for hard links
    std::vector<ObjectStore::StoredRef> pending_;
    size_t pending_bytes_ = 0;
    struct NewFile;
    // Chunks queued for writing: pending_ holds their records; these say where they go.
    struct Write {
        int fd;
        uint64_t offset;
        uint64_t length;  // the extent's: the decoded chunk must have exactly that many bytes
        const std::string* rel;
        bool check_hash;
        bool compare_first;
        NewFile* whole = nullptr;  // a new file of this one chunk: the worker makes and finishes it (fd is -1)
    };
    // New files whose chunks are queued, to finish after the batch is written.
    struct NewFile {
        UniqueFd fd;
        int dirfd;
        const std::string* name;  // want->name
        std::string rel;
        const TreeEntry* want;    // in the tree of the directory being restored
        uint64_t end;             // where the last chunk written ends
        bool complete;            // every chunk queued (a batch may be written half-way through a file)
        bool finished = false;    // size and metadata set (by a worker), `key` taken
        StatKey key{};            // its stat once finished, for the stat cache row
    };
    // Sets a new file's size (where a hole ends it) and metadata, and takes its stat: any
    // thread (warnings as apply_metadata).
    Status finish_file(NewFile& f, std::vector<std::string>* warnings);
    std::vector<std::string> worker_warnings_[2];
    std::deque<NewFile> new_files_;
    // Writes the pages of `data` that differ from what w.fd holds at w.offset, as far as the
    // page cache holds that range (read with RWF_NOWAIT); the rest is written whole.
    static Status write_changed(const Write& w, std::span<const std::byte> data, std::vector<std::byte>& current);
    std::vector<Write> writes_;
    // A batch for the two threads: at most 1024 records or 64 MiB of them, and at most 64 new
    // files left open by this thread (a file of one chunk is opened and closed by its worker).
    // Only the workers' buffers hold records (one each, read when it is its turn), so memory
    // does not depend on the batch: its size only spaces the points where both threads meet,
    // each a wait for the other thread to be scheduled on a busy machine.
    static constexpr size_t kBatchBytes = size_t{64} << 20;
    bool batch_full() const { return pending_.size() == 1024 || pending_bytes_ >= kBatchBytes || open_new_files_ >= 64; }
    size_t open_new_files_ = 0;  // new files this thread opened since the last batch
    ObjectStore::StoredObject records_[2];    // per worker: the record being decoded
    std::vector<std::byte> decode_bufs_[2];   // per worker
    std::vector<std::byte> current_bufs_[2];  // per worker: what a file held (write_changed)
    ParallelFor pool_;
};

}  // namespace dvol
