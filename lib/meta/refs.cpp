#include "meta/refs.h"

#include <ctime>

#include <fmt/format.h>

#include "meta/db.h"

namespace dvol::meta {

namespace {

// An id column: nullopt for NULL; Errc::corrupt for a blob of the wrong size.
Result<std::optional<ObjectId>> id_column(const Stmt& q, int col, std::string_view what) {
    if (q.is_null(col)) return std::optional<ObjectId>();
    auto b = q.blob_view(col);
    if (b.size() != ObjectId::size) return make_error(Errc::corrupt, fmt::format("{} is malformed in the store's database", what));
    return std::optional<ObjectId>(ObjectId::from_bytes(b));
}

Stmt& bind_id(Stmt& q, int col, const std::optional<ObjectId>& id) {
    if (id) return q.bind_blob(col, id->as_span());
    return q.bind_null(col);
}

}  // namespace

Result<std::optional<VolumeRow>> Refs::volume(const std::string& name) {
    DVOL_TRY(auto q, db_.prepare("SELECT id, active_branch FROM volumes WHERE name = ?"));
    q.bind(1, name);
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<VolumeRow>();
    return std::optional<VolumeRow>(VolumeRow{q.int64(0), name, q.text(1)});
}

Result<std::vector<VolumeRow>> Refs::volumes() {
    std::vector<VolumeRow> out;
    DVOL_TRY(auto q, db_.prepare("SELECT id, name, active_branch FROM volumes ORDER BY name"));
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.push_back(VolumeRow{q.int64(0), q.text(1), q.text(2)});
    }
    return out;
}

Result<int64_t> Refs::add_volume(const std::string& name, const std::string& branch, int64_t created_ns) {
    {
        DVOL_TRY(auto ins, db_.prepare("INSERT INTO volumes(name, active_branch, created_ns) VALUES(?, ?, ?)"));
        DVOL_CHECK(ins.bind(1, name).bind(2, branch).bind(3, created_ns).run());
    }
    int64_t id = db_.last_insert_rowid();
    DVOL_CHECK(add_branch(id, branch, std::nullopt));
    return id;
}

Status Refs::drop_volume(int64_t volume_id) {
    // Everything else that belongs to the volume goes with it (ON DELETE CASCADE).
    DVOL_TRY(auto del, db_.prepare("DELETE FROM volumes WHERE id = ?"));
    return del.bind(1, volume_id).run();
}

Status Refs::set_active_branch(int64_t volume_id, const std::string& branch) {
    DVOL_TRY(auto up, db_.prepare("UPDATE volumes SET active_branch = ? WHERE id = ?"));
    return up.bind(1, branch).bind(2, volume_id).run();
}

Result<std::optional<BranchRow>> Refs::branch(int64_t volume_id, const std::string& name) {
    DVOL_TRY(auto q, db_.prepare("SELECT tip FROM branches WHERE volume_id = ? AND name = ?"));
    q.bind(1, volume_id).bind(2, name);
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<BranchRow>();
    auto tip = id_column(q, 0, fmt::format("the tip of branch {}", name));
    if (!tip) return std::move(tip).error();
    return std::optional<BranchRow>(BranchRow{name, *tip});
}

Result<std::vector<BranchRow>> Refs::branches(int64_t volume_id) {
    std::vector<BranchRow> out;
    DVOL_TRY(auto q, db_.prepare("SELECT name, tip FROM branches WHERE volume_id = ? ORDER BY name"));
    q.bind(1, volume_id);
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        BranchRow b{q.text(0), std::nullopt};
        // A malformed tip lists as none here; fsck reports it, and using the branch fails.
        if (!q.is_null(1) && q.blob_view(1).size() == ObjectId::size) b.tip = ObjectId::from_bytes(q.blob_view(1));
        out.push_back(std::move(b));
    }
    return out;
}

Status Refs::add_branch(int64_t volume_id, const std::string& name, const std::optional<ObjectId>& tip) {
    DVOL_TRY(auto ins, db_.prepare("INSERT INTO branches(volume_id, name, tip) VALUES(?, ?, ?)"));
    ins.bind(1, volume_id).bind(2, name);
    bind_id(ins, 3, tip);
    return ins.run();
}

Result<bool> Refs::drop_branch(int64_t volume_id, const std::string& name) {
    DVOL_TRY(auto del, db_.prepare("DELETE FROM branches WHERE volume_id = ? AND name = ?"));
    DVOL_CHECK(del.bind(1, volume_id).bind(2, name).run());
    return db_.changes() > 0;
}

