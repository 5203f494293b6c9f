#include "clones.h"

#include <chrono>
#include <thread>

#include <fmt/format.h>

namespace dvol::plugin {

void ThreadClones::start(const CloneJob& job) {
    {
        std::lock_guard lock(shared_->mu);
        auto& s = shared_->states[job.volume];
        if (s.kind == CloneState::Kind::running) return;
        s = CloneState{CloneState::Kind::running, {}, 0, 0};
    }
    std::thread([shared = shared_, job] { run(shared, job); }).detach();
}

CloneState ThreadClones::state(const std::string& volume) {
    std::lock_guard lock(shared_->mu);
    auto it = shared_->states.find(volume);
    return it == shared_->states.end() ? CloneState{} : it->second;
}

void ThreadClones::run(const std::shared_ptr<Shared>& shared, const CloneJob& job) {
    auto& mu = shared->mu;
    auto& states = shared->states;
    const auto& log = shared->log;
    std::string what = fmt::format("clone of {} from {}/{}", job.volume, job.remote.remote, job.remote_volume);
    log(what + ": started");
    auto fail = [&](const std::string& why) {
        log(fmt::format("{}: failed: {}", what, why));
        std::lock_guard lock(mu);
        states[job.volume] = CloneState{CloneState::Kind::failed, why, 0, 0};
    };
    auto repo = Repository::open(shared->store_dir);
    if (!repo) return fail(repo.error().message);
    auto last_log = std::chrono::steady_clock::now();
    ProgressFn progress = [&](const Progress& p) {
        {
            std::lock_guard lock(mu);
            auto& s = states[job.volume];
            s.bytes = p.bytes;
            s.total = p.total;
        }
        auto now = std::chrono::steady_clock::now();
        if (now - last_log < std::chrono::seconds(10)) return;
        last_log = now;
        log(fmt::format("{}: {:.1f} of {:.1f} MiB", what, static_cast<double>(p.bytes) / (1 << 20), static_cast<double>(p.total) / (1 << 20)));
    };
    CloneOptions options;
    options.name = job.volume;
    options.branch = job.branch;
    options.lazy = job.lazy;
    auto out = (*repo)->clone(job.remote, job.remote_volume, options, progress);
    if (!out) return fail(out.error().message);
    log(fmt::format("{}: done, branch {} at {}, {:.1f} MiB received", what, out->branch, out->restore.id.hex().substr(0, 12),
                     static_cast<double>(out->fetched.received.bytes) / (1 << 20)));
    std::lock_guard lock(mu);
    states.erase(job.volume);
}

}  // namespace dvol::plugin
