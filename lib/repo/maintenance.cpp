// Repository maintenance: the store lock, the reflog, fsck and gc.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <ctime>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "repo/repository.h"
#include "repo/stat_cache.h"
#include "repo/walk.h"

namespace dvol {

Result<StoreLock> StoreLock::acquire(const std::string& root, bool exclusive, const WarnFn& waiting) {
    DVOL_TRY(UniqueFd fd, open_file(root + "/store.lock", O_RDWR | O_CREAT, 0600));
    int mode = exclusive ? LOCK_EX : LOCK_SH;
    int rc = ::flock(fd.get(), mode | LOCK_NB);
    if (rc != 0 && errno == EWOULDBLOCK) {
        if (waiting) waiting(exclusive ? "waiting for other dvol commands to finish before collecting garbage" : "waiting for dvol gc to finish");
        do rc = ::flock(fd.get(), mode);
        while (rc != 0 && errno == EINTR);
    }
    if (rc != 0) return errno_error("lock", root + "/store.lock");
    return StoreLock(std::move(fd));
}

Status Repository::log_ref(int64_t volume_id, const std::string& branch, const std::optional<ObjectId>& old_tip,
                           const std::optional<ObjectId>& new_tip, const std::string& action) {
    DVOL_TRY(auto q, db_->prepare("INSERT INTO reflog(volume_id, branch, old, new, time, action) VALUES(?, ?, ?, ?, ?, ?)"));
    q.bind(1, volume_id).bind(2, branch);
    if (old_tip) q.bind_blob(3, old_tip->as_span());
    else q.bind_null(3);
    if (new_tip) q.bind_blob(4, new_tip->as_span());
    else q.bind_null(4);
    return q.bind(5, static_cast<int64_t>(::time(nullptr))).bind(6, action).run();
}

Result<std::vector<ReflogEntry>> Repository::reflog(const std::string& volume) {
    DVOL_TRY(auto v, find_volume(volume));
    std::vector<ReflogEntry> out;
    DVOL_TRY(auto q, db_->prepare("SELECT branch, old, new, time, action FROM reflog WHERE volume_id = ? ORDER BY seq DESC"));
    q.bind(1, v.id);
    auto id_at = [&q](int col) -> std::optional<ObjectId> {
        if (q.is_null(col) || q.blob_view(col).size() != ObjectId::size) return std::nullopt;
        return ObjectId::from_bytes(q.blob_view(col));
    };
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        out.push_back(ReflogEntry{q.text(0), id_at(1), id_at(2), q.int64(3), q.text(4)});
    }
    return out;
}

namespace {

// fsck's walk: which problems lie below each tree, memoised, so a tree shared by many commits is
// checked once.
struct Checker {
    ObjectStore& store;
    std::vector<FsckProblem>& problems;
    std::unordered_map<ObjectId, size_t, ObjectIdHash> bad;  // object -> problem index
    // Trees and extent lists already checked, with the problems below them (path relative).
    std::unordered_map<ObjectId, std::vector<std::pair<size_t, std::string>>, ObjectIdHash> below;
    std::vector<std::byte> buf;

    static std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : b.empty() ? a : a + "/" + b; }

    size_t problem(const ObjectId& id, const std::string& kind, const std::string& message) {
        auto [it, fresh] = bad.emplace(id, problems.size());
        if (fresh) problems.push_back(FsckProblem{kind, id.hex(), message, {}});
        return it->second;
    }

    // Problems for a chunk: corrupt ones were found by the object pass; absent ones here.
    Result<std::optional<size_t>> check_leaf(const ObjectId& id) {
        if (auto it = bad.find(id); it != bad.end()) return std::optional<size_t>(it->second);
        DVOL_TRY(bool present, store.has(id));
        if (!present) return std::optional<size_t>(problem(id, "missing-object", fmt::format("object {} is referenced but not in the store", id.hex())));
        return std::optional<size_t>();
    }

