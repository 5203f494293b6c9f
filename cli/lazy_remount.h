// A lazy volume's live directory is its FUSE mount (its tip and the write layer over it). A
// command that moves the volume to another commit (reset --hard, checkout of a branch
// elsewhere, pull) unmounts it once the containers are stopped and mounts it again on the new
// tip after the library has let go of the volume's lock: the mount process, forked under it,
// would hold it for good. The containers start after that, when their ContainerHold lets them
// go.
#pragma once

#include <string>

#include "context.h"

namespace dvol::cli {

class LazyRemount {
public:
    // For a volume that is not lazy, it does nothing and `hooks` stay as they are. For a lazy one,
    // hooks.quiesce also unmounts the live directory, and hooks.resume does nothing (the
    // containers start when their hold ends, after remount()).
    LazyRemount(Context& ctx, Repository& repo, const std::string& volume, LiveDataHooks& hooks);
    LazyRemount(const LazyRemount&) = delete;  // hooks.quiesce points at it
    LazyRemount& operator=(const LazyRemount&) = delete;
    // Mounts the live directory again if the quiesce unmounted it (a warning when that fails).
    void remount();

private:
    Context& ctx_;
    std::string volume_;
    bool remount_ = false;
};

}  // namespace dvol::cli
