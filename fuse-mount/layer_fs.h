// A lazy volume's write layer: the live directory as its base commit (a CommitFs, read-only,
// whose chunks come through the volume's chunk cache) plus the changes made to it since, kept in
// a directory of its own (volumes/<volume>/cache/layer/, docs/FORMAT.md "The write layer").
// Independent of FUSE like CommitFs: fuse-mount/fuse_ops.cpp turns kernel requests into calls of
// this class, and the unit tests call it directly over an in-memory source.
//
// What is kept (layer.db, SQLite in WAL mode, and data/<ino>):
// - a row per inode the layer created or changed (`nodes`): its type, mode, owner, times, size,
//   symlink target, link count, and its origin: the base path it was copied up from (none for a
//   new one). A base entry gets a row the first time it changes (copy-up of its metadata only);
//   until then it is read from the base and has no row;
// - the entries of every directory whose listing changed (`dirents`), materialised: all its base
//   entries copied as references to their base paths, then changed like any directory. A
//   directory without a listing shows its base tree (through its origin when it has a row);
// - per regular file copied up from the base, which of the base file's extents were copied into
//   its data file (`copied`), and its "base limit": below it, an extent not copied is read from
//   the base; at and above it, bytes are the data file's only (a truncate lowers it). The data
//   file is sparse and sits at the file's own offsets, so the first 4 KiB write into a 1 GiB
//   file copies the one extent (chunk) it touches, never the file.
//
// Inode numbers: 1 for the root; a base entry's is derived from its base path (commit_fs.h's
// keys, the top bit cleared) and kept in its row once it has one, so a renamed or changed base
// file keeps its number; a new entry's is allocated from 2^63 up and kept in its row. So every
// number stays the same for the life of the mount, across commits, and a kept row also across
// mounts.
//
// Durability. Namespace changes (create, link, unlink, rename, metadata) are committed to layer.db
// as they happen (SQLite synchronous=NORMAL: they survive the death of the mount process, not a
// power cut until the next fsync). Data writes go to the data file at once, but the size, times
// and copied marks of a file are kept in memory while it is open and written to layer.db when it
// is fsync'ed (after an fdatasync of its data file, with SQLite synchronous=FULL), released, or
// by flush_all(). An extent is marked copied only in a transaction that follows the fdatasync of
// its bytes. So a crash (SIGKILL of the mount process, or of the machine) keeps every fsync'ed
// write and leaves a consistent layer: what was not fsync'ed may be lost, as on ext4, and a
// file's bytes are always either the base's or bytes that were written to it.
//
// Thread safety: every method may be called from several threads at once. One mutex guards the
// inode table and layer.db; a file's data has a lock of its own, so reads and writes of
// different files, and reads of one file, run side by side (a read fetching a chunk from a remote
// holds no lock others need, but a write copying up an extent holds its file's).
//
// Errors: failures that are a file system's own carry their errno in Error::sys (ENOENT, EEXIST,
// ENOTEMPTY, ENOTDIR, EISDIR, EPERM, ENODATA, EINVAL); others are the base's (`corrupt`, `io`:
// EIO, logged) or layer.db's and the data files' (`io`, `no_space`).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"
#include "commit_fs.h"
#include "meta/db.h"
#include "repo/layer_rows.h"

namespace dvol::mountfs {

// Numbers of inodes the layer creates start here; base entries' numbers are below.
inline constexpr uint64_t kLayerInoBase = uint64_t{1} << 63;

// What setattr changes; unset fields are left alone.
struct SetAttr {
    std::optional<uint32_t> mode;  // permission bits (07777)
    std::optional<uint32_t> uid;
    std::optional<uint32_t> gid;
    std::optional<uint64_t> size;
    std::optional<int64_t> mtime_ns;  // the caller resolves UTIME_NOW
};

// A new entry: its type and permission bits in `mode` (S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO,
// S_IFCHR, S_IFBLK, S_IFSOCK), its owner, a device's number, a symlink's target.
struct NewEntry {
    uint32_t mode = 0;
    uint32_t uid = 0;
    uint32_t gid = 0;
    uint64_t rdev = 0;
    std::string target;
};

// One entry of a directory listing; `type` is the S_IF* bits.
struct DirEntry {
    std::string name;
    uint64_t ino = 0;
    uint32_t type = 0;
};

class LayerFs {
public:
    // The layer kept in directory `dir` (created when missing) over `base`, the top tree of the
    // commit `base_commit`, read through `base` (which must outlive the LayerFs). A layer made
    // over another commit is refused (`conflict`): a layer holds differences from one commit.
    // Deletes what a crash left: files unlinked while open, data past a file's recorded size,
    // data files of no inode.
    static Result<std::unique_ptr<LayerFs>> open(CommitFs& base, const ObjectId& base_commit, const std::string& dir);
    ~LayerFs();
    LayerFs(const LayerFs&) = delete;
    LayerFs& operator=(const LayerFs&) = delete;

    // As CommitFs: lookup counts one more kernel reference to the inode, forget gives them back.
    Result<std::optional<Attr>> lookup(uint64_t parent, std::string_view name);
    void forget(uint64_t ino, uint64_t n);
    Result<Attr> getattr(uint64_t ino);
    Result<Attr> setattr(uint64_t ino, const SetAttr& s);
    Result<std::string> readlink(uint64_t ino);
    Result<std::optional<std::string>> getxattr(uint64_t ino, std::string_view name);
    Result<std::vector<std::string>> listxattr(uint64_t ino);
    // `flags`: XATTR_CREATE (EEXIST when present), XATTR_REPLACE (ENODATA when absent), or 0.
    Status setxattr(uint64_t ino, std::string_view name, std::string_view value, int flags);
    Status removexattr(uint64_t ino, std::string_view name);

