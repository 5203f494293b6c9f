#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "object/tree.h"
#include "repo/content.h"
#include "repo/readers.h"
#include "support.h"

using namespace dvol;
using dvol::test::random_bytes;
using dvol::test::StoreFixture;
using dvol::test::TempDir;

namespace {

Extent chunk(std::string_view tag, uint64_t len) { return Extent{sha256(tag), len, false}; }
Extent hole(uint64_t len) { return Extent{{}, len, true}; }

std::vector<std::pair<uint64_t, Extent>> walk(ObjectStore& store, const FileContent& c) {
    std::vector<std::pair<uint64_t, Extent>> out;
    ExtentCursor cur(store, c);
    for (;;) {
        auto x = cur.next();
        REQUIRE(x);
        if (!*x) break;
        out.emplace_back(cur.offset(), **x);
    }
    return out;
}

// With workers, `finish` stores what they still hold before returning.
FileContent chunk_path(const std::string& path, ObjectStore* store, ChunkWorkers* workers = nullptr, bool finish = true,
                       std::span<const uint64_t> hints = {}) {
    auto fd = open_file(path, O_RDONLY);
    REQUIRE(fd);
    Chunker chunker;
    PreviousCuts previous{std::vector<uint64_t>(hints.begin(), hints.end()), {}, nullptr};
    auto c = chunk_file(fd->get(), path, chunker, store, {}, workers, hints.empty() ? nullptr : &previous);
    REQUIRE(c);
    if (workers && store && finish) REQUIRE(workers->finish(*store));
    return std::move(*c);
}

uint64_t total_length(const FileContent& c) {
    uint64_t t = 0;
    if (c.indirect)
        for (const auto& l : c.lists) t += l.length;
    else
        for (const auto& x : c.extents) t += x.length;
    return t;
}

}  // namespace

TEST_CASE("ContentBuilder merges adjacent holes", "[content]") {
    ContentBuilder b(nullptr);
    for (const auto& x : {hole(10), hole(20), chunk("a", 100), hole(5), hole(5), hole(1), chunk("b", 7), chunk("c", 8)})
        REQUIRE(b.add(x));
    CHECK(b.size() == 156);
    auto c = b.finish();
    REQUIRE(c);
    CHECK_FALSE(c->indirect);
    std::vector<Extent> expected = {hole(30), chunk("a", 100), hole(11), chunk("b", 7), chunk("c", 8)};
    CHECK(c->extents == expected);
    // The builder starts over after finish().
    CHECK(b.size() == 0);
    REQUIRE(b.add(hole(3)));
    auto again = b.finish();
    REQUIRE(again);
    CHECK(again->extents == std::vector<Extent>{hole(3)});
}

TEST_CASE("ContentBuilder keeps up to kMaxExtentsPerList extents inline", "[content]") {
    ContentBuilder b(nullptr);
    for (size_t i = 0; i < kMaxExtentsPerList; ++i) REQUIRE(b.add(chunk(std::to_string(i), 10)));
    auto c = b.finish();
    REQUIRE(c);
    CHECK_FALSE(c->indirect);
    CHECK(c->extents.size() == kMaxExtentsPerList);

    ContentBuilder h(nullptr);
    for (size_t i = 0; i + 1 < kMaxExtentsPerList; ++i) REQUIRE(h.add(chunk(std::to_string(i), 10)));
    REQUIRE(h.add(hole(10)));
    REQUIRE(h.add(hole(10)));  // merges with the full list's last hole: still at the limit
    auto ch = h.finish();
    REQUIRE(ch);
    CHECK_FALSE(ch->indirect);
    CHECK(ch->extents.size() == kMaxExtentsPerList);
    CHECK(ch->extents.back() == hole(20));
}

