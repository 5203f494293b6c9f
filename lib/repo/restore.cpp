#include "repo/restore.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>

#include <fmt/format.h>

#include "base/big_buffer.h"
#include "base/xattr.h"
#include "meta/db.h"
#include "repo/content.h"
#include "repo/scan.h"

namespace dvol {

namespace {

EntryType type_of(const struct stat& st) {
    switch (st.st_mode & S_IFMT) {
        case S_IFREG: return EntryType::file;
        case S_IFDIR: return EntryType::dir;
        case S_IFLNK: return EntryType::symlink;
        case S_IFIFO: return EntryType::fifo;
        case S_IFCHR: return EntryType::chardev;
        case S_IFBLK: return EntryType::blockdev;
        default: return EntryType::hardlink;  // sockets: never a match, so replaced
    }
}

std::string join(const std::string& rel, const std::string& name) { return rel.empty() ? name : rel + "/" + name; }

timespec to_timespec(int64_t ns) {
    timespec ts;
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    if (ts.tv_nsec < 0) {
        ts.tv_nsec += 1'000'000'000;
        ts.tv_sec -= 1;
    }
    return ts;
}

}  // namespace

Status Restorer::restore(const std::string& live_dir, const ObjectId* top) {
    is_root_ = ::geteuid() == 0;
    // Never through a symlink: that would delete another directory's files and write there.
    DVOL_TRY(root_fd_, open_dir_nofollow(live_dir));
    // One read transaction for the many index and stat cache lookups (a restore of 100,000
    // small files spent a tenth of its time taking and dropping SQLite's locks per lookup).
    DVOL_TRY(auto reads, meta::Db::ReadScope::begin(cache_.db()));
    if (!top) return sync_tree(live_dir, Tree{});
    TreeEntry root;
    DVOL_TRY(Tree tree, load_root(*top, root));
    DVOL_CHECK(sync_tree(live_dir, std::move(tree)));
    static const std::string dot = ".", root_rel = ".";
    DVOL_TRY(bool unused, apply_metadata(root_fd_.get(), Where{root_fd_.get(), dot, root_rel}, root));
    (void)unused;
    return {};
}

Result<Tree> Restorer::load_root(const ObjectId& top, TreeEntry& root) {
    DVOL_TRY(Tree top_tree, load_tree(store_, nullptr, top));
    const TreeEntry* r = top_tree.find(kRootEntryName);
    if (top_tree.entries.size() != 1 || !r || r->type != EntryType::dir)
        return make_error(Errc::corrupt, fmt::format("tree {} is not a volume's top tree", top.hex()));
    root = *r;
    return load_tree(store_, nullptr, root.subtree);
}

Status Restorer::verify(const std::string& live_dir, const ObjectId* top) {
    DVOL_TRY(UniqueFd fd, open_dir_nofollow(live_dir));
    // A mount inside the live directory would have its files deleted or overwritten by the
    // restore (a bind mount of a directory outside, say): refuse before anything changes. The
    // live directory itself may be a mount (a file system of its own).
    DVOL_TRY(auto mounts, mounts_at_or_below(fd.get(), live_dir));
    for (const auto& m : mounts)
        if (!m.is_dir_itself)
            return make_error(Errc::busy, fmt::format("{} is a mount point ({}) inside the live directory {}; dvol does not remove or write "
                                                      "across a mount: unmount it first",
                                                      m.path, m.fs_type, live_dir));
    if (!top) return {};
    DVOL_TRY(auto reads, meta::Db::ReadScope::begin(cache_.db()));  // as in restore()
    TreeEntry root;
    DVOL_TRY(Tree tree, load_root(*top, root));
    TreePaths paths(store_, root.subtree);
    links_ = &paths;
    DVOL_CHECK(verify_tree(fd.get(), live_dir, std::move(tree)));
    links_ = nullptr;
    return verify_pending();
}

Status Restorer::verify_tree(int root_fd, const std::string& live_dir, Tree target) {
    // The target tree depth-first, beside what the live directory holds, with a stack of
    // frames (not the C stack): any depth. A frame's directory is open in `dirs` when the
    // live directory has it (then so do its parents).
    DVOL_TRY(DirStack dirs, DirStack::begin(root_fd, live_dir, true));
    struct Frame {
        Tree tree;
        size_t next = 0;
        size_t path_len = 0;
        bool on_disk = false;
        ObjectId tree_id;
    };
    std::vector<Frame> frames;
    frames.push_back(Frame{std::move(target), 0, 0, true, links_->root()});
    std::string path;
    while (!frames.empty()) {
        Frame& f = frames.back();
        path.resize(f.path_len);
        if (f.next == f.tree.entries.size()) {
            bool left = f.on_disk && frames.size() > 1;
            frames.pop_back();
            if (left) DVOL_CHECK(dirs.leave(path));
            continue;
        }
        const TreeEntry& want = f.tree.entries[f.next++];
        if (!path.empty()) path += '/';
        path += want.name;
        struct stat st;
        bool have = f.on_disk && ::fstatat(dirs.fd(), want.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (want.type == EntryType::dir) {
            Frame sub{{}, 0, path.size(), false, want.subtree};
            DVOL_TRY(sub.tree, load_tree(store_, nullptr, want.subtree));
            if (have && S_ISDIR(st.st_mode)) {
                auto entered = dirs.enter(want.name, path);
                if (!entered && entered.error().code == Errc::busy) return std::move(entered).error();  // a mount point
                sub.on_disk = entered.ok();
            }
            frames.push_back(std::move(sub));
        } else if (want.type == EntryType::file) {
            DVOL_CHECK(verify_file(path, want, have && S_ISREG(st.st_mode) ? &st : nullptr));
        } else if (want.type == EntryType::hardlink) {
            // The restore makes a link from its target, which must be a file made before it.
            DVOL_TRY(auto why, hardlink_problem(*links_, path, want.target));
            if (why) return make_error(Errc::corrupt, fmt::format("tree {}: {}", f.tree_id.hex(), *why));
        }
    }
    return {};
}

Status Restorer::verify_file(const std::string& rel, const TreeEntry& want, const struct stat* have) {
    std::optional<FileContent> known;
    if (have) {
        DVOL_TRY(known, cache_.lookup(rel, stat_key(*have)));
        if (known && *known == want.content) return {};
    }
    // Only the extents a restore would write: with the current content known, those that
    // differ from it; otherwise all of them.
    std::optional<ExtentCursor> old_cur;
    std::optional<Extent> o;
    if (known) {
        old_cur.emplace(store_, *known);
        DVOL_TRY(o, old_cur->next());
    }
    ExtentCursor cur(store_, want.content);
    for (;;) {
        DVOL_TRY(auto n, cur.next());
        if (!n) return {};
        if (n->hole) continue;
        // A chunk must be exactly as long as its extent says (the restore would write fewer
        // bytes, leaving zeros, or more). One index lookup gives the length and the record.
        ObjectStore::StoredRef ref;
        if (auto located = store_.locate_stored(n->id, ref); !located) {
            if (located.error().code == Errc::not_found)
                return make_error(Errc::not_found, fmt::format("{}: chunk {} is not in the store; run dvol fsck", rel, n->id.hex()));
            return std::move(located).error();
        }
        uint64_t len = ref.where.raw_len;
        if (len != n->length)
            return make_error(Errc::corrupt, fmt::format("{}: chunk {} holds {} bytes but its extent at offset {} says {}; run dvol fsck", rel,
                                                         n->id.hex(), len, cur.offset(), n->length));
        if (old_cur) {
            while (o && old_cur->offset() < cur.offset()) {
                DVOL_TRY(o, old_cur->next());
            }
            if (o && old_cur->offset() == cur.offset() && *o == *n) continue;
        }
        DVOL_CHECK(verify_chunk(ref));
    }
}

Status Restorer::verify_chunk(const ObjectStore::StoredRef& ref) {
    if (!verified_.insert(ref.id).second) return {};
    pending_.push_back(ref);
    pending_bytes_ += ref.where.stored_len;
    if (batch_full()) return verify_pending();
    return {};
}

Status Restorer::queue_record(const ObjectId& id) {
    // Only the index is read on this thread (the store is not thread-safe); reading the
    // record, decompressing and hashing are done in batches on two (run_batch).
    pending_.emplace_back();
    DVOL_CHECK(store_.locate_stored(id, pending_.back()));
    pending_bytes_ += pending_.back().where.stored_len;
    return {};
}

Status Restorer::run_batch(const std::function<Status(Chunk&)>& fn, bool verify_only) {
    std::vector<Status> results(pending_.size());
    // Each worker's buffers as large as the batch's largest record needs, at once and on huge
    // pages (growing chunk by chunk touched new memory each time: page faults).
    size_t record_max = 0, raw_max = 0;
    for (const auto& p : pending_) {
        record_max = std::max<size_t>(record_max, kRecordHeaderSize + p.where.stored_len);
        raw_max = std::max<size_t>(raw_max, p.where.raw_len);
    }
    for (int w = 0; w < 2; ++w) {
        reserve_huge(records_[w].record, record_max);
        reserve_huge(decode_bufs_[w], raw_max);
    }
    // Writes: the calling thread takes the batch's records from the front, the helper from the
    // back. A batch holds its files' chunks in order, so the two threads write two different
    // files whenever the batch has more than one: buffered writes to one file are serialised
    // by its inode's lock, where a waiting thread spins.
    std::mutex ends;
    size_t front = 0, back = pending_.size();
    pool_.run(pending_.size(), [&](size_t task, int worker) {
        size_t i = task;
        if (!verify_only) {
            std::lock_guard lock(ends);
            i = worker == 0 ? front++ : --back;
        }
        results[i] = [&]() -> Status {
            if (verify_only) {
                // verify(): the record against its checksum, decompressed when compressed; not
                // hashed (see ObjectStore::check_stored_decodes).
                auto& rec = records_[worker];
                DVOL_CHECK(ObjectStore::read_located(pending_[i], rec));
                return ObjectStore::check_stored_decodes(rec, decode_bufs_[worker]);
            }
            // A large chunk checked already, written whole: its writer tries a copy inside the
            // kernel first (a raw record's payload goes from the pack to the file), and reads it
            // only when that fails.
            const Write& w = writes_[i];
            Chunk c{i, worker, {}, !w.check_hash && !w.compare_first && pending_[i].where.stored_len >= kCopyInKernel};
            if (!c.copy_first) DVOL_CHECK(load(c));
            return fn(c);
        }();
    });
    pending_.clear();
    pending_bytes_ = 0;
    writes_.clear();
    for (auto& w : worker_warnings_) {
        warnings_.insert(warnings_.end(), w.begin(), w.end());
        w.clear();
    }
    for (auto& r : results)
        if (!r) return std::move(r).error();
    return {};
}

Status Restorer::load(Chunk& c) {
    // Read straight into the worker's buffer; a chunk stored raw (incompressible) is written
    // from there, without a copy (decode_stored_view).
    auto& rec = records_[c.worker];
    DVOL_CHECK(ObjectStore::read_located(pending_[c.i], rec));
    c.copy_first = false;
    return ObjectStore::decode_stored_view(rec, decode_bufs_[c.worker], c.plain, writes_[c.i].check_hash);
}

Status Restorer::put(Chunk& c, int fd, const std::string& rel) {
    if (c.copy_first) {
        DVOL_TRY(bool copied, ObjectStore::copy_raw_payload(pending_[c.i], fd, writes_[c.i].offset, rel));
        if (copied) return {};
        DVOL_CHECK(load(c));
        DVOL_CHECK(check_length(c));
    }
    return pwrite_all(fd, c.plain, writes_[c.i].offset, rel);
}

Status Restorer::check_length(const Chunk& c) const {
    const Write& w = writes_[c.i];
    uint64_t size = c.copy_first ? pending_[c.i].where.raw_len : c.plain.size();
    if (size != w.length)  // verify() refuses these before anything changes
        return make_error(Errc::corrupt, fmt::format("{}: a chunk of {} bytes where its extent says {}", *w.rel, size, w.length));
    return {};
}

Status Restorer::verify_pending() {
    return run_batch([](Chunk&) -> Status { return {}; }, true);
}

Result<Restorer::Listing> Restorer::list_have(int dirfd, const std::string& rel) {
    DVOL_TRY(auto names, list_dir(dirfd, rel.empty() ? "." : rel));
    Listing have;
    for (auto& n : names) {
        struct stat st;
        if (::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) have.emplace(std::move(n), st);
    }
    return have;
}

Status Restorer::remove_extra(int dirfd, const std::string& rel, const Listing& have, const Tree& target) {
    for (const auto& [name, st] : have) {
        if (target.find(name)) continue;
        std::string path = join(rel, name);
        DVOL_CHECK(remove_entry_at(dirfd, name, path));
        DVOL_CHECK(cache_.forget(path));
        stats_.removed++;
    }
    return {};
}

Status Restorer::sync_tree(const std::string& live_dir, Tree target) {
    // Depth-first in the tree's order (hard links name earlier paths), with a stack of frames
    // rather than the C stack, so a tree of any depth is restored; DirStack keeps a bounded
    // number of directories open and never enters a mount point. A directory's own metadata is
    // set once everything inside it is done (its mtime would move otherwise).
    DVOL_TRY(DirStack dirs, DirStack::begin(root_fd_.get(), live_dir, true));
    struct Frame {
        Tree tree;
        Listing have;
        size_t next = 0;
        size_t path_len = 0;
        TreeEntry self;  // the directory's own entry (not used for the root)
    };
    std::vector<Frame> frames;
    std::string path;
    {
        Frame root{std::move(target), {}, 0, 0, {}};
        DVOL_TRY(root.have, list_have(root_fd_.get(), path));
        DVOL_CHECK(remove_extra(root_fd_.get(), path, root.have, root.tree));
        frames.push_back(std::move(root));
    }
    while (!frames.empty()) {
        Frame& f = frames.back();
        path.resize(f.path_len);
        if (f.next == f.tree.entries.size()) {
            // The new files of this directory are finished through its fd (see NewFile).
            DVOL_CHECK(flush_writes());
            if (frames.size() == 1) break;
            static const std::string dot = ".";
            DVOL_TRY(bool unused, apply_metadata(dirs.fd(), Where{dirs.fd(), dot, path}, f.self));
            (void)unused;
            frames.pop_back();
            DVOL_CHECK(dirs.leave(path));
            continue;
        }
        const TreeEntry& want = f.tree.entries[f.next++];
        if (!valid_entry_name(want.name)) return make_error(Errc::corrupt, fmt::format("refusing entry name '{}' in {}", want.name, path));
        if (progress_ && ++visited_ % 256 == 0) progress_(Progress{visited_, stats_.bytes_written});
        if (!path.empty()) path += '/';
        path += want.name;
        auto it = f.have.find(want.name);
        DVOL_TRY(auto sub, sync_entry(Where{dirs.fd(), want.name, path}, want, it == f.have.end() ? nullptr : &it->second));
        if (!sub) continue;
        // A directory, made or kept by sync_entry: restore what it holds next, once the new
        // files queued here are finished (their metadata is set through this directory's fd).
        DVOL_CHECK(flush_writes());
        Frame next{std::move(*sub), {}, 0, path.size(), want};
        DVOL_CHECK(dirs.enter(want.name, path));
        DVOL_TRY(next.have, list_have(dirs.fd(), path));
        DVOL_CHECK(remove_extra(dirs.fd(), path, next.have, next.tree));
        frames.push_back(std::move(next));
    }
    return {};
}

Result<std::optional<Tree>> Restorer::sync_entry(const Where& at, const TreeEntry& want, const struct stat* have) {
    const std::string& name = at.name;
    const std::string& rel = at.rel;
    int dirfd = at.dirfd;
    std::optional<Tree> none;
    if (want.type == EntryType::hardlink) {
        DVOL_CHECK(sync_hardlink(at, want, have));
        return none;
    }
    if (have && type_of(*have) != want.type) {
        DVOL_CHECK(remove_entry_at(dirfd, name, rel));
        DVOL_CHECK(cache_.forget(rel));
        have = nullptr;
    }
    switch (want.type) {
        case EntryType::dir: {
            if (!have && ::mkdirat(dirfd, name.c_str(), 0700) != 0) return errno_error("create directory", rel);
            DVOL_TRY(Tree sub, load_tree(store_, nullptr, want.subtree));
            return std::optional<Tree>(std::move(sub));  // sync_tree goes in, and sets its metadata after
        }
        case EntryType::file: {
            if (have && have->st_nlink > 1) {
                // Shared with other paths: changing it in place would change them too. Keep it
                // only when it is already right; otherwise this path gets a file of its own.
                DVOL_TRY(bool same, known_same(rel, want, *have));
                if (!same) {
                    DVOL_CHECK(remove_entry_at(dirfd, name, rel));
                    DVOL_CHECK(cache_.forget(rel));
                    have = nullptr;
                }
            }
            if (!have) {
                DVOL_CHECK(write_new_file(at, want));
                return none;
            }
            auto opened = open_beneath(dirfd, name, O_RDWR | O_NOCTTY, rel);
            if (!opened && !is_root_ && errno == EACCES) {
                // A read-only file of our own: make it writable; apply_metadata sets the mode back.
                if (::fchmodat(dirfd, name.c_str(), (have->st_mode & 07777) | S_IWUSR, 0) != 0) return errno_error("set mode of", rel);
                opened = open_beneath(dirfd, name, O_RDWR | O_NOCTTY, rel);
            }
            if (!opened) return std::move(opened).error();
            UniqueFd fd = std::move(*opened);
            DVOL_TRY(bool changed, update_file(fd.get(), rel, want, *have));
            DVOL_TRY(bool meta_changed, apply_metadata(fd.get(), at, want));
            // An untouched file keeps its stat and so its cache row.
            if (!changed && !meta_changed) return none;
            DVOL_CHECK(remember(fd.get(), rel, want));
            return none;
        }
        case EntryType::symlink: {
            if (have) {
                std::string cur(want.target.size() + 1, '\0');
                ssize_t n = ::readlinkat(dirfd, name.c_str(), cur.data(), cur.size());
                bool same = n == static_cast<ssize_t>(want.target.size()) && cur.compare(0, want.target.size(), want.target) == 0;
                if (!same) {
                    DVOL_CHECK(remove_entry_at(dirfd, name, rel));
                    have = nullptr;
                }
            }
            if (!have && ::symlinkat(want.target.c_str(), dirfd, name.c_str()) != 0) return errno_error("create symlink", rel);
            DVOL_TRY(bool unused, apply_metadata(-1, at, want));
            (void)unused;
            return none;
        }
        case EntryType::fifo:
        case EntryType::chardev:
        case EntryType::blockdev: {
            mode_t kind = want.type == EntryType::fifo ? S_IFIFO : want.type == EntryType::chardev ? S_IFCHR : S_IFBLK;
            if (have && have->st_rdev != static_cast<dev_t>(want.rdev) && want.type != EntryType::fifo) {
                DVOL_CHECK(remove_entry_at(dirfd, name, rel));
                have = nullptr;
            }
            if (!have && ::mknodat(dirfd, name.c_str(), kind | 0600, static_cast<dev_t>(want.rdev)) != 0)
                return errno_error("create special file", rel);
            DVOL_TRY(bool unused, apply_metadata(-1, at, want));
            (void)unused;
            return none;
        }
        case EntryType::hardlink: break;  // handled above
    }
    return none;
}

Status Restorer::sync_hardlink(const Where& at, const TreeEntry& want, const struct stat* have) {
    // The target may be a new file a worker has yet to make.
    if (!new_files_.empty()) DVOL_CHECK(flush_writes());
    // The target is an earlier path of this tree, restored already. Reach it one directory at a
    // time without following symlinks, so a hostile tree cannot link in a file from outside.
    UniqueFd parent;
    int parent_fd = root_fd_.get();
    std::string base = want.target;
    for (size_t slash; (slash = base.find('/')) != std::string::npos;) {
        DVOL_TRY(parent, open_beneath(parent_fd, base.substr(0, slash), O_RDONLY | O_DIRECTORY, want.target));
        parent_fd = parent.get();
        base.erase(0, slash + 1);
    }
    struct stat target;
    if (::fstatat(parent_fd, base.c_str(), &target, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(target.st_mode))
        return make_error(Errc::corrupt, fmt::format("hard link {} names {}, which is not a file restored before it", at.rel, want.target));
    if (have && have->st_dev == target.st_dev && have->st_ino == target.st_ino) return {};
    if (have) {
        DVOL_CHECK(remove_entry_at(at.dirfd, at.name, at.rel));
        DVOL_CHECK(cache_.forget(at.rel));
    }
    if (::linkat(parent_fd, base.c_str(), at.dirfd, at.name.c_str(), 0) != 0) return errno_error("create hard link", at.rel);
    return {};
}

Status Restorer::write_extent(int fd, const std::string& rel, uint64_t offset, const Extent& x, bool compare_first) {
    stats_.bytes_written += x.length;
    if (progress_) progress_(Progress{visited_, stats_.bytes_written});
    if (x.hole) {
        if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset), static_cast<off_t>(x.length)) == 0)
            return {};
        // No hole punching here: write the zeros.
        std::vector<std::byte> zeros(std::min<uint64_t>(x.length, 1 << 20));
        for (uint64_t done = 0; done < x.length;) {
            size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), x.length - done));
            DVOL_CHECK(pwrite_all(fd, std::span(zeros).first(n), offset + done, rel));
            done += n;
        }
        return {};
    }
    // Decoding, hashing and writing go to flush_writes. The file's own ranges are disjoint, so
    // the order of the writes does not matter.
    DVOL_CHECK(queue_record(x.id));
    writes_.push_back(Write{fd, offset, x.length, &rel, !verified_.contains(x.id), compare_first});
    if (batch_full()) return flush_writes();
    return {};
}

