// The facade every front end drives: a dvol store, the directory holding volumes, their
// branches and commits, and each volume's live directory (its layout: store/paths.h). It
// orchestrates and nothing more: the refs (meta/refs.h) hold volumes, branches and commit rows,
// the object store (store/) holds the objects, the scanner and the restorer (repo/scan.h,
// repo/restore.h) read and write live directories. Methods return errors as values; none
// prints.
//
// Concurrency: operations that change a volume's data (commit, reset, checkout, rm) hold that
// volume's lock for their duration, and every command that reads or writes objects holds the
// store lock shared (gc: exclusively; repo/locks.h); metadata changes are short SQLite
// transactions. Each command checks what it refuses, and resolves what it names, once, under
// its locks. A Repository object is not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "base/object_id.h"
#include "meta/refs.h"
#include "object/commit.h"
#include "repo/change.h"
#include "repo/object_reader.h"
#include "repo/progress.h"
#include "repo/readers.h"

namespace dvol {

namespace meta {
class Db;
class RemoteIndex;
struct BranchRow;
}
namespace remote {
class Backend;
}
class ObjectSource;
class ChunkCache;
class ObjectStore;
class StorePaths;

struct VolumeInfo {
    std::string name;
    std::string branch;  // the active branch
    bool active = false;
};

struct BranchInfo {
    std::string name;
    std::optional<ObjectId> tip;  // none before the branch's first commit
    bool active = false;
};

struct LogEntry {
    ObjectId id;
    Commit commit;
};

struct Identity {
    std::string name;
    std::string email;
};

struct CommitOutcome {
    ObjectId id;
    uint64_t files = 0;
    uint64_t files_read = 0;
    uint64_t bytes_read = 0;
    uint64_t bytes_stored = 0;  // new pack bytes
};

struct ResetOutcome {
    ObjectId id;
    uint64_t files_written = 0;
    uint64_t bytes_written = 0;
    uint64_t removed = 0;
    std::vector<std::string> warnings;  // attributes the kernel refused to set, one line each
};

// One problem fsck found, and what it affects.
struct FsckAffected {
    std::string volume;
    std::string commit;  // hex id
    std::string path;    // inside the volume, "" for the volume root or the commit itself
};
struct FsckProblem {
    std::string kind;    // "corrupt-object", "missing-object", "bad-extent", "bad-hardlink", "bad-commit", "bad-branch",
                         // "bad-database", "bad-stat-cache"
    std::string object;  // hex id of the object, commit or branch tip concerned
    std::string message;
    std::vector<FsckAffected> affects;
};
struct FsckReport {
    uint64_t objects = 0;  // objects re-read and re-hashed
    uint64_t commits = 0;
    bool repaired = false;  // the stat cache was emptied (fsck --repair)
    std::vector<FsckProblem> problems;
};

struct GcReport {
    uint64_t commits_removed = 0;
    uint64_t objects_removed = 0;
    uint64_t packs_deleted = 0;
    uint64_t packs_rewritten = 0;
    uint64_t cache_rows_dropped = 0;
    uint64_t pinned = 0;  // commits kept for running mounts (pins)
    uint64_t bytes_before = 0;
    uint64_t bytes_after = 0;
};

struct FileDiff {
    Change change;
    std::string patch;  // unified diff, or a one-line summary for binary or large files
};

// A remote as configured: `dvol remote add NAME URL`.
struct RemoteConfig {
    std::string name;
    std::string url;
    std::string endpoint;  // s3: the service's URL, when not AWS
};

// How a command reaches a remote: a configured name or a URL, and an endpoint that overrides
// the configured one (s3, --endpoint).
struct RemoteSpec {
    std::string remote;
    std::string endpoint;
};

// One branch of a volume on a remote.
struct RemoteBranch {
    std::string volume;
    std::string branch;
    ObjectId tip;
    bool head = false;  // the branch a clone checks out
};

// What moved over the wire.
struct TransferStats {
    uint64_t objects = 0;
    uint64_t bytes = 0;     // pack bytes sent or received
    uint64_t packs = 0;     // packs written (push)
    uint64_t requests = 0;  // requests to the remote for objects and indexes (fetch)
};

struct PushOutcome {
    enum class Kind { up_to_date, created, fast_forward, forced, deleted } kind = Kind::up_to_date;
    std::string remote_volume;
    std::string branch;
    std::optional<ObjectId> old_tip;  // the remote's, before
    std::optional<ObjectId> new_tip;  // none after a delete
    TransferStats sent;
};

struct PushOptions {
    bool force = false;   // also when the remote's tip is not in the local branch's history
    bool remove = false;  // delete the remote branch (push --delete)
};

struct FetchOutcome {
    std::string remote_volume;
    struct Update {
        std::string branch;
        std::optional<ObjectId> old_tip;  // the remote-tracking branch before (none: new)
        std::optional<ObjectId> new_tip;  // none: deleted on the remote, and so here
    };
    std::vector<Update> updates;  // remote-tracking branches made, moved or deleted
    std::optional<std::string> head;  // the remote's HEAD branch
    TransferStats received;
    // The chunks this fetch stored, each verified against its id as it arrived: a restore in
    // the same command, under the same store lock, need not read and hash them again.
    ObjectIdSet verified;
};

struct PullOutcome {
    enum class Kind { up_to_date, fast_forward } kind = Kind::up_to_date;
    std::string branch;
    bool created = false;  // a branch the volume lacked, made at the remote's tip
    std::optional<ObjectId> old_tip;
    ObjectId new_tip;
    FetchOutcome fetched;
    ResetOutcome restore;  // what the fast-forward wrote (the active branch only)
};

struct CloneOptions {
    std::optional<std::string> name;    // of the new volume
    std::optional<std::string> branch;  // to check out
    bool prepare_only = false;
    // A lazy volume (docs/ARCHITECTURE.md, "Lazy volumes"): only commits, trees and extent
    // lists are fetched (into the volume's cache, not the store's packs); the live directory is
    // left empty for the front end to mount. cache_size: the chunk cache's bound, 0 for the
    // default (kDefaultLazyCacheSize).
    bool lazy = false;
    uint64_t cache_size = 0;
};

// The volume options that make a volume lazy (docs/FORMAT.md, "Lazy volumes"): the remote's URL
// (its presence is what "lazy" means), its endpoint, and the cache's bound in bytes.
inline constexpr const char* kLazyUrlOption = "lazy-url";
inline constexpr const char* kLazyEndpointOption = "lazy-endpoint";
inline constexpr const char* kLazyCacheOption = "lazy-cache-size";
inline constexpr uint64_t kDefaultLazyCacheSize = 1ull << 30;
inline constexpr uint64_t kMinLazyCacheSize = 8ull << 20;

// What a lazy volume is fetched from, and what its live directory shows.
struct LazyVolume {
    std::string volume;
    std::string url;        // the remote
    std::string endpoint;   // s3: the service's URL, if not AWS
    std::string cache_dir;  // <store>/volumes/<volume>/cache
    uint64_t cache_size = 0;
    std::string branch;     // the active branch
    ObjectId commit;        // its tip
    ObjectId tree;          // the tip's top tree
};

// Where a lazy volume's mount gets objects: its chunk cache in front of a pool of readers of the
// remote (each with its own backend and SQLite connection). Thread-safe.
class LazySource {
public:
    virtual ~LazySource() = default;
    virtual ObjectSource& source() = 0;  // the store's packs (the volume's own commits), then the cache
    virtual ChunkCache& cache() = 0;
};

struct LazySourceOptions {
    unsigned readers = 4;
    // Told of every fetch failure and every damaged cache file (the mount's log).
    std::function<void(const std::string&)> log;
    // Wraps each backend opened (a test's counter of what the remote served).
    std::function<std::unique_ptr<remote::Backend>(std::unique_ptr<remote::Backend>)> wrap;
    // How long a read waits for a remote that fails transiently before it fails (EIO).
    std::chrono::milliseconds retry_for{5'000};
};

struct CloneOutcome {
    std::string volume;  // the local volume
    std::string branch;  // the active branch checked out
    bool resumed = false;   // an interrupted clone was finished
    bool prepared = false;  // prepare_only: made, not yet fetched
    FetchOutcome fetched;
    ResetOutcome restore;
};

// What a front end does around a change of a volume's live data (the CLI pauses or stops the
// Docker containers using the volume, and starts them again).
struct LiveDataHooks {
    // Called once the command is sure to go ahead (every refusal checked, under its locks), just
    // before the live data is read (commit) or changed (reset, checkout). An error from it ends
    // the command with nothing changed.
    std::function<Status()> quiesce;
    // Called once after a successful quiesce, when the live data has been read or written,
    // whatever the outcome.
    std::function<void()> resume;
};

enum class CheckoutMode {
    switch_branch,     // to an existing branch
    create,            // a new branch at the current tip (checkout -b)
    switch_or_create,  // whichever applies
};

struct CheckoutOutcome {
    enum class Kind { switched, created, already_on } kind = Kind::switched;
    ResetOutcome restore;  // what switching wrote (nothing when created or already on it)
};

// A commit held for a process that serves it for a while (dvol mount): as long as the pin lives,
// gc keeps everything the commit's tree reaches, even once no branch reaches the commit (its row
// may go; its tree stays). A pin is a file under <store>/pins/ (docs/FORMAT.md, "Pins") that its
// process holds flock()ed: it dies with the process, and gc deletes the files of dead pins.
// Move-only; destroying it removes the file.
class CommitPin {
public:
    CommitPin(CommitPin&&) noexcept = default;
    CommitPin& operator=(CommitPin&&) noexcept = default;
    CommitPin(const CommitPin&) = delete;
    CommitPin& operator=(const CommitPin&) = delete;
    ~CommitPin();

