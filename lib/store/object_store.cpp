#include "store/object_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "meta/db.h"

namespace dvol {

namespace {

constexpr std::string_view kPackMagic = "DVOLPACK";
constexpr std::string_view kRecordMagic = "DVR1";

void put_u32(std::byte* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}

uint32_t get_u32(const std::byte* p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
    return v;
}

}  // namespace

std::string random_name() {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = ::getrandom(b + got, sizeof b - got, 0);
        if (n > 0) got += static_cast<size_t>(n);
    }
    std::string s;
    for (unsigned char c : b) s += fmt::format("{:02x}", c);
    return s;
}

Result<std::unique_ptr<ObjectStore>> ObjectStore::open(const std::string& root, meta::Db& db) {
    DVOL_CHECK(make_dirs(root + "/objects/packs"));
    DVOL_CHECK(make_dirs(root + "/tmp"));
    return std::unique_ptr<ObjectStore>(new ObjectStore(root, db));
}

ObjectStore::~ObjectStore() {
    // Unflushed objects are abandoned: their staging pack is garbage for cleanup().
    if (staging_fd_.valid()) ::unlink((root_ + "/tmp/" + staging_name_ + ".pack").c_str());
}

Result<bool> ObjectStore::lookup(const ObjectId& id, Location& loc) {
    if (auto it = staged_.find(id); it != staged_.end()) {
        loc = it->second;
        return true;
    }
    DVOL_TRY(auto q, db_.prepare("SELECT pack_id, offset, stored_len, raw_len FROM objects WHERE id = ?"));
    q.bind_blob(1, id.as_span());
    DVOL_TRY(bool row, q.step());
    if (!row) return false;
    loc = Location{q.int64(0), static_cast<uint64_t>(q.int64(1)), static_cast<uint32_t>(q.int64(2)),
                   static_cast<uint32_t>(q.int64(3))};
    return true;
}

Result<bool> ObjectStore::has(const ObjectId& id) {
    Location loc;
    return lookup(id, loc);
}

Result<ObjectId> ObjectStore::put(std::span<const std::byte> data) {
    ObjectId id = sha256(data);
    DVOL_CHECK(put(id, data));
    return id;
}

Status ObjectStore::start_staging() {
    staging_name_ = random_name();
    std::string path = root_ + "/tmp/" + staging_name_ + ".pack";
    DVOL_TRY(staging_fd_, create_pack_file(path));
    staging_size_ = kPackHeaderSize;
    staging_written_back_ = 0;
    return {};
}

Result<UniqueFd> ObjectStore::create_pack_file(const std::string& path) {
    DVOL_TRY(UniqueFd fd, open_file(path, O_RDWR | O_CREAT | O_EXCL, 0644));
    // Held until the pack is registered: cleanup() leaves locked staging files alone.
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return errno_error("lock", path);
    std::byte hdr[kPackHeaderSize] = {};
    std::memcpy(hdr, kPackMagic.data(), kPackMagic.size());
    put_u32(hdr + 8, 1);
    DVOL_CHECK(write_all(fd.get(), hdr, path));
    return fd;
}

Status ObjectStore::put(const ObjectId& id, std::span<const std::byte> data) {
    if (data.size() > kMaxObjectSize) return make_error(Errc::invalid_argument, "object too large");
    DVOL_TRY(bool present, has(id));
    if (present) return {};
    Codec codec = compressor_.compress(data, scratch_);
    return put_encoded(id, codec, scratch_, static_cast<uint32_t>(data.size()));
}

Status ObjectStore::put_encoded(const ObjectId& id, Codec codec, std::span<const std::byte> stored, uint32_t raw_len) {
    if (raw_len > kMaxObjectSize || stored.size() > kMaxObjectSize) return make_error(Errc::invalid_argument, "object too large");
    if (staged_.contains(id)) return {};
    if (staging_fd_.valid() && staging_size_ >= kMaxPackSize) DVOL_CHECK(flush());
    if (!staging_fd_.valid()) DVOL_CHECK(start_staging());

    record_.resize(kRecordHeaderSize + stored.size());
    std::byte* h = record_.data();
    std::memcpy(h, kRecordMagic.data(), 4);
    h[4] = static_cast<std::byte>(codec);
    h[5] = h[6] = h[7] = std::byte{0};
    put_u32(h + 8, raw_len);
    put_u32(h + 12, static_cast<uint32_t>(stored.size()));
    std::memcpy(h + 16, id.bytes.data(), ObjectId::size);
    std::memcpy(h + kRecordHeaderSize, stored.data(), stored.size());
    DVOL_CHECK(pwrite_all(staging_fd_.get(), record_, staging_size_, staging_name_));
    staged_.emplace(id, Location{0, staging_size_, static_cast<uint32_t>(stored.size()), raw_len});
    staging_size_ += record_.size();
    // Start writing the pack out every few MiB, so that flush()'s fsync waits for the last of
    // it rather than all of it (the PostgreSQL set's 40 MiB pack: 30 ms of fsync at the end of
    // its commit). Asynchronous and advisory: durability still comes from the fsync.
    constexpr uint64_t kWritebackEvery = 8u << 20;
    if (staging_size_ - staging_written_back_ >= kWritebackEvery) {
        ::sync_file_range(staging_fd_.get(), static_cast<off_t>(staging_written_back_),
                          static_cast<off_t>(staging_size_ - staging_written_back_), SYNC_FILE_RANGE_WRITE);
        staging_written_back_ = staging_size_;
    }
    stats_.objects_written++;
    stats_.bytes_written += record_.size();
    return {};
}

