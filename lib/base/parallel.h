// Two-way data parallelism for the hot loops of commit (hashing and compressing chunks): the
// calling thread and one helper thread share the indices of a batch.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>

namespace dvol {

class ParallelFor {
public:
    // Starts the helper thread when `helper` and the machine has more than one CPU; without
    // it, run() runs everything on the calling thread.
    explicit ParallelFor(bool helper = true);
    // Stops and joins the helper.
    ~ParallelFor();
    ParallelFor(const ParallelFor&) = delete;
    ParallelFor& operator=(const ParallelFor&) = delete;

    // Runs fn(i, worker) for every i in [0, n), worker being 0 (the calling thread) or 1 (the
    // helper), and returns when all have run. `fn` must not throw; it may run concurrently with
    // itself for different i, so it must touch only what index i and worker own. Not reentrant:
    // one run at a time per object.
    void run(size_t n, const std::function<void(size_t, int)>& fn);

private:
    void helper_loop();
    void work(int worker);

    std::mutex mu_;
    std::condition_variable cv_;
    const std::function<void(size_t, int)>* fn_ = nullptr;
    size_t n_ = 0;
    std::atomic<size_t> next_{0};
    uint64_t generation_ = 0;  // bumped per run
    uint64_t done_ = 0;        // the last run the helper has finished its share of
    bool stop_ = false;
    std::thread helper_;
};

}  // namespace dvol
