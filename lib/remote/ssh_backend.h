// A remote reached over SSH: ssh://[user@]host[:port]/path. Like git's ssh transport, it runs
// dvol itself on the server (`dvol remote-serve [--create] PATH`, see cli/cmd_remote_serve.cpp)
// through the system's ssh client, so the user's keys, agent, ~/.ssh/config and known_hosts
// apply, and speaks the protocol of ssh_protocol.h with it over ssh's stdin and stdout. The
// server serves PATH as a directory remote (DirBackend), so compare-and-swap of refs is the
// local, safe kind there. dvol must be installed on the server.
//
// The command line is
//     <ssh command words> -x -a -T -o BatchMode=yes [-p PORT] [user@]host '<remote dvol> remote-serve [--create] <path>'
// run with posix_spawnp, never through a local shell:
// - the ssh command: $DVOL_SSH_COMMAND if set and not empty, else BackendOptions::ssh_command
//   if not empty, else "ssh"; split into words by split_command_words() (below). The first
//   word is the program, found in $PATH.
// - -x -a -T: no X11 or agent forwarding, no terminal (which would mangle the binary stream).
//   -o BatchMode=yes: ssh never prompts (for a password, a passphrase, an unknown host key);
//   it fails instead. ssh takes the first value it is given for an option, so a
//   `-o BatchMode=no` in the ssh command wins; one in ~/.ssh/config does not.
// - host keys: whatever ssh's configuration says. dvol never passes StrictHostKeyChecking or
//   UserKnownHostsFile itself: an unknown or changed host key fails (Errc::denied).
// - the far-side command is one string, as ssh hands it to the remote user's shell: the
//   remote dvol command ($DVOL_REMOTE_DVOL, else BackendOptions::remote_dvol, else "dvol";
//   inserted as written, so it may be "/opt/dvol/bin/dvol" or "sudo -n -u dvol dvol"), then
//   the path in single quotes. A path "/~/rest" is "rest" in the remote user's home directory.
// - the host and user come from the URL and are checked (letters, digits, '.', '_', '-'; an
//   IPv6 literal in brackets), never starting with '-', so a URL cannot smuggle ssh options.
//
// One ssh process per SshBackend, started by the first call and kept for the next ones. When
// the connection dies (ssh exits, the server's dvol dies, nothing arrives for
// wire::kDefaultIdleTimeout), the call fails with Errc::unavailable and the process is reaped;
// the next call starts a new one, so RetryingBackend's retry reconnects. Failures to connect
// are told from ssh's exit status and stderr:
// - ssh's 255 with "Permission denied", or "Host key verification failed": Errc::denied
//   (the message says whether the host key is unknown or changed, as ssh does);
// - 255 otherwise (refused, timed out, closed, reset): Errc::unavailable;
// - 255 for a host name that does not resolve: Errc::not_found;
// - 127 or 126 (the far side has no dvol, or cannot run it), or a far-side dvol without
//   remote-serve: Errc::unsupported, saying to install dvol there or set DVOL_REMOTE_DVOL.
// Errors the server reports carry their own code, with "<url>: " before the message.
// Destruction closes ssh's stdin (the server then ends cleanly), waits briefly, then kills and
// reaps the ssh process by its pid.
//
// A SshBackend is used by one thread at a time.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "remote/backend.h"
#include "remote/open.h"
#include "remote/ssh_protocol.h"

namespace dvol::remote {

// The parts of an ssh:// URL.
struct SshTarget {
    std::string user;  // empty: ssh's default (~/.ssh/config, else the local user)
    std::string host;  // without the brackets of an IPv6 literal
    int port = 0;      // 0: ssh's default
    std::string path;  // as the far side gets it: absolute, or relative to the home directory

    // [user@]host, as ssh takes it.
    std::string destination() const { return user.empty() ? host : user + "@" + host; }
};

// Parses ssh://[user@]host[:port]/path (percent escapes in the path decoded; "/~/x" is x in
// the home directory). Errc::invalid_argument, saying what is wrong, for anything else: no
// path, a password, a port out of range, a host or user with other characters or starting
// with '-'.
Result<SshTarget> parse_ssh_url(const std::string& url);

// Splits a command into words as a POSIX shell would, without running one: blanks (space, tab,
// newline) separate words; '...' keeps everything literally; "..." keeps everything but
// \" \\ \$ \` (and \newline, removed), whose backslash goes; outside quotes a backslash keeps
// the next character. Nothing is expanded ($VAR, ~, *, `...`), so the characters $ ` | & ; < >
// ( ) outside quotes are refused (Errc::invalid_argument) rather than taken literally, as is
// an unterminated quote. An empty or blank text gives no words.
Result<std::vector<std::string>> split_command_words(std::string_view text);

// `s` as one word for a POSIX shell: in single quotes, each ' written '\''.
std::string shell_quote(std::string_view s);

// The argument vector that runs the far side (see above).
std::vector<std::string> ssh_command_line(const SshTarget& target, const std::vector<std::string>& ssh_words,
                                          std::string_view remote_dvol, bool create);

// The error for a connection that failed, from ssh's exit `wait_status` (as waitpid gives it;
// -1 when unknown) and what it wrote to stderr; `seen` is what the connection saw (EOF, ...),
// kept when neither tells more. `answered`: whether the server had completed the handshake;
// a far side that exits before (not ssh's 255) is Errc::io, since retrying cannot help.
Error explain_ssh_failure(const std::string& location, const SshTarget& target, std::string_view remote_dvol,
                          int wait_status, std::string_view ssh_stderr, Error seen, bool answered);

class SshBackend final : public Backend {
public:
    // Checks the URL and the settings; connects at the first call.
    static Result<std::unique_ptr<SshBackend>> open(const std::string& url, const BackendOptions& options = {});
    ~SshBackend() override;
    SshBackend(const SshBackend&) = delete;
    SshBackend& operator=(const SshBackend&) = delete;

    // The command line this backend runs.
    const std::vector<std::string>& command_line() const { return argv_; }
    // The ssh process of the live connection, 0 when there is none (for tests).
    pid_t child_pid() const { return pid_; }

    const std::string& location() const override { return location_; }
    Result<std::vector<Entry>> list(const std::string& prefix) override;
    Status read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) override;
    Status read_all(const std::string& key, std::vector<std::byte>& out) override;
    Status write(const std::string& key, std::span<const std::byte> data) override;
    Status write_file(const std::string& key, int fd, uint64_t size) override;
    Result<std::optional<RefValue>> read_ref(const std::string& key) override;
    Result<std::string> create_ref(const std::string& key, std::string_view data) override;
    Result<std::string> update_ref(const std::string& key, std::string_view data, const std::string& expected) override;
    Status remove(const std::string& key) override;

private:
    SshBackend(std::string location, SshTarget target, std::string remote_dvol, std::vector<std::string> argv)
        : location_(std::move(location)),
          target_(std::move(target)),
          remote_dvol_(std::move(remote_dvol)),
          argv_(std::move(argv)) {}

    template <typename Call>
    auto call(Call&& c) -> decltype(c(std::declval<wire::Client&>()));
    Status connect();
    Error end_connection(Error seen, bool answered);
    int stop_child();
    void drop_connection();

    std::string location_;
    SshTarget target_;
    std::string remote_dvol_;
    std::vector<std::string> argv_;

    pid_t pid_ = 0;
    UniqueFd to_child_;    // ssh's stdin
    UniqueFd from_child_;  // ssh's stdout
    UniqueFd child_err_;   // ssh's stderr
    std::unique_ptr<wire::Client> client_;
};

}  // namespace dvol::remote
