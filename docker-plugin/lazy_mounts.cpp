#include "lazy_mounts.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "base/fs.h"
#include "fuse-mount/mount.h"

extern char** environ;

namespace dvol::plugin {

namespace {

// What the child wrote on stderr: its last non-empty line, without dvol's "Error: " prefix.
std::string last_line(int fd) {
    std::string text;
    char buf[4096];
    off_t at = 0;
    for (;;) {
        ssize_t n = ::pread(fd, buf, sizeof buf, at);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || text.size() > (1u << 20)) break;
        text.append(buf, static_cast<size_t>(n));
        at += n;
    }
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    auto nl = text.rfind('\n');
    std::string line = nl == std::string::npos ? text : text.substr(nl + 1);
    if (line.starts_with("Error: ")) line.erase(0, 7);
    return line;
}

}  // namespace

Status ProcessLazyMounts::mount(const std::string& volume) {
    // The child's stderr, read after it ended: a memory file, not a pipe, so that neither the
    // child nor the mount daemon it leaves (which keeps stderr until it is mounted) can block on it.
    UniqueFd err(::memfd_create("dvol-mount-stderr", MFD_CLOEXEC));
    if (!err.valid()) return errno_error("create", "a memory file for dvol mount's messages");

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, err.get(), STDERR_FILENO);
    // Nothing of the plugin's (its socket, connections, the store's database) reaches the mount
    // daemon, which lives on after the plugin.
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    // The plugin blocks SIGTERM, SIGINT and SIGHUP in every thread (main takes them with
    // sigwait) and ignores SIGPIPE; the mount daemon needs them as usual (it unmounts on SIGTERM).
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGHUP}) sigaddset(&defaults, s);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<std::string> args{dvol_, "--disable-docker-integration", "-p", store_dir_, "mount", volume};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    int rc = ::posix_spawnp(&pid, dvol_.c_str(), &actions, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return errno_error("run", dvol_ + " (the dvol command, which mounts lazy volumes; see --dvol)", rc);

    // `dvol mount` returns once the mount answers; the daemon it leaves is not our child.
    auto deadline = std::chrono::steady_clock::now() + limit_;
    int status = 0;
    for (;;) {
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return errno_error("wait for", "dvol mount " + volume);
        if (std::chrono::steady_clock::now() >= deadline) {
            ::kill(pid, SIGKILL);
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            return make_error(Errc::io, fmt::format("lazy volume {} was not mounted within {} s", volume, limit_.count()));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
    std::string why = last_line(err.get());
    if (why.empty())
        why = WIFSIGNALED(status) ? fmt::format("dvol mount was killed by signal {}", WTERMSIG(status))
                                  : fmt::format("dvol mount ended with status {}", WEXITSTATUS(status));
    return make_error(Errc::io, fmt::format("lazy volume {} could not be mounted: {}", volume, why));
}

Status ProcessLazyMounts::unmount(const std::string& volume, const std::string& live_dir) {
    DVOL_TRY(bool mounted, mountfs::is_dvol_mount(live_dir));
    if (!mounted) return {};
    auto st = mountfs::unmount(live_dir, store_dir_, [&](const std::string& m) { log_(fmt::format("unmount of {}: {}", volume, m)); });
    if (!st) return make_error(st.error().code, fmt::format("lazy volume {} could not be unmounted: {}", volume, st.error().message));
    return {};
}

}  // namespace dvol::plugin
