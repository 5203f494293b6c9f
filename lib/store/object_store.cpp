#include "store/object_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "meta/db.h"

namespace dvol {

namespace {

// The error for a damaged record: it names the object and its pack.
Error corrupt_object(const ObjectId& id, const std::string& pack, std::string_view why) {
    return make_error(Errc::corrupt, fmt::format("object {} in pack {} is corrupt: {}", id.hex(), pack, why));
}

}  // namespace

Result<std::unique_ptr<ObjectStore>> ObjectStore::open(const StorePaths& paths, meta::Db& db) {
    DVOL_CHECK(make_dirs(paths.packs_dir()));
    DVOL_CHECK(make_dirs(paths.tmp_dir()));
    return std::unique_ptr<ObjectStore>(new ObjectStore(paths, db));
}

ObjectStore::~ObjectStore() {
    // Unflushed objects are abandoned: their staging pack is garbage for cleanup().
    if (staging_.fd.valid()) ::unlink(paths_.staging_pack(staging_.name).c_str());
}

Result<bool> ObjectStore::lookup(const ObjectId& id, Location& loc) {
    if (auto it = staged_.find(id); it != staged_.end()) {
        loc = it->second;
        return true;
    }
    DVOL_TRY(auto found, index_.find(id));
    if (!found) return false;
    loc = *found;
    return true;
}

Result<bool> ObjectStore::has(const ObjectId& id) {
    Location loc;
    return lookup(id, loc);
}

Result<std::optional<uint64_t>> ObjectStore::size_of(const ObjectId& id) {
    Location loc;
    DVOL_TRY(bool found, lookup(id, loc));
    if (!found) return std::optional<uint64_t>();
    return std::optional<uint64_t>(loc.raw_len);
}

Result<ObjectId> ObjectStore::put(std::span<const std::byte> data) {
    ObjectId id = sha256(data);
    DVOL_CHECK(put(id, data));
    return id;
}

Result<ObjectStore::PackFile> ObjectStore::create_pack() {
    PackFile pack;
    pack.name = random_name();
    std::string path = paths_.staging_pack(pack.name);
    DVOL_TRY(pack.fd, open_file(path, O_RDWR | O_CREAT | O_EXCL, 0644));
    // Held until the pack is registered: cleanup() leaves locked staging files alone.
    if (::flock(pack.fd.get(), LOCK_EX | LOCK_NB) != 0) return errno_error("lock", path);
    auto hdr = pack_header();
    DVOL_CHECK(write_all(pack.fd.get(), hdr, path));
    pack.size = kPackHeaderSize;
    return pack;
}

Status ObjectStore::put(const ObjectId& id, std::span<const std::byte> data) {
    if (data.size() > kMaxObjectSize) return make_error(Errc::invalid_argument, "object too large");
    DVOL_TRY(bool present, has(id));
    if (present) return {};
    Codec codec = compressor_.compress(data, scratch_);
    return put_encoded(id, codec, scratch_, static_cast<uint32_t>(data.size()));
}

void ObjectStore::trim_slots(std::span<StoredObject> slots, size_t bytes) {
    size_t kept = 0;
    for (auto& slot : slots) {
        if (kept + slot.record.capacity() > bytes)
            std::vector<std::byte>().swap(slot.record);
        else
            kept += slot.record.capacity();
    }
}

Status ObjectStore::put_encoded(const ObjectId& id, Codec codec, std::span<const std::byte> stored, uint32_t raw_len) {
    if (raw_len > kMaxObjectSize || stored.size() > kMaxObjectSize) return make_error(Errc::invalid_argument, "object too large");
    if (staged_.contains(id)) return {};
    if (staging_.fd.valid() && staging_.size >= kMaxPackSize) DVOL_CHECK(flush());
    if (!staging_.fd.valid()) {
        DVOL_TRY(staging_, create_pack());
        staging_written_back_ = 0;
    }

    record_.resize(kRecordHeaderSize + stored.size());
    encode_record_header(record_.data(), id, codec, raw_len, static_cast<uint32_t>(stored.size()));
    std::memcpy(record_.data() + kRecordHeaderSize, stored.data(), stored.size());
    DVOL_CHECK(pwrite_all(staging_.fd.get(), record_, staging_.size, staging_.name));
    staged_.emplace(id, Location{0, staging_.size, static_cast<uint32_t>(stored.size()), raw_len, crc32c(record_)});
    staging_.size += record_.size();
    // Start writing the pack out every few MiB, so that flush()'s fsync waits for the last of
    // it rather than all of it. Asynchronous and advisory: durability still comes from the
    // fsync.
    constexpr uint64_t kWritebackEvery = 8u << 20;
    if (staging_.size - staging_written_back_ >= kWritebackEvery) {
        ::sync_file_range(staging_.fd.get(), static_cast<off_t>(staging_written_back_),
                          static_cast<off_t>(staging_.size - staging_written_back_), SYNC_FILE_RANGE_WRITE);
        staging_written_back_ = staging_.size;
    }
    stats_.objects_written++;
    stats_.bytes_written += record_.size();
    return {};
}

Result<int64_t> ObjectStore::publish_pack(PackFile& pack, std::span<const PackIndex::Record> records,
                                          std::span<const PackIndex::Pack> replaces) {
    std::string tmp_path = paths_.staging_pack(pack.name);
    std::string final_path = paths_.pack(pack.name);
    DVOL_CHECK(fsync_fd(pack.fd.get(), tmp_path));
    int64_t pack_id = 0;
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(db_));
        if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) return errno_error("move pack into place", final_path);
        DVOL_CHECK(fsync_dir(paths_.packs_dir()));
        auto registered = index_.add_pack(pack.name, pack.size, records, replaces);
        Status committed = registered ? txn.commit() : Status(registered.error());
        if (!committed) {
            // The pack is in place but unregistered: move it back so nothing names it half-way.
            ::rename(final_path.c_str(), tmp_path.c_str());
            return std::move(committed).error();
        }
        pack_id = *registered;
    }
    if (!replaces.empty()) {
        for (const auto& p : replaces) {
            forget_pack(p.id);
            ::unlink(paths_.pack(p.name).c_str());
        }
        DVOL_CHECK(fsync_dir(paths_.packs_dir()));
    }
    return pack_id;
}

