#include "repo/locks.h"

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>

#include <fmt/format.h>

namespace dvol {

namespace {

// flock(2) `mode` on `path` (created when missing), waiting if another process holds it, after
// telling `waiting` with `notice`.
Result<UniqueFd> lock_file(const std::string& path, int mode, const WarnFn& waiting, const std::string& notice) {
    DVOL_TRY(UniqueFd fd, open_file(path, O_RDWR | O_CREAT, 0600));
    int rc = ::flock(fd.get(), mode | LOCK_NB);
    if (rc != 0 && errno == EWOULDBLOCK) {
        if (waiting) waiting(notice);
        do rc = ::flock(fd.get(), mode);
        while (rc != 0 && errno == EINTR);
    }
    if (rc != 0) return errno_error("lock", path);
    return fd;
}

}  // namespace

Result<StoreLock> StoreLock::acquire(const StorePaths& paths, bool exclusive, const WarnFn& waiting) {
    DVOL_TRY(UniqueFd fd, lock_file(paths.store_lock(), exclusive ? LOCK_EX : LOCK_SH, waiting,
                                    exclusive ? "waiting for other dvol commands to finish before collecting garbage"
                                              : "waiting for dvol gc to finish"));
    return StoreLock(std::move(fd));
}

Result<VolumeLock> VolumeLock::acquire(const StorePaths& paths, const std::string& volume, const WarnFn& waiting) {
    DVOL_TRY(UniqueFd fd, lock_file(paths.volume_lock(volume), LOCK_EX, waiting,
                                    fmt::format("waiting for another dvol command on volume {} to finish", volume)));
    return VolumeLock(std::move(fd));
}

}  // namespace dvol
