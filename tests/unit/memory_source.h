// Objects in memory for the tests of the mount's file systems (fuse-mount/commit_fs.h,
// layer_fs.h): safe for several threads; counts the gets of each object and keeps the read-ahead
// hints it is given; can damage or drop an object.
#pragma once

#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "object/tree.h"
#include "store/hash.h"
#include "store/object_source.h"

namespace dvol::test {

class MemorySource : public ObjectSource {
public:
    ObjectId put(std::span<const std::byte> bytes) {
        std::lock_guard lk(mu_);
        ObjectId id = sha256(bytes);
        objects_[id].assign(bytes.begin(), bytes.end());
        return id;
    }
    ObjectId put(std::string_view s) { return put(std::as_bytes(std::span(s.data(), s.size()))); }
    ObjectId put_tree(const Tree& t) { return put(encode_tree(t)); }

    Result<bool> has(const ObjectId& id) override {
        std::lock_guard lk(mu_);
        return objects_.contains(id);
    }
    Status get(const ObjectId& id, std::vector<std::byte>& out) override {
        std::lock_guard lk(mu_);
        ++gets_[id];
        if (damaged_.contains(id)) return make_error(Errc::corrupt, "object " + id.hex() + " in pack p is corrupt: hash mismatch");
        auto it = objects_.find(id);
        if (it == objects_.end()) return make_error(Errc::not_found, "object " + id.hex() + " is not in the store");
        out = it->second;
        return {};
    }
    using ObjectSource::get;

    int gets(const ObjectId& id) {
        std::lock_guard lk(mu_);
        return gets_[id];
    }
    int total_gets() {
        std::lock_guard lk(mu_);
        int n = 0;
        for (auto& [id, c] : gets_) n += c;
        return n;
    }
    void damage(const ObjectId& id) {
        std::lock_guard lk(mu_);
        damaged_[id] = true;
    }
    void drop(const ObjectId& id) {
        std::lock_guard lk(mu_);
        objects_.erase(id);
    }

    // What prefetch() was told, in order (the read-ahead hint of sequential reads).
    void prefetch(std::span<const ObjectId> ids) override {
        std::lock_guard lk(mu_);
        prefetched.insert(prefetched.end(), ids.begin(), ids.end());
    }
    size_t hinted() {
        std::lock_guard lk(mu_);
        return prefetched.size();
    }
    std::vector<ObjectId> prefetched;

private:
    std::mutex mu_;
    std::map<ObjectId, std::vector<std::byte>> objects_;
    std::map<ObjectId, int> gets_;
    std::map<ObjectId, bool> damaged_;
};

}  // namespace dvol::test
