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
    CommitFs& fs;  // read-only mounts: the commit; writable ones: the layer's base
    const Logger& log;
    LayerFs* layer = nullptr;  // writable mounts
    std::string layer_dir;     // where the layer keeps its data (statfs)
    bool no_xattrs = false;    // read-only mounts: the commit has none (ServeConfig)
};

Server& server(fuse_req_t req) { return *static_cast<Server*>(fuse_req_userdata(req)); }

int errno_for(const Error& e) {
    if (e.sys != 0) return e.sys;
    switch (e.code) {
        case Errc::not_found: return ENOENT;
        case Errc::invalid_argument: return EINVAL;
        case Errc::unsupported: return EOPNOTSUPP;
        case Errc::denied: return EACCES;
        case Errc::busy: return EBUSY;
        case Errc::no_space: return ENOSPC;
        default: return EIO;
    }
}

void reply_error(fuse_req_t req, const Error& e, std::string_view op, fuse_ino_t ino) {
    int err = errno_for(e);
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
    if (a.ctime_ns != 0) {
        st.st_ctim.tv_sec = static_cast<time_t>(a.ctime_ns / 1'000'000'000);
        st.st_ctim.tv_nsec = static_cast<long>(a.ctime_ns % 1'000'000'000);
    }
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

// A readdir reply being filled, for either table of operations: entries go in until the
// kernel's buffer is full. Directory offsets: 0 and 1 are "." and "..", entry i is at i + 2;
// each entry carries the offset of the next one.
class DirReply {
public:
    DirReply(fuse_req_t req, size_t size, bool plus) : req_(req), buf_(size), plus_(plus) {}
    // Adds `name` with the type and inode number in `st`; false when it does not fit (the reply
    // ends before it). READDIRPLUS: `fill` may complete the entry's attributes and lookup (left
    // as `st` alone, the kernel looks it up later).
    template <class Fill>
    bool add(const std::string& name, const struct stat& st, off_t next, Fill&& fill) {
        size_t need = plus_ ? fuse_add_direntry_plus(req_, nullptr, 0, name.c_str(), nullptr, 0)
                            : fuse_add_direntry(req_, nullptr, 0, name.c_str(), nullptr, 0);
        if (used_ + need > buf_.size()) return false;
        if (plus_) {
            fuse_entry_param e;
            std::memset(&e, 0, sizeof e);
            e.attr = st;
            fill(e);
            fuse_add_direntry_plus(req_, buf_.data() + used_, buf_.size() - used_, name.c_str(), &e, next);
        } else {
            fuse_add_direntry(req_, buf_.data() + used_, buf_.size() - used_, name.c_str(), &st, next);
        }
        used_ += need;
        return true;
    }
    void send() { fuse_reply_buf(req_, buf_.data(), used_); }

private:
    fuse_req_t req_;
    std::vector<char> buf_;
    bool plus_;
    size_t used_ = 0;
};

void readdir_common(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
    auto& fs = server(req).fs;
    const auto& dir = *reinterpret_cast<const CommitFs::Dir*>(fi->fh);
    DirReply reply(req, size, plus);
    for (auto o = static_cast<uint64_t>(std::max<off_t>(off, 0));; ++o) {
        std::string name;
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
        // "." and "..", and entries that fail: no inode given, the kernel looks up later.
        bool added = reply.add(name, st, static_cast<off_t>(o + 1), [&](fuse_entry_param& e) {
            if (o < 2) return;
            auto a = fs.lookup_entry(dir, index);
            if (a) {
                e = entry_param(*a);
            } else {
                server(req).log.error(fmt::format("readdir of inode {}, entry {}: {}", dir.ino(), name, a.error().message));
            }
        });
        if (!added) break;
    }
    reply.send();
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
        // ls -l asks two xattrs of every file (security.selinux, system.posix_acl_access), and
        // the kernel caches no answer: two requests per file, 2/3 of an ls -lR's. ENOSYS
        // makes the kernel answer them all itself from now on (EOPNOTSUPP).
        if (server(req).no_xattrs) return (void)fuse_reply_err(req, ENOSYS);
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

// --- writable mounts: a lazy volume's live directory over its write layer (layer_fs.h) -------------
//
// The kernel's caches stay coherent because every change passes through this mount; the
// timeouts are short all the same, so that nothing the kernel keeps outlives a second.
constexpr double kRwTimeout = 1.0;

LayerFs& layer(fuse_req_t req) { return *server(req).layer; }

fuse_entry_param rw_entry(const Attr& a) {
    fuse_entry_param e = entry_param(a);
    e.entry_timeout = kRwTimeout;
    e.attr_timeout = kRwTimeout;
    return e;
}

void reply_rw_entry(fuse_req_t req, const Attr& a) {
    auto e = rw_entry(a);
    if (fuse_reply_entry(req, &e) != 0) layer(req).forget(a.ino, 1);  // the caller was interrupted
}

void rw_init(void*, fuse_conn_info* conn) {
    // Writes through to the layer (no writeback cache: an fsync must find every write there);
    // O_TRUNC handled in open.
    for (unsigned cap : {FUSE_CAP_POSIX_ACL, FUSE_CAP_ASYNC_READ, FUSE_CAP_PARALLEL_DIROPS, FUSE_CAP_ATOMIC_O_TRUNC, FUSE_CAP_READDIRPLUS,
                         FUSE_CAP_READDIRPLUS_AUTO})
        if (conn->capable & cap) conn->want |= cap;
    conn->want &= ~static_cast<unsigned>(FUSE_CAP_EXPORT_SUPPORT | FUSE_CAP_WRITEBACK_CACHE);
}

void rw_destroy(void* userdata) {
    // Unmounted: what is still in memory goes to the layer.
    auto* s = static_cast<Server*>(userdata);
    if (auto st = s->layer->flush_all(); !st) s->log.error(fmt::format("flushing the write layer: {}", st.error().message));
}

void rw_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, "lookup", [&] {
        auto r = layer(req).lookup(parent, name);
        if (!r) return reply_error(req, r.error(), "lookup", parent);
        if (!*r) {
            fuse_entry_param e;
            std::memset(&e, 0, sizeof e);
            e.entry_timeout = kRwTimeout;
            fuse_reply_entry(req, &e);
            return;
        }
        reply_rw_entry(req, **r);
    });
}

void rw_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
    layer(req).forget(ino, n);
    fuse_reply_none(req);
}

void rw_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
    for (size_t i = 0; i < count; ++i) layer(req).forget(forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

void rw_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    guarded(req, "getattr", [&] {
        auto a = layer(req).getattr(ino);
        if (!a) return reply_error(req, a.error(), "getattr", ino);
        struct stat st;
        fill_stat(*a, st);
        fuse_reply_attr(req, &st, kRwTimeout);
    });
}

int64_t ns_of(const timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec; }

void rw_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
    guarded(req, "setattr", [&] {
        SetAttr s;
        if (to_set & FUSE_SET_ATTR_MODE) s.mode = attr->st_mode & 07777;
        if (to_set & FUSE_SET_ATTR_UID) s.uid = attr->st_uid;
        if (to_set & FUSE_SET_ATTR_GID) s.gid = attr->st_gid;
        if (to_set & FUSE_SET_ATTR_SIZE) s.size = static_cast<uint64_t>(attr->st_size);
        if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
            timespec now;
            ::clock_gettime(CLOCK_REALTIME, &now);
            s.mtime_ns = ns_of(now);
        } else if (to_set & FUSE_SET_ATTR_MTIME) {
            s.mtime_ns = ns_of(attr->st_mtim);
        }
        auto a = layer(req).setattr(ino, s);  // atime is not kept (a commit records none)
        if (!a) return reply_error(req, a.error(), "setattr", ino);
        struct stat st;
        fill_stat(*a, st);
        fuse_reply_attr(req, &st, kRwTimeout);
    });
}

