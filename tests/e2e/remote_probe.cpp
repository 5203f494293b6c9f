// remote_probe: runs Backend calls on a remote named by URL, for the end-to-end tests of
// remotes (tests/e2e/test_ssh.sh), which have no dvol command that talks to a remote yet.
//
//   remote_probe [--create] URL list [PREFIX]   one listing through open_backend (with retries)
//   remote_probe [--create] URL roundtrip       write, read back, create and update a ref, remove
//   remote_probe URL reconnect                  SshBackend alone: a call, the ssh process killed,
//                                               a call that fails as unavailable, a call that
//                                               reconnects; then the same through RetryingBackend
//   remote_probe URL bench ROUNDS MIB           figures: ROUNDS read_ref round trips, a write and
//                                               a write_file of MIB MiB, a read_all of it back
//
// Settings come from the environment as for any dvol (DVOL_SSH_COMMAND, DVOL_REMOTE_DVOL).
// Prints "ok ..." on stdout and exits 0, or "error <code>: <message>" on stderr and exits 1 (2
// for bad usage).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/fs.h"
#include "remote/open.h"
#include "remote/retry.h"
#include "remote/ssh_backend.h"

using namespace dvol;
using Clock = std::chrono::steady_clock;

namespace {

const char* code_name(Errc c) {
    switch (c) {
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::not_found: return "not_found";
    case Errc::already_exists: return "already_exists";
    case Errc::conflict: return "conflict";
    case Errc::corrupt: return "corrupt";
    case Errc::io: return "io";
    case Errc::busy: return "busy";
    case Errc::unsupported: return "unsupported";
    case Errc::unavailable: return "unavailable";
    case Errc::denied: return "denied";
    case Errc::no_space: return "no_space";
    case Errc::internal: return "internal";
    }
    return "?";
}

int report(const Error& e) {
    fmt::print(stderr, "error {}: {}\n", code_name(e.code), e.message);
    return 1;
}

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

std::string key_prefix() {
    std::random_device rd;
    return fmt::format("probe-{}-{:08x}/", ::getpid(), rd());
}

int roundtrip(remote::Backend& b) {
    const std::string p = key_prefix();
    if (auto st = b.write(p + "obj", as_bytes("hello")); !st) return report(st.error());
    std::vector<std::byte> out;
    if (auto st = b.read_all(p + "obj", out); !st) return report(st.error());
    if (as_chars(out) != "hello") return report(make_error(Errc::corrupt, "read back other bytes"));
    auto v1 = b.create_ref(p + "refs/main", "one");
    if (!v1) return report(v1.error());
    auto v2 = b.update_ref(p + "refs/main", "two", *v1);
    if (!v2) return report(v2.error());
    auto r = b.read_ref(p + "refs/main");
    if (!r) return report(r.error());
    if (!*r || (*r)->data != "two") return report(make_error(Errc::corrupt, "the ref does not hold what was written"));
    for (const char* k : {"obj", "refs/main"})
        if (auto st = b.remove(p + k); !st) return report(st.error());
    fmt::print("ok roundtrip\n");
    return 0;
}

int reconnect(const std::string& url) {
    auto opened = remote::SshBackend::open(url);
    if (!opened) return report(opened.error());
    remote::SshBackend& ssh = **opened;
    if (auto l = ssh.list("probe-none/"); !l) return report(l.error());
    pid_t first = ssh.child_pid();
    if (first <= 0) return report(make_error(Errc::internal, "no ssh process after a call"));
    ::kill(first, SIGKILL);
    // The process is gone; the backend finds out at its next call.
    auto lost = ssh.list("probe-none/");
    if (lost) return report(make_error(Errc::internal, "a call on a killed connection succeeded"));
    if (lost.error().code != Errc::unavailable) return report(lost.error());
    fmt::print("lost: {}: {}\n", code_name(lost.error().code), lost.error().message);
    if (ssh.child_pid() != 0) return report(make_error(Errc::internal, "the killed ssh is still counted as live"));
    if (auto l = ssh.list("probe-none/"); !l) return report(l.error());
    pid_t second = ssh.child_pid();
    if (second <= 0 || second == first) return report(make_error(Errc::internal, "no new ssh process after the reconnect"));

    // Through the retry decorator the caller sees nothing at all.
    remote::RetryingBackend retrying(std::move(*opened));
    auto& inner = static_cast<remote::SshBackend&>(retrying.inner());
    ::kill(inner.child_pid(), SIGKILL);
    if (auto st = roundtrip(retrying); st != 0) return st;
    fmt::print("ok reconnect (ssh pids {} then {})\n", first, second);
    return 0;
}

int bench(const std::string& url, int rounds, int mib) {
    auto opened = remote::open_backend(url);
    if (!opened) return report(opened.error());
    remote::Backend& b = **opened;
    const std::string p = key_prefix();
    auto t0 = Clock::now();
    if (auto v = b.create_ref(p + "refs/r", "x"); !v) return report(v.error());
    double connect_ms = ms_since(t0);
    t0 = Clock::now();
    for (int i = 0; i < rounds; ++i)
        if (auto r = b.read_ref(p + "refs/r"); !r) return report(r.error());
    double rtt_ms = ms_since(t0) / rounds;

    const size_t size = static_cast<size_t>(mib) << 20;
    std::vector<std::byte> data(size);
    std::mt19937_64 rng(42);
    for (size_t i = 0; i + 8 <= size; i += 8) {
        uint64_t v = rng();
        std::memcpy(data.data() + i, &v, 8);
    }
    t0 = Clock::now();
    if (auto st = b.write(p + "mem.pack", data); !st) return report(st.error());
    double write_ms = ms_since(t0);

    char tmpl[] = "/tmp/dvol-probe-XXXXXX";
    int fd = ::mkstemp(tmpl);
    if (fd < 0) return report(errno_error("create", tmpl));
    UniqueFd f(fd);
    ::unlink(tmpl);
    if (auto st = write_all(f.get(), data, tmpl); !st) return report(st.error());
    t0 = Clock::now();
    if (auto st = b.write_file(p + "file.pack", f.get(), size); !st) return report(st.error());
    double write_file_ms = ms_since(t0);

    std::vector<std::byte> back;
    t0 = Clock::now();
    if (auto st = b.read_all(p + "file.pack", back); !st) return report(st.error());
    double read_ms = ms_since(t0);
    if (back != data) return report(make_error(Errc::corrupt, "read back other bytes"));
    for (const char* k : {"refs/r", "mem.pack", "file.pack"}) (void)b.remove(p + k);
    auto mibps = [&](double ms) { return static_cast<double>(mib) / (ms / 1000.0); };
    fmt::print("ok bench: first call (connect + handshake + create_ref) {:.1f} ms; read_ref round trip {:.3f} ms (mean of {}); "
               "write {} MiB {:.0f} ms ({:.0f} MiB/s); write_file {} MiB {:.0f} ms ({:.0f} MiB/s); read_all {} MiB {:.0f} ms "
               "({:.0f} MiB/s)\n",
               connect_ms, rtt_ms, rounds, mib, write_ms, mibps(write_ms), mib, write_file_ms, mibps(write_file_ms), mib, read_ms,
               mibps(read_ms));
    return 0;
}

int usage() {
    std::fputs("usage: remote_probe [--create] URL list [PREFIX] | roundtrip | reconnect | bench ROUNDS MIB\n", stderr);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    remote::BackendOptions options;
    if (!args.empty() && args[0] == "--create") {
        options.create = true;
        args.erase(args.begin());
    }
    if (args.size() < 2) return usage();
    const std::string& url = args[0];
    const std::string& op = args[1];
    if (op == "list") {
        auto b = remote::open_backend(url, options);
        if (!b) return report(b.error());
        auto l = (*b)->list(args.size() > 2 ? args[2] : "");
        if (!l) return report(l.error());
        fmt::print("ok {} keys\n", l->size());
        for (const auto& e : *l) fmt::print("{} {}\n", e.key, e.size);
        return 0;
    }
    if (op == "roundtrip") {
        auto b = remote::open_backend(url, options);
        if (!b) return report(b.error());
        return roundtrip(**b);
    }
    if (op == "reconnect") return reconnect(url);
    if (op == "bench" && args.size() == 4) return bench(url, std::atoi(args[2].c_str()), std::atoi(args[3].c_str()));
    return usage();
}
