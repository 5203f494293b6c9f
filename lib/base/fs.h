// File-system helpers over raw file descriptors. Every failure becomes an Error whose message
// names the path and the system's reason; errno is converted here and nowhere else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

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
// rm -rf without following symlinks. A missing path is fine.
Status remove_tree(const std::string& path);
// Remove everything inside the directory `dirfd` (not the directory itself), never following
// symlinks. `path` is only for messages.
Status remove_children_at(int dirfd, const std::string& path);
// Remove the entry `name` in `dirfd`, recursively if it is a directory.
Status remove_entry_at(int dirfd, const std::string& name, const std::string& path);

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
