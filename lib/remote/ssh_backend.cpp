#include "remote/ssh_backend.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <fmt/format.h>

extern char** environ;

namespace dvol::remote {

namespace {

bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// Host names and user names: what DNS names, addresses and portable user names are made of.
// Nothing a shell, ssh's option parser or its config's tokens (%h) could read as more.
bool plain_name(std::string_view s) {
    if (s.empty() || s.front() == '-') return false;
    for (char c : s)
        if (!is_alnum(c) && c != '.' && c != '_' && c != '-') return false;
    return true;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool ipv6_literal(std::string_view s) {
    if (s.empty() || s.find(':') == std::string_view::npos) return false;
    for (char c : s)
        if (hex_digit(c) < 0 && c != ':' && c != '.') return false;
    return true;
}

// The environment's value of `name`, or `fallback` when unset or empty.
std::string setting(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : fallback;
}

// What ssh (or the far side) wrote to stderr, for a one-line message: its last meaningful
// lines (with `only`, of those starting with one of these), carriage returns and the
// "Permanently added" notices dropped.
std::string ssh_said(std::string_view text, std::initializer_list<std::string_view> only = {}) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        std::string line(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
        start = end == std::string_view::npos ? text.size() : end + 1;
        std::erase(line, '\r');
        while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.pop_back();
        if (line.empty() || line.starts_with("Warning: Permanently added")) continue;
        if (only.size() && std::none_of(only.begin(), only.end(), [&](std::string_view p) { return line.starts_with(p); }))
            continue;
        lines.push_back(std::move(line));
    }
    if (lines.size() > 3) lines.erase(lines.begin(), lines.end() - 3);
    std::string out;
    for (const auto& l : lines) out += (out.empty() ? "" : "; ") + l;
    if (out.size() > 600) out = "..." + out.substr(out.size() - 600);
    return out;
}

bool has(std::string_view text, std::string_view what) { return text.find(what) != std::string_view::npos; }

// A descriptor the child gets as 0, 1 or 2 must not already be one of those (dup2 onto
// itself would keep its close-on-exec flag): moved above them when the caller closed its own.
Result<UniqueFd> above_stdio(UniqueFd fd) {
    if (fd.get() > 2) return fd;
    int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
    if (moved < 0) return errno_error("duplicate", "a descriptor for ssh");
    return UniqueFd(moved);
}

}  // namespace

Result<SshTarget> parse_ssh_url(const std::string& url) {
    // A password in the URL never reaches a message.
    std::string shown = url;
    if (size_t end = shown.find('/', 6), at = shown.rfind('@', end), colon = shown.find(':', 6);
        url.starts_with("ssh://") && at != std::string::npos && at >= 6 && colon < at)
        shown.replace(colon, at - colon, ":***");
    auto bad = [&](std::string_view why) {
        return make_error(Errc::invalid_argument,
                          fmt::format("bad ssh URL {}: {} (write ssh://[user@]host[:port]/path)", shown, why));
    };
    if (!url.starts_with("ssh://")) return bad("it does not start with ssh://");
    std::string_view rest = std::string_view(url).substr(6);
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) return bad("no path after the host");
    std::string_view authority = rest.substr(0, slash);
    std::string_view raw_path = rest.substr(slash);

