#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "meta/db.h"
#include "meta/schema.h"
#include "store/object_store.h"
#include "support.h"

using namespace dvol;
using dvol::test::bytes_of;
using dvol::test::random_bytes;
using dvol::test::StoreFixture;
using dvol::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> files_in(const std::string& dir, std::string_view suffix = ".pack") {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().string().ends_with(suffix)) out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::byte> compressible(size_t n) {
    std::string s;
    while (s.size() < n) s += "row " + std::to_string(s.size()) + ": some repeated text, some repeated text\n";
    s.resize(n);
    return bytes_of(s);
}

void flip_byte(const std::string& path, uint64_t offset) {
    auto fd = open_file(path, O_RDWR);
    REQUIRE(fd);
    std::byte b[1];
    REQUIRE(pread_exact(fd->get(), b, offset, path));
    b[0] ^= std::byte{0x5a};
    REQUIRE(pwrite_all(fd->get(), b, offset, path));
}

// Two records in one flushed pack: `raw` random bytes (stored raw) and `packed` compressible
// ones (stored compressed).
struct RawAndPacked {
    std::vector<std::byte> raw, packed;
    ObjectId raw_id, packed_id;
};
RawAndPacked put_raw_and_packed(StoreFixture& f, size_t raw_size, uint64_t seed, size_t packed_size) {
    RawAndPacked out{random_bytes(raw_size, seed), compressible(packed_size), {}, {}};
    auto raw_id = f.store->put(out.raw);
    auto packed_id = f.store->put(out.packed);
    REQUIRE(raw_id);
    REQUIRE(packed_id);
    REQUIRE(f.store->flush());
    out.raw_id = *raw_id;
    out.packed_id = *packed_id;
    return out;
}

void require_corrupt_naming(Result<std::vector<std::byte>> r, const ObjectId& id) {
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
    INFO("message: " << r.error().message);
    CHECK(r.error().message.find(id.hex()) != std::string::npos);
}

}  // namespace

TEST_CASE("put and get round-trip before and after flush", "[object_store]") {
    StoreFixture f;
    std::vector<std::vector<std::byte>> objects = {{}, bytes_of("x"), random_bytes(300 << 10, 1), compressible(1 << 20),
                                                   random_bytes(4097, 2)};
    std::vector<ObjectId> ids;
    for (const auto& o : objects) {
        auto id = f.store->put(o);
        REQUIRE(id);
        CHECK(*id == sha256(o));
        ids.push_back(*id);
    }
    CHECK(f.store->stats().objects_written == objects.size());
    for (size_t i = 0; i < objects.size(); ++i) {
        auto got = f.store->get(ids[i]);
        REQUIRE(got);
        CHECK(*got == objects[i]);
        auto has = f.store->has(ids[i]);
        REQUIRE(has);
        CHECK(*has);
    }
    REQUIRE(f.store->flush());
    CHECK(files_in(f.dir / "objects/packs").size() == 1);
    CHECK(files_in(f.dir / "tmp").empty());
    std::vector<std::byte> buf = random_bytes(5 << 20, 3);  // a reused buffer larger than any object
    for (size_t i = 0; i < objects.size(); ++i) {
        REQUIRE(f.store->get(ids[i], buf));
        CHECK(buf == objects[i]);
    }
}

TEST_CASE("compressible objects are stored compressed", "[object_store]") {
    StoreFixture f;
    auto data = compressible(1 << 20);
    REQUIRE(f.store->put(data));
    CHECK(f.store->stats().bytes_written < data.size() / 4);
    auto random = random_bytes(100000, 4);
    uint64_t before = f.store->stats().bytes_written;
    REQUIRE(f.store->put(random));
    CHECK(f.store->stats().bytes_written - before == random.size() + kRecordHeaderSize);
}

TEST_CASE("a second put of the same bytes writes nothing", "[object_store]") {
    StoreFixture f;
    auto data = random_bytes(70000, 5);
    auto a = f.store->put(data);
    REQUIRE(a);
    auto stats = f.store->stats();
    auto b = f.store->put(data);
    REQUIRE(b);
    CHECK(*a == *b);
    CHECK(f.store->stats().objects_written == stats.objects_written);
    CHECK(f.store->stats().bytes_written == stats.bytes_written);
    REQUIRE(f.store->flush());
    REQUIRE(f.store->put(sha256(data), data));
    CHECK(f.store->stats().objects_written == stats.objects_written);
    // Nothing staged, so flushing creates no second pack.
    REQUIRE(f.store->flush());
    CHECK(files_in(f.dir / "objects/packs").size() == 1);

    // Another store on the same pool deduplicates against the index.
    auto other = f.open_store();
    REQUIRE(other->put(data));
    CHECK(other->stats().objects_written == 0);
    CHECK(other->stats().bytes_written == 0);
}