    const std::string& volume() const { return volume_; }
    const ObjectId& commit() const { return commit_; }
    const ObjectId& tree() const { return tree_; }  // the commit's top tree

private:
    friend class Repository;
    CommitPin() = default;
    UniqueFd fd_;      // holds the lock
    std::string path_;  // the pin file, removed on destruction
    std::string volume_;
    ObjectId commit_;
    ObjectId tree_;
};

// A live pin as another process sees it (dvol umount finds a mount's process by it).
struct PinInfo {
    std::string volume;
    ObjectId commit;
    ObjectId tree;
    int64_t pid = 0;     // the process holding it
    std::string holder;  // what the pin is for: a mount's directory
    std::string file;    // the pin file
};

// The version of the store's database schema this dvol writes (docs/FORMAT.md, "SQLite").
int store_schema_version();

// The commit author when the store's configuration lacks user.name or user.email: the user's
// git identity, else the login name and host.
Identity default_identity(std::optional<std::string> name = {}, std::optional<std::string> email = {});

// Names of volumes and branches: Docker's rule [A-Za-z0-9][A-Za-z0-9_.-]*, 1..128 characters,
// and never ".." anywhere (docs/ARCHITECTURE.md, "Data model").
bool valid_name(std::string_view name);
std::string invalid_name_message(std::string_view name, std::string_view what);

class Repository {
public:
    // Opens the store in directory `dir`. Without one there, `create` makes it, else it is
    // Errc::not_found ("no dvol store at DIR"). A store this user cannot write is Errc::denied,
    // saying whose it is and what to do.
    static Result<std::unique_ptr<Repository>> open(const std::string& dir, bool create = true);
    ~Repository();