    SshTarget t;
    size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
        std::string_view user = authority.substr(0, at);
        authority = authority.substr(at + 1);
        if (user.find(':') != std::string_view::npos)
            return bad("ssh URLs carry no password: use a key, the ssh agent or ~/.ssh/config");
        if (!plain_name(user)) return bad("the user name must be letters, digits, '.', '_' and '-', not starting with '-'");
        t.user = user;
    }
    std::string_view port;
    if (authority.starts_with("[")) {
        size_t close = authority.find(']');
        if (close == std::string_view::npos) return bad("an IPv6 address without its closing ']'");
        t.host = authority.substr(1, close - 1);
        if (!ipv6_literal(t.host)) return bad("between [ and ] goes an IPv6 address: hex digits, ':' and '.'");
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (!after.starts_with(":")) return bad("something after the IPv6 address's ']' other than :port");
            port = after.substr(1);
        }
    } else {
        size_t colon = authority.find(':');
        t.host = authority.substr(0, colon);
        if (colon != std::string_view::npos) port = authority.substr(colon + 1);
        if (t.host.empty()) return bad("no host");
        if (!plain_name(t.host))
            return bad("the host must be a name or address (letters, digits, '.', '_' and '-', not starting with '-'), "
                       "or an IPv6 address in []");
    }
    if (!port.empty() || (authority.ends_with(":"))) {
        if (port.empty() || port.size() > 5) return bad("the port must be a number from 1 to 65535");
        int p = 0;
        for (char c : port) {
            if (c < '0' || c > '9') return bad("the port must be a number from 1 to 65535");
            p = p * 10 + (c - '0');
        }
        if (p < 1 || p > 65535) return bad("the port must be a number from 1 to 65535");
        t.port = p;
    }

    std::string path;
    for (size_t i = 0; i < raw_path.size(); ++i) {
        if (raw_path[i] != '%') {
            path += raw_path[i];
            continue;
        }
        int hi = i + 2 < raw_path.size() ? hex_digit(raw_path[i + 1]) : -1;
        int lo = i + 2 < raw_path.size() ? hex_digit(raw_path[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return bad("a bad percent escape in the path");
        path += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    if (path.starts_with("/~/") || path == "/~") {
        // The home directory is where ssh sessions start: a relative path, made explicit so
        // that it can never read as an option.
        std::string rel = path.size() > 3 ? path.substr(3) : "";
        path = rel.empty() ? "." : "./" + rel;
    } else if (path.starts_with("/~")) {
        return bad("/~user/ paths are not supported: write the absolute path");
    }
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    if (path == "/") return bad("the path names no directory");
    t.path = std::move(path);
    return t;
}

Result<std::vector<std::string>> split_command_words(std::string_view text) {
    std::vector<std::string> words;
    std::string word;
    bool in_word = false;
    auto refuse = [&](std::string_view why) {
        return make_error(Errc::invalid_argument,
                          fmt::format("cannot split the ssh command \"{}\" into words: {} (it is split as a shell would, "
                                      "quotes and backslashes included, but not run by one)",
                                      text, why));
    };
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n') {
            if (in_word) words.push_back(std::move(word));
            word.clear();
            in_word = false;
            continue;
        }
        in_word = true;
        if (c == '\'') {
            size_t end = text.find('\'', i + 1);
            if (end == std::string_view::npos) return refuse("a ' is not closed");
            word.append(text.substr(i + 1, end - i - 1));
            i = end;
        } else if (c == '"') {
            size_t j = i + 1;
            for (;; ++j) {
                if (j >= text.size()) return refuse("a \" is not closed");
                char d = text[j];
                if (d == '"') break;
                if (d == '\\' && j + 1 < text.size()) {
                    char n = text[j + 1];
                    if (n == '"' || n == '\\' || n == '$' || n == '`') {
                        word += n;
                        ++j;
                        continue;
                    }
                    if (n == '\n') {
                        ++j;
                        continue;
                    }
                }
                if (d == '$' || d == '`') return refuse(fmt::format("'{}' inside \"...\" would be expanded by a shell", d));
                word += d;
            }
            i = j;
        } else if (c == '\\') {
            if (i + 1 >= text.size()) return refuse("it ends with a lone backslash");
            if (text[i + 1] != '\n') word += text[i + 1];
            ++i;
        } else if (std::string_view("$`|&;<>()").find(c) != std::string_view::npos) {
            return refuse(fmt::format("'{}' means something to a shell: quote it if it is meant literally", c));
        } else {
            word += c;
        }
    }
    if (in_word) words.push_back(std::move(word));
    return words;
}

std::string shell_quote(std::string_view s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "'\\''";
        else out += c;
    }
    return out + "'";
}

