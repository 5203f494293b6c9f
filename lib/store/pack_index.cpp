#include "store/pack_index.h"

#include "meta/db.h"

namespace dvol {

namespace {

std::optional<uint32_t> crc_column(meta::Stmt& q, int col) {
    if (q.is_null(col)) return std::nullopt;
    return static_cast<uint32_t>(q.int64(col));
}

}  // namespace

Result<std::optional<PackIndex::Location>> PackIndex::find(const ObjectId& id) {
    DVOL_TRY(auto q, db_.prepare("SELECT pack_id, offset, stored_len, raw_len, crc FROM objects WHERE id = ?"));
    q.bind_blob(1, id.as_span());
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<Location>();
    return std::optional<Location>(Location{q.int64(0), static_cast<uint64_t>(q.int64(1)), static_cast<uint32_t>(q.int64(2)),
                                            static_cast<uint32_t>(q.int64(3)), crc_column(q, 4)});
}

Result<std::optional<std::string>> PackIndex::pack_name(int64_t pack_id) {
    DVOL_TRY(auto q, db_.prepare("SELECT name FROM packs WHERE id = ?"));
    q.bind(1, pack_id);
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<std::string>();
    return std::optional<std::string>(q.text(0));
}

Result<bool> PackIndex::has_pack(const std::string& name) {
    DVOL_TRY(auto q, db_.prepare("SELECT 1 FROM packs WHERE name = ?"));
    q.bind(1, name);
    return q.step();
}

Result<std::vector<PackIndex::Pack>> PackIndex::packs() {
    std::vector<Pack> out;
    DVOL_TRY(auto q, db_.prepare("SELECT id, name, size FROM packs ORDER BY id"));
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.push_back(Pack{q.int64(0), q.text(1), static_cast<uint64_t>(q.int64(2))});
    }
    return out;
}

Result<std::vector<PackIndex::Record>> PackIndex::records(int64_t pack_id) {
    std::vector<Record> out;
    DVOL_TRY(auto q, db_.prepare("SELECT id, offset, stored_len, raw_len, crc FROM objects WHERE pack_id = ? ORDER BY offset"));
    q.bind(1, pack_id);
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.push_back(Record{ObjectId::from_bytes(q.blob_view(0)), static_cast<uint64_t>(q.int64(1)),
                             static_cast<uint32_t>(q.int64(2)), static_cast<uint32_t>(q.int64(3)), crc_column(q, 4)});
    }
    return out;
}

Status PackIndex::for_each_object(const std::function<Status(const ObjectId& id, const std::string& pack)>& fn) {
    DVOL_TRY(auto q, db_.prepare("SELECT o.id, p.name FROM objects o LEFT JOIN packs p ON p.id = o.pack_id ORDER BY o.pack_id, o.offset"));
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        DVOL_CHECK(fn(ObjectId::from_bytes(q.blob_view(0)), q.is_null(1) ? std::string("(unregistered)") : q.text(1)));
    }
    return {};
}

Result<int64_t> PackIndex::add_pack(const std::string& name, uint64_t size, std::span<const Record> records,
                                    std::span<const Pack> replaces) {
    {
        DVOL_TRY(auto ins, db_.prepare("INSERT INTO packs(name, size) VALUES(?, ?)"));
        DVOL_CHECK(ins.bind(1, name).bind(2, static_cast<int64_t>(size)).run());
    }
    int64_t pack_id = db_.last_insert_rowid();
    // A new pack's objects may already be registered by another writer's pack: that row
    // stays. A rewritten pack's rows name the packs it replaces: they move.
    DVOL_TRY(auto ins, db_.prepare(replaces.empty()
                                       ? "INSERT OR IGNORE INTO objects(id, pack_id, offset, stored_len, raw_len, crc) VALUES(?, ?, ?, ?, ?, ?)"
                                       : "INSERT INTO objects(id, pack_id, offset, stored_len, raw_len, crc) VALUES(?, ?, ?, ?, ?, ?) "
                                         "ON CONFLICT(id) DO UPDATE SET pack_id = excluded.pack_id, offset = excluded.offset, "
                                         "stored_len = excluded.stored_len, raw_len = excluded.raw_len, crc = excluded.crc"));
    for (const auto& r : records) {
        ins.bind_blob(1, r.id.as_span()).bind(2, pack_id).bind(3, static_cast<int64_t>(r.offset));
        ins.bind(4, static_cast<int64_t>(r.stored_len)).bind(5, static_cast<int64_t>(r.raw_len));
        if (r.crc)
            ins.bind(6, static_cast<int64_t>(*r.crc));
        else
            ins.bind_null(6);
        DVOL_CHECK(ins.run());
    }
    for (const auto& p : replaces) DVOL_CHECK(drop_pack(p.id));
    return pack_id;
}

Status PackIndex::drop_pack(int64_t pack_id) {
    DVOL_TRY(auto del_rows, db_.prepare("DELETE FROM objects WHERE pack_id = ?"));
    DVOL_CHECK(del_rows.bind(1, pack_id).run());
    DVOL_TRY(auto del_pack, db_.prepare("DELETE FROM packs WHERE id = ?"));
    return del_pack.bind(1, pack_id).run();
}

Status PackIndex::drop_objects(std::span<const ObjectId> ids) {
    DVOL_TRY(auto del, db_.prepare("DELETE FROM objects WHERE id = ?"));
    for (const auto& id : ids) DVOL_CHECK(del.bind_blob(1, id.as_span()).run());
    return {};
}

}  // namespace dvol