TEST_CASE("a new store on the same pool sees flushed objects", "[object_store]") {
    StoreFixture f;
    auto d1 = random_bytes(1000, 6), d2 = compressible(50000);
    auto id1 = f.store->put(d1);
    auto id2 = f.store->put(d2);
    REQUIRE(id1);
    REQUIRE(id2);
    REQUIRE(f.store->flush());

    auto again = f.open_store();
    auto g1 = again->get(*id1);
    REQUIRE(g1);
    CHECK(*g1 == d1);

    // Also through a separate database connection, as another process would.
    auto db2 = meta::Db::open(f.dir / "dvol.db");
    REQUIRE(db2);
    REQUIRE(meta::init_schema(**db2));
    auto s2 = ObjectStore::open(StorePaths(f.dir.path()), **db2);
    REQUIRE(s2);
    auto g2 = (*s2)->get(*id2);
    REQUIRE(g2);
    CHECK(*g2 == d2);
}

TEST_CASE("objects of several flushes live in several packs", "[object_store]") {
    StoreFixture f;
    std::vector<ObjectId> ids;
    for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < 4; ++i) {
            auto id = f.store->put(random_bytes(10000, static_cast<uint64_t>(100 + round * 10 + i)));
            REQUIRE(id);
            ids.push_back(*id);
        }
        REQUIRE(f.store->flush());
    }
    CHECK(files_in(f.dir / "objects/packs").size() == 3);
    auto fresh = f.open_store();
    for (size_t k = 0; k < ids.size(); ++k) {
        auto got = fresh->get(ids[k]);
        REQUIRE(got);
        CHECK(sha256(*got) == ids[k]);
    }
}

TEST_CASE("unflushed objects of a destroyed store are not visible", "[object_store]") {
    StoreFixture f;
    auto kept = f.store->put(bytes_of("kept"));
    REQUIRE(kept);
    REQUIRE(f.store->flush());
    auto lost = f.store->put(bytes_of("lost"));
    REQUIRE(lost);
    CHECK(files_in(f.dir / "tmp").size() == 1);
    f.store.reset();
    CHECK(files_in(f.dir / "tmp").empty());  // the staging pack is gone

    auto s = f.open_store();
    auto has = s->has(*lost);
    REQUIRE(has);
    CHECK_FALSE(*has);
    auto got = s->get(*lost);
    REQUIRE_FALSE(got);
    CHECK(got.error().code == Errc::not_found);
    CHECK(s->get(*kept));
    // Putting it again really writes it.
    REQUIRE(s->put(bytes_of("lost")));
    CHECK(s->stats().objects_written == 1);
}

TEST_CASE("get of an unknown id is not_found", "[object_store]") {
    StoreFixture f;
    ObjectId id = sha256("never stored");
    auto r = f.store->get(id);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::not_found);
    CHECK(r.error().message.find(id.hex()) != std::string::npos);
    auto has = f.store->has(id);
    REQUIRE(has);
    CHECK_FALSE(*has);
}