std::vector<std::string> ssh_command_line(const SshTarget& target, const std::vector<std::string>& ssh_words,
                                          std::string_view remote_dvol, bool create) {
    std::vector<std::string> argv = ssh_words;
    for (const char* a : {"-x", "-a", "-T", "-o", "BatchMode=yes"}) argv.emplace_back(a);
    if (target.port != 0) {
        argv.emplace_back("-p");
        argv.push_back(std::to_string(target.port));
    }
    argv.push_back(target.destination());
    argv.push_back(fmt::format("{} remote-serve {}{}", remote_dvol, create ? "--create " : "", shell_quote(target.path)));
    return argv;
}

Error explain_ssh_failure(const std::string& location, const SshTarget& target, std::string_view remote_dvol,
                          int wait_status, std::string_view ssh_stderr, Error seen, bool answered) {
    const std::string said = ssh_said(ssh_stderr);
    const int code = wait_status != -1 && WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
    const std::string host = target.port ? fmt::format("{}:{}", target.host, target.port) : target.host;
    const std::string ssh_to = target.port ? fmt::format("ssh -p {} {}", target.port, target.destination())
                                           : fmt::format("ssh {}", target.destination());

    if (code == 255) {
        if (has(ssh_stderr, "REMOTE HOST IDENTIFICATION HAS CHANGED") || has(ssh_stderr, "Host key for") ||
            (has(ssh_stderr, "Host key verification failed") && has(ssh_stderr, "Offending")))
            return make_error(Errc::denied,
                              fmt::format("{}: ssh refused to connect: the host key of {} has CHANGED since it was recorded "
                                          "in known_hosts, which may mean someone is intercepting the connection ({}). If the "
                                          "server's key was changed on purpose, remove the old one (ssh-keygen -R) and check "
                                          "the new one's fingerprint",
                                          location, host, ssh_said(ssh_stderr, {"Offending", "Host key for"})));
        if (has(ssh_stderr, "Host key verification failed") || has(ssh_stderr, "host key is known") ||
            has(ssh_stderr, "authenticity of host"))
            return make_error(Errc::denied,
                              fmt::format("{}: ssh refused to connect: the host key of {} is not known (it is in no "
                                          "known_hosts file), and dvol never accepts one unchecked ({}). Check the key's "
                                          "fingerprint with the server's administrator and record it, e.g. by connecting once "
                                          "with '{}'",
                                          location, host, said, ssh_to));
        if (has(ssh_stderr, "Permission denied") || has(ssh_stderr, "Too many authentication failures") ||
            has(ssh_stderr, "No more authentication methods"))
            return make_error(Errc::denied,
                              fmt::format("{}: the server refused the credentials ({}). Check the key (ssh-add -l; or -i KEY "
                                          "in DVOL_SSH_COMMAND) and that its public key is in the server's authorized_keys; "
                                          "ssh runs with BatchMode=yes, so it never asks for a password",
                                          location, said));
        if (has(ssh_stderr, "Could not resolve hostname") && !has(ssh_stderr, "Temporary failure"))
            return make_error(Errc::not_found, fmt::format("{}: unknown host {} ({})", location, target.host, said));
        return make_error(Errc::unavailable,
                          fmt::format("{}: cannot reach the server over ssh ({})", location,
                                      said.empty() ? seen.message : said));
    }
    if (code == 127 || code == 126)
        return make_error(Errc::unsupported,
                          fmt::format("{}: the server cannot run dvol ('{}': {}). dvol must be installed on the server, in the "
                                      "PATH of a non-interactive ssh session, or named with DVOL_REMOTE_DVOL=/path/to/dvol",
                                      location, remote_dvol,
                                      said.empty() ? (code == 127 ? "command not found" : "not executable") : said));
    if (has(ssh_stderr, "unknown command 'remote-serve'") || has(ssh_stderr, "remote-serve: command not found"))
        return make_error(Errc::unsupported,
                          fmt::format("{}: the dvol on the server ('{}') has no remote-serve command: it is older than this "
                                      "one; install the same dvol version there ({})",
                                      location, remote_dvol, said));
    if (!answered && code >= 0)
        // ssh connected and ran the command, which ended without a word of the protocol: no
        // retry will change that.
        return make_error(Errc::io, fmt::format("{}: '{} remote-serve' on the server ended before it answered (exit status "
                                                "{}{}{})",
                                                location, remote_dvol, code, said.empty() ? "" : ": ", said));
    std::string how;
    if (wait_status != -1 && WIFSIGNALED(wait_status))
        how = fmt::format("ssh was killed by signal {}", WTERMSIG(wait_status));
    else if (code >= 0) how = fmt::format("ssh exited with status {}", code);
    if (!said.empty()) how += (how.empty() ? "" : ": ") + said;
    if (!how.empty()) seen.message += fmt::format(" ({})", how);
    return seen;
}

