#include "repo/content.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "base/fs.h"

namespace dvol {

bool all_zero(std::span<const std::byte> data) {
    static const std::byte zeros[4096] = {};
    while (!data.empty()) {
        size_t n = std::min(data.size(), sizeof zeros);
        if (std::memcmp(data.data(), zeros, n) != 0) return false;
        data = data.subspan(n);
    }
    return true;
}

Status ContentBuilder::add(const Extent& x) {
    size_ += x.length;
    if (x.hole && !pending_.empty() && pending_.back().hole) {
        pending_.back().length += x.length;
        return {};
    }
    // Only spill once a further extent arrives, so a trailing hole can still merge.
    if (pending_.size() == kMaxExtentsPerList) DVOL_CHECK(spill());
    pending_.push_back(x);
    return {};
}

Status ContentBuilder::spill() {
    auto bytes = encode_extent_list(pending_);
    ObjectId id = sha256(bytes);
    if (store_) DVOL_CHECK(store_->put(id, bytes));
    uint64_t len = 0;
    for (const auto& x : pending_) len += x.length;
    content_.indirect = true;
    content_.lists.push_back(ExtentListRef{id, len, pending_.size()});
    pending_.clear();
    return {};
}

Result<FileContent> ContentBuilder::finish() {
    if (content_.indirect) {
        if (!pending_.empty()) DVOL_CHECK(spill());
    } else {
        content_.extents = std::move(pending_);
    }
    FileContent out = std::move(content_);
    content_ = FileContent();
    pending_.clear();
    size_ = 0;
    return out;
}

// The chunks cut from one read buffer: hashed on two threads (while the next buffer is read
// and cut), then looked up, and those new to the store queued to be compressed and stored
// behind (see StoreBehind). The store and the builder are used by the calling thread only.
struct ChunkBatch {
    ChunkBatch(ChunkWorkers& workers, int slot) : w(workers), pieces(workers.pieces_[slot]) {}
    ChunkWorkers& w;
    std::vector<ChunkWorkers::Piece>& pieces;
    std::span<const std::byte> buf;
    size_t count = 0;

    void clear(std::span<const std::byte> in) {
        buf = in;
        count = 0;
    }
    void add(size_t start, size_t length, const ObjectId* previous) {
        if (count == pieces.size()) pieces.emplace_back();
        auto& p = pieces[count++];
        p.start = start;
        p.length = length;
        p.previous = previous;
        p.compare = p.matched = false;
    }
    std::span<const std::byte> bytes(const ChunkWorkers::Piece& p) const { return buf.subspan(p.start, p.length); }
    // Thread-safe for distinct i (and distinct `buffers`).
    void hash(size_t i, ObjectStore::CompareBuffers& buffers) {
        auto& p = pieces[i];
        if (p.compare && ObjectStore::holds(p.record, *p.previous, bytes(p), buffers)) {
            p.matched = true;  // a stored chunk is never all zeros: those are holes
            p.zero = false;
            p.id = *p.previous;
            return;
        }
        p.zero = all_zero(bytes(p));
        if (!p.zero) p.id = sha256(bytes(p));
    }

    // `tag` names the read buffer the chunks lie in (StoreBehind::release).
    Status store_all(ObjectStore* store, ContentBuilder& builder, int tag) {
        for (size_t i = 0; i < count; ++i) {
            auto& p = pieces[i];
            if (store && !p.zero && !p.matched && !w.behind_.queued(p.id)) {
                DVOL_TRY(bool present, store->has(p.id));
                if (!present) DVOL_CHECK(w.behind_.queue(*store, p.id, bytes(p), tag));
            }
            DVOL_CHECK(builder.add(p.zero ? Extent{ObjectId{}, p.length, true} : Extent{p.id, p.length, false}));
        }
        count = 0;
        return store ? w.behind_.store_ready(*store) : Status{};
    }
};

namespace {

struct Region {
    int fd;
    const std::string& path;
    const Chunker& chunker;
    ObjectStore* store;
    const std::function<void(uint64_t)>& on_read;
    size_t buf_size;
    ContentBuilder& builder;
    ChunkWorkers& workers;
    const PreviousCuts* previous;  // or null
    size_t next_hint = 0;          // the first previous cut not behind the chunk being cut
    // Comparisons with previous chunks in this file so far: while mismatches do not outnumber
    // matches by more than kSlack, chunks are compared (see plan_compares).
    static constexpr uint64_t kSlack = 2;
    uint64_t matches = 0;
    uint64_t mismatches = 0;

