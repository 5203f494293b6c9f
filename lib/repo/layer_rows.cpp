#include "repo/layer_rows.h"

#include "meta/db.h"

namespace dvol {

Result<std::optional<LayerRow>> load_layer_row(meta::Db& db, uint64_t ino) {
    DVOL_TRY(auto q, db.prepare(
                         "SELECT mode, uid, gid, rdev, size, mtime_ns, ctime_ns, target, nlink, origin, base_limit, listed FROM nodes WHERE ino = ?"));
    q.bind(1, layer_sql_ino(ino));
    DVOL_TRY(bool found, q.step());
    if (!found) return std::optional<LayerRow>();
    LayerRow r;
    r.ino = ino;
    r.mode = static_cast<uint32_t>(q.int64(0));
    r.uid = static_cast<uint32_t>(q.int64(1));
    r.gid = static_cast<uint32_t>(q.int64(2));
    r.rdev = static_cast<uint64_t>(q.int64(3));
    r.size = static_cast<uint64_t>(q.int64(4));
    r.mtime_ns = q.int64(5);
    r.ctime_ns = q.int64(6);
    if (!q.is_null(7)) r.target = q.text(7);
    r.nlink = static_cast<uint32_t>(q.int64(8));
    if (!q.is_null(9)) r.origin = q.text(9);
    r.base_limit = static_cast<uint64_t>(q.int64(10));
    r.listed = q.int64(11) != 0;
    return std::optional<LayerRow>(std::move(r));
}

Result<std::optional<uint64_t>> layer_ino_by_origin(meta::Db& db, std::string_view path) {
    DVOL_TRY(auto q, db.prepare("SELECT ino FROM nodes WHERE origin = ?"));
    q.bind(1, path);
    DVOL_TRY(bool found, q.step());
    if (!found) return std::optional<uint64_t>();
    return std::optional<uint64_t>(layer_ino(q.int64(0)));
}

}  // namespace dvol