    Result<std::vector<std::pair<size_t, std::string>>> check_content(const FileContent& c) {
        std::vector<std::pair<size_t, std::string>> out;
        auto extents = [&](const std::vector<Extent>& xs) -> Status {
            for (const auto& x : xs) {
                if (x.hole) continue;
                DVOL_TRY(auto p, check_leaf(x.id));
                if (p) out.emplace_back(*p, "");
            }
            return {};
        };
        if (!c.indirect) {
            DVOL_CHECK(extents(c.extents));
            return out;
        }
        for (const auto& ref : c.lists) {
            if (auto it = below.find(ref.id); it != below.end()) {
                out.insert(out.end(), it->second.begin(), it->second.end());
                continue;
            }
            std::vector<std::pair<size_t, std::string>> mine;
            DVOL_TRY(auto p, check_leaf(ref.id));
            if (p) {
                mine.emplace_back(*p, "");
            } else {
                auto bytes = store.get(ref.id);
                auto list = bytes ? decode_extent_list(*bytes) : Result<std::vector<Extent>>(bytes.error());
                if (!list) {
                    mine.emplace_back(problem(ref.id, "corrupt-object", fmt::format("extent list {}: {}", ref.id.hex(), list.error().message)), "");
                } else {
                    auto saved = std::move(out);
                    out.clear();
                    DVOL_CHECK(extents(*list));
                    mine = std::move(out);
                    out = std::move(saved);
                }
            }
            below.emplace(ref.id, mine);
            out.insert(out.end(), mine.begin(), mine.end());
        }
        return out;
    }

    Result<std::vector<std::pair<size_t, std::string>>> check_tree(const ObjectId& id, bool top) {
        if (auto it = below.find(id); it != below.end()) return it->second;
        std::vector<std::pair<size_t, std::string>> out;
        DVOL_TRY(auto leaf, check_leaf(id));
        if (leaf) {
            out.emplace_back(*leaf, "");
        } else {
            auto bytes = store.get(id);
            auto tree = bytes ? decode_tree(*bytes) : Result<Tree>(bytes.error());
            if (!tree) {
                out.emplace_back(problem(id, "corrupt-object", fmt::format("tree {}: {}", id.hex(), tree.error().message)), "");
            } else {
                for (const auto& e : tree->entries) {
                    std::string name = top ? "" : e.name;
                    std::vector<std::pair<size_t, std::string>> sub;
                    if (e.type == EntryType::dir) {
                        DVOL_TRY(sub, check_tree(e.subtree, false));
                    } else if (e.type == EntryType::file) {
                        DVOL_TRY(sub, check_content(e.content));
                    }
                    for (auto& [p, path] : sub) out.emplace_back(p, join(name, path));
                }
            }
        }
        below.emplace(id, out);
        return out;
    }
};

}  // namespace