Status Restorer::flush_writes() {
    open_new_files_ = 0;
    DVOL_CHECK(run_batch(
        [&](Chunk& c) -> Status {
            const Write& w = writes_[c.i];
            DVOL_CHECK(check_length(c));
            if (NewFile* f = w.whole) {
                DVOL_TRY(f->fd, open_beneath(f->dirfd, *f->name, O_RDWR | O_CREAT | O_EXCL | O_NOCTTY, f->rel, 0600));
                DVOL_CHECK(put(c, f->fd.get(), f->rel));
                DVOL_CHECK(finish_file(*f, &worker_warnings_[c.worker]));
                f->fd.reset();
                return {};
            }
            if (!w.compare_first) return put(c, w.fd, *w.rel);
            return write_changed(w, c.plain, current_bufs_[c.worker]);
        },
        false));
    return finish_new_files();
}

Status Restorer::write_changed(const Write& w, std::span<const std::byte> data, std::vector<std::byte>& current) {
    // A chunk that differs from the file's usually differs in a few pages: a database changes
    // pages here and there, and a 1 MiB chunk holds 128 of PostgreSQL's. Reading the range
    // back from the page cache and comparing costs less than writing it whole (the kernel
    // copies a buffered write under the inode's lock, dirties every page and later writes
    // them all out). A range not in the page cache is not read from the disk for this.
    if (current.size() < data.size()) current.resize(data.size());
    size_t have = pread_cached(w.fd, std::span(current).first(data.size()), w.offset);
    // Page-aligned blocks of the file; runs of differing ones are written together.
    constexpr uint64_t kPage = 4096;
    size_t run = SIZE_MAX;  // start of the differing run being gathered
    for (size_t p = 0; p < data.size();) {
        size_t end = std::min<size_t>(data.size(), p + static_cast<size_t>(kPage - (w.offset + p) % kPage));
        bool differs = end > have || std::memcmp(data.data() + p, current.data() + p, end - p) != 0;
        if (differs && run == SIZE_MAX) run = p;
        if (!differs && run != SIZE_MAX) {
            DVOL_CHECK(pwrite_all(w.fd, data.subspan(run, p - run), w.offset + run, *w.rel));
            run = SIZE_MAX;
        }
        p = end;
    }
    if (run != SIZE_MAX) DVOL_CHECK(pwrite_all(w.fd, data.subspan(run), w.offset + run, *w.rel));
    return {};
}

