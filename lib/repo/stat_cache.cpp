#include "repo/stat_cache.h"

#include <time.h>

#include <vector>

#include <fmt/format.h>

#include "base/fs.h"
#include "meta/db.h"

namespace dvol {

StatKey stat_key(const struct stat& st) {
    StatKey k;
    k.size = static_cast<uint64_t>(st.st_size);
    k.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    k.ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec;
    k.ino = st.st_ino;
    k.mode = st.st_mode;
    k.uid = st.st_uid;
    k.gid = st.st_gid;
    return k;
}

int64_t now_ns() {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

Status StatCache::tolerate(Status st) {
    if (st || st.error().code != Errc::corrupt) return st;
    if (!damaged_ && on_damage_)
        on_damage_(fmt::format("the stat cache is damaged ({}); files are read instead of trusted. Run 'dvol fsck', then 'dvol fsck --repair' "
                               "to rebuild it",
                               st.error().message));
    damaged_ = true;
    return {};
}

Result<std::optional<FileContent>> StatCache::lookup(const std::string& path, const StatKey& key,
                                                     std::optional<FileContent>* stale, std::optional<Xattrs>* xattrs) {
    if (xattrs) xattrs->reset();
    if (damaged_) return std::optional<FileContent>();
    auto found = lookup_now(path, key, stale, xattrs);
    if (!found) {
        DVOL_CHECK(tolerate(std::move(found).error()));
        return std::optional<FileContent>();
    }
    return found;
}

namespace {

// The columns both reads select, in this order.
constexpr const char* kRowColumns = "path, size, mtime_ns, ctime_ns, ino, mode, uid, gid, scan_ns, content, xattrs";

// The row a statement selecting kRowColumns is on.
StatCache::Row row_of(meta::Stmt& q) {
    StatCache::Row r;
    r.path = std::string(as_chars(q.blob_view(0)));
    r.key = StatKey{static_cast<uint64_t>(q.int64(1)), q.int64(2), q.int64(3), static_cast<uint64_t>(q.int64(4)),
                    static_cast<uint32_t>(q.int64(5)), static_cast<uint32_t>(q.int64(6)), static_cast<uint32_t>(q.int64(7))};
    r.scan_ns = q.int64(8);
    auto c = q.blob_view(9);
    r.content.assign(c.begin(), c.end());
    if (!q.is_null(10)) {
        auto x = q.blob_view(10);
        r.xattrs.emplace(x.begin(), x.end());
    }
    return r;
}

}  // namespace

Status StatCache::read_batch() {
    DVOL_TRY(auto q, db_.prepare(fmt::format("SELECT {} FROM stat_cache WHERE volume_id = ? AND path > ? ORDER BY path LIMIT ?", kRowColumns)));
    q.bind(1, volume_id_).bind_blob(2, as_bytes(read_to_)).bind(3, static_cast<int64_t>(kBatchRows));
    size_t n = 0;
    for (;; ++n) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        Row r = row_of(q);
        read_to_ = r.path;
        batch_.push_back(std::move(r));
    }
    if (n < kBatchRows) read_all_ = true;
    return {};
}

Status StatCache::take_ahead(const std::string& path, Row& out, bool& found, bool& ask) {
    found = ask = false;
    if (!aside_.empty()) {
        if (auto it = aside_.find(path); it != aside_.end()) {
            out = std::move(it->second);
            aside_.erase(it);
            found = true;
            return {};
        }
    }
    if (dropped_to_ && path <= *dropped_to_) {
        ask = true;
        return {};
    }
    for (;;) {
        if (batch_.empty()) {
            if (read_all_) return {};
            DVOL_CHECK(read_batch());
            continue;
        }
        Row& next = batch_.front();
        if (next.path == path) {
            out = std::move(next);
            batch_.pop_front();
            found = true;
            return {};
        }
        if (next.path > path) return {};
        // A row for a path the scan reaches later (its order differs from byte order where a
        // name holds a byte below '/'), or for a file gone: put it aside, a bounded number.
        if (aside_.size() == kAsideRows) {
            auto first = aside_.begin();
            if (!dropped_to_ || *dropped_to_ < first->first) dropped_to_ = first->first;
            aside_.erase(first);
        }
        std::string key = next.path;
        aside_.emplace(std::move(key), std::move(next));
        batch_.pop_front();
    }
}

Result<std::optional<FileContent>> StatCache::lookup_now(const std::string& path, const StatKey& key,
                                                         std::optional<FileContent>* stale, std::optional<Xattrs>* xattrs) {
    Row row;
    bool found = false, ask = !ahead_;
    if (ahead_) DVOL_CHECK(take_ahead(path, row, found, ask));
    std::optional<meta::Stmt> q;
    std::span<const std::byte> content_bytes;
    std::optional<std::span<const std::byte>> xattr_bytes;
    if (ask) {
        DVOL_TRY(auto prepared, db_.prepare("SELECT size, mtime_ns, ctime_ns, ino, mode, uid, gid, scan_ns, content, xattrs "
                                            "FROM stat_cache WHERE volume_id = ? AND path = ?"));
        q.emplace(std::move(prepared));
        q->bind(1, volume_id_).bind_blob(2, as_bytes(path));
        DVOL_TRY(found, q->step());
        if (found) {
            row.key = StatKey{static_cast<uint64_t>(q->int64(0)), q->int64(1), q->int64(2), static_cast<uint64_t>(q->int64(3)),
                              static_cast<uint32_t>(q->int64(4)), static_cast<uint32_t>(q->int64(5)), static_cast<uint32_t>(q->int64(6))};
            row.scan_ns = q->int64(7);
            content_bytes = q->blob_view(8);
            if (!q->is_null(9)) xattr_bytes = q->blob_view(9);
        }
    } else {
        content_bytes = row.content;
        if (row.xattrs) xattr_bytes = std::span<const std::byte>(*row.xattrs);
    }
    if (!found) return std::optional<FileContent>();
    bool fresh = row.key == key && row.key.mtime_ns + kRacyWindowNs <= row.scan_ns;
    if (!fresh && !stale) return std::optional<FileContent>();
    auto content = decode_content(content_bytes);
    if (!content) return std::optional<FileContent>();  // a damaged row only costs a re-read
    if (!fresh) {
        *stale = std::move(*content);
        return std::optional<FileContent>();
    }
    // The xattrs: an xattr change moves ctime alone, so the racy rule applies to ctime (a row
    // whose xattrs do not decode only costs their listing).
    if (xattrs && xattr_bytes && row.key.ctime_ns + kRacyWindowNs <= row.scan_ns) {
        if (auto x = decode_xattrs(*xattr_bytes)) *xattrs = std::move(*x);
    }
    return std::optional<FileContent>(std::move(*content));
}

void StatCache::seek(const std::string& path) {
    if (!ahead_ || read_all_) return;
    if (!batch_.empty() ? batch_.back().path >= path : read_to_ >= path) return;  // read that far already
    // The rows up to `path` are not read: one of them looked up later is asked for alone.
    batch_.clear();
    read_to_ = path;
    if (!dropped_to_ || *dropped_to_ < path) dropped_to_ = path;
}

Result<StatCache::DirRows> StatCache::dir_rows() {
    DirRows rows;
    if (damaged_) return rows;
    auto read = [&]() -> Status {
        DVOL_TRY(auto q, db_.prepare("SELECT path, own, full, tree, scan_ns FROM dir_cache WHERE volume_id = ?"));
        q.bind(1, volume_id_);
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) return {};
            auto own = q.blob_view(1), full = q.blob_view(2), tree = q.blob_view(3);
            if (own.size() != ObjectId::size || full.size() != ObjectId::size || tree.size() != ObjectId::size) continue;  // damaged: as if absent
            DirRow r{ObjectId::from_bytes(own), ObjectId::from_bytes(full), ObjectId::from_bytes(tree), q.int64(4)};
            rows.emplace(std::string(as_chars(q.blob_view(0))), r);
        }
    };
    if (auto st = read(); !st) {
        rows.clear();
        DVOL_CHECK(tolerate(std::move(st)));
    }
    return rows;
}

