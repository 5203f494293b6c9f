// Writing packs to a remote: records go into a pack file under the store's tmp/ (locked, so
// cleanup leaves it alone) until it reaches its target size; then the pack is uploaded, its
// index after it (docs/FORMAT.md, "Remotes"), and the local meta::RemoteIndex records both, so
// the next push knows the remote holds them. The pack is named by the SHA-256 of its bytes: a
// push that is run again after an interruption builds the same packs under the same names,
// and what already landed is not sent again (a backend skips a key that holds the same bytes).
//
// Memory: one record and the index entries of the pack being built. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "meta/remote_index.h"
#include "remote/backend.h"
#include "remote/layout.h"
#include "store/hash.h"

namespace dvol::meta {
class Db;
}

namespace dvol::remote {

class PackUpload {
public:
    // Packs of `kind` sealed at `target_size` bytes, built in `tmp_dir`. Borrows the rest.
    PackUpload(Backend& backend, meta::Db& db, meta::RemoteIndex& index, int64_t remote_id, std::string tmp_dir, PackKind kind,
               uint64_t target_size)
        : backend_(backend), db_(db), index_(index), remote_(remote_id), tmp_dir_(std::move(tmp_dir)), kind_(kind),
          target_(target_size) {}
    ~PackUpload();
    PackUpload(const PackUpload&) = delete;
    PackUpload& operator=(const PackUpload&) = delete;

    // Appends the record (header and payload, as read from a local pack) of object `id`.
    Status add(const ObjectId& id, std::span<const std::byte> record, uint32_t stored_len, uint32_t raw_len);
    // Uploads the pack being built, if any.
    Status finish();

    // Called with the bytes of each pack uploaded.
    void set_on_upload(std::function<void(uint64_t)> fn) { on_upload_ = std::move(fn); }

    struct Stats {
        uint64_t packs = 0;
        uint64_t objects = 0;
        uint64_t bytes = 0;  // pack bytes uploaded
    };
    const Stats& stats() const { return stats_; }

private:
    Status start();
    void discard();

    Backend& backend_;
    meta::Db& db_;
    meta::RemoteIndex& index_;
    int64_t remote_;
    std::string tmp_dir_;
    PackKind kind_;
    uint64_t target_;
    std::function<void(uint64_t)> on_upload_;
    Stats stats_;

    UniqueFd fd_;
    std::string path_;
    uint64_t size_ = 0;
    Sha256 hash_;
    std::vector<IndexEntry> entries_;
};

}  // namespace dvol::remote
