#include "repo/scan.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "base/fs.h"
#include "base/xattr.h"
#include "meta/db.h"
#include "repo/content.h"
#include "repo/readers.h"
#include "store/hash.h"

namespace dvol {

namespace {
// Entries probed at a time (Scanner::probe): enough to share out between two threads, few
// enough that a huge directory's probes stay small.
constexpr size_t kProbeWindow = 256;
// Entries listed and lstat'ed ahead of the scan (WalkAhead): far enough that the walk rarely
// waits for the scan or the scan for the walk, near enough that their lstats are recent.
constexpr size_t kWalkAheadEntries = 4096;
}  // namespace

void fill_metadata(TreeEntry& e, const struct stat& st) {
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

Result<ObjectId> Scanner::put_tree(const Tree& tree) {
    auto bytes = encode_tree(tree);
    ObjectId id = sha256(bytes);
    if (store_objects_) {
        // Never store a tree that would not decode (a stat-cache row that disagrees with its
        // file would give one): the commit fails instead of naming it.
        if (auto back = decode_tree(bytes); !back)
            return make_error(Errc::corrupt, fmt::format("refusing to store a tree that does not decode ({}); run dvol fsck", back.error().message));
        // Nor one naming content the store lacks: a damaged stat-cache row could. Only a new
        // tree can (an unchanged directory's tree is stored already), so a commit with little
        // changed looks up little.
        DVOL_TRY(bool known, store_.has(id));
        if (!known) {
            for (const auto& e : tree.entries) {
                if (e.type != EntryType::file) continue;
                DVOL_TRY(bool present, content_present(e.content));
                if (!present)
                    return make_error(Errc::corrupt, fmt::format("the stat cache row of {} names content the store does not hold; nothing was "
                                                                 "committed: run 'dvol fsck --repair' to rebuild the stat cache, then commit again",
                                                                 e.name));
            }
        }
        DVOL_CHECK(store_.put(id, bytes));
    } else {
        DVOL_TRY(bool known, store_.has(id));
        if (!known) overlay_.emplace(id, tree);
    }
    return id;
}

Result<bool> Scanner::content_present(const FileContent& c) {
    if (c.indirect) {
        for (const auto& l : c.lists) {
            if (fresh_.contains(l.id)) continue;
            DVOL_TRY(bool held, store_.has(l.id));
            if (!held) return false;
        }
        return true;
    }
    for (const auto& x : c.extents) {
        if (x.hole || fresh_.contains(x.id)) continue;
        DVOL_TRY(bool held, store_.has(x.id));
        if (!held) return false;
    }
    return true;
}

Result<ObjectId> Scanner::scan(const std::string& live_dir) {
    // One read transaction for the lookups of every file and tree, not one each: each would
    // take and drop SQLite's shared lock (docs/DECISIONS.md; figures in bench/RESULTS.md).
    DVOL_TRY(auto reads, meta::Db::ReadScope::begin(cache_.db()));
    // The stat-cache rows in path order, a batch per query, beside the walk (stat_cache.h).
    cache_.read_ahead();
    DVOL_TRY(dir_rows_, cache_.dir_rows());
    dir_rows_seen_.clear();
    scan_ns_ = now_ns();
    // The live directory itself is never reached through a symlink: that would commit another
    // directory's data.
    DVOL_TRY(UniqueFd fd, open_dir_nofollow(live_dir));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return errno_error("stat", live_dir);
    TreeEntry root;
    root.name = std::string(kRootEntryName);
    root.type = EntryType::dir;
    fill_metadata(root, st);
    DVOL_TRY(root.xattrs, read_xattrs(fd.get(), ".", live_dir));
    DVOL_TRY(root.subtree, scan_tree(fd.get(), live_dir));
    if (store_objects_) DVOL_CHECK(workers_.finish(store_));
    Tree top;
    top.entries.push_back(std::move(root));
    return put_tree(top);
}

std::optional<Scanner::DirPrint> Scanner::dir_print(const WalkAhead::Dir& d) {
    DirPrint p;
    std::vector<std::byte> bytes;
    auto put = [&](int64_t v) {
        uint64_t u = static_cast<uint64_t>(v);
        for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::byte>(u >> (8 * i)));
    };
    bytes.reserve(16 + d.names.size() * 96);
    for (char c : std::string_view("dvol dir 1")) bytes.push_back(static_cast<std::byte>(c));
    for (size_t i = 0; i < d.names.size(); ++i) {
        if (d.errnos[i] != 0) return std::nullopt;
        const struct stat& st = d.stats[i];
        if (S_ISSOCK(st.st_mode) || (S_ISREG(st.st_mode) && st.st_nlink > 1)) return std::nullopt;
        if (S_ISREG(st.st_mode)) p.files++;
        for (char c : d.names[i]) bytes.push_back(static_cast<std::byte>(c));
        bytes.push_back(std::byte{0});
        StatKey k = stat_key(st);
        put(k.mode), put(k.uid), put(k.gid), put(static_cast<int64_t>(k.size)), put(k.mtime_ns), put(k.ctime_ns);
        put(static_cast<int64_t>(k.ino)), put(static_cast<int64_t>(st.st_rdev)), put(static_cast<int64_t>(st.st_dev));
        put(static_cast<int64_t>(st.st_nlink));
        p.newest = std::max({p.newest, k.mtime_ns, k.ctime_ns});
    }
    p.own = sha256(bytes);
    return p;
}

ObjectId Scanner::full_print(const ObjectId& own, const std::vector<ObjectId>& subtrees) {
    std::vector<std::byte> bytes(own.as_span().begin(), own.as_span().end());
    for (const auto& id : subtrees) bytes.insert(bytes.end(), id.as_span().begin(), id.as_span().end());
    return sha256(bytes);
}

Result<std::optional<FileContent>> Scanner::lookup(const std::string& path, const StatKey& key, std::optional<FileContent>* stale,
                                                  std::optional<Xattrs>* xattrs) {
    if (skipped_rows_) {
        cache_.seek(path);
        skipped_rows_ = false;
    }
    return cache_.lookup(path, key, stale, xattrs);
}

Result<ObjectId> Scanner::scan_tree(int root_fd, const std::string& live_dir) {
    // Depth-first, each directory's entries sorted by name bytes and each directory entered as
    // it comes (the order hard links are resolved in, docs/FORMAT.md), a directory's tree stored
    // once all its entries are. The stack of directories is a vector of frames, not the C
    // stack, so a tree of any depth is scanned (a container can make one 100,000 levels deep),
    // and DirStack keeps a bounded number of directories open.
    DVOL_TRY(DirStack dirs, DirStack::begin(root_fd, live_dir, false));
    struct Frame {
        std::vector<std::string> names;
        size_t next = 0;
        Tree tree;
        size_t path_len = 0;  // of `path` while this directory is scanned
        // Probes of names[probed_from, probed_from + probes.size()): a window at a time, so a
        // directory of a million entries holds a few hundred probes, not a million.
        std::vector<Probe> probes;
        size_t probed_from = 0;
        // The walk ahead's lstats of `names`, when it listed this directory.
        std::optional<WalkAhead::Dir> ahead;
        // The directory cache: what the entries say (none: no row for this directory), and
        // whether everything scanned in it held still (else its row is not kept).
        std::optional<DirPrint> print;
        bool steady = true;
        // Its row, when its entries are those the row saw: then only its subdirectories are
        // scanned (their trees in `subtrees`), the rest comes from the row's tree.
        const StatCache::DirRow* row = nullptr;
        std::vector<ObjectId> subtrees;
        std::vector<std::string> gone;  // (row) subdirectories that went before they were entered
    };
    // The lists and lstats of the directories to come, made on another thread meanwhile.
    WalkAhead ahead(root_fd, live_dir, kWalkAheadEntries);
    auto listing = [&](int fd, const std::string& rel, Frame& f) -> Status {
        f.path_len = rel.size();
        if (auto d = ahead.take(rel)) {
            f.print = dir_print(*d);
            f.names = std::move(d->names);  // (the listing keeps only its lstats)
            f.ahead = std::move(d);
            if (auto it = dir_rows_.find(rel); f.print && it != dir_rows_.end() && it->second.own == f.print->own &&
                                                f.print->newest + kRacyWindowNs <= it->second.scan_ns) {
                // (A tree gc has deleted since is no answer: then the entries are scanned.)
                DVOL_TRY(bool held, store_.has(it->second.tree));
                if (held) {
                    f.row = &it->second;
                    stats_.files += f.print->files;
                    if (progress_ && f.print->files > 0) progress_(Progress{stats_.files, stats_.bytes_read});
                    skipped_rows_ = skipped_rows_ || f.print->files > 0;
                    return {};
                }
            }
        } else {
            DVOL_TRY(f.names, list_dir(fd, rel.empty() ? live_dir : rel));
            std::sort(f.names.begin(), f.names.end());
        }
        f.tree.entries.reserve(f.names.size());
        return {};
    };
    // A directory's tree once all its entries are scanned, and its row for the cache.
    auto finish = [&](Frame& f, const std::string& rel) -> Result<ObjectId> {
        ObjectId id;
        std::optional<StatCache::DirRow> row;
        if (f.row) {
            ObjectId full = full_print(f.row->own, f.subtrees);
            if (full == f.row->full && f.gone.empty()) {
                id = f.row->tree;
            } else {
                // A subdirectory changed: the row's tree with the subdirectories' new trees.
                DVOL_TRY(Tree t, load_tree(store_, nullptr, f.row->tree));
                size_t next = 0;
                std::vector<TreeEntry> kept;
                kept.reserve(t.entries.size());
                for (auto& e : t.entries) {
                    if (e.type == EntryType::dir) {
                        if (std::find(f.gone.begin(), f.gone.end(), e.name) != f.gone.end()) continue;
                        if (next == f.subtrees.size())
                            return make_error(Errc::corrupt, fmt::format("the directory cache's tree of {} does not match it; run dvol fsck --repair",
                                                                         rel.empty() ? "/" : rel));
                        e.subtree = f.subtrees[next++];
                    }
                    kept.push_back(std::move(e));
                }
                t.entries = std::move(kept);
                DVOL_TRY(id, put_tree(t));
            }
            if (f.gone.empty()) row = StatCache::DirRow{f.row->own, full, id, f.row->scan_ns};
        } else {
            DVOL_TRY(id, put_tree(f.tree));
            if (f.print && f.steady && f.print->newest + kRacyWindowNs <= scan_ns_) {
                std::vector<ObjectId> subtrees;
                for (const auto& e : f.tree.entries)
                    if (e.type == EntryType::dir) subtrees.push_back(e.subtree);
                row = StatCache::DirRow{f.print->own, full_print(f.print->own, subtrees), id, scan_ns_};
            }
        }
        if (store_objects_ && row) dir_rows_seen_.emplace_back(rel, *row);
        return id;
    };
    std::string path;  // of the entry at hand, relative to the live directory
    std::vector<Frame> frames;
    // Enters the subdirectory `name` of frame f (`path` is already its path) and lists it as a
    // new frame; false, with `path` back to f's, when it went since it was stat'ed.
    auto descend = [&](Frame& f, const std::string& name) -> Result<bool> {
        auto entered = dirs.enter(name, path);
        if (!entered && entered.error().code == Errc::not_found) {
            path.resize(f.path_len);
            return false;
        }
        DVOL_CHECK(std::move(entered));
        Frame sub;
        DVOL_CHECK(listing(dirs.fd(), path, sub));
        frames.push_back(std::move(sub));  // (f is not used after this)
        return true;
    };
    {
        Frame top;
        DVOL_CHECK(listing(root_fd, path, top));
        frames.push_back(std::move(top));
    }
    for (;;) {
        Frame& f = frames.back();
        if (f.row) {
            // Taken from its row: only the subdirectories are entered.
            while (f.next < f.names.size() && !S_ISDIR(f.ahead->stats[f.next].st_mode)) ++f.next;
        }
        if (f.next == f.names.size()) {
            DVOL_TRY(ObjectId id, finish(f, path));
            frames.pop_back();
            if (frames.empty()) return id;
            DVOL_CHECK(dirs.leave(path));
            path.resize(frames.back().path_len);
            if (frames.back().row) {
                frames.back().subtrees.push_back(id);
            } else {
                frames.back().tree.entries.back().subtree = id;
            }
            continue;
        }
        if (f.row) {
            const std::string& name = f.names[f.next++];
            if (!path.empty()) path += '/';
            path += name;
            DVOL_TRY(bool entered, descend(f, name));
            if (!entered) f.gone.push_back(name);  // left out, as a scan of its entries would
            continue;
        }
        if (f.next == f.probed_from + f.probes.size()) {
            f.probed_from = f.next;
            DVOL_CHECK(probe(dirs.fd(), path, f.names, f.next, std::min(kProbeWindow, f.names.size() - f.next), f.ahead ? &*f.ahead : nullptr,
                             f.probes));
        }
        Probe& pr = f.probes[f.next - f.probed_from];
        const std::string& name = f.names[f.next++];
        if (!path.empty()) path += '/';
        path += name;
        TreeEntry entry;
        unstable_ = false;
        DVOL_TRY(Visit visit, scan_entry(dirs.fd(), name, path, pr, entry));
        if (unstable_) f.steady = false;
        if (visit != Visit::skip) f.tree.entries.push_back(std::move(entry));
        if (visit != Visit::descend) {
            path.resize(f.path_len);
            continue;
        }
        // Probed a while ago (a window of entries is stat'ed at once): gone since, it is left
        // out as one gone before its stat would be.
        DVOL_TRY(bool entered, descend(f, name));
        if (!entered) {
            f.tree.entries.pop_back();
            f.steady = false;
        }
    }
}

Status Scanner::probe(int dirfd, const std::string& dir_path, const std::vector<std::string>& names, size_t first, size_t count,
                      const WalkAhead::Dir* ahead, std::vector<Probe>& out) {
    out.resize(count);
    for (auto& p : out) {
        p.xattrs.clear();
        p.xattrs_read = p.xattrs_cached = p.looked_up = false;
        p.cached.reset();
        p.previous.reset();
    }
    if (ahead) {
        for (size_t i = 0; i < count; ++i) {
            out[i].stat_errno = ahead->errnos[first + i];
            out[i].st = ahead->stats[first + i];
        }
    } else {
        // Each index touches only its own probe; errors are kept as errno (or, for xattrs, redone
        // on the scanning thread, which builds the message with the entry's path).
        workers_.threads().run(count, [&](size_t i, int) {
            Probe& p = out[i];
            p.stat_errno = ::fstatat(dirfd, names[first + i].c_str(), &p.st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
        });
    }
    // The rows of the regular files, in the walk's order (the cache reads them ahead), up to
    // the first directory: the walk enters it before the entries after it, and their rows come
    // after its rows (scan_entry looks those up, and their xattrs are listed). A row's xattrs
    // are taken after this lstat, as the listing below would be.
    size_t to_list = 0;
    bool past_dir = false;
    std::string rel;
    for (size_t i = 0; i < count; ++i) {
        Probe& p = out[i];
        if (p.stat_errno != 0 || S_ISSOCK(p.st.st_mode)) continue;
        if (S_ISDIR(p.st.st_mode)) past_dir = true;
        if (S_ISREG(p.st.st_mode) && !past_dir) {
            rel = dir_path.empty() ? names[first + i] : dir_path + "/" + names[first + i];
            std::optional<Xattrs> x;
            DVOL_TRY(p.cached, lookup(rel, stat_key(p.st), &p.previous, &x));
            p.looked_up = true;
            if (x) {
                p.xattrs = std::move(*x);
                p.xattrs_read = p.xattrs_cached = true;
                continue;
            }
        }
        ++to_list;
    }
    if (to_list == 0) return {};
    workers_.threads().run(count, [&](size_t i, int) {
        Probe& p = out[i];
        if (p.stat_errno != 0 || S_ISSOCK(p.st.st_mode) || p.xattrs_cached) return;
        const std::string& name = names[first + i];
        auto x = read_xattrs(dirfd, name, name);
        if (!x) return;
        p.xattrs = std::move(*x);
        p.xattrs_read = true;
    });
    return {};
}

Result<Scanner::Visit> Scanner::scan_entry(int dirfd, const std::string& name, const std::string& path, Probe& pr, TreeEntry& e) {
    if (pr.stat_errno == ENOENT) {  // vanished while scanning
        unstable_ = true;
        return Visit::skip;
    }
    if (pr.stat_errno != 0) return errno_error("stat", path, pr.stat_errno);
    const struct stat& st = pr.st;
    e.name = name;
    fill_metadata(e, st);
    if (!S_ISSOCK(st.st_mode)) {
        if (pr.xattrs_read) {
            e.xattrs = std::move(pr.xattrs);
        } else {
            DVOL_TRY(e.xattrs, read_xattrs(dirfd, name, path));
        }
        size_t bytes = 0;
        for (const auto& [k, v] : e.xattrs) {
            if (k.size() > kMaxNameLength || v.size() > kMaxXattrValue)
                return make_error(Errc::unsupported, fmt::format("{} has an extended attribute larger than dvol stores ({})", path, k));
            bytes += k.size() + v.size();
        }
        if (e.xattrs.size() > kMaxXattrs || bytes > 16 * kMaxXattrValue)
            return make_error(Errc::unsupported, fmt::format("{} has more extended attributes than dvol stores", path));
    }
    if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
        auto key = std::make_pair(static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino));
        auto [it, first] = links_.emplace(key, path);
        if (!first) {
            e.type = EntryType::hardlink;
            e.target = it->second;
            return Visit::keep;
        }
    }
    switch (st.st_mode & S_IFMT) {
        case S_IFREG: {
            e.type = EntryType::file;
            e.size = static_cast<uint64_t>(st.st_size);
            stats_.files++;
            if (progress_ && stats_.files % 256 == 0) progress_(Progress{stats_.files, stats_.bytes_read});
            StatKey key = stat_key(st);
            if (!pr.looked_up) {
                // After a directory in its probe window: its xattrs were listed; the row only
                // tells whether it knew them too (then it needs no refresh below).
                std::optional<Xattrs> x;
                DVOL_TRY(pr.cached, lookup(path, key, &pr.previous, &x));
                pr.xattrs_cached = x.has_value();
            }
            std::optional<FileContent>& cached = pr.cached;
            // A cached chunk list that does not add up to the file's size is damaged: read the
            // file instead of recording it.
            if (cached && content_length(*cached) != key.size) cached.reset();
            if (cached) {
                e.content = std::move(*cached);
                // A row that did not give the xattrs gets them now, with this scan's time, so the
                // next scan need not list them (git refreshes its index the same way). They were
                // read after this lstat: a change since moved ctime, which the row then lacks.
                if (store_objects_ && !pr.xattrs_cached) pending_.push_back(PendingRow{path, key, scan_ns_, e.content, e.xattrs});
                return Visit::keep;
            }
            set_previous(pr.previous);
            auto opened = open_at(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY);
            if (!opened && opened.error().code == Errc::not_found) {  // deleted meanwhile
                unstable_ = true;
                return Visit::skip;
            }
            if (!opened) return make_error(opened.error().code, fmt::format("cannot read {}: {}", path, opened.error().message));
            UniqueFd fd = std::move(*opened);
            std::function<void(uint64_t)> on_read;
            if (progress_) {
                on_read = [this](uint64_t n) {
                    stats_.bytes_read += n;
                    progress_(Progress{stats_.files, stats_.bytes_read});
                };
            }
            uint64_t bytes_before = stats_.bytes_read;
            DVOL_TRY(e.content, chunk_file(fd.get(), path, chunker_, store_objects_ ? &store_ : nullptr, on_read, &workers_, &previous_));
            stats_.bytes_read = bytes_before;
            struct stat after;
            if (::fstat(fd.get(), &after) != 0) return errno_error("stat", path);
            stats_.files_read++;
            // What we read is what the file held, whatever its size said before.
            if (store_objects_) {
                // Stored by this scan (perhaps still queued behind): present by construction.
                for (const auto& l : e.content.lists) fresh_.insert(l.id);
                for (const auto& x : e.content.extents)
                    if (!x.hole) fresh_.insert(x.id);
            }
            uint64_t total = content_length(e.content);
            e.size = total;
            stats_.bytes_read += total;
            fill_metadata(e, after);
            // A file that changed while we read it is recorded as never seen, so the next scan
            // reads it again.
            StatKey after_key = stat_key(after);
            int64_t seen = (after_key == key && after_key.size == total) ? scan_ns_ : 0;
            if (seen == 0) unstable_ = true;
            if (store_objects_) pending_.push_back(PendingRow{path, after_key, seen, e.content, e.xattrs});
            return Visit::keep;
        }
        case S_IFDIR: {
            e.type = EntryType::dir;  // its subtree: scan_tree enters it next
            return Visit::descend;
        }
        case S_IFLNK: {
            e.type = EntryType::symlink;
            std::string target(static_cast<size_t>(std::max<off_t>(st.st_size, 0)) + 1, '\0');
            for (;;) {
                ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
                if (n < 0 && errno == ENOENT) {  // removed since it was probed
                    unstable_ = true;
                    return Visit::skip;
                }
                if (n < 0) return errno_error("read symlink", path);
                if (static_cast<size_t>(n) < target.size()) {
                    target.resize(static_cast<size_t>(n));
                    break;
                }
                target.resize(target.size() * 2);
            }
            e.target = std::move(target);
            e.size = e.target.size();
            return Visit::keep;
        }
        case S_IFIFO: e.type = EntryType::fifo; return Visit::keep;
        case S_IFCHR:
        case S_IFBLK:
            e.type = S_ISCHR(st.st_mode) ? EntryType::chardev : EntryType::blockdev;
            e.rdev = st.st_rdev;
            return Visit::keep;
        default:
            if (warn_) warn_(fmt::format("skipping {}: sockets cannot be committed", path));
            return Visit::skip;
    }
}