TEST_CASE("a flipped byte in a pack payload is reported as corrupt, naming the object", "[object_store]") {
    StoreFixture f;
    auto raw = random_bytes(20000, 7);       // stored raw
    auto packed = compressible(200000);      // stored compressed
    auto raw_id = f.store->put(raw);
    auto packed_id = f.store->put(packed);
    auto other_id = f.store->put(bytes_of("an innocent neighbour"));
    REQUIRE(raw_id);
    REQUIRE(packed_id);
    REQUIRE(other_id);
    REQUIRE(f.store->flush());
    auto packs = files_in(f.dir / "objects/packs");
    REQUIRE(packs.size() == 1);

    // Records follow each other in put order.
    uint64_t raw_payload = kPackHeaderSize + kRecordHeaderSize;
    flip_byte(packs[0], raw_payload + 10000);
    SECTION("raw record") {
        auto s = f.open_store();
        require_corrupt_naming(s->get(*raw_id), *raw_id);
        CHECK(s->get(*other_id));  // the rest of the pack still reads
    }
    SECTION("compressed record") {
        uint64_t packed_record = raw_payload + raw.size();
        uint64_t packed_payload = packed_record + kRecordHeaderSize;
        // The middle of the frame, in its sequence bitstream, where every bit counts: a few
        // bits of a frame's table descriptions can flip without changing what it decodes to.
        auto fd = open_file(packs[0], O_RDONLY);
        REQUIRE(fd);
        std::byte len[4];
        REQUIRE(pread_exact(fd->get(), len, packed_record + 12, packs[0]));
        uint32_t stored_len = 0;
        for (int i = 3; i >= 0; --i) stored_len = (stored_len << 8) | std::to_integer<uint32_t>(len[i]);
        REQUIRE(stored_len > 100);
        flip_byte(packs[0], packed_payload + stored_len / 2);
        auto s = f.open_store();
        require_corrupt_naming(s->get(*packed_id), *packed_id);
    }
    SECTION("record header") {
        for (uint64_t off : {uint64_t{0}, uint64_t{4}, uint64_t{8}, uint64_t{12}, uint64_t{20}}) {
            INFO("header byte " << off);
            StoreFixture g;
            auto id = g.store->put(bytes_of("header test"));
            REQUIRE(id);
            REQUIRE(g.store->flush());
            auto p = files_in(g.dir / "objects/packs");
            flip_byte(p.at(0), kPackHeaderSize + off);
            auto s = g.open_store();
            require_corrupt_naming(s->get(*id), *id);
        }
    }
}

TEST_CASE("a record located, read and viewed on its own: raw payloads are not copied, and still hashed", "[object_store]") {
    StoreFixture f;
    auto [raw, packed, raw_id, packed_id] = put_raw_and_packed(f, 30000, 9, 100000);
    auto s = f.open_store();
    ObjectStore::StoredRef ref;
    ObjectStore::StoredObject rec;
    std::vector<std::byte> scratch;
    std::span<const std::byte> plain;

    REQUIRE(s->locate_stored(raw_id, ref));
    CHECK(ref.where.raw_len == raw.size());
    REQUIRE(ObjectStore::read_located(ref, rec));
    REQUIRE(ObjectStore::decode_stored_view(rec, scratch, plain));
    CHECK(std::equal(plain.begin(), plain.end(), raw.begin(), raw.end()));
    // Straight from the record read, not copied.
    CHECK(plain.data() == rec.record.data() + kRecordHeaderSize);

    REQUIRE(s->locate_stored(packed_id, ref));
    REQUIRE(ObjectStore::read_located(ref, rec));
    REQUIRE(ObjectStore::decode_stored_view(rec, scratch, plain));
    CHECK(std::equal(plain.begin(), plain.end(), packed.begin(), packed.end()));
    CHECK(plain.data() == scratch.data());

    auto missing = s->locate_stored(sha256(bytes_of("never stored")), ref);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code == Errc::not_found);

    // A flipped byte of the raw payload: the view is checked against the id unless told not to.
    auto packs = files_in(f.dir / "objects/packs");
    REQUIRE(packs.size() == 1);
    flip_byte(packs[0], kPackHeaderSize + kRecordHeaderSize + 100);
    auto t = f.open_store();
    REQUIRE(t->locate_stored(raw_id, ref));
    REQUIRE(ObjectStore::read_located(ref, rec));
    auto bad = ObjectStore::decode_stored_view(rec, scratch, plain);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == Errc::corrupt);
    CHECK(bad.error().message.find(raw_id.hex()) != std::string::npos);
    CHECK(ObjectStore::decode_stored_view(rec, scratch, plain, false));
    // A damaged record header fails the read itself.
    flip_byte(packs[0], kPackHeaderSize);
    auto u = f.open_store();
    REQUIRE(u->locate_stored(raw_id, ref));
    auto hdr = ObjectStore::read_located(ref, rec);
    REQUIRE_FALSE(hdr);
    CHECK(hdr.error().code == Errc::corrupt);
    CHECK(hdr.error().message.find(raw_id.hex()) != std::string::npos);
}