void rw_readlink(fuse_req_t req, fuse_ino_t ino) {
    guarded(req, "readlink", [&] {
        auto t = layer(req).readlink(ino);
        if (!t) return reply_error(req, t.error(), "readlink", ino);
        fuse_reply_readlink(req, t->c_str());
    });
}

NewEntry new_entry(fuse_req_t req, mode_t mode, dev_t rdev, std::string target) {
    const fuse_ctx* ctx = fuse_req_ctx(req);
    NewEntry e;
    e.mode = static_cast<uint32_t>(mode);  // the kernel applied the umask
    e.uid = ctx->uid;
    e.gid = ctx->gid;
    e.rdev = rdev;
    e.target = std::move(target);
    return e;
}

void rw_make(fuse_req_t req, fuse_ino_t parent, const char* name, const NewEntry& e, std::string_view op) {
    guarded(req, op, [&] {
        auto a = layer(req).mknod(parent, name, e);
        if (!a) return reply_error(req, a.error(), op, parent);
        reply_rw_entry(req, *a);
    });
}

void rw_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
    rw_make(req, parent, name, new_entry(req, mode, rdev, {}), "mknod");
}

void rw_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
    rw_make(req, parent, name, new_entry(req, (mode & 07777) | S_IFDIR, 0, {}), "mkdir");
}

