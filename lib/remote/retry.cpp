#include "remote/retry.h"

#include <algorithm>
#include <thread>

#include <fmt/format.h>

namespace dvol::remote {

RetryingBackend::RetryingBackend(std::unique_ptr<Backend> inner, RetryPolicy policy)
    : inner_(std::move(inner)), policy_(std::move(policy)), rng_(std::random_device{}()) {
    if (!policy_.sleep) policy_.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
    if (!policy_.now) policy_.now = [] { return std::chrono::steady_clock::now(); };
}

// Jitter spreads the retries of many clients that failed together (a server restarting), so
// that they do not all come back at the same instant; half the delay stays fixed so that a
// retry is never immediate.
template <typename Attempt>
auto RetryingBackend::run(Attempt&& attempt) -> decltype(attempt()) {
    const auto start = policy_.now();
    auto delay = policy_.first_delay;
    for (int n = 1;; ++n) {
        auto r = attempt();
        if (r.ok() || r.error().code != Errc::unavailable) return r;
        auto half = delay / 2;
        std::uniform_int_distribution<int64_t> extra(0, (delay - half).count());
        auto wait = half + std::chrono::milliseconds(extra(rng_));
        if (n >= policy_.max_attempts || policy_.now() - start + wait > policy_.max_total) {
            Error e = std::move(r).error();
            e.message += fmt::format(" (gave up after {} attempt{})", n, n == 1 ? "" : "s");
            return e;
        }
        policy_.sleep(wait);
        delay = std::min(delay * 2, policy_.max_delay);
    }
}

Result<std::vector<Entry>> RetryingBackend::list(const std::string& prefix) {
    return run([&] { return inner_->list(prefix); });
}

Status RetryingBackend::read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) {
    return run([&] { return inner_->read(key, offset, length, out); });
}

Status RetryingBackend::read_all(const std::string& key, std::vector<std::byte>& out) {
    return run([&] { return inner_->read_all(key, out); });
}

Status RetryingBackend::write(const std::string& key, std::span<const std::byte> data) {
    return run([&] { return inner_->write(key, data); });
}

Status RetryingBackend::write_file(const std::string& key, int fd, uint64_t size) {
    return run([&] { return inner_->write_file(key, fd, size); });
}

Status RetryingBackend::write_file_hashed(const std::string& key, int fd, uint64_t size, const ObjectId& sha256) {
    return run([&] { return inner_->write_file_hashed(key, fd, size, sha256); });
}

Result<std::optional<RefValue>> RetryingBackend::read_ref(const std::string& key) {
    return run([&] { return inner_->read_ref(key); });
}

Result<std::string> RetryingBackend::create_ref(const std::string& key, std::string_view data) {
    bool maybe_applied = false;
    auto r = run([&] {
        auto a = inner_->create_ref(key, data);
        if (!a && a.error().code == Errc::unavailable) maybe_applied = true;
        return a;
    });
    if (r || r.error().code != Errc::conflict || !maybe_applied) return r;
    return settle_ref(key, data, std::move(r).error());
}

Result<std::string> RetryingBackend::update_ref(const std::string& key, std::string_view data, const std::string& expected) {
    bool maybe_applied = false;
    auto r = run([&] {
        auto a = inner_->update_ref(key, data, expected);
        if (!a && a.error().code == Errc::unavailable) maybe_applied = true;
        return a;
    });
    if (r || r.error().code != Errc::conflict || !maybe_applied) return r;
    return settle_ref(key, data, std::move(r).error());
}

// The ref holding our data is what the caller asked for, whichever attempt (or writer) put it
// there; anything else is a conflict the caller resolves by reading the ref again.
Result<std::string> RetryingBackend::settle_ref(const std::string& key, std::string_view data, Error conflict) {
    auto current = read_ref(key);
    if (!current)
        return make_error(Errc::unavailable, fmt::format("cannot tell whether ref {} on remote {} was changed: an attempt got "
                                                         "no answer, a retry conflicted, and reading it back failed: {}",
                                                         key, location(), current.error().message));
    if (*current && (*current)->data == data) return std::move((*current)->version);
    return conflict;
}

Status RetryingBackend::remove(const std::string& key) {
    return run([&] { return inner_->remove(key); });
}

}  // namespace dvol::remote