Result<FsckReport> Repository::fsck(const ProgressFn& progress) {
    DVOL_TRY(auto lock, StoreLock::acquire(root_, false, wait_notice_));
    FsckReport report;
    Checker check{*store_, report.problems, {}, {}, {}};

    // Every object: re-read, decompress, re-hash.
    uint64_t bytes = 0;
    DVOL_CHECK(store_->for_each_object([&](const ObjectId& id, const std::string&) -> Status {
        report.objects++;
        auto st = store_->get(id, check.buf);
        if (!st) check.problem(id, st.error().code == Errc::corrupt ? "corrupt-object" : "missing-object", st.error().message);
        bytes += check.buf.size();
        if (progress && report.objects % 64 == 0) progress(Progress{report.objects, bytes});
        return {};
    }));

    // Every commit of every volume, and what its tree reaches.
    std::vector<std::pair<int64_t, std::string>> volumes;
    {
        DVOL_TRY(auto q, db_->prepare("SELECT id, name FROM volumes ORDER BY name"));
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) break;
            volumes.emplace_back(q.int64(0), q.text(1));
        }
    }
    for (const auto& [vid, vname] : volumes) {
        std::vector<std::pair<ObjectId, std::vector<std::byte>>> commits;
        {
            DVOL_TRY(auto q, db_->prepare("SELECT id, encoded FROM commits WHERE volume_id = ?"));
            q.bind(1, vid);
            for (;;) {
                DVOL_TRY(bool row, q.step());
                if (!row) break;
                commits.emplace_back(ObjectId::from_bytes(q.blob_view(0)), q.blob(1));
            }
        }
        for (const auto& [cid, enc] : commits) {
            report.commits++;
            auto decoded = decode_commit(enc);
            if (sha256(enc) != cid || !decoded) {
                std::string why = !decoded ? decoded.error().message : "its content does not match its id";
                report.problems.push_back(FsckProblem{"bad-commit", cid.hex(), fmt::format("commit {} is corrupt: {}", cid.hex(), why),
                                                      {FsckAffected{vname, cid.hex(), ""}}});
                continue;
            }
            DVOL_TRY(auto found, check.check_tree(decoded->tree, true));
            for (const auto& [p, path] : found) {
                auto& affects = report.problems[p].affects;
                FsckAffected a{vname, cid.hex(), path};
                bool dup = false;
                for (const auto& x : affects) dup = dup || (x.volume == a.volume && x.commit == a.commit && x.path == a.path);
                if (!dup) affects.push_back(std::move(a));
            }
        }
        // Branches must name commits of their volume.
        DVOL_TRY(auto q, db_->prepare("SELECT b.name, b.tip FROM branches b WHERE b.volume_id = ? AND b.tip IS NOT NULL AND NOT EXISTS "
                                      "(SELECT 1 FROM commits c WHERE c.volume_id = b.volume_id AND c.id = b.tip)"));
        q.bind(1, vid);
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) break;
            std::string tip = q.blob_view(1).size() == ObjectId::size ? ObjectId::from_bytes(q.blob_view(1)).hex() : "(malformed)";
            report.problems.push_back(FsckProblem{"bad-branch", tip, fmt::format("branch {}/{} names commit {}, which is not in the store", vname, q.text(0), tip),
                                                  {FsckAffected{vname, tip, ""}}});
        }
    }
    return report;
}

