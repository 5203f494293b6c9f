// File-system helpers over raw file descriptors. Every failure becomes an Error whose message
// names the path and the system's reason; errno is converted here and nowhere else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace dvol {

// Owns a file descriptor; closes it on destruction. Move-only.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept;
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd();

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    int release() { int f = fd_; fd_ = -1; return f; }
    void reset(int fd = -1);

private:
    int fd_ = -1;
};

// An Error of code `io` (or not_found / already_exists for ENOENT / EEXIST) from errno.
Error errno_error(std::string_view what, std::string_view path, int err);
Error errno_error(std::string_view what, std::string_view path);

Result<UniqueFd> open_file(const std::string& path, int flags, unsigned mode = 0644);
Result<UniqueFd> open_at(int dirfd, const std::string& name, int flags, unsigned mode = 0644);
// Opens the entry `name` (one path component) of `dirfd` without following a symlink and
// without crossing into another mount, not even a bind mount of the same file system (the
// entry being a mount point is an Errc::busy error naming `path`, a symlink an Errc::io one);
// as `rm --one-file-system` and more. openat2(RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS) where
// the kernel has it (Linux 5.6), else openat(O_NOFOLLOW) and a comparison of mount ids
// (statx, Linux 5.8) or devices. `path` is for messages.
Result<UniqueFd> open_beneath(int dirfd, const std::string& name, int flags, const std::string& path, unsigned mode = 0644);
// The same for a relative path of several components, none of them a symlink, a mount point
// or "..".
Result<UniqueFd> open_path_beneath(int dirfd, const std::string& rel, int flags, const std::string& path);
// Opens the directory `path` for reading, following symlinks in its parents but not in its
// last component: a symlink there (or anything but a directory) is refused with an Errc::io
// error that says so. For a volume's live directory, which must be a directory of its own.
Result<UniqueFd> open_dir_nofollow(const std::string& path);

// The names in the directory `dirfd` (not "." and ".."), in the order the file system gives;
// with `types`, each name's d_type there too (DT_UNKNOWN where the file system does not say).
Result<std::vector<std::string>> list_dir(int dirfd, const std::string& path, std::vector<unsigned char>* types = nullptr);

// Write all of `data` (retrying short writes and EINTR).
Status write_all(int fd, std::span<const std::byte> data, std::string_view path);
Status pwrite_all(int fd, std::span<const std::byte> data, uint64_t offset, std::string_view path);
// Read exactly data.size() bytes at `offset`; a short read is a `corrupt` error (truncated file).
Status pread_exact(int fd, std::span<std::byte> data, uint64_t offset, std::string_view path);
// Read up to data.size() bytes; returns the count (fewer only at end of file, 0 there).
Result<size_t> read_some(int fd, std::span<std::byte> data, std::string_view path);
// The same at `offset`, without moving the file position.
Result<size_t> pread_some(int fd, std::span<std::byte> data, uint64_t offset, std::string_view path);
// Reads what the page cache already holds of the range at `offset`, never waiting for the disk
// (RWF_NOWAIT): the count of bytes read from the start of `data`, short at the first byte not
// cached or at the end of the file, 0 where the kernel cannot tell. Never an error: callers
// use it to skip work, and fall back to doing it.
size_t pread_cached(int fd, std::span<std::byte> data, uint64_t offset);

Status fsync_fd(int fd, std::string_view path);
Status fsync_dir(const std::string& dir);

// mkdir -p; existing directories are fine.
Status make_dirs(const std::string& path, unsigned mode = 0755);
// rm -rf --one-file-system without following symlinks, of any depth (no recursion on the
// stack): a mount point met below `path` stops the removal with an Errc::busy error naming it,
// and nothing inside the mount is touched (what was removed before it stays removed; callers
// that must change nothing look for mounts first, mounts_at_or_below). A missing path is fine.
Status remove_tree(const std::string& path);
// Remove everything inside the directory `dirfd` (not the directory itself), as remove_tree.
// `path` is only for messages.
Status remove_children_at(int dirfd, const std::string& path);
// Remove the entry `name` in `dirfd`, and everything below it if it is a directory, as
// remove_tree.
Status remove_entry_at(int dirfd, const std::string& name, const std::string& path);

// A mount point, as /proc/self/mountinfo shows it.
struct MountPoint {
    std::string path;     // absolute, in this process's mount namespace
    std::string fs_type;  // "tmpfs", "ext4", "fuse.sshfs", ...
    bool is_dir_itself = false;  // the directory asked about is this mount's root
};
// The mount points at the directory `dirfd` (when it is one itself) and below it, as this
// process's mount namespace sees them; `path` (the directory's name, for messages) is not
// trusted: the directory's real path is read back from the fd. Empty when /proc is not
// mounted (open_beneath still refuses to cross a mount during a walk).
Result<std::vector<MountPoint>> mounts_at_or_below(int dirfd, const std::string& path);
// The directory's real path as the kernel gives it (/proc/self/fd), or `fallback`.
std::string real_path_of(int fd, const std::string& fallback);

// Walks a directory tree of any depth one level at a time without recursion: the stack of
// the directories entered, from a root the caller keeps open. Only the deepest kKeepOpen levels
// (and the root) keep their fds, so depth never exhausts the process's fds; a level let go is
// opened again through ".." from its child on the way up, and must be the very directory it
// was (device and inode), or the walk fails with Errc::conflict (the tree moved meanwhile).
class DirStack {
public:
    static constexpr size_t kKeepOpen = 32;
    // `same_mount`: entering a mount point is an Errc::busy error (open_beneath); otherwise
    // only symlinks are refused.
    static Result<DirStack> begin(int root_fd, const std::string& root_path, bool same_mount);
    DirStack(DirStack&&) noexcept = default;
    DirStack& operator=(DirStack&&) noexcept = default;

    int fd() const;                              // the current directory
    size_t depth() const { return levels_.size() - 1; }  // 0 at the root
    // Enters the subdirectory `name` of the current directory; `path` is for messages.
    Status enter(const std::string& name, const std::string& path);
    // Back to the parent of the current directory (never above the root).
    Status leave(const std::string& path);

private:
    struct Level {
        UniqueFd fd;  // invalid for the root (borrowed) and for levels let go
        uint64_t dev = 0;
        uint64_t ino = 0;
    };
    DirStack() = default;
    int root_fd_ = -1;
    bool same_mount_ = false;
    std::vector<Level> levels_;
};

bool path_exists(const std::string& path);
// 32 random hex digits: names of packs, staging files and trash directories.
std::string random_name();
Result<std::string> read_small_file(const std::string& path, size_t limit);

inline std::span<const std::byte> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view as_chars(std::span<const std::byte> b) {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace dvol
