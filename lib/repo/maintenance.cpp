// Repository maintenance: the reflog, fsck and gc.
#include <fcntl.h>
#include <sys/stat.h>

#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>

#include <fmt/format.h>

#include "base/fs.h"
#include "base/xattr.h"
#include "meta/db.h"
#include "meta/tree_facts.h"
#include "meta/mark_set.h"
#include "meta/schema.h"
#include "repo/layer_tree.h"
#include "repo/locks.h"
#include "repo/readers.h"
#include "repo/repository.h"
#include "repo/stat_cache.h"
#include "repo/walk.h"
#include "store/hash.h"
#include "store/local_first.h"
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
    Checker(ObjectSource& s, std::vector<FsckProblem>& p) : source(s), problems(p) {}
    ObjectSource& source;
    std::vector<FsckProblem>& problems;
    // A lazy volume's walk (its trees and lists kept in its cache, then the packs): a chunk not
    // here is on its remote, which fsck does not read; those here are checked as any.
    bool chunks_on_remote = false;
    std::string where = "the store";
    std::unordered_map<ObjectId, size_t, ObjectIdHash> bad;  // object -> problem index
    // What lies below each tree checked: one item per entry with a problem in it or below it.
    // Paths are put together only when a commit is reported, from its top down, so a deep tree
    // costs memory in proportion to its entries and not to the sum of its path lengths.
    struct Item {
        std::string name;                 // the entry's name ("": the tree itself)
        std::optional<size_t> problem;    // a problem at the entry (or the tree itself)
        std::optional<ObjectId> subtree;  // or: the entry's subtree, which has items of its own
        std::optional<std::string> link;  // or: a hard link's target, checked per commit (it is a path from the live directory)
    };
    std::unordered_map<ObjectId, std::vector<Item>, ObjectIdHash> below;
    // What fsck knows of an extent list once checked: its problems, and what its references
    // are checked against.
    struct ListInfo {
        std::vector<size_t> problems;
        bool readable = false;
        uint64_t count = 0, bytes = 0;
        bool first_hole = false, last_hole = false;
    };

    std::unordered_map<ObjectId, ListInfo, ObjectIdHash> list_below;  // extent list -> what is known of it
    std::map<std::pair<ObjectId, uint64_t>, size_t> bad_length;        // (chunk, length an extent says) -> problem
    std::map<std::tuple<ObjectId, uint64_t, uint64_t>, size_t> bad_ref;  // (list, count, bytes) -> problem
    std::map<std::pair<ObjectId, std::string>, size_t> bad_link;        // (live directory's tree, link path) -> problem
    std::unordered_map<ObjectId, std::vector<std::pair<size_t, std::string>>, ObjectIdHash> links_checked;  // live directory's tree -> link problems
    std::vector<std::byte> buf;

    size_t problem(const ObjectId& id, const std::string& kind, const std::string& message) {
        auto [it, fresh] = bad.emplace(id, problems.size());
        if (fresh) problems.push_back(FsckProblem{kind, id.hex(), message, {}});
        return it->second;
    }

    // Problems for a chunk: corrupt ones were found by the object pass; absent ones here.
    Result<std::optional<size_t>> check_leaf(const ObjectId& id) {
        if (auto it = bad.find(id); it != bad.end()) return std::optional<size_t>(it->second);
        DVOL_TRY(bool present, source.has(id));
        if (!present) return std::optional<size_t>(problem(id, "missing-object", fmt::format("object {} is referenced but not in {}", id.hex(), where)));
        return std::optional<size_t>();
    }

    // A chunk at an extent: present, and exactly as long as the extent says.
    Result<std::optional<size_t>> check_chunk(const ObjectId& id, uint64_t length) {
        if (auto it = bad.find(id); it != bad.end()) return std::optional<size_t>(it->second);
        DVOL_TRY(auto len, source.size_of(id));
        if (!len && chunks_on_remote) return std::optional<size_t>();
        if (!len) return std::optional<size_t>(problem(id, "missing-object", fmt::format("object {} is referenced but not in {}", id.hex(), where)));
        if (*len == length) return std::optional<size_t>();
        auto [it, fresh] = bad_length.emplace(std::make_pair(id, length), problems.size());
        if (fresh)
            problems.push_back(FsckProblem{"bad-extent", id.hex(),
                                           fmt::format("an extent says chunk {} holds {} bytes; it holds {}", id.hex(), length, *len), {}});
        return std::optional<size_t>(it->second);
    }

    Result<std::vector<size_t>> check_content(const FileContent& c) {
        std::vector<size_t> out;
        auto extents = [&](const std::vector<Extent>& xs, std::vector<size_t>& into) -> Status {
            for (const auto& x : xs) {
                if (x.hole) continue;
                DVOL_TRY(auto p, check_chunk(x.id, x.length));
                if (p) into.push_back(*p);
            }
            return {};
        };
        if (!c.indirect) {
            DVOL_CHECK(extents(c.extents, out));
            return out;
        }
        bool last_hole = false;
        for (const auto& ref : c.lists) {
            auto it = list_below.find(ref.id);
            if (it == list_below.end()) {
                ListInfo info;
                DVOL_TRY(auto p, check_leaf(ref.id));
                if (p) {
                    info.problems.push_back(*p);
                } else {
                    auto bytes = source.get(ref.id);
                    auto list = bytes ? decode_extent_list(*bytes) : Result<std::vector<Extent>>(bytes.error());
                    if (!list) {
                        info.problems.push_back(problem(ref.id, "corrupt-object", fmt::format("extent list {}: {}", ref.id.hex(), list.error().message)));
                    } else {
                        DVOL_CHECK(extents(*list, info.problems));
                        info.readable = true;
                        info.count = list->size();
                        for (const auto& x : *list) info.bytes += x.length;
                        info.first_hole = list->front().hole;
                        info.last_hole = list->back().hole;
                    }
                }
                it = list_below.emplace(ref.id, std::move(info)).first;
            }
            const ListInfo& info = it->second;
            out.insert(out.end(), info.problems.begin(), info.problems.end());
            if (!info.readable) {
                last_hole = false;
                continue;
            }
            // What only the reference shows: the list's count and the bytes it covers, and no
            // hole after a hole across lists (FORMAT.md, "File content and extents").
            std::string why;
            if (info.count != ref.count) why = fmt::format("has {} extents where its file says {}", info.count, ref.count);
            else if (info.bytes != ref.length) why = fmt::format("covers {} bytes where its file says {}", info.bytes, ref.length);
            else if (last_hole && info.first_hole) why = "starts with a hole after a hole";
            if (!why.empty()) {
                auto [bit, fresh] = bad_ref.emplace(std::make_tuple(ref.id, ref.count, ref.length), problems.size());
                if (fresh) problems.push_back(FsckProblem{"corrupt-object", ref.id.hex(), fmt::format("extent list {} {}", ref.id.hex(), why), {}});
                out.push_back(bit->second);
            }
            last_hole = info.last_hole;
        }
        return out;
    }

    // Checks tree `root` and everything below it (unless done before), depth-first with a stack
    // of frames rather than the C stack: any depth.
    Status check_tree(const ObjectId& root) {
        struct Frame {
            ObjectId id;
            Tree tree;
            size_t next = 0;
            std::vector<Item> items;
        };
        std::vector<Frame> frames;
        // Starts on tree `id`: a frame when it is to be walked, its items at once when it cannot
        // be read. False when it was walked before.
        auto open = [&](const ObjectId& id) -> Result<bool> {
            if (below.contains(id)) return false;
            DVOL_TRY(auto leaf, check_leaf(id));
            if (leaf) {
                below[id] = {Item{"", leaf, {}, {}}};
                return true;
            }
            auto bytes = source.get(id);
            auto tree = bytes ? decode_tree(*bytes) : Result<Tree>(bytes.error());
            if (!tree) {
                below[id] = {Item{"", problem(id, "corrupt-object", fmt::format("tree {}: {}", id.hex(), tree.error().message)), {}, {}}};
                return true;
            }
            frames.push_back(Frame{id, std::move(*tree), 0, {}});
            return true;
        };
        DVOL_CHECK(open(root));
        while (!frames.empty()) {
            Frame& f = frames.back();
            if (f.next == f.tree.entries.size()) {
                ObjectId id = f.id;
                below[id] = std::move(f.items);
                frames.pop_back();
                continue;
            }
            const TreeEntry& e = f.tree.entries[f.next];
            if (e.type == EntryType::dir) {
                if (!below.contains(e.subtree)) {
                    ObjectId sub = e.subtree;  // open() may move the frame
                    DVOL_CHECK(open(sub));
                    continue;  // back to this entry once its subtree is done
                }
                if (!below[e.subtree].empty()) f.items.push_back(Item{e.name, {}, e.subtree, {}});
            } else if (e.type == EntryType::file) {
                DVOL_TRY(auto found, check_content(e.content));
                for (size_t p : found) f.items.push_back(Item{e.name, p, {}, {}});
            } else if (e.type == EntryType::hardlink) {
                f.items.push_back(Item{e.name, {}, {}, e.target});
            }
            f.next++;
        }
        return {};
    }

    // The (problem, path) pairs below tree `id` (checked), with `path` the tree's own path.
    // With `links`, the hard links below it go there as (path, target).
    std::vector<std::pair<size_t, std::string>> expand(const ObjectId& id, const std::string& path,
                                                       std::vector<std::pair<std::string, std::string>>* links = nullptr) {
        std::vector<std::pair<size_t, std::string>> out;
        struct Frame {
            const std::vector<Item>* items;
            size_t next = 0;
            size_t path_len = 0;
        };
        std::string cur = path;
        std::vector<Frame> frames{Frame{&below[id], 0, cur.size()}};
        while (!frames.empty()) {
            Frame& f = frames.back();
            if (f.next == f.items->size()) {
                frames.pop_back();
                continue;
            }
            const Item& item = (*f.items)[f.next++];
            cur.resize(f.path_len);
            if (!item.name.empty()) {
                if (!cur.empty()) cur += '/';
                cur += item.name;
            }
            if (item.problem) out.emplace_back(*item.problem, cur);
            if (item.link && links) links->emplace_back(cur, *item.link);
            if (item.subtree) frames.push_back(Frame{&below[*item.subtree], 0, cur.size()});
        }
        return out;
    }

    // The hard links of live directory tree `root`: each names a file that comes before it
    // (FORMAT.md, "Trees"). Checked once per tree.
    Result<std::vector<std::pair<size_t, std::string>>> check_links(const ObjectId& root, const std::vector<std::pair<std::string, std::string>>& links) {
        std::vector<std::pair<size_t, std::string>> out;
        if (links.empty()) return out;
        if (auto it = links_checked.find(root); it != links_checked.end()) return it->second;
        TreePaths paths(source, root);
        for (const auto& [path, target] : links) {
            DVOL_TRY(auto why, hardlink_problem(paths, path, target));
            if (!why) continue;
            auto [it, fresh] = bad_link.emplace(std::make_pair(root, path), problems.size());
            if (fresh) problems.push_back(FsckProblem{"bad-hardlink", root.hex(), fmt::format("tree {}: {}", root.hex(), *why), {}});
            out.emplace_back(it->second, path);
        }
        links_checked.emplace(root, out);
        return out;
    }

    // A commit's top tree: one entry, the live directory, whose subtree is checked.
    Result<std::vector<std::pair<size_t, std::string>>> check_top(const ObjectId& top) {
        DVOL_TRY(auto leaf, check_leaf(top));
        if (leaf) return std::vector<std::pair<size_t, std::string>>{{*leaf, ""}};
        auto bytes = source.get(top);
        auto tree = bytes ? decode_tree(*bytes) : Result<Tree>(bytes.error());
        if (!tree) return std::vector<std::pair<size_t, std::string>>{
            {problem(top, "corrupt-object", fmt::format("tree {}: {}", top.hex(), tree.error().message)), ""}};
        std::vector<std::pair<size_t, std::string>> out;
        for (const auto& e : tree->entries) {
            if (e.type == EntryType::dir) {
                DVOL_CHECK(check_tree(e.subtree));
                std::vector<std::pair<std::string, std::string>> links;
                auto sub = expand(e.subtree, "", &links);
                out.insert(out.end(), sub.begin(), sub.end());
                DVOL_TRY(auto bad_links, check_links(e.subtree, links));
                out.insert(out.end(), bad_links.begin(), bad_links.end());
            } else if (e.type == EntryType::file) {
                DVOL_TRY(auto found, check_content(e.content));
                for (size_t p : found) out.emplace_back(p, "");
            }
        }
        return out;
    }
};


