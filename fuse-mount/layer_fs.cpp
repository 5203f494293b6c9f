#include "layer_fs.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <ctime>
#include <set>
#include <shared_mutex>

#include <fmt/format.h>

#include "base/fs.h"
#include "meta/db.h"

namespace dvol::mountfs {

namespace {

constexpr int kFormat = 1;

Error sys_error(int err, std::string message) {
    Error e = make_error(err == ENOENT ? Errc::not_found : err == EEXIST ? Errc::already_exists : Errc::invalid_argument, std::move(message));
    e.sys = err;
    return e;
}

int64_t now_ns() {
    timespec t;
    ::clock_gettime(CLOCK_REALTIME, &t);
    return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

std::string join(std::string_view dir, std::string_view name) {
    if (dir.empty()) return std::string(name);
    std::string p;
    p.reserve(dir.size() + 1 + name.size());
    p += dir;
    p += '/';
    p += name;
    return p;
}

std::string dirname_of(std::string_view path) {
    size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? std::string() : std::string(path.substr(0, slash));
}

// SQLite integers are signed: numbers from 2^63 up are stored as their two's complement.
int64_t sq(uint64_t v) { return layer_sql_ino(v); }
uint64_t uq(int64_t v) { return layer_ino(v); }

uint32_t type_of(uint32_t mode) { return mode & S_IFMT; }

}  // namespace

uint64_t base_ino_candidate(std::string_view path) {
    if (path.empty()) return kRootIno;
    uint64_t ino = ino_candidate(path_key(path)) & ~kLayerInoBase;
    return ino <= kRootIno ? 2 : ino;
}

struct LayerFs::FileData {
    uint64_t ino = 0;
    std::shared_mutex mu;  // the fields below; reads shared, writes exclusive
    bool row = false;      // else a base file not copied up (reads only)
    UniqueFd fd;           // the data file (row only)
    std::string path;      // its name, for messages
    std::unique_ptr<CommitFs::File> base;  // the base content, when there is some below base_limit
    uint64_t size = 0;
    uint64_t base_limit = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    std::set<uint64_t> copied;               // starts of the base extents in the data file
    std::vector<uint64_t> unsaved_copied;    // of those, the ones layer.db does not know yet
    uint64_t version = 0, saved_version = 0;  // changes made, and the last one written to layer.db
    uint64_t saved_size = 0, saved_base_limit = 0;  // as layer.db holds them
    bool need_sync = false;                  // data written since the last fdatasync
    // Under LayerFs::mu_: handles and operations using it; an inode unlinked while open.
    int opens = 0;
    bool orphan = false;
};

LayerFs::LayerFs(CommitFs& base, std::string dir) : base_(base), dir_(std::move(dir)) {}

LayerFs::~LayerFs() = default;

Result<std::unique_ptr<LayerFs>> LayerFs::open(CommitFs& base, const ObjectId& base_commit, const std::string& dir) {
    DVOL_CHECK(make_dirs(dir + "/data", 0700));
    std::unique_ptr<LayerFs> fs(new LayerFs(base, dir));
    DVOL_TRY(fs->db_, meta::Db::open(dir + "/layer.db"));
    DVOL_CHECK(fs->init(base_commit));
    DVOL_CHECK(fs->recover());
    Node root;
    root.nlookup = 1;
    DVOL_TRY(root.row, fs->row_exists(kRootIno));
    fs->nodes_.emplace(kRootIno, std::move(root));
    return fs;
}

Status LayerFs::init(const ObjectId& base_commit) {
    DVOL_CHECK(db_->exec(R"(
        PRAGMA synchronous=NORMAL;
        CREATE TABLE IF NOT EXISTS layer(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS nodes(
            ino INTEGER PRIMARY KEY,
            mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL, rdev INTEGER NOT NULL,
            size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
            target BLOB, nlink INTEGER NOT NULL,
            origin BLOB UNIQUE, origin_dir BLOB,
            base_limit INTEGER NOT NULL, listed INTEGER NOT NULL, dirty INTEGER NOT NULL);
        CREATE INDEX IF NOT EXISTS nodes_by_origin_dir ON nodes(origin_dir) WHERE origin_dir IS NOT NULL;
        CREATE TABLE IF NOT EXISTS dirents(
            parent INTEGER NOT NULL, name BLOB NOT NULL, ino INTEGER, base_path BLOB,
            PRIMARY KEY(parent, name)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS xattrs(
            ino INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY(ino, name)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS copied(
            ino INTEGER NOT NULL, start INTEGER NOT NULL, dirty INTEGER NOT NULL, PRIMARY KEY(ino, start)) WITHOUT ROWID;
    )"));
    DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
    std::map<std::string, std::string> kv;
    {
        DVOL_TRY(auto q, db_->prepare("SELECT key, value FROM layer"));
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) break;
            kv[q.text(0)] = q.text(1);
        }
    }
    auto put = [&](std::string_view k, const std::string& v) -> Status {
        DVOL_TRY(auto q, db_->prepare("INSERT OR REPLACE INTO layer(key, value) VALUES(?, ?)"));
        return q.bind(1, k).bind(2, v).run();
    };
    if (kv.empty()) {
        DVOL_CHECK(put("format", std::to_string(kFormat)));
        DVOL_CHECK(put("base", base_commit.hex()));
        DVOL_CHECK(put("next_ino", std::to_string(kLayerInoBase)));
        DVOL_CHECK(put("syncs", "0"));
        next_ino_ = kLayerInoBase;
    } else {
        if (kv["format"] != std::to_string(kFormat))
            return make_error(Errc::unsupported, fmt::format("the write layer in {} has format {}, this dvol reads {}", dir_, kv["format"], kFormat));
        if (kv["base"] != base_commit.hex())
            return make_error(Errc::conflict, fmt::format("the write layer in {} holds changes to commit {}, not {}", dir_, kv["base"], base_commit.hex()));
        next_ino_ = std::stoull(kv["next_ino"]);
    }
    return tx.commit();
}

Status LayerFs::recover() {
    // Files unlinked while open when the process died.
    std::vector<uint64_t> orphans;
    {
        DVOL_TRY(auto q, db_->prepare("SELECT ino FROM nodes WHERE nlink = 0 AND origin IS NULL"));
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) break;
            orphans.push_back(uq(q.int64(0)));
        }
    }
    if (!orphans.empty()) {
        DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
        for (uint64_t ino : orphans) DVOL_CHECK(delete_row(ino));
        DVOL_CHECK(tx.commit());
    }
    // Data files: of no row (a file created and deleted, or an orphan), or longer than the size
    // recorded (writes past the end whose size was never recorded).
    DVOL_TRY(UniqueFd d, open_dir_nofollow(dir_ + "/data"));
    DVOL_TRY(auto names, list_dir(d.get(), dir_ + "/data"));
    for (const auto& name : names) {
        std::string path = dir_ + "/data/" + name;
        uint64_t ino = 0;
        auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), ino, 16);
        std::optional<Row> row;
        if (ec == std::errc() && p == name.data() + name.size()) {
            DVOL_TRY(row, load_row(ino));
        }
        if (!row || type_of(row->mode) != S_IFREG) {
            if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("delete", path);
            continue;
        }
        struct stat st;
        if (::stat(path.c_str(), &st) != 0) return errno_error("stat", path);
        if (static_cast<uint64_t>(st.st_size) > row->size && ::truncate(path.c_str(), static_cast<off_t>(row->size)) != 0)
            return errno_error("truncate", path);
    }
    return {};
}

