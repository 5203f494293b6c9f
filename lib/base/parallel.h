// Two-way data parallelism for the hot loops of commit (hashing and compressing chunks): the
// calling thread and one helper thread share the indices of a batch, and in between (or while
// one waits for the other to finish its share) both take background work, so neither idles
// while there is some.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

namespace dvol {

class ParallelFor {
public:
    // Starts the helper thread when `helper` and the machine has more than one CPU; without
    // it, run() runs everything on the calling thread.
    // `background(worker)`, when given, does one piece of background work and returns true,
    // or returns false when there is none. The helper calls it whenever no run needs it (after
    // a wake()); the calling thread calls it while waiting for the helper at the end of a run.
    // It must not throw and must be safe to call on both workers at once, and background work
    // must only be added by the thread that calls run().
    explicit ParallelFor(bool helper = true, std::function<bool(int)> background = {});
    // Stops and joins the helper.
    ~ParallelFor();
    ParallelFor(const ParallelFor&) = delete;
    ParallelFor& operator=(const ParallelFor&) = delete;

    bool has_helper() const { return helper_.joinable(); }

    // Runs fn(i, worker) for every i in [0, n), worker being 0 (the calling thread) or 1 (the
    // helper), and returns when all have run. `fn` must not throw; it may run concurrently with
    // itself for different i, so it must touch only what index i and worker own. Not reentrant:
    // one run at a time per object.
    void run(size_t n, const std::function<void(size_t, int)>& fn);

    // Tells the helper that background work has arrived.
    void wake();

private:
    void helper_loop();
    void work(int worker);

    std::mutex mu_;
    std::condition_variable cv_;
    const std::function<void(size_t, int)>* fn_ = nullptr;
    size_t n_ = 0;
    std::atomic<size_t> next_{0};
    uint64_t generation_ = 0;  // bumped per run
    uint64_t done_ = 0;        // the last run the helper has finished its share of (or been spared)
    bool in_run_ = false;      // the helper is taking part in a run
    uint64_t wakes_ = 0;       // bumped per wake()
    bool stop_ = false;
    const std::function<bool(int)> background_;
    std::thread helper_;  // last: it starts once the rest is set
};

}  // namespace dvol
