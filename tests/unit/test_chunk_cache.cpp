// store/chunk_cache.h: the bound and LRU order, one fetch for concurrent readers, verification of
// what comes from upstream and of what is on disk, and what a crash leaves behind.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "store/chunk_cache.h"
#include "store/hash.h"
#include "support.h"

using namespace dvol;
using namespace dvol::test;

namespace {

// Objects in memory; counts gets; can hold gets until released, fail, or serve wrong bytes.
class Upstream : public ObjectSource {
public:
    ObjectId put(std::vector<std::byte> bytes) {
        std::lock_guard lk(mu_);
        ObjectId id = sha256(bytes);
        objects_[id] = std::move(bytes);
        return id;
    }
    Result<bool> has(const ObjectId& id) override {
        std::lock_guard lk(mu_);
        return objects_.contains(id);
    }
    Status get(const ObjectId& id, std::vector<std::byte>& out) override {
        std::unique_lock lk(mu_);
        ++gets;
        ++inside;
        cv_.notify_all();
        cv_.wait(lk, [&] { return !hold; });
        --inside;
        if (fail) return make_error(Errc::unavailable, "the remote is down");
        auto it = objects_.find(id);
        if (it == objects_.end()) return make_error(Errc::not_found, "no such object");
        out = it->second;
        if (damage || damage_id == id) out[0] ^= std::byte{1};  // a source that breaks its promise
        return {};
    }
    using ObjectSource::get;
    void get_many(std::span<const ObjectId> ids, const ObjectFn& fn) override {
        {
            std::lock_guard lk(mu_);
            batches.push_back(ids.size());
        }
        ObjectSource::get_many(ids, fn);
    }
    void release() {
        std::lock_guard lk(mu_);
        hold = false;
        cv_.notify_all();
    }
    void wait_inside(int n) {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return inside >= n; });
    }

    std::atomic<int> gets{0};
    bool hold = false;
    bool fail = false;
    bool damage = false;
    std::optional<ObjectId> damage_id;  // only this object served wrong
    std::vector<size_t> batches;        // the size of each get_many

private:
    std::mutex mu_;
    std::condition_variable cv_;
    int inside = 0;
    std::map<ObjectId, std::vector<std::byte>> objects_;
};

uint64_t dir_bytes(const std::string& dir) {
    uint64_t total = 0;
    auto fd = open_file(dir, O_RDONLY | O_DIRECTORY);
    REQUIRE(fd);
    auto names = list_dir(fd->get(), dir);
    REQUIRE(names);
    for (const auto& n : *names) {
        struct stat st;
        REQUIRE(::stat((dir + "/" + n).c_str(), &st) == 0);
        total += static_cast<uint64_t>(st.st_size);
    }
    return total;
}

// The file of chunks/ that holds `id`.
std::string chunk_file(const std::string& dir, const ObjectId& id) {
    return dir + "/chunks/" + id.hex() + std::string(ChunkCache::kChunkSuffix);
}

ChunkCache::Options options(uint64_t bound) {
    ChunkCache::Options o;
    o.bound = bound;
    o.prefetch_threads = 1;
    return o;
}

}  // namespace

TEST_CASE("chunk cache: stays within its bound, least recently used out first", "[chunk_cache]") {
    TempDir tmp;
    Upstream up;
    std::vector<ObjectId> ids;
    for (int i = 0; i < 6; ++i) ids.push_back(up.put(random_bytes(1000, i)));
    auto cache = ChunkCache::open(tmp / "c", up, options(3000));
    REQUIRE(cache);
    auto& c = **cache;
    for (int i = 0; i < 3; ++i) REQUIRE(c.get(ids[i]));
    CHECK(up.gets == 3);
    REQUIRE(c.get(ids[0]));  // 0 is now the most recently used: 1 goes next
    CHECK(up.gets == 3);
    for (int i = 3; i < 6; ++i) {
        REQUIRE(c.get(ids[i]));
        CHECK(dir_bytes(tmp / "c/chunks") <= 3000 + 3 * ChunkCache::kChunkTrailer);
        CHECK(c.stats().used <= 3000);
    }
    CHECK(c.stats().evictions == 3);
    CHECK_FALSE(c.cached(ids[1]));
    CHECK_FALSE(c.cached(ids[2]));
    CHECK_FALSE(c.cached(ids[0]));  // then 0, then 2... three evicted: 1, 2, 0
    CHECK(c.cached(ids[5]));
    int before = up.gets;
    auto got = c.get(ids[5]);
    REQUIRE(got);
    CHECK(*got == random_bytes(1000, 5));
    CHECK(up.gets == before);

    SECTION("an object larger than the bound is kept alone") {
        ObjectId big = up.put(random_bytes(5000, 99));
        REQUIRE(c.get(big));
        CHECK(c.stats().used == 5000);
        CHECK(dir_bytes(tmp / "c/chunks") == 5000 + ChunkCache::kChunkTrailer);
    }
    SECTION("reopened, the cache keeps what it held, within a smaller bound") {
        cache->reset();
        auto again = ChunkCache::open(tmp / "c", up, options(2000));
        REQUIRE(again);
        CHECK((*again)->stats().used <= 2000);
        int gets = up.gets;
        REQUIRE((*again)->get(ids[5]));  // the most recent survives
        CHECK(up.gets == gets);
    }
}