    // The store's directory.
    const std::string& dir() const;
    // Called with a one-line notice when a command has to wait for another dvol process.
    void set_wait_notice(WarnFn fn) { wait_notice_ = std::move(fn); }
    // Where warnings about the store itself go (a damaged stat cache), once per process.
    void set_warn(WarnFn fn) { warn_ = std::move(fn); }
    std::string live_dir(const std::string& volume) const;

    // Volumes.
    // With branch master; becomes the active volume when `make_active` (dvol init does, the
    // Docker plugin does not). `options` (key, value) are set in the transaction that creates
    // the volume's row, so that no crash leaves the volume without them.
    Status create_volume(const std::string& name, bool make_active = true,
                         const std::vector<std::pair<std::string, std::string>>& options = {});
    Result<std::vector<VolumeInfo>> list_volumes();
    Result<std::optional<std::string>> active_volume();
    Status switch_volume(const std::string& name);
    Status remove_volume(const std::string& name);
    // `arg` when given (it must exist), else the active volume.
    Result<std::string> resolve_volume(const std::optional<std::string>& arg);

    // History.
    Result<CommitOutcome> commit(const std::string& volume, const std::string& message, const WarnFn& warn,
                                 const ProgressFn& progress = {}, const LiveDataHooks& hooks = {});
    Result<std::vector<LogEntry>> log(const std::string& volume);
    // HEAD, HEAD^, HEAD~N, a branch name, or a commit id or unique prefix (4+ hex digits),
    // each optionally followed by ^ and ~N suffixes.
    Result<ObjectId> resolve_ref(const std::string& volume, const std::string& ref);
    Result<ResetOutcome> reset_hard(const std::string& volume, const std::string& ref, const ProgressFn& progress = {},
                                    const LiveDataHooks& hooks = {});
    Result<Commit> load_commit(const ObjectId& id);

