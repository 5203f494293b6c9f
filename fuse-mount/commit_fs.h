// One commit as a read-only file system, independent of FUSE and of where objects come from: the
// inode table, trees loaded on demand, and the read path. fuse-mount/fuse_ops.cpp turns kernel
// requests into calls of this class; the unit tests call it directly over an in-memory source.
//
// Inodes. An entry's inode number is derived from its path in the commit: a 128-bit key,
// key(root) fixed, key(dir/name) = SHA-256(key(dir) || name) cut to 128 bits, and the inode
// number is the key's first 64 bits (1 for the root; a number already taken by another live key
// moves to the next free one). So an entry keeps its number however often the kernel forgets and
// finds it again, and a hard link entry, whose target is the path of the first name of its group
// (docs/FORMAT.md, "Trees"), gets exactly the inode of that path: one inode, one number, for
// every name of a group. The table holds only the inodes the kernel knows (lookup counts, given
// back by forget), each as its key and where its entry lies (tree id, index), not the entry
// itself: attributes are read from the tree, which the tree cache may have to load again.
//
// Trees are loaded when a directory is looked into, never before, through an LRU cache bounded in
// bytes; extent lists and chunks likewise. Memory is bounded by those caches, the inodes the
// kernel holds, and the largest single directory.
//
// Link counts. A commit does not record how many names a file has; the names of a group are
// found where they are, anywhere after the first. By default the count is what the mount has seen:
// 1 plus the hard link entries to the file in the directories looked into so far (exact once every
// directory holding one has been listed). With `count_links`, open() walks every tree of the commit
// once (trees only, through no cache) and the counts are exact from the start.
//
// Thread safety: every method may be called from several threads at once. The source must allow
// that too (store/pooled_source.h).
//
// Errors: a failure to read or decode an object is `corrupt` or `io`, naming the object (the
// front end answers EIO and logs it). The others: `not_found` for an unknown inode, and
// `invalid_argument` for an operation the entry's type does not have.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"
#include "loading_cache.h"
#include "object/tree.h"
#include "store/object_source.h"

namespace dvol::mountfs {

inline constexpr uint64_t kRootIno = 1;

// What stat shows of an entry.
struct Attr {
    uint64_t ino = 0;
    uint32_t mode = 0;  // S_IF* type bits and the 12 permission bits
    uint32_t nlink = 1;
    uint32_t uid = 0;
    uint32_t gid = 0;
    uint64_t size = 0;
    uint64_t blocks = 0;  // 512-byte units: the file's data, holes excluded
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;  // 0: not known (a commit records no ctime), shown as the mtime
    uint64_t rdev = 0;
};

struct Limits {
    size_t tree_cache = 32u << 20;   // decoded trees
    size_t list_cache = 16u << 20;   // decoded extent lists
    size_t chunk_cache = 64u << 20;  // chunks
};

struct Options {
    Limits limits;
    bool count_links = false;  // walk every tree at open() for exact link counts
    // Sequential reads: how many chunks past the one being read to load ahead, 0 for none. A
    // read is sequential when it starts where the previous read of the same open file ended,
    // or (after a first read) at most `sequential_window` bytes before or after that: the FUSE
    // worker threads answer the kernel's readahead requests in any order, so the reads of one
    // sequential stream arrive a request or two out of place.
    unsigned readahead_chunks = 0;
    uint64_t sequential_window = 0;
    // Who loads them: false, the source, hinted through ObjectSource::prefetch (a lazy volume's
    // cache, which fetches on threads of its own); true, this CommitFs, decoding them into its
    // chunk cache on a thread of its own (a local store, whose prefetch does nothing), so that
    // a sequential read decompresses and verifies on two cores.
    bool readahead_self = false;
    // Called for every object loaded (trees, extent lists, chunks), with a one-line description:
    // the mount's --verbose log.
    std::function<void(const std::string&)> trace;
};

struct Stats {
    uint64_t tree_loads = 0;
    uint64_t list_loads = 0;
    uint64_t chunk_loads = 0;
    uint64_t chunk_hits = 0;
    size_t inodes = 0;  // in the table, the root included
    size_t cached_bytes = 0;
};

using PathKey = std::array<uint8_t, 16>;

struct PathKeyHash {
    size_t operator()(const PathKey& k) const noexcept {
        size_t h;
        static_assert(sizeof(h) <= sizeof(PathKey));
        std::memcpy(&h, k.data(), sizeof h);
        return h;
    }
};

// A decoded tree, as the caches hold it.
struct CachedTree {
    Tree tree;
    bool has_links = false;  // holds a hard link entry
};

// A decoded extent list with each extent's offset from the list's start.
struct CachedList {
    std::vector<Extent> extents;
    std::vector<uint64_t> starts;
    uint64_t data_bytes = 0;  // bytes in chunk extents (not holes)
};

// Pieces of a read's answer, in order: slices of cached chunks (kept alive by `keep`) and of a
// static buffer of zeros (for holes). Reused between reads.
struct ReadResult {
    std::vector<std::span<const std::byte>> pieces;
    std::vector<std::shared_ptr<const std::vector<std::byte>>> keep;
    size_t bytes = 0;
    void clear() {
        pieces.clear();
        keep.clear();
        bytes = 0;
    }
};

class CommitFs {
public:
    // The commit whose top tree is `top` (checked to have the top tree's shape), read through
    // `source`, which must outlive the CommitFs and be safe to call from several threads.
    static Result<std::unique_ptr<CommitFs>> open(ObjectSource& source, const ObjectId& top, Options options);
    ~CommitFs();
    CommitFs(const CommitFs&) = delete;
    CommitFs& operator=(const CommitFs&) = delete;

