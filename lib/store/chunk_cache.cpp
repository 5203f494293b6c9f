#include "store/chunk_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "base/fs.h"
#include "store/hash.h"

namespace dvol {

namespace {

// Larger than any object dvol writes (chunks are at most 4 MiB, trees and lists far less): a
// bigger file in the cache is not one of ours.
constexpr uint64_t kMaxObject = 64u << 20;

// The most ids the order of read-ahead objects in memory holds, taken ones included.
constexpr size_t kAheadOrder = 256;

// Direct writes of chunk files: the alignment of memory, offsets and lengths (a page, which
// every device's logical block divides), and the buffer each writing thread stages them in.
constexpr size_t kDirectAlign = 4096;
constexpr size_t kDirectStage = 1u << 20;

// A chunk file's trailer (docs/FORMAT.md, "The cache"): the chunk's length (u64 LE), the CRC-32C
// of the chunk's bytes and then of those 8 length bytes (u32 LE), and the magic "dvc1".
constexpr std::array<std::byte, 4> kChunkMagic{std::byte{'d'}, std::byte{'v'}, std::byte{'c'}, std::byte{'1'}};
static_assert(ChunkCache::kChunkTrailer == 8 + 4 + kChunkMagic.size());

std::array<std::byte, ChunkCache::kChunkTrailer> chunk_trailer(std::span<const std::byte> bytes) {
    std::array<std::byte, ChunkCache::kChunkTrailer> t{};
    uint64_t n = bytes.size();
    for (int i = 0; i < 8; ++i) t[i] = static_cast<std::byte>(n >> (8 * i));
    uint32_t crc = crc32c(std::span(t).first(8), crc32c(bytes));
    for (int i = 0; i < 4; ++i) t[8 + i] = static_cast<std::byte>(crc >> (8 * i));
    std::copy(kChunkMagic.begin(), kChunkMagic.end(), t.begin() + 12);
    return t;
}

// Whether `file` (a chunk file's whole contents) is a chunk of this format written whole: the
// magic, the length that makes the file's size, the CRC. A file cut short (a crash, a full disk)
// loses its trailer, or its size no longer agrees with the length; a torn write (blocks of old
// or zero bytes in it) fails the CRC.
bool chunk_file_ok(std::span<const std::byte> file) {
    if (file.size() < ChunkCache::kChunkTrailer) return false;
    auto body = file.first(file.size() - ChunkCache::kChunkTrailer);
    auto t = chunk_trailer(body);
    return std::equal(t.begin(), t.end(), file.end() - ChunkCache::kChunkTrailer);
}

}  // namespace

ChunkCache::ChunkCache(std::string dir, ObjectSource& upstream, Options options)
    : dir_(std::move(dir)), upstream_(upstream), options_(std::move(options)) {}

Result<std::unique_ptr<ChunkCache>> ChunkCache::open(const std::string& dir, ObjectSource& upstream, Options options) {
    std::unique_ptr<ChunkCache> c(new ChunkCache(dir, upstream, std::move(options)));
    DVOL_CHECK(make_dirs(dir + "/meta"));
    DVOL_CHECK(make_dirs(dir + "/chunks"));
    DVOL_CHECK(make_dirs(dir + "/tmp"));
    DVOL_CHECK(c->load_existing());
    for (unsigned i = 0; i < c->options_.prefetch_threads; ++i) c->workers_.emplace_back([p = c.get()] { p->prefetch_loop(); });
    return c;
}

ChunkCache::~ChunkCache() {
    {
        std::lock_guard lk(mu_);
        stopping_ = true;
        queue_.clear();
    }
    queue_cv_.notify_all();
    for (auto& t : workers_) t.join();
}

Status ChunkCache::load_existing() {
    // A crash may leave files being written in tmp/: they were never renamed, so never served.
    std::string tmp = dir_ + "/tmp";
    DVOL_TRY(auto tfd, open_file(tmp, O_RDONLY | O_DIRECTORY));
    DVOL_CHECK(remove_children_at(tfd.get(), tmp));

    std::string chunks = dir_ + "/chunks";
    DVOL_TRY(auto dfd, open_file(chunks, O_RDONLY | O_DIRECTORY));
    DVOL_TRY(auto names, list_dir(dfd.get(), chunks));
    struct Found {
        ObjectId id;
        uint64_t size;
        int64_t mtime_ns;
    };
    std::vector<Found> found;
    for (const auto& name : names) {
        struct stat st;
        std::optional<ObjectId> id;
        if (name.size() > kChunkSuffix.size() && name.ends_with(kChunkSuffix))
            id = ObjectId::from_hex(std::string_view(name).substr(0, name.size() - kChunkSuffix.size()));
        if (!id || ::fstatat(dfd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            static_cast<uint64_t>(st.st_size) > kMaxObject + kChunkTrailer) {
            // Not a cache file of this format (the plain `<hex>` files of the earlier one
            // included): nothing of ours to keep.
            (void)remove_entry_at(dfd.get(), name, chunks + "/" + name);
            continue;
        }
        // Counted by its chunk's length; the check of the trailer comes when it is read (a file
        // cut short, even to less than a trailer, is kept until then: it may also be one that
        // another process is writing).
        uint64_t size = static_cast<uint64_t>(st.st_size);
        found.push_back({*id, size > kChunkTrailer ? size - kChunkTrailer : 0, st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec});
    }
    std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.mtime_ns < b.mtime_ns; });
    std::lock_guard lk(mu_);
    for (const auto& f : found) {
        lru_.push_back(f.id);
        entries_[f.id] = Entry{f.size, std::prev(lru_.end())};
        stats_.used += f.size;
    }
    make_room(0);
    return {};
}

