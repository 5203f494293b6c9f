#include "base/xattr.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/fs.h"

namespace dvol {

namespace {

// The l*xattr calls take a path; /proc/self/fd/<dirfd>/<name> reaches the entry through the
// already-open directory without resolving anything above it, and the l* variants do not
// follow `name` itself when it is a symlink.
std::string proc_path(int dirfd, const std::string& name) { return fmt::format("/proc/self/fd/{}/{}", dirfd, name); }

bool unsupported(int err) { return err == ENOTSUP || err == EOPNOTSUPP; }

// listxattrat(2) (Linux 6.13; the same number on every architecture since the syscall tables
// were unified) lists relative to a directory fd, sparing the /proc path walk, a large part of
// a commit of many unchanged files (docs/DECISIONS.md). Older kernels say ENOSYS once, and the
// /proc path is used from then on (a genuine error comes again from there). Debian 12's
// glibc has no wrapper.
constexpr long kListxattrat = 465;
std::atomic<bool> have_listxattrat{true};

ssize_t list_names(int dirfd, const std::string& name, char* buf, size_t size) {
#ifdef __linux__
    if (have_listxattrat.load(std::memory_order_relaxed)) {
        long n = ::syscall(kListxattrat, dirfd, name.c_str(), AT_SYMLINK_NOFOLLOW, buf, size);
        // EPERM: a seccomp filter that predates the call (container runtimes) refuses it so.
        if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return static_cast<ssize_t>(n);
        have_listxattrat.store(false, std::memory_order_relaxed);
    }
#endif
    return ::llistxattr(proc_path(dirfd, name).c_str(), buf, size);
}

}  // namespace

Result<XattrList> read_xattrs(int dirfd, const std::string& name, const std::string& path) {
    XattrList out;
    std::string names;
    for (;;) {
        ssize_t n = list_names(dirfd, name, nullptr, 0);
        if (n < 0) {
            if (unsupported(errno)) return out;
            return errno_error("list xattrs of", path);
        }
        if (n == 0) return out;
        names.resize(static_cast<size_t>(n));
        n = list_names(dirfd, name, names.data(), names.size());
        if (n < 0 && errno == ERANGE) continue;  // grew meanwhile
        if (n < 0) return errno_error("list xattrs of", path);
        names.resize(static_cast<size_t>(n));
        break;
    }
    std::string p = proc_path(dirfd, name);
    for (size_t pos = 0; pos < names.size();) {
        size_t end = names.find('\0', pos);
        if (end == std::string::npos) end = names.size();
        std::string key = names.substr(pos, end - pos);
        pos = end + 1;
        if (key.empty()) continue;
        std::string value;
        for (;;) {
            ssize_t n = ::lgetxattr(p.c_str(), key.c_str(), nullptr, 0);
            if (n < 0 && errno == ENODATA) break;  // removed meanwhile
            if (n < 0) return errno_error(fmt::format("read xattr {} of", key), path);
            value.resize(static_cast<size_t>(n));
            n = ::lgetxattr(p.c_str(), key.c_str(), value.data(), value.size());
            if (n < 0 && errno == ERANGE) continue;
            if (n < 0) return errno_error(fmt::format("read xattr {} of", key), path);
            value.resize(static_cast<size_t>(n));
            out.emplace_back(std::move(key), std::move(value));
            break;
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

Status write_xattrs(int dirfd, const std::string& name, const std::string& path, const XattrList& have, const XattrList& want,
                    std::vector<std::string>& refused) {
    if (have == want) return {};
    std::string p = proc_path(dirfd, name);
    for (const auto& [key, value] : have) {
        bool kept = std::any_of(want.begin(), want.end(), [&](const auto& kv) { return kv.first == key; });
        if (kept) continue;
        if (::lremovexattr(p.c_str(), key.c_str()) != 0 && errno != ENODATA) {
            if (errno == EPERM || unsupported(errno)) {
                refused.push_back(fmt::format("cannot remove xattr {} of {}: {}", key, path, std::strerror(errno)));
                continue;
            }
            return errno_error(fmt::format("remove xattr {} of", key), path);
        }
    }
    for (const auto& kv : want) {
        if (std::find(have.begin(), have.end(), kv) != have.end()) continue;
        if (::lsetxattr(p.c_str(), kv.first.c_str(), kv.second.data(), kv.second.size(), 0) != 0) {
            if (errno == EPERM || unsupported(errno)) {
                refused.push_back(fmt::format("cannot set xattr {} of {}: {}", kv.first, path, std::strerror(errno)));
                continue;
            }
            return errno_error(fmt::format("set xattr {} of", kv.first), path);
        }
    }
    return {};
}

}  // namespace dvol
