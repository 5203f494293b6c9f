#include "repo/layer_tree.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "base/fs.h"
#include "meta/db.h"
#include "object/tree.h"
#include "repo/layer_rows.h"
#include "repo/readers.h"
#include "repo/stat_cache.h"
#include "store/chunker.h"
#include "store/hash.h"

namespace dvol {

namespace {

int64_t sq(uint64_t v) { return layer_sql_ino(v); }
uint64_t uq(int64_t v) { return layer_ino(v); }

std::string join(std::string_view dir, std::string_view name) {
    if (dir.empty()) return std::string(name);
    return fmt::format("{}/{}", dir, name);
}

Error corrupt(std::string what) { return make_error(Errc::corrupt, "write layer: " + std::move(what)); }

using Row = LayerRow;

// Extents into a canonical FileContent: adjacent holes merged, more than 4096 extents split
// into extent lists handed to the meta sink.
class ContentOut {
public:
    explicit ContentOut(const LayerTreeSinks& sinks) : sinks_(sinks) {}
    void add(const Extent& x) {
        if (x.length == 0) return;
        if (x.hole && !extents_.empty() && extents_.back().hole) {
            extents_.back().length += x.length;
            return;
        }
        extents_.push_back(x);
    }
    Result<FileContent> finish() {
        FileContent c;
        if (extents_.size() <= kMaxExtentsPerList) {
            c.extents = std::move(extents_);
            return c;
        }
        c.indirect = true;
        for (size_t i = 0; i < extents_.size(); i += kMaxExtentsPerList) {
            std::span<const Extent> part(extents_.data() + i, std::min(kMaxExtentsPerList, extents_.size() - i));
            auto bytes = encode_extent_list(part);
            ObjectId id = sha256(bytes);
            if (sinks_.meta) DVOL_CHECK(sinks_.meta(id, bytes));
            uint64_t covered = 0;
            for (const auto& x : part) covered += x.length;
            c.lists.push_back(ExtentListRef{id, covered, part.size()});
        }
        return c;
    }

private:
    const LayerTreeSinks& sinks_;
    std::vector<Extent> extents_;
};

class Builder {
public:
    Builder(ObjectSource& base, meta::Db& db, std::string dir, const LayerTreeSinks& sinks, meta::Db* cache, int64_t start_ns)
        : base_(base), db_(db), dir_(std::move(dir)), sinks_(sinks), cache_(cache), start_ns_(start_ns) {}

    Result<ObjectId> top(const ObjectId& base_top) {
        DVOL_TRY(auto top, tree(base_top));
        if (top->entries.size() != 1 || top->entries[0].type != EntryType::dir)
            return corrupt(fmt::format("base tree {} is not a top tree", base_top.hex()));
        TreeEntry root;
        DVOL_TRY(auto r, row(kRoot));
        if (r) {
            DVOL_TRY(auto e, row_entry(*r, std::string(kRootEntryName), ""));
            if (!e) return corrupt("the root is not a directory");
            root = std::move(*e);
        } else {
            root = top->entries[0];
            DVOL_TRY(bool any, any_row());
            if (any) {
                DVOL_TRY(root.subtree, dir(std::nullopt, "", ""));
            }
        }
        return store(Tree{{std::move(root)}});
    }

    uint64_t chunks = 0, chunk_bytes = 0;
    uint64_t cache_hits = 0;
    std::vector<LayerContentEntry> fresh;

private:
    static constexpr uint64_t kRoot = 1;

    Result<std::shared_ptr<const Tree>> tree(const ObjectId& id) {
        if (auto it = trees_.find(id); it != trees_.end()) return it->second;
        DVOL_TRY(Tree t, load_tree(base_, nullptr, id));
        auto p = std::make_shared<const Tree>(std::move(t));
        if (trees_.size() > 4096) trees_.clear();  // a bound, not an LRU: trees are re-read rarely
        trees_.emplace(id, p);
        return p;
    }

