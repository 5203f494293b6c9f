// The kernel's side: libfuse's low-level API over a CommitFs. The only includer of
// fuse_lowlevel.h. Every callback answers exactly once and lets no exception out (they are C
// callbacks): a library error becomes an errno, EIO being logged with its reason (a damaged
// object names itself), an exception becomes ENOMEM or EIO.
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "base/fs.h"
#include "serve.h"

namespace dvol::mountfs {

bool fuse_built() { return true; }

namespace {

// A commit never changes: the kernel may keep names, attributes and pages for as long as it likes.
constexpr double kTimeout = 86400.0;
constexpr unsigned long kFuseSuperMagic = 0x65735546;

struct Server {
    CommitFs& fs;
    const Logger& log;
};

Server& server(fuse_req_t req) { return *static_cast<Server*>(fuse_req_userdata(req)); }

int errno_for(Errc code) {
    switch (code) {
        case Errc::not_found: return ENOENT;
        case Errc::invalid_argument: return EINVAL;
        case Errc::unsupported: return EOPNOTSUPP;
        case Errc::denied: return EACCES;
        case Errc::busy: return EBUSY;
        default: return EIO;
    }
}

void reply_error(fuse_req_t req, const Error& e, std::string_view op, fuse_ino_t ino) {
    int err = errno_for(e.code);
    if (err == EIO) server(req).log.error(fmt::format("{} of inode {}: {}", op, ino, e.message));
    fuse_reply_err(req, err);
}

// Runs a callback's body; an exception (allocation failure, or a bug) answers the request
// instead of unwinding into libfuse. The bodies reply last, so nothing is answered twice.
template <typename Body>
void guarded(fuse_req_t req, std::string_view op, Body&& body) {
    try {
        body();
    } catch (const std::bad_alloc&) {
        fuse_reply_err(req, ENOMEM);
    } catch (const std::exception& e) {
        server(req).log.error(fmt::format("{}: {}", op, e.what()));
        fuse_reply_err(req, EIO);
    } catch (...) {
        fuse_reply_err(req, EIO);
    }
}

void fill_stat(const Attr& a, struct stat& st) {
    std::memset(&st, 0, sizeof st);
    st.st_ino = a.ino;
    st.st_mode = a.mode;
    st.st_nlink = a.nlink;
    st.st_uid = a.uid;
    st.st_gid = a.gid;
    st.st_size = static_cast<off_t>(a.size);
    st.st_blocks = static_cast<blkcnt_t>(a.blocks);
    st.st_blksize = 1 << 20;
    st.st_rdev = static_cast<dev_t>(a.rdev);
    // A commit records the mtime only: atime and ctime show it too.
    timespec t;
    t.tv_sec = static_cast<time_t>(a.mtime_ns >= 0 ? a.mtime_ns / 1'000'000'000 : -((-a.mtime_ns + 999'999'999) / 1'000'000'000));
    t.tv_nsec = static_cast<long>(a.mtime_ns - static_cast<int64_t>(t.tv_sec) * 1'000'000'000);
    st.st_mtim = t;
    st.st_atim = t;
    st.st_ctim = t;
}

fuse_entry_param entry_param(const Attr& a) {
    fuse_entry_param e;
    std::memset(&e, 0, sizeof e);
    e.ino = a.ino;
    e.entry_timeout = kTimeout;
    e.attr_timeout = kTimeout;
    fill_stat(a, e.attr);
    return e;
}

void op_init(void*, fuse_conn_info* conn) {
    // ACLs shown and enforced by the kernel (with default_permissions); symlinks cached; no
    // export (inode numbers are not handles that survive a remount).
    for (unsigned cap : {FUSE_CAP_POSIX_ACL, FUSE_CAP_CACHE_SYMLINKS, FUSE_CAP_ASYNC_READ, FUSE_CAP_PARALLEL_DIROPS, FUSE_CAP_READDIRPLUS,
                         FUSE_CAP_READDIRPLUS_AUTO})
        if (conn->capable & cap) conn->want |= cap;
    conn->want &= ~static_cast<unsigned>(FUSE_CAP_EXPORT_SUPPORT);
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, "lookup", [&] {
        auto r = server(req).fs.lookup(parent, name);
        if (!r) return reply_error(req, r.error(), "lookup", parent);
        if (!*r) {
            // No such name: the kernel may remember that as long as anything else.
            fuse_entry_param e;
            std::memset(&e, 0, sizeof e);
            e.entry_timeout = kTimeout;
            fuse_reply_entry(req, &e);
            return;
        }
        auto e = entry_param(**r);
        fuse_reply_entry(req, &e);
    });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
    server(req).fs.forget(ino, n);
    fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
    for (size_t i = 0; i < count; ++i) server(req).fs.forget(forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    guarded(req, "getattr", [&] {
        auto a = server(req).fs.getattr(ino);
        if (!a) return reply_error(req, a.error(), "getattr", ino);
        struct stat st;
        fill_stat(*a, st);
        fuse_reply_attr(req, &st, kTimeout);
    });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
    guarded(req, "readlink", [&] {
        auto t = server(req).fs.readlink(ino);
        if (!t) return reply_error(req, t.error(), "readlink", ino);
        fuse_reply_readlink(req, t->c_str());
    });
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "open", [&] {
        if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) return (void)fuse_reply_err(req, EROFS);
        auto f = server(req).fs.open_file(ino);
        if (!f) return reply_error(req, f.error(), "open", ino);
        fi->fh = reinterpret_cast<uint64_t>(f->release());
        fi->keep_cache = 1;  // the content never changes: pages read once stay valid
        fi->noflush = 1;
        if (fuse_reply_open(req, fi) != 0) delete reinterpret_cast<CommitFs::File*>(fi->fh);  // the opener was interrupted
    });
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    delete reinterpret_cast<CommitFs::File*>(fi->fh);
    fuse_reply_err(req, 0);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, "read", [&] {
        const auto& f = *reinterpret_cast<const CommitFs::File*>(fi->fh);
        thread_local ReadResult r;
        auto st = server(req).fs.read(f, static_cast<uint64_t>(off), size, r);
        if (!st) {
            r.clear();
            return reply_error(req, st.error(), fmt::format("read at {}", off), ino);
        }
        constexpr size_t kMaxIov = 256;
        if (r.pieces.size() <= kMaxIov) {
            iovec iov[kMaxIov];
            for (size_t i = 0; i < r.pieces.size(); ++i)
                iov[i] = iovec{const_cast<std::byte*>(r.pieces[i].data()), r.pieces[i].size()};
            fuse_reply_iov(req, iov, static_cast<int>(r.pieces.size()));
        } else {
            // Many small extents: one buffer.
            std::vector<std::byte> buf;
            buf.reserve(r.bytes);
            for (const auto& p : r.pieces) buf.insert(buf.end(), p.begin(), p.end());
            fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), buf.size());
        }
        r.clear();  // let go of the chunks now
    });
}

