// The refs: volumes, their branches and tips, the commit rows, the reflog, the store's
// configuration, volume options and Docker's mount counts, all kept in the store's SQLite
// database (docs/FORMAT.md, "SQLite"). This module owns their SQL; the Repository facade
// orchestrates on top of it and writes none.
//
// A branch tip moves only by compare-and-swap (swap_tip): read a tip, decide, and swap it if
// it is still what was read. That is also how a remote's refs are compared and updated, so
// local and remote tips are handled alike.
//
// Writes run inside the caller's meta::Db::Transaction when several must land together; each
// method is one statement or a few that are correct on their own. Not thread-safe (one
// connection).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"

namespace dvol {

// One change of a branch's tip, as the reflog records it.
struct ReflogEntry {
    std::string branch;
    std::optional<ObjectId> old_tip;
    std::optional<ObjectId> new_tip;
    int64_t time = 0;
    std::string action;  // "commit: SUBJECT", "reset: moving to REF", "branch: created from B", ...
};

// One holder of a Docker mount of a volume: the mount ID Docker sent and how many Mount calls
// with that ID have not been matched by an Unmount yet.
struct DockerMount {
    std::string id;
    int64_t count = 0;
};

namespace meta {

class Db;

struct VolumeRow {
    int64_t id = 0;
    std::string name;
    std::string branch;  // the active branch
};

struct BranchRow {
    std::string name;
    std::optional<ObjectId> tip;  // none before the branch's first commit
};

// A remote-tracking branch: the tip of a remote's branch of the volume as last pushed or
// fetched.
struct TrackingRow {
    int64_t remote_id = 0;
    std::string url;  // the remote's
    std::string branch;
    ObjectId tip;
};

// A commit row: the encoded commit (docs/FORMAT.md, "Commits") as recorded for a volume.
struct CommitRow {
    int64_t volume_id = 0;
    ObjectId id;
    std::vector<std::byte> encoded;
};

class Refs {
public:
    explicit Refs(Db& db) : db_(db) {}

    // Volumes.
    Result<std::optional<VolumeRow>> volume(const std::string& name);
    Result<std::vector<VolumeRow>> volumes();  // by name
    // Adds volume `name` with one branch, `branch`, without commits, and returns its id.
    // Errc::already_exists when the name is taken.
    Result<int64_t> add_volume(const std::string& name, const std::string& branch, int64_t created_ns);
    // Drops the volume and everything that belongs to it (branches, commit rows, reflog,
    // options, Docker mounts, stat cache).
    Status drop_volume(int64_t volume_id);
    Status set_active_branch(int64_t volume_id, const std::string& branch);

    // Branches.
    // Branch `name` of the volume, or nullopt when there is none. A malformed tip is corrupt.
    Result<std::optional<BranchRow>> branch(int64_t volume_id, const std::string& name);
    Result<std::vector<BranchRow>> branches(int64_t volume_id);  // by name
    // Errc::already_exists when the volume has a branch of that name.
    Status add_branch(int64_t volume_id, const std::string& name, const std::optional<ObjectId>& tip);
    // False when there was no such branch.
    Result<bool> drop_branch(int64_t volume_id, const std::string& name);
    // Moves the branch's tip to `tip` if it is still `expected` (none: no commit yet), and
    // records the move in the reflog with `action`. Errc::conflict when the tip is something
    // else; Errc::not_found when there is no such branch.
    Status swap_tip(int64_t volume_id, const std::string& branch, const std::optional<ObjectId>& expected,
                    const ObjectId& tip, const std::string& action);
    // Every (volume id, tip) of a branch with commits, remote-tracking branches included (what
    // gc keeps).
    Result<std::vector<std::pair<int64_t, ObjectId>>> tips();

    // Remote-tracking branches of a volume, by remote and branch.
    Result<std::vector<TrackingRow>> tracking(int64_t volume_id);
    // Sets (or, with nullopt, drops) the tracking branch `branch` of remote `remote_id`.
    Status set_tracking(int64_t volume_id, int64_t remote_id, const std::string& branch, const std::optional<ObjectId>& tip);
    // The branches of a volume whose tip names no commit row of the volume: (name, tip hex or
    // "(malformed)").
    Result<std::vector<std::pair<std::string, std::string>>> dangling_branches(int64_t volume_id);

    // Commit rows.
    // Records an encoded commit for the volume (a row already there stays).
    Status add_commit(int64_t volume_id, const ObjectId& id, const ObjectId& tree, int64_t time,
                      std::span<const std::byte> encoded);
    // Whether the volume has a row for commit `id`.
    Result<bool> has_commit(int64_t volume_id, const ObjectId& id);
    // The encoding of commit `id` (from any volume), or nullopt.
    Result<std::optional<std::vector<std::byte>>> commit(const ObjectId& id);
    // The volume's commits whose id lies in [lo, hi], at most `limit`.
    Result<std::vector<ObjectId>> commits_between(int64_t volume_id, const ObjectId& lo, const ObjectId& hi, int limit);
    // The volume's commit rows.
    Result<std::vector<CommitRow>> commits(int64_t volume_id);
    // Every (volume id, commit id) row.
    Result<std::vector<std::pair<int64_t, ObjectId>>> commit_ids();
    // Drops these commit rows, then the reflog entries that lead to a commit no longer there.
    Status drop_commits(std::span<const std::pair<int64_t, ObjectId>> rows);

    // The reflog.
    Status log_ref(int64_t volume_id, const std::string& branch, const std::optional<ObjectId>& old_tip,
                   const std::optional<ObjectId>& new_tip, const std::string& action);
    Result<std::vector<ReflogEntry>> reflog(int64_t volume_id);  // newest first

    // Store configuration (user.name, user.email, core.active_volume).
    Result<std::optional<std::string>> config(const std::string& key);
    Status set_config(const std::string& key, const std::string& value);
    // Removes `key` if it holds `value`.
    Status unset_config_if(const std::string& key, const std::string& value);
    Status unset_config(const std::string& key);
    // Every (key, value) whose key starts with `prefix`, by key.
    Result<std::vector<std::pair<std::string, std::string>>> config_with_prefix(const std::string& prefix);

    // Volume options (key=value given at creation, e.g. exclusive=true).
    Result<std::optional<std::string>> volume_option(int64_t volume_id, const std::string& key);
    Status set_volume_option(int64_t volume_id, const std::string& key, const std::string& value);
    Status unset_volume_option(int64_t volume_id, const std::string& key);

    // Docker's mounts of a volume, counted per mount ID.
    Result<std::vector<DockerMount>> docker_mounts(int64_t volume_id);  // oldest first
    // A mount ID other than `mount_id` holding a mount of the volume, or nullopt.
    Result<std::optional<std::string>> other_docker_mount(int64_t volume_id, const std::string& mount_id);
    Status add_docker_mount(int64_t volume_id, const std::string& mount_id, int64_t time_ns);
    // False when that ID held no mount (nothing changes).
    Result<bool> remove_docker_mount(int64_t volume_id, const std::string& mount_id);

private:
    Db& db_;
};

}  // namespace meta
}  // namespace dvol