// --- rows ---------------------------------------------------------------------------------------

Result<std::optional<LayerFs::Row>> LayerFs::load_row(uint64_t ino) { return load_layer_row(*db_, ino); }

Result<LayerFs::Row> LayerFs::row_of(uint64_t ino) {
    DVOL_TRY(auto r, load_row(ino));
    if (!r) return sys_error(ENOENT, fmt::format("inode {} is not in the write layer", ino));
    return std::move(*r);
}

Result<bool> LayerFs::row_exists(uint64_t ino) {
    DVOL_TRY(auto q, db_->prepare("SELECT 1 FROM nodes WHERE ino = ?"));
    q.bind(1, sq(ino));
    return q.step();
}

Result<std::optional<uint64_t>> LayerFs::row_by_origin(std::string_view path) { return layer_ino_by_origin(*db_, path); }

uint64_t LayerFs::base_ino(const std::string& path, bool exact) {
    if (auto it = base_ino_.find(path); it != base_ino_.end()) return it->second;
    uint64_t ino = base_ino_candidate(path);
    if (path.empty()) return kRootIno;
    // A number held by another path (a 64-bit collision) or by a row moves on. A listing's
    // numbers are hints (the kernel looks the entry up before using it): they skip the rows.
    for (;;) {
        auto n = nodes_.find(ino);
        bool taken = n != nodes_.end() && (n->second.row || n->second.base != path);
        if (!taken && exact) {
            auto r = row_exists(ino);
            taken = !r || *r;
        }
        if (!taken) return ino;
        ino = (ino + 1) & ~kLayerInoBase;
        if (ino <= kRootIno) ino = 2;
    }
}

Result<std::optional<LayerFs::Target>> LayerFs::resolve_base(const std::string& path) {
    DVOL_TRY(auto e, base_.entry_at(path));
    if (!e) return std::optional<Target>();
    DVOL_TRY(auto row, row_by_origin(e->path));
    Target t;
    if (row) {
        t.ino = *row;
        t.row = true;
    } else {
        t.base = e->path;
        t.ino = base_ino(t.base, true);
    }
    return std::optional<Target>(std::move(t));
}

Result<std::optional<LayerFs::Target>> LayerFs::find_child(uint64_t parent, std::string_view name) {
    auto n = nodes_.find(parent);
    if (n == nodes_.end()) return sys_error(ENOENT, fmt::format("inode {} is not known", parent));
    std::string dir_path;
    if (n->second.row) {
        DVOL_TRY(Row r, row_of(parent));
        if (type_of(r.mode) != S_IFDIR) return sys_error(ENOTDIR, fmt::format("inode {} is not a directory", parent));
        if (r.listed) {
            DVOL_TRY(auto q, db_->prepare("SELECT ino, base_path FROM dirents WHERE parent = ? AND name = ?"));
            q.bind(1, sq(parent)).bind(2, name);
            DVOL_TRY(bool found, q.step());
            if (!found) return std::optional<Target>();
            if (!q.is_null(0)) return std::optional<Target>(Target{uq(q.int64(0)), true, {}});
            std::string path = q.text(1);
            q.reset();
            return resolve_base(path);
        }
        if (!r.origin) return make_error(Errc::internal, fmt::format("directory inode {} has neither entries nor an origin", parent));
        dir_path = *r.origin;
    } else {
        dir_path = n->second.base;
        DVOL_TRY(auto e, base_.entry_at(dir_path));
        if (!e) return sys_error(ENOENT, fmt::format("{} is not in the base", dir_path));
        if (e->entry->type != EntryType::dir) return sys_error(ENOTDIR, fmt::format("inode {} is not a directory", parent));
    }
    return resolve_base(join(dir_path, name));
}

uint64_t LayerFs::acquire(const Target& t) {
    auto& n = nodes_[t.ino];
    n.nlookup++;
    n.row = t.row;
    if (!t.row) {
        n.base = t.base;
        base_ino_.emplace(t.base, t.ino);
    }
    return t.ino;
}

void LayerFs::forget(uint64_t ino, uint64_t n) {
    if (ino == kRootIno) return;
    std::lock_guard lk(mu_);
    auto it = nodes_.find(ino);
    if (it == nodes_.end()) return;
    if (it->second.nlookup > n) {
        it->second.nlookup -= n;
        return;
    }
    if (!it->second.row) base_ino_.erase(it->second.base);
    nodes_.erase(it);
}

// --- attributes ---------------------------------------------------------------------------------

Result<Attr> LayerFs::attr_of_target(const Target& t) {
    if (!t.row) {
        DVOL_TRY(auto e, base_.entry_at(t.base));
        if (!e) return sys_error(ENOENT, fmt::format("{} is not in the base", t.base));
        DVOL_TRY(Attr a, base_.entry_attr(t.ino, *e->entry));
        if (e->entry->type == EntryType::file) a.nlink = base_.link_count_at(t.base);
        if (auto f = files_.find(t.ino); f != files_.end()) {
            std::shared_lock fl(f->second->mu);
            a.size = f->second->size;
        }
        return a;
    }
    DVOL_TRY(Row r, row_of(t.ino));
    Attr a;
    a.ino = t.ino;
    a.mode = r.mode;
    a.nlink = std::max<uint32_t>(r.nlink, 1);
    a.uid = r.uid;
    a.gid = r.gid;
    a.size = r.size;
    a.mtime_ns = r.mtime_ns;
    a.ctime_ns = r.ctime_ns;
    a.rdev = r.rdev;
    if (auto f = files_.find(t.ino); f != files_.end()) {
        std::shared_lock fl(f->second->mu);
        a.size = f->second->size;
        a.mtime_ns = f->second->mtime_ns;
        a.ctime_ns = f->second->ctime_ns;
    }
    if (type_of(r.mode) == S_IFDIR) a.nlink = 1;  // as the base shows directories: "unknown"
    if (type_of(r.mode) == S_IFLNK) a.size = r.target.size();
    a.blocks = (a.size + 511) / 512;
    return a;
}

Result<Attr> LayerFs::attr_locked(uint64_t ino) {
    auto n = nodes_.find(ino);
    if (n == nodes_.end()) return sys_error(ENOENT, fmt::format("inode {} is not known", ino));
    return attr_of_target(Target{ino, n->second.row, n->second.base});
}

Result<std::optional<Attr>> LayerFs::lookup(uint64_t parent, std::string_view name) {
    std::lock_guard lk(mu_);
    DVOL_TRY(auto t, find_child(parent, name));
    if (!t) return std::optional<Attr>();
    DVOL_TRY(Attr a, attr_of_target(*t));
    acquire(*t);
    return std::optional<Attr>(a);
}

Result<Attr> LayerFs::getattr(uint64_t ino) {
    std::lock_guard lk(mu_);
    return attr_locked(ino);
}

