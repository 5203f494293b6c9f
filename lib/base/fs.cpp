#include "base/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
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

namespace {

Error mount_point_error(const std::string& path) {
    return make_error(Errc::busy, fmt::format("{} is a mount point (another file system, or a bind mount); dvol does not cross into it: "
                                              "unmount it first", path));
}

// The mount an open file lies on: its mount id (statx, Linux 5.8), else its device (which
// tells file systems apart, not bind mounts of one).
Result<uint64_t> mount_of(int fd, const std::string& path) {
    struct statx sx;
    if (::statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) == 0 && (sx.stx_mask & STATX_MNT_ID)) return sx.stx_mnt_id;
    struct stat st;
    if (::fstat(fd, &st) != 0) return errno_error("stat", path);
    return static_cast<uint64_t>(st.st_dev) | (uint64_t{1} << 63);
}

// Whether openat2(2) is worth trying: cleared for good when the kernel lacks it (ENOSYS).
std::atomic<bool> have_openat2{true};

}  // namespace

Result<UniqueFd> open_beneath(int dirfd, const std::string& name, int flags, const std::string& path, unsigned mode) {
    flags |= O_NOFOLLOW | O_CLOEXEC;
    if (have_openat2.load(std::memory_order_relaxed)) {
        struct open_how how {};
        how.flags = static_cast<uint64_t>(flags);
        // openat2 wants 0 unless a file is made (O_TMPFILE includes O_DIRECTORY's bit).
        if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) how.mode = mode;
        how.resolve = RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS;
        long fd;
        do fd = ::syscall(SYS_openat2, dirfd, name.c_str(), &how, sizeof how);
        while (fd < 0 && errno == EINTR);
        if (fd >= 0) return UniqueFd(static_cast<int>(fd));
        if (errno == EXDEV) return mount_point_error(path);
        if (errno == ENOSYS) have_openat2.store(false, std::memory_order_relaxed);
        // EPERM may be a seccomp filter that predates openat2, or a genuine refusal; the
        // plain call below says which.
        if (errno != ENOSYS && errno != EPERM) return errno_error("open", path);
    }
    int fd;
    do fd = ::openat(dirfd, name.c_str(), flags, mode);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) return errno_error("open", path);
    UniqueFd out(fd);
    DVOL_TRY(uint64_t here, mount_of(dirfd, path));
    DVOL_TRY(uint64_t there, mount_of(out.get(), path));
    if (here != there) return mount_point_error(path);
    return out;
}

Result<UniqueFd> open_path_beneath(int dirfd, const std::string& rel, int flags, const std::string& path) {
    // One component at a time: each is refused as open_beneath refuses it.
    UniqueFd dir;
    int at = dirfd;
    size_t start = 0;
    for (;;) {
        size_t slash = rel.find('/', start);
        std::string name = rel.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        if (name.empty() || name == "." || name == "..") return make_error(Errc::invalid_argument, fmt::format("{} is not a path inside the directory", path));
        if (slash == std::string::npos) return open_beneath(at, name, flags, path);
        DVOL_TRY(dir, open_beneath(at, name, O_RDONLY | O_DIRECTORY, path));
        at = dir.get();
        start = slash + 1;
    }
}

Result<UniqueFd> open_dir_nofollow(const std::string& path) {
    auto slash = path.find_last_of('/');
    if (slash == std::string::npos || slash + 1 == path.size()) return open_file(path, O_RDONLY | O_DIRECTORY);
    std::string parent = slash == 0 ? "/" : path.substr(0, slash);
    std::string name = path.substr(slash + 1);
    DVOL_TRY(UniqueFd pfd, open_file(parent, O_RDONLY | O_DIRECTORY));
    int fd;
    do fd = ::openat(pfd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd >= 0) return UniqueFd(fd);
    int err = errno;
    struct stat st;
    if ((err == ELOOP || err == ENOTDIR) && ::fstatat(pfd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode))
            return make_error(Errc::io, fmt::format("{} is a symlink, not a directory; dvol does not follow it (replace it with a directory)", path));
        if (!S_ISDIR(st.st_mode)) return make_error(Errc::io, fmt::format("{} is not a directory", path));
    }
    return errno_error("open", path, err);
}