Status ObjectStore::flush() {
    if (!staging_fd_.valid()) return {};
    std::string tmp_path = root_ + "/tmp/" + staging_name_ + ".pack";
    std::string final_path = root_ + "/objects/packs/" + staging_name_ + ".pack";
    DVOL_CHECK(fsync_fd(staging_fd_.get(), tmp_path));

    DVOL_TRY(auto txn, meta::Db::Transaction::begin(db_));
    if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) return errno_error("move pack into place", final_path);
    DVOL_CHECK(fsync_dir(root_ + "/objects/packs"));
    {
        DVOL_TRY(auto ins, db_.prepare("INSERT INTO packs(name, size) VALUES(?, ?)"));
        DVOL_CHECK(ins.bind(1, staging_name_).bind(2, static_cast<int64_t>(staging_size_)).run());
    }
    int64_t pack_id = db_.last_insert_rowid();
    {
        DVOL_TRY(auto ins, db_.prepare("INSERT OR IGNORE INTO objects(id, pack_id, offset, stored_len, raw_len) VALUES(?, ?, ?, ?, ?)"));
        for (const auto& [id, loc] : staged_) {
            ins.bind_blob(1, id.as_span()).bind(2, pack_id).bind(3, static_cast<int64_t>(loc.offset));
            ins.bind(4, static_cast<int64_t>(loc.stored_len)).bind(5, static_cast<int64_t>(loc.raw_len));
            DVOL_CHECK(ins.run());
        }
    }
    Status committed = txn.commit();
    if (!committed) {
        // The pack is in place but unregistered: move it back so nothing names it half-way.
        ::rename(final_path.c_str(), tmp_path.c_str());
        return committed;
    }
    packs_.emplace(pack_id, std::make_pair(std::move(staging_fd_), staging_name_));
    staging_fd_ = UniqueFd();
    staged_.clear();
    staging_size_ = 0;
    return {};
}

Result<int> ObjectStore::pack_fd(int64_t pack_id, std::string& name) {
    if (pack_id == 0) {
        name = staging_name_;
        return staging_fd_.get();
    }
    if (auto it = packs_.find(pack_id); it != packs_.end()) {
        name = it->second.second;
        return it->second.first.get();
    }
    DVOL_TRY(auto q, db_.prepare("SELECT name FROM packs WHERE id = ?"));
    q.bind(1, pack_id);
    DVOL_TRY(bool row, q.step());
    if (!row) return make_error(Errc::corrupt, fmt::format("the index names pack #{}, which is not registered", pack_id));
    name = q.text(0);
    std::string path = root_ + "/objects/packs/" + name + ".pack";
    auto fd = open_file(path, O_RDONLY);
    if (!fd) return make_error(Errc::corrupt, fmt::format("pack {} is missing: {}", name, fd.error().message));
    int raw = fd->get();
    packs_.emplace(pack_id, std::make_pair(std::move(*fd), name));
    return raw;
}

Result<std::vector<std::byte>> ObjectStore::get(const ObjectId& id) {
    std::vector<std::byte> out;
    DVOL_CHECK(get(id, out));
    return out;
}

namespace {

// What is wrong with a record header read for object `id` whose index row gives these
// lengths, or null when nothing is.
const char* record_header_problem(const std::byte* h, const ObjectId& id, uint32_t raw_len, uint32_t stored_len) {
    if (std::memcmp(h, kRecordMagic.data(), 4) != 0) return "bad record header";
    if (get_u32(h + 8) != raw_len || get_u32(h + 12) != stored_len) return "record lengths differ from the index";
    if (std::memcmp(h + 16, id.bytes.data(), ObjectId::size) != 0) return "record names another object";
    return nullptr;
}

// The error for a damaged record: it names the object and its pack.
Error corrupt_object(const ObjectId& id, const std::string& pack, std::string_view why) {
    return make_error(Errc::corrupt, fmt::format("object {} in pack {} is corrupt: {}", id.hex(), pack, why));
}

}  // namespace

