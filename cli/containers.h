// The containers that use a volume, held still while a command changes or snapshots its data:
// paused around commit (so the snapshot is crash-consistent), stopped around reset and checkout
// (so no process keeps writing into, or holds open, files that are being replaced).
#pragma once

#include <string>
#include <vector>

#include "context.h"
#include "docker/engine.h"

namespace dvol::cli {

// The Docker daemon for a command that would touch the containers using `volume`. Without one
// it returns null after a one-line note that they were not `not_done` ("paused", ...), or
// silently with --disable-docker-integration. On a Docker failure (reported through `ctx`) it
// returns null and sets `ok` false.
docker::Engine* docker_for(Context& ctx, const std::string& volume, const char* not_done, bool& ok);

// The containers using `volume`, sorted by name. On a Docker failure it reports through `ctx`
// and sets `ok` false.
std::vector<docker::Container> containers_of(Context& ctx, docker::Engine& engine, const std::string& volume, bool& ok);

class ContainerHold {
public:
    enum class Mode { pause, stop };

    // Pauses or stops the running (and, for stop, paused) containers using `volume`. Without
    // Docker it prints a one-line note and holds nothing. When Docker refuses one container,
    // those already held are released, the error is reported through `ctx`, and ok() is false.
    ContainerHold(Context& ctx, const std::string& volume, Mode mode);
    // Releases what is still held (errors reported through the context).
    ~ContainerHold();
    ContainerHold(const ContainerHold&) = delete;
    ContainerHold& operator=(const ContainerHold&) = delete;

    bool ok() const { return ok_; }
    // Unpauses or starts again every container held; reports the first refusal through the
    // context (after trying them all) and returns false.
    bool release();

private:
    Context& ctx_;
    Mode mode_;
    docker::Engine* engine_ = nullptr;
    std::vector<docker::Container> held_;
    bool ok_ = true;
};

}  // namespace dvol::cli