void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
    guarded(req, "lseek", [&] {
        if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
        if (off < 0) return (void)fuse_reply_err(req, ENXIO);
        const auto& f = *reinterpret_cast<const CommitFs::File*>(fi->fh);
        auto r = server(req).fs.seek(f, static_cast<uint64_t>(off), whence == SEEK_DATA);
        if (!r) return reply_error(req, r.error(), "lseek", ino);
        if (!*r) return (void)fuse_reply_err(req, ENXIO);
        fuse_reply_lseek(req, static_cast<off_t>(**r));
    });
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "opendir", [&] {
        auto d = server(req).fs.opendir(ino);
        if (!d) return reply_error(req, d.error(), "opendir", ino);
        fi->fh = reinterpret_cast<uint64_t>(d->release());
        fi->keep_cache = 1;
        fi->cache_readdir = 1;
        if (fuse_reply_open(req, fi) != 0) delete reinterpret_cast<CommitFs::Dir*>(fi->fh);
    });
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    delete reinterpret_cast<CommitFs::Dir*>(fi->fh);
    fuse_reply_err(req, 0);
}

// Directory offsets: 0 and 1 are "." and "..", entry i is at i + 2; each entry carries the
// offset of the next one.
void readdir_common(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
    auto& fs = server(req).fs;
    const auto& dir = *reinterpret_cast<const CommitFs::Dir*>(fi->fh);
    std::vector<char> buf(size);
    size_t used = 0;
    for (auto o = static_cast<uint64_t>(std::max<off_t>(off, 0));; ++o) {
        std::string_view name;
        struct stat st;
        std::memset(&st, 0, sizeof st);
        size_t index = 0;
        if (o == 0 || o == 1) {
            name = o == 0 ? "." : "..";
            st.st_ino = o == 0 ? dir.ino() : dir.parent_ino();
            st.st_mode = S_IFDIR;
        } else {
            index = static_cast<size_t>(o - 2);
            if (index >= dir.size()) break;
            const TreeEntry& e = dir.entry(index);
            name = e.name;
            st.st_ino = fs.entry_ino(dir, index);
            st.st_mode = CommitFs::entry_type_bits(e);
        }
        std::string name_z(name);
        auto next = static_cast<off_t>(o + 1);
        if (!plus) {
            size_t need = fuse_add_direntry(req, nullptr, 0, name_z.c_str(), nullptr, 0);
            if (used + need > size) break;
            fuse_add_direntry(req, buf.data() + used, size - used, name_z.c_str(), &st, next);
            used += need;
            continue;
        }
        size_t need = fuse_add_direntry_plus(req, nullptr, 0, name_z.c_str(), nullptr, 0);
        if (used + need > size) break;
        fuse_entry_param e;
        std::memset(&e, 0, sizeof e);
        e.attr = st;  // "." and "..", and entries that fail: no inode given, the kernel looks up later
        if (o >= 2) {
            auto a = fs.lookup_entry(dir, index);
            if (a) {
                e = entry_param(*a);
            } else {
                server(req).log.error(fmt::format("readdir of inode {}, entry {}: {}", dir.ino(), name, a.error().message));
            }
        }
        fuse_add_direntry_plus(req, buf.data() + used, size - used, name_z.c_str(), &e, next);
        used += need;
    }
    fuse_reply_buf(req, buf.data(), used);
}