void rw_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
    rw_make(req, parent, name, new_entry(req, S_IFLNK | 0777, 0, target), "symlink");
}

void rw_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
    guarded(req, "link", [&] {
        auto a = layer(req).link(ino, parent, name);
        if (!a) return reply_error(req, a.error(), "link", ino);
        reply_rw_entry(req, *a);
    });
}

void rw_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, "unlink", [&] {
        auto st = layer(req).unlink(parent, name);
        if (!st) return reply_error(req, st.error(), "unlink", parent);
        fuse_reply_err(req, 0);
    });
}

void rw_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, "rmdir", [&] {
        auto st = layer(req).rmdir(parent, name);
        if (!st) return reply_error(req, st.error(), "rmdir", parent);
        fuse_reply_err(req, 0);
    });
}

void rw_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname, unsigned flags) {
    guarded(req, "rename", [&] {
        auto st = layer(req).rename(parent, name, newparent, newname, flags);
        if (!st) return reply_error(req, st.error(), "rename", parent);
        fuse_reply_err(req, 0);
    });
}

void rw_open_reply(fuse_req_t req, std::unique_ptr<LayerFs::Handle> h, fuse_file_info* fi, const Attr* created) {
    fi->fh = reinterpret_cast<uint64_t>(h.release());
    fi->keep_cache = 1;  // every change passes through this kernel: its pages stay right
    int rc;
    if (created) {
        auto e = rw_entry(*created);
        rc = fuse_reply_create(req, &e, fi);
    } else {
        rc = fuse_reply_open(req, fi);
    }
    if (rc != 0) {  // the opener was interrupted
        (void)layer(req).release(std::unique_ptr<LayerFs::Handle>(reinterpret_cast<LayerFs::Handle*>(fi->fh)));
        if (created) layer(req).forget(created->ino, 1);
    }
}

void rw_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "open", [&] {
        bool write = (fi->flags & O_ACCMODE) != O_RDONLY;
        auto h = layer(req).open_file(ino, write, (fi->flags & O_TRUNC) != 0);
        if (!h) return reply_error(req, h.error(), "open", ino);
        rw_open_reply(req, std::move(*h), fi, nullptr);
    });
}

void rw_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
    guarded(req, "create", [&] {
        auto& fs = layer(req);
        auto a = fs.mknod(parent, name, new_entry(req, (mode & 07777) | S_IFREG, 0, {}));
        if (!a && a.error().sys == EEXIST && !(fi->flags & O_EXCL)) {
            // Created by someone else since the kernel looked: open what is there.
            auto l = fs.lookup(parent, name);
            if (!l) return reply_error(req, l.error(), "create", parent);
            if (!*l) return (void)fuse_reply_err(req, EAGAIN);
            a = **l;
        }
        if (!a) return reply_error(req, a.error(), "create", parent);
        auto h = fs.open_file(a->ino, (fi->flags & O_ACCMODE) != O_RDONLY, (fi->flags & O_TRUNC) != 0);
        if (!h) {
            fs.forget(a->ino, 1);
            return reply_error(req, h.error(), "create", parent);
        }
        rw_open_reply(req, std::move(*h), fi, &*a);
    });
}