TEST_CASE("a truncated pack is reported as corrupt", "[object_store]") {
    StoreFixture f;
    auto first = f.store->put(random_bytes(5000, 8));
    auto last = f.store->put(random_bytes(5000, 9));
    REQUIRE(first);
    REQUIRE(last);
    REQUIRE(f.store->flush());
    auto packs = files_in(f.dir / "objects/packs");
    REQUIRE(packs.size() == 1);
    uint64_t size = fs::file_size(packs[0]);
    REQUIRE(::truncate(packs[0].c_str(), static_cast<off_t>(size - 100)) == 0);
    auto s = f.open_store();
    require_corrupt_naming(s->get(*last), *last);
    CHECK(s->get(*first));
    REQUIRE(::truncate(packs[0].c_str(), 10) == 0);
    auto s2 = f.open_store();
    require_corrupt_naming(s2->get(*first), *first);
}

TEST_CASE("a deleted pack is reported as corrupt", "[object_store]") {
    StoreFixture f;
    auto id = f.store->put(bytes_of("in a pack that will vanish"));
    REQUIRE(id);
    REQUIRE(f.store->flush());
    auto packs = files_in(f.dir / "objects/packs");
    REQUIRE(packs.size() == 1);
    fs::remove(packs[0]);
    auto s = f.open_store();
    auto r = s->get(*id);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
    std::string pack_name = fs::path(packs[0]).stem().string();
    INFO("message: " << r.error().message);
    CHECK(r.error().message.find(pack_name) != std::string::npos);
    CHECK(r.error().message.find(id->hex()) != std::string::npos);
}

TEST_CASE("cleanup removes unregistered packs and keeps registered ones", "[object_store]") {
    StoreFixture f;
    auto id = f.store->put(bytes_of("registered"));
    REQUIRE(id);
    REQUIRE(f.store->flush());
    auto registered = files_in(f.dir / "objects/packs");
    REQUIRE(registered.size() == 1);
    std::string orphan = f.dir / "objects/packs/0123456789abcdef0123456789abcdef.pack";
    dvol::test::write_file(orphan, "DVOLPACK leftovers of a crashed writer");
    std::string not_a_pack = f.dir / "objects/packs/README";
    dvol::test::write_file(not_a_pack, "not a pack");

    REQUIRE(f.store->cleanup());
    CHECK_FALSE(path_exists(orphan));
    CHECK(path_exists(registered[0]));
    CHECK(path_exists(not_a_pack));
    auto s = f.open_store();
    CHECK(s->get(*id));
}

TEST_CASE("cleanup removes stale staging files but not live or recent ones", "[object_store]") {
    StoreFixture f;
    int64_t old = (static_cast<int64_t>(::time(nullptr)) - 600) * 1'000'000'000;
    std::string stale = f.dir / "tmp/stale.pack";
    dvol::test::write_file(stale, "abandoned");
    dvol::test::set_mtime_ns(stale, old);
    std::string recent = f.dir / "tmp/recent.pack";
    dvol::test::write_file(recent, "just created");

    // A live writer's staging pack, made to look old: its lock protects it.
    auto writer = f.open_store();
    auto id = writer->put(bytes_of("in flight"));
    REQUIRE(id);
    std::string live;
    for (const auto& p : files_in(f.dir / "tmp"))
        if (p != stale && p != recent) live = p;
    REQUIRE_FALSE(live.empty());
    dvol::test::set_mtime_ns(live, old);

    REQUIRE(f.store->cleanup());
    CHECK_FALSE(path_exists(stale));
    CHECK(path_exists(recent));
    CHECK(path_exists(live));
    REQUIRE(writer->flush());
    auto got = f.store->get(*id);
    REQUIRE(got);
    CHECK(dvol::test::string_of(*got) == "in flight");
}