Result<std::unique_ptr<SshBackend>> SshBackend::open(const std::string& url, const BackendOptions& options) {
    DVOL_TRY(SshTarget target, parse_ssh_url(url));
    std::string command = setting("DVOL_SSH_COMMAND", options.ssh_command.empty() ? "ssh" : options.ssh_command);
    DVOL_TRY(auto words, split_command_words(command));
    if (words.empty()) words.emplace_back("ssh");
    std::string remote_dvol = setting("DVOL_REMOTE_DVOL", options.remote_dvol.empty() ? "dvol" : options.remote_dvol);
    if (remote_dvol.find('\0') != std::string::npos || remote_dvol.find('\n') != std::string::npos)
        return make_error(Errc::invalid_argument, "the remote dvol command (DVOL_REMOTE_DVOL) must be one line");
    auto argv = ssh_command_line(target, words, remote_dvol, options.create);
    return std::unique_ptr<SshBackend>(new SshBackend(url, std::move(target), std::move(remote_dvol), std::move(argv)));
}

SshBackend::~SshBackend() {
    (void)stop_child();
    drop_connection();
}

// The Client first: it restores the flags of descriptors it borrows, which must still be ours.
void SshBackend::drop_connection() {
    client_.reset();
    to_child_.reset();
    from_child_.reset();
    child_err_.reset();
}

// Socket pairs for ssh's stdin and stdout (send() with MSG_NOSIGNAL: a dead ssh is EPIPE, not
// a SIGPIPE that would kill the caller), a pipe for its stderr. Every descriptor is
// close-on-exec, so a connection made by one thread leaks into no other child.
Status SshBackend::connect() {
    int in_pair[2], out_pair[2], err_pipe[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_pair) != 0)
        return errno_error("create", "a socket pair for ssh");
    UniqueFd ours_in(in_pair[0]), child_in(in_pair[1]);
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out_pair) != 0)
        return errno_error("create", "a socket pair for ssh");
    UniqueFd ours_out(out_pair[0]), child_out(out_pair[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) return errno_error("create", "a pipe for ssh");
    UniqueFd ours_err(err_pipe[0]), child_err(err_pipe[1]);
    DVOL_TRY(child_in, above_stdio(std::move(child_in)));
    DVOL_TRY(child_out, above_stdio(std::move(child_out)));
    DVOL_TRY(child_err, above_stdio(std::move(child_err)));

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, child_in.get(), 0);
    posix_spawn_file_actions_adddup2(&actions, child_out.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, child_err.get(), 2);
    // ssh gets default signal handling and an empty mask, whatever the caller set for itself.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::vector<char*> args;
    for (auto& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = 0;
    int rc = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    // Only ssh may hold its ends: their EOF is how we learn it is gone.
    child_in.reset();
    child_out.reset();
    child_err.reset();
    if (rc != 0)
        return make_error(rc == ENOENT ? Errc::unsupported : Errc::io,
                          fmt::format("{}: cannot run '{}': {}. Install OpenSSH's client, or name the ssh command with "
                                      "DVOL_SSH_COMMAND",
                                      location_, argv_[0], std::strerror(rc)));
    pid_ = pid;
    to_child_ = std::move(ours_in);
    from_child_ = std::move(ours_out);
    child_err_ = std::move(ours_err);
    client_ = std::make_unique<wire::Client>(from_child_.get(), to_child_.get(), child_err_.get(), location_);
    if (auto st = client_->handshake(); !st) return end_connection(std::move(st).error(), false);
    return {};
}