    // The base entry at `path` as recorded (a hard link not resolved); "" is the top's root entry.
    Result<std::optional<TreeEntry>> base_entry(std::string_view path) {
        DVOL_TRY(auto t, tree(base_top_id()));
        TreeEntry e = t->entries[0];
        size_t start = 0;
        while (!path.empty()) {
            if (e.type != EntryType::dir) return std::optional<TreeEntry>();
            size_t slash = path.find('/', start);
            std::string_view name = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
            DVOL_TRY(auto d, tree(e.subtree));
            const TreeEntry* c = d->find(name);
            if (!c) return std::optional<TreeEntry>();
            e = *c;
            if (slash == std::string_view::npos) break;
            start = slash + 1;
        }
        return std::optional<TreeEntry>(std::move(e));
    }
    const ObjectId& base_top_id() const { return base_top_; }

public:
    ObjectId base_top_;

private:
    Result<std::optional<Row>> row(uint64_t ino) { return load_layer_row(db_, ino); }

    Result<std::optional<Row>> row_by_origin(const std::string& path) {
        DVOL_TRY(auto ino, layer_ino_by_origin(db_, path));
        if (!ino) return std::optional<Row>();
        return row(*ino);
    }

    // Whether the live tree shows the base's entry `path` at that same path: no directory on the
    // way, nor the entry, renamed, deleted or replaced by the layer.
    Result<bool> live_is_base(const std::string& path) {
        DVOL_TRY(auto cur, row(kRoot));
        std::string at;  // the base path reached so far
        for (size_t start = 0;;) {
            size_t slash = path.find('/', start);
            std::string name = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
            std::string want = join(at, name);
            if (cur && cur->listed) {
                DVOL_TRY(auto q, db_.prepare("SELECT ino, base_path FROM dirents WHERE parent = ? AND name = ?"));
                q.bind(1, sq(cur->ino)).bind(2, name);
                DVOL_TRY(bool found, q.step());
                if (!found) return false;
                if (!q.is_null(0)) {
                    uint64_t ino = uq(q.int64(0));
                    q.reset();
                    DVOL_TRY(cur, row(ino));
                    if (!cur || cur->origin != want) return false;
                } else {
                    if (q.is_null(1) || q.text(1) != want) return false;
                    q.reset();
                    DVOL_TRY(cur, row_by_origin(want));
                }
            } else {
                DVOL_TRY(cur, row_by_origin(want));  // a base child, or its row
            }
            at = std::move(want);
            if (slash == std::string::npos) return true;
            start = slash + 1;
        }
    }

    Result<bool> any_row() {
        DVOL_TRY(auto q, db_.prepare("SELECT 1 FROM nodes LIMIT 1"));
        return q.step();
    }

    // Whether a row's origin lies below base path `path` (a directory): its tree must be rebuilt.
    Result<bool> rows_below(const std::string& path) {
        if (path.empty()) return any_row();
        DVOL_TRY(auto q, db_.prepare("SELECT 1 FROM nodes WHERE origin >= ? AND origin < ? LIMIT 1"));
        q.bind(1, path + "/").bind(2, path + "0");  // '0' follows '/'
        return q.step();
    }

    Result<Xattrs> xattrs(uint64_t ino) {
        Xattrs out;
        DVOL_TRY(auto q, db_.prepare("SELECT name, value FROM xattrs WHERE ino = ? ORDER BY name"));
        q.bind(1, sq(ino));
        for (;;) {
            DVOL_TRY(bool more, q.step());
            if (!more) break;
            auto v = q.blob_view(1);
            out.emplace_back(q.text(0), std::string(reinterpret_cast<const char*>(v.data()), v.size()));
        }
        return out;
    }

    Result<ObjectId> store(const Tree& t) {
        auto bytes = encode_tree(t);
        ObjectId id = sha256(bytes);
        if (sinks_.meta) DVOL_CHECK(sinks_.meta(id, bytes));
        return id;
    }