// Whether the file open at `fd` holds exactly `content` (each chunk re-hashed, each hole zeros).
Result<bool> file_holds(ObjectSource& source, int fd, const FileContent& content, const std::string& path) {
    ExtentCursor cur(source, content);
    std::vector<std::byte> buf;
    for (;;) {
        DVOL_TRY(auto x, cur.next());
        if (!x) return true;
        if (x->length > (64u << 20)) return false;
        buf.resize(static_cast<size_t>(x->length));
        if (!pread_exact(fd, buf, cur.offset(), path)) return false;
        if (x->hole) {
            for (auto b : buf)
                if (b != std::byte{0}) return false;
        } else if (sha256(buf) != x->id) {
            return false;
        }
    }
}

}  // namespace

Status Repository::check_stat_cache(FsckReport& report) {
    DVOL_TRY(auto volumes, refs_->volumes());
    for (const auto& vol : volumes) {
        DVOL_TRY(bool lazy, is_lazy(vol.id));
        if (lazy) continue;  // no stat cache: nothing is ever scanned or restored there
        DVOL_TRY(auto tip, head(vol));
        std::optional<TreePaths> paths;
        std::optional<ObjectId> root;
        if (tip) {
            auto tree = commit_tree(*tip);
            if (!tree) continue;  // reported by the commit walk
            auto top = load_tree(*store_, nullptr, *tree);
            const TreeEntry* r = top ? top->find(kRootEntryName) : nullptr;
            if (r && r->type == EntryType::dir) paths.emplace(*store_, r->subtree);
        }
        std::string live = paths_->live_dir(vol.name);
        auto dir = open_dir_nofollow(live);
        StatCache cache(*db_, vol.id);
        DVOL_CHECK(cache.for_each_row([&](const StatCache::Row& row) -> Status {
            auto content = decode_content(row.content);
            if (!content || row.scan_ns == 0) return {};  // readers ignore such rows
            // The xattrs a scan would take from the row without listing them (stat_cache.h).
            std::optional<Xattrs> xattrs;
            if (row.xattrs && row.key.ctime_ns + kRacyWindowNs <= row.scan_ns) {
                if (auto x = decode_xattrs(*row.xattrs)) xattrs = std::move(*x);  // readers ignore the others
            }
            // A row normally records what the branch's tree holds at its path.
            bool content_in_tree = false;
            if (paths) {
                auto e = paths->find(row.path);
                if (e && *e && (*e)->type == EntryType::file && (*e)->content == *content && (*e)->size == row.key.size) {
                    content_in_tree = true;
                    if (!xattrs || (*e)->xattrs == *xattrs) return {};
                }
            }
            // Otherwise (an interrupted reset leaves rows of files it did not reach) the row
            // must still tell the truth about its file, if the file is still the one it
            // describes: a commit would take the row's content for the file's without reading it.
            if (!dir) return {};
            auto fd = open_path_beneath(dir->get(), row.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, live + "/" + row.path);
            if (!fd) return {};
            struct stat st;
            if (::fstat(fd->get(), &st) != 0 || !S_ISREG(st.st_mode) || !(stat_key(st) == row.key)) return {};
            std::string why;
            if (!content_in_tree && content_length(*content) != row.key.size) {
                why = fmt::format("says {} bytes of content for a file of {}", content_length(*content), row.key.size);
            } else if (!content_in_tree) {
                auto holds = file_holds(*store_, fd->get(), *content, row.path);
                if (!holds) {
                    why = fmt::format("names content that cannot be read ({})", holds.error().message);
                } else if (!*holds) {
                    why = "names content the file does not hold";
                }
            }
            if (why.empty() && xattrs) {
                // Listed through the file's directory, reached as the file was.
                auto slash = row.path.rfind('/');
                std::string name = slash == std::string::npos ? row.path : row.path.substr(slash + 1);
                UniqueFd parent;
                int parent_fd = dir->get();
                if (slash != std::string::npos) {
                    auto p = open_path_beneath(dir->get(), row.path.substr(0, slash), O_RDONLY | O_DIRECTORY | O_NOFOLLOW, live + "/" + row.path);
                    if (!p) return {};
                    parent = std::move(*p);
                    parent_fd = parent.get();
                }
                auto have = read_xattrs(parent_fd, name, live + "/" + row.path);
                if (!have) {
                    why = fmt::format("records extended attributes that cannot be compared ({})", have.error().message);
                } else if (*have != *xattrs) {
                    why = "records extended attributes the file does not have";
                }
            }
            if (why.empty()) return {};
            report.problems.push_back(FsckProblem{"bad-stat-cache", vol.name,
                                                  fmt::format("the stat cache row of {} in volume {} {}: a commit would record it without "
                                                              "reading the file; run 'dvol fsck --repair' to rebuild the stat cache",
                                                              row.path, vol.name, why),
                                                  {}});
            return {};
        }));
    }
    return {};
}