Result<GcReport> Repository::gc(const ProgressFn& progress) {
    DVOL_TRY(auto lock, StoreLock::acquire(root_, true, wait_notice_));
    DVOL_CHECK(prepare_write());
    GcReport report;

    // Mark: everything reachable from a branch of a volume, in a temporary table so memory does
    // not grow with the store.
    DVOL_CHECK(db_->exec("PRAGMA temp_store = FILE; CREATE TEMP TABLE IF NOT EXISTS gc_marked(id BLOB PRIMARY KEY) WITHOUT ROWID; "
                         "DELETE FROM gc_marked;"));
    DVOL_TRY(auto mark, db_->prepare("INSERT OR IGNORE INTO gc_marked(id) VALUES(?)"));
    uint64_t marked = 0;
    std::optional<Error> unreadable;
    ObjectWalker walker;
    walker.visit = [&](const ObjectId& id, ObjectKind, const std::string&) -> Result<bool> {
        DVOL_CHECK(mark.bind_blob(1, id.as_span()).run());
        bool fresh = db_->changes() > 0;
        if (fresh && progress && ++marked % 1024 == 0) progress(Progress{marked, 0});
        return fresh;
    };
    walker.unreadable = [&](const ObjectId& id, const std::string& path, const Error& e) {
        if (!unreadable) unreadable = make_error(Errc::corrupt, fmt::format("cannot collect garbage: object {} (at {}) cannot be read ({}); run dvol fsck",
                                                                            id.hex(), path.empty() ? "/" : path, e.message));
    };

    std::map<int64_t, std::unordered_set<ObjectId, ObjectIdHash>> keep;  // volume -> reachable commits
    {
        std::vector<std::pair<int64_t, ObjectId>> tips;
        DVOL_TRY(auto q, db_->prepare("SELECT volume_id, tip FROM branches WHERE tip IS NOT NULL"));
        for (;;) {
            DVOL_TRY(bool row, q.step());
            if (!row) break;
            if (q.blob_view(1).size() == ObjectId::size) tips.emplace_back(q.int64(0), ObjectId::from_bytes(q.blob_view(1)));
        }
        DVOL_CHECK(db_->exec("BEGIN"));
        for (const auto& [vid, tip] : tips) {
            std::vector<ObjectId> todo{tip};
            while (!todo.empty()) {
                ObjectId cur = todo.back();
                todo.pop_back();
                if (!keep[vid].insert(cur).second) continue;
                auto c = load_commit(cur);
                if (!c) {
                    (void)db_->exec("ROLLBACK");
                    return make_error(c.error().code, fmt::format("cannot collect garbage: {}; run dvol fsck", c.error().message));
                }
                auto walked = walk_tree(*store_, c->tree, "", walker, true);
                if (!walked) {
                    (void)db_->exec("ROLLBACK");
                    return std::move(walked).error();
                }
                todo.insert(todo.end(), c->parents.begin(), c->parents.end());
            }
        }
        DVOL_CHECK(db_->exec("COMMIT"));
    }
    if (unreadable) return *unreadable;

    DVOL_TRY(auto is_marked, db_->prepare("SELECT 1 FROM gc_marked WHERE id = ?"));
    auto live = [&](const ObjectId& id) -> Result<bool> {
        is_marked.bind_blob(1, id.as_span());
        auto row = is_marked.step();
        is_marked.reset();  // ready for the next lookup
        return row;
    };

    // Before any object goes: drop unreachable commits, their reflog entries, and stat-cache rows
    // that name objects about to be deleted (a row must never outlive its chunks, or a later
    // commit would reuse content that is gone).
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        std::vector<std::pair<int64_t, ObjectId>> drop;
        {
            DVOL_TRY(auto q, db_->prepare("SELECT volume_id, id FROM commits"));
            for (;;) {
                DVOL_TRY(bool row, q.step());
                if (!row) break;
                ObjectId id = ObjectId::from_bytes(q.blob_view(1));
                if (!keep[q.int64(0)].count(id)) drop.emplace_back(q.int64(0), id);
            }
        }
        DVOL_TRY(auto del, db_->prepare("DELETE FROM commits WHERE volume_id = ? AND id = ?"));
        for (const auto& [vid, id] : drop) DVOL_CHECK(del.bind(1, vid).bind_blob(2, id.as_span()).run());
        report.commits_removed = drop.size();
        // A reflog entry lives as long as the commit it leads to (for a deletion: the commit the
        // branch held).
        DVOL_CHECK(db_->exec("DELETE FROM reflog WHERE NOT EXISTS (SELECT 1 FROM commits c WHERE c.volume_id = reflog.volume_id "
                             "AND c.id = coalesce(reflog.new, reflog.old))"));

        std::vector<std::pair<int64_t, std::string>> stale;
        {
            DVOL_TRY(auto q, db_->prepare("SELECT volume_id, path, content FROM stat_cache"));
            for (;;) {
                DVOL_TRY(bool row, q.step());
                if (!row) break;
                auto content = decode_content(q.blob_view(2));
                bool ok = content.ok();
                if (ok && !content->indirect) {
                    for (const auto& x : content->extents) {
                        if (x.hole) continue;
                        DVOL_TRY(bool l, live(x.id));
                        if (!l) { ok = false; break; }
                    }
                } else if (ok) {
                    for (const auto& ref : content->lists) {
                        DVOL_TRY(bool l, live(ref.id));
                        if (!l) { ok = false; break; }
                    }
                }
                if (!ok) stale.emplace_back(q.int64(0), std::string(as_chars(q.blob_view(1))));
            }
        }
        DVOL_TRY(auto del_row, db_->prepare("DELETE FROM stat_cache WHERE volume_id = ? AND path = ?"));
        for (const auto& [vid, path] : stale) DVOL_CHECK(del_row.bind(1, vid).bind_blob(2, as_bytes(path)).run());
        report.cache_rows_dropped = stale.size();
        DVOL_CHECK(txn.commit());
    }

    // Sweep.
    DVOL_TRY(auto swept, store_->collect(live));
    report.objects_removed = swept.objects_removed;
    report.packs_deleted = swept.packs_deleted;
    report.packs_rewritten = swept.packs_rewritten;
    report.bytes_before = swept.bytes_before;
    report.bytes_after = swept.bytes_after;
    DVOL_CHECK(db_->exec("DELETE FROM gc_marked"));
    return report;
}

}  // namespace dvol