    // A directory of the live tree: a row's (`row`), or the base's at `base_path`.
    Result<ObjectId> dir(const std::optional<Row>& r, const std::string& base_path, const std::string& live_path) {
        Tree out;
        if (r && r->listed) {
            std::vector<std::tuple<std::string, std::optional<uint64_t>, std::string>> ents;
            {
                DVOL_TRY(auto q, db_.prepare("SELECT name, ino, base_path FROM dirents WHERE parent = ? ORDER BY name"));
                q.bind(1, sq(r->ino));
                for (;;) {
                    DVOL_TRY(bool more, q.step());
                    if (!more) break;
                    std::optional<uint64_t> ino;
                    if (!q.is_null(1)) ino = uq(q.int64(1));
                    ents.emplace_back(q.text(0), ino, q.is_null(2) ? std::string() : q.text(2));
                }
            }
            for (auto& [name, ino, path] : ents) {
                std::optional<TreeEntry> e;
                if (ino) {
                    DVOL_TRY(auto cr, row(*ino));
                    if (!cr) return corrupt(fmt::format("entry {} names inode {}, which has no row", join(live_path, name), *ino));
                    DVOL_TRY(e, row_entry(*cr, name, join(live_path, name)));
                } else {
                    DVOL_TRY(e, base_child(path, name, join(live_path, name)));
                }
                if (e) out.entries.push_back(std::move(*e));
            }
        } else {
            std::string src = r ? r->origin.value_or("") : base_path;
            DVOL_TRY(auto be, base_entry(src));
            if (!be || be->type != EntryType::dir) return corrupt(fmt::format("{} is not a directory of the base", src));
            DVOL_TRY(auto t, tree(be->subtree));
            for (const auto& c : t->entries) {
                DVOL_TRY(auto e, base_child(join(src, c.name), c.name, join(live_path, c.name)));
                if (e) out.entries.push_back(std::move(*e));
            }
        }
        return store(out);
    }

    // The base entry at `path`, shown as `name` at `live_path`.
    Result<std::optional<TreeEntry>> base_child(const std::string& path, const std::string& name, const std::string& live_path) {
        DVOL_TRY(auto be, base_entry(path));
        if (!be) return corrupt(fmt::format("the layer names {} of the base, which is not there", path));
        std::string resolved = be->type == EntryType::hardlink ? be->target : path;
        DVOL_TRY(auto r, row_by_origin(resolved));
        if (r) return row_entry(*r, name, live_path);
        TreeEntry e = std::move(*be);
        e.name = name;
        switch (e.type) {
            case EntryType::dir: {
                DVOL_TRY(bool below, rows_below(path));
                if (below) {
                    DVOL_TRY(e.subtree, dir(std::nullopt, path, live_path));
                }
                return std::optional<TreeEntry>(std::move(e));
            }
            case EntryType::file:
            case EntryType::hardlink: {
                std::string key = "b:" + resolved;
                if (auto it = first_path_.find(key); it != first_path_.end()) {
                    DVOL_TRY(auto target, base_entry(resolved));
                    if (!target) return corrupt(fmt::format("hard link {} to {}, which is not in the base", path, resolved));
                    TreeEntry l = std::move(*target);
                    l.name = name;
                    l.type = EntryType::hardlink;
                    l.target = it->second;
                    l.content = {};
                    l.size = 0;
                    return std::optional<TreeEntry>(std::move(l));
                }
                // The first name of its group met here holds the content, the later ones link to it
                // (the tree's rule). A base hard link whose group's first name is still where it
                // was and before it is kept as recorded (that name lies in a directory the layer
                // left alone, kept by its id). Otherwise (that name deleted, replaced, or moved
                // past it) this one comes first and takes the group's file entry.
                if (e.type == EntryType::hardlink) {
                    DVOL_TRY(bool in_place, live_is_base(resolved));
                    if (in_place && scan_order_before(resolved, live_path)) return std::optional<TreeEntry>(std::move(e));
                    DVOL_TRY(auto target, base_entry(resolved));
                    if (!target || target->type != EntryType::file)
                        return corrupt(fmt::format("hard link {} to {}, which is not a file of the base", path, resolved));
                    e = std::move(*target);
                    e.name = name;
                }
                first_path_.emplace(key, live_path);
                return std::optional<TreeEntry>(std::move(e));
            }
            default: return std::optional<TreeEntry>(std::move(e));
        }
    }