std::string ChunkCache::chunk_path(const ObjectId& id) const { return dir_ + "/chunks/" + id.hex() + std::string(kChunkSuffix); }
std::string ChunkCache::meta_path(const ObjectId& id) const { return dir_ + "/meta/" + id.hex(); }

bool ChunkCache::read_verified(const std::string& path, const ObjectId& id, std::vector<std::byte>& out, bool chunk) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) return false;
    struct stat st;
    uint64_t limit = kMaxObject + (chunk ? kChunkTrailer : 0);
    bool ok = ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) <= limit;
    if (ok) {
        out.resize(static_cast<size_t>(st.st_size));
        ok = static_cast<bool>(pread_exact(fd.get(), out, 0, path));
    }
    if (ok && chunk) {
        // The trailer, not a second SHA-256: the bytes were verified against `id` before this
        // file was written, and what can happen to the file since (a crash or a full disk
        // cutting it short, a torn write, a bad disk) the length and the CRC catch
        // (docs/DECISIONS.md, "Lazy volumes").
        ok = chunk_file_ok(out);
        if (ok) out.resize(out.size() - kChunkTrailer);
    } else if (ok) {
        ok = sha256(out) == id;
    }
    if (ok) return true;
    discard_damaged(path, id, chunk);
    return false;
}

void ChunkCache::discard_damaged(const std::string& path, const ObjectId& id, bool chunk) {
    // Damaged (cut short or torn by a crash, a bad disk): never served.
    ::unlink(path.c_str());
    {
        std::lock_guard lk(mu_);
        ++stats_.damaged;
        if (auto it = entries_.find(id); chunk && it != entries_.end()) {
            stats_.used -= it->second.size;
            lru_.erase(it->second.pos);
            entries_.erase(it);
        }
    }
    if (options_.log) options_.log(fmt::format("cache file {} failed verification: deleted, to be fetched again", path));
}

Result<bool> ChunkCache::has(const ObjectId& id) {
    if (pinned(id) || cached(id)) return true;
    return upstream_.has(id);
}

bool ChunkCache::pinned(const ObjectId& id) const { return path_exists(meta_path(id)); }

bool ChunkCache::cached(const ObjectId& id) {
    std::lock_guard lk(mu_);
    auto it = entries_.find(id);
    return it != entries_.end() && it->second.ready;
}