Status Refs::swap_tip(int64_t volume_id, const std::string& branch, const std::optional<ObjectId>& expected,
                      const ObjectId& tip, const std::string& action) {
    {
        DVOL_TRY(auto up, db_.prepare("UPDATE branches SET tip = ? WHERE volume_id = ? AND name = ? AND tip IS ?"));
        up.bind_blob(1, tip.as_span()).bind(2, volume_id).bind(3, branch);
        bind_id(up, 4, expected);
        DVOL_CHECK(up.run());
    }
    if (db_.changes() == 0) {
        DVOL_TRY(auto now, this->branch(volume_id, branch));
        if (!now) return make_error(Errc::not_found, fmt::format("branch {} does not exist", branch));
        return make_error(Errc::conflict, fmt::format("branch {} moved meanwhile (it is at {}, not {})", branch,
                                                      now->tip ? now->tip->hex().substr(0, 12) : "no commit",
                                                      expected ? expected->hex().substr(0, 12) : "no commit"));
    }
    return log_ref(volume_id, branch, expected, tip, action);
}

Result<std::vector<std::pair<int64_t, ObjectId>>> Refs::tips() {
    std::vector<std::pair<int64_t, ObjectId>> out;
    DVOL_TRY(auto q, db_.prepare("SELECT volume_id, tip FROM branches WHERE tip IS NOT NULL "
                                 "UNION ALL SELECT volume_id, tip FROM remote_branches"));
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        if (q.blob_view(1).size() == ObjectId::size) out.emplace_back(q.int64(0), ObjectId::from_bytes(q.blob_view(1)));
    }
    return out;
}

Result<std::vector<TrackingRow>> Refs::tracking(int64_t volume_id) {
    std::vector<TrackingRow> out;
    DVOL_TRY(auto q, db_.prepare("SELECT t.remote_id, r.url, t.branch, t.tip FROM remote_branches t JOIN remotes r ON r.id = t.remote_id "
                                 "WHERE t.volume_id = ? ORDER BY r.url, t.branch"));
    q.bind(1, volume_id);
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        if (q.blob_view(3).size() != ObjectId::size) continue;
        out.push_back(TrackingRow{q.int64(0), q.text(1), q.text(2), ObjectId::from_bytes(q.blob_view(3))});
    }
    return out;
}

Status Refs::set_tracking(int64_t volume_id, int64_t remote_id, const std::string& branch, const std::optional<ObjectId>& tip) {
    if (!tip) {
        DVOL_TRY(auto del, db_.prepare("DELETE FROM remote_branches WHERE volume_id = ? AND remote_id = ? AND branch = ?"));
        return del.bind(1, volume_id).bind(2, remote_id).bind(3, branch).run();
    }
    DVOL_TRY(auto up, db_.prepare("INSERT OR REPLACE INTO remote_branches(volume_id, remote_id, branch, tip) VALUES(?, ?, ?, ?)"));
    return up.bind(1, volume_id).bind(2, remote_id).bind(3, branch).bind_blob(4, tip->as_span()).run();
}

Result<std::vector<std::pair<std::string, std::string>>> Refs::dangling_branches(int64_t volume_id) {
    std::vector<std::pair<std::string, std::string>> out;
    DVOL_TRY(auto q, db_.prepare("SELECT b.name, b.tip FROM branches b WHERE b.volume_id = ? AND b.tip IS NOT NULL AND NOT EXISTS "
                                 "(SELECT 1 FROM commits c WHERE c.volume_id = b.volume_id AND c.id = b.tip)"));
    q.bind(1, volume_id);
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.emplace_back(q.text(0), q.blob_view(1).size() == ObjectId::size ? ObjectId::from_bytes(q.blob_view(1)).hex() : "(malformed)");
    }
    return out;
}

Status Refs::add_commit(int64_t volume_id, const ObjectId& id, const ObjectId& tree, int64_t time,
                        std::span<const std::byte> encoded) {
    DVOL_TRY(auto ins, db_.prepare("INSERT OR IGNORE INTO commits(id, volume_id, tree, time, encoded) VALUES(?, ?, ?, ?, ?)"));
    return ins.bind_blob(1, id.as_span()).bind(2, volume_id).bind_blob(3, tree.as_span()).bind(4, time).bind_blob(5, encoded).run();
}