    // The entry of row `r`, named `name`, at `live_path`; nullopt for what a commit does not
    // record (sockets).
    Result<std::optional<TreeEntry>> row_entry(const Row& r, const std::string& name, const std::string& live_path) {
        TreeEntry e;
        e.name = name;
        e.mode = r.mode & 07777;
        e.uid = r.uid;
        e.gid = r.gid;
        e.mtime_ns = r.mtime_ns;
        DVOL_TRY(e.xattrs, xattrs(r.ino));
        switch (r.mode & S_IFMT) {
            case S_IFDIR: {
                e.type = EntryType::dir;
                DVOL_TRY(e.subtree, dir(r, r.origin.value_or(""), live_path));
                break;
            }
            case S_IFREG: {
                std::string key = fmt::format("i:{}", r.ino);
                if (auto it = first_path_.find(key); it != first_path_.end()) {
                    e.type = EntryType::hardlink;
                    e.target = it->second;
                    e.size = r.size;
                    // A hard link's metadata is the shared inode's; its content is the first name's.
                    break;
                }
                first_path_.emplace(key, live_path);
                e.type = EntryType::file;
                e.size = r.size;
                DVOL_TRY(e.content, content(r));
                break;
            }
            case S_IFLNK:
                e.type = EntryType::symlink;
                e.target = r.target;
                e.size = r.target.size();
                break;
            case S_IFIFO: e.type = EntryType::fifo; break;
            case S_IFCHR:
                e.type = EntryType::chardev;
                e.rdev = r.rdev;
                break;
            case S_IFBLK:
                e.type = EntryType::blockdev;
                e.rdev = r.rdev;
                break;
            default: return std::optional<TreeEntry>();
        }
        if (e.type == EntryType::hardlink) e.size = 0;
        return std::optional<TreeEntry>(std::move(e));
    }

    // A file's content: the base's extents below the base limit that were not copied, by their
    // ids; the rest (copied extents, bytes past the base limit) cut from the data file. Taken
    // from the content cache when the row and the data file are as they were then.
    Result<FileContent> content(const Row& r) {
        std::vector<uint64_t> copied;
        {
            DVOL_TRY(auto q, db_.prepare("SELECT start FROM copied WHERE ino = ? ORDER BY start"));
            q.bind(1, sq(r.ino));
            for (;;) {
                DVOL_TRY(bool more, q.step());
                if (!more) break;
                copied.push_back(uq(q.int64(0)));
            }
        }
        // What the content depends on: the row, its copied marks and the data file (whose times
        // the kernel moves on every write, also one the row does not know of yet). Taken before
        // the bytes are read: a write while they are read changes it for the next build.
        std::string key = fmt::format("{} {} {} {} {} {}", r.size, r.base_limit, r.mtime_ns, r.ctime_ns, r.origin ? "o:" + *r.origin : "-",
                                      copied.size());
        for (uint64_t c : copied) key += fmt::format(",{}", c);
        // Kept for later builds only when older than the stat cache's racy window: a write in the
        // same tick of the kernel's clock as this build would leave the data file's times unchanged.
        bool cacheable = r.ctime_ns < start_ns_ - kRacyWindowNs;
        {
            struct stat st;
            std::string data = fmt::format("{}/data/{:016x}", dir_, r.ino);
            if (::stat(data.c_str(), &st) == 0) {
                StatKey k = stat_key(st);
                key += fmt::format(" f:{}:{}:{}:{}", k.ino, k.size, k.mtime_ns, k.ctime_ns);
                cacheable = cacheable && k.mtime_ns < start_ns_ - kRacyWindowNs && k.ctime_ns < start_ns_ - kRacyWindowNs;
            } else if (errno == ENOENT) {
                key += " f:-";
            } else {
                cacheable = false;
            }
        }
        if (cache_) {
            auto q = cache_->prepare("SELECT content FROM contents WHERE ino = ? AND key = ?");
            if (q) {
                q->bind(1, sq(r.ino)).bind(2, key);
                auto found = q->step();
                if (found && *found) {
                    auto c = decode_content(q->blob_view(0));
                    if (c) {
                        cache_hits++;
                        return std::move(*c);
                    }
                }
            }
        }
        DVOL_TRY(FileContent c, compute(r, copied));
        if (cacheable) fresh.push_back(LayerContentEntry{r.ino, std::move(key), encode_content(c)});
        return c;
    }