Status ObjectStore::read_stored(const ObjectId& id, StoredObject& out) {
    Location loc;
    DVOL_TRY(bool found, lookup(id, loc));
    if (!found) return make_error(Errc::not_found, fmt::format("object {} is not in the store", id.hex()));
    auto pack = pack_fd(loc.pack_id, out.pack);
    if (!pack) return make_error(pack.error().code, fmt::format("object {}: {}", id.hex(), pack.error().message));
    out.id = id;
    out.raw_len = loc.raw_len;
    auto corrupt = [&](std::string_view why) { return corrupt_object(id, out.pack, why); };
    if (loc.raw_len > kMaxObjectSize || loc.stored_len > kMaxObjectSize + kMaxObjectSize / 8) return corrupt("index gives an impossible size");
    out.record.resize(kRecordHeaderSize + loc.stored_len);
    if (auto st = pread_exact(*pack, out.record, loc.offset, out.pack); !st) return corrupt(st.error().message);
    if (const char* why = record_header_problem(out.record.data(), id, loc.raw_len, loc.stored_len)) return corrupt(why);
    return {};
}

Status ObjectStore::decode_stored(const StoredObject& in, std::vector<std::byte>& out, bool check_hash) {
    auto corrupt = [&](std::string_view why) { return corrupt_object(in.id, in.pack, why); };
    if (in.record.size() < kRecordHeaderSize) return corrupt("truncated record");
    auto payload = std::span<const std::byte>(in.record).subspan(kRecordHeaderSize);
    if (auto st = decompress(static_cast<Codec>(in.record[4]), payload, in.raw_len, out); !st) return corrupt(st.error().message);
    if (check_hash && sha256(out) != in.id) return corrupt("content does not match its hash");
    return {};
}

Result<std::optional<ObjectStore::RecordRef>> ObjectStore::locate(const ObjectId& id) {
    Location loc;
    DVOL_TRY(bool found, lookup(id, loc));
    if (!found) return std::optional<RecordRef>();
    std::string name;
    DVOL_TRY(int fd, pack_fd(loc.pack_id, name));
    return std::optional<RecordRef>(RecordRef{fd, loc.offset, loc.stored_len, loc.raw_len});
}

bool ObjectStore::holds(const RecordRef& ref, const ObjectId& id, std::span<const std::byte> data, CompareBuffers& buffers) {
    if (ref.raw_len != data.size() || ref.stored_len > kMaxObjectSize + kMaxObjectSize / 8) return false;
    auto& rec = buffers.record;
    size_t want = kRecordHeaderSize + ref.stored_len;
    if (rec.size() < want) rec.resize(want);
    // Only what the page cache holds: reading the record from the disk would cost more than
    // hashing the data, so a record not in memory is answered "don't know" (false).
    if (pread_cached(ref.fd, std::span(rec).first(want), ref.offset) < want) return false;
    if (record_header_problem(rec.data(), id, ref.raw_len, ref.stored_len)) return false;
    auto payload = std::span<const std::byte>(rec).subspan(kRecordHeaderSize, ref.stored_len);
    auto codec = static_cast<Codec>(rec[4]);
    if (codec == Codec::raw) return payload.size() == data.size() && std::memcmp(payload.data(), data.data(), data.size()) == 0;
    if (!decompress(codec, payload, ref.raw_len, buffers.plain)) return false;
    return std::memcmp(buffers.plain.data(), data.data(), data.size()) == 0;
}

Status ObjectStore::get(const ObjectId& id, std::vector<std::byte>& out) {
    DVOL_CHECK(read_stored(id, stored_));
    return decode_stored(stored_, out);
}

Status ObjectStore::get_verified(const ObjectId& id, std::vector<std::byte>& out) {
    DVOL_CHECK(read_stored(id, stored_));
    return decode_stored(stored_, out, false);
}

Status ObjectStore::cleanup() {
    // Staging files whose writer died: their lock is free. Recent ones are skipped so a writer
    // that has just created its file is never raced between open and flock.
    std::string tmp = root_ + "/tmp";
    if (DIR* d = ::opendir(tmp.c_str())) {
        std::vector<std::string> stale;
        time_t now = ::time(nullptr);
        while (dirent* e = ::readdir(d)) {
            std::string n = e->d_name;
            if (n == "." || n == "..") continue;
            std::string path = tmp + "/" + n;
            struct stat st;
            if (::lstat(path.c_str(), &st) != 0 || now - st.st_mtime < 60) continue;
            int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) continue;
            UniqueFd guard(fd);
            if (::flock(fd, LOCK_EX | LOCK_NB) == 0) stale.push_back(path);
        }
        ::closedir(d);
        for (const auto& p : stale) DVOL_CHECK(remove_tree(p));
    }
    // Packs moved into place but never registered. Under the write lock no other writer can be
    // between its rename and its commit.
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(db_));
    std::string dir = root_ + "/objects/packs";
    DIR* d = ::opendir(dir.c_str());
    if (!d) return errno_error("read directory", dir);
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.size() > 5 && n.ends_with(".pack")) names.push_back(n.substr(0, n.size() - 5));
    }
    ::closedir(d);
    for (const auto& n : names) {
        DVOL_TRY(auto q, db_.prepare("SELECT 1 FROM packs WHERE name = ?"));
        q.bind(1, n);
        DVOL_TRY(bool row, q.step());
        if (!row && ::unlink((dir + "/" + n + ".pack").c_str()) != 0 && errno != ENOENT)
            return errno_error("remove", dir + "/" + n + ".pack");
    }
    return txn.commit();
}

}  // namespace dvol