    // One read buffer's worth of the region: bytes [0, have) of `buf`, the chunks cut from
    // them (into `batch`) ending at `start`; the tail [start, have) goes to the next stage.
    struct Stage {
        BigBuffer* buf = nullptr;
        int tag = 0;  // which of the workers' buffers
        size_t have = 0;
        size_t start = 0;
        bool done = false;
        uint64_t bytes_read = 0;
        Status status;
    };

    // The length of the chunk at `pos` (file offset) of `data` (the bytes from there to the end
    // of the buffer) when the first previous cut past `pos` is a cut there, or 0. The file's
    // end is one when the data ends there too. When the chunk spans exactly a previous extent
    // that held a chunk, `same` := that chunk's id (else null).
    size_t hinted_cut(std::span<const std::byte> data, uint64_t pos, bool at_end, const ObjectId*& same) {
        same = nullptr;
        if (!previous) return 0;
        const auto& ends = previous->ends;
        while (next_hint < ends.size() && ends[next_hint] <= pos) ++next_hint;
        if (next_hint == ends.size()) return 0;
        uint64_t len = ends[next_hint] - pos;
        if (len > data.size() || len > chunker.max_size()) return 0;
        if (!(at_end && len == data.size()) && !chunker.cuts_at(data, static_cast<size_t>(len))) return 0;
        uint64_t begin = next_hint == 0 ? 0 : ends[next_hint - 1];
        if (begin == pos && next_hint < previous->ids.size() && previous->ids[next_hint] != ObjectId{}) same = &previous->ids[next_hint];
        return static_cast<size_t>(len);
    }

    // Picks the chunks of `batch` to compare with their previous chunk instead of hashing, and
    // finds those chunks' records. Comparing costs a fraction of hashing (half for a record
    // zstd decompresses, a quarter for a raw one) and is wasted when the chunk differs; so a
    // file compares while it keeps finding matches, and one changed all over stops after
    // kSlack mismatches. Calling thread only (the store).
    Status plan_compares(ChunkBatch& batch) {
        if (!previous || !previous->source) return {};
        uint64_t planned = 0;
        for (size_t i = 0; i < batch.count; ++i) {
            auto& p = batch.pieces[i];
            if (!p.previous || mismatches + planned >= matches + kSlack) continue;
            DVOL_TRY(auto record, previous->source->locate(*p.previous));
            if (!record) continue;  // gone from the store (gc): hash it
            p.record = *record;
            p.compare = true;
            ++planned;
        }
        return {};
    }

    void count_compares(const ChunkBatch& batch) {
        for (size_t i = 0; i < batch.count; ++i) {
            const auto& p = batch.pieces[i];
            if (p.compare) ++(p.matched ? matches : mismatches);
        }
    }

    // Reads once into s.buf after the `carried` bytes already there, and cuts what can be cut.
    // Touches only s, `batch`, `off`, the hint cursor and the file: it may run on the helper
    // thread (never two at once).
    void read_and_cut(Stage& s, size_t carried, uint64_t& off, uint64_t end, ChunkBatch& batch) {
        auto b = s.buf->span();
        uint64_t base = off - carried;  // the file offset of b[0]
        s.have = carried;
        s.start = 0;
        if (s.have < chunker.max_size()) {
            uint64_t room = std::min<uint64_t>(b.size() - s.have, end - off);
            auto n = pread_some(fd, b.subspan(s.have, static_cast<size_t>(room)), off, path);
            if (!n) {
                s.status = std::move(n).error();
                return;
            }
            s.have += *n;
            off += *n;
            s.bytes_read = *n;
            if (*n < room || off == end) s.done = true;
        }
        batch.clear(b);
        while (s.have - s.start >= chunker.max_size() || (s.done && s.start < s.have)) {
            auto rest = std::span<const std::byte>(b).subspan(s.start, s.have - s.start);
            const ObjectId* same = nullptr;
            size_t cut = hinted_cut(rest, base + s.start, s.done, same);
            if (!cut) cut = chunker.next_cut(rest);
            batch.add(s.start, cut, same);
            s.start += cut;
        }
    }

    // The next of the workers' read buffers, once no queued chunk reads from it.
    Status take_buffer(Stage& s) {
        s = Stage{};
        s.tag = workers.next_buffer_;
        workers.next_buffer_ = (s.tag + 1) % ChunkWorkers::kBuffers;
        if (store) DVOL_CHECK(workers.behind_.release(*store, s.tag));
        s.buf = &workers.buffers_[s.tag];
        if (s.buf->size() < buf_size) *s.buf = BigBuffer(buf_size);
        return {};
    }

