// Volume options and Docker's mounts of a volume: small rows in the store (meta/refs.h), so
// that the plugin's state survives its restart and two processes see the same counts.
#include <fmt/format.h>

#include "meta/db.h"
#include "repo/repository.h"
#include "repo/stat_cache.h"

namespace dvol {

Result<std::optional<std::string>> Repository::volume_option(const std::string& volume, const std::string& key) {
    DVOL_TRY(auto v, find_volume(volume));
    return refs_->volume_option(v.id, key);
}

Status Repository::set_volume_option(const std::string& volume, const std::string& key, const std::string& value) {
    DVOL_TRY(auto v, find_volume(volume));
    return refs_->set_volume_option(v.id, key, value);
}

Result<std::vector<DockerMount>> Repository::docker_mounts(const std::string& volume) {
    DVOL_TRY(auto v, find_volume(volume));
    return refs_->docker_mounts(v.id);
}

Status Repository::add_docker_mount(const std::string& volume, const std::string& mount_id) {
    // One transaction, so that two concurrent mounts of an exclusive volume cannot both pass
    // the check.
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(auto exclusive, refs_->volume_option(v.id, "exclusive"));
    if (exclusive && *exclusive == "true") {
        DVOL_TRY(auto other, refs_->other_docker_mount(v.id, mount_id));
        if (other)
            return make_error(Errc::busy, fmt::format("volume {} is exclusive and already mounted (mount ID {}); "
                                                      "stop the container using it first",
                                                      volume, other->substr(0, 12)));
    }
    DVOL_CHECK(refs_->add_docker_mount(v.id, mount_id, now_ns()));
    return txn.commit();
}

Result<bool> Repository::remove_docker_mount(const std::string& volume, const std::string& mount_id) {
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(bool removed, refs_->remove_docker_mount(v.id, mount_id));
    if (!removed) return false;
    DVOL_CHECK(txn.commit());
    return true;
}

}  // namespace dvol
