// RetryingBackend: a Backend that retries another's transient failures (Errc::unavailable: a
// timeout, a refused or reset connection, a 5xx, a stale NFS handle), waiting longer each
// time, and passes every other error through at once.
//
// Each call is tried up to RetryPolicy::max_attempts times; before each retry it waits a
// random time between half and all of the current delay (first_delay, doubling up to
// max_delay), and it starts no retry that would end its wait later than max_total after the
// first attempt. When it gives up, the last error is returned with the number of attempts
// appended to its message.
//
// Retrying is safe for every call: reads and remove() are idempotent, and write() and
// write_file() store the same bytes again (write_file() reads its fd from offset 0 each time).
// A create_ref() or update_ref() whose attempt failed as unavailable may have been applied all
// the same (the answer was lost); when a retry then meets Errc::conflict, the ref is read back,
// and if it holds exactly our data the call succeeds with its current version. Otherwise the
// conflict stands; and if the ref cannot be read back the result is Errc::unavailable, saying
// that whether the change was applied is unknown.
//
// Same threading as the wrapped Backend: one thread at a time.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <random>

#include "remote/backend.h"

namespace dvol::remote {

struct RetryPolicy {
    int max_attempts = 8;
    std::chrono::milliseconds first_delay{100};
    std::chrono::milliseconds max_delay{5'000};
    std::chrono::milliseconds max_total{30'000};
    // How to wait and what time it is; empty means std::this_thread::sleep_for and
    // std::chrono::steady_clock::now. Tests pass a fake clock that sleep advances.
    std::function<void(std::chrono::milliseconds)> sleep;
    std::function<std::chrono::steady_clock::time_point()> now;
};

class RetryingBackend final : public Backend {
public:
    // `inner` must not be null.
    explicit RetryingBackend(std::unique_ptr<Backend> inner, RetryPolicy policy = {});

    Backend& inner() { return *inner_; }

    const std::string& location() const override { return inner_->location(); }
    Result<std::vector<Entry>> list(const std::string& prefix) override;
    Status read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) override;
    Status read_all(const std::string& key, std::vector<std::byte>& out) override;
    Status write(const std::string& key, std::span<const std::byte> data) override;
    Status write_file(const std::string& key, int fd, uint64_t size) override;
    Status write_file_hashed(const std::string& key, int fd, uint64_t size, const ObjectId& sha256) override;
    Result<std::optional<RefValue>> read_ref(const std::string& key) override;
    Result<std::string> create_ref(const std::string& key, std::string_view data) override;
    Result<std::string> update_ref(const std::string& key, std::string_view data, const std::string& expected) override;
    Status remove(const std::string& key) override;

private:
    template <typename Attempt>
    auto run(Attempt&& attempt) -> decltype(attempt());
    Result<std::string> settle_ref(const std::string& key, std::string_view data, Error conflict);

    std::unique_ptr<Backend> inner_;
    RetryPolicy policy_;
    std::minstd_rand rng_;
};

}  // namespace dvol::remote
