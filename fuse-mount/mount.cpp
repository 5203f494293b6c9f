#include "mount.h"

#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "base/fs.h"
#include "commit_fs.h"
#include "mountinfo.h"
#include "repo/repository.h"
#include "serve.h"
#include "store/object_source.h"
#include "store/pooled_source.h"

extern char** environ;

namespace dvol::mountfs {

bool fuse_available() { return fuse_built(); }

namespace {

// The daemon's report to the waiting parent, through the pipe: "O<volume>\n<commit hex>\n" once
// the mount answers, or "E<message>" when it could not mount.
std::string ok_message(const MountedInfo& m) { return fmt::format("O{}\n{}\n", m.volume, m.commit.hex()); }

// Everything the serving process does, in the foreground or as the daemon: resolve and pin the
// commit, open the readers, serve. `ready` is called once, as serve() says.
Status serve_commit(const MountRequest& req, const std::string& dir, Logger& log, const WarnFn& wait_notice,
                    const std::function<void(const Status&, const MountedInfo&)>& ready) {
    MountedInfo info;
    info.dir = dir;
    auto early = [&](Error e) {
        ready(e, info);
        return e;
    };
    std::optional<CommitPin> pin;
    std::vector<std::unique_ptr<ObjectSource>> readers;
    {
        auto repo = Repository::open(req.store_dir, false);  // a mount makes no store
        if (!repo) return early(repo.error());
        (*repo)->set_wait_notice(wait_notice);
        auto volume = (*repo)->resolve_volume(req.volume);
        if (!volume) return early(volume.error());
        auto pinned = (*repo)->pin_commit(*volume, req.ref, fmt::format("mount {}", dir));
        if (!pinned) return early(pinned.error());
        pin.emplace(std::move(*pinned));
        for (unsigned i = 0; i < std::max(1u, req.threads); ++i) {
            auto r = (*repo)->open_object_reader();
            if (!r) return early(r.error());
            readers.push_back(std::move(*r));
        }
    }
    info.volume = pin->volume();
    info.commit = pin->commit();
    PooledSource source(std::move(readers));
    Options options;
    options.limits.chunk_cache = req.cache_mib << 20;
    options.count_links = req.count_links;
    if (log.verbose()) options.trace = [&log](const std::string& m) { log.trace(m); };
    auto fs = CommitFs::open(source, pin->tree(), std::move(options));
    if (!fs) return early(fs.error());

    ServeConfig cfg;
    cfg.dir = dir;
    cfg.fsname = fmt::format("dvol:{}@{}", info.volume, info.commit.hex().substr(0, 12));
    cfg.threads = std::max(1u, req.threads);
    cfg.readahead_kib = req.readahead_kib;
    Status served = serve(**fs, cfg, log, [&](const Status& st) { ready(st, info); });
    if (served) {
        auto s = (*fs)->stats();
        log.trace(fmt::format("unmounted; loaded {} trees, {} extent lists, {} chunks", s.tree_loads, s.list_loads, s.chunk_loads));
    }
    return served;
}

// The directory as an absolute path without symlinks. Its last component is not resolved, so a
// dead mount (whose stat fails) can still be named.
Result<std::string> absolute_dir(const std::string& dir) {
    if (dir.empty()) return make_error(Errc::invalid_argument, "the mount directory is empty");
    std::string d = dir;
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    size_t slash = d.rfind('/');
    std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : d.substr(0, slash);
    std::string base = slash == std::string::npos ? d : d.substr(slash + 1);
    if (d == "/" || base == "." || base == "..") {
        char buf[PATH_MAX];
        if (!::realpath(d.c_str(), buf)) return errno_error("find", dir);
        return std::string(buf);
    }
    char buf[PATH_MAX];
    if (!::realpath(parent.c_str(), buf)) return errno_error("find", parent);
    std::string out = buf;
    if (out != "/") out += "/";
    return out + base;
}

Status check_mount_dir(const std::string& dir) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) {
        if (errno == ENOTCONN)
            return make_error(Errc::busy, fmt::format("{} is a mount whose process is gone; free it with dvol umount {} (or fusermount3 -u)", dir, dir));
        return errno_error("use as the mount directory", dir);
    }
    if (!S_ISDIR(st.st_mode)) return make_error(Errc::invalid_argument, fmt::format("{} is not a directory", dir));
    DVOL_TRY(auto m, find_mount(dir));
    if (m && m->fstype == kDvolFsType) {
        // A mount whose process is gone still answers a stat from the kernel's cache, not statfs.
        struct statfs sfs;
        if (::statfs(dir.c_str(), &sfs) != 0 && errno == ENOTCONN)
            return make_error(Errc::busy, fmt::format("{} is a dvol mount whose process is gone; free it with dvol umount {}", dir, dir));
        return make_error(Errc::busy, fmt::format("{} is already a dvol mount ({})", dir, m->source));
    }
    // Mounting hides what the directory holds: only an empty one is taken.
    DIR* d = ::opendir(dir.c_str());
    if (!d) return errno_error("read directory", dir);
    bool empty = true;
    while (dirent* e = ::readdir(d)) {
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
            empty = false;
            break;
        }
    }
    ::closedir(d);
    if (!empty) return make_error(Errc::invalid_argument, fmt::format("{} is not empty: mount on an empty directory", dir));
    return {};
}