TEST_CASE("put refuses an object larger than kMaxObjectSize", "[object_store]") {
    StoreFixture f;
    // Untouched anonymous memory: no page is ever faulted in.
    size_t n = size_t{kMaxObjectSize} + 1;
    void* p = ::mmap(nullptr, n, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    REQUIRE(p != MAP_FAILED);
    auto r = f.store->put(std::span<const std::byte>(static_cast<const std::byte*>(p), n));
    ::munmap(p, n);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(f.store->stats().objects_written == 0);
}

TEST_CASE("random_name gives distinct 32-digit hex names", "[object_store]") {
    std::string a = random_name(), b = random_name();
    CHECK(a.size() == 32);
    CHECK(a != b);
    CHECK(a.find_first_not_of("0123456789abcdef") == std::string::npos);
}

TEST_CASE("a record's checksum from the index: push's check catches a flipped byte without decoding", "[object_store]") {
    StoreFixture f;
    auto packed = compressible(200000);
    auto id = f.store->put(packed);
    auto other = f.store->put(random_bytes(5000, 3));
    REQUIRE(id);
    REQUIRE(other);
    REQUIRE(f.store->flush());
    auto s = f.open_store();
    ObjectStore::StoredObject rec;
    std::vector<std::byte> scratch;
    REQUIRE(s->read_stored(*id, rec));
    REQUIRE(rec.crc);
    CHECK(*rec.crc == crc32c(rec.record));
    CHECK(ObjectStore::check_stored(rec, scratch));
    CHECK(scratch.empty());  // checked by its checksum: nothing decoded

    // A byte of the payload, and one of the header: the same record read again fails the check.
    for (size_t at : {kRecordHeaderSize + 100, size_t{30}}) {
        INFO("byte " << at);
        auto bad = rec;
        bad.record[at] ^= std::byte{1};
        auto st = ObjectStore::check_stored(bad, scratch);
        REQUIRE_FALSE(st);
        CHECK(st.error().code == Errc::corrupt);
        CHECK(st.error().message.find(id->hex()) != std::string::npos);
    }
    // A row without a checksum (a store older than schema 5) is decoded and hashed instead.
    auto unknown = rec;
    unknown.crc.reset();
    CHECK(ObjectStore::check_stored(unknown, scratch));
    CHECK(scratch.size() == packed.size());
    unknown.record[kRecordHeaderSize + 100] ^= std::byte{1};
    CHECK_FALSE(ObjectStore::check_stored(unknown, scratch));
}

TEST_CASE("reset's check of a chunk: the record's checksum, then decompressed, not hashed", "[object_store]") {
    StoreFixture f;
    auto [raw, packed, raw_id, packed_id] = put_raw_and_packed(f, 30000, 5, 200000);
    auto s = f.open_store();
    ObjectStore::StoredRef ref;
    ObjectStore::StoredObject rec, packed_rec;
    std::vector<std::byte> scratch;

    // locate_stored carries the index's checksum to read_located.
    REQUIRE(s->locate_stored(raw_id, ref));
    REQUIRE(ref.crc);
    REQUIRE(ObjectStore::read_located(ref, rec));
    REQUIRE(rec.crc);
    CHECK(*rec.crc == crc32c(rec.record));
    CHECK(ObjectStore::check_stored_decodes(rec, scratch));
    CHECK(scratch.empty());  // a raw record: nothing decoded
    REQUIRE(s->locate_stored(packed_id, ref));
    REQUIRE(ObjectStore::read_located(ref, packed_rec));
    CHECK(ObjectStore::check_stored_decodes(packed_rec, scratch));
    CHECK(std::equal(scratch.begin(), scratch.end(), packed.begin(), packed.end()));  // decompressed

    // A flipped byte of either payload fails the checksum.
    for (auto* r : {&rec, &packed_rec}) {
        auto bad = *r;
        bad.record[kRecordHeaderSize + 10] ^= std::byte{1};
        auto st = ObjectStore::check_stored_decodes(bad, scratch);
        REQUIRE_FALSE(st);
        CHECK(st.error().code == Errc::corrupt);
        CHECK(st.error().message.find(bad.id.hex()) != std::string::npos);
    }
    // A compressed record that matches its checksum but does not decode (a fault between
    // compressing and writing) is caught by the decompression.
    auto broken = packed_rec;
    broken.record.resize(broken.record.size() - 8);
    broken.crc = crc32c(broken.record);
    auto st = ObjectStore::check_stored_decodes(broken, scratch);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == Errc::corrupt);
    // A row without a checksum (a store older than schema 5) is hashed: a raw payload with a
    // flipped byte decodes, and is refused.
    auto unknown = rec;
    unknown.crc.reset();
    CHECK(ObjectStore::check_stored_decodes(unknown, scratch));
    unknown.record[kRecordHeaderSize + 10] ^= std::byte{1};
    auto hashed = ObjectStore::check_stored_decodes(unknown, scratch);
    REQUIRE_FALSE(hashed);
    CHECK(hashed.error().message.find("hash") != std::string::npos);
}