Result<std::string> LayerFs::readlink(uint64_t ino) {
    std::lock_guard lk(mu_);
    auto n = nodes_.find(ino);
    if (n == nodes_.end()) return sys_error(ENOENT, fmt::format("inode {} is not known", ino));
    if (n->second.row) {
        DVOL_TRY(Row r, row_of(ino));
        if (type_of(r.mode) != S_IFLNK) return sys_error(EINVAL, fmt::format("inode {} is not a symlink", ino));
        return r.target;
    }
    DVOL_TRY(auto e, base_.entry_at(n->second.base));
    if (!e || e->entry->type != EntryType::symlink) return sys_error(EINVAL, fmt::format("inode {} is not a symlink", ino));
    return e->entry->target;
}

// --- copy-up and directories ----------------------------------------------------------------------

Status LayerFs::copy_up(uint64_t ino) {
    auto n = nodes_.find(ino);
    if (n == nodes_.end()) return sys_error(ENOENT, fmt::format("inode {} is not known", ino));
    if (n->second.row) return {};
    std::string path = n->second.base;
    DVOL_TRY(auto be, base_.entry_at(path));
    if (!be) return sys_error(ENOENT, fmt::format("{} is not in the base", path));
    const TreeEntry& e = *be->entry;
    {
        DVOL_TRY(auto q, db_->prepare("INSERT INTO nodes(ino, mode, uid, gid, rdev, size, mtime_ns, ctime_ns, target, nlink, origin, origin_dir,"
                                      " base_limit, listed, dirty) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)"));
        q.bind(1, sq(ino)).bind(2, int64_t{CommitFs::entry_type_bits(e) | (e.mode & 07777)}).bind(3, int64_t{e.uid}).bind(4, int64_t{e.gid});
        q.bind(5, sq(e.rdev)).bind(6, sq(e.type == EntryType::file ? e.size : 0)).bind(7, e.mtime_ns).bind(8, e.mtime_ns);
        if (e.type == EntryType::symlink) q.bind(9, e.target); else q.bind_null(9);
        // A base file's names as far as the directories looked into show them.
        q.bind(10, int64_t{e.type == EntryType::file ? base_.link_count_at(path) : 1});
        q.bind(11, path);
        if (path.empty()) q.bind_null(12); else q.bind(12, dirname_of(path));
        q.bind(13, sq(e.type == EntryType::file ? e.size : 0));
        DVOL_CHECK(q.run());
    }
    for (const auto& [k, v] : e.xattrs) {
        DVOL_TRY(auto q, db_->prepare("INSERT INTO xattrs(ino, name, value) VALUES(?, ?, ?)"));
        DVOL_CHECK(q.bind(1, sq(ino)).bind(2, k).bind_blob(3, std::as_bytes(std::span(v.data(), v.size()))).run());
    }
    // The inode table learns it when the transaction commits (settle), and not at all if it
    // rolls back.
    n->second.row = true;
    pending_up_.emplace_back(ino, path);
    return {};
}

Status LayerFs::settle(meta::Db::Transaction& tx) {
    DVOL_CHECK(tx.commit());
    auto done = std::move(pending_up_);
    pending_up_.clear();
    for (const auto& [ino, path] : done) {
        base_ino_.erase(path);
        if (auto n = nodes_.find(ino); n != nodes_.end()) n->second.base.clear();
        if (auto f = files_.find(ino); f != files_.end()) {
            auto& fd = *f->second;
            std::unique_lock fl(fd.mu);
            fd.path = data_path(ino);
            DVOL_TRY(fd.fd, dvol::open_file(fd.path, O_RDWR | O_CREAT, 0600));
            fd.row = true;
        }
    }
    return {};
}

LayerFs::Rollback::~Rollback() {
    // Copy-ups of a transaction that did not commit: the inodes are the base's again.
    for (const auto& [ino, path] : fs.pending_up_)
        if (auto n = fs.nodes_.find(ino); n != fs.nodes_.end()) n->second.row = false;
    fs.pending_up_.clear();
}

Status LayerFs::materialise(uint64_t dir) {
    DVOL_CHECK(copy_up(dir));
    DVOL_TRY(Row r, row_of(dir));
    if (type_of(r.mode) != S_IFDIR) return sys_error(ENOTDIR, fmt::format("inode {} is not a directory", dir));
    if (r.listed) return {};
    DVOL_TRY(auto be, base_.entry_at(*r.origin));
    if (!be || be->entry->type != EntryType::dir) return make_error(Errc::corrupt, fmt::format("{} is not a directory of the base", *r.origin));
    DVOL_TRY(auto t, base_.dir_tree(*be->entry));
    DVOL_TRY(auto q, db_->prepare("INSERT INTO dirents(parent, name, ino, base_path) VALUES(?, ?, NULL, ?)"));
    for (const auto& e : t->tree.entries) DVOL_CHECK(q.bind(1, sq(dir)).bind(2, e.name).bind(3, join(*r.origin, e.name)).run());
    DVOL_TRY(auto u, db_->prepare("UPDATE nodes SET listed = 1 WHERE ino = ?"));
    return u.bind(1, sq(dir)).run();
}

Status LayerFs::touch_dir(uint64_t dir, int64_t now) {
    DVOL_TRY(auto q, db_->prepare("UPDATE nodes SET mtime_ns = ?, ctime_ns = ?, dirty = 1 WHERE ino = ?"));
    return q.bind(1, now).bind(2, now).bind(3, sq(dir)).run();
}

Result<uint64_t> LayerFs::new_ino() {
    uint64_t ino = next_ino_++;
    DVOL_TRY(auto q, db_->prepare("UPDATE layer SET value = ? WHERE key = 'next_ino'"));
    DVOL_CHECK(q.bind(1, std::to_string(next_ino_)).run());
    return ino;
}

std::string LayerFs::data_path(uint64_t ino) const { return fmt::format("{}/data/{:016x}", dir_, ino); }

Status LayerFs::delete_row(uint64_t ino) {
    for (const char* sql : {"DELETE FROM nodes WHERE ino = ?", "DELETE FROM xattrs WHERE ino = ?", "DELETE FROM copied WHERE ino = ?",
                            "DELETE FROM dirents WHERE parent = ?"}) {
        DVOL_TRY(auto q, db_->prepare(sql));
        DVOL_CHECK(q.bind(1, sq(ino)).run());
    }
    std::string path = data_path(ino);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("delete", path);
    return {};
}

Result<bool> LayerFs::dir_empty(const Target& t) {
    std::string origin;
    if (t.row) {
        DVOL_TRY(Row r, row_of(t.ino));
        if (r.listed) {
            DVOL_TRY(auto q, db_->prepare("SELECT 1 FROM dirents WHERE parent = ? LIMIT 1"));
            q.bind(1, sq(t.ino));
            DVOL_TRY(bool any, q.step());
            return !any;
        }
        origin = *r.origin;
    } else {
        origin = t.base;
    }
    DVOL_TRY(auto be, base_.entry_at(origin));
    if (!be) return true;
    DVOL_TRY(auto tree, base_.dir_tree(*be->entry));
    return tree->tree.entries.empty();
}

// One name of `t` is gone: a row loses a link, and with its last one, when it has no origin
// (nothing of the base can name it again) and no handle is open, it is deleted.
Status LayerFs::drop_name(const Target& t) {
    if (!t.row) return {};
    DVOL_TRY(Row r, row_of(t.ino));
    uint32_t nlink = r.nlink > 0 ? r.nlink - 1 : 0;
    if (type_of(r.mode) == S_IFDIR) nlink = 0;
    if (nlink == 0 && !r.origin) {
        auto f = files_.find(t.ino);
        if (f == files_.end()) return delete_row(t.ino);
        f->second->orphan = true;
    }
    DVOL_TRY(auto q, db_->prepare("UPDATE nodes SET nlink = ?, ctime_ns = ?, dirty = 1 WHERE ino = ?"));
    return q.bind(1, int64_t{nlink}).bind(2, now_ns()).bind(3, sq(t.ino)).run();
}

