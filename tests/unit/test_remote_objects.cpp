// RemoteObjects (lib/remote/remote_objects.cpp) over a directory remote: refreshing what this
// store knows of the remote's packs, verified reads, and bulk fetches coalesced into few ranged
// reads. Packs are written with PackUpload (lib/remote/pack_upload.cpp) from another store, as a
// push would.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "meta/db.h"
#include "meta/remote_index.h"
#include "remote/dir_backend.h"
#include "remote/layout.h"
#include "remote/pack_upload.h"
#include "remote/remote_objects.h"
#include "store/codec.h"
#include "store/hash.h"
#include "store/paths.h"
#include "support.h"
#include "transfer_support.h"

using namespace dvol;
using dvol::remote::PackKind;
using dvol::remote::PackUpload;
using dvol::remote::RemoteObjects;
using dvol::test::BackendCounts;
using dvol::test::CountingBackend;
using dvol::test::random_bytes;
using dvol::test::TempDir;
namespace fs = std::filesystem;

namespace {

// A store that talks to the remote in `dir`: its database, its index of the remote, and a
// counting Backend on the directory.
struct Side {
    dvol::test::StoreFixture store;
    std::unique_ptr<meta::RemoteIndex> index;
    std::shared_ptr<BackendCounts> counts = std::make_shared<BackendCounts>();
    std::unique_ptr<remote::Backend> backend;
    int64_t remote_id = 0;

    explicit Side(const std::string& dir) {
        index = std::make_unique<meta::RemoteIndex>(*store.db);
        auto b = remote::DirBackend::open(dir);
        REQUIRE(b);
        backend = std::make_unique<CountingBackend>(std::move(*b), counts);
        auto txn = meta::Db::Transaction::begin(*store.db);
        REQUIRE(txn);
        auto id = index->remote_id(dir);
        REQUIRE(id);
        remote_id = *id;
        REQUIRE(txn->commit());
    }
    RemoteObjects objects() { return RemoteObjects(*backend, *store.db, *index, remote_id); }
    std::unique_ptr<PackUpload> upload(PackKind kind, uint64_t target = uint64_t{1} << 40) {
        return std::make_unique<PackUpload>(*backend, *store.db, *index, remote_id, StorePaths(store.dir.path()).tmp_dir(), kind,
                                             target);
    }
};

struct Object {
    ObjectId id;
    std::vector<std::byte> plain;
};

// Adds `plain` to the pack being built, compressed when that pays (as a store would).
ObjectId add(PackUpload& up, const std::vector<std::byte>& plain) {
    ObjectId id = sha256(plain);
    Compressor c;
    std::vector<std::byte> stored;
    Codec codec = c.compress(plain, stored);
    std::vector<std::byte> record(kRecordHeaderSize + stored.size());
    encode_record_header(record.data(), id, codec, static_cast<uint32_t>(plain.size()), static_cast<uint32_t>(stored.size()));
    std::copy(stored.begin(), stored.end(), record.begin() + kRecordHeaderSize);
    REQUIRE(up.add(id, record, static_cast<uint32_t>(stored.size()), static_cast<uint32_t>(plain.size())));
    return id;
}

// One pack of `n` random objects of `size` bytes each (incompressible: stored raw).
std::vector<Object> push_pack(Side& side, int n, size_t size, uint64_t seed, PackKind kind = PackKind::data) {
    auto up = side.upload(kind);
    std::vector<Object> out;
    for (int i = 0; i < n; ++i) {
        Object o{{}, random_bytes(size, seed * 100'000 + static_cast<uint64_t>(i))};
        o.id = add(*up, o.plain);
        out.push_back(std::move(o));
    }
    REQUIRE(up->finish());
    return out;
}

// The pack names on the remote.
std::vector<std::string> packs_on(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir + "/packs")) {
        std::string n = e.path().filename().string();
        out.push_back(n.substr(0, n.size() - 5));
    }
    std::sort(out.begin(), out.end());
    return out;
}

// Flips one byte of file `path` at `offset`.
void flip(const std::string& path, uint64_t offset) {
    auto fd = open_file(path, O_RDWR);
    REQUIRE(fd);
    std::byte b{};
    REQUIRE(::pread(fd->get(), &b, 1, static_cast<off_t>(offset)) == 1);
    b ^= std::byte{0x40};
    REQUIRE(::pwrite(fd->get(), &b, 1, static_cast<off_t>(offset)) == 1);
}

// Where object `id` lies in the remote's pack files: (pack path, record offset).
std::pair<std::string, uint64_t> find_record(const std::string& dir, const ObjectId& id) {
    for (const auto& name : packs_on(dir)) {
        std::string path = dir + "/packs/" + name + ".pack";
        auto bytes = test::bytes_of(test::read_file(path));
        for (const auto& r : test::pack_records(bytes))
            if (r.id == id) return {path, r.offset};
    }
    FAIL("object " << id.hex() << " is in no pack");
    return {};
}

}  // namespace

