#include "base/parallel.h"

namespace dvol {

ParallelFor::ParallelFor(bool helper, std::function<bool(int)> background) : background_(std::move(background)) {
    if (helper && std::thread::hardware_concurrency() > 1) helper_ = std::thread([this] { helper_loop(); });
}

ParallelFor::~ParallelFor() {
    if (!helper_.joinable()) return;
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    helper_.join();
}

void ParallelFor::work(int worker) {
    for (size_t i = next_.fetch_add(1); i < n_; i = next_.fetch_add(1)) (*fn_)(i, worker);
}

void ParallelFor::wake() {
    if (!helper_.joinable()) return;
    {
        std::lock_guard lock(mu_);
        ++wakes_;
    }
    cv_.notify_all();
}

void ParallelFor::helper_loop() {
    std::unique_lock lock(mu_);
    uint64_t seen_wakes = 0;  // background work was looked for after this wake
    for (;;) {
        cv_.wait(lock, [&] { return stop_ || generation_ != done_ || (background_ && wakes_ != seen_wakes); });
        if (stop_) return;
        if (generation_ != done_) {  // a run comes first
            uint64_t g = generation_;
            in_run_ = true;
            lock.unlock();
            work(1);
            lock.lock();
            in_run_ = false;
            done_ = g;
            cv_.notify_all();
            continue;
        }
        // Background work until there is none; a wake() meanwhile makes it look again.
        uint64_t w = wakes_;
        lock.unlock();
        bool did = background_(1);
        lock.lock();
        if (!did) seen_wakes = w;
    }
}

void ParallelFor::run(size_t n, const std::function<void(size_t, int)>& fn) {
    if (n == 0) return;
    if (n == 1 || !helper_.joinable()) {
        for (size_t i = 0; i < n; ++i) fn(i, 0);
        return;
    }
    uint64_t g;
    {
        std::lock_guard lock(mu_);
        fn_ = &fn;
        n_ = n;
        next_.store(0);
        g = ++generation_;
    }
    cv_.notify_all();
    work(0);
    // A run ends once the helper has left it, so fn_ and n_ never change under it; a helper
    // that has not joined yet (still waking, or busy with background work) is not waited for:
    // the run is marked done for it, and it finds nothing to join. Small files, one short run
    // each, no longer pay a thread wake-up apiece. While the helper works on its share this
    // thread does background work: only it adds any, so when there is none left, none arrives
    // while it waits.
    std::unique_lock lock(mu_);
    if (!in_run_) done_ = g;
    while (done_ != g) {
        if (background_) {
            lock.unlock();
            bool did = background_(0);
            lock.lock();
            if (did) continue;
        }
        cv_.wait(lock, [&] { return done_ == g; });
    }
    fn_ = nullptr;
}

}  // namespace dvol
