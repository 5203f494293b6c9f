// ChunkCache: an ObjectSource in front of another (a remote's objects, for a lazy volume) that
// keeps what it fetched in a directory, bounded in bytes, least recently used out first
// (docs/FORMAT.md, "Lazy volumes: the chunk cache").
//
// Two tiers in one directory:
// - meta/<hex>: objects placed with pin() (a lazy clone's trees and extent lists), never evicted,
//   not counted in the bound; each file the object's plain bytes, written to tmp/ and renamed
//   into place, and re-hashed (SHA-256 against its name) each time it is read;
// - chunks/<hex>.chunk: what get() fetched from upstream, at most `bound` bytes (plain lengths;
//   each file also holds a trailer of kChunkTrailer bytes) at any instant, files being written
//   included; a single object larger than the bound is kept alone, so the tier never holds more
//   than max(bound, the largest object). Each file is the object's plain bytes followed by a
//   trailer (its length and a CRC-32C of both, docs/FORMAT.md), written in place without a
//   rename or an fsync, and checked against the trailer each time it is read: a file a crash
//   truncated or tore, or that the disk damaged, fails the check, is deleted and fetched again,
//   never served. What upstream hands over was verified against its id (ObjectSource::get's
//   promise; checked again here unless Options::trust_upstream says upstream verifies).
// open() deletes tmp/ leftovers and what chunks/ holds that is not a cache file of this format
// (the plain `<hex>` files of the earlier format included), and takes the chunks it finds,
// recency from their mtimes.
//
// get() serves a verified copy: from the tiers, else from upstream (which verifies too), then
// stores it. Concurrent get()s of one missing object fetch it once (the others wait for that
// fetch and share its outcome, success or error). An upstream error is returned as is and
// nothing is stored. prefetch() queues objects for background threads that fetch them into the
// cache (at most `prefetch_queue` waiting; more are dropped, as readahead may be). A thread takes
// up to `prefetch_batch` queued objects at once and asks upstream for them together
// (ObjectSource::get_many: a remote reads neighbouring records with one request), each verified
// and stored on its own, each under the same single flight as a get(). What a read ahead
// fetched is also kept in memory (at most `ahead_bound` bytes, oldest out first) until a get()
// takes it: the read that follows a read ahead then costs no file read and no second hash.
//
// Thread-safe: every method may be called from several threads at once. `upstream` must be
// thread-safe too (store/pooled_source.h) and outlive the cache. One ChunkCache per directory:
// two processes sharing one are not supported (the lazy mount is the only user of a volume's).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"
#include "store/object_source.h"

namespace dvol {

class ChunkCache final : public ObjectSource {
public:
    // The bytes each file of chunks/ holds past the chunk's own (docs/FORMAT.md).
    static constexpr size_t kChunkTrailer = 16;
    static constexpr std::string_view kChunkSuffix = ".chunk";

    struct Options {
        uint64_t bound = 1ull << 30;  // bytes in chunks/
        unsigned prefetch_threads = 2;
        size_t prefetch_queue = 16;
        size_t prefetch_batch = 8;
        uint64_t ahead_bound = 16u << 20;
        // Whether what upstream's get() and get_many() hand over needs no second SHA-256 before
        // it is served and stored: true when upstream verifies every object against its id
        // itself (the remote's RemoteObjects decodes and hashes each record). False, the
        // default: hashed here again, and an object that does not match is an error, not stored.
        bool trust_upstream = false;
        // Whether chunk files are written with O_DIRECT (their whole 4 KiB blocks; the rest
        // through the page cache), where the file system takes it. Off: all buffered.
        bool direct_writes = true;
        // Told of every fetch from upstream (id, plain bytes, error or success) and of every
        // damaged cache file deleted: the mount's log.
        std::function<void(const std::string&)> log;
    };
    struct Stats {
        uint64_t hits = 0;       // served from the directory, or from memory after a read ahead
        uint64_t fetches = 0;    // objects fetched from upstream
        uint64_t fetched_bytes = 0;
        uint64_t failures = 0;   // upstream fetches that failed
        uint64_t damaged = 0;    // cache files that failed verification (deleted)
        uint64_t evictions = 0;
        uint64_t used = 0;       // bytes in chunks/ (reserved included)
    };