Status Repository::check_database(FsckReport& report) {
    auto damage = meta::check_integrity(*db_);
    if (!damage) {
        report.problems.push_back(FsckProblem{"bad-database", "dvol.db",
                                              fmt::format("dvol.db cannot be checked ({}); dvol cannot rebuild it: restore the store from a backup",
                                                          damage.error().message),
                                              {}});
        return {};
    }
    // One problem per damaged table, with SQLite's first message about it.
    std::map<std::string, std::pair<std::string, size_t>> by_table;
    for (const auto& d : *damage) {
        auto& entry = by_table[d.table];
        if (entry.second++ == 0) entry.first = d.message;
    }
    for (const auto& [table, first] : by_table) {
        std::string what = table.empty() ? "dvol.db is damaged" : fmt::format("table {} of dvol.db is damaged", table);
        std::string fix = table == "stat_cache" ? "the stat cache can be dropped and rebuilt: run 'dvol fsck --repair'"
                                                : "dvol cannot rebuild it: restore the store from a backup";
        report.problems.push_back(FsckProblem{"bad-database", table.empty() ? "dvol.db" : table,
                                              fmt::format("{} (SQLite: {}{}); {}", what, first.first,
                                                          first.second > 1 ? fmt::format(", and {} more", first.second - 1) : "", fix),
                                              {}});
    }
    return {};
}


