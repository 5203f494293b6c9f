// Repository maintenance: the reflog, fsck and gc.
#include <map>
#include <unordered_map>

#include <fmt/format.h>

#include "meta/db.h"
#include "meta/mark_set.h"
#include "repo/locks.h"
#include "repo/repository.h"
#include "repo/stat_cache.h"
#include "repo/walk.h"
#include "store/object_store.h"

namespace dvol {

Result<std::vector<ReflogEntry>> Repository::reflog(const std::string& volume) {
    DVOL_TRY(auto v, find_volume(volume));
    return refs_->reflog(v.id);
}

namespace {

// fsck's walk: which problems lie below each tree, memoised, so a tree shared by many commits is
// checked once.
struct Checker {
    ObjectSource& source;
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
        DVOL_TRY(bool present, source.has(id));
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
                auto bytes = source.get(ref.id);
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
            auto bytes = source.get(id);
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
    DVOL_TRY(auto lock, StoreLock::acquire(*paths_, false, wait_notice_));
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
    DVOL_TRY(auto volumes, refs_->volumes());
    for (const auto& vol : volumes) {
        const std::string& vname = vol.name;
        DVOL_TRY(auto commits, refs_->commits(vol.id));
        for (const auto& row : commits) {
            const ObjectId& cid = row.id;
            const auto& enc = row.encoded;
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
        DVOL_TRY(auto dangling, refs_->dangling_branches(vol.id));
        for (const auto& [name, tip] : dangling)
            report.problems.push_back(FsckProblem{"bad-branch", tip, fmt::format("branch {}/{} names commit {}, which is not in the store", vname, name, tip),
                                                  {FsckAffected{vname, tip, ""}}});
    }
    return report;
}

Result<GcReport> Repository::gc(const ProgressFn& progress) {
    DVOL_TRY(auto lock, StoreLock::acquire(*paths_, true, wait_notice_));
    DVOL_CHECK(prepare_write());
    GcReport report;

    // Mark: everything reachable from a branch of a volume.
    DVOL_TRY(auto marks, meta::MarkSet::begin(*db_));
    uint64_t marked = 0;
    std::optional<Error> unreadable;
    ObjectWalker walker;
    walker.visit = [&](const ObjectId& id, ObjectKind, const std::string&) -> Result<bool> {
        DVOL_TRY(bool fresh, marks.insert(id));
        if (fresh && progress && ++marked % 1024 == 0) progress(Progress{marked, 0});
        return fresh;
    };
    walker.unreadable = [&](const ObjectId& id, const std::string& path, const Error& e) {
        if (!unreadable) unreadable = make_error(Errc::corrupt, fmt::format("cannot collect garbage: object {} (at {}) cannot be read ({}); run dvol fsck",
                                                                            id.hex(), path.empty() ? "/" : path, e.message));
    };

    std::map<int64_t, ObjectIdSet> keep;  // volume -> reachable commits
    DVOL_TRY(auto tips, refs_->tips());
    for (const auto& [vid, tip] : tips) {
        std::vector<ObjectId> todo{tip};
        while (!todo.empty()) {
            ObjectId cur = todo.back();
            todo.pop_back();
            if (!keep[vid].insert(cur).second) continue;
            auto c = load_commit(cur);
            if (!c) return make_error(c.error().code, fmt::format("cannot collect garbage: {}; run dvol fsck", c.error().message));
            DVOL_CHECK(walk_tree(*store_, c->tree, "", walker, true));
            todo.insert(todo.end(), c->parents.begin(), c->parents.end());
        }
    }
    // Commits pinned by running processes (dvol mount) are roots too: their trees are kept
    // whether or not a branch still reaches them. Dead pins' files go.
    DVOL_TRY(auto pins, scan_pins(true));
    for (const auto& pin : pins) DVOL_CHECK(walk_tree(*store_, pin.tree, "", walker, true));
    report.pinned = pins.size();
    DVOL_CHECK(marks.end_marking());
    if (unreadable) return *unreadable;

    auto live = [&](const ObjectId& id) { return marks.contains(id); };

    // Before any object goes: drop unreachable commits, their reflog entries, and stat-cache rows
    // that name objects about to be deleted (a row must never outlive its chunks, or a later
    // commit would reuse content that is gone).
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        std::vector<std::pair<int64_t, ObjectId>> drop;
        DVOL_TRY(auto rows, refs_->commit_ids());
        for (const auto& [vid, id] : rows)
            if (!keep[vid].count(id)) drop.emplace_back(vid, id);
        DVOL_CHECK(refs_->drop_commits(drop));
        report.commits_removed = drop.size();
        DVOL_TRY(report.cache_rows_dropped, StatCache::drop_rows(*db_, [&](const FileContent& content) -> Result<bool> {
            if (!content.indirect) {
                for (const auto& x : content.extents) {
                    if (x.hole) continue;
                    DVOL_TRY(bool l, live(x.id));
                    if (!l) return false;
                }
                return true;
            }
            for (const auto& ref : content.lists) {
                DVOL_TRY(bool l, live(ref.id));
                if (!l) return false;
            }
            return true;
        }));
        DVOL_CHECK(txn.commit());
    }

    // Sweep.
    DVOL_TRY(auto swept, store_->collect(live));
    report.objects_removed = swept.objects_removed;
    report.packs_deleted = swept.packs_deleted;
    report.packs_rewritten = swept.packs_rewritten;
    report.bytes_before = swept.bytes_before;
    report.bytes_after = swept.bytes_after;
    return report;
}

}  // namespace dvol
