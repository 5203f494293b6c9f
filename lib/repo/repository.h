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

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"
#include "meta/refs.h"
#include "object/commit.h"
#include "repo/change.h"
#include "repo/progress.h"

namespace dvol {

namespace meta {
class Db;
}
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
    uint64_t bytes_before = 0;
    uint64_t bytes_after = 0;
};

struct FileDiff {
    Change change;
    std::string patch;  // unified diff, or a one-line summary for binary or large files
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

// Names of volumes and branches: Docker's rule [A-Za-z0-9][A-Za-z0-9_.-]*, 1..128 characters,
// and never ".." anywhere (docs/ARCHITECTURE.md, "Data model").
bool valid_name(std::string_view name);
std::string invalid_name_message(std::string_view name, std::string_view what);

class Repository {
public:
    // Opens the store in directory `dir`, creating its layout on first use.
    static Result<std::unique_ptr<Repository>> open(const std::string& dir);
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
    // Docker plugin does not).
    Status create_volume(const std::string& name, bool make_active = true);
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
    // branch; gc removes what no branch of any volume reaches (dropped commits, deleted
    // branches and volumes) and rewrites packs that are mostly garbage. gc holds the store
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
    Result<std::vector<Change>> live_changes(const Volume& v, const WarnFn& warn);
    Status prepare_write();
    // Verifies every object a restore of `tree` into the volume would read (see Restorer::verify).
    // Returns the chunks it verified, for materialise() to trust.
    Result<ObjectIdSet> verify_restore(const Volume& v, const ObjectId* tree);
    // Restores `tree` (null: empty) into the volume's live directory and saves the stat cache.
    // `verified`: the chunks verify_restore() verified under the same store lock.
    Result<ResetOutcome> materialise(const Volume& v, const ObjectId* tree, const ObjectId& commit, ObjectIdSet verified,
                                     const ProgressFn& progress);

    std::unique_ptr<StorePaths> paths_;
    std::unique_ptr<meta::Db> db_;
    std::unique_ptr<meta::Refs> refs_;
    std::unique_ptr<ObjectStore> store_;
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
};

}  // namespace dvol
