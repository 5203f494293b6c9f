// Volume options and Docker's mounts of a volume: small rows in dvol.db, so that the plugin's
// state survives its restart and two processes see the same counts.
#include <fmt/format.h>

#include "repo/repository.h"
#include "repo/stat_cache.h"

namespace dvol {

Result<std::optional<std::string>> Repository::volume_option(const std::string& volume, const std::string& key) {
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(auto q, db_->prepare("SELECT value FROM volume_options WHERE volume_id = ? AND key = ?"));
    q.bind(1, v.id).bind(2, key);
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<std::string>();
    return std::optional<std::string>(q.text(0));
}

Status Repository::set_volume_option(const std::string& volume, const std::string& key, const std::string& value) {
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(auto q, db_->prepare("INSERT OR REPLACE INTO volume_options(volume_id, key, value) VALUES(?, ?, ?)"));
    return q.bind(1, v.id).bind(2, key).bind(3, value).run();
}

Result<std::vector<MountRecord>> Repository::mounts(const std::string& volume) {
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(auto q, db_->prepare("SELECT mount_id, count FROM mounts WHERE volume_id = ? ORDER BY time, mount_id"));
    q.bind(1, v.id);
    std::vector<MountRecord> out;
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.push_back(MountRecord{q.text(0), q.int64(1)});
    }
    return out;
}

Status Repository::add_mount(const std::string& volume, const std::string& mount_id) {
    // One transaction, so that two concurrent mounts of an exclusive volume cannot both pass
    // the check.
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(auto exclusive, volume_option(volume, "exclusive"));
    if (exclusive && *exclusive == "true") {
        DVOL_TRY(auto q, db_->prepare("SELECT mount_id FROM mounts WHERE volume_id = ? AND mount_id <> ? LIMIT 1"));
        q.bind(1, v.id).bind(2, mount_id);
        DVOL_TRY(bool row, q.step());
        if (row)
            return make_error(Errc::busy, fmt::format("volume {} is exclusive and already mounted (mount ID {}); "
                                                      "stop the container using it first",
                                                      volume, q.text(0).substr(0, 12)));
    }
    DVOL_TRY(auto up, db_->prepare("INSERT INTO mounts(volume_id, mount_id, count, time) VALUES(?, ?, 1, ?) "
                                   "ON CONFLICT(volume_id, mount_id) DO UPDATE SET count = count + 1"));
    DVOL_CHECK(up.bind(1, v.id).bind(2, mount_id).bind(3, now_ns()).run());
    return txn.commit();
}

Result<bool> Repository::remove_mount(const std::string& volume, const std::string& mount_id) {
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(auto q, db_->prepare("SELECT count FROM mounts WHERE volume_id = ? AND mount_id = ?"));
    q.bind(1, v.id).bind(2, mount_id);
    DVOL_TRY(bool row, q.step());
    if (!row) return false;
    int64_t count = q.int64(0);
    q.reset();
    if (count > 1) {
        DVOL_TRY(auto up, db_->prepare("UPDATE mounts SET count = count - 1 WHERE volume_id = ? AND mount_id = ?"));
        DVOL_CHECK(up.bind(1, v.id).bind(2, mount_id).run());
    } else {
        DVOL_TRY(auto del, db_->prepare("DELETE FROM mounts WHERE volume_id = ? AND mount_id = ?"));
        DVOL_CHECK(del.bind(1, v.id).bind(2, mount_id).run());
    }
    DVOL_CHECK(txn.commit());
    return true;
}

}  // namespace dvol