TEST_CASE("refresh reads only the indexes it does not know, and forgets vanished packs", "[remote_objects]") {
    TempDir remote;
    Side writer(remote.path());
    auto a = push_pack(writer, 3, 1000, 1);
    auto b = push_pack(writer, 2, 1000, 2);
    REQUIRE(packs_on(remote.path()).size() == 2);

    Side reader(remote.path());
    auto objects = reader.objects();
    CHECK_FALSE(*objects.has(a[0].id));
    auto r1 = objects.refresh();
    REQUIRE(r1);
    CHECK(r1->indexes_read == 2);
    CHECK(r1->packs_forgotten == 0);
    CHECK(reader.counts->count("list") == 1);
    CHECK(reader.counts->count("read_all") == 2);
    for (const auto& o : a) CHECK(*objects.has(o.id));
    for (const auto& o : b) CHECK(*objects.has(o.id));

    // Nothing new: one listing, no index read.
    reader.counts->reset();
    auto r2 = objects.refresh();
    REQUIRE(r2);
    CHECK(r2->indexes_read == 0);
    CHECK(reader.counts->requests() == 1);

    // One new pack: its index alone is read.
    auto c = push_pack(writer, 4, 1000, 3);
    reader.counts->reset();
    auto r3 = objects.refresh();
    REQUIRE(r3);
    CHECK(r3->indexes_read == 1);
    CHECK(reader.counts->count("read_all") == 1);
    CHECK(reader.counts->requests() == 2);
    CHECK(*objects.has(c[3].id));

    // A new RemoteObjects on the same store knows what the store recorded: nothing to read.
    reader.counts->reset();
    auto again = reader.objects();
    auto r4 = again.refresh();
    REQUIRE(r4);
    CHECK(r4->indexes_read == 0);
    CHECK(reader.counts->count("read_all") == 0);

    // Pack a vanishes from the remote (its index first, as a cleaner would remove it).
    auto [pack_a, at] = find_record(remote.path(), a[0].id);
    (void)at;
    std::string name_a = fs::path(pack_a).stem().string();
    REQUIRE(writer.backend->remove(remote::index_key(name_a)));
    REQUIRE(writer.backend->remove(remote::pack_key(name_a)));
    auto r5 = again.refresh();
    REQUIRE(r5);
    CHECK(r5->packs_forgotten == 1);
    CHECK(r5->indexes_read == 0);
    for (const auto& o : a) CHECK_FALSE(*again.has(o.id));
    CHECK(*again.has(b[0].id));
    std::vector<std::byte> out;
    auto gone = again.get(a[0].id, out);
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().code == Errc::not_found);
    REQUIRE(again.get(b[1].id, out));
    CHECK(out == b[1].plain);
}

TEST_CASE("refresh ignores keys that are not pack indexes and refuses a malformed index, naming it", "[remote_objects]") {
    TempDir remote;
    Side writer(remote.path());
    push_pack(writer, 2, 500, 1);
    REQUIRE(writer.backend->write("index/README", test::bytes_of("not an index")));
    Side reader(remote.path());
    auto objects = reader.objects();
    auto ok = objects.refresh();
    REQUIRE(ok);
    CHECK(ok->indexes_read == 1);

    std::string bad(64, 'e');
    REQUIRE(writer.backend->write(remote::index_key(bad), test::bytes_of("DVOLIDX1 garbage")));
    auto r = objects.refresh();
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message);
    CHECK(r.error().code == Errc::corrupt);
    CHECK(r.error().message.find(bad) != std::string::npos);
    CHECK(r.error().message.find(remote.path()) != std::string::npos);
}

TEST_CASE("get returns verified objects, from data packs by ranges and metadata packs whole", "[remote_objects]") {
    TempDir remote;
    Side writer(remote.path());
    auto data = push_pack(writer, 5, 3000, 1);
    auto meta = push_pack(writer, 5, 300, 2, PackKind::metadata);
    Side reader(remote.path());
    auto objects = reader.objects();
    REQUIRE(objects.refresh());
    reader.counts->reset();

    std::vector<std::byte> out;
    for (const auto& o : data) {
        REQUIRE(objects.get(o.id, out));
        CHECK(out == o.plain);
    }
    CHECK(reader.counts->count("read") == data.size());  // one ranged read per record
    CHECK(reader.counts->count("read_all") == 0);
    reader.counts->reset();
    for (const auto& o : meta) {
        REQUIRE(objects.get(o.id, out));
        CHECK(out == o.plain);
    }
    CHECK(reader.counts->count("read") == 1);  // the metadata pack, whole, once

    auto missing = objects.get(sha256("nowhere"), out);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == Errc::not_found);
}

