// Garbage collection of packs: ObjectStore::collect and the object listing fsck walks.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "meta/db.h"
#include "store/object_store.h"

namespace dvol {

namespace {

struct Row {
    ObjectId id;
    uint64_t offset;
    uint32_t stored_len;
};

struct PackInfo {
    int64_t id;
    std::string name;
    uint64_t size;
};

// A pack being written by collect(): live records copied verbatim from drained packs.
struct NewPack {
    UniqueFd fd;
    std::string name;
    uint64_t size = 0;
    std::vector<std::pair<ObjectId, uint64_t>> moved;  // id -> offset in the new pack
    std::vector<PackInfo> drained;                     // old packs whose live records it holds
};

}  // namespace

Status ObjectStore::for_each_object(const std::function<Status(const ObjectId& id, const std::string& pack)>& fn) {
    // Streams the index (memory stays flat however many objects there are); `fn` may read
    // objects meanwhile, which uses other statements of the same connection.
    DVOL_TRY(auto q, db_.prepare("SELECT o.id, p.name FROM objects o LEFT JOIN packs p ON p.id = o.pack_id ORDER BY o.pack_id, o.offset"));
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        DVOL_CHECK(fn(ObjectId::from_bytes(q.blob_view(0)), q.is_null(1) ? std::string("(unregistered)") : q.text(1)));
    }
    return {};
}

Result<ObjectStore::CollectStats> ObjectStore::collect(const std::function<Result<bool>(const ObjectId&)>& is_live, double repack_below) {
    DVOL_CHECK(flush());
    CollectStats stats;
    std::vector<PackInfo> packs;
    {
        DVOL_TRY(auto q, db_.prepare("SELECT id, name, size FROM packs ORDER BY id"));
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) break;
            packs.push_back(PackInfo{q.int64(0), q.text(1), static_cast<uint64_t>(q.int64(2))});
        }
    }
    std::string packs_dir = root_ + "/objects/packs";
    auto forget_fd = [this](int64_t pack_id) { packs_.erase(pack_id); };

    NewPack out;
    auto finish_new_pack = [&]() -> Status {
        if (!out.fd.valid()) return {};
        std::string tmp_path = root_ + "/tmp/" + out.name + ".pack";
        std::string final_path = packs_dir + "/" + out.name + ".pack";
        DVOL_CHECK(fsync_fd(out.fd.get(), tmp_path));
        {
            DVOL_TRY(auto txn, meta::Db::Transaction::begin(db_));
            if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) return errno_error("move pack into place", final_path);
            DVOL_CHECK(fsync_dir(packs_dir));
            DVOL_TRY(auto ins, db_.prepare("INSERT INTO packs(name, size) VALUES(?, ?)"));
            DVOL_CHECK(ins.bind(1, out.name).bind(2, static_cast<int64_t>(out.size)).run());
            int64_t new_id = db_.last_insert_rowid();
            DVOL_TRY(auto up, db_.prepare("UPDATE objects SET pack_id = ?, offset = ? WHERE id = ?"));
            for (const auto& [id, off] : out.moved) DVOL_CHECK(up.bind(1, new_id).bind(2, static_cast<int64_t>(off)).bind_blob(3, id.as_span()).run());
            DVOL_TRY(auto del_rows, db_.prepare("DELETE FROM objects WHERE pack_id = ?"));
            DVOL_TRY(auto del_pack, db_.prepare("DELETE FROM packs WHERE id = ?"));
            for (const auto& p : out.drained) {
                DVOL_CHECK(del_rows.bind(1, p.id).run());
                DVOL_CHECK(del_pack.bind(1, p.id).run());
            }
            Status committed = txn.commit();
            if (!committed) {
                ::rename(final_path.c_str(), tmp_path.c_str());
                return committed;
            }
        }
        for (const auto& p : out.drained) {
            forget_fd(p.id);
            ::unlink((packs_dir + "/" + p.name + ".pack").c_str());
        }
        DVOL_CHECK(fsync_dir(packs_dir));
        stats.packs_rewritten += out.drained.size();
        stats.bytes_after += out.size;
        out = NewPack();
        return {};
    };

    std::vector<std::byte> record;
    for (const auto& pack : packs) {
        std::vector<Row> live, dead;
        {
            DVOL_TRY(auto q, db_.prepare("SELECT id, offset, stored_len FROM objects WHERE pack_id = ? ORDER BY offset"));
            q.bind(1, pack.id);
            for (;;) {
                DVOL_TRY(bool row, q.step());
                if (!row) break;
                Row r{ObjectId::from_bytes(q.blob_view(0)), static_cast<uint64_t>(q.int64(1)), static_cast<uint32_t>(q.int64(2))};
                DVOL_TRY(bool keep, is_live(r.id));
                (keep ? live : dead).push_back(r);
            }
        }
        stats.bytes_before += pack.size;
        stats.objects_removed += dead.size();
        uint64_t live_bytes = 0;
        for (const auto& r : live) live_bytes += kRecordHeaderSize + r.stored_len;

        if (live.empty()) {
            DVOL_TRY(auto txn, meta::Db::Transaction::begin(db_));
            DVOL_TRY(auto del_rows, db_.prepare("DELETE FROM objects WHERE pack_id = ?"));
            DVOL_CHECK(del_rows.bind(1, pack.id).run());
            DVOL_TRY(auto del_pack, db_.prepare("DELETE FROM packs WHERE id = ?"));
            DVOL_CHECK(del_pack.bind(1, pack.id).run());
            DVOL_CHECK(txn.commit());
            forget_fd(pack.id);
            ::unlink((packs_dir + "/" + pack.name + ".pack").c_str());
            stats.packs_deleted++;
            continue;
        }
        if (static_cast<double>(live_bytes) >= repack_below * static_cast<double>(pack.size)) {
            if (!dead.empty()) {
                DVOL_TRY(auto txn, meta::Db::Transaction::begin(db_));
                DVOL_TRY(auto del, db_.prepare("DELETE FROM objects WHERE id = ?"));
                for (const auto& r : dead) DVOL_CHECK(del.bind_blob(1, r.id.as_span()).run());
                DVOL_CHECK(txn.commit());
            }
            stats.bytes_after += pack.size;
            continue;
        }
        // Mostly garbage: copy the live records into the new pack, verifying each.
        if (!out.fd.valid()) {
            out.name = random_name();
            std::string path = root_ + "/tmp/" + out.name + ".pack";
            DVOL_TRY(out.fd, create_pack_file(path));
            out.size = kPackHeaderSize;
        }
        std::string name;
        DVOL_TRY(int fd, pack_fd(pack.id, name));
        for (const auto& r : live) {
            DVOL_CHECK(get(r.id, scratch_));  // verified before it is carried over
            record.resize(kRecordHeaderSize + r.stored_len);
            DVOL_CHECK(pread_exact(fd, record, r.offset, name));
            DVOL_CHECK(pwrite_all(out.fd.get(), record, out.size, out.name));
            out.moved.emplace_back(r.id, out.size);
            out.size += record.size();
        }
        out.drained.push_back(pack);
        if (out.size >= kMaxPackSize) DVOL_CHECK(finish_new_pack());
    }
    DVOL_CHECK(finish_new_pack());
    return stats;
}

}  // namespace dvol