// --- namespace changes ----------------------------------------------------------------------------

Result<Attr> LayerFs::mknod(uint64_t parent, std::string_view name, const NewEntry& e) {
    if (!valid_entry_name(name) || name.size() > 255) return sys_error(name.size() > 255 ? ENAMETOOLONG : EINVAL, "bad name");
    uint32_t type = type_of(e.mode);
    if (type != S_IFREG && type != S_IFDIR && type != S_IFLNK && type != S_IFIFO && type != S_IFCHR && type != S_IFBLK && type != S_IFSOCK)
        return sys_error(EINVAL, fmt::format("mknod of type {:o}", type));
    std::lock_guard lk(mu_);
    DVOL_TRY(auto existing, find_child(parent, name));
    if (existing) return sys_error(EEXIST, fmt::format("{} exists", name));
    DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
    DVOL_CHECK(materialise(parent));
    DVOL_TRY(uint64_t ino, new_ino());
    int64_t now = now_ns();
    {
        DVOL_TRY(auto q, db_->prepare("INSERT INTO nodes(ino, mode, uid, gid, rdev, size, mtime_ns, ctime_ns, target, nlink, origin, origin_dir,"
                                      " base_limit, listed, dirty) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, NULL, 0, ?, 1)"));
        q.bind(1, sq(ino)).bind(2, int64_t{type | (e.mode & 07777)}).bind(3, int64_t{e.uid}).bind(4, int64_t{e.gid});
        q.bind(5, sq(type == S_IFCHR || type == S_IFBLK ? e.rdev : 0)).bind(6, sq(type == S_IFLNK ? e.target.size() : 0));
        q.bind(7, now).bind(8, now);
        if (type == S_IFLNK) q.bind(9, e.target); else q.bind_null(9);
        q.bind(10, int64_t{type == S_IFDIR ? 1 : 0});
        DVOL_CHECK(q.run());
    }
    {
        DVOL_TRY(auto q, db_->prepare("INSERT INTO dirents(parent, name, ino, base_path) VALUES(?, ?, ?, NULL)"));
        DVOL_CHECK(q.bind(1, sq(parent)).bind(2, name).bind(3, sq(ino)).run());
    }
    DVOL_CHECK(touch_dir(parent, now));
    DVOL_CHECK(settle(tx));
    Target t{ino, true, {}};
    DVOL_TRY(Attr a, attr_of_target(t));
    acquire(t);
    return a;
}

Result<Attr> LayerFs::link(uint64_t ino, uint64_t parent, std::string_view name) {
    if (!valid_entry_name(name) || name.size() > 255) return sys_error(name.size() > 255 ? ENAMETOOLONG : EINVAL, "bad name");
    std::lock_guard lk(mu_);
    DVOL_TRY(Attr a0, attr_locked(ino));
    if (type_of(a0.mode) == S_IFDIR) return sys_error(EPERM, "a hard link to a directory");
    DVOL_TRY(auto existing, find_child(parent, name));
    if (existing) return sys_error(EEXIST, fmt::format("{} exists", name));
    DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
    DVOL_CHECK(copy_up(ino));
    DVOL_CHECK(materialise(parent));
    int64_t now = now_ns();
    {
        DVOL_TRY(auto q, db_->prepare("INSERT INTO dirents(parent, name, ino, base_path) VALUES(?, ?, ?, NULL)"));
        DVOL_CHECK(q.bind(1, sq(parent)).bind(2, name).bind(3, sq(ino)).run());
    }
    {
        DVOL_TRY(auto q, db_->prepare("UPDATE nodes SET nlink = max(nlink, 1) + 1, ctime_ns = ?, dirty = 1 WHERE ino = ?"));
        DVOL_CHECK(q.bind(1, now).bind(2, sq(ino)).run());
    }
    DVOL_CHECK(touch_dir(parent, now));
    DVOL_CHECK(settle(tx));
    Target t{ino, true, {}};
    DVOL_TRY(Attr a, attr_of_target(t));
    acquire(t);
    return a;
}

Status LayerFs::unlink(uint64_t parent, std::string_view name) {
    std::lock_guard lk(mu_);
    DVOL_TRY(auto t, find_child(parent, name));
    if (!t) return sys_error(ENOENT, fmt::format("{} does not exist", name));
    DVOL_TRY(Attr a, attr_of_target(*t));
    if (type_of(a.mode) == S_IFDIR) return sys_error(EISDIR, fmt::format("{} is a directory", name));
    DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
    DVOL_CHECK(materialise(parent));
    {
        DVOL_TRY(auto q, db_->prepare("DELETE FROM dirents WHERE parent = ? AND name = ?"));
        DVOL_CHECK(q.bind(1, sq(parent)).bind(2, name).run());
    }
    DVOL_CHECK(drop_name(*t));
    DVOL_CHECK(touch_dir(parent, now_ns()));
    return settle(tx);
}

Status LayerFs::rmdir(uint64_t parent, std::string_view name) {
    std::lock_guard lk(mu_);
    DVOL_TRY(auto t, find_child(parent, name));
    if (!t) return sys_error(ENOENT, fmt::format("{} does not exist", name));
    DVOL_TRY(Attr a, attr_of_target(*t));
    if (type_of(a.mode) != S_IFDIR) return sys_error(ENOTDIR, fmt::format("{} is not a directory", name));
    DVOL_TRY(bool empty, dir_empty(*t));
    if (!empty) return sys_error(ENOTEMPTY, fmt::format("{} is not empty", name));
    DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
    DVOL_CHECK(materialise(parent));
    {
        DVOL_TRY(auto q, db_->prepare("DELETE FROM dirents WHERE parent = ? AND name = ?"));
        DVOL_CHECK(q.bind(1, sq(parent)).bind(2, name).run());
    }
    if (t->row) DVOL_CHECK(delete_row(t->ino));
    if (auto n = nodes_.find(t->ino); n != nodes_.end() && n->second.row) {
        // The kernel may still hold it (a process's working directory): it is a directory of
        // nothing now, which no lookup can reach.
        nodes_.erase(n);
    }
    DVOL_CHECK(touch_dir(parent, now_ns()));
    return settle(tx);
}