TEST_CASE("chunk cache: concurrent reads of one missing object fetch it once", "[chunk_cache]") {
    TempDir tmp;
    Upstream up;
    auto data = random_bytes(4096, 7);
    ObjectId id = up.put(data);
    auto cache = ChunkCache::open(tmp / "c", up, options(1 << 20));
    REQUIRE(cache);
    up.hold = true;
    std::vector<std::thread> readers;
    std::atomic<int> right{0};
    for (int i = 0; i < 8; ++i)
        readers.emplace_back([&] {
            auto got = (*cache)->get(id);
            if (got && *got == data) ++right;
        });
    up.wait_inside(1);
    // The others are waiting on the first one's fetch, or still on their way to it: either way
    // none of them reaches upstream while one fetch is in flight, nor after it stored the object.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    up.release();
    for (auto& t : readers) t.join();
    CHECK(right == 8);
    CHECK(up.gets == 1);

    SECTION("a failed fetch is shared by its waiters, and the next read tries again") {
        ObjectId other = up.put(random_bytes(100, 8));
        up.fail = true;
        auto got = (*cache)->get(other);
        REQUIRE_FALSE(got);
        CHECK(got.error().code == Errc::unavailable);
        CHECK_FALSE((*cache)->cached(other));
        up.fail = false;
        CHECK((*cache)->get(other));
    }
}

