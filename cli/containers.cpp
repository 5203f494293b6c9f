#include "containers.h"

#include <optional>
#include <thread>

#include <fmt/format.h>

namespace dvol::cli {

docker::Engine* docker_for(Context& ctx, const std::string& volume, const char* not_done, bool& ok) {
    ok = true;
    std::string why_not;
    docker::Engine* engine = ctx.docker(why_not);
    if (engine) return engine;
    if (why_not.empty()) ok = false;  // Docker failed; reported
    else if (!ctx.disable_docker) fmt::print(stderr, "note: {}; containers using {} were not {}\n", why_not, volume, not_done);
    return nullptr;
}

std::vector<docker::Container> containers_of(Context& ctx, docker::Engine& engine, const std::string& volume, bool& ok) {
    ok = true;
    auto* repo = ctx.repo();
    if (!repo) {
        ok = false;
        return {};
    }
    auto cs = engine.containers_using(volume, repo->live_dir(volume));
    if (!cs) {
        ctx.fail(cs.error());
        ok = false;
        return {};
    }
    return std::move(*cs);
}

ContainerHold::ContainerHold(Context& ctx, const std::string& volume, Mode mode) : ctx_(ctx), mode_(mode) {
    engine_ = docker_for(ctx, volume, mode == Mode::pause ? "paused" : "stopped", ok_);
    if (!engine_) return;
    auto cs = containers_of(ctx, *engine_, volume, ok_);
    if (!ok_) return;
    std::vector<docker::Container> wanted;
    for (const auto& c : cs)
        if (c.state == "running" || (mode == Mode::stop && c.state == "paused")) wanted.push_back(c);
    // Stops run side by side, each on its own connection: each may take Docker's whole grace
    // period (10 s) when the container ignores SIGTERM.
    std::vector<Status> results(wanted.size());
    if (mode == Mode::stop && wanted.size() > 1) {
        std::vector<std::thread> threads;
        for (size_t i = 0; i < wanted.size(); ++i)
            threads.emplace_back([this, &wanted, &results, i] {
                auto e = docker::Engine::connect(engine_->socket_path());
                results[i] = e ? (*e)->stop(wanted[i]) : Status(std::move(e).error());
            });
        for (auto& t : threads) t.join();
    } else {
        for (size_t i = 0; i < wanted.size(); ++i)
            results[i] = mode == Mode::pause ? engine_->pause(wanted[i]) : engine_->stop(wanted[i]);
    }
    std::optional<Error> first;
    for (size_t i = 0; i < wanted.size(); ++i) {
        if (results[i]) held_.push_back(wanted[i]);
        else if (!first) first = results[i].error();
    }
    if (first) {
        ctx.fail(*first);
        ok_ = false;
        release();
    }
}

ContainerHold::~ContainerHold() { release(); }

bool ContainerHold::release() {
    bool all = true;
    for (const auto& c : held_) {
        auto st = mode_ == Mode::pause ? engine_->unpause(c) : engine_->start(c);
        if (!st && all) {
            ctx_.fail(st.error());
            all = false;
        }
    }
    held_.clear();
    return all;
}

}  // namespace dvol::cli