Status LayerFs::rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name, unsigned flags) {
    constexpr unsigned kNoReplace = 1, kExchange = 2;  // RENAME_NOREPLACE, RENAME_EXCHANGE
    if ((flags & ~(kNoReplace | kExchange)) != 0 || flags == (kNoReplace | kExchange)) return sys_error(EINVAL, "rename flags");
    if (!valid_entry_name(new_name) || new_name.size() > 255) return sys_error(new_name.size() > 255 ? ENAMETOOLONG : EINVAL, "bad name");
    std::lock_guard lk(mu_);
    DVOL_TRY(auto src, find_child(parent, name));
    if (!src) return sys_error(ENOENT, fmt::format("{} does not exist", name));
    DVOL_TRY(auto dst, find_child(new_parent, new_name));
    if ((flags & kNoReplace) && dst) return sys_error(EEXIST, fmt::format("{} exists", new_name));
    if ((flags & kExchange) && !dst) return sys_error(ENOENT, fmt::format("{} does not exist", new_name));
    if (dst && dst->ino == src->ino) return {};  // two names of one file: nothing to do
    DVOL_TRY(Attr sa, attr_of_target(*src));
    bool src_dir = type_of(sa.mode) == S_IFDIR;
    if (dst && !(flags & kExchange)) {
        DVOL_TRY(Attr da, attr_of_target(*dst));
        bool dst_dir = type_of(da.mode) == S_IFDIR;
        if (src_dir && !dst_dir) return sys_error(ENOTDIR, fmt::format("{} is not a directory", new_name));
        if (!src_dir && dst_dir) return sys_error(EISDIR, fmt::format("{} is a directory", new_name));
        if (dst_dir) {
            DVOL_TRY(bool empty, dir_empty(*dst));
            if (!empty) return sys_error(ENOTEMPTY, fmt::format("{} is not empty", new_name));
        }
    }
    DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
    DVOL_CHECK(materialise(parent));
    DVOL_CHECK(materialise(new_parent));
    auto get_dirent = [&](uint64_t p, std::string_view n) -> Result<std::pair<std::optional<int64_t>, std::optional<std::string>>> {
        DVOL_TRY(auto q, db_->prepare("SELECT ino, base_path FROM dirents WHERE parent = ? AND name = ?"));
        q.bind(1, sq(p)).bind(2, n);
        DVOL_TRY(bool found, q.step());
        if (!found) return sys_error(ENOENT, "entry gone");
        std::pair<std::optional<int64_t>, std::optional<std::string>> d;
        if (!q.is_null(0)) d.first = q.int64(0);
        if (!q.is_null(1)) d.second = q.text(1);
        return d;
    };
    auto put_dirent = [&](uint64_t p, std::string_view n, const std::pair<std::optional<int64_t>, std::optional<std::string>>& d) -> Status {
        DVOL_TRY(auto q, db_->prepare("INSERT OR REPLACE INTO dirents(parent, name, ino, base_path) VALUES(?, ?, ?, ?)"));
        q.bind(1, sq(p)).bind(2, n);
        if (d.first) q.bind(3, *d.first); else q.bind_null(3);
        if (d.second) q.bind(4, *d.second); else q.bind_null(4);
        return q.run();
    };
    auto del_dirent = [&](uint64_t p, std::string_view n) -> Status {
        DVOL_TRY(auto q, db_->prepare("DELETE FROM dirents WHERE parent = ? AND name = ?"));
        return q.bind(1, sq(p)).bind(2, n).run();
    };
    DVOL_TRY(auto sd, get_dirent(parent, name));
    if (flags & kExchange) {
        DVOL_TRY(auto dd, get_dirent(new_parent, new_name));
        DVOL_CHECK(put_dirent(parent, name, dd));
        DVOL_CHECK(put_dirent(new_parent, new_name, sd));
    } else {
        if (dst) {
            DVOL_CHECK(del_dirent(new_parent, new_name));
            if (dst->row) {
                DVOL_TRY(Row dr, row_of(dst->ino));
                if (type_of(dr.mode) == S_IFDIR) {
                    DVOL_CHECK(delete_row(dst->ino));
                    nodes_.erase(dst->ino);
                } else {
                    DVOL_CHECK(drop_name(*dst));
                }
            }
        }
        DVOL_CHECK(del_dirent(parent, name));
        DVOL_CHECK(put_dirent(new_parent, new_name, sd));
    }
    int64_t now = now_ns();
    DVOL_CHECK(touch_dir(parent, now));
    if (new_parent != parent) DVOL_CHECK(touch_dir(new_parent, now));
    return settle(tx);
}

Result<std::vector<DirEntry>> LayerFs::readdir(uint64_t ino) {
    std::lock_guard lk(mu_);
    auto n = nodes_.find(ino);
    if (n == nodes_.end()) return sys_error(ENOENT, fmt::format("inode {} is not known", ino));
    std::vector<DirEntry> out;
    std::string origin;
    if (n->second.row) {
        DVOL_TRY(Row r, row_of(ino));
        if (type_of(r.mode) != S_IFDIR) return sys_error(ENOTDIR, fmt::format("inode {} is not a directory", ino));
        if (r.listed) {
            std::vector<std::tuple<std::string, std::optional<uint64_t>, std::string>> rows;
            {
                DVOL_TRY(auto q, db_->prepare("SELECT d.name, d.ino, d.base_path, n.mode FROM dirents d LEFT JOIN nodes n ON n.ino = d.ino"
                                              " WHERE d.parent = ? ORDER BY d.name"));
                q.bind(1, sq(ino));
                for (;;) {
                    DVOL_TRY(bool row, q.step());
                    if (!row) break;
                    if (!q.is_null(1)) {
                        out.push_back(DirEntry{q.text(0), uq(q.int64(1)), type_of(static_cast<uint32_t>(q.is_null(3) ? 0 : q.int64(3)))});
                    } else {
                        out.push_back(DirEntry{q.text(0), 0, 0});
                        rows.emplace_back(q.text(0), std::nullopt, q.text(2));
                    }
                }
            }
            size_t j = 0;
            for (auto& d : out) {
                if (d.ino != 0) continue;
                const std::string& path = std::get<2>(rows[j++]);
                DVOL_TRY(auto t, resolve_base(path));
                if (!t) return make_error(Errc::corrupt, fmt::format("the write layer names {} of the base, which is not there", path));
                d.ino = t->ino;
                DVOL_TRY(Attr a, attr_of_target(*t));
                d.type = type_of(a.mode);
            }
            return out;
        }
        origin = *r.origin;
    } else {
        origin = n->second.base;
    }
    DVOL_TRY(auto be, base_.entry_at(origin));
    if (!be || be->entry->type != EntryType::dir) return sys_error(ENOTDIR, fmt::format("inode {} is not a directory", ino));
    DVOL_TRY(auto tree, base_.dir_tree(*be->entry));
    // Entries of this base directory that have rows.
    std::map<std::string, std::pair<uint64_t, uint32_t>> rows;
    {
        DVOL_TRY(auto q, db_->prepare("SELECT origin, ino, mode FROM nodes WHERE origin_dir = ?"));
        q.bind(1, origin);
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) break;
            rows[q.text(0)] = {uq(q.int64(1)), type_of(static_cast<uint32_t>(q.int64(2)))};
        }
    }
    for (const auto& e : tree->tree.entries) {
        std::string path = e.type == EntryType::hardlink ? e.target : join(origin, e.name);
        DirEntry d{e.name, 0, CommitFs::entry_type_bits(e)};
        if (auto it = rows.find(path); it != rows.end()) {
            d.ino = it->second.first;
            d.type = it->second.second;
        } else if (e.type == EntryType::hardlink) {
            DVOL_TRY(auto row, row_by_origin(path));
            d.ino = row ? *row : base_ino(path, false);
        } else {
            d.ino = base_ino(path, false);
        }
        out.push_back(std::move(d));
    }
    return out;
}

// --- attributes and xattrs that change ----------------------------------------------------------