TEST_CASE("ContentBuilder goes indirect above kMaxExtentsPerList and ExtentCursor walks it back", "[content]") {
    StoreFixture f;
    const size_t n = 2 * kMaxExtentsPerList + 123;
    std::vector<Extent> added;
    ContentBuilder b(f.store.get());
    for (size_t i = 0; i < n; ++i) {
        // Alternate chunks and holes of varying length so offsets are not a simple multiple.
        Extent x = i % 2 ? hole(1 + i % 17) : chunk(std::to_string(i), 100 + i);
        added.push_back(x);
        REQUIRE(b.add(x));
    }
    uint64_t total = 0;
    for (const auto& x : added) total += x.length;
    CHECK(b.size() == total);
    auto c = b.finish();
    REQUIRE(c);
    REQUIRE(c->indirect);
    CHECK(c->extents.empty());
    REQUIRE(c->lists.size() == 3);
    CHECK(c->lists[0].count == kMaxExtentsPerList);
    CHECK(c->lists[1].count == kMaxExtentsPerList);
    CHECK(c->lists[2].count == 123);
    CHECK(total_length(*c) == total);
    for (const auto& l : c->lists) {
        auto has = f.store->has(l.id);
        REQUIRE(has);
        CHECK(*has);
    }

    auto walked = walk(*f.store, *c);
    REQUIRE(walked.size() == n);
    uint64_t off = 0;
    for (size_t i = 0; i < n; ++i) {
        INFO("extent " << i);
        CHECK(walked[i].first == off);
        CHECK(walked[i].second == added[i]);
        off += added[i].length;
    }

    // Without a store the same ids come out, and nothing is written.
    StoreFixture g;
    ContentBuilder dry(nullptr);
    for (const auto& x : added) REQUIRE(dry.add(x));
    auto d = dry.finish();
    REQUIRE(d);
    CHECK(*d == *c);
    CHECK(g.store->stats().objects_written == 0);
    auto missing = g.store->has(c->lists[0].id);
    REQUIRE(missing);
    CHECK_FALSE(*missing);
}

TEST_CASE("ExtentCursor reports missing and inconsistent extent lists", "[content]") {
    StoreFixture f;
    std::vector<Extent> xs = {chunk("a", 10), hole(5)};
    auto bytes = encode_extent_list(xs);
    auto id = f.store->put(bytes);
    REQUIRE(id);

    FileContent missing;
    missing.indirect = true;
    missing.lists = {ExtentListRef{sha256("not stored"), 15, 2}};
    ExtentCursor a(*f.store, missing);
    auto ra = a.next();
    REQUIRE_FALSE(ra);
    CHECK(ra.error().code == Errc::not_found);

    FileContent wrong_count;
    wrong_count.indirect = true;
    wrong_count.lists = {ExtentListRef{*id, 15, 3}};
    ExtentCursor b(*f.store, wrong_count);
    auto rb = b.next();
    REQUIRE_FALSE(rb);
    CHECK(rb.error().code == Errc::corrupt);

    auto not_a_list = f.store->put(dvol::test::bytes_of("plain chunk bytes"));
    REQUIRE(not_a_list);
    FileContent garbage;
    garbage.indirect = true;
    garbage.lists = {ExtentListRef{*not_a_list, 17, 1}};
    ExtentCursor g(*f.store, garbage);
    auto rg = g.next();
    REQUIRE_FALSE(rg);
    CHECK(rg.error().code == Errc::corrupt);
}

TEST_CASE("chunk_file turns a big zero run into one hole extent", "[content]") {
    StoreFixture f;
    TempDir d;
    auto head = random_bytes(2 << 20, 21), tail = random_bytes(2 << 20, 22);
    std::vector<std::byte> data = head;
    data.resize(data.size() + (24 << 20));
    data.insert(data.end(), tail.begin(), tail.end());
    dvol::test::write_file(d / "f", data);

    auto c = chunk_path(d / "f", f.store.get());
    REQUIRE_FALSE(c.indirect);
    CHECK(total_length(c) == data.size());
    size_t holes = 0;
    uint64_t hole_bytes = 0;
    for (const auto& x : c.extents) {
        CHECK(x.length > 0);
        if (x.hole) {
            ++holes;
            hole_bytes += x.length;
        }
    }
    CHECK(holes == 1);
    CHECK(hole_bytes >= (24u << 20) - 2 * Chunker().max_size());
    CHECK(hole_bytes <= (24u << 20));
    // Holes are not stored: the store holds about the random data only.
    CHECK(f.store->stats().bytes_written < (4u << 20) + (512u << 10));

    auto back = read_content(*f.store, c, data.size(), 64 << 20);
    REQUIRE(back);
    REQUIRE(*back);
    CHECK(**back == dvol::test::string_of(data));
}

