// File content as extents, built while chunking a file: the write side of commit (reading
// content back is repo/readers.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/big_buffer.h"
#include "base/error.h"
#include "base/parallel.h"
#include "object/tree.h"
#include "repo/store_behind.h"
#include "store/chunker.h"
#include "store/object_store.h"

namespace dvol {

// Accumulates extents into a canonical FileContent: adjacent holes merge; more than
// kMaxExtentsPerList extents spill into extent-list objects. With a null store the list ids
// are computed but nothing is stored (status and diff of the live directory).
class ContentBuilder {
public:
    explicit ContentBuilder(ObjectStore* store) : store_(store) {}
    Status add(const Extent& x);
    Result<FileContent> finish();
    uint64_t size() const { return size_; }

private:
    Status spill();
    ObjectStore* store_;
    FileContent content_;
    std::vector<Extent> pending_;
    uint64_t size_ = 0;
};

// The threads and state for reading, hashing, compressing and storing chunks side by side; one
// per scan, reused across files (its helper thread lives as long as it does). Hashing runs on
// the calling thread and a helper; chunks new to the store are compressed behind, as the
// pool's background work, while the next ones are read and hashed (see StoreBehind), so a
// chunk may still be queued when chunk_file returns: finish() stores them all.
// Its other members are chunk_file's working state, not an interface.
struct ChunkWorkers {
    // With `threads` false, everything runs on the calling thread, in turn.
    explicit ChunkWorkers(bool threads = true)
        : behind_(&pool_), pool_(threads, [this](int worker) { return behind_.work(worker); }) {}
    // Stores every chunk still queued; call it before relying on the store holding them.
    Status finish(ObjectStore& store) { return behind_.finish(store); }
    // The two threads, for other work of the same scan between files (ParallelFor::run).
    ParallelFor& threads() { return pool_; }

    static constexpr int kBuffers = 3;  // being hashed, being read, and one being compressed
    struct Piece {
        size_t start = 0;
        size_t length = 0;
        bool zero = false;
        ObjectId id;
        // The chunk that held exactly these bytes' range last time (see PreviousCuts): when
        // `compare` is set, the stored chunk is compared with these bytes instead of hashing
        // them, and `matched` says whether they were the same.
        const ObjectId* previous = nullptr;
        bool compare = false;
        bool matched = false;
        ObjectStore::RecordRef record;
    };
    std::vector<Piece> pieces_[2];  // of the buffer being stored, and of the one being read
    // Read buffers, taken in turn. Not zero-filled: a page is touched only when a read fills
    // it, so a commit of small files pays for no 12 MiB memset and its page faults; on huge
    // pages where the kernel gives them (BigBuffer).
    BigBuffer buffers_[kBuffers];
    int next_buffer_ = 0;
    ObjectStore::CompareBuffers compare_[2];  // per worker
    StoreBehind behind_;
    ParallelFor pool_;  // last: its helper stops before what background work reads goes
};

// What a file held when it was last read, so that reading it again costs less: the end offset
// of each of its extents, ascending, and, when `source` is set, the chunk id of each (a zero
// id for a hole), readable from `source`.
struct PreviousCuts {
    std::vector<uint64_t> ends;
    std::vector<ObjectId> ids;  // empty, or one per end
    ObjectStore* source = nullptr;
};

// Reads `fd` to its end, cutting it into chunks; chunks of zeros become holes. With a store,
// every chunk is put into it: at once without `workers`, and by `workers.finish()` at the
// latest with them. Memory: the workers' read buffers, independent of the file's size.
// `on_read`, when set, is called with the byte count of each read (progress reporting).
// `workers`, when given, read, hash and compress on their threads and are reused across
// files (sparing multi-MiB buffers per file); without, the call makes a one-thread set.
// `previous`, when given, is what the file held when last read. Its cuts are tried before
// the chunker scans: a chunk ends at the next previous cut when the chunker could cut there
// (Chunker::cuts_at) or the file ends there. Unchanged parts of a re-read file thus cut as
// before without scanning; a changed chunk keeps its old end where a fresh scan might have
// found an earlier cut. A chunk that spans exactly a previous extent is then compared with
// that extent's stored chunk, when the page cache holds it, rather than hashed (reading it
// back and comparing costs a fraction of SHA-256); after a few mismatches in a file the
// comparing stops, so a file changed all over costs at most those few reads more.
Result<FileContent> chunk_file(int fd, const std::string& path, const Chunker& chunker, ObjectStore* store,
                               const std::function<void(uint64_t)>& on_read = {}, ChunkWorkers* workers = nullptr,
                               const PreviousCuts* previous = nullptr);

bool all_zero(std::span<const std::byte> data);

}  // namespace dvol
