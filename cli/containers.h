// The containers that use a volume, held still while a command changes or snapshots its data:
// paused around commit (so the snapshot is crash-consistent), stopped around reset and checkout
// (so no process keeps writing into, or holds open, files that are being replaced).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "context.h"
#include "docker/engine.h"

namespace dvol::cli {

// The Docker daemon for a command that would touch the containers using `volume`. Without one
// it returns null after a one-line note that they were not `not_done` ("paused", ...), or
// silently with --disable-docker-integration; an error when Docker fails.
Result<docker::Engine*> docker_for(Context& ctx, const std::string& volume, const char* not_done);

// The containers using `volume`, sorted by name.
Result<std::vector<docker::Container>> containers_of(Context& ctx, docker::Engine& engine, const std::string& volume);

class ContainerHold {
public:
    enum class Mode { pause, stop };

    // Holds nothing yet: the library calls hooks().quiesce when it is about to touch the data.
    ContainerHold(Context& ctx, std::string volume, Mode mode) : ctx_(ctx), volume_(std::move(volume)), mode_(mode) {}
    // Releases what is still held (errors reported through the context).
    ~ContainerHold();
    ContainerHold(const ContainerHold&) = delete;
    ContainerHold& operator=(const ContainerHold&) = delete;

    // quiesce pauses or stops the running (and, for stop, paused) containers using the volume;
    // when Docker refuses one, those already held are released and the refusal is returned.
    // resume unpauses or starts again every container held, keeping the first refusal for
    // report(). Without Docker, quiesce prints a one-line note and holds nothing.
    LiveDataHooks hooks();
    // Reports through the context a failure to resume; false when there was one.
    bool report();

private:
    Status hold();
    void release();

    Context& ctx_;
    std::string volume_;
    Mode mode_;
    docker::Engine* engine_ = nullptr;
    std::vector<docker::Container> held_;
    std::optional<Error> release_error_;
};

}  // namespace dvol::cli
