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
#include "layer_fs.h"
#include "mountinfo.h"
#include "repo/layer_tree.h"
#include "repo/repository.h"
#include "serve.h"
#include "remote/backend.h"
#include "store/chunk_cache.h"
#include "store/object_source.h"
#include "store/pooled_source.h"

extern char** environ;

namespace dvol::mountfs {

bool fuse_available() { return fuse_built(); }

namespace {

// The daemon's report to the waiting parent, through the pipe: "O<volume>\n<commit hex>\n" once
// the mount answers, or "E<message>" when it could not mount.
std::string ok_message(const MountedInfo& m) { return fmt::format("O{}\n{}\n", m.volume, m.commit.hex()); }

// $DVOL_TEST_FETCH_LOG names a file to which a lazy mount appends one line per ranged read its
// remote answered ("read KEY OFFSET LENGTH BYTES") or failed ("fail KEY OFFSET LENGTH"): how the
// tests count what the remote served, whatever its kind.
class FetchLog final : public remote::Backend {
public:
    FetchLog(std::unique_ptr<remote::Backend> inner, std::shared_ptr<UniqueFd> fd) : inner_(std::move(inner)), fd_(std::move(fd)) {}
    const std::string& location() const override { return inner_->location(); }
    Result<std::vector<remote::Entry>> list(const std::string& prefix) override { return inner_->list(prefix); }
    Status read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) override {
        Status st = inner_->read(key, offset, length, out);
        note(st ? fmt::format("read {} {} {} {}\n", key, offset, length, out.size()) : fmt::format("fail {} {} {}\n", key, offset, length));
        return st;
    }
    Status read_all(const std::string& key, std::vector<std::byte>& out) override {
        Status st = inner_->read_all(key, out);
        note(st ? fmt::format("read {} 0 all {}\n", key, out.size()) : fmt::format("fail {} 0 all\n", key));
        return st;
    }
    Status write(const std::string& key, std::span<const std::byte> data) override { return inner_->write(key, data); }
    Status write_file(const std::string& key, int fd, uint64_t size) override { return inner_->write_file(key, fd, size); }
    Result<std::optional<remote::RefValue>> read_ref(const std::string& key) override { return inner_->read_ref(key); }
    Result<std::string> create_ref(const std::string& key, std::string_view data) override { return inner_->create_ref(key, data); }
    Result<std::string> update_ref(const std::string& key, std::string_view data, const std::string& expected) override {
        return inner_->update_ref(key, data, expected);
    }
    Status remove(const std::string& key) override { return inner_->remove(key); }

private:
    void note(const std::string& line) { (void)!::write(fd_->get(), line.data(), line.size()); }  // O_APPEND: whole lines
    std::unique_ptr<remote::Backend> inner_;
    std::shared_ptr<UniqueFd> fd_;
};

// The lazy volume's source, with the lock that makes its mount process the only one.
struct LazyServing {
    UniqueFd lock;
    std::unique_ptr<LazySource> source;
    std::string cache_dir;
};

Result<LazyServing> open_lazy(Repository& repo, const std::string& volume, const MountRequest& req, const Logger& log,
                              MountedInfo& info, ObjectId& top) {
    DVOL_TRY(auto lazy, repo.lazy_volume(volume));
    if (!lazy)
        return make_error(Errc::invalid_argument, fmt::format("volume {} is not lazy: mount a commit of it with dvol mount {} DIR", volume, volume));
    LazyServing out;
    out.cache_dir = lazy->cache_dir;
    DVOL_CHECK(make_dirs(lazy->cache_dir));
    // One process serves a volume's cache: a second mount of the same volume (a race of two
    // commands remounting it) stops here.
    std::string lock_path = lazy->cache_dir + "/mount.lock";
    DVOL_TRY(out.lock, open_file(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (::flock(out.lock.get(), LOCK_EX | LOCK_NB) != 0)
        return make_error(Errc::busy, fmt::format("lazy volume {} is being mounted by another process", volume));
    std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(out.lock.get(), 0) != 0) return errno_error("write", lock_path);
    DVOL_CHECK(pwrite_all(out.lock.get(), as_bytes(pid), 0, lock_path));
    LazySourceOptions options;
    options.readers = std::max(1u, req.threads);
    options.log = [&log](const std::string& m) { log.error(m); };
    if (const char* path = std::getenv("DVOL_TEST_FETCH_LOG"); path && *path) {
        DVOL_TRY(auto fd, open_file(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
        auto shared = std::make_shared<UniqueFd>(std::move(fd));
        options.wrap = [shared](std::unique_ptr<remote::Backend> b) -> std::unique_ptr<remote::Backend> {
            return std::make_unique<FetchLog>(std::move(b), shared);
        };
    }
    DVOL_TRY(out.source, repo.open_lazy_source(*lazy, options));
    info.volume = lazy->volume;
    info.commit = lazy->commit;
    top = lazy->tree;
    // A layer holds changes to the commit it was made over: the mount shows that commit with the
    // layer, also once commits of the layer have moved the branch on.
    DVOL_TRY(auto base, layer_base(lazy->cache_dir + "/layer"));
    if (base && *base != lazy->commit) {
        DVOL_TRY(auto c, repo.load_commit(*base));
        info.commit = *base;
        top = c.tree;
    }
    return out;
}

// Everything the serving process does, in the foreground or as the daemon: resolve and pin the
// commit (or open a lazy volume's cache), open the readers, serve. `ready` is called once, as
// serve() says.
Status serve_commit(const MountRequest& req, const std::string& dir, Logger& log, const WarnFn& wait_notice,
                    const std::function<void(const Status&, const MountedInfo&)>& ready) {
    MountedInfo info;
    info.dir = dir;
    auto early = [&](Error e) {
        ready(e, info);
        return e;
    };
    std::optional<CommitPin> pin;
    std::optional<LazyServing> lazy;
    std::vector<std::unique_ptr<ObjectSource>> readers;
    ObjectId top;
    bool no_xattrs = false;
    {
        auto repo = Repository::open(req.store_dir, false);  // a mount makes no store
        if (!repo) return early(repo.error());
        (*repo)->set_wait_notice(wait_notice);
        auto volume = (*repo)->resolve_volume(req.volume);
        if (!volume) return early(volume.error());
        if (req.lazy) {
            auto opened = open_lazy(**repo, *volume, req, log, info, top);
            if (!opened) return early(opened.error());
            lazy.emplace(std::move(*opened));
        } else {
            auto pinned = (*repo)->pin_commit(*volume, req.ref, fmt::format("mount {}", dir));
            if (!pinned) return early(pinned.error());
            pin.emplace(std::move(*pinned));
            for (unsigned i = 0; i < std::max(1u, req.threads); ++i) {
                // Records checked by their CRC-32C rather than hashed (docs/DECISIONS.md, "FUSE mount").
                auto r = (*repo)->open_object_reader(ReadCheck::checksum);
                if (!r) return early(r.error());
                readers.push_back(std::move(r.value()));
            }
            info.volume = pin->volume();
            info.commit = pin->commit();
            top = pin->tree();
            // A commit without any xattr lets the kernel stop asking for them (serve.h); when
            // that cannot be known (a damaged tree), they are asked for as always, and the
            // damaged directory answers EIO when it is looked into.
            auto has = (*repo)->tree_has_xattrs(top);
            if (!has) log.error(fmt::format("mounting {} with xattrs asked of every file: {}", dir, has.error().message));
            no_xattrs = has && !*has;
        }
    }
    std::unique_ptr<PooledSource> pooled;
    if (!lazy) pooled = std::make_unique<PooledSource>(std::move(readers));
    ObjectSource& source = lazy ? lazy->source->source() : *pooled;
    Options options;
    options.limits.chunk_cache = req.cache_mib << 20;
    options.count_links = req.count_links;
    options.readahead_chunks = lazy ? req.lazy_readahead_chunks : req.readahead_chunks;
    // 4 FUSE threads and 1 MiB requests: a sequential stream's reads arrive up to a few MiB out of place.
    options.sequential_window = 4u << 20;
    options.readahead_self = !lazy;  // a local store's chunks are decoded ahead by the mount itself
    if (log.verbose()) options.trace = [&log](const std::string& m) { log.trace(m); };
    auto fs = CommitFs::open(source, top, std::move(options));
    if (!fs) return early(fs.error());

    ServeConfig cfg;
    cfg.dir = dir;
    cfg.fsname = fmt::format("dvol:{}@{}", info.volume, info.commit.hex().substr(0, 12));
    cfg.threads = std::max(1u, req.threads);
    cfg.readahead_kib = req.readahead_kib;
    cfg.no_xattrs = no_xattrs;
    std::unique_ptr<LayerFs> layer;
    if (lazy) {  // a lazy volume's live directory is writable: its changes go to the layer
        cfg.layer_dir = lazy->cache_dir + "/layer";
        auto l = LayerFs::open(**fs, info.commit, cfg.layer_dir);
        if (!l) return early(l.error());
        layer = std::move(*l);
        cfg.layer = layer.get();
    }
    Status served = serve(**fs, cfg, log, [&](const Status& st) { ready(st, info); });
    if (served) {
        auto s = (*fs)->stats();
        log.trace(fmt::format("unmounted; loaded {} trees, {} extent lists, {} chunks", s.tree_loads, s.list_loads, s.chunk_loads));
        if (lazy) {
            auto c = lazy->source->cache().stats();
            log.trace(fmt::format("cache: {} fetches ({} bytes), {} hits, {} failures, {} evictions", c.fetches, c.fetched_bytes, c.hits,
                                  c.failures, c.evictions));
        }
    }
    layer.reset();  // before its base
    fs->reset();  // before the sources it reads
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

Status fusermount_unmount(const std::string& dir, bool lazily);

// Detaches a dvol mount whose process is gone.
Status free_dead_mount(const std::string& dir) {
    if (::geteuid() == 0) {
        if (::umount2(dir.c_str(), MNT_DETACH) != 0) return errno_error("unmount the dead mount on", dir);
        return {};
    }
    return fusermount_unmount(dir, true);
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
    if (req.lazy) {
        DVOL_TRY(auto repo, Repository::open(req.store_dir, false));
        DVOL_TRY(std::string volume, repo->resolve_volume(req.volume));
        DVOL_TRY(auto lazy, repo->lazy_volume(volume));
        if (!lazy)
            return make_error(Errc::invalid_argument,
                              fmt::format("volume {} is not lazy: dvol mount without DIR mounts a lazy volume on its live directory", volume));
        req.volume = volume;
        req.dir = repo->live_dir(volume);
        DVOL_TRY(auto m, find_mount(req.dir));
        if (m && m->fstype == kDvolFsType) {
            struct statfs sfs;
            if (::statfs(req.dir.c_str(), &sfs) == 0) {
                mounted(MountedInfo{volume, lazy->commit, req.dir, true});
                return {};
            }
            // Its process is gone (killed, or the machine's FUSE daemon restarted): free the
            // directory, then mount it again. Lazily, so that a process still in it does not stop us.
            DVOL_CHECK(free_dead_mount(req.dir));
        }
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

// fusermount3 -u DIR (-z: lazily), for a user who may not call umount2.
Status fusermount_unmount(const std::string& dir, bool lazily) {
    std::vector<char*> argv{const_cast<char*>("fusermount3"), const_cast<char*>("-u")};
    if (lazily) argv.push_back(const_cast<char*>("-z"));
    for (const char* a : {"--", dir.c_str()}) argv.push_back(const_cast<char*>(a));
    argv.push_back(nullptr);
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
        DVOL_CHECK(fusermount_unmount(dir, false));
    }

    // A lazy volume's mount process holds its cache's lock (<volume dir>/cache/mount.lock, the
    // live directory being <volume dir>/data).
    std::string lazy_lock = dir.substr(0, dir.rfind('/')) + "/cache/mount.lock";
    if (!serving && path_exists(lazy_lock)) serving = PinInfo{"", {}, {}, 0, "", lazy_lock};
    // The daemon ends when its mount goes; its pin's lock goes with it.
    if (serving) {
        auto fd = open_file(serving->file, O_RDONLY);
        if (fd) {
            using namespace std::chrono;
            auto start = steady_clock::now();
            bool told = false;
            while (::flock(fd->get(), LOCK_SH | LOCK_NB) != 0) {
                if (!told && steady_clock::now() - start > seconds(5)) {
                    if (notice)
                        notice(serving->pid ? fmt::format("waiting for the mount process {} to exit", serving->pid)
                                            : std::string("waiting for the mount process to exit"));
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

namespace dvol::mountfs {

Result<bool> is_dvol_mount(const std::string& dir_arg) {
    DVOL_TRY(std::string dir, absolute_dir(dir_arg));
    DVOL_TRY(auto m, find_mount(dir));
    return m && m->fstype == kDvolFsType;
}

Status ensure_lazy_mounted(const std::string& store_dir, const std::string& volume, const std::function<void(const MountedInfo&)>& mounted,
                           const WarnFn& notice) {
    MountRequest req;
    req.store_dir = store_dir;
    req.volume = volume;
    req.lazy = true;
    return mount_commit(req, mounted, notice);
}

}  // namespace dvol::mountfs