    // Serving a commit (the FUSE mount).
    // Resolves `ref` of `volume` (as reset_hard does) under the store lock, so that no gc runs
    // in between, and pins the commit for `holder` (a description, e.g. a mount's directory).
    Result<CommitPin> pin_commit(const std::string& volume, const std::string& ref, const std::string& holder);
    // The pins of live processes, in no particular order.
    Result<std::vector<PinInfo>> pins();
    // A new reader of the store's objects with its own SQLite connection, for use on another
    // thread, without the store lock, beside a running gc (repo/object_reader.h).
    Result<std::unique_ptr<ObjectSource>> open_object_reader(ReadCheck check = ReadCheck::hash);
    // Whether some entry of tree `tree` (a commit's top tree: the live directory's own entry
    // included) or of a tree below it has an extended attribute: recorded in the store the first
    // time it is asked (meta/tree_facts.h), found before that by walking the trees, read under
    // the store lock. The trees must be in the store (a pinned commit's are). A tree that cannot
    // be read is an error, and nothing is recorded.
    Result<bool> tree_has_xattrs(const ObjectId& tree);

    // Branches.
    Result<std::vector<BranchInfo>> branches(const std::string& volume);
    Result<std::string> active_branch(const std::string& volume);
    // Refuses when the branch holds commits that no other branch of the volume reaches, unless
    // `force` (those commits stay in the store until gc and can be reached by id).
    Status delete_branch(const std::string& volume, const std::string& branch, bool force = false);
    // Creating makes `branch` at the current tip and switches to it, keeping the live data as
    // it is. Switching materialises the branch's tip, and refuses when there are uncommitted
    // changes unless `force`; switching to the active branch does nothing (already_on).
    Result<CheckoutOutcome> checkout(const std::string& volume, const std::string& branch, CheckoutMode mode, bool force,
                                     const ProgressFn& progress = {}, const LiveDataHooks& hooks = {});

    // Working copy.
    Result<std::vector<Change>> status(const std::string& volume, const WarnFn& warn);
    // Diff between two states, each a ref or (nullopt) the live directory.
    Result<std::vector<FileDiff>> diff(const std::string& volume, const std::optional<std::string>& from,
                                       const std::optional<std::string>& to, const std::string& path, const WarnFn& warn);

    // Maintenance. fsck re-reads and re-hashes every object and checks every commit, tree and
    // branch; gc removes what no branch of any volume and no pin reaches (dropped commits,
    // deleted branches and volumes) and rewrites packs that are mostly garbage. gc holds the store
    // exclusively: it waits for running commands and makes new ones wait.
    // With `repair`, the stat cache (the one part of a store dvol can rebuild) is emptied first.
    Result<FsckReport> fsck(const ProgressFn& progress = {}, bool repair = false);
    Result<GcReport> gc(const ProgressFn& progress = {});
    // Branch tip changes of a volume, newest first; dropped commits are found here until gc.
    Result<std::vector<ReflogEntry>> reflog(const std::string& volume);

    // Volume options (key=value, e.g. exclusive=true) and Docker's mounts of a volume, kept in
    // the store so that a restarted plugin knows them (repo/docker_mounts.cpp).
    Result<std::optional<std::string>> volume_option(const std::string& volume, const std::string& key);
    Status set_volume_option(const std::string& volume, const std::string& key, const std::string& value);
    Result<std::vector<DockerMount>> docker_mounts(const std::string& volume);
    // Counts one more Docker mount by `mount_id`. Refuses (Errc::busy) when the volume has the
    // option exclusive=true and another mount ID holds it.
    Status add_docker_mount(const std::string& volume, const std::string& mount_id);
    // Counts one Docker mount by `mount_id` less; false when that ID held no mount (nothing
    // changes).
    Result<bool> remove_docker_mount(const std::string& volume, const std::string& mount_id);

