// Where everything lives under a store directory (dvol.db, store.lock, objects/packs/, tmp/,
// pins/, volumes/<volume>/data and lock): the one place that spells the store's file and directory
// names. What each holds: docs/FORMAT.md, "The store directory".
#pragma once

#include <string>

namespace dvol {

class StorePaths {
public:
    explicit StorePaths(std::string dir) : dir_(std::move(dir)) {}

    const std::string& dir() const { return dir_; }
    std::string db() const { return dir_ + "/dvol.db"; }
    std::string store_lock() const { return dir_ + "/store.lock"; }
    std::string packs_dir() const { return dir_ + "/objects/packs"; }
    std::string pack(const std::string& name) const { return packs_dir() + "/" + name + ".pack"; }
    std::string tmp_dir() const { return dir_ + "/tmp"; }
    std::string staging_pack(const std::string& name) const { return tmp_dir() + "/" + name + ".pack"; }
    std::string trash(const std::string& name) const { return tmp_dir() + "/rm-" + name; }
    // Commits pinned by running readers (dvol mount): gc keeps what they reach.
    std::string pins_dir() const { return dir_ + "/pins"; }
    std::string pin(const std::string& name) const { return pins_dir() + "/" + name + ".pin"; }
    std::string pin_staging(const std::string& name) const { return pins_dir() + "/" + name + ".tmp"; }
    std::string volumes_dir() const { return dir_ + "/volumes"; }
    std::string volume_dir(const std::string& volume) const { return volumes_dir() + "/" + volume; }
    std::string live_dir(const std::string& volume) const { return volume_dir(volume) + "/data"; }
    std::string volume_lock(const std::string& volume) const { return volume_dir(volume) + "/lock"; }

private:
    std::string dir_;
};

}  // namespace dvol