void op_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, "readdir", [&] { readdir_common(req, size, off, fi, false); });
}

void op_readdirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, "readdirplus", [&] { readdir_common(req, size, off, fi, true); });
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
    struct statvfs s;
    std::memset(&s, 0, sizeof s);
    s.f_bsize = 4096;
    s.f_frsize = 4096;
    s.f_namemax = 255;
    fuse_reply_statfs(req, &s);
}

// getxattr and listxattr: size 0 asks for the length; a buffer too small is ERANGE.
void reply_xattr_value(fuse_req_t req, const std::string& value, size_t size) {
    if (size == 0) {
        fuse_reply_xattr(req, value.size());
    } else if (value.size() > size) {
        fuse_reply_err(req, ERANGE);
    } else {
        fuse_reply_buf(req, value.data(), value.size());
    }
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    guarded(req, "getxattr", [&] {
        auto v = server(req).fs.getxattr(ino, name);
        if (!v) return reply_error(req, v.error(), "getxattr", ino);
        if (!*v) return (void)fuse_reply_err(req, ENODATA);
        reply_xattr_value(req, **v, size);
    });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
    guarded(req, "listxattr", [&] {
        auto names = server(req).fs.listxattr(ino);
        if (!names) return reply_error(req, names.error(), "listxattr", ino);
        std::string all;
        for (const auto& n : *names) {
            all += n;
            all += '\0';
        }
        reply_xattr_value(req, all, size);
    });
}

const fuse_lowlevel_ops kOps = [] {
    fuse_lowlevel_ops o;
    std::memset(&o, 0, sizeof o);
    o.init = op_init;
    o.lookup = op_lookup;
    o.forget = op_forget;
    o.forget_multi = op_forget_multi;
    o.getattr = op_getattr;
    o.readlink = op_readlink;
    o.open = op_open;
    o.read = op_read;
    o.release = op_release;
    o.opendir = op_opendir;
    o.readdir = op_readdir;
    o.readdirplus = op_readdirplus;
    o.releasedir = op_releasedir;
    o.statfs = op_statfs;
    o.getxattr = op_getxattr;
    o.listxattr = op_listxattr;
    o.lseek = op_lseek;
    return o;
}();

// libfuse's own messages: to our log, and kept for an error report before the mount is up.
std::mutex g_fuse_log_mu;
const Logger* g_fuse_logger = nullptr;
std::string g_fuse_last;

void fuse_log_sink(enum fuse_log_level level, const char* fmt, va_list ap) {
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    std::string msg = buf;
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    std::lock_guard lk(g_fuse_log_mu);
    g_fuse_last = msg;
    if (g_fuse_logger && level <= FUSE_LOG_ERR) g_fuse_logger->error(msg);
}

std::string last_fuse_message() {
    std::lock_guard lk(g_fuse_log_mu);
    return g_fuse_last;
}

// RAII for libfuse's handles.
struct ArgsDeleter {
    void operator()(fuse_args* a) const {
        fuse_opt_free_args(a);
        delete a;
    }
};
struct SessionDeleter {
    void operator()(fuse_session* s) const { fuse_session_destroy(s); }
};
struct LoopConfigDeleter {
    void operator()(fuse_loop_config* c) const { fuse_loop_cfg_destroy(c); }
};
class SignalHandlers {
public:
    explicit SignalHandlers(fuse_session* se) : se_(fuse_set_signal_handlers(se) == 0 ? se : nullptr) {}
    ~SignalHandlers() {
        if (se_) fuse_remove_signal_handlers(se_);
    }
    bool ok() const { return se_ != nullptr; }
    SignalHandlers(const SignalHandlers&) = delete;
    SignalHandlers& operator=(const SignalHandlers&) = delete;

private:
    fuse_session* se_;
};
class Mounted {
public:
    explicit Mounted(fuse_session* se) : se_(se) {}
    ~Mounted() { fuse_session_unmount(se_); }
    Mounted(const Mounted&) = delete;
    Mounted& operator=(const Mounted&) = delete;

private:
    fuse_session* se_;
};