Status ObjectStore::flush() {
    if (!staging_.fd.valid()) return {};
    std::vector<PackIndex::Record> records;
    records.reserve(staged_.size());
    for (const auto& [id, loc] : staged_) records.push_back(PackIndex::Record{id, loc.offset, loc.stored_len, loc.raw_len, loc.crc});
    DVOL_TRY(int64_t pack_id, publish_pack(staging_, records));
    packs_.emplace(pack_id, std::make_pair(std::move(staging_.fd), staging_.name));
    staging_ = PackFile();
    staged_.clear();
    return {};
}

Result<int> ObjectStore::pack_fd(int64_t pack_id, std::string& name) {
    if (pack_id == 0) {
        name = staging_.name;
        return staging_.fd.get();
    }
    if (auto it = packs_.find(pack_id); it != packs_.end()) {
        name = it->second.second;
        return it->second.first.get();
    }
    DVOL_TRY(auto registered, index_.pack_name(pack_id));
    if (!registered) return make_error(Errc::corrupt, fmt::format("the index names pack #{}, which is not registered", pack_id));
    name = *registered;
    auto fd = open_file(paths_.pack(name), O_RDONLY);
    if (!fd) return make_error(Errc::corrupt, fmt::format("pack {} is missing: {}", name, fd.error().message));
    // Only version 1 with the reserved word 0 is read (FORMAT.md, "Pack files").
    std::array<std::byte, kPackHeaderSize> header{};
    if (auto st = pread_exact(fd->get(), header, 0, name); !st || !valid_pack_header(header))
        return make_error(Errc::corrupt, fmt::format("pack {} has a damaged header (not DVOLPACK version 1)", name));
    int raw = fd->get();
    packs_.emplace(pack_id, std::make_pair(std::move(*fd), name));
    return raw;
}

void ObjectStore::close_deleted_packs() {
    std::erase_if(packs_, [](const auto& p) {
        struct stat st;
        return ::fstat(p.second.first.get(), &st) == 0 && st.st_nlink == 0;
    });
}

Status ObjectStore::read_stored(const ObjectId& id, StoredObject& out) {
    Location loc;
    DVOL_TRY(bool found, lookup(id, loc));
    if (!found) return make_error(Errc::not_found, fmt::format("object {} is not in the store", id.hex()));
    auto pack = pack_fd(loc.pack_id, out.pack);
    if (!pack) return make_error(pack.error().code, fmt::format("object {}: {}", id.hex(), pack.error().message));
    out.id = id;
    out.raw_len = loc.raw_len;
    out.crc = loc.crc;
    auto corrupt = [&](std::string_view why) { return corrupt_object(id, out.pack, why); };
    if (loc.raw_len > kMaxObjectSize || loc.stored_len > kMaxStoredSize) return corrupt("index gives an impossible size");
    out.record.resize(kRecordHeaderSize + loc.stored_len);
    if (auto st = pread_exact(*pack, out.record, loc.offset, out.pack); !st) return corrupt(st.error().message);
    if (const char* why = record_header_problem(out.record.data(), id, loc.raw_len, loc.stored_len)) return corrupt(why);
    return {};
}