// The kernel's FUSE device, which the mount opens (itself as root, through fusermount3 otherwise).
Status check_fuse_device() {
    struct stat st;
    if (::stat("/dev/fuse", &st) == 0 && S_ISCHR(st.st_mode)) return {};
    return make_error(Errc::unsupported,
                      "no /dev/fuse here: FUSE is not available (load the fuse module; in a container, pass --device /dev/fuse)");
}

Result<std::string> read_all(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error("read", "the mount process's report");
        if (n == 0) return out;
        out.append(buf, static_cast<size_t>(n));
    }
}

void write_report(int fd, const std::string& msg) {
    size_t done = 0;
    while (done < msg.size()) {
        ssize_t n = ::write(fd, msg.data() + done, msg.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        done += static_cast<size_t>(n);
    }
}

// The daemon: never returns.
[[noreturn]] void run_daemon(const MountRequest& req, const std::string& dir, int report_fd) {
    ::setsid();
    Logger log;
    log.set_verbose(req.verbose);
    bool reported = false, up = false;
    Status served = serve_commit(req, dir, log, [](const std::string& m) { fmt::print(stderr, "{}...\n", m); },
                                 [&](const Status& st, const MountedInfo& info) {
                                     write_report(report_fd, st ? ok_message(info) : "E" + st.error().message);
                                     ::close(report_fd);
                                     reported = true;
                                     if (!st) return;
                                     up = true;
                                     // Detached from the caller: no terminal, messages to syslog.
                                     log.use_syslog();
                                     int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
                                     if (null >= 0) {
                                         ::dup2(null, STDIN_FILENO);
                                         ::dup2(null, STDOUT_FILENO);
                                         ::dup2(null, STDERR_FILENO);
                                         ::close(null);
                                     }
                                     (void)!::chdir("/");
                                 });
    if (!reported) write_report(report_fd, "E" + (served ? std::string("the mount process ended early") : served.error().message));
    if (!served && up) log.error(served.error().message);  // before, the caller printed it
    std::fflush(nullptr);
    ::_exit(served ? 0 : 1);
}

}  // namespace