TEST_CASE("chunk_file of a sparse file and of an all-zero file", "[content]") {
    StoreFixture f;
    TempDir d;
    {
        auto fd = open_file(d / "sparse", O_WRONLY | O_CREAT, 0644);
        REQUIRE(fd);
        REQUIRE(::ftruncate(fd->get(), 3 << 20) == 0);
    }
    auto c = chunk_path(d / "sparse", f.store.get());
    REQUIRE(c.extents.size() == 1);
    CHECK(c.extents[0] == hole(3 << 20));
    CHECK(f.store->stats().objects_written == 0);

    dvol::test::write_file(d / "empty", "");
    auto e = chunk_path(d / "empty", f.store.get());
    CHECK(e == FileContent{});
}

TEST_CASE("chunk_file without a store computes the same ids and stores nothing", "[content]") {
    StoreFixture f;
    TempDir d;
    auto data = random_bytes(24 << 20, 23);
    dvol::test::write_file(d / "f", data);
    auto dry = chunk_path(d / "f", nullptr);
    CHECK(f.store->stats().objects_written == 0);
    auto wet = chunk_path(d / "f", f.store.get());
    CHECK(dry == wet);
    CHECK(wet.extents.size() > 10);
    CHECK(f.store->stats().objects_written == wet.extents.size());
    for (const auto& x : wet.extents) {
        auto got = f.store->get(x.id);
        REQUIRE(got);
        CHECK(got->size() == x.length);
    }
}

TEST_CASE("chunk_file with two workers gives the same content, stores each chunk once", "[content]") {
    TempDir d;
    // Random data, a repeated block (duplicate chunks inside one read buffer), zeros, and a
    // tail larger than one read buffer.
    auto block = random_bytes(5 << 20, 31);
    std::vector<std::byte> data = random_bytes(5 << 20, 32);
    for (int i = 0; i < 4; ++i) data.insert(data.end(), block.begin(), block.end());
    data.resize(data.size() + (9 << 20));
    auto tail = random_bytes(6 << 20, 33);
    data.insert(data.end(), tail.begin(), tail.end());
    dvol::test::write_file(d / "f", data);

    StoreFixture serial, parallel;
    auto one = chunk_path(d / "f", serial.store.get());
    ChunkWorkers workers;
    auto two = chunk_path(d / "f", parallel.store.get(), &workers);
    CHECK(one == two);
    CHECK(parallel.store->stats().objects_written == serial.store->stats().objects_written);
    CHECK(parallel.store->stats().bytes_written == serial.store->stats().bytes_written);
    auto dry = chunk_path(d / "f", nullptr, &workers);
    CHECK(dry == one);
    // Again into the same store: everything is known, nothing new is written.
    uint64_t before = parallel.store->stats().objects_written;
    CHECK(chunk_path(d / "f", parallel.store.get(), &workers) == one);
    CHECK(parallel.store->stats().objects_written == before);
    REQUIRE(parallel.store->flush());
    auto back = read_content(*parallel.store, two, data.size(), 64 << 20);
    REQUIRE(back);
    REQUIRE(*back);
    CHECK(**back == dvol::test::string_of(data));
}

TEST_CASE("chunk_file with two workers on a sparse file with data runs", "[content]") {
    TempDir d;
    {
        auto fd = open_file(d / "sparse", O_RDWR | O_CREAT, 0644);
        REQUIRE(fd);
        REQUIRE(::ftruncate(fd->get(), 64 << 20) == 0);
        auto run1 = random_bytes(5 << 20, 41), run2 = random_bytes(300 << 10, 42);
        REQUIRE(pwrite_all(fd->get(), run1, 8 << 20, "sparse"));
        REQUIRE(pwrite_all(fd->get(), run2, 40 << 20, "sparse"));
    }
    StoreFixture serial, parallel;
    ChunkWorkers workers;
    auto one = chunk_path(d / "sparse", serial.store.get());
    auto two = chunk_path(d / "sparse", parallel.store.get(), &workers);
    CHECK(one == two);
    CHECK(total_length(two) == (64u << 20));
    CHECK(parallel.store->stats().bytes_written == serial.store->stats().bytes_written);
}