    Result<FileContent> compute(const Row& r, const std::vector<uint64_t>& copied) {
        std::optional<TreeEntry> be;
        if (r.origin && r.base_limit > 0) {
            DVOL_TRY(be, base_entry(*r.origin));
            if (!be || be->type != EntryType::file) return corrupt(fmt::format("{} is not a file of the base", *r.origin));
            if (copied.empty() && r.base_limit == be->size && r.size == be->size) return be->content;  // unchanged bytes
        }
        ContentOut out(sinks_);
        std::string path = fmt::format("{}/data/{:016x}", dir_, r.ino);
        UniqueFd fd;
        auto opened = open_file(path, O_RDONLY);
        if (opened) fd = std::move(*opened);
        else if (opened.error().code != Errc::not_found) return std::move(opened).error();
        uint64_t run_start = 0, run_end = 0;  // the bytes to cut from the data file, pending
        auto flush = [&]() -> Status {
            if (run_end > run_start) DVOL_CHECK(cut(fd, path, run_start, run_end, out));
            run_start = run_end = 0;
            return {};
        };
        if (be) {
            ExtentCursor cur(base_, be->content);
            for (;;) {
                DVOL_TRY(auto x, cur.next());
                if (!x) break;
                uint64_t s = cur.offset();
                if (s >= r.base_limit) break;
                uint64_t e = std::min(s + x->length, r.base_limit);
                if (!std::binary_search(copied.begin(), copied.end(), s)) {
                    if (e != s + x->length) return corrupt(fmt::format("extent at {} of {} is cut by its base limit but not copied", s, *r.origin));
                    DVOL_CHECK(flush());
                    out.add(*x);
                } else {
                    if (run_end != s) {
                        DVOL_CHECK(flush());
                        run_start = s;
                    }
                    run_end = e;
                }
            }
        }
        uint64_t layer_from = be ? r.base_limit : 0;
        if (r.size > layer_from) {
            if (run_end != layer_from) {
                DVOL_CHECK(flush());
                run_start = layer_from;
            }
            run_end = r.size;
        }
        DVOL_CHECK(flush());
        return out.finish();
    }

    // Bytes [from, to) of the data file (zeros past its end) cut into chunks.
    Status cut(const UniqueFd& fd, const std::string& path, uint64_t from, uint64_t to, ContentOut& out) {
        const size_t cap = std::max<size_t>(chunker_.max_size() * 2, 16u << 20);
        if (buf_.size() < cap) buf_.resize(cap);
        size_t have = 0, off = 0;
        uint64_t pos = from;  // next byte to read
        for (;;) {
            if (have - off < chunker_.max_size() && pos < to) {
                std::memmove(buf_.data(), buf_.data() + off, have - off);
                have -= off;
                off = 0;
                size_t want = static_cast<size_t>(std::min<uint64_t>(cap - have, to - pos));
                std::span<std::byte> dst(buf_.data() + have, want);
                size_t got = 0;
                if (fd.valid()) {
                    DVOL_TRY(got, pread_some(fd.get(), dst, pos, path));
                }
                std::fill(dst.begin() + static_cast<ptrdiff_t>(got), dst.end(), std::byte{0});
                have += want;
                pos += want;
            }
            if (have == off) return {};
            std::span<const std::byte> data(buf_.data() + off, have - off);
            size_t n = chunker_.next_cut(data);
            auto piece = data.first(n);
            if (std::all_of(piece.begin(), piece.end(), [](std::byte b) { return b == std::byte{0}; })) {
                out.add(Extent{{}, n, true});
            } else {
                ObjectId id = sha256(piece);
                if (sinks_.chunk) DVOL_CHECK(sinks_.chunk(id, piece));
                chunks++;
                chunk_bytes += n;
                out.add(Extent{id, n, false});
            }
            off += n;
        }
    }