    // Remotes (repo/transfer.cpp). Names follow the volume name rule; a URL is a path or
    // file:///path, s3://bucket/prefix, or ssh://[user@]host[:port]/path.
    Result<std::vector<RemoteConfig>> remotes();
    Status add_remote(const std::string& name, const std::string& url, const std::string& endpoint = "");
    Status remove_remote(const std::string& name);
    // Every branch of every volume the remote holds (deleted branches left out).
    Result<std::vector<RemoteBranch>> show_remote(const RemoteSpec& remote);
    // Sends `branch` (default: the active one) of `volume` to the remote: the objects the
    // remote lacks (packs and their indexes), then the branch's ref by compare-and-swap.
    // Fast-forward only unless options.force; a rejected push changes nothing on the remote.
    Result<PushOutcome> push(const RemoteSpec& remote, const std::string& volume, const std::optional<std::string>& branch,
                             const PushOptions& options = {}, const ProgressFn& progress = {});
    // Brings the remote's branches of `volume` (and the objects this store lacks) into its
    // remote-tracking branches; the live directory and local branches are not touched.
    Result<FetchOutcome> fetch(const RemoteSpec& remote, const std::string& volume, const ProgressFn& progress = {});
    // fetch, then fast-forwards `branch` (default: the active one) to the remote's; the live
    // directory follows when it is the active branch (refusing uncommitted changes, as
    // checkout does). A branch that has diverged from the remote's is refused; a branch the
    // volume lacks is made at the remote's tip. `fetched` hears what the fetch brought as soon
    // as it is done, so that a pull refused after it can still say so.
    using FetchedFn = std::function<void(const FetchOutcome&)>;
    Result<PullOutcome> pull(const RemoteSpec& remote, const std::string& volume, const std::optional<std::string>& branch,
                             const ProgressFn& progress = {}, const LiveDataHooks& hooks = {}, const FetchedFn& fetched = {});
    // Makes volume `options.name` (default: `remote_volume`) from the remote's `remote_volume`:
    // all its branches, checking out `options.branch` (default: the remote's HEAD branch). The
    // volume exists from the start, marked unfinished (volume option clone-incomplete) until
    // its branch is checked out; running the same clone again finishes an interrupted one.
    // With options.prepare_only, only checks that the remote holds the volume and makes the
    // marked volume (what the Docker plugin's Create does before cloning in the background).
    Result<CloneOutcome> clone(const RemoteSpec& remote, const std::string& remote_volume, const CloneOptions& options = {},
                               const ProgressFn& progress = {});

    // Lazy volumes (repo/lazy.cpp). nullopt when `volume` is not lazy.
    Result<std::optional<LazyVolume>> lazy_volume(const std::string& volume);
    // Opens what a lazy volume's mount reads through; credentials the remote refuses are an
    // error here (one request), not an EIO on every read. Holds no lock of the store.
    Result<std::unique_ptr<LazySource>> open_lazy_source(const LazyVolume& lazy, const LazySourceOptions& options);
    // A lazy volume's remote read directly, one record per request, verified, without the chunk
    // cache (which its mount holds): what `diff` reads the old side of a changed file through.
    Result<std::unique_ptr<ObjectSource>> open_lazy_remote(const LazyVolume& lazy);

    // Wraps every Backend this Repository opens to reach a remote, once open_backend() has
    // made it: what the transfer tests use to count requests and to interrupt a transfer.
    using BackendWrapper = std::function<std::unique_ptr<remote::Backend>(std::unique_ptr<remote::Backend>)>;
    void set_backend_wrapper(BackendWrapper fn) { backend_wrapper_ = std::move(fn); }