Result<bool> Refs::has_commit(int64_t volume_id, const ObjectId& id) {
    DVOL_TRY(auto q, db_.prepare("SELECT 1 FROM commits WHERE volume_id = ? AND id = ?"));
    q.bind(1, volume_id).bind_blob(2, id.as_span());
    return q.step();
}

Result<std::optional<std::vector<std::byte>>> Refs::commit(const ObjectId& id) {
    DVOL_TRY(auto q, db_.prepare("SELECT encoded FROM commits WHERE id = ? LIMIT 1"));
    q.bind_blob(1, id.as_span());
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<std::vector<std::byte>>();
    return std::optional<std::vector<std::byte>>(q.blob(0));
}

Result<std::vector<ObjectId>> Refs::commits_between(int64_t volume_id, const ObjectId& lo, const ObjectId& hi, int limit) {
    std::vector<ObjectId> out;
    DVOL_TRY(auto q, db_.prepare("SELECT id FROM commits WHERE volume_id = ? AND id >= ? AND id <= ? LIMIT ?"));
    q.bind(1, volume_id).bind_blob(2, lo.as_span()).bind_blob(3, hi.as_span()).bind(4, limit);
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.push_back(ObjectId::from_bytes(q.blob_view(0)));
    }
    return out;
}

Result<std::vector<CommitRow>> Refs::commits(int64_t volume_id) {
    std::vector<CommitRow> out;
    DVOL_TRY(auto q, db_.prepare("SELECT id, encoded FROM commits WHERE volume_id = ?"));
    q.bind(1, volume_id);
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.push_back(CommitRow{volume_id, ObjectId::from_bytes(q.blob_view(0)), q.blob(1)});
    }
    return out;
}

Result<std::vector<std::pair<int64_t, ObjectId>>> Refs::commit_ids() {
    std::vector<std::pair<int64_t, ObjectId>> out;
    DVOL_TRY(auto q, db_.prepare("SELECT volume_id, id FROM commits"));
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.emplace_back(q.int64(0), ObjectId::from_bytes(q.blob_view(1)));
    }
    return out;
}

Status Refs::drop_commits(std::span<const std::pair<int64_t, ObjectId>> rows) {
    DVOL_TRY(auto del, db_.prepare("DELETE FROM commits WHERE volume_id = ? AND id = ?"));
    for (const auto& [vid, id] : rows) DVOL_CHECK(del.bind(1, vid).bind_blob(2, id.as_span()).run());
    // A reflog entry lives as long as the commit it leads to (for a deletion: the commit the
    // branch held).
    return db_.exec("DELETE FROM reflog WHERE NOT EXISTS (SELECT 1 FROM commits c WHERE c.volume_id = reflog.volume_id "
                    "AND c.id = coalesce(reflog.new, reflog.old))");
}

Status Refs::log_ref(int64_t volume_id, const std::string& branch, const std::optional<ObjectId>& old_tip,
                     const std::optional<ObjectId>& new_tip, const std::string& action) {
    DVOL_TRY(auto q, db_.prepare("INSERT INTO reflog(volume_id, branch, old, new, time, action) VALUES(?, ?, ?, ?, ?, ?)"));
    q.bind(1, volume_id).bind(2, branch);
    bind_id(q, 3, old_tip);
    bind_id(q, 4, new_tip);
    return q.bind(5, static_cast<int64_t>(::time(nullptr))).bind(6, action).run();
}

Result<std::vector<ReflogEntry>> Refs::reflog(int64_t volume_id) {
    std::vector<ReflogEntry> out;
    DVOL_TRY(auto q, db_.prepare("SELECT branch, old, new, time, action FROM reflog WHERE volume_id = ? ORDER BY seq DESC"));
    q.bind(1, volume_id);
    auto id_at = [&q](int col) -> std::optional<ObjectId> {
        if (q.is_null(col) || q.blob_view(col).size() != ObjectId::size) return std::nullopt;
        return ObjectId::from_bytes(q.blob_view(col));
    };
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.push_back(ReflogEntry{q.text(0), id_at(1), id_at(2), q.int64(3), q.text(4)});
    }
    return out;
}

Result<std::optional<std::string>> Refs::config(const std::string& key) {
    DVOL_TRY(auto q, db_.prepare("SELECT value FROM config WHERE key = ?"));
    q.bind(1, key);
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<std::string>();
    return std::optional<std::string>(q.text(0));
}

