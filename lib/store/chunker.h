// Content-defined chunking (FastCDC with normalized chunking and a gear hash). Boundaries depend
// only on content, so an insertion early in a file moves few later boundaries, and the same
// bytes cut the same way on every machine (but see cuts_at: a re-read file keeps its old cuts
// where they are still valid ones).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace dvol {

struct ChunkerParams {
    // Measured in bench/ (RESULTS.md): larger chunks compress better (zstd sees more context)
    // and cost less per byte; 1 MiB keeps a database's scattered page writes from costing
    // more than borg's 2 MiB chunks.
    size_t min_size = 256 * 1024;
    size_t avg_size = 1024 * 1024;  // a power of two
    size_t max_size = 4 * 1024 * 1024;
};

class Chunker {
public:
    explicit Chunker(ChunkerParams p = {});

    // Length of the next chunk at the start of `data`. `data` must hold at least max_size()
    // bytes unless it is the end of the stream; the result is in [1, min(data.size(), max)].
    size_t next_cut(std::span<const std::byte> data) const;
    // Whether next_cut() could end a chunk of `len` bytes at the start of `data`: past the
    // minimum size where the hash meets its mask, or at the maximum size. Earlier cuts are not
    // looked for: a commit re-reading a file tries the cuts it had last time this way (see
    // chunk_file's `hints`), which costs 64 bytes of hashing instead of the whole chunk's.
    bool cuts_at(std::span<const std::byte> data, size_t len) const;
    size_t max_size() const { return p_.max_size; }

private:
    ChunkerParams p_;
    uint64_t mask_small_;  // stricter mask before the average size
    uint64_t mask_large_;  // looser mask after it
    size_t stripe_;        // bytes per stripe of the side-by-side scan
};

}  // namespace dvol