Result<Attr> LayerFs::setattr(uint64_t ino, const SetAttr& s) {
    std::shared_ptr<FileData> pinned;
    {
        std::lock_guard lk(mu_);
        DVOL_TRY(Attr a, attr_locked(ino));
        if (s.size && type_of(a.mode) == S_IFDIR) return sys_error(EISDIR, "truncate of a directory");
        if (s.size && type_of(a.mode) != S_IFREG) return sys_error(EINVAL, "truncate of a special file");
        DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
        DVOL_CHECK(copy_up(ino));
        int64_t now = now_ns();
        DVOL_TRY(auto q, db_->prepare("UPDATE nodes SET mode = coalesce(?, mode), uid = coalesce(?, uid), gid = coalesce(?, gid),"
                                      " mtime_ns = coalesce(?, mtime_ns), ctime_ns = ?, dirty = 1 WHERE ino = ?"));
        if (s.mode) q.bind(1, int64_t{type_of(a.mode) | (*s.mode & 07777)}); else q.bind_null(1);
        if (s.uid) q.bind(2, int64_t{*s.uid}); else q.bind_null(2);
        if (s.gid) q.bind(3, int64_t{*s.gid}); else q.bind_null(3);
        if (s.mtime_ns) q.bind(4, *s.mtime_ns); else q.bind_null(4);
        q.bind(5, now).bind(6, sq(ino));
        DVOL_CHECK(q.run());
        DVOL_CHECK(settle(tx));
        if (auto f = files_.find(ino); f != files_.end()) {
            std::unique_lock fl(f->second->mu);
            if (s.mtime_ns) f->second->mtime_ns = *s.mtime_ns;
            f->second->ctime_ns = now;
        }
        if (s.size) {
            DVOL_TRY(pinned, file_data(ino));
        }
    }
    if (pinned) {
        Status st = truncate(*pinned, *s.size, now_ns());
        if (st) st = persist(*pinned, false);
        std::lock_guard lk(mu_);
        if (--pinned->opens == 0) files_.erase(ino);
        DVOL_CHECK(st);
    }
    std::lock_guard lk(mu_);
    return attr_locked(ino);
}

Result<std::optional<std::string>> LayerFs::getxattr(uint64_t ino, std::string_view name) {
    std::lock_guard lk(mu_);
    auto n = nodes_.find(ino);
    if (n == nodes_.end()) return sys_error(ENOENT, fmt::format("inode {} is not known", ino));
    if (!n->second.row) {
        DVOL_TRY(auto e, base_.entry_at(n->second.base));
        if (!e) return sys_error(ENOENT, "gone");
        for (const auto& [k, v] : e->entry->xattrs)
            if (k == name) return std::optional<std::string>(v);
        return std::optional<std::string>();
    }
    DVOL_TRY(auto q, db_->prepare("SELECT value FROM xattrs WHERE ino = ? AND name = ?"));
    q.bind(1, sq(ino)).bind(2, name);
    DVOL_TRY(bool found, q.step());
    if (!found) return std::optional<std::string>();
    auto v = q.blob_view(0);
    return std::optional<std::string>(std::string(reinterpret_cast<const char*>(v.data()), v.size()));
}

Result<std::vector<std::string>> LayerFs::listxattr(uint64_t ino) {
    std::lock_guard lk(mu_);
    auto n = nodes_.find(ino);
    if (n == nodes_.end()) return sys_error(ENOENT, fmt::format("inode {} is not known", ino));
    std::vector<std::string> out;
    if (!n->second.row) {
        DVOL_TRY(auto e, base_.entry_at(n->second.base));
        if (!e) return sys_error(ENOENT, "gone");
        for (const auto& [k, v] : e->entry->xattrs) out.push_back(k);
        return out;
    }
    DVOL_TRY(auto q, db_->prepare("SELECT name FROM xattrs WHERE ino = ? ORDER BY name"));
    q.bind(1, sq(ino));
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.push_back(q.text(0));
    }
    return out;
}

Status LayerFs::setxattr(uint64_t ino, std::string_view name, std::string_view value, int flags) {
    if (name.empty() || name.size() > kMaxNameLength) return sys_error(ERANGE, "xattr name length");
    if (value.size() > kMaxXattrValue) return sys_error(E2BIG, "xattr value over 1 MiB");
    std::lock_guard lk(mu_);
    DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
    DVOL_CHECK(copy_up(ino));
    bool exists;
    {
        DVOL_TRY(auto q, db_->prepare("SELECT 1 FROM xattrs WHERE ino = ? AND name = ?"));
        q.bind(1, sq(ino)).bind(2, name);
        DVOL_TRY(exists, q.step());
    }
    if ((flags & XATTR_CREATE) && exists) return sys_error(EEXIST, fmt::format("xattr {} exists", name));
    if ((flags & XATTR_REPLACE) && !exists) return sys_error(ENODATA, fmt::format("no xattr {}", name));
    if (!exists) {
        DVOL_TRY(auto q, db_->prepare("SELECT count(*) FROM xattrs WHERE ino = ?"));
        q.bind(1, sq(ino));
        DVOL_CHECK(q.step());
        if (uq(q.int64(0)) >= kMaxXattrs) return sys_error(ENOSPC, "too many xattrs");
    }
    {
        DVOL_TRY(auto q, db_->prepare("INSERT OR REPLACE INTO xattrs(ino, name, value) VALUES(?, ?, ?)"));
        DVOL_CHECK(q.bind(1, sq(ino)).bind(2, name).bind_blob(3, std::as_bytes(std::span(value.data(), value.size()))).run());
    }
    {
        DVOL_TRY(auto q, db_->prepare("UPDATE nodes SET ctime_ns = ?, dirty = 1 WHERE ino = ?"));
        DVOL_CHECK(q.bind(1, now_ns()).bind(2, sq(ino)).run());
    }
    return settle(tx);
}

Status LayerFs::removexattr(uint64_t ino, std::string_view name) {
    std::lock_guard lk(mu_);
    DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
    DVOL_CHECK(copy_up(ino));
    {
        DVOL_TRY(auto q, db_->prepare("DELETE FROM xattrs WHERE ino = ? AND name = ?"));
        DVOL_CHECK(q.bind(1, sq(ino)).bind(2, name).run());
    }
    if (db_->changes() == 0) return sys_error(ENODATA, fmt::format("no xattr {}", name));
    {
        DVOL_TRY(auto q, db_->prepare("UPDATE nodes SET ctime_ns = ?, dirty = 1 WHERE ino = ?"));
        DVOL_CHECK(q.bind(1, now_ns()).bind(2, sq(ino)).run());
    }
    return settle(tx);
}

// --- file data ------------------------------------------------------------------------------------

