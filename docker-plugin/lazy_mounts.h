// The FUSE mounts of the plugin's lazy volumes (option lazy=true, docs/DECISIONS.md "Docker:
// lazy=true"). A lazy volume's live directory is a FUSE mount served by a process of its own
// (fuse-mount/), which must outlive the plugin: a container keeps reading through it while the
// plugin restarts. So the plugin never serves it: it runs `dvol mount VOLUME`, whose daemon
// (its own session, reparented to init) serves until the volume is removed.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "base/error.h"

namespace dvol::plugin {

class LazyMounts {
public:
    virtual ~LazyMounts() = default;
    // Returns once the lazy volume `volume`'s live directory answers as its FUSE mount: at once
    // when it does already; otherwise after mounting it (a dead mount, whose process is gone,
    // is detached first). The error says why it could not be mounted.
    virtual Status mount(const std::string& volume) = 0;
    // Unmounts `live_dir`, the live directory of lazy volume `volume`, when a dvol mount is on
    // it, and waits for its process to end (the cache is then free to delete). Ok when nothing
    // is mounted there.
    virtual Status unmount(const std::string& volume, const std::string& live_dir) = 0;
};

// The real thing: `DVOL --disable-docker-integration -p STORE mount VOLUME` run as a process
// (never a fork of the plugin: it is multithreaded), with a clean signal mask, no inherited
// descriptor but stdio, and a time limit; unmounting as `dvol rm` does (fuse-mount/mount.h).
// Thread-safe.
class ProcessLazyMounts : public LazyMounts {
public:
    ProcessLazyMounts(std::string dvol, std::string store_dir, std::function<void(const std::string&)> log,
                      std::chrono::seconds limit = std::chrono::seconds(90))
        : dvol_(std::move(dvol)), store_dir_(std::move(store_dir)), log_(std::move(log)), limit_(limit) {}

    Status mount(const std::string& volume) override;
    Status unmount(const std::string& volume, const std::string& live_dir) override;

private:
    std::string dvol_;
    std::string store_dir_;
    std::function<void(const std::string&)> log_;
    std::chrono::seconds limit_;
};

}  // namespace dvol::plugin