Status Restorer::write_new_file(const Where& at, const TreeEntry& want) {
    if (!want.content.indirect) {
        // One chunk (and holes): the worker that writes the chunk makes the file and finishes it.
        ExtentCursor cur(store_, want.content);
        std::optional<std::pair<uint64_t, Extent>> only;
        int chunks = 0;
        for (;;) {
            DVOL_TRY(auto x, cur.next());
            if (!x) break;
            if (x->hole) continue;
            if (++chunks > 1) break;
            only.emplace(cur.offset(), *x);
        }
        if (chunks == 1) {
            auto [offset, x] = *only;
            NewFile& f = new_files_.emplace_back(NewFile{UniqueFd(), at.dirfd, &want.name, at.rel, &want, offset + x.length, true});
            stats_.bytes_written += x.length;
            if (progress_) progress_(Progress{visited_, stats_.bytes_written});
            DVOL_CHECK(queue_record(x.id));
            writes_.push_back(Write{-1, offset, x.length, &f.rel, !verified_.contains(x.id), false, &f});
            if (batch_full()) return flush_writes();
            return {};
        }
    }
    DVOL_TRY(UniqueFd fd, open_beneath(at.dirfd, at.name, O_RDWR | O_CREAT | O_EXCL | O_NOCTTY, at.rel, 0600));
    open_new_files_++;
    // Finished (size, metadata, stat cache row) after its chunks are written: see flush_writes.
    // The deque keeps `rel` where the queued writes point to it.
    NewFile& f = new_files_.emplace_back(NewFile{std::move(fd), at.dirfd, &want.name, at.rel, &want, 0, false});
    ExtentCursor cur(store_, want.content);
    for (;;) {
        DVOL_TRY(auto x, cur.next());
        if (!x) break;
        if (x->hole) continue;  // a new file is sparse already
        f.end = cur.offset() + x->length;
        // May flush: that finishes the files before f, not f (not complete yet).
        DVOL_CHECK(write_extent(f.fd.get(), f.rel, cur.offset(), *x, false));  // a new file holds nothing yet
    }
    f.complete = true;
    return {};
}