Result<std::shared_ptr<LayerFs::FileData>> LayerFs::file_data(uint64_t ino) {
    if (auto it = files_.find(ino); it != files_.end()) {
        it->second->opens++;
        return it->second;
    }
    auto n = nodes_.find(ino);
    if (n == nodes_.end()) return sys_error(ENOENT, fmt::format("inode {} is not known", ino));
    auto f = std::make_shared<FileData>();
    f->ino = ino;
    std::optional<std::string> origin;
    if (n->second.row) {
        DVOL_TRY(Row r, row_of(ino));
        if (type_of(r.mode) != S_IFREG) return sys_error(type_of(r.mode) == S_IFDIR ? EISDIR : EINVAL, "not a regular file");
        f->row = true;
        f->size = r.size;
        f->base_limit = r.base_limit;
        f->mtime_ns = r.mtime_ns;
        f->ctime_ns = r.ctime_ns;
        origin = r.origin;
        f->path = data_path(ino);
        DVOL_TRY(f->fd, dvol::open_file(f->path, O_RDWR | O_CREAT, 0600));
        DVOL_TRY(auto q, db_->prepare("SELECT start FROM copied WHERE ino = ?"));
        q.bind(1, sq(ino));
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) break;
            f->copied.insert(uq(q.int64(0)));
        }
    } else {
        origin = n->second.base;
    }
    if (origin && (!f->row || f->base_limit > 0)) {
        DVOL_TRY(auto be, base_.entry_at(*origin));
        if (!be || be->entry->type != EntryType::file) return make_error(Errc::corrupt, fmt::format("{} is not a file of the base", *origin));
        DVOL_TRY(f->base, base_.open_entry(*be->entry));
        if (!f->row) {
            f->size = f->base_limit = be->entry->size;
            f->mtime_ns = f->ctime_ns = be->entry->mtime_ns;
        }
    }
    f->saved_size = f->size;
    f->saved_base_limit = f->base_limit;
    f->opens = 1;
    files_.emplace(ino, f);
    return f;
}

Result<std::unique_ptr<LayerFs::Handle>> LayerFs::open_file(uint64_t ino, bool write, bool truncate_it) {
    std::shared_ptr<FileData> f;
    {
        std::lock_guard lk(mu_);
        DVOL_TRY(Attr a, attr_locked(ino));
        if (type_of(a.mode) == S_IFDIR) return sys_error(EISDIR, "open of a directory");
        if (type_of(a.mode) != S_IFREG) return sys_error(EINVAL, "open of a special file");
        if (write || truncate_it) {
            DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
            DVOL_CHECK(copy_up(ino));
            DVOL_CHECK(settle(tx));
        }
        DVOL_TRY(f, file_data(ino));
    }
    auto h = std::make_unique<Handle>();
    h->ino_ = ino;
    h->write_ = write;
    h->data_ = f;
    if (truncate_it) {
        Status st = truncate(*f, 0, now_ns());
        if (!st) {
            (void)release(std::move(h));
            return std::move(st).error();
        }
    }
    return h;
}

Status LayerFs::copy_extents(FileData& f, uint64_t begin, uint64_t end) {
    // Under f.mu, exclusive. Copies the base extents overlapping [begin, end) below the base
    // limit that are not copied yet, except those the coming write covers whole; returns with
    // their starts in f.unsaved_copied only once their bytes are in the data file.
    end = std::min(end, f.base_limit);
    if (!f.base || begin >= end) return {};
    std::vector<uint64_t> starts;
    ReadResult rr;
    DVOL_CHECK(base_.for_each_extent(*f.base, begin, end, [&](uint64_t start, const Extent& x) -> Status {
        if (f.copied.contains(start)) return {};
        uint64_t stop = std::min(start + x.length, f.base_limit);
        starts.push_back(start);
        if (start >= begin && stop <= end) return {};  // the write covers it
        if (x.hole) {
            // Whatever a crash left there must read as the hole's zeros.
            if (::fallocate(f.fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(start), static_cast<off_t>(stop - start)) != 0 &&
                errno != EOPNOTSUPP)
                return errno_error("punch a hole in", f.path);
            return {};
        }
        DVOL_CHECK(base_.read(*f.base, start, static_cast<size_t>(stop - start), rr));
        uint64_t at = start;
        for (const auto& piece : rr.pieces) {
            DVOL_CHECK(pwrite_all(f.fd.get(), piece, at, f.path));
            at += piece.size();
        }
        bytes_copied_ += stop - start;
        rr.clear();
        return {};
    }));
    for (uint64_t s : starts) {
        f.copied.insert(s);
        f.unsaved_copied.push_back(s);
    }
    extents_copied_ += starts.size();
    return {};
}

Result<size_t> LayerFs::write(Handle& h, uint64_t offset, std::span<const std::byte> data) {
    if (!h.write_) return sys_error(EBADF, "write to a handle not open for writing");
    FileData& f = *h.data_;
    std::unique_lock fl(f.mu);
    if (!f.row) return make_error(Errc::internal, fmt::format("inode {} was opened for writing without a row", f.ino));
    if (data.empty()) return size_t{0};
    uint64_t end = offset + data.size();
    // The copy comes first, the write over it, the marks last: a failure in between leaves the
    // extent marked as the base's, whose bytes the base still has.
    size_t marked = f.unsaved_copied.size();
    Status st = copy_extents(f, offset, end);
    if (st) st = pwrite_all(f.fd.get(), data, offset, f.path);
    if (!st) {
        for (size_t i = marked; i < f.unsaved_copied.size(); ++i) f.copied.erase(f.unsaved_copied[i]);
        f.unsaved_copied.resize(marked);
        return std::move(st).error();
    }
    f.size = std::max(f.size, end);
    f.mtime_ns = f.ctime_ns = now_ns();
    f.need_sync = true;
    f.version++;
    return data.size();
}

Status LayerFs::truncate(FileData& f, uint64_t size, int64_t now) {
    std::unique_lock fl(f.mu);
    if (!f.row) return make_error(Errc::internal, fmt::format("inode {} truncated without a row", f.ino));
    if (size < f.base_limit) {
        // An extent of the base that the new end cuts is copied first, so that below the base
        // limit every extent is either the base's whole or copied: a commit then keeps the
        // base's extents by their ids and never needs a base chunk's bytes.
        if (f.base) {
            std::optional<uint64_t> cut;
            DVOL_CHECK(base_.for_each_extent(*f.base, size, size + 1, [&](uint64_t start, const Extent&) -> Status {
                if (start < size && !f.copied.contains(start)) cut = start;
                return {};
            }));
            if (cut) DVOL_CHECK(copy_extents(f, *cut, *cut + 1));
        }
        f.base_limit = size;
    }
    if (::ftruncate(f.fd.get(), static_cast<off_t>(std::min(size, f.size))) != 0) return errno_error("truncate", f.path);
    if (size > f.size && ::ftruncate(f.fd.get(), static_cast<off_t>(size)) != 0) return errno_error("truncate", f.path);
    f.size = size;
    f.mtime_ns = f.ctime_ns = now;
    f.version++;
    return {};
}

