#include "meta/remote_index.h"

#include "meta/db.h"

namespace dvol::meta {

Result<int64_t> RemoteIndex::remote_id(const std::string& url) {
    {
        DVOL_TRY(auto q, db_.prepare("SELECT id FROM remotes WHERE url = ?"));
        q.bind(1, url);
        DVOL_TRY(bool row, q.step());
        if (row) return q.int64(0);
    }
    DVOL_TRY(auto ins, db_.prepare("INSERT INTO remotes(url) VALUES(?)"));
    DVOL_CHECK(ins.bind(1, url).run());
    return db_.last_insert_rowid();
}

Status RemoteIndex::drop_remote(const std::string& url) {
    DVOL_TRY(auto del, db_.prepare("DELETE FROM remotes WHERE url = ?"));
    return del.bind(1, url).run();
}

Result<std::vector<std::string>> RemoteIndex::packs(int64_t remote) {
    std::vector<std::string> out;
    DVOL_TRY(auto q, db_.prepare("SELECT name FROM remote_packs WHERE remote_id = ? ORDER BY name"));
    q.bind(1, remote);
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.push_back(q.text(0));
    }
    return out;
}

Status RemoteIndex::add_pack(int64_t remote, const std::string& name, int kind, uint64_t size, std::span<const Record> records) {
    {
        DVOL_TRY(auto q, db_.prepare("SELECT 1 FROM remote_packs WHERE remote_id = ? AND name = ?"));
        q.bind(1, remote).bind(2, name);
        DVOL_TRY(bool row, q.step());
        if (row) return {};
    }
    {
        DVOL_TRY(auto ins, db_.prepare("INSERT INTO remote_packs(remote_id, name, kind, size) VALUES(?, ?, ?, ?)"));
        DVOL_CHECK(ins.bind(1, remote).bind(2, name).bind(3, kind).bind(4, static_cast<int64_t>(size)).run());
    }
    int64_t pack_id = db_.last_insert_rowid();
    // An object in two packs of the remote (two stores pushed it at once) is found in either.
    DVOL_TRY(auto ins, db_.prepare("INSERT OR IGNORE INTO remote_objects(remote_id, id, pack_id, offset, stored_len, raw_len) "
                                   "VALUES(?, ?, ?, ?, ?, ?)"));
    for (const auto& r : records) {
        ins.bind(1, remote).bind_blob(2, r.id.as_span()).bind(3, pack_id).bind(4, static_cast<int64_t>(r.offset));
        DVOL_CHECK(ins.bind(5, static_cast<int64_t>(r.stored_len)).bind(6, static_cast<int64_t>(r.raw_len)).run());
    }
    return {};
}

Status RemoteIndex::drop_pack(int64_t remote, const std::string& name) {
    DVOL_TRY(auto del, db_.prepare("DELETE FROM remote_packs WHERE remote_id = ? AND name = ?"));
    return del.bind(1, remote).bind(2, name).run();
}

Result<std::optional<RemoteIndex::Location>> RemoteIndex::find(int64_t remote, const ObjectId& id) {
    DVOL_TRY(auto q, db_.prepare("SELECT p.name, p.kind, p.size, o.offset, o.stored_len, o.raw_len FROM remote_objects o "
                                 "JOIN remote_packs p ON p.id = o.pack_id WHERE o.remote_id = ? AND o.id = ?"));
    q.bind(1, remote).bind_blob(2, id.as_span());
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<Location>();
    return std::optional<Location>(Location{q.text(0), static_cast<int>(q.int64(1)), static_cast<uint64_t>(q.int64(2)),
                                            static_cast<uint64_t>(q.int64(3)), static_cast<uint32_t>(q.int64(4)),
                                            static_cast<uint32_t>(q.int64(5))});
}

Result<bool> RemoteIndex::has(int64_t remote, const ObjectId& id) {
    DVOL_TRY(auto q, db_.prepare("SELECT 1 FROM remote_objects WHERE remote_id = ? AND id = ?"));
    q.bind(1, remote).bind_blob(2, id.as_span());
    return q.step();
}

}  // namespace dvol::meta
