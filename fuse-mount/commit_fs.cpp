#include "commit_fs.h"

#include <sys/stat.h>

#include <algorithm>
#include <bit>

#include <fmt/format.h>

#include "store/hash.h"

namespace dvol::mountfs {

namespace {

// Decoded sizes, roughly, for the caches' byte bounds.
size_t tree_bytes(const Tree& t) {
    size_t n = sizeof(CachedTree);
    for (const auto& e : t.entries) {
        n += sizeof(TreeEntry) + e.name.size() + e.target.size() + e.content.extents.size() * sizeof(Extent) +
             e.content.lists.size() * sizeof(ExtentListRef);
        for (const auto& [k, v] : e.xattrs) n += 64 + k.size() + v.size();
    }
    return n;
}

// A buffer of zeros that hole pieces of a read point into.
constexpr size_t kZeros = 1u << 20;
const std::vector<std::byte>& zeros() {
    static const std::vector<std::byte> z(kZeros);
    return z;
}

}  // namespace

PathKey root_key() {
    auto id = sha256(std::string_view("dvol mount: the root"));
    PathKey k;
    std::memcpy(k.data(), id.bytes.data(), k.size());
    return k;
}

PathKey child_key(const PathKey& dir, std::string_view name) {
    Sha256 h;
    h.update(std::as_bytes(std::span(dir)));
    h.update(std::as_bytes(std::span(name.data(), name.size())));
    auto id = h.finish();
    PathKey k;
    std::memcpy(k.data(), id.bytes.data(), k.size());
    return k;
}

uint64_t ino_candidate(const PathKey& key) {
    uint64_t v;
    std::memcpy(&v, key.data(), sizeof v);
    return v;
}

uint32_t CommitFs::entry_type_bits(const TreeEntry& e) {
    switch (e.type) {
        case EntryType::file:
        case EntryType::hardlink: return S_IFREG;
        case EntryType::dir: return S_IFDIR;
        case EntryType::symlink: return S_IFLNK;
        case EntryType::fifo: return S_IFIFO;
        case EntryType::chardev: return S_IFCHR;
        case EntryType::blockdev: return S_IFBLK;
    }
    return S_IFREG;
}

CommitFs::CommitFs(ObjectSource& source, Options options)
    : source_(source),
      options_(std::move(options)),
      trees_(options_.limits.tree_cache),
      lists_(options_.limits.list_cache),
      chunks_(options_.limits.chunk_cache) {}

CommitFs::~CommitFs() {
    if (!ahead_thread_.joinable()) return;
    {
        std::lock_guard lk(ahead_mu_);
        ahead_stop_ = true;
    }
    ahead_cv_.notify_all();
    ahead_thread_.join();
}

void CommitFs::ahead_loop() {
    std::unique_lock lk(ahead_mu_);
    for (;;) {
        ahead_cv_.wait(lk, [&] { return ahead_stop_ || !ahead_.empty(); });
        if (ahead_stop_) return;
        Extent x = std::move(ahead_.front());
        ahead_.pop_front();
        lk.unlock();
        // A failure is not cached (LoadingCache): the read that reaches the chunk loads it
        // again and answers the error.
        (void)chunk(x);
        lk.lock();
    }
}

Result<std::unique_ptr<CommitFs>> CommitFs::open(ObjectSource& source, const ObjectId& top, Options options) {
    std::unique_ptr<CommitFs> fs(new CommitFs(source, std::move(options)));
    fs->top_ = top;
    DVOL_TRY(auto t, fs->tree(top));
    const auto& entries = t->tree.entries;
    if (entries.size() != 1 || entries[0].name != kRootEntryName || entries[0].type != EntryType::dir)
        return make_error(Errc::corrupt, fmt::format("tree {} is not a commit's top tree (one directory named root)", top.hex()));
    fs->nodes_.emplace(kRootIno, Node{1, root_key(), Loc{top, 0}, kRootIno});
    fs->ino_of_.emplace(root_key(), kRootIno);
    if (fs->options_.count_links) DVOL_CHECK(fs->count_all_links());
    if (fs->options_.readahead_self && fs->options_.readahead_chunks > 0)
        fs->ahead_thread_ = std::thread([p = fs.get()] { p->ahead_loop(); });
    return fs;
}

Error CommitFs::object_error(const Error& e) const {
    // Whatever the source says, for the kernel it is the store's failure, never "no such file".
    if (e.code == Errc::corrupt || e.code == Errc::io) return e;
    if (e.code == Errc::not_found) return make_error(Errc::corrupt, e.message);
    return make_error(Errc::io, e.message);
}

Result<CachedTree> CommitFs::load_tree(const ObjectId& id) {
    std::vector<std::byte> bytes;
    if (auto st = source_.get(id, bytes); !st) return object_error(st.error());
    auto t = decode_tree(bytes);
    if (!t) return make_error(Errc::corrupt, fmt::format("tree {}: {}", id.hex(), t.error().message));
    CachedTree c;
    c.tree = std::move(*t);
    c.has_links = std::any_of(c.tree.entries.begin(), c.tree.entries.end(), [](const TreeEntry& e) { return e.type == EntryType::hardlink; });
    tree_loads_++;
    if (options_.trace) options_.trace(fmt::format("loaded tree {} ({} entries)", id.hex(), c.tree.entries.size()));
    return c;
}

Result<std::shared_ptr<const CachedTree>> CommitFs::tree(const ObjectId& id) {
    return trees_.get(id, [&]() -> Result<LoadingCache<CachedTree>::Loaded> {
        DVOL_TRY(auto c, load_tree(id));
        size_t bytes = tree_bytes(c.tree);
        return LoadingCache<CachedTree>::Loaded{std::make_shared<const CachedTree>(std::move(c)), bytes};
    });
}

Result<std::shared_ptr<const CachedList>> CommitFs::extent_list(const ExtentListRef& ref) {
    return lists_.get(ref.id, [&]() -> Result<LoadingCache<CachedList>::Loaded> {
        std::vector<std::byte> bytes;
        if (auto st = source_.get(ref.id, bytes); !st) return object_error(st.error());
        auto xs = decode_extent_list(bytes);
        if (!xs) return make_error(Errc::corrupt, fmt::format("extent list {}: {}", ref.id.hex(), xs.error().message));
        auto c = std::make_shared<CachedList>();
        c->extents = std::move(*xs);
        uint64_t off = 0;
        for (const auto& x : c->extents) {
            c->starts.push_back(off);
            off += x.length;
            if (!x.hole) c->data_bytes += x.length;
        }
        // What the reference says must be what the list holds, or offsets would be wrong.
        if (c->extents.size() != ref.count || off != ref.length)
            return make_error(Errc::corrupt, fmt::format("extent list {} does not match its reference ({} extents, {} bytes)",
                                                         ref.id.hex(), c->extents.size(), off));
        list_loads_++;
        if (options_.trace) options_.trace(fmt::format("loaded extent list {} ({} extents)", ref.id.hex(), c->extents.size()));
        size_t cost = sizeof(CachedList) + c->extents.size() * (sizeof(Extent) + sizeof(uint64_t));
        return LoadingCache<CachedList>::Loaded{std::move(c), cost};
    });
}

std::shared_ptr<std::vector<std::byte>> CommitFs::chunk_buffer(size_t bytes) {
    std::unique_ptr<std::vector<std::byte>> b;
    {
        std::lock_guard lk(spares_->mu);
        // The smallest spare that holds `bytes`; when none does, the largest.
        auto better = [&](const auto& x, const auto& y) {
            bool xf = x->capacity() >= bytes, yf = y->capacity() >= bytes;
            if (xf != yf) return xf;
            return xf ? x->capacity() < y->capacity() : x->capacity() > y->capacity();
        };
        auto& spare = spares_->buffers;
        auto best = spare.begin();
        for (auto it = spare.begin(); it != spare.end(); ++it)
            if (better(*it, *best)) best = it;
        if (best != spare.end()) {
            b = std::move(*best);
            spare.erase(best);
        }
    }
    if (!b) b = std::make_unique<std::vector<std::byte>>();
    // (An extent's length comes from the commit: a damaged one claiming more than any chunk can
    // hold gets no room made for it; its load fails on the size the store gives.)
    if (b->capacity() < bytes && bytes <= kMaxChunkRoom) {
        b->clear();  // grown without copying what it held
        // To a power of two, so that a spare more often holds the next chunk as it is.
        b->reserve(std::bit_ceil(bytes));
    }
    return std::shared_ptr<std::vector<std::byte>>(b.release(), [spares = spares_](std::vector<std::byte>* v) {
        std::unique_ptr<std::vector<std::byte>> owned(v);
        std::lock_guard lk(spares->mu);
        if (spares->buffers.size() < kSpareBuffers) spares->buffers.push_back(std::move(owned));
    });
}

Result<std::shared_ptr<const std::vector<std::byte>>> CommitFs::chunk(const Extent& x) {
    return chunks_.get(x.id, [&]() -> Result<LoadingCache<std::vector<std::byte>>::Loaded> {
        auto c = chunk_buffer(x.length);
        if (auto st = source_.get(x.id, *c); !st) return object_error(st.error());
        if (c->size() != x.length)
            return make_error(Errc::corrupt, fmt::format("chunk {} holds {} bytes where its extent says {}", x.id.hex(), c->size(), x.length));
        chunk_loads_++;
        if (options_.trace) options_.trace(fmt::format("loaded chunk {} ({} bytes)", x.id.hex(), c->size()));
        size_t cost = c->capacity() + sizeof(*c);  // a reused buffer may be larger than the chunk
        return LoadingCache<std::vector<std::byte>>::Loaded{std::move(c), cost};
    });
}

// --- inodes -------------------------------------------------------------------------------------

Result<CommitFs::Node> CommitFs::node(uint64_t ino) {
    std::lock_guard lk(nodes_mu_);
    auto it = nodes_.find(ino);
    if (it == nodes_.end()) return make_error(Errc::not_found, fmt::format("inode {} is not known", ino));
    return it->second;
}

Result<CommitFs::Found> CommitFs::entry_of(uint64_t ino) {
    DVOL_TRY(Node n, node(ino));
    DVOL_TRY(auto t, tree(n.loc.tree));
    if (n.loc.index >= t->tree.entries.size())
        return make_error(Errc::internal, fmt::format("inode {}: entry {} of tree {} is gone", ino, n.loc.index, n.loc.tree.hex()));
    Found f;
    f.entry = &t->tree.entries[n.loc.index];
    f.tree = std::move(t);
    f.loc = n.loc;
    f.key = n.key;
    return f;
}

uint64_t CommitFs::acquire(const PathKey& key, const Loc& loc, uint64_t parent) {
    std::lock_guard lk(nodes_mu_);
    if (auto it = ino_of_.find(key); it != ino_of_.end()) {
        nodes_[it->second].nlookup++;
        return it->second;
    }
    uint64_t ino = ino_candidate(key);
    // 0 is no inode, 1 the root; a number a live inode of another path holds moves on (a 64-bit
    // collision, which would otherwise make two paths one file).
    while (ino == 0 || ino == kRootIno || nodes_.contains(ino)) ++ino;
    nodes_.emplace(ino, Node{1, key, loc, parent});
    ino_of_.emplace(key, ino);
    return ino;
}

void CommitFs::forget(uint64_t ino, uint64_t n) {
    if (ino == kRootIno) return;
    std::lock_guard lk(nodes_mu_);
    auto it = nodes_.find(ino);
    if (it == nodes_.end()) return;
    if (it->second.nlookup > n) {
        it->second.nlookup -= n;
        return;
    }
    ino_of_.erase(it->second.key);
    nodes_.erase(it);
}

Result<CommitFs::Found> CommitFs::resolve_link(const std::string& target) {
    DVOL_TRY(auto top, tree(top_));
    ObjectId dir_id = top->tree.entries[0].subtree;
    PathKey key = root_key();
    size_t start = 0;
    for (;;) {
        size_t slash = target.find('/', start);
        std::string_view name = std::string_view(target).substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        DVOL_TRY(auto dir, tree(dir_id));
        const TreeEntry* e = dir->tree.find(name);
        auto bad = [&](std::string_view why) {
            return make_error(Errc::corrupt, fmt::format("hard link target {} {} (in tree {})", target, why, dir_id.hex()));
        };
        if (!e) return bad("does not exist");
        key = child_key(key, name);
        if (slash == std::string::npos) {
            if (e->type != EntryType::file) return bad("is not a regular file");
            Found f;
            f.entry = e;
            f.loc = Loc{dir_id, static_cast<uint32_t>(e - dir->tree.entries.data())};
            f.key = key;
            f.tree = std::move(dir);
            return f;
        }
        if (e->type != EntryType::dir) return bad("goes through something that is not a directory");
        dir_id = e->subtree;
        start = slash + 1;
    }
}

Result<CommitFs::Found> CommitFs::child(const std::shared_ptr<const CachedTree>& dir_tree, const ObjectId& dir_tree_id,
                                        const PathKey& dir_key, size_t i) {
    const TreeEntry& e = dir_tree->tree.entries[i];
    if (e.type == EntryType::hardlink) return resolve_link(e.target);
    Found f;
    f.tree = dir_tree;
    f.entry = &e;
    f.loc = Loc{dir_tree_id, static_cast<uint32_t>(i)};
    f.key = child_key(dir_key, e.name);
    return f;
}

Result<std::optional<Attr>> CommitFs::lookup(uint64_t parent, std::string_view name) {
    DVOL_TRY(Found p, entry_of(parent));
    if (p.entry->type != EntryType::dir) return make_error(Errc::invalid_argument, fmt::format("inode {} is not a directory", parent));
    ObjectId dir_id = p.entry->subtree;
    DVOL_TRY(auto dir, tree(dir_id));
    if (!options_.count_links && dir->has_links) note_links(p.key, *dir);
    const TreeEntry* e = dir->tree.find(name);
    if (!e) return std::optional<Attr>();
    DVOL_TRY(Found c, child(dir, dir_id, p.key, static_cast<size_t>(e - dir->tree.entries.data())));
    uint64_t ino = acquire(c.key, c.loc, parent);
    auto a = attr_of(ino, c.key, *c.entry);
    if (!a) {
        forget(ino, 1);
        return std::move(a).error();
    }
    return std::optional<Attr>(*a);
}

Result<Attr> CommitFs::getattr(uint64_t ino) {
    DVOL_TRY(Found f, entry_of(ino));
    return attr_of(ino, f.key, *f.entry);
}

Result<Attr> CommitFs::attr_of(uint64_t ino, const PathKey& key, const TreeEntry& e) {
    Attr a;
    a.ino = ino;
    a.mode = entry_type_bits(e) | (e.mode & 07777);
    a.uid = e.uid;
    a.gid = e.gid;
    a.mtime_ns = e.mtime_ns;
    switch (e.type) {
        case EntryType::file:
        case EntryType::hardlink: {
            a.size = e.size;
            DVOL_TRY(uint64_t data, data_bytes(e.content));
            a.blocks = (data + 511) / 512;
            a.nlink = link_count(key);
            break;
        }
        case EntryType::symlink: a.size = e.target.size(); break;
        case EntryType::chardev:
        case EntryType::blockdev: a.rdev = e.rdev; break;
        case EntryType::dir:  // the count of subdirectories would need the directory's tree
        case EntryType::fifo: break;
    }
    return a;
}

Result<uint64_t> CommitFs::data_bytes(const FileContent& c) {
    uint64_t n = 0;
    if (!c.indirect) {
        for (const auto& x : c.extents)
            if (!x.hole) n += x.length;
        return n;
    }
    for (const auto& ref : c.lists) {
        DVOL_TRY(auto l, extent_list(ref));
        n += l->data_bytes;
    }
    return n;
}

Result<std::string> CommitFs::readlink(uint64_t ino) {
    DVOL_TRY(Found f, entry_of(ino));
    if (f.entry->type != EntryType::symlink) return make_error(Errc::invalid_argument, fmt::format("inode {} is not a symlink", ino));
    return f.entry->target;
}

Result<std::optional<std::string>> CommitFs::getxattr(uint64_t ino, std::string_view name) {
    DVOL_TRY(Found f, entry_of(ino));
    const auto& xs = f.entry->xattrs;
    auto it = std::lower_bound(xs.begin(), xs.end(), name, [](const auto& kv, std::string_view n) { return kv.first < n; });
    if (it == xs.end() || it->first != name) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
}

Result<std::vector<std::string>> CommitFs::listxattr(uint64_t ino) {
    DVOL_TRY(Found f, entry_of(ino));
    std::vector<std::string> out;
    for (const auto& [k, v] : f.entry->xattrs) out.push_back(k);
    return out;
}

// --- link counts --------------------------------------------------------------------------------

PathKey path_key(std::string_view path) {
    PathKey k = root_key();
    size_t start = 0;
    for (;;) {
        size_t slash = path.find('/', start);
        k = child_key(k, path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
        if (slash == std::string_view::npos) return k;
        start = slash + 1;
    }
}

void CommitFs::note_links(const PathKey& dir_key, const CachedTree& dir) {
    std::lock_guard lk(links_mu_);
    if (!link_dirs_seen_.insert(dir_key).second) return;
    for (const auto& e : dir.tree.entries)
        if (e.type == EntryType::hardlink) links_to_[path_key(e.target)]++;
}

uint32_t CommitFs::link_count(const PathKey& key) {
    std::lock_guard lk(links_mu_);
    auto it = links_to_.find(key);
    return it == links_to_.end() ? 1 : 1 + it->second;
}

Status CommitFs::count_all_links() {
    // Every tree once per place it appears, depth first, without the cache: the counts need only
    // the hard link entries.
    DVOL_TRY(auto top, tree(top_));
    std::vector<ObjectId> todo{top->tree.entries[0].subtree};
    while (!todo.empty()) {
        ObjectId id = todo.back();
        todo.pop_back();
        DVOL_TRY(auto t, load_tree(id));
        for (const auto& e : t.tree.entries) {
            if (e.type == EntryType::dir) todo.push_back(e.subtree);
            if (e.type == EntryType::hardlink) links_to_[path_key(e.target)]++;
        }
    }
    return {};
}

// --- directories --------------------------------------------------------------------------------

Result<std::unique_ptr<CommitFs::Dir>> CommitFs::opendir(uint64_t ino) {
    DVOL_TRY(Found f, entry_of(ino));
    if (f.entry->type != EntryType::dir) return make_error(Errc::invalid_argument, fmt::format("inode {} is not a directory", ino));
    auto d = std::make_unique<Dir>();
    d->tree_id_ = f.entry->subtree;
    DVOL_TRY(d->tree_, tree(d->tree_id_));
    d->key_ = f.key;
    d->ino_ = ino;
    {
        DVOL_TRY(Node n, node(ino));
        d->parent_ = n.parent;
    }
    if (!options_.count_links && d->tree_->has_links) note_links(d->key_, *d->tree_);
    return d;
}

uint64_t CommitFs::entry_ino(const Dir& dir, size_t i) {
    const TreeEntry& e = dir.entry(i);
    PathKey key = e.type == EntryType::hardlink ? path_key(e.target) : child_key(dir.key_, e.name);
    std::lock_guard lk(nodes_mu_);
    if (auto it = ino_of_.find(key); it != ino_of_.end()) return it->second;
    uint64_t ino = ino_candidate(key);
    return ino == 0 || ino == kRootIno ? 2 : ino;
}

Result<Attr> CommitFs::lookup_entry(const Dir& dir, size_t i) {
    DVOL_TRY(Found c, child(dir.tree_, dir.tree_id_, dir.key_, i));
    uint64_t ino = acquire(c.key, c.loc, dir.ino_);
    auto a = attr_of(ino, c.key, *c.entry);
    if (!a) forget(ino, 1);
    return a;
}

// --- files --------------------------------------------------------------------------------------

Result<std::unique_ptr<CommitFs::File>> CommitFs::open_file(uint64_t ino) {
    DVOL_TRY(Found f, entry_of(ino));
    if (f.entry->type != EntryType::file) return make_error(Errc::invalid_argument, fmt::format("inode {} is not a regular file", ino));
    DVOL_TRY(auto file, open_entry(*f.entry));
    file->ino_ = ino;
    return file;
}

Result<std::unique_ptr<CommitFs::File>> CommitFs::open_entry(const TreeEntry& e) {
    if (e.type != EntryType::file) return make_error(Errc::invalid_argument, fmt::format("{} is not a regular file", e.name));
    auto file = std::make_unique<File>();
    file->size_ = e.size;
    file->content_ = e.content;
    uint64_t off = 0;
    if (file->content_.indirect) {
        for (const auto& l : file->content_.lists) {
            file->starts_.push_back(off);
            off += l.length;
        }
    } else {
        for (const auto& x : file->content_.extents) {
            file->starts_.push_back(off);
            off += x.length;
        }
    }
    if (off != file->size_)
        return make_error(Errc::corrupt, fmt::format("{}: the extents cover {} bytes of a {}-byte file", e.name, off, file->size_));
    return file;
}

Result<CommitFs::At> CommitFs::locate(const File& f, uint64_t pos) {
    // The last extent (or list) starting at or before pos.
    auto idx = static_cast<size_t>(std::upper_bound(f.starts_.begin(), f.starts_.end(), pos) - f.starts_.begin()) - 1;
    At at;
    if (!f.content_.indirect) {
        at.index = idx;
        at.extent = f.content_.extents[idx];
        at.start = f.starts_[idx];
        return at;
    }
    DVOL_TRY(at.list, extent_list(f.content_.lists[idx]));
    at.list_index = idx;
    uint64_t rel = pos - f.starts_[idx];
    auto j = static_cast<size_t>(std::upper_bound(at.list->starts.begin(), at.list->starts.end(), rel) - at.list->starts.begin()) - 1;
    at.index = j;
    at.extent = at.list->extents[j];
    at.start = f.starts_[idx] + at.list->starts[j];
    return at;
}

Result<std::optional<CommitFs::At>> CommitFs::next_extent(const File& f, const At& at) {
    uint64_t next = at.start + at.extent.length;
    if (next >= f.size_) return std::optional<At>();
    if (!f.content_.indirect || at.index + 1 < at.list->extents.size()) {
        At n = at;
        n.index++;
        n.extent = f.content_.indirect ? at.list->extents[n.index] : f.content_.extents[n.index];
        n.start = next;
        return std::optional<At>(std::move(n));
    }
    DVOL_TRY(At n, locate(f, next));
    return std::optional<At>(std::move(n));
}

Status CommitFs::read(const File& f, uint64_t offset, size_t size, ReadResult& out) {
    out.clear();
    if (offset >= f.size_ || size == 0) return {};
    uint64_t end = std::min<uint64_t>(f.size_, offset + size);
    uint64_t last_end = f.next_read_.exchange(end);
    bool near = last_end != 0 && offset + options_.sequential_window >= last_end && offset <= last_end + options_.sequential_window;
    bool sequential = (last_end == offset || near) && options_.readahead_chunks > 0;
    uint64_t pos = offset;
    DVOL_TRY(At at, locate(f, pos));
    for (;;) {
        uint64_t n = std::min(end, at.start + at.extent.length) - pos;
        if (at.extent.hole) {
            for (uint64_t left = n; left > 0;) {
                size_t piece = static_cast<size_t>(std::min<uint64_t>(left, kZeros));
                out.pieces.emplace_back(zeros().data(), piece);
                left -= piece;
            }
        } else {
            DVOL_TRY(auto c, chunk(at.extent));
            out.pieces.emplace_back(c->data() + (pos - at.start), static_cast<size_t>(n));
            out.keep.push_back(std::move(c));
            // A sequential read that reaches a chunk's end is done with it: the kernel keeps
            // the pages.
            if (sequential && pos + n == at.start + at.extent.length) chunks_.retire(at.extent.id);
        }
        out.bytes += static_cast<size_t>(n);
        pos += n;
        if (pos >= end) {
            if (sequential) read_ahead(f, std::move(at));
            return {};
        }
        DVOL_TRY(auto next, next_extent(f, at));
        if (!next) return {};
        at = std::move(*next);
    }
}

void CommitFs::read_ahead(const File& f, At at) {
    std::vector<Extent> next_chunks;
    for (unsigned i = 0; i < options_.readahead_chunks; ++i) {
        auto next = next_extent(f, at);
        if (!next || !*next) break;  // an unreadable list: the read that reaches it will say so
        at = std::move(**next);
        if (!at.extent.hole) next_chunks.push_back(at.extent);
    }
    if (next_chunks.empty()) return;
    if (!options_.readahead_self) {
        std::vector<ObjectId> ids;
        for (const auto& x : next_chunks) ids.push_back(x.id);
        source_.prefetch(ids);
        return;
    }
    {
        std::lock_guard lk(ahead_mu_);
        for (auto& x : next_chunks) {
            if (ahead_.size() >= kAheadQueue) break;
            if (std::any_of(ahead_.begin(), ahead_.end(), [&](const Extent& q) { return q.id == x.id; })) continue;
            ahead_.push_back(std::move(x));
        }
    }
    ahead_cv_.notify_one();
}

Result<std::optional<uint64_t>> CommitFs::seek(const File& f, uint64_t offset, bool data) {
    if (offset >= f.size_) return std::optional<uint64_t>();
    DVOL_TRY(At at, locate(f, offset));
    for (;;) {
        if (at.extent.hole != data) return std::optional<uint64_t>(std::max(offset, at.start));
        DVOL_TRY(auto next, next_extent(f, at));
        if (!next) break;
        at = std::move(*next);
    }
    // No more extents: past the data there is only the implicit hole at the end of the file.
    if (data) return std::optional<uint64_t>();
    return std::optional<uint64_t>(f.size_);
}

// --- path-based access (the write layer) ----------------------------------------------------------

Result<std::optional<CommitFs::BaseEntry>> CommitFs::entry_at(std::string_view path) {
    DVOL_TRY(auto top, tree(top_));
    BaseEntry b;
    b.tree = top;
    b.entry = &top->tree.entries[0];
    if (path.empty()) return std::optional<BaseEntry>(std::move(b));
    size_t start = 0;
    PathKey key = root_key();
    for (;;) {
        if (b.entry->type != EntryType::dir) return std::optional<BaseEntry>();
        size_t slash = path.find('/', start);
        std::string_view name = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        DVOL_TRY(auto dir, tree(b.entry->subtree));
        if (!options_.count_links && dir->has_links) note_links(key, *dir);
        key = child_key(key, name);
        const TreeEntry* e = dir->tree.find(name);
        if (!e) return std::optional<BaseEntry>();
        b.tree = std::move(dir);
        b.entry = e;
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    b.path = std::string(path);
    if (b.entry->type == EntryType::hardlink) {
        b.path = b.entry->target;
        DVOL_TRY(Found f, resolve_link(b.path));
        b.tree = std::move(f.tree);
        b.entry = f.entry;
    }
    return std::optional<BaseEntry>(std::move(b));
}

uint32_t CommitFs::link_count_at(std::string_view path) { return link_count(path.empty() ? root_key() : path_key(path)); }

Result<Attr> CommitFs::entry_attr(uint64_t ino, const TreeEntry& e) {
    Attr a;
    a.ino = ino;
    a.mode = entry_type_bits(e) | (e.mode & 07777);
    a.uid = e.uid;
    a.gid = e.gid;
    a.mtime_ns = e.mtime_ns;
    if (e.type == EntryType::file) {
        a.size = e.size;
        DVOL_TRY(uint64_t data, data_bytes(e.content));
        a.blocks = (data + 511) / 512;
    } else if (e.type == EntryType::symlink) {
        a.size = e.target.size();
    } else if (e.type == EntryType::chardev || e.type == EntryType::blockdev) {
        a.rdev = e.rdev;
    }
    return a;
}

Status CommitFs::for_each_extent(const File& f, uint64_t begin, uint64_t end, const std::function<Status(uint64_t, const Extent&)>& fn) {
    end = std::min(end, f.size_);
    if (begin >= end) return {};
    DVOL_TRY(At at, locate(f, begin));
    for (;;) {
        DVOL_CHECK(fn(at.start, at.extent));
        if (at.start + at.extent.length >= end) return {};
        DVOL_TRY(auto next, next_extent(f, at));
        if (!next) return {};
        at = std::move(*next);
    }
}

Stats CommitFs::stats() const {
    Stats s;
    s.tree_loads = tree_loads_;
    s.list_loads = list_loads_;
    s.chunk_loads = chunk_loads_;
    s.chunk_hits = chunks_.stats().hits;
    {
        std::lock_guard lk(nodes_mu_);
        s.inodes = nodes_.size();
    }
    s.cached_bytes = trees_.stats().bytes + lists_.stats().bytes + chunks_.stats().bytes;
    return s;
}

}  // namespace dvol::mountfs