TEST_CASE("chunk cache: nothing unverified is served or kept", "[chunk_cache]") {
    TempDir tmp;
    Upstream up;
    auto data = random_bytes(2048, 3);
    ObjectId id = up.put(data);
    auto cache = ChunkCache::open(tmp / "c", up, options(1 << 20));
    REQUIRE(cache);

    SECTION("wrong bytes from upstream") {
        up.damage = true;
        auto got = (*cache)->get(id);
        REQUIRE_FALSE(got);
        CHECK(got.error().code == Errc::corrupt);
        CHECK_FALSE((*cache)->cached(id));
        CHECK(dir_bytes(tmp / "c/chunks") == 0);
    }
    SECTION("a cache file damaged on disk is deleted and fetched again") {
        REQUIRE((*cache)->get(id));
        {
            std::fstream f(chunk_file(tmp / "c", id), std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(100);
            f.put('\x55');
            f.put('\xaa');
        }
        auto got = (*cache)->get(id);
        REQUIRE(got);
        CHECK(*got == data);
        CHECK(up.gets == 2);
        CHECK((*cache)->stats().damaged == 1);
    }
    SECTION("pin refuses bytes that are not the object's") {
        auto st = (*cache)->pin(id, random_bytes(2048, 4));
        REQUIRE_FALSE(st);
        CHECK(st.error().code == Errc::corrupt);
        CHECK_FALSE((*cache)->pinned(id));
        REQUIRE((*cache)->pin(id, data));
        CHECK((*cache)->pinned(id));
        int gets = up.gets;
        REQUIRE((*cache)->get(id));
        CHECK(up.gets == gets);
    }
}

TEST_CASE("chunk cache: what a crash leaves is cleaned or verified, never served", "[chunk_cache]") {
    TempDir tmp;
    Upstream up;
    auto data = random_bytes(8192, 11);
    ObjectId id = up.put(data);
    REQUIRE(make_dirs(tmp / "c/chunks"));
    REQUIRE(make_dirs(tmp / "c/tmp"));
    // A file being written to tmp/ (the kept tier's way), a chunk file of this format cut short
    // (its trailer gone, as a crash while it was written leaves it), a file of the earlier
    // format (plain bytes named by the id), and something that is not a cache file.
    std::ofstream(tmp / "c/tmp/0123abcd") << "half a chunk";
    std::ofstream(chunk_file(tmp / "c", id)).write(reinterpret_cast<const char*>(data.data()), 4096);
    ObjectId old = up.put(random_bytes(3000, 12));
    std::ofstream(tmp / ("c/chunks/" + old.hex())) << "plain bytes of the earlier format";
    std::ofstream(tmp / "c/chunks/not-a-chunk") << "junk";
    auto cache = ChunkCache::open(tmp / "c", up, options(1 << 20));
    REQUIRE(cache);
    CHECK(dir_bytes(tmp / "c/tmp") == 0);
    CHECK_FALSE(path_exists(tmp / "c/chunks/not-a-chunk"));
    CHECK_FALSE(path_exists(tmp / ("c/chunks/" + old.hex())));
    CHECK_FALSE((*cache)->cached(old));
    auto got = (*cache)->get(id);
    REQUIRE(got);
    CHECK(*got == data);
    CHECK(up.gets == 1);
    CHECK((*cache)->stats().damaged == 1);
    CHECK(dir_bytes(tmp / "c/chunks") == data.size() + ChunkCache::kChunkTrailer);
    got = (*cache)->get(old);
    REQUIRE(got);
    CHECK(sha256(*got) == old);
    CHECK(up.gets == 2);
}

TEST_CASE("chunk cache: a chunk file cut short or torn is fetched again, never served", "[chunk_cache]") {
    TempDir tmp;
    Upstream up;
    // Written with O_DIRECT for its whole blocks (where the file system takes it), or buffered.
    bool direct = GENERATE(true, false);
    // Three whole blocks and a tail; larger than the 1 MiB staging buffer, in pieces.
    auto data = random_bytes(GENERATE(3 * 4096 + 100, (1 << 20) + 3 * 4096 + 5), 13);
    ObjectId id = up.put(data);
    {
        auto o = options(4 << 20);
        o.direct_writes = direct;
        auto cache = ChunkCache::open(tmp / "c", up, o);
        REQUIRE(cache);
        REQUIRE((*cache)->get(id));
    }
    std::string file = chunk_file(tmp / "c", id);
    REQUIRE(path_exists(file));
    const uint64_t whole = data.size() + ChunkCache::kChunkTrailer;
    REQUIRE(dir_bytes(tmp / "c/chunks") == whole);
    auto overwrite = [&](uint64_t at, std::vector<char> bytes) {
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(at));
        f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    };
    // Each change below is what a crash (or the disk) can leave; the cache is then opened again,
    // as the next mount process does.
    SECTION("cut short by one byte") { REQUIRE(::truncate(file.c_str(), static_cast<off_t>(whole - 1)) == 0); }
    SECTION("cut short to its first block: no trailer") { REQUIRE(::truncate(file.c_str(), 4096) == 0); }
    SECTION("cut short to nothing") { REQUIRE(::truncate(file.c_str(), 0) == 0); }
    SECTION("torn: a block of zeros in the middle, the trailer intact") { overwrite(4096, std::vector<char>(4096, 0)); }
    SECTION("torn: a block of zeros at the end, where the trailer was") {
        overwrite(whole - 100, std::vector<char>(100, 0));
    }
    SECTION("one bit flipped") {
        std::ifstream in(file, std::ios::binary);
        in.seekg(5000);
        char c = 0;
        in.get(c);
        overwrite(5000, {static_cast<char>(c ^ 1)});
    }
    SECTION("longer than its trailer says: bytes appended") {
        std::ofstream(file, std::ios::app | std::ios::binary) << "appended";
    }
    int gets = up.gets;
    auto cache = ChunkCache::open(tmp / "c", up, options(4 << 20));
    REQUIRE(cache);
    CHECK((*cache)->cached(id));  // counted at open, checked when read
    auto got = (*cache)->get(id);
    REQUIRE(got);
    CHECK(*got == data);
    CHECK(up.gets == gets + 1);
    CHECK((*cache)->stats().damaged == 1);
    // Written again whole: the next read is served from it.
    CHECK(dir_bytes(tmp / "c/chunks") == whole);
    got = (*cache)->get(id);
    REQUIRE(got);
    CHECK(*got == data);
    CHECK(up.gets == gets + 1);
}

