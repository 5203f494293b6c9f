// Clones that the plugin's Create starts (option from=REMOTE/VOLUME[/BRANCH]) run in the
// background, one thread each on a Repository of its own, so that Create answers at once and
// Docker's time limit for a request (two minutes for Create and Mount) does not bound how
// large a cloned volume may be. Mount waits for the clone (docs/DECISIONS.md, "Docker: from=").
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "repo/repository.h"

namespace dvol::plugin {

struct CloneJob {
    std::string volume;  // the local volume, made (marked unfinished) by Create
    RemoteSpec remote;
    std::string remote_volume;
    std::optional<std::string> branch;
    bool lazy = false;  // a lazy clone: commits, trees and extent lists only (CloneOptions::lazy)
};

struct CloneState {
    enum class Kind { none, running, failed } kind = Kind::none;
    std::string error;  // failed: why
    uint64_t bytes = 0;  // running: received so far
    uint64_t total = 0;  // running: to receive, when known
};

class Clones {
public:
    virtual ~Clones() = default;
    // Starts `job` unless a clone of that volume is running. A failed one is started again.
    virtual void start(const CloneJob& job) = 0;
    // What runs or failed for `volume`; Kind::none once a clone ended well, or for none.
    virtual CloneState state(const std::string& volume) = 0;
};

// The real thing: a thread per clone, each opening the store at `store_dir`. Thread-safe.
// Threads still running when it goes are left to the process's exit: a clone cut short is
// finished by the next one (Repository::clone resumes).
class ThreadClones : public Clones {
public:
    ThreadClones(std::string store_dir, std::function<void(const std::string&)> log)
        : shared_(std::make_shared<Shared>(std::move(store_dir), std::move(log))) {}

    void start(const CloneJob& job) override;
    CloneState state(const std::string& volume) override;

private:
    // What the threads use, kept alive by them when the ThreadClones goes first.
    struct Shared {
        Shared(std::string dir, std::function<void(const std::string&)> fn) : store_dir(std::move(dir)), log(std::move(fn)) {}
        std::string store_dir;
        std::function<void(const std::string&)> log;
        std::mutex mu;
        std::map<std::string, CloneState> states;
    };
    static void run(const std::shared_ptr<Shared>& shared, const CloneJob& job);

    std::shared_ptr<Shared> shared_;
};

}  // namespace dvol::plugin
