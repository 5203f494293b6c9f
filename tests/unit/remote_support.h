// The remote a backend test runs against, and the races run on it.
//
// With DVOL_TEST_REMOTE_URL set, the remote it names, opened by open_backend() with
// BackendOptions from DVOL_TEST_REMOTE_ENDPOINT and DVOL_TEST_REMOTE_SSH_COMMAND (credentials
// are the backend's business, from its usual environment). Without it, a fresh temporary
// directory. Either way each RemoteUnderTest keeps to keys under a prefix of its own, so runs
// sharing a bucket or a server do not meet, and removes what it left there on destruction.
#pragma once

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <latch>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "remote/backend.h"
#include "remote/open.h"
#include "support.h"

namespace dvol::test {

class RemoteUnderTest {
public:
    RemoteUnderTest() {
        const char* url = std::getenv("DVOL_TEST_REMOTE_URL");
        if (url && *url) {
            url_ = url;
            if (const char* e = std::getenv("DVOL_TEST_REMOTE_ENDPOINT")) options_.endpoint = e;
            if (const char* s = std::getenv("DVOL_TEST_REMOTE_SSH_COMMAND")) options_.ssh_command = s;
        } else {
            dir_.emplace();
            url_ = dir_->path();
        }
        std::random_device rd;
        prefix_ = fmt::format("dvol-test-{}-{:08x}/", ::getpid(), rd());
    }
    ~RemoteUnderTest() {
        if (dir_) return;
        auto b = remote::open_backend(url_, options_);
        if (!b) return;
        auto keys = (*b)->list(prefix_);
        if (keys)
            for (const auto& e : *keys) (void)(*b)->remove(e.key);
    }
    RemoteUnderTest(const RemoteUnderTest&) = delete;
    RemoteUnderTest& operator=(const RemoteUnderTest&) = delete;

    // A new Backend on the remote, as a separate client would open it.
    std::unique_ptr<remote::Backend> open() const {
        auto b = remote::open_backend(url_, options_);
        INFO("opening remote " << url_ << ": " << (b ? std::string("ok") : b.error().message));
        REQUIRE(b.ok());
        return std::move(*b);
    }
    // `rel` under this test's prefix.
    std::string key(std::string_view rel) const { return prefix_ + std::string(rel); }
    const std::string& prefix() const { return prefix_; }
    const std::string& url() const { return url_; }
    const remote::BackendOptions& options() const { return options_; }
    // The directory, when the remote is a fresh one.
    const TempDir* dir() const { return dir_ ? &*dir_ : nullptr; }

private:
    std::optional<TempDir> dir_;
    std::string url_;
    remote::BackendOptions options_;
    std::string prefix_;
};

// How a racer's call ended.
enum class Outcome { won, conflict, other };

template <typename T>
Outcome outcome_of(const Result<T>& r) {
    if (r) return Outcome::won;
    return r.error().code == Errc::conflict ? Outcome::conflict : Outcome::other;
}

// What each racer does: racer `i` runs it on its own Backend.
using RaceFn = std::function<Outcome(remote::Backend&, int i)>;

// Runs `fn` on `n` threads at once, each with a Backend from `open` (called beforehand, on this
// thread). No Catch2 macro runs on them (Catch2 is not thread-safe): outcomes are returned in
// racer order.
inline std::vector<Outcome> race_threads(const std::function<std::unique_ptr<remote::Backend>()>& open, int n,
                                         const RaceFn& fn) {
    std::vector<std::unique_ptr<remote::Backend>> backends;
    for (int i = 0; i < n; ++i) backends.push_back(open());
    std::vector<Outcome> out(static_cast<size_t>(n), Outcome::other);
    std::latch start(n);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i)
        threads.emplace_back([&, i] {
            start.arrive_and_wait();
            out[static_cast<size_t>(i)] = fn(*backends[static_cast<size_t>(i)], i);
        });
    for (auto& t : threads) t.join();
    return out;
}

inline std::vector<Outcome> race_threads(const RemoteUnderTest& remote, int n, const RaceFn& fn) {
    return race_threads([&] { return remote.open(); }, n, fn);
}

// The same with `n` forked processes, each opening its Backend before they are all let go
// together through a pipe. A child reports its outcome by its exit status and leaves by
// _exit (it must not run the parent's destructors, which would remove the remote).
inline std::vector<Outcome> race_processes(const RemoteUnderTest& remote, int n, const RaceFn& fn) {
    int go[2];
    REQUIRE(::pipe(go) == 0);
    std::vector<pid_t> children;
    for (int i = 0; i < n; ++i) {
        pid_t pid = ::fork();
        if (pid == 0) {
            ::close(go[1]);
            auto b = remote::open_backend(remote.url(), remote.options());
            char c;
            if (::read(go[0], &c, 1) != 1 || !b) ::_exit(3);
            ::_exit(static_cast<int>(fn(**b, i)));
        }
        if (pid < 0) break;
        children.push_back(pid);
    }
    ::close(go[0]);
    std::string release(children.size(), 'g');
    bool released = ::write(go[1], release.data(), release.size()) == static_cast<ssize_t>(release.size());
    ::close(go[1]);
    std::vector<Outcome> out;
    for (pid_t pid : children) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 3;
        out.push_back(code == 0 ? Outcome::won : code == 1 ? Outcome::conflict : Outcome::other);
    }
    REQUIRE(released);
    REQUIRE(children.size() == static_cast<size_t>(n));
    return out;
}

}  // namespace dvol::test