    // Configuration (user.name, user.email).
    Result<std::optional<std::string>> config_get(const std::string& key);
    Status config_set(const std::string& key, const std::string& value);
    Result<Identity> identity();

private:
    Repository() = default;
    using Volume = meta::VolumeRow;
    Result<Volume> find_volume(const std::string& name);
    Result<ObjectId> resolve_in(const Volume& v, const std::string& ref);
    // The tip of the volume's active branch.
    Result<std::optional<ObjectId>> head(const Volume& v);
    // fsck's passes: SQLite's integrity check; every object, commit and branch; the stat cache
    // against the trees and files it describes.
    Status check_database(FsckReport& report);
    Status fsck_objects(FsckReport& report, const ProgressFn& progress);
    Status check_stat_cache(FsckReport& report);
    Result<ObjectId> commit_tree(const ObjectId& commit);
    // The live tree of a lazy volume with a write layer: its base with the layer applied
    // (repo/layer_tree.h), its new trees in `overlay`, nothing fetched or stored; nullopt
    // without a layer (the live directory is the tip). The mount is flushed first.
    Result<std::optional<ObjectId>> lazy_live_tree(const Volume& v, const LazyVolume& lv, ObjectSource& kept, TreeOverlay& overlay);
    // commit() of a lazy volume: from its write layer (repo/layer_tree.h).
    Result<CommitOutcome> commit_lazy(const std::string& volume, const std::string& message, const Identity& who,
                                      const LiveDataHooks& hooks);
    // The live pins; with `remove_dead` (gc, under the exclusive store lock), deletes the files of
    // dead ones.
    Result<std::vector<PinInfo>> scan_pins(bool remove_dead);
    Result<std::vector<Change>> live_changes(const Volume& v, const WarnFn& warn);
    // Errc::conflict when the live directory differs from the active branch's tip ("commit
    // them, or `otherwise`").
    Status refuse_uncommitted(const Volume& v, std::string_view otherwise);
    // Errc::not_found (or corrupt) unless `commit`'s top tree is among `lv`'s kept objects.
    Status require_kept_tree(const LazyVolume& lv, const ObjectId& commit);
    // checkout's part for a lazy volume (under checkout's locks).
    Result<CheckoutOutcome> checkout_lazy(const Volume& v, const std::string& branch, const meta::BranchRow& target, bool force,
                                          const LiveDataHooks& hooks);
    Status prepare_write();
    // Verifies every object a restore of `tree` into the volume would read (see Restorer::verify).
    // Returns the chunks it verified, for materialise() to trust.
    // `trusted`: chunks verified already in this command, under the same store lock (a fetch's),
    // which it does not read again.
    Result<ObjectIdSet> verify_restore(const Volume& v, const ObjectId* tree, ObjectIdSet trusted = {});
    // Restores `tree` (null: empty) into the volume's live directory and saves the stat cache.
    // `verified`: the chunks verify_restore() verified under the same store lock.
    Result<ResetOutcome> materialise(const Volume& v, const ObjectId* tree, const ObjectId& commit, ObjectIdSet verified,
                                     const ProgressFn& progress);

    // Transfers (repo/transfer.cpp).
    struct Remote;
    // `for_push`: the remote may not exist yet (a directory over ssh is made by the first write).
    Result<Remote> open_remote(const RemoteSpec& spec, bool for_push = false);
    Result<bool> is_ancestor(const ObjectId& ancestor, const ObjectId& tip);
    // `lazy_cache`: the directory of a lazy volume's cache, where trees and extent lists go
    // (and no chunk is fetched); empty for an ordinary fetch into the store. `lazy_mounted`: the
    // volume exists and its mount may run (a fetch or pull, not a clone).
    Result<FetchOutcome> fetch_into(Remote& r, const Volume& v, const std::string& remote_volume, const ProgressFn& progress,
                                    const std::string& lazy_cache = "", bool lazy_mounted = false);
    // Where a fetch or pull (`what`) of `v` from `r` keeps trees: a lazy volume's cache directory
    // ("" for an ordinary volume); Errc::unsupported when `r` is not the remote it reads from.
    Result<std::string> lazy_fetch_cache(const Volume& v, const Remote& r, std::string_view what);
    Result<bool> is_lazy(int64_t volume_id);
    Result<std::string> remote_volume_of(const Volume& v);
    // The tip of the remote-tracking branch `name` of `v`, written as fetch prints it:
    // REMOTE/VOLUME/BRANCH (REMOTE a configured remote's name, VOLUME the remote's name of `v`);
    // nullopt when there is none.
    Result<std::optional<ObjectId>> tracking_tip(const Volume& v, std::string_view name);

    std::unique_ptr<StorePaths> paths_;
    std::unique_ptr<meta::Db> db_;
    std::unique_ptr<meta::Refs> refs_;
    std::unique_ptr<ObjectStore> store_;
    std::unique_ptr<meta::RemoteIndex> remote_index_;
    bool cleaned_ = false;
    WarnFn wait_notice_;
    WarnFn warn_;
    bool warned_cache_ = false;
    // The stat cache's on_damage: warn_, once.
    WarnFn cache_damage() {
        return [this](const std::string& m) {
            if (warn_ && !warned_cache_) warn_(m);
            warned_cache_ = true;
        };
    }
    BackendWrapper backend_wrapper_;
};

}  // namespace dvol
