// A remote kept in a directory: a local disk, or a share mounted over NFS (v3 or later) by
// every host that uses it. Key `a/b` is the file <root>/a/b; the file holds exactly the key's
// bytes, refs included, so the remote can be read with ls and cat.
//
// Besides the keys, the directory holds entries whose names cannot be keys (they contain '~'),
// which listings never show:
// - <root>/tmp~/: files being written, under names unique to their writer. A writer that
//   crashed leaves its file there; nothing ever reads it. The first write of each DirBackend
//   deletes the files there not modified for DirOptions::stale_temp_age, by the remote's clock.
// - <dir>/<name>~lock: the lock of ref <dir>/<name> while an update_ref() holds it, made by
//   link(2) of a complete file naming its holder (host, machine, pid, time, token; the text
//   is in docs/FORMAT.md, "Remotes"). A lock whose process is gone (same machine, kill(pid,
//   0) says so) or whose file is older than DirOptions::stale_lock_age (by the remote's own
//   clock: its mtime next to that of a file just written there) is stale and broken by the
//   next writer. Anything else holding such a file (an older dvol, a person) is waited for
//   like a live holder, then stale by age.
// Files named .nfsXXXX (what an NFS client leaves of a file removed while open) are never
// listed either.
//
// Objects are published with link(2), which never replaces an existing file: writing a key
// that exists only checks that it holds as many bytes (the Backend contract allows only the
// same bytes; another size is Errc::conflict), and a reader on another host never sees a file
// pulled from under it. Refs need link(2) (Errc::unsupported on a file system without hard
// links, where objects fall back to rename(2)).
//
// A ref's version is the lowercase hex SHA-256 of its bytes (see docs/DECISIONS.md, "Remotes:
// directory backend"): a ref that changed and came back to the same bytes has its old version
// again, as with an S3 ETag. Compare-and-swap is on the value, which is what callers need of a
// ref holding a whole state (a branch tip).
//
// Errors as in backend.h; EACCES, EPERM and EROFS are Errc::denied, ESTALE and ETIMEDOUT (a
// soft NFS mount whose server does not answer) Errc::unavailable. Waiting longer than
// DirOptions::lock_wait for a ref's lock held by a live process is Errc::busy, naming the lock
// file. A DirBackend is used by one thread at a time; any number of them, in any processes on
// any hosts, may share one directory.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "remote/backend.h"

namespace dvol::remote {

struct DirOptions {
    // How long update_ref() waits for a ref's lock that a live process holds.
    std::chrono::milliseconds lock_wait{10'000};
    // Age from which a ref's lock is stale whoever holds it: far longer than an update takes
    // (milliseconds), to cover clock skew and a slow server.
    std::chrono::seconds stale_lock_age{60};
    // Age from which a file in tmp~ is a dead writer's (by the remote's clock: its mtime
    // against that of a file just made there): far longer than writing one object takes, since
    // a live writer whose file is deleted under it fails its write.
    std::chrono::seconds stale_temp_age{3600};
};

class DirBackend final : public Backend {
public:
    // Opens the remote at `location`: an absolute or relative path, or a file:///abs/path URL
    // (percent escapes decoded). The directory must exist (Errc::not_found "remote <location>
    // does not exist" otherwise, Errc::invalid_argument when it is not a directory or the URL
    // names a host). Nothing is created until something is written.
    static Result<std::unique_ptr<DirBackend>> open(const std::string& location, const DirOptions& options = {});

    const std::string& location() const override { return location_; }
    // The directory itself, as a path.
    const std::string& root() const { return root_; }
    // The lock file of ref `key` (which must be a valid key).
    std::string lock_path(const std::string& key) const { return path_of(key) + "~lock"; }

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
    class TempFile;
    class RefLock;
    struct LockOwner;

    DirBackend(std::string location, std::string root, DirOptions options)
        : location_(std::move(location)), root_(std::move(root)), options_(options) {}

    std::string path_of(const std::string& key) const { return root_ + "/" + key; }
    Status check_key(const std::string& key) const;
    Error fail(std::string_view what, std::string_view key, int err) const;

    Result<TempFile> new_temp();
    // Deletes the files of tmp~ (open as `dir_fd`) older than stale_temp_age before `now_ns`,
    // but `own`; best effort.
    void sweep_temps(int dir_fd, int64_t now_ns, const std::string& own);
    Result<TempFile> temp_holding(std::string_view key, std::span<const std::byte> data);
    Status copy_into(int out, int in, uint64_t size, std::string_view key);
    Result<bool> holds(const std::string& key, uint64_t size);
    Status publish_object(TempFile& temp, const std::string& key, uint64_t size);
    Status make_parents(const std::string& key);
    Status sync_parents(const std::string& key);
    Result<UniqueFd> open_regular(const std::string& key, uint64_t& size);

    Result<RefLock> lock_ref(const std::string& key);
    Result<std::optional<LockOwner>> read_lock(const std::string& path, std::string_view key);
    Status break_lock(const std::string& lock, const LockOwner& stale, std::string_view key);

    std::string location_;
    std::string root_;
    DirOptions options_;
    bool swept_temps_ = false;
};

}  // namespace dvol::remote