Status StatCache::save_dir_rows(const std::vector<std::pair<std::string, DirRow>>& put, const std::vector<std::string>& drop) {
    if (damaged_) return {};
    auto write = [&]() -> Status {
        DVOL_TRY(auto del, db_.prepare("DELETE FROM dir_cache WHERE volume_id = ? AND path = ?"));
        for (const auto& p : drop) DVOL_CHECK(del.bind(1, volume_id_).bind_blob(2, as_bytes(p)).run());
        DVOL_TRY(auto ins, db_.prepare("INSERT OR REPLACE INTO dir_cache(volume_id, path, own, full, tree, scan_ns) VALUES(?, ?, ?, ?, ?, ?)"));
        for (const auto& [path, r] : put) {
            ins.bind(1, volume_id_).bind_blob(2, as_bytes(path)).bind_blob(3, r.own.as_span()).bind_blob(4, r.full.as_span());
            DVOL_CHECK(ins.bind_blob(5, r.tree.as_span()).bind(6, r.scan_ns).run());
        }
        return {};
    };
    return tolerate(write());
}

Status StatCache::store(const std::string& path, const StatKey& key, int64_t scan_ns, const FileContent& content, const Xattrs* xattrs) {
    if (batching_) {
        queued_.push_back(Op{false, path, key, scan_ns, content, xattrs ? std::optional<Xattrs>(*xattrs) : std::nullopt});
        return {};
    }
    if (damaged_) return {};
    return tolerate(store_now(path, key, scan_ns, content, xattrs));
}

Status StatCache::forget(const std::string& path) {
    if (batching_) {
        queued_.push_back(Op{true, path, {}, 0, {}, {}});
        return {};
    }
    if (damaged_) return {};
    return tolerate(forget_now(path));
}

