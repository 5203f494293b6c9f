// ParallelFor (lib/base/parallel.cpp): every index runs exactly once, on worker 0 or 1; the helper
// takes a share when it can, background work gets done, and nothing waits on a busy helper.
//
// These tests never assert which thread ran an index, nor how long anything took: on a busy
// machine the helper may not be scheduled at all during a run, and a run must be right either
// way. Where a test needs the helper to take part it makes it so (an index waits until another
// one has started, or a worker steers by its number), and where it proves that something does not
// wait, the thing it must not wait for is held until afterwards: waiting for it would hang, and
// the hang guard (kHang, far beyond any scheduling delay) turns that into a failure instead.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "base/parallel.h"

using dvol::ParallelFor;

namespace {

// Only a guard against a hang (a deadlock would otherwise stall the test until meson's timeout):
// reaching it fails the test; nothing here depends on how soon things happen within it.
constexpr auto kHang = std::chrono::seconds(120);

// Waits until `done()` holds; false when the hang guard ran out first.
template <class F>
bool wait_for(F done) {
    auto until = std::chrono::steady_clock::now() + kHang;
    while (!done()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

bool two_cpus() { return std::thread::hardware_concurrency() > 1; }

}  // namespace

TEST_CASE("ParallelFor runs every index once, over many runs", "[parallel]") {
    ParallelFor pool;
    for (size_t n : {0u, 1u, 2u, 3u, 7u, 64u, 1000u}) {
        for (int round = 0; round < 200; ++round) {
            std::vector<std::atomic<int>> hits(n);
            std::atomic<int> bad_worker{0};
            pool.run(n, [&](size_t i, int worker) {
                hits[i].fetch_add(1);
                if (worker != 0 && worker != 1) bad_worker.fetch_add(1);
            });
            size_t wrong = 0;
            for (auto& h : hits) wrong += h.load() != 1;
            INFO("n=" << n << " round=" << round);
            REQUIRE(wrong == 0);
            REQUIRE(bad_worker.load() == 0);
        }
    }
}

TEST_CASE("ParallelFor without a helper runs every index once", "[parallel]") {
    ParallelFor pool(false);
    CHECK_FALSE(pool.has_helper());
    std::vector<int> hits(100);
    pool.run(hits.size(), [&](size_t i, int) { ++hits[i]; });
    CHECK(std::count(hits.begin(), hits.end(), 1) == 100);
}

TEST_CASE("ParallelFor runs two indices at once when there are two CPUs", "[parallel]") {
    ParallelFor pool;
    if (!two_cpus()) {
        CHECK_FALSE(pool.has_helper());
        WARN("SKIP: one CPU, so no helper thread");
        return;
    }
    REQUIRE(pool.has_helper());
    // The first index to start waits until a second one has started. Run on one thread that
    // would never happen; with the helper it does whenever the helper gets scheduled, however
    // late, so this proves the helper shares the work without depending on when (or which
    // indices) it takes. A helper that never joined would hang here, caught by the guard.
    for (int round = 0; round < 20; ++round) {
        std::vector<std::atomic<int>> hits(8);
        std::atomic<int> started{0};
        std::atomic<bool> gave_up{false};
        pool.run(hits.size(), [&](size_t i, int) {
            hits[i].fetch_add(1);
            if (started.fetch_add(1) == 0 && !wait_for([&] { return started.load() > 1; })) gave_up.store(true);
        });
        INFO("round " << round);
        REQUIRE_FALSE(gave_up.load());
        for (auto& h : hits) CHECK(h.load() == 1);
    }
}

TEST_CASE("ParallelFor: the helper does background work after a wake", "[parallel]") {
    std::atomic<int> left{50}, done{0};
    ParallelFor pool(true, [&](int) {
        int n = left.load();
        while (n > 0 && !left.compare_exchange_weak(n, n - 1)) {
        }
        if (n <= 0) return false;
        done.fetch_add(1);
        return true;
    });
    if (!pool.has_helper()) {
        WARN("SKIP: one CPU, so no helper thread to do background work");
        return;
    }
    pool.wake();
    CHECK(wait_for([&] { return done.load() == 50; }));
    CHECK(left.load() == 0);
    // Work that arrives later is found after the next wake.
    left.store(10);
    pool.wake();
    CHECK(wait_for([&] { return done.load() == 60; }));
    // And runs still work between and after.
    std::atomic<int> ran{0};
    pool.run(64, [&](size_t, int) { ran.fetch_add(1); });
    CHECK(ran.load() == 64);
}

TEST_CASE("ParallelFor: a run's calling thread does background work while the helper works", "[parallel]") {
    // The helper's index waits until all background work is done; no wake() is given, so the
    // helper never looks for background work itself: only the calling thread, waiting for the
    // helper at the end of the run, can do it. The run returning proves it does. (The worker
    // numbers only steer who waits for what; nothing checks which thread ran an index.)
    std::atomic<int> left{0}, done{0};
    std::atomic<bool> helper_took{false}, gave_up{false};
    ParallelFor pool(true, [&](int) {
        int n = left.load();
        while (n > 0 && !left.compare_exchange_weak(n, n - 1)) {
        }
        if (n <= 0) return false;
        done.fetch_add(1);
        return true;
    });
    if (!pool.has_helper()) {
        WARN("SKIP: one CPU, so no helper thread");
        return;
    }
    left.store(20);
    std::atomic<int> ran{0};
    pool.run(2, [&](size_t, int worker) {
        ran.fetch_add(1);
        if (worker == 1) {
            helper_took.store(true);
            if (!wait_for([&] { return done.load() == 20; })) gave_up.store(true);
        } else if (!wait_for([&] { return helper_took.load(); })) {
            gave_up.store(true);
        }
    });
    REQUIRE_FALSE(gave_up.load());
    CHECK(ran.load() == 2);
    CHECK(done.load() == 20);
    CHECK(left.load() == 0);
}

TEST_CASE("a run does not wait for a helper busy with background work", "[parallel]") {
    // The helper's one piece of background work is held until after the runs: a run that waited
    // for the helper would never end (the guard then lets the helper go and the test fails).
    std::atomic<bool> entered{false}, release{false}, gave_up{false};
    ParallelFor pool(true, [&](int worker) {
        if (worker != 1 || entered.exchange(true)) return false;
        if (!wait_for([&] { return release.load(); })) gave_up.store(true);
        return true;
    });
    if (!pool.has_helper()) {
        WARN("SKIP: one CPU, so no helper thread");
        return;
    }
    pool.wake();
    REQUIRE(wait_for([&] { return entered.load(); }));
    std::atomic<int> ran{0};
    for (int round = 0; round < 10; ++round) pool.run(2, [&](size_t, int) { ran.fetch_add(1); });
    bool held_throughout = !gave_up.load();  // the runs ended while the helper was still held
    release.store(true);
    CHECK(held_throughout);
    CHECK(ran.load() == 20);
}