    ObjectSource& base_;
    meta::Db& db_;
    std::string dir_;
    const LayerTreeSinks& sinks_;
    meta::Db* cache_;
    int64_t start_ns_;
    Chunker chunker_;
    std::vector<std::byte> buf_;
    std::unordered_map<ObjectId, std::shared_ptr<const Tree>, ObjectIdHash> trees_;
    std::unordered_map<std::string, std::string> first_path_;  // identity of a file -> live path of its first name
};

class KeptObjects final : public ObjectSource {
public:
    explicit KeptObjects(std::string dir) : dir_(std::move(dir)) {}
    Result<bool> has(const ObjectId& id) override { return path_exists(dir_ + "/" + id.hex()); }
    Status get(const ObjectId& id, std::vector<std::byte>& out) override {
        std::string path = dir_ + "/" + id.hex();
        auto fd = open_file(path, O_RDONLY);
        if (!fd) {
            if (fd.error().code == Errc::not_found)
                return make_error(Errc::not_found, fmt::format("object {} is not kept in {}", id.hex(), dir_));
            return std::move(fd).error();
        }
        struct stat st;
        if (::fstat(fd->get(), &st) != 0) return errno_error("stat", path);
        out.resize(static_cast<size_t>(st.st_size));
        DVOL_CHECK(pread_exact(fd->get(), out, 0, path));
        if (sha256(out) != id) return make_error(Errc::corrupt, fmt::format("kept object {} is damaged (its bytes do not hash to its name)", path));
        return {};
    }
    using ObjectSource::get;

private:
    std::string dir_;
};

}  // namespace

std::unique_ptr<ObjectSource> open_kept_objects(const std::string& cache_dir) { return std::make_unique<KeptObjects>(cache_dir + "/meta"); }

void flush_live_mount(const std::string& live_dir) {
    auto fd = open_file(live_dir, O_RDONLY | O_DIRECTORY);
    if (fd) (void)::fsync(fd->get());
}

Result<std::optional<ObjectId>> layer_base(const std::string& layer_dir) {
    std::string path = layer_dir + "/layer.db";
    if (!path_exists(path)) return std::optional<ObjectId>();
    DVOL_TRY(auto db, meta::Db::open(path));
    DVOL_TRY(auto q, db->prepare("SELECT value FROM layer WHERE key = 'base'"));
    DVOL_TRY(bool found, q.step());
    if (!found) return std::optional<ObjectId>();
    auto id = ObjectId::from_hex(q.text(0));
    if (!id) return corrupt(fmt::format("{} names no base commit", path));
    return std::optional<ObjectId>(*id);
}

namespace {

constexpr const char* kContentsDb = "/contents.db";

Result<std::unique_ptr<meta::Db>> open_contents(const std::string& layer_dir) {
    DVOL_TRY(auto db, meta::Db::open(layer_dir + kContentsDb));
    DVOL_CHECK(db->exec("PRAGMA synchronous=NORMAL;"
                        "CREATE TABLE IF NOT EXISTS contents(ino INTEGER PRIMARY KEY, key TEXT NOT NULL, content BLOB NOT NULL)"));
    return db;
}

}  // namespace

Result<LayerTree> build_layer_tree(ObjectSource& base, const ObjectId& base_top, const std::string& layer_dir, const LayerTreeSinks& sinks,
                                   int64_t as_of_ns) {
    DVOL_TRY(auto db, meta::Db::open(layer_dir + "/layer.db"));
    DVOL_TRY(auto read, meta::Db::ReadScope::begin(*db));  // one snapshot of the layer
    // The content cache is a cache: one that cannot be opened is done without.
    std::unique_ptr<meta::Db> cache;
    if (path_exists(layer_dir + kContentsDb)) {
        if (auto c = open_contents(layer_dir)) cache = std::move(*c);
    }
    Builder b(base, *db, layer_dir, sinks, cache.get(), as_of_ns ? as_of_ns : now_ns());
    b.base_top_ = base_top;
    LayerTree out;
    DVOL_TRY(out.top, b.top(base_top));
    out.chunks = b.chunks;
    out.chunk_bytes = b.chunk_bytes;
    out.cache_hits = b.cache_hits;
    out.fresh = std::move(b.fresh);
    return out;
}

// docs/FORMAT.md "The cache".
Status keep_object(const std::string& cache_dir, const ObjectId& id, std::span<const std::byte> bytes) {
    std::string path = cache_dir + "/meta/" + id.hex();
    if (path_exists(path)) return {};
    std::string tmp = cache_dir + "/tmp/commit-" + id.hex();
    DVOL_CHECK(make_dirs(cache_dir + "/tmp"));
    DVOL_TRY(auto fd, open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    DVOL_CHECK(write_all(fd.get(), bytes, tmp));
    DVOL_CHECK(fsync_fd(fd.get(), tmp));
    if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_error("rename into place", path);
    return {};
}

Status save_layer_contents(const std::string& layer_dir, const std::vector<LayerContentEntry>& entries) {
    if (entries.empty()) return {};
    DVOL_TRY(auto db, open_contents(layer_dir));
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db));
    for (const auto& e : entries) {
        DVOL_TRY(auto q, db->prepare("INSERT OR REPLACE INTO contents(ino, key, content) VALUES(?, ?, ?)"));
        DVOL_CHECK(q.bind(1, sq(e.ino)).bind(2, e.key).bind_blob(3, e.content).run());
    }
    return txn.commit();
}

}  // namespace dvol
