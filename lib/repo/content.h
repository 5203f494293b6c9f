// File content as extents: building it while chunking a file, and walking it back in order
// (loading extent lists of large files one at a time, so memory stays bounded).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <unordered_set>

#include "base/error.h"
#include "base/parallel.h"
#include "object/tree.h"
#include "store/codec.h"
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

// Two threads and their state for reading, hashing and compressing chunks side by side; one
// per scan, reused across files (its helper thread lives as long as it does). It holds a
// second read buffer as large as chunk_file's.
// Its members are chunk_file's working state, not an interface.
struct ChunkWorkers {
    // With `two_threads` false, everything runs on the calling thread.
    explicit ChunkWorkers(bool two_threads = true) : pool_(two_threads) {}
    struct Piece {
        size_t start = 0;
        size_t length = 0;
        bool zero = false;
        bool store = false;  // new to the store: compress and append it
        ObjectId id;
        Codec codec = Codec::raw;
        std::vector<std::byte> stored;
    };
    ParallelFor pool_;
    Compressor compressors_[2];
    std::vector<Piece> pieces_[2];  // of the buffer being stored, and of the one being read
    std::vector<std::byte> spare_;  // the second read buffer
    std::unordered_set<ObjectId, ObjectIdHash> batch_ids_;
};

// Reads `fd` to its end, cutting it into chunks; chunks of zeros become holes. With a store,
// every chunk is put into it. Memory: two read buffers, independent of the file's size.
// `on_read`, when set, is called with the byte count of each read (progress reporting).
// `buffer`, when given, is the read buffer reused across calls (it is grown as needed), which
// spares a multi-MiB allocation per file. `workers`, when given, read, hash and compress on
// two threads (see ChunkWorkers); without, the call makes a one-thread set of its own.
Result<FileContent> chunk_file(int fd, const std::string& path, const Chunker& chunker, ObjectStore* store,
                               const std::function<void(uint64_t)>& on_read = {}, std::vector<std::byte>* buffer = nullptr,
                               ChunkWorkers* workers = nullptr);

// Streams a FileContent's extents with their file offsets.
class ExtentCursor {
public:
    ExtentCursor(ObjectStore& store, const FileContent& content) : store_(store), content_(content) {}
    // The next extent, or nullopt at the end.
    Result<std::optional<Extent>> next();
    uint64_t offset() const { return offset_; }  // offset of the extent last returned

private:
    ObjectStore& store_;
    const FileContent& content_;
    std::vector<Extent> list_;
    size_t list_index_ = 0;  // next list to load (indirect)
    size_t pos_ = 0;         // next extent in the current vector
    uint64_t offset_ = 0;
    uint64_t next_offset_ = 0;
};

// The whole content as bytes, or nullopt when it is larger than `limit`.
Result<std::optional<std::string>> read_content(ObjectStore& store, const FileContent& content, uint64_t size, uint64_t limit);

bool all_zero(std::span<const std::byte> data);

}  // namespace dvol