Status mount_commit(const MountRequest& req_arg, const std::function<void(const MountedInfo&)>& mounted, const WarnFn& wait_notice) {
    MountRequest req = req_arg;
    // The daemon works from / once mounted, and opens packs as it goes: the store by its absolute path.
    if (!req.store_dir.empty() && req.store_dir.front() != '/') {
        char cwd[PATH_MAX];
        if (!::getcwd(cwd, sizeof cwd)) return errno_error("find", "the current directory");
        req.store_dir = std::string(cwd) + "/" + req.store_dir;
    }
    DVOL_TRY(std::string dir, absolute_dir(req.dir));
    DVOL_CHECK(check_mount_dir(dir));
    if (!fuse_built()) return make_error(Errc::unsupported, "this dvol was built without FUSE support (install libfuse3-dev and build again)");
    DVOL_CHECK(check_fuse_device());

    if (req.foreground) {
        Logger log;
        log.set_verbose(req.verbose);
        return serve_commit(req, dir, log, wait_notice, [&](const Status& st, const MountedInfo& info) {
            if (st) mounted(info);
        });
    }

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return errno_error("create a pipe", "for the mount process");
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) return errno_error("start", "the mount process");
    if (pid == 0) {
        read_end.reset();
        run_daemon(req, dir, write_end.release());
    }
    write_end.reset();
    DVOL_TRY(std::string report, read_all(read_end.get()));
    if (report.starts_with("O")) {
        size_t nl = report.find('\n');
        MountedInfo info;
        info.dir = dir;
        info.volume = report.substr(1, nl - 1);
        auto id = ObjectId::from_hex(std::string_view(report).substr(nl + 1, 64));
        if (id) info.commit = *id;
        mounted(info);
        return {};
    }
    // It failed: collect it (it exits right after reporting).
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (report.starts_with("E")) return make_error(Errc::io, report.substr(1));
    return make_error(Errc::io, fmt::format("the mount process ended without mounting ({})",
                                            WIFSIGNALED(status) ? fmt::format("killed by signal {}", WTERMSIG(status))
                                                                : fmt::format("exit status {}", WEXITSTATUS(status))));
}

namespace {

// fusermount3 -u DIR, for a user who may not call umount2.
Status fusermount_unmount(const std::string& dir) {
    std::vector<char*> argv{const_cast<char*>("fusermount3"), const_cast<char*>("-u"), const_cast<char*>("--"), const_cast<char*>(dir.c_str()),
                            nullptr};
    pid_t pid;
    int rc = ::posix_spawnp(&pid, "fusermount3", nullptr, nullptr, argv.data(), environ);
    if (rc != 0) return errno_error("run fusermount3 to unmount", dir, rc);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return make_error(Errc::io, fmt::format("fusermount3 -u {} failed (see its message above)", dir));
    return {};
}

}  // namespace

Status unmount(const std::string& dir_arg, const std::string& store_dir, const WarnFn& notice) {
    DVOL_TRY(std::string dir, absolute_dir(dir_arg));
    DVOL_TRY(auto m, find_mount(dir));
    if (!m) return make_error(Errc::invalid_argument, fmt::format("{} is not a dvol mount: nothing is mounted there", dir));
    if (m->fstype != kDvolFsType)
        return make_error(Errc::invalid_argument, fmt::format("{} is not a dvol mount: a {} file system is mounted there", dir, m->fstype));

    // The process serving it, when the store knows it (its pin names the directory).
    std::optional<PinInfo> serving;
    if (path_exists(store_dir + "/dvol.db")) {
        auto repo = Repository::open(store_dir, false);
        if (repo) {
            auto pins = (*repo)->pins();
            if (pins) {
                for (auto& p : *pins)
                    if (p.holder == "mount " + dir) serving = p;
            }
        }
    }

    if (::geteuid() == 0) {
        if (::umount2(dir.c_str(), 0) != 0) {
            if (errno == EBUSY)
                return make_error(Errc::busy, fmt::format("{} is busy: a process has a file or its working directory in it", dir));
            return errno_error("unmount", dir);
        }
    } else {
        DVOL_CHECK(fusermount_unmount(dir));
    }

    // The daemon ends when its mount goes; its pin's lock goes with it.
    if (serving) {
        auto fd = open_file(serving->file, O_RDONLY);
        if (fd) {
            using namespace std::chrono;
            auto start = steady_clock::now();
            bool told = false;
            while (::flock(fd->get(), LOCK_SH | LOCK_NB) != 0) {
                if (!told && steady_clock::now() - start > seconds(5)) {
                    if (notice) notice(fmt::format("waiting for the mount process {} to exit", serving->pid));
                    told = true;
                }
                if (steady_clock::now() - start > seconds(60)) break;
                std::this_thread::sleep_for(milliseconds(20));
            }
        }
    }
    return {};
}

}  // namespace dvol::mountfs
