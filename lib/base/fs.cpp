#include "base/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace dvol {

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
}

UniqueFd::~UniqueFd() { reset(); }

void UniqueFd::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

Error errno_error(std::string_view what, std::string_view path, int err) {
    Errc code = Errc::io;
    if (err == ENOENT) code = Errc::not_found;
    if (err == EEXIST) code = Errc::already_exists;
    if (err == EWOULDBLOCK) code = Errc::busy;
    if (err == ENOSPC || err == EDQUOT) code = Errc::no_space;
    return make_error(code, fmt::format("cannot {} {}: {}", what, path, std::strerror(err)));
}

Error errno_error(std::string_view what, std::string_view path) { return errno_error(what, path, errno); }

Result<UniqueFd> open_file(const std::string& path, int flags, unsigned mode) {
    int fd;
    do fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) return errno_error("open", path);
    return UniqueFd(fd);
}

Result<UniqueFd> open_at(int dirfd, const std::string& name, int flags, unsigned mode) {
    int fd;
    do fd = ::openat(dirfd, name.c_str(), flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) return errno_error("open", name);
    return UniqueFd(fd);
}

Status write_all(int fd, std::span<const std::byte> data, std::string_view path) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("write", path);
        }
        data = data.subspan(static_cast<size_t>(n));
    }
    return {};
}

Status pwrite_all(int fd, std::span<const std::byte> data, uint64_t offset, std::string_view path) {
    while (!data.empty()) {
        ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("write", path);
        }
        data = data.subspan(static_cast<size_t>(n));
        offset += static_cast<uint64_t>(n);
    }
    return {};
}

size_t pread_cached(int fd, std::span<std::byte> data, uint64_t offset) {
    size_t total = 0;
    while (total < data.size()) {
        struct iovec iov{data.data() + total, data.size() - total};
        ssize_t n = ::preadv2(fd, &iov, 1, static_cast<off_t>(offset + total), RWF_NOWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        total += static_cast<size_t>(n);
    }
    return total;
}

Result<size_t> pread_some(int fd, std::span<std::byte> data, uint64_t offset, std::string_view path) {
    size_t total = 0;
    while (total < data.size()) {
        ssize_t n = ::pread(fd, data.data() + total, data.size() - total, static_cast<off_t>(offset + total));
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("read", path);
        }
        if (n == 0) break;
        total += static_cast<size_t>(n);
    }
    return total;
}

Status pread_exact(int fd, std::span<std::byte> data, uint64_t offset, std::string_view path) {
    DVOL_TRY(size_t n, pread_some(fd, data, offset, path));
    if (n < data.size()) return make_error(Errc::corrupt, fmt::format("{} is truncated at byte {}", path, offset + n));
    return {};
}

Result<size_t> read_some(int fd, std::span<std::byte> data, std::string_view path) {
    size_t total = 0;
    while (total < data.size()) {
        ssize_t n = ::read(fd, data.data() + total, data.size() - total);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("read", path);
        }
        if (n == 0) break;
        total += static_cast<size_t>(n);
    }
    return total;
}

Status fsync_fd(int fd, std::string_view path) {
    if (::fsync(fd) != 0) return errno_error("fsync", path);
    return {};
}

Status fsync_dir(const std::string& dir) {
    DVOL_TRY(UniqueFd fd, open_file(dir, O_RDONLY | O_DIRECTORY));
    return fsync_fd(fd.get(), dir);
}

Status make_dirs(const std::string& path, unsigned mode) {
    if (path.empty()) return {};
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) return {};
        return make_error(Errc::io, fmt::format("{} exists and is not a directory", path));
    }
    auto slash = path.find_last_of('/');
    if (slash != std::string::npos && slash > 0) DVOL_CHECK(make_dirs(path.substr(0, slash), mode));
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return errno_error("create directory", path);
    return {};
}

Status remove_entry_at(int dirfd, const std::string& name, const std::string& path) {
    if (::unlinkat(dirfd, name.c_str(), 0) == 0) return {};
    if (errno == ENOENT) return {};
    if (errno != EISDIR && errno != EPERM) return errno_error("remove", path);
    int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno_error("open directory", path);
    UniqueFd sub(fd);
    DVOL_CHECK(remove_children_at(sub.get(), path));
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
        return errno_error("remove directory", path);
    return {};
}

Status remove_children_at(int dirfd, const std::string& path) {
    int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return errno_error("read directory", path);
    DIR* dir = ::fdopendir(dup);
    if (!dir) {
        ::close(dup);
        return errno_error("read directory", path);
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(dir)) {
        if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
        names.emplace_back(e->d_name);
    }
    ::closedir(dir);
    for (const auto& n : names) DVOL_CHECK(remove_entry_at(dirfd, n, path + "/" + n));
    return {};
}

Status remove_tree(const std::string& path) {
    auto slash = path.find_last_of('/');
    std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return {};
        return errno_error("open directory", parent);
    }
    UniqueFd pfd(fd);
    return remove_entry_at(pfd.get(), name, path);
}

bool path_exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

Result<std::string> read_small_file(const std::string& path, size_t limit) {
    DVOL_TRY(UniqueFd fd, open_file(path, O_RDONLY));
    std::string out;
    char buf[65536];
    for (;;) {
        DVOL_TRY(size_t n, read_some(fd.get(), std::as_writable_bytes(std::span(buf)), path));
        if (n == 0) return out;
        if (out.size() + n > limit) return make_error(Errc::invalid_argument, fmt::format("{} is larger than {} bytes", path, limit));
        out.append(buf, n);
    }
}

std::string random_name() {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = ::getrandom(b + got, sizeof b - got, 0);
        if (n > 0) got += static_cast<size_t>(n);
    }
    std::string s;
    for (unsigned char c : b) s += fmt::format("{:02x}", c);
    return s;
}

}  // namespace dvol