TEST_CASE("get refuses a damaged record on the remote, naming the object", "[remote_objects]") {
    TempDir remote;
    Side writer(remote.path());
    auto data = push_pack(writer, 3, 4000, 1);
    auto meta = push_pack(writer, 3, 400, 2, PackKind::metadata);

    auto check_corrupt = [&](const ObjectId& id) {
        Side reader(remote.path());
        auto objects = reader.objects();
        REQUIRE(objects.refresh());
        std::vector<std::byte> out;
        auto st = objects.get(id, out);
        REQUIRE_FALSE(st.ok());
        INFO(st.error().message);
        CHECK(st.error().code == Errc::corrupt);
        CHECK(st.error().message.find(id.hex()) != std::string::npos);
        CHECK(st.error().message.find(remote.path()) != std::string::npos);
    };

    SECTION("a flipped byte in a data record's payload") {
        auto [pack, at] = find_record(remote.path(), data[1].id);
        flip(pack, at + kRecordHeaderSize + 1234);
        check_corrupt(data[1].id);
    }
    SECTION("a flipped byte in a metadata record's payload") {
        auto [pack, at] = find_record(remote.path(), meta[2].id);
        flip(pack, at + kRecordHeaderSize + 7);
        check_corrupt(meta[2].id);
    }
    SECTION("a record header naming another object") {
        auto [pack, at] = find_record(remote.path(), data[0].id);
        flip(pack, at + 20);
        check_corrupt(data[0].id);
    }
    SECTION("a pack cut short") {
        // The last record of the metadata pack loses its last bytes.
        auto [pack, at] = find_record(remote.path(), meta[0].id);
        (void)at;
        auto records = test::pack_records(test::bytes_of(test::read_file(pack)));
        REQUIRE(records.size() == meta.size());
        fs::resize_file(pack, fs::file_size(pack) - 10);
        check_corrupt(records.back().id);
    }
}

