#include "containers.h"

#include <thread>

#include <fmt/format.h>

namespace dvol::cli {

Result<docker::Engine*> docker_for(Context& ctx, const std::string& volume, const char* not_done) {
    std::string why_not;
    DVOL_TRY(docker::Engine* engine, ctx.docker(why_not));
    if (!engine && !ctx.disable_docker && !why_not.empty())
        fmt::print(stderr, "note: {}; containers using {} were not {}\n", why_not, volume, not_done);
    return engine;
}

Result<std::vector<docker::Container>> containers_of(Context& ctx, docker::Engine& engine, const std::string& volume) {
    auto* repo = ctx.repo();
    if (!repo) return make_error(Errc::internal, "no store");
    return engine.containers_using(volume, repo->live_dir(volume));
}

LiveDataHooks ContainerHold::hooks() {
    return LiveDataHooks{[this] { return hold(); }, [this] { release(); }};
}

Status ContainerHold::hold() {
    DVOL_TRY(engine_, docker_for(ctx_, volume_, mode_ == Mode::pause ? "paused" : "stopped"));
    if (!engine_) return {};
    DVOL_TRY(auto cs, containers_of(ctx_, *engine_, volume_));
    std::vector<docker::Container> wanted;
    for (const auto& c : cs)
        if (c.state == "running" || (mode_ == Mode::stop && c.state == "paused")) wanted.push_back(c);
    // Stops run side by side, each on its own connection: each may take Docker's whole grace
    // period (10 s) when the container ignores SIGTERM.
    std::vector<Status> results(wanted.size());
    if (mode_ == Mode::stop && wanted.size() > 1) {
        std::vector<std::thread> threads;
        for (size_t i = 0; i < wanted.size(); ++i)
            threads.emplace_back([this, &wanted, &results, i] {
                auto e = docker::Engine::connect(engine_->socket_path());
                results[i] = e ? (*e)->stop(wanted[i]) : Status(std::move(e).error());
            });
        for (auto& t : threads) t.join();
    } else {
        for (size_t i = 0; i < wanted.size(); ++i)
            results[i] = mode_ == Mode::pause ? engine_->pause(wanted[i]) : engine_->stop(wanted[i]);
    }
    std::optional<Error> first;
    for (size_t i = 0; i < wanted.size(); ++i) {
        if (results[i]) held_.push_back(wanted[i]);
        else if (!first) first = results[i].error();
    }
    if (first) {
        release();
        return *first;
    }
    return {};
}

void ContainerHold::release() {
    for (const auto& c : held_) {
        auto st = mode_ == Mode::pause ? engine_->unpause(c) : engine_->start(c);
        if (!st && !release_error_) release_error_ = st.error();
    }
    held_.clear();
}

bool ContainerHold::report() {
    if (!release_error_) return true;
    ctx_.fail(*release_error_);
    release_error_.reset();
    return false;
}

ContainerHold::~ContainerHold() {
    release();
    report();
}

}  // namespace dvol::cli