void rw_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, "read", [&] {
        auto& h = *reinterpret_cast<LayerFs::Handle*>(fi->fh);
        thread_local std::vector<std::byte> buf;
        auto st = layer(req).read(h, static_cast<uint64_t>(off), size, buf);
        if (!st) return reply_error(req, st.error(), fmt::format("read at {}", off), ino);
        fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), buf.size());
    });
}

void rw_write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, "write", [&] {
        auto& h = *reinterpret_cast<LayerFs::Handle*>(fi->fh);
        auto n = layer(req).write(h, static_cast<uint64_t>(off), std::as_bytes(std::span(data, size)));
        if (!n) return reply_error(req, n.error(), fmt::format("write at {}", off), ino);
        fuse_reply_write(req, *n);
    });
}

void rw_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void rw_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    auto st = layer(req).release(std::unique_ptr<LayerFs::Handle>(reinterpret_cast<LayerFs::Handle*>(fi->fh)));
    if (!st) server(req).log.error(fmt::format("release of inode {}: {}", ino, st.error().message));
    fuse_reply_err(req, 0);
}

void rw_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
    guarded(req, "fsync", [&] {
        auto st = layer(req).fsync(ino, datasync != 0);
        if (!st) return reply_error(req, st.error(), "fsync", ino);
        fuse_reply_err(req, 0);
    });
}

void rw_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
    guarded(req, "lseek", [&] {
        if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
        if (off < 0) return (void)fuse_reply_err(req, ENXIO);
        auto& h = *reinterpret_cast<LayerFs::Handle*>(fi->fh);
        auto r = layer(req).seek(h, static_cast<uint64_t>(off), whence == SEEK_DATA);
        if (!r) return reply_error(req, r.error(), "lseek", ino);
        if (!*r) return (void)fuse_reply_err(req, ENXIO);
        fuse_reply_lseek(req, static_cast<off_t>(**r));
    });
}

// An open directory: its listing when it was opened (as ext4 may, entries added or removed
// while a directory is read may or may not show).
struct RwDir {
    uint64_t ino = 0;
    std::vector<DirEntry> entries;
};

void rw_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "opendir", [&] {
        auto entries = layer(req).readdir(ino);
        if (!entries) return reply_error(req, entries.error(), "opendir", ino);
        auto d = std::make_unique<RwDir>();
        d->ino = ino;
        d->entries = std::move(*entries);
        fi->fh = reinterpret_cast<uint64_t>(d.release());
        if (fuse_reply_open(req, fi) != 0) delete reinterpret_cast<RwDir*>(fi->fh);
    });
}

void rw_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    delete reinterpret_cast<RwDir*>(fi->fh);
    fuse_reply_err(req, 0);
}

void rw_readdir_common(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
    auto& fs = layer(req);
    const auto& dir = *reinterpret_cast<const RwDir*>(fi->fh);
    DirReply reply(req, size, plus);
    for (auto o = static_cast<uint64_t>(std::max<off_t>(off, 0));; ++o) {
        std::string name;
        struct stat st;
        std::memset(&st, 0, sizeof st);
        if (o == 0 || o == 1) {
            name = o == 0 ? "." : "..";
            st.st_ino = o == 0 ? dir.ino : kRootIno;
            st.st_mode = S_IFDIR;
        } else {
            size_t index = static_cast<size_t>(o - 2);
            if (index >= dir.entries.size()) break;
            name = dir.entries[index].name;
            st.st_ino = dir.entries[index].ino;
            st.st_mode = dir.entries[index].type;
        }
        bool added = reply.add(name, st, static_cast<off_t>(o + 1), [&](fuse_entry_param& e) {
            if (o < 2) return;
            auto a = fs.lookup(dir.ino, name);
            if (a && *a) e = rw_entry(**a);  // gone since the listing, or failed: the kernel looks up later
        });
        if (!added) break;
    }
    reply.send();
}

void rw_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, "readdir", [&] { rw_readdir_common(req, size, off, fi, false); });
}

void rw_readdirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, "readdirplus", [&] { rw_readdir_common(req, size, off, fi, true); });
}

