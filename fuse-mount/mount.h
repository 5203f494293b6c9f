// dvol mount and dvol umount: any commit of the local store as a read-only file system, and a
// lazy volume's live directory (its commit and its write layer, read-write). This is a front end
// of the library beside cli/ and docker-plugin/; the CLI's mount and umount commands are thin
// wrappers around it. Layers inside fuse-mount/:
//
//   mount.h/.cpp      this: resolving and pinning the commit, the serving process (foreground
//                     or a daemon that reports back through a pipe), unmounting
//   fuse_ops.cpp      the kernel's side (libfuse's low-level API; the only includer of
//                     fuse_lowlevel.h), fuse_stub.cpp when built without FUSE
//   commit_fs.h       inodes, trees and the read path, over any ObjectSource, without FUSE
//   layer_fs.h        a lazy volume's write layer over its CommitFs
//
// Where objects come from: one ObjectSource, here a PooledSource of the store's object readers
// (repo/object_reader.h); a chunk cache in front of a remote (lazy volumes) is another source for
// the same CommitFs.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "base/error.h"
#include "base/object_id.h"
#include "repo/progress.h"

namespace dvol::mountfs {

struct MountRequest {
    std::string store_dir;
    std::optional<std::string> volume;  // none: the active volume
    std::string ref = "HEAD";           // as reset takes it: HEAD, a branch, an id prefix, ~N, ^
    std::string dir;                    // the mount point, an existing directory
    bool foreground = false;            // serve in this process until unmounted
    bool verbose = false;               // log every object loaded
    bool count_links = false;           // exact hard link counts from the start (commit_fs.h)
    unsigned threads = 4;               // FUSE worker threads, and readers of the store
    size_t cache_mib = 64;              // chunks kept decoded
    unsigned readahead_kib = 1024;      // the mount's readahead (root only), 0: the kernel's
    // A lazy volume (docs/ARCHITECTURE.md, "Lazy volumes"): `volume` is mounted on its live
    // directory (`dir` and `ref` are ignored), its active branch's tip read through its chunk cache
    // from its remote. When that directory is already its live mount, nothing is done
    // (MountedInfo::already); when it is a mount whose process is gone, it is freed first.
    bool lazy = false;
    unsigned readahead_chunks = 4;  // chunks loaded ahead of a sequential read of a commit
    // ... of a lazy volume, fetched by its cache: deeper, so that its read ahead asks the remote
    // for several neighbouring records at once (docs/DECISIONS.md, "Lazy volumes").
    unsigned lazy_readahead_chunks = 16;
};

struct MountedInfo {
    std::string volume;
    ObjectId commit;
    std::string dir;  // absolute
    bool already = false;  // lazy: it was mounted already
};

// Whether this dvol was built with FUSE support.
bool fuse_available();

// Mounts the commit `req.ref` of the volume on `req.dir`. The commit is resolved and pinned (gc
// keeps what it reaches while it is mounted) by the process that serves it.
// - foreground: `mounted` is called once the mount answers, then this process serves until the
//   directory is unmounted, or SIGINT, SIGTERM or SIGHUP (it unmounts then); returns after.
// - otherwise: a daemon (its own session, stdio on /dev/null, messages to syslog) serves; this
//   process waits on a pipe until the daemon's mount answers a stat, calls `mounted` and returns,
//   or returns the daemon's error.
// Refuses a directory that is already a dvol mount. `wait_notice` is told when the commit cannot
// be pinned yet because a gc runs.
Status mount_commit(const MountRequest& req, const std::function<void(const MountedInfo&)>& mounted, const WarnFn& wait_notice);

// Mounts the lazy volume `volume` on its live directory unless it is mounted already (see
// MountRequest::lazy): what every command that hands out a lazy volume's live directory calls, so
// that the mount comes back after its process ended or the machine restarted.
Status ensure_lazy_mounted(const std::string& store_dir, const std::string& volume, const std::function<void(const MountedInfo&)>& mounted,
                           const WarnFn& notice);

// Whether a dvol mount (live or whose process is gone) is on `dir`.
Result<bool> is_dvol_mount(const std::string& dir);

// Unmounts the dvol mount on `dir` (as root with umount2, otherwise with fusermount3 -u) and, when
// the store `store_dir` knows the mount's process, waits for it to exit (`notice` is told if it
// takes long). Refuses a directory that is not a dvol mount. Works also when the mount's process
// is gone (killed): the directory is freed.
Status unmount(const std::string& dir, const std::string& store_dir, const WarnFn& notice);

}  // namespace dvol::mountfs