Status LayerFs::read(Handle& h, uint64_t offset, size_t size, std::vector<std::byte>& out) {
    FileData& f = *h.data_;
    std::shared_lock fl(f.mu);
    out.clear();
    if (offset >= f.size || size == 0) return {};
    uint64_t end = std::min<uint64_t>(f.size, offset + size);
    out.assign(static_cast<size_t>(end - offset), std::byte{0});
    auto from_data = [&](uint64_t a, uint64_t b) -> Status {
        std::span<std::byte> dst(out.data() + (a - offset), static_cast<size_t>(b - a));
        DVOL_TRY(size_t got, pread_some(f.fd.get(), dst, a, f.path));
        (void)got;  // past the data file's end: zeros (already there)
        return {};
    };
    uint64_t base_end = std::min(end, f.base_limit);
    if (f.base && offset < base_end) {
        ReadResult rr;
        // Neighbouring base extents not copied up are read with one CommitFs::read: read one
        // extent at a time, each piece would start where the previous ended, which its read
        // ahead takes for a sequential read, and a random read across two chunks would fetch
        // 16 chunks ahead (measured: 4x the bytes for random 1 MiB reads).
        uint64_t run_a = 0, run_b = 0;  // the base range [run_a, run_b) not read yet
        auto read_run = [&]() -> Status {
            if (run_b <= run_a) return {};
            DVOL_CHECK(base_.read(*f.base, run_a, static_cast<size_t>(run_b - run_a), rr));
            uint64_t at = run_a;
            for (const auto& p : rr.pieces) {
                std::copy(p.begin(), p.end(), out.begin() + static_cast<ptrdiff_t>(at - offset));
                at += p.size();
            }
            rr.clear();
            run_a = run_b = 0;
            return {};
        };
        DVOL_CHECK(base_.for_each_extent(*f.base, offset, base_end, [&](uint64_t start, const Extent& x) -> Status {
            uint64_t a = std::max(offset, start), b = std::min(base_end, start + x.length);
            if (f.copied.contains(start)) {
                DVOL_CHECK(read_run());
                return from_data(a, b);
            }
            // A hole joins the run too (CommitFs::read gives its zeros).
            if (run_b != a || run_b <= run_a) {
                DVOL_CHECK(read_run());
                run_a = a;
            }
            run_b = b;
            return {};
        }));
        DVOL_CHECK(read_run());
    }
    uint64_t layer_begin = std::max(offset, f.base ? f.base_limit : 0);
    if (f.row && layer_begin < end) DVOL_CHECK(from_data(layer_begin, end));
    return {};
}

Result<std::optional<uint64_t>> LayerFs::seek(Handle& h, uint64_t offset, bool data) {
    FileData& f = *h.data_;
    std::shared_lock fl(f.mu);
    if (offset >= f.size) return std::optional<uint64_t>();
    if (!f.row && f.base) return base_.seek(*f.base, offset, data);
    return std::optional<uint64_t>(data ? offset : f.size);
}

Status LayerFs::persist(FileData& f, bool durable, bool datasync) {
    uint64_t size, base_limit, version;
    int64_t mtime, ctime;
    std::vector<uint64_t> marks;
    {
        std::unique_lock fl(f.mu);
        bool only_times = f.size == f.saved_size && f.base_limit == f.saved_base_limit && f.unsaved_copied.empty();
        if (!f.row || f.version == f.saved_version || (durable && datasync && only_times)) {
            // Nothing layer.db must learn before the data is durable (fdatasync leaves the
            // times for later): the data file alone.
            if (f.row && durable && f.need_sync) {
                if (::fdatasync(f.fd.get()) != 0) return errno_error("sync", f.path);
                f.need_sync = false;
            }
            return {};
        }
        // The bytes first: a mark, a size or a base limit in layer.db must never name data
        // that a power cut could take back.
        if (f.need_sync && (durable || !f.unsaved_copied.empty())) {
            if (::fdatasync(f.fd.get()) != 0) return errno_error("sync", f.path);
            f.need_sync = false;
        }
        size = f.size;
        base_limit = f.base_limit;
        mtime = f.mtime_ns;
        ctime = f.ctime_ns;
        version = f.version;
        marks.swap(f.unsaved_copied);
    }
    Status st = [&]() -> Status {
        std::lock_guard lk(mu_);
        if (durable) DVOL_CHECK(db_->exec("PRAGMA synchronous=FULL"));
        Status inner = [&]() -> Status {
            DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
            {
                DVOL_TRY(auto q, db_->prepare("UPDATE nodes SET size = ?, base_limit = ?, mtime_ns = ?, ctime_ns = ?, dirty = 1 WHERE ino = ?"));
                DVOL_CHECK(q.bind(1, sq(size)).bind(2, sq(base_limit)).bind(3, mtime).bind(4, ctime).bind(5, sq(f.ino)).run());
            }
            for (uint64_t s : marks) {
                DVOL_TRY(auto q, db_->prepare("INSERT OR REPLACE INTO copied(ino, start, dirty) VALUES(?, ?, 1)"));
                DVOL_CHECK(q.bind(1, sq(f.ino)).bind(2, sq(s)).run());
            }
            return tx.commit();
        }();
        if (durable) (void)db_->exec("PRAGMA synchronous=NORMAL");
        return inner;
    }();
    std::unique_lock fl(f.mu);
    if (!st) {
        f.unsaved_copied.insert(f.unsaved_copied.end(), marks.begin(), marks.end());
        return st;
    }
    if (version >= f.saved_version) {
        f.saved_version = version;
        f.saved_size = size;
        f.saved_base_limit = base_limit;
    }
    return {};
}

Status LayerFs::sync_db() {
    // A transaction under synchronous=FULL makes the write-ahead log durable, with every
    // transaction before it.
    DVOL_CHECK(db_->exec("PRAGMA synchronous=FULL"));
    Status st = [&]() -> Status {
        DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
        DVOL_TRY(auto q, db_->prepare("UPDATE layer SET value = CAST(value AS INTEGER) + 1 WHERE key = 'syncs'"));
        DVOL_CHECK(q.run());
        return tx.commit();
    }();
    (void)db_->exec("PRAGMA synchronous=NORMAL");
    return st;
}

Status LayerFs::fsync(uint64_t ino, bool datasync) {
    std::shared_ptr<FileData> f;
    {
        std::lock_guard lk(mu_);
        if (auto it = files_.find(ino); it != files_.end()) {
            f = it->second;
            f->opens++;
        }
    }
    Status st;
    bool data_only = false;
    if (f) {
        {
            std::shared_lock fl(f->mu);
            data_only = datasync && f->size == f->saved_size && f->base_limit == f->saved_base_limit && f->unsaved_copied.empty();
        }
        st = persist(*f, true, datasync);
    }
    std::lock_guard lk(mu_);
    if (f && --f->opens == 0) files_.erase(ino);
    DVOL_CHECK(st);
    // fdatasync of a file whose size and extents layer.db already holds needs nothing of it.
    return data_only ? Status{} : sync_db();
}

Status LayerFs::flush_all() {
    std::vector<std::shared_ptr<FileData>> all;
    {
        std::lock_guard lk(mu_);
        for (auto& [ino, f] : files_) {
            f->opens++;
            all.push_back(f);
        }
    }
    Status first;
    for (auto& f : all) {
        Status st = persist(*f, true);
        if (!st && first) first = st;
    }
    std::lock_guard lk(mu_);
    for (auto& f : all)
        if (--f->opens == 0) files_.erase(f->ino);
    DVOL_CHECK(first);
    return sync_db();
}

Status LayerFs::release(std::unique_ptr<Handle> h) {
    auto f = h->data_;
    Status st = persist(*f, false);
    std::lock_guard lk(mu_);
    if (--f->opens == 0) {
        files_.erase(f->ino);
        if (f->orphan) {
            DVOL_TRY(auto tx, meta::Db::Transaction::begin(*db_));
    Rollback rollback{*this};
            DVOL_TRY(auto r, load_row(f->ino));
            if (r && r->nlink == 0) DVOL_CHECK(delete_row(f->ino));
            DVOL_CHECK(tx.commit());
        }
    }
    return st;
}

LayerFs::Counters LayerFs::counters() const { return Counters{extents_copied_.load(), bytes_copied_.load()}; }

}  // namespace dvol::mountfs