void rw_fsyncdir(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
    // fsync of any directory makes everything durable: the layer's changes are one database.
    guarded(req, "fsyncdir", [&] {
        auto st = layer(req).flush_all();
        if (!st) return reply_error(req, st.error(), "fsyncdir", ino);
        fuse_reply_err(req, 0);
    });
}

void rw_statfs(fuse_req_t req, fuse_ino_t) {
    // The space the layer can still use: its own file system's.
    struct statvfs s;
    if (::statvfs(server(req).layer_dir.c_str(), &s) != 0) std::memset(&s, 0, sizeof s);
    s.f_namemax = 255;
    fuse_reply_statfs(req, &s);
}

void rw_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    guarded(req, "getxattr", [&] {
        auto v = layer(req).getxattr(ino, name);
        if (!v) return reply_error(req, v.error(), "getxattr", ino);
        if (!*v) return (void)fuse_reply_err(req, ENODATA);
        reply_xattr_value(req, **v, size);
    });
}

void rw_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
    guarded(req, "listxattr", [&] {
        auto names = layer(req).listxattr(ino);
        if (!names) return reply_error(req, names.error(), "listxattr", ino);
        std::string all;
        for (const auto& n : *names) {
            all += n;
            all += '\0';
        }
        reply_xattr_value(req, all, size);
    });
}

void rw_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
    guarded(req, "setxattr", [&] {
        auto st = layer(req).setxattr(ino, name, std::string_view(value, size), flags);
        if (!st) return reply_error(req, st.error(), "setxattr", ino);
        fuse_reply_err(req, 0);
    });
}

void rw_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
    guarded(req, "removexattr", [&] {
        auto st = layer(req).removexattr(ino, name);
        if (!st) return reply_error(req, st.error(), "removexattr", ino);
        fuse_reply_err(req, 0);
    });
}

const fuse_lowlevel_ops kRwOps = [] {
    fuse_lowlevel_ops o;
    std::memset(&o, 0, sizeof o);
    o.init = rw_init;
    o.destroy = rw_destroy;
    o.lookup = rw_lookup;
    o.forget = rw_forget;
    o.forget_multi = rw_forget_multi;
    o.getattr = rw_getattr;
    o.setattr = rw_setattr;
    o.readlink = rw_readlink;
    o.mknod = rw_mknod;
    o.mkdir = rw_mkdir;
    o.symlink = rw_symlink;
    o.link = rw_link;
    o.unlink = rw_unlink;
    o.rmdir = rw_rmdir;
    o.rename = rw_rename;
    o.open = rw_open;
    o.create = rw_create;
    o.read = rw_read;
    o.write = rw_write;
    o.flush = rw_flush;
    o.release = rw_release;
    o.fsync = rw_fsync;
    o.lseek = rw_lseek;
    o.opendir = rw_opendir;
    o.readdir = rw_readdir;
    o.readdirplus = rw_readdirplus;
    o.releasedir = rw_releasedir;
    o.fsyncdir = rw_fsyncdir;
    o.statfs = rw_statfs;
    o.getxattr = rw_getxattr;
    o.listxattr = rw_listxattr;
    o.setxattr = rw_setxattr;
    o.removexattr = rw_removexattr;
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

    std::string opts = fmt::format("{},default_permissions,fsname={},subtype=dvol", cfg.layer ? "rw" : "ro", cfg.fsname);
    // As root, other users (and containers) may use the mount; the kernel checks their
    // permissions against the recorded modes, owners and ACLs (default_permissions).
    if (::geteuid() == 0) opts += ",allow_other";
    std::unique_ptr<fuse_args, ArgsDeleter> args(new fuse_args{0, nullptr, 0});
    for (const char* a : {"dvol", "-o", opts.c_str()})
        if (fuse_opt_add_arg(args.get(), a) != 0) return fail("cannot build the mount's arguments");
    Server server{fs, log, cfg.layer, cfg.layer_dir, cfg.no_xattrs && !cfg.layer};
    const fuse_lowlevel_ops& ops = cfg.layer ? kRwOps : kOps;
    std::unique_ptr<fuse_session, SessionDeleter> se(fuse_session_new(args.get(), &ops, sizeof ops, &server));
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