    // Chunks the bytes from `off` up to `end` (or the end of the file, whichever comes first)
    // and returns the offset reached. Chunks of zeros become holes. The read buffers are used
    // in turn, so that the next one is read and cut while this one's chunks are hashed, and
    // the one before is still being compressed.
    Result<uint64_t> chunk(uint64_t off, uint64_t end) {
        ChunkBatch batches[2] = {ChunkBatch(workers, 0), ChunkBatch(workers, 1)};
        int cur = 0;
        Stage stages[2];
        DVOL_CHECK(take_buffer(stages[0]));
        read_and_cut(stages[0], 0, off, end, batches[0]);
        DVOL_CHECK(std::move(stages[0].status));
        if (on_read && stages[0].bytes_read > 0) on_read(stages[0].bytes_read);
        for (;;) {
            Stage& s = stages[cur];
            Stage& next = stages[1 - cur];
            bool more = !s.done;
            if (more) DVOL_CHECK(take_buffer(next));
            size_t carried = s.have - s.start;
            DVOL_CHECK(plan_compares(batches[cur]));
            // Item 0 carries this buffer's tail over to the next one, reads it and cuts it;
            // items 1.. hash this buffer's chunks (which only read it, so the copy can run
            // meanwhile).
            workers.pool_.run(batches[cur].count + 1, [&](size_t i, int worker) {
                if (i > 0) {
                    batches[cur].hash(i - 1, workers.compare_[worker]);
                } else if (more) {
                    std::memcpy(next.buf->data(), s.buf->data() + s.start, carried);
                    read_and_cut(next, carried, off, end, batches[1 - cur]);
                }
            });
            count_compares(batches[cur]);
            DVOL_CHECK(batches[cur].store_all(store, builder, s.tag));
            if (!more) return off;
            DVOL_CHECK(std::move(next.status));
            if (on_read && next.bytes_read > 0) on_read(next.bytes_read);
            cur = 1 - cur;
        }
    }
};

}  // namespace

Result<FileContent> chunk_file(int fd, const std::string& path, const Chunker& chunker, ObjectStore* store,
                               const std::function<void(uint64_t)>& on_read, ChunkWorkers* workers,
                               const PreviousCuts* previous) {
    constexpr size_t kRead = 8u << 20;
    std::optional<ChunkWorkers> one_thread;
    if (!workers) workers = &one_thread.emplace(false);
    ContentBuilder builder(store);
    Region region{fd, path, chunker, store, on_read, kRead + chunker.max_size(), builder, *workers, previous};

    struct stat st;
    if (::fstat(fd, &st) != 0) return errno_error("stat", path);
    uint64_t size = static_cast<uint64_t>(st.st_size);
    bool sparse = static_cast<uint64_t>(st.st_blocks) * 512 < size;
    if (!sparse) {
        DVOL_TRY(uint64_t reached, region.chunk(0, UINT64_MAX));
        (void)reached;
        return builder.finish();
    }
    // A sparse file: holes the file system knows of are recorded without reading them, so a
    // 10 GiB file holding 1 MiB of data costs 1 MiB of reading.
    uint64_t off = 0;
    for (;;) {
        off_t data = ::lseek(fd, static_cast<off_t>(off), SEEK_DATA);
        if (data < 0 && errno == ENXIO) {  // no data after off: a hole to the end
            if (size > off) DVOL_CHECK(builder.add(Extent{ObjectId{}, size - off, true}));
            break;
        }
        if (data < 0 && errno == EINVAL) {  // no SEEK_DATA here: read the rest
            DVOL_TRY(uint64_t reached, region.chunk(off, UINT64_MAX));
            (void)reached;
            break;
        }
        if (data < 0) return errno_error("find data in", path);
        if (static_cast<uint64_t>(data) > off) DVOL_CHECK(builder.add(Extent{ObjectId{}, static_cast<uint64_t>(data) - off, true}));
        off = static_cast<uint64_t>(data);
        off_t hole = ::lseek(fd, static_cast<off_t>(off), SEEK_HOLE);
        if (hole < 0) return errno_error("find holes in", path);
        DVOL_TRY(uint64_t reached, region.chunk(off, static_cast<uint64_t>(hole)));
        if (reached < static_cast<uint64_t>(hole)) break;  // the file shrank meanwhile
        off = reached;
    }
    return builder.finish();
}

}  // namespace dvol