// Ends the connection after a failure and says why: from ssh's exit status and stderr when
// the transport failed; an error the server reported, or a protocol violation, as it is.
Error SshBackend::end_connection(Error seen, bool answered) {
    const bool transport = client_ && client_->transport_failed();
    int status = stop_child();
    std::string err_text = client_ ? client_->side_text() : std::string();
    drop_connection();
    const int code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    bool decisive = code == 255 || code == 127 || code == 126 || has(err_text, "unknown command 'remote-serve'");
    if (transport || decisive)
        return explain_ssh_failure(location_, target_, remote_dvol_, status, err_text, std::move(seen), answered);
    return seen;
}

// Ends ssh's stdin (the server sees the end of its input and exits, and ssh with it), waits
// for ssh up to 2 s, then SIGTERM, 2 s more, SIGKILL. Reaps it and returns its wait status
// (-1 when unknown). The descriptors stay open (drop_connection() closes them), so that what
// ssh still writes to stderr is read meanwhile.
int SshBackend::stop_child() {
    if (pid_ <= 0) return -1;
    if (to_child_.valid()) ::shutdown(to_child_.get(), SHUT_WR);
    const pid_t pid = std::exchange(pid_, 0);
    int status = -1;
    auto reaped_within = [&](std::chrono::milliseconds limit) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            int st = 0;
            pid_t r = ::waitpid(pid, &st, WNOHANG);
            if (r == pid) {
                status = st;
                return true;
            }
            if (r < 0 && errno != EINTR) return true;  // not ours to wait for any more
            if (std::chrono::steady_clock::now() >= deadline) return false;
            if (client_) (void)client_->side_text();  // a full stderr pipe must not hold ssh up
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    };
    if (reaped_within(std::chrono::milliseconds(2000))) return status;
    ::kill(pid, SIGTERM);
    if (reaped_within(std::chrono::milliseconds(2000))) return status;
    ::kill(pid, SIGKILL);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return st;
}

template <typename Call>
auto SshBackend::call(Call&& c) -> decltype(c(std::declval<wire::Client&>())) {
    if (!client_) DVOL_CHECK(connect());
    auto r = c(*client_);
    if (client_->broken()) {
        Error seen = r ? make_error(Errc::unavailable, fmt::format("{}: the connection was lost", location_)) : r.error();
        return end_connection(std::move(seen), true);
    }
    return r;
}

Result<std::vector<Entry>> SshBackend::list(const std::string& prefix) {
    return call([&](wire::Client& c) { return c.list(prefix); });
}

Status SshBackend::read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) {
    return call([&](wire::Client& c) { return c.read(key, offset, length, out); });
}

Status SshBackend::read_all(const std::string& key, std::vector<std::byte>& out) {
    return call([&](wire::Client& c) { return c.read_all(key, out); });
}

Status SshBackend::write(const std::string& key, std::span<const std::byte> data) {
    return call([&](wire::Client& c) { return c.write(key, data); });
}

Status SshBackend::write_file(const std::string& key, int fd, uint64_t size) {
    return call([&](wire::Client& c) { return c.write_file(key, fd, size); });
}

Result<std::optional<RefValue>> SshBackend::read_ref(const std::string& key) {
    return call([&](wire::Client& c) { return c.read_ref(key); });
}

Result<std::string> SshBackend::create_ref(const std::string& key, std::string_view data) {
    return call([&](wire::Client& c) { return c.create_ref(key, data); });
}

Result<std::string> SshBackend::update_ref(const std::string& key, std::string_view data, const std::string& expected) {
    return call([&](wire::Client& c) { return c.update_ref(key, data, expected); });
}

Status SshBackend::remove(const std::string& key) {
    return call([&](wire::Client& c) { return c.remove(key); });
}

}  // namespace dvol::remote