Status Restorer::finish_new_files() {
    for (; !new_files_.empty() && new_files_.front().complete; new_files_.pop_front()) {
        NewFile& f = new_files_.front();
        if (!f.finished) DVOL_CHECK(finish_file(f, nullptr));
        stats_.files_written++;
        DVOL_CHECK(cache_.store(f.rel, f.key, now_ns(), f.want->content));
    }
    return {};
}

Status Restorer::finish_file(NewFile& f, std::vector<std::string>* warnings) {
    // A file that ends in a hole gets its size here (its last chunk set it otherwise).
    if (f.end != f.want->size && ::ftruncate(f.fd.get(), static_cast<off_t>(f.want->size)) != 0) return errno_error("set size of", f.rel);
    DVOL_TRY(bool unused, apply_metadata(f.fd.get(), Where{f.dirfd, *f.name, f.rel}, *f.want, warnings));
    (void)unused;
    struct stat st;
    if (::fstat(f.fd.get(), &st) != 0) return errno_error("stat", f.rel);
    f.key = stat_key(st);
    f.finished = true;
    return {};
}

Result<bool> Restorer::known_same(const std::string& rel, const TreeEntry& want, const struct stat& have) {
    if (static_cast<uint64_t>(have.st_size) != want.size) return false;
    DVOL_TRY(auto known, cache_.lookup(rel, stat_key(have)));
    return known && *known == want.content;
}