TEST_CASE("read_content round trip and limit", "[content]") {
    StoreFixture f;
    auto a = f.store->put(dvol::test::bytes_of("hello "));
    auto b = f.store->put(dvol::test::bytes_of("world"));
    REQUIRE(a);
    REQUIRE(b);
    FileContent c;
    c.extents = {Extent{*a, 6, false}, hole(3), Extent{*b, 5, false}};
    std::string expected = std::string("hello ") + std::string(3, '\0') + "world";

    auto full = read_content(*f.store, c, 14, 100);
    REQUIRE(full);
    REQUIRE(*full);
    CHECK(**full == expected);
    auto exact = read_content(*f.store, c, 14, 14);
    REQUIRE(exact);
    REQUIRE(*exact);
    CHECK(**exact == expected);
    auto small = read_content(*f.store, c, 14, 13);
    REQUIRE(small);
    CHECK_FALSE(*small);
    // A size that lies about the extents cannot make the read exceed the limit.
    auto lying = read_content(*f.store, c, 1, 8);
    REQUIRE(lying);
    CHECK_FALSE(*lying);
    auto none = read_content(*f.store, FileContent{}, 0, 0);
    REQUIRE(none);
    REQUIRE(*none);
    CHECK((*none)->empty());

    // Indirect content reads back too.
    ContentBuilder builder(f.store.get());
    std::string want;
    for (size_t i = 0; i < kMaxExtentsPerList + 10; ++i) {
        std::string piece = "<" + std::to_string(i) + ">";
        auto id = f.store->put(dvol::test::bytes_of(piece));
        REQUIRE(id);
        REQUIRE(builder.add(Extent{*id, piece.size(), false}));
        want += piece;
    }
    auto ind = builder.finish();
    REQUIRE(ind);
    REQUIRE(ind->indirect);
    auto got = read_content(*f.store, *ind, want.size(), 1 << 20);
    REQUIRE(got);
    REQUIRE(*got);
    CHECK(**got == want);

    // A missing chunk is an error, not short data.
    FileContent broken;
    broken.extents = {Extent{sha256("absent"), 6, false}};
    auto r = read_content(*f.store, broken, 6, 100);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::not_found);
}

TEST_CASE("all_zero", "[content]") {
    std::vector<std::byte> z(10000);
    CHECK(all_zero(z));
    CHECK(all_zero({}));
    for (size_t pos : {size_t{0}, size_t{4095}, size_t{4096}, size_t{9999}}) {
        auto nz = z;
        nz[pos] = std::byte{1};
        CHECK_FALSE(all_zero(nz));
    }
}

TEST_CASE("chunk_file with workers over many files stores what the one-thread path stores", "[content]") {
    // More files than StoreBehind has slots; small ones (copied into their job) and ones over
    // 64 KiB (read from the buffer they lie in, which is then not reused until stored), with
    // duplicates across files queued at once.
    TempDir d;
    std::vector<std::string> paths;
    for (int i = 0; i < 120; ++i) {
        int j = i % 40;  // files i and i + 40 are the same
        size_t size = j % 3 == 0 ? (200u << 10) + j * 997u : 1000u + j * 331u;
        auto data = random_bytes(size, 100 + j);
        paths.push_back(d / ("f" + std::to_string(i)));
        dvol::test::write_file(paths.back(), data);
    }
    StoreFixture serial, parallel;
    std::vector<FileContent> one, two;
    for (const auto& p : paths) one.push_back(chunk_path(p, serial.store.get()));
    {
        ChunkWorkers workers;
        for (const auto& p : paths) two.push_back(chunk_path(p, parallel.store.get(), &workers, false));
        REQUIRE(workers.finish(*parallel.store));
    }
    CHECK(one == two);
    CHECK(parallel.store->stats().objects_written == serial.store->stats().objects_written);
    CHECK(parallel.store->stats().bytes_written == serial.store->stats().bytes_written);
    CHECK(parallel.store->stats().objects_written == 40u);
    REQUIRE(parallel.store->flush());
    for (size_t i = 0; i < paths.size(); ++i) {
        auto back = read_content(*parallel.store, two[i], 1 << 20, 1 << 20);
        REQUIRE(back);
        REQUIRE(*back);
        CHECK(**back == dvol::test::read_file(paths[i]));
    }
}