    // The entry `name` of directory `parent`, counting one more kernel reference to its inode
    // (given back by forget); nullopt when there is no such entry.
    Result<std::optional<Attr>> lookup(uint64_t parent, std::string_view name);
    // The kernel gives back `n` references; an inode with none left leaves the table (not the root).
    void forget(uint64_t ino, uint64_t n);
    Result<Attr> getattr(uint64_t ino);
    Result<std::string> readlink(uint64_t ino);
    // The value of the extended attribute `name`, nullopt when the entry has none of that name.
    Result<std::optional<std::string>> getxattr(uint64_t ino, std::string_view name);
    Result<std::vector<std::string>> listxattr(uint64_t ino);

    // An open directory: its tree, held for as long as it is open.
    class Dir {
    public:
        size_t size() const { return tree_->tree.entries.size(); }
        const TreeEntry& entry(size_t i) const { return tree_->tree.entries[i]; }
        uint64_t ino() const { return ino_; }
        uint64_t parent_ino() const { return parent_; }

    private:
        friend class CommitFs;
        std::shared_ptr<const CachedTree> tree_;
        ObjectId tree_id_;
        PathKey key_{};
        uint64_t ino_ = 0;
        uint64_t parent_ = 0;
    };
    Result<std::unique_ptr<Dir>> opendir(uint64_t ino);
    // The inode number readdir shows for entry `i` (no tree is loaded for it).
    uint64_t entry_ino(const Dir& dir, size_t i);
    // The S_IF* type bits of entry `i` (a hard link shows as a regular file).
    static uint32_t entry_type_bits(const TreeEntry& e);
    // Entry `i` as lookup() gives it (readdirplus), with one more reference to its inode.
    Result<Attr> lookup_entry(const Dir& dir, size_t i);

    // An open regular file: its extents (or extent-list references), with their offsets.
    class File {
    public:
        uint64_t size() const { return size_; }
        uint64_t ino() const { return ino_; }

    private:
        friend class CommitFs;
        uint64_t ino_ = 0;
        uint64_t size_ = 0;
        mutable std::atomic<uint64_t> next_read_{0};  // where a sequential read goes on
        FileContent content_;
        std::vector<uint64_t> starts_;  // offset of each extent (inline) or each list (indirect)
    };
    Result<std::unique_ptr<File>> open_file(uint64_t ino);
    // Up to `size` bytes at `offset` (fewer at the end of the file) into `out`.
    Status read(const File& f, uint64_t offset, size_t size, ReadResult& out);
    // lseek: the first offset >= `offset` in data (`data`) or in a hole (the end of the file counts
    // as a hole); nullopt (ENXIO) when there is none or `offset` is past the end.
    Result<std::optional<uint64_t>> seek(const File& f, uint64_t offset, bool data);

    // Path-based access, for the write layer (layer_fs.h), which numbers its own inodes. A path
    // is relative to the commit's root, components joined by '/', "" for the root itself.
    struct BaseEntry {
        std::shared_ptr<const CachedTree> tree;  // holds `entry`
        const TreeEntry* entry = nullptr;        // never a hard link: resolved to its target
        std::string path;                        // the entry's path (a hard link's: its target's)
    };
    // The entry at `path`, nullopt when there is none (or a component is not a directory).
    Result<std::optional<BaseEntry>> entry_at(std::string_view path);
    // A directory entry's tree.
    Result<std::shared_ptr<const CachedTree>> dir_tree(const TreeEntry& dir) { return tree(dir.subtree); }
    // The attributes of `e` (a resolved entry, never a hard link) as inode `ino`, its link count 1.
    Result<Attr> entry_attr(uint64_t ino, const TreeEntry& e);
    // The link count of the file at `path` (a resolved path) as far as the directories looked
    // into so far show it (entry_at notes the hard links of each directory it goes through).
    uint32_t link_count_at(std::string_view path);
    // An open file over a file entry's content, read with read() and seek(); no inode is held.
    Result<std::unique_ptr<File>> open_entry(const TreeEntry& e);
    // Calls `fn(start, extent)` for each extent of `f` overlapping [begin, end), in order.
    Status for_each_extent(const File& f, uint64_t begin, uint64_t end, const std::function<Status(uint64_t, const Extent&)>& fn);

