// Garbage collection of packs: ObjectStore::collect.
#include <unistd.h>

#include "meta/db.h"
#include "store/object_store.h"

namespace dvol {

Result<ObjectStore::CollectStats> ObjectStore::collect(const std::function<Result<bool>(const ObjectId&)>& is_live, double repack_below) {
    DVOL_CHECK(flush());
    CollectStats stats;
    DVOL_TRY(auto packs, index_.packs());

    // A pack being written: the live records of drained packs, copied verbatim.
    PackFile out;
    std::vector<PackIndex::Record> moved;
    std::vector<PackIndex::Pack> drained;  // old packs whose live records `out` holds
    auto finish_new_pack = [&]() -> Status {
        if (!out.fd.valid()) return {};
        DVOL_TRY(int64_t id, publish_pack(out, moved, drained));
        (void)id;
        stats.packs_rewritten += drained.size();
        stats.bytes_after += out.size;
        out = PackFile();
        moved.clear();
        drained.clear();
        return {};
    };

    std::vector<std::byte> record;
    for (const auto& pack : packs) {
        std::vector<PackIndex::Record> live;
        std::vector<ObjectId> dead;
        DVOL_TRY(auto records, index_.records(pack.id));
        for (auto& r : records) {
            DVOL_TRY(bool keep, is_live(r.id));
            if (keep) live.push_back(r);
            else dead.push_back(r.id);
        }
        stats.bytes_before += pack.size;
        stats.objects_removed += dead.size();
        uint64_t live_bytes = 0;
        for (const auto& r : live) live_bytes += kRecordHeaderSize + r.stored_len;

        if (live.empty()) {
            DVOL_TRY(auto txn, meta::Db::Transaction::begin(db_));
            DVOL_CHECK(index_.drop_pack(pack.id));
            DVOL_CHECK(txn.commit());
            forget_pack(pack.id);
            ::unlink(paths_.pack(pack.name).c_str());
            stats.packs_deleted++;
            continue;
        }
        if (static_cast<double>(live_bytes) >= repack_below * static_cast<double>(pack.size)) {
            if (!dead.empty()) {
                DVOL_TRY(auto txn, meta::Db::Transaction::begin(db_));
                DVOL_CHECK(index_.drop_objects(dead));
                DVOL_CHECK(txn.commit());
            }
            stats.bytes_after += pack.size;
            continue;
        }
        // Mostly garbage: copy the live records into the new pack, verifying each.
        if (!out.fd.valid()) { DVOL_TRY(out, create_pack()); }
        std::string name;
        DVOL_TRY(int fd, pack_fd(pack.id, name));
        for (const auto& r : live) {
            DVOL_CHECK(get(r.id, scratch_));  // verified before it is carried over
            record.resize(kRecordHeaderSize + r.stored_len);
            DVOL_CHECK(pread_exact(fd, record, r.offset, name));
            DVOL_CHECK(pwrite_all(out.fd.get(), record, out.size, out.name));
            moved.push_back(PackIndex::Record{r.id, out.size, r.stored_len, r.raw_len, crc32c(record)});
            out.size += record.size();
        }
        drained.push_back(pack);
        if (out.size >= kMaxPackSize) DVOL_CHECK(finish_new_pack());
    }
    DVOL_CHECK(finish_new_pack());
    return stats;
}

}  // namespace dvol