namespace {

// The end offsets of `c`'s extents: what a commit passes as hints when it re-reads the file.
std::vector<uint64_t> cuts_of(ObjectStore& store, const FileContent& c) {
    std::vector<uint64_t> out;
    for (const auto& [off, x] : walk(store, c)) out.push_back(off + x.length);
    return out;
}

}  // namespace

TEST_CASE("chunk_file with the previous cuts as hints: unchanged parts cut as before, the bytes are what was read", "[content]") {
    StoreFixture f;
    TempDir d;
    auto data = random_bytes(40 << 20, 43);
    dvol::test::write_file(d / "f", data);
    ChunkWorkers workers;
    auto before = chunk_path(d / "f", f.store.get(), &workers);
    auto hints = cuts_of(*f.store, before);
    REQUIRE(hints.size() > 10);
    CHECK(chunk_path(d / "f", f.store.get(), &workers, true, hints) == before);  // unchanged: the same

    // 100 KiB overwritten in place in the middle, as a database writes its pages.
    size_t at = 20 << 20;
    auto patch = random_bytes(100 << 10, 44);
    std::copy(patch.begin(), patch.end(), data.begin() + static_cast<std::ptrdiff_t>(at));
    dvol::test::write_file(d / "f", data);
    auto fresh = chunk_path(d / "f", f.store.get(), &workers);
    auto hinted = chunk_path(d / "f", f.store.get(), &workers, true, hints);
    auto a = walk(*f.store, fresh), b = walk(*f.store, hinted);
    // The chunks before the change are the same either way, and so are those after, once
    // the fresh scan is back in step.
    REQUIRE(a.size() > 10);
    CHECK(a.front() == b.front());
    CHECK(a.back() == b.back());
    size_t same = 0;
    for (const auto& x : b) same += std::find(a.begin(), a.end(), x) != a.end();
    CHECK(same + 3 >= b.size());
    auto read = read_content(*f.store, hinted, data.size(), data.size());
    REQUIRE(read);
    REQUIRE(*read);
    CHECK(**read == dvol::test::string_of(data));
    for (const auto& [off, x] : b) CHECK(x.length <= Chunker().max_size());
}

TEST_CASE("chunk_file hints: a cut the chunker would not make is ignored, the file's end is taken", "[content]") {
    StoreFixture f;
    TempDir d;
    auto data = random_bytes(3 << 20, 45);  // under the maximum chunk size
    dvol::test::write_file(d / "f", data);
    auto fresh = chunk_path(d / "f", f.store.get());
    REQUIRE(fresh.extents.size() >= 2);  // the chunker cuts this file
    // Offsets the chunker would not cut at change nothing.
    std::vector<uint64_t> wrong = {300000, 700001, 1500000};
    CHECK(chunk_path(d / "f", f.store.get(), nullptr, true, wrong) == fresh);
    // A hint at the end of the file makes its one chunk end there (as when the file was one
    // chunk last time and has been written to in place since).
    std::vector<uint64_t> end = {data.size()};
    auto one = chunk_path(d / "f", f.store.get(), nullptr, true, end);
    REQUIRE(one.extents.size() == 1);
    CHECK(one.extents[0].length == data.size());
    CHECK(one.extents[0].id == sha256(data));
}