Status StatCache::write_batch() {
    for (const auto& op : queued_) {
        if (damaged_) break;
        DVOL_CHECK(tolerate(op.forget ? forget_now(op.path)
                                      : store_now(op.path, op.key, op.scan_ns, op.content, op.xattrs ? &*op.xattrs : nullptr)));
    }
    queued_.clear();
    batching_ = false;
    return {};
}

Status StatCache::store_now(const std::string& path, const StatKey& key, int64_t scan_ns, const FileContent& content, const Xattrs* xattrs) {
    DVOL_TRY(auto q, db_.prepare("INSERT OR REPLACE INTO stat_cache(volume_id, path, size, mtime_ns, ctime_ns, ino, mode, uid, gid, scan_ns, content, "
                                 "xattrs) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    auto enc = encode_content(content);
    q.bind(1, volume_id_).bind_blob(2, as_bytes(path)).bind(3, static_cast<int64_t>(key.size)).bind(4, key.mtime_ns);
    q.bind(5, key.ctime_ns).bind(6, static_cast<int64_t>(key.ino)).bind(7, key.mode).bind(8, key.uid).bind(9, key.gid);
    q.bind(10, scan_ns).bind_blob(11, enc);
    if (xattrs) {
        q.bind_blob(12, encode_xattrs(*xattrs));
    } else {
        q.bind_null(12);
    }
    return q.run();
}

Status StatCache::forget_now(const std::string& path) {
    {
        DVOL_TRY(auto q, db_.prepare("DELETE FROM stat_cache WHERE volume_id = ? AND path = ?"));
        DVOL_CHECK(q.bind(1, volume_id_).bind_blob(2, as_bytes(path)).run());
    }
    // Everything below path/: the blob range [path + "/", path + "0") since '0' follows '/'.
    DVOL_TRY(auto q, db_.prepare("DELETE FROM stat_cache WHERE volume_id = ? AND path >= ? AND path < ?"));
    std::string lo = path + "/", hi = path + "0";
    return q.bind(1, volume_id_).bind_blob(2, as_bytes(lo)).bind_blob(3, as_bytes(hi)).run();
}

Status StatCache::forget_all() {
    {
        DVOL_TRY(auto q, db_.prepare("DELETE FROM dir_cache WHERE volume_id = ?"));
        DVOL_CHECK(q.bind(1, volume_id_).run());
    }
    DVOL_TRY(auto q, db_.prepare("DELETE FROM stat_cache WHERE volume_id = ?"));
    return q.bind(1, volume_id_).run();
}

Status StatCache::prune(const std::string& live_dir) {
    if (damaged_) return {};
    return tolerate(prune_now(live_dir));
}

Status StatCache::prune_now(const std::string& live_dir) {
    std::vector<std::string> gone;
    {
        DVOL_TRY(auto q, db_.prepare("SELECT path FROM stat_cache WHERE volume_id = ?"));
        q.bind(1, volume_id_);
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) break;
            auto p = std::string(as_chars(q.blob_view(0)));
            if (!path_exists(live_dir + "/" + p)) gone.push_back(std::move(p));
        }
    }
    DVOL_TRY(auto del, db_.prepare("DELETE FROM stat_cache WHERE volume_id = ? AND path = ?"));
    for (const auto& p : gone) {
        del.bind(1, volume_id_).bind_blob(2, as_bytes(p));
        DVOL_CHECK(del.run());
    }
    return {};
}

Result<uint64_t> StatCache::row_count() {
    if (damaged_) return uint64_t{0};
    DVOL_TRY(auto q, db_.prepare("SELECT count(*) FROM stat_cache WHERE volume_id = ?"));
    q.bind(1, volume_id_);
    auto row = q.step();
    if (!row) {
        DVOL_CHECK(tolerate(std::move(row).error()));
        return uint64_t{0};
    }
    return *row ? static_cast<uint64_t>(q.int64(0)) : 0;
}

Status StatCache::for_each_row(const std::function<Status(const Row&)>& fn) {
    DVOL_TRY(auto q, db_.prepare(fmt::format("SELECT {} FROM stat_cache WHERE volume_id = ?", kRowColumns)));
    q.bind(1, volume_id_);
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) return {};
        Row r = row_of(q);
        DVOL_CHECK(fn(r));
    }
}

Result<uint64_t> StatCache::drop_rows(meta::Db& db, const std::function<Result<bool>(const FileContent&)>& keep) {
    std::vector<std::pair<int64_t, std::string>> stale;
    {
        DVOL_TRY(auto q, db.prepare("SELECT volume_id, path, content FROM stat_cache"));
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) break;
            auto content = decode_content(q.blob_view(2));
            bool ok = content.ok();
            if (ok) { DVOL_TRY(ok, keep(*content)); }
            if (!ok) stale.emplace_back(q.int64(0), std::string(as_chars(q.blob_view(1))));
        }
    }
    DVOL_TRY(auto del, db.prepare("DELETE FROM stat_cache WHERE volume_id = ? AND path = ?"));
    for (const auto& [vid, path] : stale) DVOL_CHECK(del.bind(1, vid).bind_blob(2, as_bytes(path)).run());
    return static_cast<uint64_t>(stale.size());
}

}  // namespace dvol