    // Creates `name` in `parent` (EEXIST when it exists), counting a kernel reference to it.
    Result<Attr> mknod(uint64_t parent, std::string_view name, const NewEntry& e);
    // A new name for `ino` (not a directory: EPERM), counting a kernel reference.
    Result<Attr> link(uint64_t ino, uint64_t parent, std::string_view name);
    Status unlink(uint64_t parent, std::string_view name);
    Status rmdir(uint64_t parent, std::string_view name);
    // rename(2)'s rules; `flags` 0, RENAME_NOREPLACE or RENAME_EXCHANGE.
    Status rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name, unsigned flags);
    // The directory's entries, sorted by name ("." and ".." not included).
    Result<std::vector<DirEntry>> readdir(uint64_t ino);

    // An open regular file. All handles of one inode share its state.
    struct FileData;
    class Handle {
    public:
        uint64_t ino() const { return ino_; }

    private:
        friend class LayerFs;
        uint64_t ino_ = 0;
        bool write_ = false;
        std::shared_ptr<FileData> data_;
    };
    // `write`: opened for writing (the entry is copied up: its metadata, not its data);
    // `truncate`: O_TRUNC.
    Result<std::unique_ptr<Handle>> open_file(uint64_t ino, bool write, bool truncate);
    // Up to `size` bytes at `offset` (fewer at the end of the file) into `out`.
    Status read(Handle& h, uint64_t offset, size_t size, std::vector<std::byte>& out);
    // Writes `data` at `offset` (the handle must be open for writing); returns the count.
    Result<size_t> write(Handle& h, uint64_t offset, std::span<const std::byte> data);
    // lseek SEEK_DATA / SEEK_HOLE (a file the layer holds shows no holes but its end).
    Result<std::optional<uint64_t>> seek(Handle& h, uint64_t offset, bool data);
    // Makes the file's writes and every change to the namespace so far durable. `datasync`
    // (fdatasync): when the file's size and copied extents are what layer.db holds, only its data
    // is synced; its times reach layer.db later (at release or a flush), as fdatasync allows.
    Status fsync(uint64_t ino, bool datasync = false);
    // The same for every file: what fsync of a directory, syncfs and unmounting do.
    Status flush_all();
    // Gives the handle back; the last one of an inode writes its state to layer.db (and deletes
    // a file that was unlinked while open).
    Status release(std::unique_ptr<Handle> h);

    struct Counters {
        uint64_t extents_copied = 0;  // base extents copied into data files
        uint64_t bytes_copied = 0;    // their bytes read from the base (holes not counted)
    };
    Counters counters() const;

private:
    using Row = LayerRow;
    struct Node {
        uint64_t nlookup = 0;
        bool row = false;
        std::string base;  // without a row: the base path
    };
    struct Target {
        uint64_t ino = 0;
        bool row = false;
        std::string base;  // without a row: the base path (a hard link's target's)
    };

    LayerFs(CommitFs& base, std::string dir);
    Status init(const ObjectId& base_commit);
    Status recover();

    // Under mu_.
    Result<std::optional<Row>> load_row(uint64_t ino);
    Result<Row> row_of(uint64_t ino);
    Result<std::optional<uint64_t>> row_by_origin(std::string_view path);
    Result<std::optional<Target>> resolve_base(const std::string& path);
    Result<std::optional<Target>> find_child(uint64_t parent, std::string_view name);
    // The number of the base entry at `path` (no row); `exact`: checked against the rows too.
    uint64_t base_ino(const std::string& path, bool exact);
    Result<bool> row_exists(uint64_t ino);
    Result<Attr> attr_locked(uint64_t ino);
    Result<Attr> attr_of_target(const Target& t);
    uint64_t acquire(const Target& t);
    Status copy_up(uint64_t ino);
    // Commits a transaction that may have copied entries up, then tells the inode table.
    Status settle(meta::Db::Transaction& tx);
    struct Rollback {
        LayerFs& fs;
        ~Rollback();
    };
    std::vector<std::pair<uint64_t, std::string>> pending_up_;  // copied up by the open transaction
    Status materialise(uint64_t dir);
    Result<bool> dir_empty(const Target& t);
    Status drop_name(const Target& t);
    Status touch_dir(uint64_t dir, int64_t now);
    Result<uint64_t> new_ino();
    Result<std::shared_ptr<FileData>> file_data(uint64_t ino);
    std::string data_path(uint64_t ino) const;
    Status delete_row(uint64_t ino);
    Status sync_db();

    // Not under mu_.
    Status persist(FileData& f, bool durable, bool datasync = false);
    Status copy_extents(FileData& f, uint64_t begin, uint64_t end);
    Status truncate(FileData& f, uint64_t size, int64_t now);

    CommitFs& base_;
    std::string dir_;
    std::unique_ptr<meta::Db> db_;
    mutable std::mutex mu_;
    std::unordered_map<uint64_t, Node> nodes_;
    std::unordered_map<std::string, uint64_t> base_ino_;  // base path -> number, for the nodes_ without a row
    std::unordered_map<uint64_t, std::shared_ptr<FileData>> files_;
    uint64_t next_ino_ = kLayerInoBase;
    std::atomic<uint64_t> extents_copied_{0}, bytes_copied_{0};
};

// The inode number the layer gives the base entry at `path` when nothing else holds it.
uint64_t base_ino_candidate(std::string_view path);

}  // namespace dvol::mountfs