Result<FsckReport> Repository::fsck(const ProgressFn& progress, bool repair) {
    DVOL_TRY(auto lock, StoreLock::acquire(*paths_, false, wait_notice_));
    FsckReport report;
    if (repair) {
        DVOL_CHECK(meta::rebuild_stat_cache(*db_));
        report.repaired = true;
    }
    // The database first: what follows reads it.
    DVOL_CHECK(check_database(report));
    bool cache_damaged = false;
    for (const auto& p : report.problems) cache_damaged = cache_damaged || (p.kind == "bad-database" && p.object == "stat_cache");
    auto rest = fsck_objects(report, progress);
    if (rest && !cache_damaged) rest = check_stat_cache(report);
    if (!rest) {
        if (rest.error().code != Errc::corrupt) return std::move(rest).error();
        report.problems.push_back(FsckProblem{"bad-database", "dvol.db", fmt::format("fsck could not finish: {}", rest.error().message), {}});
    }
    return report;
}

Status Repository::fsck_objects(FsckReport& report, const ProgressFn& progress) {
    Checker check(*store_, report.problems);

    // Every object: re-read, decompress, re-hash, and its record's checksum.
    uint64_t bytes = 0;
    DVOL_CHECK(store_->for_each_object([&](const ObjectId& id, const std::string&) -> Status {
        report.objects++;
        auto st = store_->get_checked(id, check.buf);
        if (!st) check.problem(id, st.error().code == Errc::corrupt ? "corrupt-object" : "missing-object", st.error().message);
        bytes += check.buf.size();
        if (progress && report.objects % 64 == 0) progress(Progress{report.objects, bytes});
        return {};
    }));

    // Every commit of every volume, and what its tree reaches.
    DVOL_TRY(auto volumes, refs_->volumes());
    for (const auto& vol : volumes) {
        const std::string& vname = vol.name;
        DVOL_TRY(bool lazy, is_lazy(vol.id));
        // A lazy volume's trees and extent lists are kept in its cache, its own commits' chunks
        // in the packs, the rest on its remote.
        std::unique_ptr<ObjectSource> kept;
        std::unique_ptr<LocalFirst> lazy_source;
        std::unique_ptr<Checker> lazy_check;
        if (lazy) {
            kept = open_kept_objects(paths_->volume_dir(vname) + "/cache");
            lazy_source = std::make_unique<LocalFirst>(*store_, *kept);
            lazy_check = std::make_unique<Checker>(*lazy_source, report.problems);
            lazy_check->chunks_on_remote = true;
            lazy_check->where = fmt::format("the store or the cache of lazy volume {}", vname);
        }
        Checker& checker = lazy ? *lazy_check : check;
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
            DVOL_TRY(auto found, checker.check_top(decoded->tree));
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
    return {};
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
    std::map<int64_t, std::string> names;
    {
        DVOL_TRY(auto vols, refs_->volumes());
        for (const auto& vol : vols) names[vol.id] = vol.name;
    }
    DVOL_TRY(auto tips, refs_->tips());
    for (const auto& [vid, tip] : tips) {
        // A lazy volume's trees are in its cache, with the chunks read from its remote; the
        // chunks of its own commits (made from its write layer) are in the packs: its trees are
        // walked through its kept objects, and whatever chunk they name is marked.
        DVOL_TRY(bool lazy, is_lazy(vid));
        std::unique_ptr<ObjectSource> kept;
        if (lazy) kept = open_kept_objects(paths_->volume_dir(names[vid]) + "/cache");
        std::vector<ObjectId> todo{tip};
        while (!todo.empty()) {
            ObjectId cur = todo.back();
            todo.pop_back();
            if (!keep[vid].insert(cur).second) continue;
            auto c = load_commit(cur);
            if (!c) return make_error(c.error().code, fmt::format("cannot collect garbage: {}; run dvol fsck", c.error().message));
            DVOL_CHECK(walk_tree(lazy ? *kept : *store_, c->tree, "", walker, true));
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
        // Facts about trees about to be deleted go with them (a tree stored again later is
        // walked again when asked about).
        DVOL_CHECK(meta::TreeFacts(*db_).drop_unless(live));
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