    Stats stats() const;

private:
    struct Loc {
        ObjectId tree;   // the directory's tree holding the entry (the top tree for the root)
        uint32_t index = 0;
    };
    struct Node {
        uint64_t nlookup = 0;
        PathKey key{};
        Loc loc;
        uint64_t parent = 0;
    };
    struct Found {
        std::shared_ptr<const CachedTree> tree;  // holds `entry`
        const TreeEntry* entry = nullptr;
        Loc loc;
        PathKey key{};
    };

    CommitFs(ObjectSource& source, Options options);
    Result<std::shared_ptr<const CachedTree>> tree(const ObjectId& id);
    Result<std::shared_ptr<const CachedList>> extent_list(const ExtentListRef& ref);
    Result<std::shared_ptr<const std::vector<std::byte>>> chunk(const Extent& x);
    Result<CachedTree> load_tree(const ObjectId& id);
    Error object_error(const Error& e) const;

    Result<Node> node(uint64_t ino);
    Result<Found> entry_of(uint64_t ino);
    // The entry `i` of a directory (key `dir_key`, tree `dir_tree`), with hard links resolved.
    Result<Found> child(const std::shared_ptr<const CachedTree>& dir_tree, const ObjectId& dir_tree_id, const PathKey& dir_key,
                        size_t i);
    // A hard link's target: the path's entry, which must be a regular file.
    Result<Found> resolve_link(const std::string& target);
    uint64_t acquire(const PathKey& key, const Loc& loc, uint64_t parent);
    Result<Attr> attr_of(uint64_t ino, const PathKey& key, const TreeEntry& e);
    Result<uint64_t> data_bytes(const FileContent& c);

    // Link counts.
    void note_links(const PathKey& dir_key, const CachedTree& dir);
    Status count_all_links();
    uint32_t link_count(const PathKey& key);

    // Where the extent holding `pos` is: its extent, and its offset in the file.
    struct At {
        Extent extent;
        uint64_t start = 0;
        std::shared_ptr<const CachedList> list;  // indirect: the list holding it
        size_t list_index = 0;                   // indirect: which list
        size_t index = 0;                        // in the inline extents or in the list
    };
    Result<At> locate(const File& f, uint64_t pos);
    // The extent after `at`, or nullopt at the end of the file.
    Result<std::optional<At>> next_extent(const File& f, const At& at);
    // Hints the source with the chunks of up to options_.readahead_chunks extents after `at`.
    void read_ahead(const File& f, At at);

    ObjectSource& source_;
    Options options_;
    // Buffers of chunks the cache has let go, for the next chunks to be loaded into: a new
    // buffer costs a page fault and zeroing for every page of every chunk: a quarter of a cold
    // sequential read's CPU time in the mount once hashing was gone (docs/DECISIONS.md). A
    // reused buffer keeps its size, so loading a chunk no larger writes no zeros first.
    // Shared with every buffer handed out, which may outlive this CommitFs (a ReadResult kept).
    static constexpr size_t kSpareBuffers = 8;
    static constexpr size_t kMaxChunkRoom = 16u << 20;
    struct Spares {
        std::mutex mu;
        std::vector<std::unique_ptr<std::vector<std::byte>>> buffers;
    };
    std::shared_ptr<std::vector<std::byte>> chunk_buffer(size_t bytes);  // with room for `bytes`
    std::shared_ptr<Spares> spares_ = std::make_shared<Spares>();
    LoadingCache<CachedTree> trees_;
    LoadingCache<CachedList> lists_;
    LoadingCache<std::vector<std::byte>> chunks_;
    ObjectId top_;

    // readahead_self: extents to load into chunks_, by one thread; at most kAheadQueue waiting
    // (more are dropped, as the kernel's readahead may drop pages).
    static constexpr size_t kAheadQueue = 16;
    void ahead_loop();
    std::mutex ahead_mu_;
    std::condition_variable ahead_cv_;
    std::deque<Extent> ahead_;
    bool ahead_stop_ = false;
    std::thread ahead_thread_;  // started by open(); joined by the destructor
    std::atomic<uint64_t> tree_loads_{0}, list_loads_{0}, chunk_loads_{0};

    mutable std::mutex nodes_mu_;
    std::unordered_map<uint64_t, Node> nodes_;
    std::unordered_map<PathKey, uint64_t, PathKeyHash> ino_of_;

    std::mutex links_mu_;
    std::unordered_map<PathKey, uint32_t, PathKeyHash> links_to_;          // target -> names beyond the first
    std::unordered_set<PathKey, PathKeyHash> link_dirs_seen_;              // directories counted (lazy mode)
};

// key(dir/name) from key(dir); key of the root; the inode number a key asks for.
PathKey child_key(const PathKey& dir, std::string_view name);
PathKey root_key();
uint64_t ino_candidate(const PathKey& key);
// key of a path relative to the root ("a/b"; not empty).
PathKey path_key(std::string_view path);

}  // namespace dvol::mountfs