Result<bool> Restorer::update_file(int fd, const std::string& rel, const TreeEntry& want, const struct stat& have) {
    DVOL_TRY(auto known, cache_.lookup(rel, stat_key(have)));
    if (known && *known == want.content && static_cast<uint64_t>(have.st_size) == want.size) return false;
    bool changed = false;
    if (known) {
        // Both contents are known: walk the two extent lists by offset and rewrite the target
        // extents that the current file does not hold at the same offset.
        ExtentCursor old_cur(store_, *known), new_cur(store_, want.content);
        DVOL_TRY(auto o, old_cur.next());
        for (;;) {
            DVOL_TRY(auto n, new_cur.next());
            if (!n) break;
            while (o && old_cur.offset() < new_cur.offset()) {
                DVOL_TRY(o, old_cur.next());
            }
            bool same = o && old_cur.offset() == new_cur.offset() && *o == *n;
            if (!same) {
                DVOL_CHECK(write_extent(fd, rel, new_cur.offset(), *n, true));
                changed = true;
            }
        }
    } else {
        // Unknown content: read each target range and rewrite it only when it differs.
        stats_.files_compared++;
        ExtentCursor cur(store_, want.content);
        uint64_t have_size = static_cast<uint64_t>(have.st_size);
        for (;;) {
            DVOL_TRY(auto x, cur.next());
            if (!x) break;
            uint64_t off = cur.offset();
            bool same = false;
            if (off + x->length <= have_size) {
                read_buf_.resize(static_cast<size_t>(std::min<uint64_t>(x->length, 64u << 20)));
                if (read_buf_.size() == x->length) {
                    DVOL_CHECK(pread_exact(fd, read_buf_, off, rel));
                    same = x->hole ? all_zero(read_buf_) : sha256(read_buf_) == x->id;
                }
            }
            if (!same) {
                DVOL_CHECK(write_extent(fd, rel, off, *x, true));
                changed = true;
            }
        }
    }
    DVOL_CHECK(flush_writes());
    if (static_cast<uint64_t>(have.st_size) != want.size) {
        if (::ftruncate(fd, static_cast<off_t>(want.size)) != 0) return errno_error("set size of", rel);
        changed = true;
    }
    if (changed) stats_.files_written++;
    // A file verified by reading gets a fresh cache row too, so the next run need not read it.
    return changed || !known;
}