TEST_CASE("copy_raw_payload copies a raw record's payload into a file, and declines a compressed one", "[object_store]") {
    StoreFixture f;
    auto [raw, packed, raw_id, packed_id] = put_raw_and_packed(f, 300000, 7, 300000);
    auto s = f.open_store();
    std::string out_path = f.dir / "out.bin";
    int fd = ::open(out_path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    ObjectStore::StoredRef ref;

    REQUIRE(s->locate_stored(raw_id, ref));
    auto copied = ObjectStore::copy_raw_payload(ref, fd, 4096, out_path);
    REQUIRE(copied);
    CHECK(*copied);
    REQUIRE(s->locate_stored(packed_id, ref));
    auto declined = ObjectStore::copy_raw_payload(ref, fd, 0, out_path);
    REQUIRE(declined);
    CHECK_FALSE(*declined);
    ::close(fd);
    std::string got = dvol::test::read_file(out_path);
    REQUIRE(got.size() == 4096 + raw.size());
    CHECK(got.substr(0, 4096) == std::string(4096, '\0'));  // nothing written for the compressed one
    CHECK(std::memcmp(got.data() + 4096, raw.data(), raw.size()) == 0);

    // A damaged header is refused, naming the object, before anything is copied.
    auto packs = files_in(f.dir / "objects/packs");
    REQUIRE(packs.size() == 1);
    auto t = f.open_store();
    REQUIRE(t->locate_stored(raw_id, ref));
    flip_byte(packs[0], ref.where.offset + 20);  // inside the id the header names
    int fd2 = ::open(out_path.c_str(), O_RDWR | O_TRUNC);
    REQUIRE(fd2 >= 0);
    auto bad = ObjectStore::copy_raw_payload(ref, fd2, 0, out_path);
    ::close(fd2);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == Errc::corrupt);
    CHECK(bad.error().message.find(raw_id.hex()) != std::string::npos);
    CHECK(fs::file_size(out_path) == 0);
}

TEST_CASE("get_checked reports a record whose checksum in the index is wrong, even when it decodes", "[object_store]") {
    StoreFixture f;
    auto id = f.store->put(compressible(50000));
    REQUIRE(id);
    REQUIRE(f.store->flush());
    std::vector<std::byte> out;
    CHECK(f.store->get_checked(*id, out));
    {
        auto up = f.db->prepare("UPDATE objects SET crc = crc + 1 WHERE id = ?");
        REQUIRE(up);
        up->bind_blob(1, id->as_span());
        REQUIRE(up->run());
    }
    auto s = f.open_store();
    CHECK(s->get(*id, out));  // the content is fine
    auto st = s->get_checked(*id, out);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == Errc::corrupt);
    CHECK(st.error().message.find("checksum") != std::string::npos);
    // Rows without one are not judged by it.
    {
        auto up = f.db->prepare("UPDATE objects SET crc = NULL");
        REQUIRE(up);
        REQUIRE(up->run());
    }
    auto t = f.open_store();
    CHECK(t->get_checked(*id, out));
}