Result<std::vector<std::string>> list_dir(int dirfd, const std::string& path, std::vector<unsigned char>* types) {
    int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return errno_error("read directory", path);
    DIR* d = ::fdopendir(dup);
    if (!d) {
        int err = errno;
        ::close(dup);
        return errno_error("read directory", path, err);
    }
    // The fd is shared with the caller's: start from the beginning whatever read it before.
    ::rewinddir(d);
    std::vector<std::string> names;
    if (types) types->clear();
    for (;;) {
        errno = 0;
        dirent* e = ::readdir(d);
        if (!e) break;
        if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
        names.emplace_back(e->d_name);
        if (types) types->push_back(e->d_type);
    }
    int err = errno;
    ::closedir(d);
    if (err != 0) return errno_error("read directory", path, err);
    return names;
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

namespace {

// Whether unlinkat(dirfd, name, 0) failed with `err` because the entry is a directory (Linux
// says EISDIR; POSIX allows EPERM, which Linux also gives for an immutable file).
bool is_directory_error(int dirfd, const std::string& name, int err) {
    if (err == EISDIR) return true;
    struct stat st;
    return err == EPERM && ::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

Status remove_entry_at(int dirfd, const std::string& name, const std::string& path) {
    if (::unlinkat(dirfd, name.c_str(), 0) == 0) return {};
    if (errno == ENOENT) return {};
    int err = errno;
    if (!is_directory_error(dirfd, name, err)) return errno_error("remove", path, err);
    DVOL_TRY(UniqueFd sub, open_beneath(dirfd, name, O_RDONLY | O_DIRECTORY, path));
    DVOL_CHECK(remove_children_at(sub.get(), path));
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return errno_error("remove directory", path);
    return {};
}

Status remove_children_at(int dirfd, const std::string& path) {
    // Depth-first with a stack of its own: a tree of any depth is removed with bounded stack
    // and fds (DirStack). Each frame holds the names of one directory still to remove.
    DVOL_TRY(DirStack dirs, DirStack::begin(dirfd, path, true));
    struct Frame {
        std::vector<std::string> names;
        std::string name;  // of this directory in its parent
        size_t path_len;   // of `cur` for this directory
    };
    std::string cur = path;
    std::vector<Frame> frames;
    {
        DVOL_TRY(auto names, list_dir(dirfd, path));
        frames.push_back(Frame{std::move(names), {}, cur.size()});
    }
    while (true) {
        Frame& f = frames.back();
        if (f.names.empty()) {
            if (frames.size() == 1) return {};
            std::string name = std::move(f.name);
            frames.pop_back();
            DVOL_CHECK(dirs.leave(cur));
            if (::unlinkat(dirs.fd(), name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return errno_error("remove directory", cur);
            cur.resize(frames.back().path_len);
            continue;
        }
        std::string n = std::move(f.names.back());
        f.names.pop_back();
        cur += '/';
        cur += n;
        if (::unlinkat(dirs.fd(), n.c_str(), 0) == 0 || errno == ENOENT) {
            cur.resize(f.path_len);
            continue;
        }
        int err = errno;
        if (!is_directory_error(dirs.fd(), n, err)) return errno_error("remove", cur, err);
        DVOL_CHECK(dirs.enter(n, cur));
        DVOL_TRY(auto names, list_dir(dirs.fd(), cur));
        frames.push_back(Frame{std::move(names), std::move(n), cur.size()});
    }
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

std::string real_path_of(int fd, const std::string& fallback) {
    std::string link = fmt::format("/proc/self/fd/{}", fd);
    std::string out(4096, '\0');
    for (;;) {
        ssize_t n = ::readlink(link.c_str(), out.data(), out.size());
        if (n < 0) return fallback;
        if (static_cast<size_t>(n) < out.size()) {
            out.resize(static_cast<size_t>(n));
            return out;
        }
        out.resize(out.size() * 2);
    }
}

namespace {

// Undoes mountinfo's octal escapes (\040 for a space, \011, \012, \134).
std::string unescape_mount_field(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
            s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

}  // namespace

Result<std::vector<MountPoint>> mounts_at_or_below(int dirfd, const std::string& path) {
    std::vector<MountPoint> out;
    std::string real = real_path_of(dirfd, path);
    auto info = read_small_file("/proc/self/mountinfo", 64u << 20);
    if (!info) {
        if (info.error().code == Errc::not_found) return out;  // no /proc here
        return std::move(info).error();
    }
    std::string prefix = real == "/" ? "/" : real + "/";
    std::string_view text = *info;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        // id parent major:minor root MOUNT-POINT options [optional fields...] - FSTYPE source ...
        std::vector<std::string_view> fields;
        for (size_t pos = 0; pos <= line.size();) {
            size_t sp = line.find(' ', pos);
            if (sp == std::string_view::npos) sp = line.size();
            fields.push_back(line.substr(pos, sp - pos));
            pos = sp + 1;
        }
        if (fields.size() < 5) continue;
        std::string mp = unescape_mount_field(fields[4]);
        if (mp != real && mp.compare(0, prefix.size(), prefix) != 0) continue;
        std::string type;
        for (size_t i = 5; i + 1 < fields.size(); ++i)
            if (fields[i] == "-") {
                type = unescape_mount_field(fields[i + 1]);
                break;
            }
        bool itself = mp == real;
        out.push_back(MountPoint{std::move(mp), std::move(type), itself});
    }
    return out;
}

Result<DirStack> DirStack::begin(int root_fd, const std::string& root_path, bool same_mount) {
    struct stat st;
    if (::fstat(root_fd, &st) != 0) return errno_error("stat", root_path);
    DirStack s;
    s.root_fd_ = root_fd;
    s.same_mount_ = same_mount;
    s.levels_.push_back(Level{UniqueFd(), static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)});
    return s;
}

int DirStack::fd() const { return levels_.size() == 1 ? root_fd_ : levels_.back().fd.get(); }

Status DirStack::enter(const std::string& name, const std::string& path) {
    UniqueFd sub;
    if (same_mount_) {
        DVOL_TRY(sub, open_beneath(fd(), name, O_RDONLY | O_DIRECTORY, path));
    } else {
        int f;
        do f = ::openat(fd(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        while (f < 0 && errno == EINTR);
        if (f < 0) return errno_error("open", path);
        sub.reset(f);
    }
    struct stat st;
    if (::fstat(sub.get(), &st) != 0) return errno_error("stat", path);
    levels_.push_back(Level{std::move(sub), static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)});
    // Let go of the level kKeepOpen above this one (the root is borrowed, never let go).
    if (levels_.size() > kKeepOpen + 1) levels_[levels_.size() - 1 - kKeepOpen].fd.reset();
    return {};
}

Status DirStack::leave(const std::string& path) {
    assert(levels_.size() > 1);
    size_t up = levels_.size() - 2;
    if (up > 0 && !levels_[up].fd.valid()) {
        int f;
        do f = ::openat(fd(), "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        while (f < 0 && errno == EINTR);
        if (f < 0) return errno_error("open the directory above", path);
        UniqueFd parent(f);
        struct stat st;
        if (::fstat(parent.get(), &st) != 0) return errno_error("stat the directory above", path);
        if (static_cast<uint64_t>(st.st_dev) != levels_[up].dev || static_cast<uint64_t>(st.st_ino) != levels_[up].ino)
            return make_error(Errc::conflict, fmt::format("the directory above {} was moved while dvol was walking it; run the command again", path));
        levels_[up].fd = std::move(parent);
    }
    levels_.pop_back();
    return {};
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
