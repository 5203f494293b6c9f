#include "base/parallel.h"

namespace dvol {

ParallelFor::ParallelFor(bool helper) {
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

void ParallelFor::helper_loop() {
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [&] { return stop_ || generation_ != done_; });
        if (stop_) return;
        uint64_t g = generation_;
        lock.unlock();
        work(1);
        lock.lock();
        done_ = g;
        cv_.notify_all();
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
    // Every run waits for the helper to have taken part (if only to find nothing left), so
    // fn_ and n_ never change under it.
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_ == g; });
    fn_ = nullptr;
}

}  // namespace dvol