TEST_CASE("fetch coalesces neighbouring records: requests follow the bytes, not the number of records", "[remote_objects]") {
    TempDir remote;
    Side writer(remote.path());

    SECTION("many small records of one pack: one read") {
        auto objs = push_pack(writer, 300, 8 << 10, 1);
        Side reader(remote.path());
        auto objects = reader.objects();
        REQUIRE(objects.refresh());
        reader.counts->reset();
        std::vector<ObjectId> ids;
        for (const auto& o : objs) ids.push_back(o.id);
        std::map<ObjectId, std::vector<std::byte>> got;
        uint64_t told = 0;
        Compressor unused;
        REQUIRE(objects.fetch(
            ids,
            [&](const ObjectId& id, Codec codec, std::span<const std::byte> stored, uint32_t raw_len) -> Status {
                std::vector<std::byte> plain;
                DVOL_CHECK(decompress(codec, stored, raw_len, plain));
                got[id] = plain;
                return {};
            },
            [&](uint64_t n) { told += n; }));
        CHECK(reader.counts->count("read") == 1);
        CHECK(reader.counts->requests() == 1);
        REQUIRE(got.size() == objs.size());
        for (const auto& o : objs) CHECK(got[o.id] == o.plain);
        CHECK(told == reader.counts->bytes_read);
        CHECK(told == 300 * ((8 << 10) + kRecordHeaderSize));

        // Every fourth record: the gaps are small, still one read.
        reader.counts->reset();
        std::vector<ObjectId> some;
        for (size_t i = 0; i < objs.size(); i += 4) some.push_back(objs[i].id);
        size_t n = 0;
        REQUIRE(objects.fetch(some, [&](const ObjectId&, Codec, std::span<const std::byte>, uint32_t) -> Status {
            ++n;
            return {};
        }));
        CHECK(n == some.size());
        CHECK(reader.counts->count("read") == 1);
    }

    SECTION("20 MiB of 1 MiB records: reads of at most kMaxRange bytes") {
        auto objs = push_pack(writer, 20, 1 << 20, 2);
        Side reader(remote.path());
        auto objects = reader.objects();
        REQUIRE(objects.refresh());
        reader.counts->reset();
        std::vector<ObjectId> ids;
        for (const auto& o : objs) ids.push_back(o.id);
        size_t n = 0;
        REQUIRE(objects.fetch(ids, [&](const ObjectId&, Codec, std::span<const std::byte>, uint32_t) -> Status {
            ++n;
            return {};
        }));
        CHECK(n == 20);
        uint64_t bytes = 20 * ((1 << 20) + kRecordHeaderSize);
        CHECK(reader.counts->bytes_read == bytes);
        uint64_t least = (bytes + RemoteObjects::kMaxRange - 1) / RemoteObjects::kMaxRange;
        CHECK(reader.counts->count("read") >= least);
        CHECK(reader.counts->count("read") <= least + 1);
    }

    SECTION("records far apart are read apart; records of several packs by pack") {
        // Small records separated by more than kMaxGap of records nobody asked for.
        auto up = writer.upload(PackKind::data);
        std::vector<Object> wanted;
        for (int i = 0; i < 4; ++i) {
            Object o{{}, random_bytes(1000, 10 + static_cast<uint64_t>(i))};
            o.id = add(*up, o.plain);
            wanted.push_back(o);
            add(*up, random_bytes(RemoteObjects::kMaxGap + 1, 20 + static_cast<uint64_t>(i)));
        }
        REQUIRE(up->finish());
        auto other = push_pack(writer, 10, 1000, 3);
        auto third = push_pack(writer, 10, 1000, 4);
        Side reader(remote.path());
        auto objects = reader.objects();
        REQUIRE(objects.refresh());
        reader.counts->reset();
        std::vector<ObjectId> ids;
        for (const auto& o : wanted) ids.push_back(o.id);
        for (const auto& o : other) ids.push_back(o.id);
        for (const auto& o : third) ids.push_back(o.id);
        ids.push_back(other[0].id);  // asked twice, fetched once
        std::map<ObjectId, int> seen;
        REQUIRE(objects.fetch(ids, [&](const ObjectId& id, Codec, std::span<const std::byte>, uint32_t) -> Status {
            ++seen[id];
            return {};
        }));
        CHECK(seen.size() == 24);
        CHECK(std::all_of(seen.begin(), seen.end(), [](const auto& s) { return s.second == 1; }));
        CHECK(reader.counts->count("read") == 4 + 1 + 1);
        CHECK(reader.counts->bytes_read < 24 * (1000 + kRecordHeaderSize) + 1);
    }
}

TEST_CASE("fetch verifies every record and stops at a damaged one, naming it", "[remote_objects]") {
    TempDir remote;
    Side writer(remote.path());
    auto objs = push_pack(writer, 50, 4000, 1);
    auto [pack, at] = find_record(remote.path(), objs[17].id);
    flip(pack, at + kRecordHeaderSize + 100);
    Side reader(remote.path());
    auto objects = reader.objects();
    REQUIRE(objects.refresh());
    std::vector<ObjectId> ids;
    for (const auto& o : objs) ids.push_back(o.id);
    std::vector<ObjectId> handed;
    auto st = objects.fetch(ids, [&](const ObjectId& id, Codec, std::span<const std::byte>, uint32_t) -> Status {
        handed.push_back(id);
        return {};
    });
    REQUIRE_FALSE(st.ok());
    INFO(st.error().message);
    CHECK(st.error().code == Errc::corrupt);
    CHECK(st.error().message.find(objs[17].id.hex()) != std::string::npos);
    CHECK(std::find(handed.begin(), handed.end(), objs[17].id) == handed.end());

    // An object the remote does not hold: not_found before any read.
    reader.counts->reset();
    auto missing = objects.fetch({objs[0].id, sha256("nowhere")}, [](const ObjectId&, Codec, std::span<const std::byte>, uint32_t) -> Status {
        return {};
    });
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == Errc::not_found);
    CHECK(reader.counts->count("read") == 0);
}

TEST_CASE("a metadata pack is read no further than its index says", "[remote_objects]") {
    TempDir remote;
    Side writer(remote.path());
    auto meta = push_pack(writer, 4, 500, 1, PackKind::metadata);
    auto [pack, at] = find_record(remote.path(), meta[0].id);
    (void)at;
    uint64_t size = fs::file_size(pack);
    // The remote serves 32 MiB more than the index knows of.
    fs::resize_file(pack, size + (32u << 20));
    Side reader(remote.path());
    auto objects = reader.objects();
    REQUIRE(objects.refresh());
    reader.counts->reset();
    std::vector<std::byte> out;
    for (const auto& o : meta) {
        REQUIRE(objects.get(o.id, out));
        CHECK(out == o.plain);
    }
    CHECK(reader.counts->requests() == 1);
    CHECK(reader.counts->bytes_read == size);
}