Status ObjectStore::decode_stored(const StoredObject& in, std::vector<std::byte>& out, bool check_hash) {
    auto st = decode_record(in.record, in.id, in.raw_len, out, check_hash);
    if (!st) return corrupt_object(in.id, in.pack, st.error().message);
    return {};
}

Status ObjectStore::check_stored(const StoredObject& in, std::vector<std::byte>& scratch) {
    if (!in.crc) return decode_stored(in, scratch);
    if (crc32c(in.record) != *in.crc) return corrupt_object(in.id, in.pack, "the record's bytes do not match its checksum");
    return {};
}

Status ObjectStore::check_stored_decodes(const StoredObject& in, std::vector<std::byte>& scratch) {
    if (!in.crc) return decode_stored(in, scratch);
    DVOL_CHECK(check_stored(in, scratch));
    if (in.record.size() < kRecordHeaderSize) return corrupt_object(in.id, in.pack, "record shorter than its header");
    if (record_codec(in.record.data()) != Codec::raw) return decode_stored(in, scratch, false);
    if (in.record.size() - kRecordHeaderSize != in.raw_len) return corrupt_object(in.id, in.pack, "raw record length does not match its header");
    return {};
}

Status ObjectStore::decode_stored_view(const StoredObject& in, std::vector<std::byte>& scratch, std::span<const std::byte>& plain,
                                       bool check_hash) {
    if (in.record.size() < kRecordHeaderSize || record_codec(in.record.data()) != Codec::raw) {
        DVOL_CHECK(decode_stored(in, scratch, check_hash));
        plain = scratch;
        return {};
    }
    auto payload = std::span<const std::byte>(in.record).subspan(kRecordHeaderSize);
    if (payload.size() != in.raw_len) return corrupt_object(in.id, in.pack, "raw record length does not match its header");
    if (check_hash && sha256(payload) != in.id) return corrupt_object(in.id, in.pack, "content does not match its hash");
    plain = payload;
    return {};
}

Status ObjectStore::locate_stored(const ObjectId& id, StoredRef& out) {
    Location loc;
    DVOL_TRY(bool found, lookup(id, loc));
    if (!found) return make_error(Errc::not_found, fmt::format("object {} is not in the store", id.hex()));
    std::string name;
    auto pack = pack_fd(loc.pack_id, name);
    if (!pack) return make_error(pack.error().code, fmt::format("object {}: {}", id.hex(), pack.error().message));
    out.id = id;
    out.where = RecordRef{*pack, loc.offset, loc.stored_len, loc.raw_len};
    out.pack = loc.pack_id == 0 ? &staging_.name : &packs_.at(loc.pack_id).second;
    out.crc = loc.crc;
    if (loc.raw_len > kMaxObjectSize || loc.stored_len > kMaxStoredSize) return corrupt_object(id, name, "index gives an impossible size");
    return {};
}

Status ObjectStore::read_located(const StoredRef& ref, StoredObject& out) {
    out.id = ref.id;
    out.pack = *ref.pack;
    out.raw_len = ref.where.raw_len;
    out.crc = ref.crc;
    auto corrupt = [&](std::string_view why) { return corrupt_object(ref.id, out.pack, why); };
    out.record.resize(kRecordHeaderSize + ref.where.stored_len);
    if (auto st = pread_exact(ref.where.fd, out.record, ref.where.offset, out.pack); !st) return corrupt(st.error().message);
    if (const char* why = record_header_problem(out.record.data(), ref.id, ref.where.raw_len, ref.where.stored_len)) return corrupt(why);
    return {};
}

Result<bool> ObjectStore::copy_raw_payload(const StoredRef& ref, int out_fd, uint64_t offset, std::string_view path) {
    std::array<std::byte, kRecordHeaderSize> header{};
    if (auto st = pread_exact(ref.where.fd, header, ref.where.offset, *ref.pack); !st) return corrupt_object(ref.id, *ref.pack, st.error().message);
    if (const char* why = record_header_problem(header.data(), ref.id, ref.where.raw_len, ref.where.stored_len))
        return corrupt_object(ref.id, *ref.pack, why);
    if (record_codec(header.data()) != Codec::raw) return false;
    if (ref.where.stored_len != ref.where.raw_len) return corrupt_object(ref.id, *ref.pack, "raw record length does not match its header");
    auto in = static_cast<loff_t>(ref.where.offset + kRecordHeaderSize);
    auto out = static_cast<loff_t>(offset);
    for (size_t left = ref.where.stored_len; left > 0;) {
        ssize_t n = ::copy_file_range(ref.where.fd, &in, out_fd, &out, left, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EBADF)) return false;
        if (n < 0) return errno_error("write", path);
        if (n == 0) return corrupt_object(ref.id, *ref.pack, "the pack ends inside the record");
        left -= static_cast<size_t>(n);
    }
    return true;
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
    if (ref.raw_len != data.size() || ref.stored_len > kMaxStoredSize) return false;
    auto& rec = buffers.record;
    size_t want = kRecordHeaderSize + ref.stored_len;
    if (rec.size() < want) rec.resize(want);
    // Only what the page cache holds: reading the record from the disk would cost more than
    // hashing the data, so a record not in memory is answered "don't know" (false).
    if (pread_cached(ref.fd, std::span(rec).first(want), ref.offset) < want) return false;
    if (record_header_problem(rec.data(), id, ref.raw_len, ref.stored_len)) return false;
    auto payload = std::span<const std::byte>(rec).subspan(kRecordHeaderSize, ref.stored_len);
    auto codec = record_codec(rec.data());
    if (codec == Codec::raw) return payload.size() == data.size() && std::memcmp(payload.data(), data.data(), data.size()) == 0;
    if (!decompress(codec, payload, ref.raw_len, buffers.plain)) return false;
    return std::memcmp(buffers.plain.data(), data.data(), data.size()) == 0;
}