Status Refs::set_config(const std::string& key, const std::string& value) {
    DVOL_TRY(auto q, db_.prepare("INSERT OR REPLACE INTO config(key, value) VALUES(?, ?)"));
    return q.bind(1, key).bind(2, value).run();
}

Status Refs::unset_config_if(const std::string& key, const std::string& value) {
    DVOL_TRY(auto q, db_.prepare("DELETE FROM config WHERE key = ? AND value = ?"));
    return q.bind(1, key).bind(2, value).run();
}

Status Refs::unset_config(const std::string& key) {
    DVOL_TRY(auto q, db_.prepare("DELETE FROM config WHERE key = ?"));
    return q.bind(1, key).run();
}

Result<std::vector<std::pair<std::string, std::string>>> Refs::config_with_prefix(const std::string& prefix) {
    std::vector<std::pair<std::string, std::string>> out;
    // Keys in [prefix, prefix + U+FFFF): every key that starts with it, by the index.
    DVOL_TRY(auto q, db_.prepare("SELECT key, value FROM config WHERE key >= ? AND key < ? ORDER BY key"));
    q.bind(1, prefix).bind(2, prefix + "\xff");
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.emplace_back(q.text(0), q.text(1));
    }
    return out;
}

Result<std::optional<std::string>> Refs::volume_option(int64_t volume_id, const std::string& key) {
    DVOL_TRY(auto q, db_.prepare("SELECT value FROM volume_options WHERE volume_id = ? AND key = ?"));
    q.bind(1, volume_id).bind(2, key);
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<std::string>();
    return std::optional<std::string>(q.text(0));
}

Status Refs::set_volume_option(int64_t volume_id, const std::string& key, const std::string& value) {
    DVOL_TRY(auto q, db_.prepare("INSERT OR REPLACE INTO volume_options(volume_id, key, value) VALUES(?, ?, ?)"));
    return q.bind(1, volume_id).bind(2, key).bind(3, value).run();
}

Status Refs::unset_volume_option(int64_t volume_id, const std::string& key) {
    DVOL_TRY(auto q, db_.prepare("DELETE FROM volume_options WHERE volume_id = ? AND key = ?"));
    return q.bind(1, volume_id).bind(2, key).run();
}

Result<std::vector<DockerMount>> Refs::docker_mounts(int64_t volume_id) {
    DVOL_TRY(auto q, db_.prepare("SELECT mount_id, count FROM mounts WHERE volume_id = ? ORDER BY time, mount_id"));
    q.bind(1, volume_id);
    std::vector<DockerMount> out;
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.push_back(DockerMount{q.text(0), q.int64(1)});
    }
    return out;
}

Result<std::optional<std::string>> Refs::other_docker_mount(int64_t volume_id, const std::string& mount_id) {
    DVOL_TRY(auto q, db_.prepare("SELECT mount_id FROM mounts WHERE volume_id = ? AND mount_id <> ? LIMIT 1"));
    q.bind(1, volume_id).bind(2, mount_id);
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<std::string>();
    return std::optional<std::string>(q.text(0));
}

Status Refs::add_docker_mount(int64_t volume_id, const std::string& mount_id, int64_t time_ns) {
    DVOL_TRY(auto up, db_.prepare("INSERT INTO mounts(volume_id, mount_id, count, time) VALUES(?, ?, 1, ?) "
                                  "ON CONFLICT(volume_id, mount_id) DO UPDATE SET count = count + 1"));
    return up.bind(1, volume_id).bind(2, mount_id).bind(3, time_ns).run();
}

Result<bool> Refs::remove_docker_mount(int64_t volume_id, const std::string& mount_id) {
    DVOL_TRY(auto q, db_.prepare("SELECT count FROM mounts WHERE volume_id = ? AND mount_id = ?"));
    q.bind(1, volume_id).bind(2, mount_id);
    DVOL_TRY(bool row, q.step());
    if (!row) return false;
    int64_t count = q.int64(0);
    q.reset();
    if (count > 1) {
        DVOL_TRY(auto up, db_.prepare("UPDATE mounts SET count = count - 1 WHERE volume_id = ? AND mount_id = ?"));
        DVOL_CHECK(up.bind(1, volume_id).bind(2, mount_id).run());
    } else {
        DVOL_TRY(auto del, db_.prepare("DELETE FROM mounts WHERE volume_id = ? AND mount_id = ?"));
        DVOL_CHECK(del.bind(1, volume_id).bind(2, mount_id).run());
    }
    return true;
}

}  // namespace dvol::meta
