// ParallelFor (lib/base/parallel.cpp): every index runs exactly once, on worker 0 or 1.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "base/parallel.h"

using dvol::ParallelFor;

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

TEST_CASE("ParallelFor uses its helper when there are two CPUs", "[parallel]") {
    ParallelFor pool;
    std::atomic<int> on_helper{0};
    for (int round = 0; round < 50; ++round)
        pool.run(64, [&](size_t, int worker) {
            volatile unsigned x = 0;
            for (int k = 0; k < 20000; ++k) x = x + static_cast<unsigned>(k);  // enough work to share
            if (worker == 1) on_helper.fetch_add(1);
        });
    if (std::thread::hardware_concurrency() > 1) CHECK(on_helper.load() > 0);
    else CHECK(on_helper.load() == 0);
}

TEST_CASE("a run does not wait for a helper busy with background work", "[parallel]") {
    if (std::thread::hardware_concurrency() < 2) {
        WARN("SKIP: one CPU, so no helper thread");
        return;
    }
    std::atomic<bool> entered{false}, release{false};
    ParallelFor pool(true, [&](int worker) {
        if (worker != 1 || entered.exchange(true)) return false;
        // The helper's one piece of background work: held until the test lets it go (or 10 s).
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!release.load() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return true;
    });
    pool.wake();
    while (!entered.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto start = std::chrono::steady_clock::now();
    std::atomic<int> ran{0};
    for (int round = 0; round < 10; ++round) pool.run(2, [&](size_t, int) { ran.fetch_add(1); });
    auto took = std::chrono::steady_clock::now() - start;
    release.store(true);
    CHECK(ran.load() == 20);
    CHECK(took < std::chrono::seconds(5));  // waiting for the helper would take the full 10 s
}