Status ObjectStore::get(const ObjectId& id, std::vector<std::byte>& out) {
    DVOL_CHECK(read_stored(id, stored_));
    return decode_stored(stored_, out);
}

Status ObjectStore::get_checked(const ObjectId& id, std::vector<std::byte>& out) {
    DVOL_CHECK(read_stored(id, stored_));
    DVOL_CHECK(decode_stored(stored_, out));
    if (stored_.crc && crc32c(stored_.record) != *stored_.crc)
        return corrupt_object(id, stored_.pack, "the record's bytes do not match the checksum the index keeps of them");
    return {};
}

Status ObjectStore::get_by_checksum(const ObjectId& id, std::vector<std::byte>& out) {
    Location loc;
    DVOL_TRY(bool found, lookup(id, loc));
    if (!found) return make_error(Errc::not_found, fmt::format("object {} is not in the store", id.hex()));
    if (!loc.crc) return get(id, out);
    std::string name;
    auto pack = pack_fd(loc.pack_id, name);
    if (!pack) return make_error(pack.error().code, fmt::format("object {}: {}", id.hex(), pack.error().message));
    auto corrupt = [&](std::string_view why) { return corrupt_object(id, name, why); };
    if (loc.raw_len > kMaxObjectSize || loc.stored_len > kMaxStoredSize) return corrupt("index gives an impossible size");
    std::array<std::byte, kRecordHeaderSize> header{};
    if (auto st = pread_exact(*pack, header, loc.offset, name); !st) return corrupt(st.error().message);
    if (const char* why = record_header_problem(header.data(), id, loc.raw_len, loc.stored_len)) return corrupt(why);
    // The header and the payload apart, so that a raw payload lands where the caller wants it.
    Codec codec = record_codec(header.data());
    std::vector<std::byte>& payload = codec == Codec::raw ? out : scratch_;
    payload.resize(loc.stored_len);
    if (auto st = pread_exact(*pack, payload, loc.offset + kRecordHeaderSize, name); !st) return corrupt(st.error().message);
    if (crc32c(payload, crc32c(header)) != *loc.crc)
        return corrupt("the record's bytes do not match the checksum the index keeps of them");
    if (codec == Codec::raw) {
        if (out.size() != loc.raw_len) return corrupt("raw record length does not match its header");
        return {};
    }
    if (auto st = decompress(codec, payload, loc.raw_len, out); !st) return corrupt(st.error().message);
    return {};
}

Status ObjectStore::get_verified(const ObjectId& id, std::vector<std::byte>& out) {
    DVOL_CHECK(read_stored(id, stored_));
    return decode_stored(stored_, out, false);
}

Status ObjectStore::cleanup() {
    // Staging files whose writer died: their lock is free. Recent ones are skipped so a writer
    // that has just created its file is never raced between open and flock.
    std::string tmp = paths_.tmp_dir();
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
        // A leftover that cannot be removed (a mount point inside a removed volume's
        // directory, a file made immutable) stays for a later try: it must never stop this
        // command, or every command of every volume after it.
        for (const auto& p : stale) (void)remove_tree(p);
    }
    // Packs moved into place but never registered. Under the write lock no other writer can be
    // between its rename and its commit.
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(db_));
    std::string dir = paths_.packs_dir();
    DIR* d = ::opendir(dir.c_str());
    if (!d) return errno_error("read directory", dir);
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.size() > 5 && n.ends_with(".pack")) names.push_back(n.substr(0, n.size() - 5));
    }
    ::closedir(d);
    for (const auto& n : names) {
        DVOL_TRY(bool registered, index_.has_pack(n));
        if (!registered && ::unlink(paths_.pack(n).c_str()) != 0 && errno != ENOENT) return errno_error("remove", paths_.pack(n));
    }
    return txn.commit();
}

}  // namespace dvol