    // Opens (making it if needed) the cache in `dir`; evicts down to the bound what an earlier
    // run left above it.
    static Result<std::unique_ptr<ChunkCache>> open(const std::string& dir, ObjectSource& upstream, Options options);
    ~ChunkCache() override;  // stops the prefetch threads (waiting for their current fetch)
    ChunkCache(const ChunkCache&) = delete;
    ChunkCache& operator=(const ChunkCache&) = delete;

    Result<bool> has(const ObjectId& id) override;
    Status get(const ObjectId& id, std::vector<std::byte>& out) override;
    using ObjectSource::get;
    void prefetch(std::span<const ObjectId> ids) override;

    // Stores `bytes` (which must hash to `id`: Errc::corrupt otherwise) in the meta tier.
    Status pin(const ObjectId& id, std::span<const std::byte> bytes);
    bool pinned(const ObjectId& id) const;
    // Whether chunks/ holds `id` now, written whole.
    bool cached(const ObjectId& id);

    Stats stats();
    const std::string& dir() const { return dir_; }

private:
    ChunkCache(std::string dir, ObjectSource& upstream, Options options);
    Status load_existing();
    // Reads the file at `path` and checks it (meta: its SHA-256 against `id`; chunk: its trailer):
    // true when served, false when absent or damaged (then deleted, and its entry dropped).
    bool read_verified(const std::string& path, const ObjectId& id, std::vector<std::byte>& out, bool chunk);
    // Forgets a cache file that failed its check: deleted, counted, logged.
    void discard_damaged(const std::string& path, const ObjectId& id, bool chunk);
    std::string chunk_path(const ObjectId& id) const;
    std::string meta_path(const ObjectId& id) const;
    // Fetches `id` from upstream once whatever the number of callers, and stores it.
    Status fetch(const ObjectId& id, std::vector<std::byte>& out);
    struct Flight;
    // Ends the fetch of `id` that this thread leads: `st` is upstream's verdict (made an error
    // here too when `bytes` do not hash to `id`); the bytes are stored when good; the waiters
    // are told.
    // `ahead`: a read ahead's, then moved from `bytes` into memory for the get() that follows.
    void land(const ObjectId& id, const std::shared_ptr<Flight>& flight, Status& st, std::vector<std::byte>& bytes, bool ahead);
    // Takes `id` out of what read aheads left in memory: false when it is not there.
    bool take_ahead(const ObjectId& id, std::vector<std::byte>& out);
    Status store(const ObjectId& id, std::span<const std::byte> bytes);
    Status write_file(const std::string& path, std::span<const std::byte> bytes);
    // Writes chunks/<hex>.chunk in place: the bytes, then the trailer.
    Status write_chunk(const std::string& path, std::span<const std::byte> bytes);
    // With mu_ held: evicts least recently used chunks until `need` more bytes fit the bound.
    void make_room(uint64_t need);
    void touch(const ObjectId& id);
    void prefetch_loop();

    std::string dir_;
    ObjectSource& upstream_;
    Options options_;

    std::mutex mu_;
    struct Entry {
        uint64_t size = 0;
        std::list<ObjectId>::iterator pos;  // in lru_
        // False while store() writes its file (room already made): not read from until written.
        bool ready = true;
    };
    std::unordered_map<ObjectId, Entry, ObjectIdHash> entries_;
    std::list<ObjectId> lru_;  // least recently used first
    struct Flight {
        bool done = false;
        int waiters = 0;  // get()s waiting for it: the bytes are copied for them only
        Status result;
        std::vector<std::byte> bytes;
    };
    std::unordered_map<ObjectId, std::shared_ptr<Flight>, ObjectIdHash> flights_;
    std::condition_variable flight_done_;
    Stats stats_;

    // Fetched by a read ahead and not read yet (verified when they landed), oldest first.
    std::unordered_map<ObjectId, std::vector<std::byte>, ObjectIdHash> ahead_;
    std::deque<ObjectId> ahead_order_;
    uint64_t ahead_bytes_ = 0;

    std::deque<ObjectId> queue_;
    std::condition_variable queue_cv_;
    bool stopping_ = false;
    std::vector<std::thread> workers_;
};

}  // namespace dvol