namespace {

// A file's previous content as a commit passes it when re-reading the file: every extent's
// end and chunk id, readable from `store`.
PreviousCuts previous_of(ObjectStore& store, const FileContent& c) {
    PreviousCuts p;
    for (const auto& [off, x] : walk(store, c)) {
        p.ends.push_back(off + x.length);
        p.ids.push_back(x.hole ? ObjectId{} : x.id);
    }
    p.source = &store;
    return p;
}

FileContent rechunk(const std::string& path, ObjectStore* store, ChunkWorkers* workers, const PreviousCuts& previous) {
    auto fd = open_file(path, O_RDONLY);
    REQUIRE(fd);
    Chunker chunker;
    auto c = chunk_file(fd->get(), path, chunker, store, {}, workers, &previous);
    REQUIRE(c);
    if (workers && store) REQUIRE(workers->finish(*store));
    return std::move(*c);
}

// Stores `bytes` under the id of other bytes: a damaged store whose record still decodes.
ObjectId store_under_wrong_id(ObjectStore& store, std::span<const std::byte> bytes) {
    ObjectId wrong = sha256("not these bytes");
    REQUIRE(store.put_encoded(wrong, Codec::raw, bytes, static_cast<uint32_t>(bytes.size())));
    REQUIRE(store.flush());
    return wrong;
}

}  // namespace

TEST_CASE("chunk_file compares a chunk that spans a previous extent with the stored one instead of hashing it", "[content]") {
    StoreFixture f;
    TempDir d;
    auto data = random_bytes(100 << 10, 46);  // one chunk
    dvol::test::write_file(d / "f", data);
    // The previous extent's record holds these very bytes, under an id that is not their hash:
    // only a comparison, not a hash, gives that id back.
    ObjectId wrong = store_under_wrong_id(*f.store, data);
    PreviousCuts previous{{data.size()}, {wrong}, f.store.get()};
    for (bool threads : {false, true}) {
        ChunkWorkers workers(threads);
        auto c = rechunk(d / "f", f.store.get(), &workers, previous);
        REQUIRE(c.extents.size() == 1);
        CHECK(c.extents[0].id == wrong);
        // Reading it back re-hashes it: the damage is found there, never passed on as data.
        auto read = read_content(*f.store, c, data.size(), data.size());
        REQUIRE_FALSE(read);
        CHECK(read.error().code == Errc::corrupt);
    }
    // Different bytes under the same previous extent are hashed.
    auto other = random_bytes(100 << 10, 47);
    dvol::test::write_file(d / "f", other);
    auto c = rechunk(d / "f", f.store.get(), nullptr, previous);
    REQUIRE(c.extents.size() == 1);
    CHECK(c.extents[0].id == sha256(other));
}

TEST_CASE("chunk_file with previous chunks: the same content as hashing, changed in place or not", "[content]") {
    StoreFixture f;
    TempDir d;
    auto data = random_bytes(40 << 20, 48);
    // Half of it compressible, so both raw and compressed records are compared.
    for (size_t i = 0; i < data.size() / 2; ++i) data[i] = static_cast<std::byte>((i / 4096) % 7 == 0 ? i & 0xff : 0x20);
    dvol::test::write_file(d / "f", data);
    ChunkWorkers workers;
    auto before = chunk_path(d / "f", f.store.get(), &workers);
    auto previous = previous_of(*f.store, before);
    REQUIRE(previous.ends.size() > 10);
    CHECK(rechunk(d / "f", f.store.get(), &workers, previous) == before);

    // 100 KiB overwritten in two places: the result is what cutting at the previous cuts and
    // hashing every chunk gives.
    for (size_t at : {size_t{5} << 20, size_t{30} << 20}) {
        auto patch = random_bytes(100 << 10, at);
        std::copy(patch.begin(), patch.end(), data.begin() + static_cast<std::ptrdiff_t>(at));
    }
    dvol::test::write_file(d / "f", data);
    auto hashed = chunk_path(d / "f", f.store.get(), &workers, true, previous.ends);
    auto compared = rechunk(d / "f", f.store.get(), &workers, previous);
    CHECK(compared == hashed);
    auto read = read_content(*f.store, compared, data.size(), data.size());
    REQUIRE(read);
    REQUIRE(*read);
    CHECK(**read == dvol::test::string_of(data));
}

