// The store's process locks (flock on files under the store directory, see store/paths.h).
// Commands that read or write objects hold the store lock shared, gc holds it exclusively;
// commands that change a volume's data (commit, reset, checkout, rm) hold its volume lock.
#pragma once

#include <string>

#include "base/error.h"
#include "base/fs.h"
#include "repo/progress.h"
#include "store/paths.h"

namespace dvol {

class StoreLock {
public:
    // Waits while another process holds it the other way, calling `waiting` once first.
    static Result<StoreLock> acquire(const StorePaths& paths, bool exclusive, const WarnFn& waiting = {});

private:
    explicit StoreLock(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;  // closing it releases the lock
};

class VolumeLock {
public:
    // Waits while another process holds it, calling `waiting` once first.
    static Result<VolumeLock> acquire(const StorePaths& paths, const std::string& volume, const WarnFn& waiting = {});

private:
    explicit VolumeLock(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;  // closing it releases the lock
};

}  // namespace dvol