// Waits until the mount answers, then raises the readahead of its backing device (the kernel's
// default for FUSE is 128 KiB, whatever the file system asks for at INIT).
Status wait_mounted(const ServeConfig& cfg, const Logger& log) {
    struct statfs sfs;
    if (::statfs(cfg.dir.c_str(), &sfs) != 0) return errno_error("check the mount on", cfg.dir);
    if (static_cast<unsigned long>(sfs.f_type) != kFuseSuperMagic)
        return make_error(Errc::io, fmt::format("{} is not the mount: the mount went away", cfg.dir));
    struct stat st;
    if (::stat(cfg.dir.c_str(), &st) != 0) return errno_error("stat", cfg.dir);
    if (cfg.readahead_kib > 0) {
        std::string knob = fmt::format("/sys/class/bdi/{}:{}/read_ahead_kb", major(st.st_dev), minor(st.st_dev));
        auto fd = open_file(knob, O_WRONLY);
        std::string value = std::to_string(cfg.readahead_kib);
        if (!fd || !write_all(fd->get(), as_bytes(value), knob))
            log.trace(fmt::format("the readahead stays the kernel's: cannot write {}", knob));
    }
    return {};
}

}  // namespace

Status serve(CommitFs& fs, const ServeConfig& cfg, const Logger& log, const std::function<void(const Status&)>& ready) {
    bool answered = false;
    auto answer = [&](const Status& st) {
        if (!answered) ready(st);
        answered = true;
    };
    {
        std::lock_guard lk(g_fuse_log_mu);
        g_fuse_logger = &log;
        g_fuse_last.clear();
    }
    fuse_set_log_func(fuse_log_sink);
    auto fail = [&](std::string what) {
        std::string why = last_fuse_message();
        Error e = make_error(Errc::io, why.empty() ? what : fmt::format("{}: {}", what, why));
        answer(e);
        return e;
    };

    std::string opts = fmt::format("ro,default_permissions,fsname={},subtype=dvol", cfg.fsname);
    // As root, other users (and containers) may use the mount; the kernel checks their
    // permissions against the recorded modes, owners and ACLs (default_permissions).
    if (::geteuid() == 0) opts += ",allow_other";
    std::unique_ptr<fuse_args, ArgsDeleter> args(new fuse_args{0, nullptr, 0});
    for (const char* a : {"dvol", "-o", opts.c_str()})
        if (fuse_opt_add_arg(args.get(), a) != 0) return fail("cannot build the mount's arguments");
    Server server{fs, log};
    std::unique_ptr<fuse_session, SessionDeleter> se(fuse_session_new(args.get(), &kOps, sizeof kOps, &server));
    if (!se) return fail("cannot start a FUSE session");
    SignalHandlers signals(se.get());
    if (!signals.ok()) return fail("cannot set the signal handlers");
    if (fuse_session_mount(se.get(), cfg.dir.c_str()) != 0) return fail(fmt::format("cannot mount on {}", cfg.dir));
    Status ended;
    {
        Mounted mounted(se.get());
        // The loop serves the stat that tells the mount works; a helper thread makes it.
        std::thread checker([&] {
            Status st = wait_mounted(cfg, log);
            answer(st);
            if (!st) fuse_session_exit(se.get());
        });
        std::unique_ptr<fuse_loop_config, LoopConfigDeleter> loop(fuse_loop_cfg_create());
        fuse_loop_cfg_set_max_threads(loop.get(), std::max(1u, cfg.threads));
        fuse_loop_cfg_set_idle_threads(loop.get(), std::max(1u, cfg.threads));
        // 0 when unmounted, the signal's number when one ended it, -errno on a failure.
        int rc = fuse_session_loop_mt(se.get(), loop.get());
        if (rc < 0) ended = make_error(Errc::io, fmt::format("the FUSE session failed: {}", std::strerror(-rc)));
        // Unmounting (when a signal ended it) lets a checker still waiting on the mount go.
        fuse_session_unmount(se.get());
        checker.join();
    }
    {
        std::lock_guard lk(g_fuse_log_mu);
        g_fuse_logger = nullptr;
    }
    return ended;
}

}  // namespace dvol::mountfs