TEST_CASE("chunk_file compares only with records the page cache holds", "[content]") {
    StoreFixture f;
    TempDir d;
    auto data = random_bytes(100 << 10, 49);
    dvol::test::write_file(d / "f", data);
    ObjectId wrong = store_under_wrong_id(*f.store, data);
    // Drop the (fsynced, clean) pack from the page cache. Whether it went is asked of mincore,
    // which reads nothing: a probe by read (even RWF_NOWAIT) starts the readahead that brings
    // the record back before the rechunk looks.
    std::string packs = f.dir / "objects/packs";
    int evicted = 0, files = 0;
    for (const auto& e : std::filesystem::directory_iterator(packs)) {
        auto fd = open_file(e.path().string(), O_RDONLY);
        REQUIRE(fd);
        ++files;
        size_t size = std::filesystem::file_size(e.path());
        REQUIRE(size > 0);
        void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd->get(), 0);
        REQUIRE(map != MAP_FAILED);
        std::vector<unsigned char> resident((size + 4095) / 4096);
        bool gone = false;
        for (int attempt = 0; attempt < 5 && !gone; ++attempt) {
            ::posix_fadvise(fd->get(), 0, 0, POSIX_FADV_DONTNEED);
            gone = ::mincore(map, size, resident.data()) == 0 &&
                   std::none_of(resident.begin(), resident.end(), [](unsigned char r) { return r & 1; });
        }
        ::munmap(map, size);
        if (gone) ++evicted;
    }
    REQUIRE(files == 1);
    if (evicted == 0) {
        WARN("the file system under " << packs << " keeps the pack in memory; the uncached case is not tested here");
        return;
    }
    PreviousCuts previous{{data.size()}, {wrong}, f.store.get()};
    auto c = rechunk(d / "f", f.store.get(), nullptr, previous);
    REQUIRE(c.extents.size() == 1);
    CHECK(c.extents[0].id == sha256(data));  // hashed: the record was not read from the disk
}

TEST_CASE("BigBuffer: the size asked, writable to its end, on a huge page boundary, moved not copied", "[content]") {
    dvol::BigBuffer b((5u << 20) + 123);
    REQUIRE(b.size() == (5u << 20) + 123);
    CHECK(reinterpret_cast<uintptr_t>(b.data()) % (2u << 20) == 0);
    std::memset(b.data(), 0xab, b.size());
    CHECK(b.data()[b.size() - 1] == std::byte{0xab});
    std::byte* at = b.data();
    dvol::BigBuffer moved(std::move(b));
    CHECK(moved.data() == at);
    CHECK(b.data() == nullptr);
    CHECK(b.size() == 0);
    b = std::move(moved);
    CHECK(b.data() == at);
    CHECK(b.span().size() == (5u << 20) + 123);
    dvol::BigBuffer empty;
    CHECK(empty.size() == 0);
}

TEST_CASE("advise_huge_pages: a hint on the whole huge pages inside a range, which keeps its bytes", "[content]") {
    std::vector<std::byte> v((6u << 20) + 5, std::byte{0x5a});
    dvol::advise_huge_pages(v.data() + 1, v.size() - 1);  // unaligned at both ends
    dvol::advise_huge_pages(v.data(), 100);                // no whole huge page inside
    dvol::advise_huge_pages(v.data(), 0);
    CHECK(std::all_of(v.begin(), v.end(), [](std::byte b) { return b == std::byte{0x5a}; }));
    v.back() = std::byte{1};
    CHECK(v.back() == std::byte{1});
}

TEST_CASE("reserve_huge: grows the capacity at once, keeping the contents; nothing when it is enough", "[content]") {
    std::vector<std::byte> v(10, std::byte{7});
    dvol::reserve_huge(v, 5u << 20);
    CHECK(v.capacity() >= (5u << 20));
    CHECK(v.size() == 10);
    CHECK(std::all_of(v.begin(), v.end(), [](std::byte b) { return b == std::byte{7}; }));
    const std::byte* at = v.data();
    dvol::reserve_huge(v, 1u << 20);
    CHECK(v.data() == at);
}