TEST_CASE("a schema 4 store is upgraded in place: its objects read as before, their checksums unknown", "[object_store]") {
    TempDir dir;
    StorePaths paths(dir.path());
    ObjectId id;
    {
        StoreFixture f;  // write with this version, then turn the database back into a version 4 one
        auto put = f.store->put(compressible(30000));
        REQUIRE(put);
        id = *put;
        REQUIRE(f.store->flush());
        REQUIRE(f.db->exec("CREATE TABLE objects4(id BLOB PRIMARY KEY, pack_id INTEGER NOT NULL REFERENCES packs(id), "
                           "offset INTEGER NOT NULL, stored_len INTEGER NOT NULL, raw_len INTEGER NOT NULL) WITHOUT ROWID;"
                           "INSERT INTO objects4 SELECT id, pack_id, offset, stored_len, raw_len FROM objects;"
                           "DROP TABLE objects; ALTER TABLE objects4 RENAME TO objects;"
                           "DROP TABLE dir_cache; UPDATE meta SET value = '4' WHERE key = 'schema_version';"));
        f.db.reset();
        fs::copy(f.dir.path(), dir.path(), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    }
    auto db = meta::Db::open(paths.db());
    REQUIRE(db);
    REQUIRE(meta::init_schema(**db));
    {
        auto q = (*db)->prepare("SELECT value FROM meta WHERE key = 'schema_version'");
        REQUIRE(q);
        REQUIRE(*q->step());
        CHECK(q->text(0) == std::to_string(meta::kSchemaVersion));
    }
    {
        // ... and has the tables of the later versions, empty (v7: tree_facts; v8: dir_cache, made
        // again here).
        for (const char* table : {"tree_facts", "dir_cache"}) {
            auto q = (*db)->prepare(std::string("SELECT count(*) FROM ") + table);
            REQUIRE(q);
            REQUIRE(*q->step());
            CHECK(q->int64(0) == 0);
        }
    }
    auto store = ObjectStore::open(paths, **db);
    REQUIRE(store);
    ObjectStore::StoredObject rec;
    REQUIRE((*store)->read_stored(id, rec));
    CHECK_FALSE(rec.crc);
    std::vector<std::byte> scratch;
    CHECK(ObjectStore::check_stored(rec, scratch));
    // New objects get one.
    auto added = (*store)->put(bytes_of("after the upgrade"));
    REQUIRE(added);
    REQUIRE((*store)->flush());
    REQUIRE((*store)->read_stored(*added, rec));
    CHECK(rec.crc);
}

TEST_CASE("get_by_checksum reads what get reads, and catches a flipped byte by the record's checksum", "[object_store]") {
    // The mount's reads (docs/DECISIONS.md, "FUSE mount"): the checksum instead of the hash.
    StoreFixture f;
    auto raw = random_bytes(300000, 17);  // stored raw: read straight into the caller's buffer
    auto packed = compressible(200000);   // stored compressed
    auto raw_id = f.store->put(raw);
    auto packed_id = f.store->put(packed);
    REQUIRE(raw_id);
    REQUIRE(packed_id);
    REQUIRE(f.store->flush());
    std::vector<std::byte> out(5, std::byte{1});  // whatever the buffer held goes
    REQUIRE(f.store->get_by_checksum(*raw_id, out));
    CHECK(out == raw);
    REQUIRE(f.store->get_by_checksum(*packed_id, out));
    CHECK(out == packed);
    out.assign(1 << 20, std::byte{7});  // a larger buffer, as the mount reuses them
    REQUIRE(f.store->get_by_checksum(*raw_id, out));
    CHECK(out == raw);
    std::vector<std::byte> none;
    auto missing = f.store->get_by_checksum(sha256(bytes_of("not stored")), none);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code == Errc::not_found);

    auto packs = files_in(f.dir / "objects/packs");
    REQUIRE(packs.size() == 1);
    uint64_t raw_record = kPackHeaderSize;
    uint64_t packed_record = raw_record + kRecordHeaderSize + raw.size();
    SECTION("a byte of a raw payload") { flip_byte(packs[0], raw_record + kRecordHeaderSize + 1000); }
    SECTION("a byte of a compressed payload") { flip_byte(packs[0], packed_record + kRecordHeaderSize + 500); }
    SECTION("a byte of a header that is not checked otherwise (the reserved bytes)") { flip_byte(packs[0], packed_record + 6); }
    auto s = f.open_store();
    std::vector<std::byte> a, b;
    auto ra = s->get_by_checksum(*raw_id, a);
    auto rb = s->get_by_checksum(*packed_id, b);
    REQUIRE(static_cast<bool>(ra) != static_cast<bool>(rb));  // exactly the damaged one fails
    const auto& failed = ra ? rb : ra;
    const ObjectId& damaged = ra ? *packed_id : *raw_id;
    CHECK(failed.error().code == Errc::corrupt);
    CHECK(failed.error().message.find(damaged.hex()) != std::string::npos);
    CHECK(failed.error().message.find("checksum") != std::string::npos);
}

TEST_CASE("get_by_checksum hashes the content of a row without a checksum", "[object_store]") {
    StoreFixture f;
    auto raw = random_bytes(50000, 5);
    auto id = f.store->put(raw);
    REQUIRE(id);
    REQUIRE(f.store->flush());
    {
        auto up = f.db->prepare("UPDATE objects SET crc = NULL");
        REQUIRE(up);
        REQUIRE(up->run());
    }
    auto s = f.open_store();
    std::vector<std::byte> out;
    REQUIRE(s->get_by_checksum(*id, out));
    CHECK(out == raw);
    flip_byte(files_in(f.dir / "objects/packs").at(0), kPackHeaderSize + kRecordHeaderSize + 10);
    auto t = f.open_store();
    auto st = t->get_by_checksum(*id, out);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == Errc::corrupt);
    CHECK(st.error().message.find("hash") != std::string::npos);
}