Result<bool> Restorer::apply_metadata(int fd, const Where& at, const TreeEntry& want, std::vector<std::string>* warnings) {
    struct stat st;
    int rc = fd >= 0 ? ::fstat(fd, &st) : ::fstatat(at.dirfd, at.name.c_str(), &st, AT_SYMLINK_NOFOLLOW);
    if (rc != 0) return errno_error("stat", at.rel);
    TreeEntry now;
    fill_metadata(now, st);
    bool is_link = S_ISLNK(st.st_mode);
    bool changed = false;
    if (is_root_ && (now.uid != want.uid || now.gid != want.gid)) {
        rc = fd >= 0 ? ::fchown(fd, want.uid, want.gid) : ::fchownat(at.dirfd, at.name.c_str(), want.uid, want.gid, AT_SYMLINK_NOFOLLOW);
        if (rc != 0) return errno_error("set owner of", at.rel);
        changed = true;
    }
    // After chown, which clears setuid/setgid. Symlinks have no mode of their own on Linux.
    if (!is_link && (changed || now.mode != want.mode)) {
        rc = fd >= 0 ? ::fchmod(fd, want.mode) : ::fchmodat(at.dirfd, at.name.c_str(), want.mode, 0);
        if (rc != 0) return errno_error("set mode of", at.rel);
        changed = true;
    }
    // xattrs after chown and chmod: chown drops security.capability, and a POSIX ACL set here
    // agrees with the mode it was committed with.
    DVOL_TRY(auto xattrs, read_xattrs(at.dirfd, at.name, at.rel));
    if (xattrs != want.xattrs) {
        DVOL_CHECK(write_xattrs(at.dirfd, at.name, at.rel, xattrs, want.xattrs, warnings ? *warnings : warnings_));
        changed = true;
    }
    if (changed || now.mtime_ns != want.mtime_ns) {
        timespec ts[2] = {to_timespec(want.mtime_ns), to_timespec(want.mtime_ns)};
        rc = fd >= 0 ? ::futimens(fd, ts) : ::utimensat(at.dirfd, at.name.c_str(), ts, AT_SYMLINK_NOFOLLOW);
        if (rc != 0) return errno_error("set times of", at.rel);
        changed = true;
    }
    return changed;
}

Status Restorer::remember(int fd, const std::string& rel, const TreeEntry& want) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return errno_error("stat", rel);
    return cache_.store(rel, stat_key(st), now_ns(), want.content);
}

}  // namespace dvol