TEST_CASE("fetch hands over, in pack order, every record before a damaged one in a later read", "[remote_objects]") {
    // 20 records of 1 MiB: two reads (kMaxRange is 16 MiB), verified on two threads while the
    // next read is made; the damaged record is the 19th, in the second read.
    TempDir remote;
    Side writer(remote.path());
    auto objs = push_pack(writer, 20, 1 << 20, 5);
    auto [pack, at] = find_record(remote.path(), objs[18].id);
    flip(pack, at + kRecordHeaderSize + 4096);
    Side reader(remote.path());
    auto objects = reader.objects();
    REQUIRE(objects.refresh());
    std::vector<ObjectId> ids;
    for (const auto& o : objs) ids.push_back(o.id);
    std::vector<ObjectId> handed;
    bool payloads_match = true;
    auto st = objects.fetch(ids, [&](const ObjectId& id, Codec codec, std::span<const std::byte> stored, uint32_t raw_len) -> Status {
        handed.push_back(id);
        const auto& o = objs[handed.size() - 1];
        if (id != o.id || raw_len != o.plain.size() ||
            (codec == Codec::raw && !std::equal(stored.begin(), stored.end(), o.plain.begin(), o.plain.end())))
            payloads_match = false;
        return {};
    });
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::corrupt);
    CHECK(st.error().message.find(objs[18].id.hex()) != std::string::npos);
    CHECK(handed.size() == 18);
    CHECK(payloads_match);
}

TEST_CASE("get_many reads neighbouring records with one request and fails only a damaged one", "[remote_objects]") {
    TempDir remote;
    Side writer(remote.path());
    auto objs = push_pack(writer, 8, 256 << 10, 7);
    auto other = push_pack(writer, 2, 1000, 8);
    Side reader(remote.path());
    auto objects = reader.objects();
    REQUIRE(objects.refresh());

    auto run = [&](const std::vector<ObjectId>& ids) {
        std::map<ObjectId, std::pair<Status, std::vector<std::byte>>> got;
        size_t calls = 0;
        objects.get_many(ids, [&](const ObjectId& id, const Status& st, std::vector<std::byte>& bytes) {
            ++calls;
            got[id] = {st, std::vector<std::byte>(bytes.begin(), bytes.end())};
        });
        CHECK(calls == got.size());  // each id once
        return got;
    };
    std::vector<ObjectId> ids;
    for (const auto& o : objs) ids.push_back(o.id);

    SECTION("8 adjacent records: 1 read; two packs: 2 reads; an unknown id: not_found") {
        reader.counts->reset();
        auto got = run(ids);
        CHECK(reader.counts->count("read") == 1);
        REQUIRE(got.size() == 8);
        for (const auto& o : objs) {
            CHECK(got[o.id].first.ok());
            CHECK(got[o.id].second == o.plain);
        }
        reader.counts->reset();
        std::vector<ObjectId> mixed{objs[0].id, other[1].id, objs[1].id, objs[1].id, sha256(random_bytes(10, 1))};
        got = run(mixed);
        CHECK(reader.counts->count("read") == 2);
        REQUIRE(got.size() == 4);
        CHECK(got[other[1].id].second == other[1].plain);
        CHECK(got[objs[1].id].second == objs[1].plain);
        CHECK(got[mixed[4]].first.error().code == Errc::not_found);
    }
    SECTION("a damaged record in a coalesced range: that one corrupt, the others served") {
        auto [pack, at] = find_record(remote.path(), objs[3].id);
        flip(pack, at + kRecordHeaderSize + 5000);
        reader.counts->reset();
        auto got = run(ids);
        CHECK(reader.counts->count("read") == 1);
        REQUIRE(got.size() == 8);
        for (size_t i = 0; i < objs.size(); ++i) {
            INFO(i);
            if (i == 3) {
                REQUIRE_FALSE(got[objs[i].id].first.ok());
                CHECK(got[objs[i].id].first.error().code == Errc::corrupt);
                CHECK(got[objs[i].id].first.error().message.find(objs[i].id.hex()) != std::string::npos);
            } else {
                CHECK(got[objs[i].id].second == objs[i].plain);
            }
        }
    }
    SECTION("a read that fails fails the records it spans, nothing else") {
        reader.counts->reset();
        reader.counts->fail_after_reads = 0;
        auto got = run({objs[0].id, objs[1].id});
        REQUIRE(got.size() == 2);
        for (const auto& [id, r] : got) CHECK(r.first.error().code == Errc::unavailable);
    }
}