void ChunkCache::touch(const ObjectId& id) {
    std::lock_guard lk(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    lru_.splice(lru_.end(), lru_, it->second.pos);
    ++stats_.hits;
}

bool ChunkCache::take_ahead(const ObjectId& id, std::vector<std::byte>& out) {
    std::lock_guard lk(mu_);
    auto it = ahead_.find(id);
    if (it == ahead_.end()) return false;
    out = std::move(it->second);
    ahead_bytes_ -= out.size();
    ahead_.erase(it);
    while (!ahead_order_.empty() && !ahead_.contains(ahead_order_.front())) ahead_order_.pop_front();
    if (auto e = entries_.find(id); e != entries_.end()) lru_.splice(lru_.end(), lru_, e->second.pos);
    ++stats_.hits;
    return true;
}

Status ChunkCache::get(const ObjectId& id, std::vector<std::byte>& out) {
    if (take_ahead(id, out)) return {};
    if (read_verified(meta_path(id), id, out, false)) return {};
    if (cached(id) && read_verified(chunk_path(id), id, out, true)) {
        touch(id);
        // The order survives a restart through the files' mtimes.
        ::utimensat(AT_FDCWD, chunk_path(id).c_str(), nullptr, 0);
        return {};
    }
    return fetch(id, out);
}

Status ChunkCache::fetch(const ObjectId& id, std::vector<std::byte>& out) {
    std::shared_ptr<Flight> flight;
    bool leader = false;
    bool stored_since = false;
    {
        std::lock_guard lk(mu_);
        auto it = entries_.find(id);
        stored_since = it != entries_.end() && it->second.ready && !flights_.contains(id);
    }
    // Stored by a fetch that ended since get() looked: read it from there.
    if (stored_since && read_verified(chunk_path(id), id, out, true)) {
        touch(id);
        return {};
    }
    {
        std::unique_lock lk(mu_);
        auto it = flights_.find(id);
        if (it != flights_.end()) {
            flight = it->second;
        } else {
            flight = std::make_shared<Flight>();
            flights_.emplace(id, flight);
            leader = true;
        }
        if (!leader) {
            ++flight->waiters;
            flight_done_.wait(lk, [&] { return flight->done; });
            if (!flight->result) return flight->result;
            out = flight->bytes;
            return {};
        }
    }
    std::vector<std::byte> bytes;
    Status st = upstream_.get(id, bytes);
    land(id, flight, st, bytes, false);
    if (!st) return st;
    out = std::move(bytes);
    return {};
}

void ChunkCache::land(const ObjectId& id, const std::shared_ptr<Flight>& flight, Status& st, std::vector<std::byte>& bytes,
                      bool ahead) {
    // Upstream verifies (ObjectSource::get's promise); checked again here unless told that
    // upstream does (RemoteObjects hashes every record it decodes).
    if (st && !options_.trust_upstream && sha256(bytes) != id)
        st = make_error(Errc::corrupt, fmt::format("object {} fetched does not match its id", id.hex()));
    if (st) {
        if (auto stored = store(id, bytes); !stored && options_.log)
            options_.log(fmt::format("could not keep object {} in the cache: {}", id.hex(), stored.error().message));
    } else if (options_.log) {
        options_.log(fmt::format("fetching object {} failed: {}", id.hex(), st.error().message));
    }
    {
        std::lock_guard lk(mu_);
        if (st) {
            ++stats_.fetches;
            stats_.fetched_bytes += bytes.size();
        } else {
            ++stats_.failures;
        }
        flight->result = st;
        flight->done = true;
        // Waiters copy the bytes; the flight goes once they all have it (shared_ptr). A read
        // ahead's bytes go to its waiters, or else into memory for the get() to come.
        if (st && flight->waiters > 0) {
            if (ahead)
                flight->bytes = std::move(bytes);
            else
                flight->bytes = bytes;
        }
        flights_.erase(id);
        if (st && ahead && flight->waiters == 0 && options_.ahead_bound > 0 && !ahead_.contains(id)) {
            ahead_bytes_ += bytes.size();
            ahead_.emplace(id, std::move(bytes));
            ahead_order_.push_back(id);
            // The order also holds ids taken since (skipped here): at most kAheadOrder of them.
            while (!ahead_order_.empty() && (ahead_bytes_ > options_.ahead_bound || ahead_order_.size() > kAheadOrder)) {
                auto old = ahead_.find(ahead_order_.front());
                ahead_order_.pop_front();
                if (old == ahead_.end()) continue;  // taken by a get() already
                ahead_bytes_ -= old->second.size();
                ahead_.erase(old);
            }
        }
    }
    flight_done_.notify_all();
}

void ChunkCache::make_room(uint64_t need) {
    while (!lru_.empty() && stats_.used + need > options_.bound) {
        ObjectId victim = lru_.front();
        lru_.pop_front();
        auto it = entries_.find(victim);
        stats_.used -= it->second.size;
        entries_.erase(it);
        ::unlink(chunk_path(victim).c_str());
        ++stats_.evictions;
    }
}

Status ChunkCache::write_file(const std::string& path, std::span<const std::byte> bytes) {
    // Written whole under a temporary name, then renamed: a crash leaves either nothing at the
    // final name or all of it (and reads verify anyway).
    std::string tmp = fmt::format("{}/tmp/{}", dir_, random_name());
    {
        DVOL_TRY(auto fd, open_file(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (auto st = write_all(fd.get(), bytes, tmp); !st) {
            ::unlink(tmp.c_str());
            return st;
        }
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        Error e = errno_error("rename into place", path);
        ::unlink(tmp.c_str());
        return e;
    }
    return {};
}

Status ChunkCache::write_chunk(const std::string& path, std::span<const std::byte> bytes) {
    // In place, without a temporary name, a rename or an fsync: a file cut short or torn by a
    // crash fails its trailer's check when read, and until this write returns no reader opens
    // it (store()). O_TRUNC: what an earlier mount process left there and the cache no longer
    // counts.
    const int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW;
    // The whole blocks with O_DIRECT (docs/DECISIONS.md, "Lazy volumes"): the chunk is in the
    // mount's memory and, once read, in the kernel's page cache of the FUSE file already; a
    // buffered write would copy it into a third place, new page-cache pages, which cost more
    // than the rest of the fetch together. Staged through one aligned buffer per thread (direct
    // I/O wants aligned memory), reused from chunk to chunk. The tail and the trailer, less
    // than a block, are written through the page cache.
    size_t direct = options_.direct_writes ? bytes.size() / kDirectAlign * kDirectAlign : 0;
    UniqueFd fd;
    if (direct > 0) {
        fd.reset(::open(path.c_str(), flags | O_DIRECT, 0600));
        if (!fd.valid() && errno != EINVAL) return errno_error("create", path);
        if (!fd.valid()) direct = 0;  // a file system without direct I/O (tmpfs): buffered
    }
    if (!fd.valid()) {
        DVOL_TRY(fd, open_file(path, flags, 0600));
    }
    size_t done = 0;
    if (direct > 0) {
        struct Stage {
            std::byte* p = nullptr;
            ~Stage() { std::free(p); }
        };
        thread_local Stage stage;
        if (!stage.p) stage.p = static_cast<std::byte*>(std::aligned_alloc(kDirectAlign, kDirectStage));
        while (stage.p && done < direct) {
            size_t n = std::min(kDirectStage, direct - done);
            std::memcpy(stage.p, bytes.data() + done, n);
            ssize_t w = ::pwrite(fd.get(), stage.p, n, static_cast<off_t>(done));
            if (w < 0 && errno == EINTR) continue;
            // Refused (EINVAL: an alignment this device does not take) or short: the rest
            // goes through the page cache, from where this stopped.
            if (w < 0 && errno != EINVAL) return errno_error("write", path);
            if (w <= 0) break;
            done += static_cast<size_t>(w);
            if (static_cast<size_t>(w) < n) break;
        }
        int fl = ::fcntl(fd.get(), F_GETFL);
        if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl & ~O_DIRECT) != 0) return errno_error("fcntl", path);
    }
    auto trailer = chunk_trailer(bytes);
    DVOL_CHECK(pwrite_all(fd.get(), bytes.subspan(done), done, path));
    DVOL_CHECK(pwrite_all(fd.get(), trailer, bytes.size(), path));
    return {};
}

Status ChunkCache::store(const ObjectId& id, std::span<const std::byte> bytes) {
    {
        // Room is made before the file is written, so that the tier never holds more than the
        // bound, whatever the number of fetches writing at once.
        std::lock_guard lk(mu_);
        if (entries_.contains(id)) return {};
        make_room(bytes.size());
        lru_.push_back(id);
        entries_[id] = Entry{bytes.size(), std::prev(lru_.end()), false};
        stats_.used += bytes.size();
    }
    // Only this thread writes this file: the fetch of `id` is its flight until store() returns,
    // and a reader takes the file only once its entry is ready.
    Status st = write_chunk(chunk_path(id), bytes);
    std::lock_guard lk(mu_);
    auto it = entries_.find(id);
    if (st && it != entries_.end()) {
        it->second.ready = true;
        return st;
    }
    if (it != entries_.end()) {
        stats_.used -= it->second.size;
        lru_.erase(it->second.pos);
        entries_.erase(it);
    }
    // Failed, or evicted while it was written (make_room's unlink may have come before the
    // file existed): no file is left that the cache does not count.
    ::unlink(chunk_path(id).c_str());
    return st;
}

Status ChunkCache::pin(const ObjectId& id, std::span<const std::byte> bytes) {
    if (sha256(bytes) != id) return make_error(Errc::corrupt, fmt::format("object {} to keep does not match its id", id.hex()));
    if (pinned(id)) return {};
    return write_file(meta_path(id), bytes);
}

void ChunkCache::prefetch(std::span<const ObjectId> ids) {
    {
        std::lock_guard lk(mu_);
        for (const auto& id : ids) {
            if (queue_.size() >= options_.prefetch_queue) break;
            if (entries_.contains(id) || flights_.contains(id)) continue;
            if (std::find(queue_.begin(), queue_.end(), id) != queue_.end()) continue;
            queue_.push_back(id);
        }
    }
    queue_cv_.notify_all();
}

void ChunkCache::prefetch_loop() {
    for (;;) {
        // A batch: queued objects neither stored nor being fetched, each now a flight this
        // thread leads (a get() of one of them waits for it rather than fetching it again).
        std::vector<ObjectId> batch;
        std::vector<std::shared_ptr<Flight>> flights;
        {
            std::unique_lock lk(mu_);
            queue_cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            while (!queue_.empty() && batch.size() < std::max<size_t>(1, options_.prefetch_batch)) {
                ObjectId id = queue_.front();
                queue_.pop_front();
                if (entries_.contains(id) || flights_.contains(id)) continue;
                auto flight = std::make_shared<Flight>();
                flights_.emplace(id, flight);
                batch.push_back(id);
                flights.push_back(std::move(flight));
            }
        }
        std::vector<bool> landed(batch.size(), false);
        // A failure is logged by land(); the read that needs the object will say so.
        upstream_.get_many(batch, [&](const ObjectId& id, const Status& st, std::vector<std::byte>& bytes) {
            auto at = std::find(batch.begin(), batch.end(), id);
            if (at == batch.end() || landed[at - batch.begin()]) return;
            size_t k = static_cast<size_t>(at - batch.begin());
            landed[k] = true;
            Status verdict = st;
            land(id, flights[k], verdict, bytes, true);
        });
        for (size_t k = 0; k < batch.size(); ++k) {
            if (landed[k]) continue;
            Status missing = make_error(Errc::internal, fmt::format("object {} was asked for and not answered", batch[k].hex()));
            std::vector<std::byte> none;
            land(batch[k], flights[k], missing, none, false);
        }
    }
}

ChunkCache::Stats ChunkCache::stats() {
    std::lock_guard lk(mu_);
    return stats_;
}

}  // namespace dvol