void Scanner::set_previous(const std::optional<FileContent>& previous) {
    previous_.ends.clear();
    previous_.ids.clear();
    previous_.source = &store_;
    if (!previous) return;
    // The ends and chunks of the file's previous extents. They only steer where chunks are
    // cut and which are compared rather than hashed, so an extent list that cannot be read
    // costs the hints, not the commit: the scan goes on without them.
    ExtentCursor cur(store_, *previous);
    for (;;) {
        auto x = cur.next();
        if (!x) {
            previous_.ends.clear();
            previous_.ids.clear();
            return;
        }
        if (!*x) return;
        previous_.ends.push_back(cur.offset() + (*x)->length);
        previous_.ids.push_back((*x)->hole ? ObjectId{} : (*x)->id);
    }
}

Status Scanner::save_cache() {
    for (const auto& row : pending_) DVOL_CHECK(cache_.store(row.path, row.key, row.scan_ns, row.content, &row.xattrs));
    pending_.clear();
    // The directory rows: those that changed, and the rows of directories gone or not kept.
    std::vector<std::pair<std::string, StatCache::DirRow>> put;
    for (auto& [path, row] : dir_rows_seen_) {
        auto it = dir_rows_.find(path);
        if (it != dir_rows_.end()) {
            bool same = it->second == row;
            dir_rows_.erase(it);
            if (same) continue;
        }
        put.emplace_back(std::move(path), row);
    }
    std::vector<std::string> drop;
    for (auto& [path, row] : dir_rows_) drop.push_back(path);
    dir_rows_.clear();
    dir_rows_seen_.clear();
    return cache_.save_dir_rows(put, drop);
}

}  // namespace dvol
