// Inside fuse-mount/: serving a CommitFs through the kernel's FUSE (fuse_ops.cpp, the only
// includer of fuse_lowlevel.h; fuse_stub.cpp when dvol is built without FUSE), and the log the
// serving process writes.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "commit_fs.h"
#include "layer_fs.h"

namespace dvol::mountfs {

// Where a serving process's messages go: stderr in the foreground, syslog (ident "dvol-mount",
// facility daemon) once it runs in the background. Lines are written whole.
class Logger {
public:
    void use_syslog();
    void set_verbose(bool v) { verbose_ = v; }
    bool verbose() const { return verbose_; }
    void error(std::string_view msg) const;
    void trace(std::string_view msg) const;  // only with --verbose

private:
    std::atomic<bool> syslog_{false};  // switched while worker threads may log
    bool verbose_ = false;
};

struct ServeConfig {
    std::string dir;     // the mount point, absolute
    std::string fsname;  // what mount(8) shows as the source: dvol:VOLUME@ID
    unsigned threads = 4;
    unsigned readahead_kib = 1024;  // 0: the kernel's default
    // Read-only mounts: the commit has no extended attribute at all (Repository::tree_has_xattrs).
    // getxattr then answers ENOSYS, after which the kernel asks no more for the whole mount and
    // fails every getxattr itself with EOPNOTSUPP; listxattr still answers (an empty list).
    // Never for a writable mount, where setxattr can add some.
    bool no_xattrs = false;
    // Writable: the layer served read-write (the CommitFs given to serve() is its base), keeping
    // its data in `layer_dir`. Null: the commit, read-only.
    LayerFs* layer = nullptr;
    std::string layer_dir;
};

// Whether this dvol was built with FUSE.
bool fuse_built();

// Mounts `fs` read-only (or cfg.layer read-write) on cfg.dir and serves it until it is unmounted, or the process gets
// SIGINT, SIGTERM or SIGHUP (then it unmounts). `ready` is called exactly once: with success
// once the mount answers (a stat of the directory is served by it), or with the error that
// stopped it first. Returns once the session has ended, with the error that ended it, if any.
Status serve(CommitFs& fs, const ServeConfig& cfg, const Logger& log, const std::function<void(const Status&)>& ready);

}  // namespace dvol::mountfs
