// A remote's objects as this store reads them (docs/FORMAT.md, "Remotes"). The remote's pack
// indexes, mirrored in the local meta::RemoteIndex, say where each record lies; a record is
// fetched with one ranged read and verified against its id (decoded and hashed) before anyone
// uses it. Sizes come from the index, which bounds them; a record whose header disagrees with
// its index entry is corrupt.
//
// As an ObjectSource it serves readers of trees and content (a fetch's walk, a lazy mount).
// Metadata packs (trees, extent lists, commits) are read whole on first use and kept for the
// next gets, up to a bound; data packs are read by ranges.
//
// Not thread-safe. Borrows the backend, the index and the database, which must outlive it.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "meta/remote_index.h"
#include "remote/backend.h"
#include "remote/layout.h"
#include "store/codec.h"
#include "store/object_source.h"

namespace dvol::meta {
class Db;
}

namespace dvol::remote {

class RemoteObjects : public ObjectSource {
public:
    RemoteObjects(Backend& backend, meta::Db& db, meta::RemoteIndex& index, int64_t remote_id)
        : backend_(backend), db_(db), index_(index), remote_(remote_id) {}

    struct RefreshStats {
        uint64_t indexes_read = 0;
        uint64_t packs_forgotten = 0;
    };
    // Lists the remote's index/ and reads every index not known here yet (one request for the
    // listing page, one per new index), recording them in the local index; packs known here
    // that the remote no longer lists are forgotten. A malformed index is corrupt, naming it.
    Result<RefreshStats> refresh();

    // Whether the remote holds `id`, as far as the local index knows (no request).
    Result<bool> has(const ObjectId& id) override;
    // Reads and verifies one object (ObjectSource). Errc::not_found when no known pack holds it.
    Status get(const ObjectId& id, std::vector<std::byte>& out) override;
    using ObjectSource::get;

    // A verified record: its id, codec, stored payload (as in the pack) and plain length.
    using RecordFn = std::function<Status(const ObjectId& id, Codec codec, std::span<const std::byte> stored, uint32_t raw_len)>;
    // Fetches many objects with few requests: the records of one pack are read by ranges that
    // span several records when they lie close together (at most kMaxRange bytes each), then
    // each record is verified (on two threads, while the next range is read) and handed to
    // `fn` in pack order, on the calling thread. `on_bytes` is told of every range read.
    // Errc::not_found when the remote holds one of them in no known pack.
    Status fetch(std::vector<ObjectId> ids, const RecordFn& fn, const std::function<void(uint64_t)>& on_bytes = {});

    // Reads several objects with few requests, each verified on its own: the records of one pack
    // that lie within kGetManyGap bytes of each other share a ranged read (at most
    // kGetManyRange bytes), and each record is decoded and hashed apart, so a damaged record fails alone.
    // Every id is handed to `fn` exactly once, on this thread, in pack order: with its plain
    // bytes, or with its own error (not_found for an object in no known pack; the read's error
    // for every record of a range that could not be read; corrupt for a record that fails).
    void get_many(std::span<const ObjectId> ids, const ObjectFn& fn) override;

    struct Stats {
        uint64_t requests = 0;
        uint64_t bytes = 0;
    };
    const Stats& stats() const { return stats_; }

    static constexpr uint64_t kMaxRange = 16u << 20;  // one ranged read
    static constexpr uint64_t kMaxGap = 1u << 20;     // records this close share a read
    static constexpr uint64_t kGetManyGap = 64u << 10;   // the same for get_many (a read ahead)
    static constexpr uint64_t kGetManyRange = 8u << 20;  // whose reads are smaller: it runs on
                                                         // the mount's threads, memory counts
    static constexpr uint64_t kMetadataCache = 64u << 20;

private:
    struct Wanted {
        ObjectId id;
        meta::RemoteIndex::Location loc;
    };
    struct Range {
        size_t first, last;  // wanted[first, last)
        uint64_t start, end;
    };
    // `wanted` sorted by pack and offset, cut into reads: records of one pack, each starting at
    // most `max_gap` after the previous one's end, the whole at most `max_range` (or one record).
    static std::vector<Range> plan_ranges(std::vector<Wanted>& wanted, uint64_t max_gap, uint64_t max_range);
    // Checks a record read for `id` against its index entry and decodes it (verified).
    Status decode(const ObjectId& id, const meta::RemoteIndex::Location& loc, std::span<const std::byte> record,
                  std::vector<std::byte>& out);
    Status read_range(const std::string& pack, uint64_t offset, uint64_t length, std::vector<std::byte>& out);
    // The whole metadata pack `name` of `size` bytes (as its index gives it), from the cache or
    // the remote.
    Result<const std::vector<std::byte>*> metadata_pack(const std::string& name, uint64_t size);

    Backend& backend_;
    meta::Db& db_;
    meta::RemoteIndex& index_;
    int64_t remote_;
    Stats stats_;
    std::vector<std::byte> buf_;
    // Metadata packs read whole, least recently used first.
    std::list<std::pair<std::string, std::vector<std::byte>>> packs_;
    uint64_t cached_bytes_ = 0;
};

}  // namespace dvol::remote