TEST_CASE("chunk cache: with trust_upstream, what upstream hands over is not hashed again", "[chunk_cache]") {
    // The remote's RemoteObjects hashes every record it decodes: the lazy mount tells the cache,
    // which then serves and stores what upstream verified without a second SHA-256. Shown here by
    // an upstream that breaks that promise, whose bytes then pass (and only then).
    TempDir tmp;
    Upstream up;
    auto data = random_bytes(2048, 14);
    ObjectId id = up.put(data);
    auto o = options(1 << 20);
    o.trust_upstream = true;
    auto cache = ChunkCache::open(tmp / "c", up, o);
    REQUIRE(cache);
    up.damage = true;
    auto got = (*cache)->get(id);
    REQUIRE(got);
    CHECK(*got != data);
    // What the cache file holds is what was stored: its own check (the trailer) passes.
    up.damage = false;
    auto again = (*cache)->get(id);
    REQUIRE(again);
    CHECK(*again == *got);
    CHECK(up.gets == 1);
}

TEST_CASE("chunk cache: prefetched objects are there for the read that follows", "[chunk_cache]") {
    TempDir tmp;
    Upstream up;
    std::vector<ObjectId> ids;
    for (int i = 0; i < 4; ++i) ids.push_back(up.put(random_bytes(1000, 20 + i)));
    auto cache = ChunkCache::open(tmp / "c", up, options(1 << 20));
    REQUIRE(cache);
    (*cache)->prefetch(ids);
    for (int i = 0; i < 2000 && (*cache)->stats().fetches < 4; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE((*cache)->stats().fetches == 4);
    for (const auto& id : ids) REQUIRE((*cache)->get(id));
    CHECK(up.gets == 4);
}

TEST_CASE("chunk cache: a read ahead asks upstream for its objects together; a damaged one is not kept", "[chunk_cache]") {
    TempDir tmp;
    Upstream up;
    std::vector<ObjectId> ids;
    for (int i = 0; i < 6; ++i) ids.push_back(up.put(random_bytes(1000, 40 + i)));
    up.damage_id = ids[2];
    auto o = options(1 << 20);
    o.prefetch_batch = 4;
    auto cache = ChunkCache::open(tmp / "c", up, o);
    REQUIRE(cache);
    auto& c = **cache;
    c.prefetch(ids);
    for (int i = 0; i < 2000 && c.stats().fetches + c.stats().failures < 6; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE(c.stats().fetches == 5);
    CHECK(c.stats().failures == 1);
    // Queued at once, taken 4 then 2 by the one thread: two requests for six objects.
    CHECK(up.batches == std::vector<size_t>{4, 2});
    for (int i = 0; i < 6; ++i) CHECK(c.cached(ids[i]) == (i != 2));
    CHECK(dir_bytes(tmp / "c/chunks") == 5 * (1000 + ChunkCache::kChunkTrailer));
    // The damaged one is fetched again by the read that needs it, and fails as long as upstream
    // serves it wrong; the others are served from the cache.
    CHECK_FALSE(c.get(ids[2]));
    up.damage_id.reset();
    int before = up.gets;
    for (const auto& id : ids) {
        auto got = c.get(id);
        REQUIRE(got);
        CHECK(sha256(*got) == id);
    }
    CHECK(up.gets == before + 1);
}

TEST_CASE("chunk cache: what a read ahead fetched is served once from memory, within ahead_bound", "[chunk_cache]") {
    TempDir tmp;
    Upstream up;
    std::vector<ObjectId> ids;
    for (int i = 0; i < 4; ++i) ids.push_back(up.put(random_bytes(1000, 60 + i)));
    auto o = options(1 << 20);
    o.ahead_bound = 2500;  // two of the four
    auto cache = ChunkCache::open(tmp / "c", up, o);
    REQUIRE(cache);
    auto& c = **cache;
    c.prefetch(ids);
    for (int i = 0; i < 2000 && c.stats().fetches < 4; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE(c.stats().fetches == 4);
    // Without the files, what is served comes from memory: the last two fetched, once each.
    for (const auto& id : ids) REQUIRE(::unlink(chunk_file(tmp / "c", id).c_str()) == 0);
    for (int i : {2, 3}) {
        auto got = c.get(ids[i]);
        REQUIRE(got);
        CHECK(sha256(*got) == ids[i]);
    }
    CHECK(up.gets == 4);
    // The others, and those two again, come from upstream (their files are gone).
    for (int i : {0, 1, 2}) {
        auto got = c.get(ids[i]);
        REQUIRE(got);
        CHECK(sha256(*got) == ids[i]);
    }
    CHECK(up.gets == 7);
}
