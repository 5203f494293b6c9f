// Storing chunks behind the hashing: a chunk new to the store is queued with its id and
// compressed as background work of a ParallelFor (by its helper between runs, or by either
// thread while it would otherwise wait), while the calling thread reads and hashes what
// follows, of this file or the next ones. The calling thread appends the compressed chunks to
// the store in the order they were queued, so packs come out byte for byte as if each chunk
// were stored at once.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <unordered_set>
#include <vector>

#include "base/error.h"
#include "base/parallel.h"
#include "store/codec.h"
#include "store/hash.h"
#include "store/object_store.h"

namespace dvol {

class StoreBehind {
public:
    // `pool` must be made with background = work() of this object, and destroyed before it.
    // Without a helper thread in it, queue() compresses and stores at once.
    explicit StoreBehind(ParallelFor* pool) : pool_(*pool), slots_(kSlots) {}
    StoreBehind(const StoreBehind&) = delete;
    StoreBehind& operator=(const StoreBehind&) = delete;

    // Queues a chunk for `store`. Its bytes are read where they lie until it is stored, unless
    // small enough to be copied; `tag` names the buffer they lie in, for release(). Errors are
    // those of storing earlier chunks. Calling thread only, as are the calls below.
    Status queue(ObjectStore& store, const ObjectId& id, std::span<const std::byte> data, int tag);
    // Whether `id` is queued and not yet stored.
    bool queued(const ObjectId& id) const { return ids_.contains(id); }
    // Stores the chunks compressed so far, in order, without waiting.
    Status store_ready(ObjectStore& store) { return step(store, false); }
    // Waits until no queued chunk reads from buffer `tag` (compressing meanwhile).
    Status release(ObjectStore& store, int tag);
    // Waits until every queued chunk is stored.
    Status finish(ObjectStore& store);

    // The pool's background work: compresses the oldest chunk not yet started, on `worker`'s
    // compressor; false when there is none.
    bool work(int worker);

private:
    struct Job {
        ObjectId id;
        std::span<const std::byte> data;
        std::vector<std::byte> copy;  // data's bytes when copied
        uint32_t length = 0;
        int tag = -1;
        bool done = false;
        Codec codec = Codec::raw;
        std::vector<std::byte> stored;  // the compressed payload; empty when stored raw (the input is)
        std::span<const std::byte> input() const { return copy.empty() ? data : std::span<const std::byte>(copy); }
    };
    // Each slot keeps its buffers (up to a compressed chunk): few slots keep the memory down.
    static constexpr size_t kSlots = 16;
    static constexpr size_t kCopyBelow = 64 * 1024;

    // Stores finished jobs at the head; with `wait`, first makes progress on the head (works
    // on a job here, or waits for the helper's).
    Status step(ObjectStore& store, bool wait);
    bool busy_with(int tag) const;

    ParallelFor& pool_;
    std::mutex mu_;
    std::condition_variable done_cv_;  // a job done
    std::vector<Job> slots_;           // a ring: [head_, tail_) queued, by sequence number
    // head_ and tail_ change on the calling thread only (tail_ under mu_).
    uint64_t head_ = 0;        // oldest not yet stored
    uint64_t tail_ = 0;        // next to queue
    uint64_t next_start_ = 0;  // oldest not yet started (under mu_)
    Compressor compressors_[2];
    std::unordered_set<ObjectId, ObjectIdHash> ids_;  // queued, not stored
};

}  // namespace dvol
