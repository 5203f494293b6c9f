#include "repo/repository.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <future>

#include <fmt/format.h>

#include "diff/text_diff.h"
#include "meta/db.h"
#include "meta/remote_index.h"
#include "meta/schema.h"
#include "repo/content.h"
#include "repo/layer_tree.h"
#include "repo/locks.h"
#include "repo/readers.h"
#include "repo/quiesced.h"
#include "repo/restore.h"
#include "repo/scan.h"
#include "repo/stat_cache.h"
#include "repo/tree_diff.h"
#include "store/local_first.h"
#include "store/object_store.h"
#include "store/paths.h"

namespace dvol {

namespace {

constexpr const char* kActiveVolumeKey = "core.active_volume";

bool is_hex(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// A failure of a reset or checkout after the branch moved (or became the active one). The
// contract is git's (docs/DECISIONS.md, "The reset contract"): everything that can be refused is
// refused before the move, so what fails after it comes from outside (a full disk, an I/O
// error, a mount made meanwhile), and once that is fixed, 'dvol reset --hard HEAD' finishes.
Error unfinished(Error e, const std::string& moved) {
    e.message += fmt::format(" ({}; once this is fixed, 'dvol reset --hard HEAD' finishes the restore)", moved);
    return e;
}

// A lazy volume shows in its live directory only through its mount. Files put into the bare
// directory while the mount is down (after dvol umount) are none of the volume's: a status or
// commit, which read the write layer, would call the volume clean and the files would never
// be recorded. Refused, naming one. A mount whose process is gone cannot be opened (ENOTCONN):
// the layer is still the truth then.
Status check_lazy_live_dir(const std::string& live_dir, const std::string& volume) {
    auto fd = open_dir_nofollow(live_dir);
    if (!fd) return {};
    struct stat dir, parent;
    if (::fstat(fd->get(), &dir) != 0) return errno_error("stat", live_dir);
    if (::fstatat(fd->get(), "..", &parent, 0) != 0) return errno_error("stat the parent of", live_dir);
    if (dir.st_dev != parent.st_dev) return {};  // a mount (FUSE has a device of its own)
    DVOL_TRY(auto names, list_dir(fd->get(), live_dir));
    if (names.empty()) return {};
    return make_error(Errc::conflict, fmt::format("lazy volume {} is not mounted, and its live directory {} holds files that are not "
                                                  "the volume's ({}{}): move them out, then dvol mount {}",
                                                  volume, live_dir, names.front(), names.size() > 1 ? ", ..." : "", volume));
}

}  // namespace

bool valid_name(std::string_view name) {
    if (name.empty() || name.size() > 128 || !std::isalnum(static_cast<unsigned char>(name[0]))) return false;
    if (name.find("..") != std::string_view::npos) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
    });
}

std::string invalid_name_message(std::string_view name, std::string_view what) {
    std::string shown = name.empty() ? "''" : std::string(name);
    return fmt::format("{} is not a valid {} (a letter or digit, then letters, digits, '_', '.' or '-', no '..'; at most 128 characters)",
                       shown, what);
}

Repository::~Repository() = default;

Result<std::unique_ptr<Repository>> Repository::open(const std::string& dir, bool create) {
    std::unique_ptr<Repository> r(new Repository());
    r->paths_ = std::make_unique<StorePaths>(dir);
    std::string db = r->paths_->db();
    if (!path_exists(db)) {
        if (!create)
            return make_error(Errc::not_found, fmt::format("no dvol store at {} ('dvol init VOLUME' makes one there; -p DIR or DVOL_ROOT=DIR "
                                                           "name another)", dir));
    } else if (::access(dir.c_str(), W_OK) != 0 || ::access(db.c_str(), W_OK) != 0) {
        // SQLite would open the database read-only and fail at its first write with "attempt
        // to write a readonly database": say what is wrong instead.
        struct stat st{};
        std::string owner = "another user";
        if (::stat(db.c_str(), &st) == 0) {
            if (const passwd* pw = ::getpwuid(st.st_uid)) owner = pw->pw_name;
        }
        return make_error(Errc::denied, fmt::format("the dvol store at {} is not writable by you (it belongs to {}): run dvol as {}, "
                                                    "or use -p DIR or DVOL_ROOT=DIR for a store of your own",
                                                    dir, owner, owner));
    }
    auto made = make_dirs(r->paths_->volumes_dir());
    if (!made) return make_error(made.error().code, fmt::format("cannot use {} as the dvol store: {}", dir, made.error().message));
    DVOL_TRY(r->db_, meta::Db::open(db));
    DVOL_CHECK(meta::init_schema(*r->db_));
    r->refs_ = std::make_unique<meta::Refs>(*r->db_);
    r->remote_index_ = std::make_unique<meta::RemoteIndex>(*r->db_);
    DVOL_TRY(r->store_, ObjectStore::open(*r->paths_, *r->db_));
    return r;
}

const std::string& Repository::dir() const { return paths_->dir(); }

Status Repository::prepare_write() {
    if (cleaned_) return {};
    cleaned_ = true;
    return store_->cleanup();
}

std::string Repository::live_dir(const std::string& volume) const { return paths_->live_dir(volume); }

Result<Repository::Volume> Repository::find_volume(const std::string& name) {
    if (!valid_name(name)) return make_error(Errc::invalid_argument, invalid_name_message(name, "name"));
    DVOL_TRY(auto v, refs_->volume(name));
    if (!v) return make_error(Errc::not_found, fmt::format("volume '{}' does not exist", name));
    return std::move(*v);
}

Result<std::optional<ObjectId>> Repository::head(const Volume& v) {
    DVOL_TRY(auto b, refs_->branch(v.id, v.branch));
    if (!b) return std::optional<ObjectId>();
    return b->tip;
}

Status Repository::create_volume(const std::string& name, bool make_active,
                                 const std::vector<std::pair<std::string, std::string>>& options) {
    if (!valid_name(name)) return make_error(Errc::invalid_argument, invalid_name_message(name, "name"));
    auto exists = [&] { return make_error(Errc::already_exists, fmt::format("volume {} already exists", name)); };
    {
        DVOL_TRY(auto v, refs_->volume(name));
        if (v) return exists();
    }
    // A directory without a row is the leftover of an interrupted rm: clear it first.
    DVOL_CHECK(remove_tree(paths_->volume_dir(name)));
    DVOL_CHECK(make_dirs(paths_->live_dir(name), 0755));
    // The lock file exists from the start, so a command that takes the lock and then refuses
    // (an unknown ref) leaves the store exactly as it found it.
    DVOL_CHECK(open_file(paths_->volume_lock(name), O_RDWR | O_CREAT, 0600));
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    auto added = refs_->add_volume(name, "master", now_ns());
    if (!added) return added.error().code == Errc::already_exists ? exists() : std::move(added).error();
    for (const auto& [key, value] : options) DVOL_CHECK(refs_->set_volume_option(*added, key, value));
    if (make_active) DVOL_CHECK(refs_->set_config(kActiveVolumeKey, name));
    DVOL_CHECK(txn.commit());
    return fsync_dir(paths_->volumes_dir());
}

Result<std::optional<std::string>> Repository::active_volume() {
    DVOL_TRY(auto name, refs_->config(kActiveVolumeKey));
    if (!name) return name;
    // The active volume may have been removed by another process.
    DVOL_TRY(auto v, refs_->volume(*name));
    if (!v) return std::optional<std::string>();
    return name;
}

Result<std::vector<VolumeInfo>> Repository::list_volumes() {
    DVOL_TRY(auto active, active_volume());
    DVOL_TRY(auto rows, refs_->volumes());
    std::vector<VolumeInfo> out;
    for (auto& r : rows) out.push_back(VolumeInfo{r.name, r.branch, active && *active == r.name});
    return out;
}

Status Repository::switch_volume(const std::string& name) {
    DVOL_TRY(auto v, find_volume(name));
    return refs_->set_config(kActiveVolumeKey, v.name);
}

Result<std::string> Repository::resolve_volume(const std::optional<std::string>& arg) {
    if (arg) {
        DVOL_TRY(auto v, find_volume(*arg));
        return v.name;
    }
    DVOL_TRY(auto active, active_volume());
    if (!active) return make_error(Errc::not_found, "no active volume: name one, or make one active with 'dvol switch VOLUME' or 'dvol init VOLUME'");
    return *active;
}

Status Repository::remove_volume(const std::string& name) {
    if (!valid_name(name)) return make_error(Errc::invalid_argument, invalid_name_message(name, "name"));
    auto v = find_volume(name);
    if (!v) {
        if (v.error().code == Errc::not_found) return make_error(Errc::not_found, fmt::format("Volume '{}' does not exist, cannot remove it", name));
        return std::move(v).error();
    }
    DVOL_TRY(auto lock, VolumeLock::acquire(*paths_, name, wait_notice_));
    // A mount at or below the volume's directory (its live directory made a tmpfs, a bind
    // mount inside it) would be emptied and then stop the removal half-way, leaving a leftover
    // that cannot be deleted. Refuse before anything is deleted.
    std::string vdir = paths_->volume_dir(name);
    if (auto vfd = open_file(vdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW); vfd) {
        DVOL_TRY(auto mounts, mounts_at_or_below(vfd->get(), vdir));
        if (!mounts.empty())
            return make_error(Errc::busy, fmt::format("cannot remove volume {}: {} is a mount point ({}); dvol deletes nothing across a mount: "
                                                      "unmount it first",
                                                      name, mounts.front().path, mounts.front().fs_type));
    }
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_CHECK(refs_->drop_volume(v->id));
        DVOL_CHECK(refs_->unset_config_if(kActiveVolumeKey, name));
        DVOL_CHECK(txn.commit());
    }
    // The rows are gone; the directory is now garbage. Move it aside first so a new volume of
    // the same name never sees half of it.
    std::string trash = paths_->trash(random_name());
    if (::rename(vdir.c_str(), trash.c_str()) != 0) return errno_error("move aside", vdir);
    return remove_tree(trash);
}

Result<Commit> Repository::load_commit(const ObjectId& id) {
    DVOL_TRY(auto enc, refs_->commit(id));
    if (!enc) return make_error(Errc::not_found, fmt::format("commit {} is not in the store", id.hex()));
    if (sha256(*enc) != id) return make_error(Errc::corrupt, fmt::format("commit {} is corrupt: its content does not match its id", id.hex()));
    auto c = decode_commit(*enc);
    if (!c) return make_error(Errc::corrupt, fmt::format("commit {}: {}", id.hex(), c.error().message));
    return c;
}

Result<ObjectId> Repository::commit_tree(const ObjectId& commit) {
    DVOL_TRY(auto c, load_commit(commit));
    return c.tree;
}

int store_schema_version() { return meta::kSchemaVersion; }

Identity default_identity(std::optional<std::string> name, std::optional<std::string> email) {
    if (!name || !email) {
        auto git = git_identity();
        if (!name) name = git.name;
        if (!email) email = git.email;
    }
    std::string user;
    // getpwuid_r: commit calls this on a thread of its own.
    passwd pwd{};
    passwd* pw = nullptr;
    char buf[4096];
    if (::getpwuid_r(::geteuid(), &pwd, buf, sizeof buf, &pw) == 0 && pw) user = pw->pw_name;
    if (user.empty()) user = "dvol";
    if (!name) name = user;
    if (!email) {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        email = fmt::format("{}@{}", user, host[0] ? host : "localhost");
    }
    return Identity{*name, *email};
}

Result<Identity> Repository::identity() {
    DVOL_TRY(auto name, config_get("user.name"));
    DVOL_TRY(auto email, config_get("user.email"));
    return default_identity(std::move(name), std::move(email));
}

namespace {

// A commit of `tree` after `parent` by `who`, made now, in the local time zone.
Commit new_commit(const ObjectId& tree, const std::optional<ObjectId>& parent, const Identity& who, const std::string& message) {
    Commit c;
    c.tree = tree;
    if (parent) c.parents.push_back(*parent);
    c.author_name = who.name;
    c.author_email = who.email;
    c.time = static_cast<int64_t>(::time(nullptr));
    struct tm tm_local;
    time_t t = static_cast<time_t>(c.time);
    ::localtime_r(&t, &tm_local);
    c.tz_offset_min = static_cast<int>(tm_local.tm_gmtoff / 60);
    c.message = message;
    return c;
}

// The reflog's line for a commit: its message's first line.
std::string commit_action(const std::optional<ObjectId>& parent, const std::string& message) {
    return fmt::format("commit{}: {}", parent ? "" : " (initial)", message.substr(0, message.find('\n')));
}

}  // namespace

// A lazy volume with a write layer (made by its mount at the first change): the new tree is the layer's base with the layer applied (repo/layer_tree.h), built without
// fetching anything; the chunks cut from the layer's bytes go to the store's packs, the new trees
// and extent lists to the volume's kept objects, where its other trees are.
Result<CommitOutcome> Repository::commit_lazy(const std::string& volume, const std::string& message, const Identity& who,
                                              const LiveDataHooks& hooks) {
    DVOL_TRY(auto lv, lazy_volume(volume));
    DVOL_CHECK(check_lazy_live_dir(paths_->live_dir(volume), volume));
    std::string layer_dir = lv->cache_dir + "/layer";
    DVOL_TRY(auto base, layer_base(layer_dir));
    if (!base) return make_error(Errc::unsupported, fmt::format("nothing to commit: lazy volume {} has no change", volume));
    DVOL_TRY(auto lock, VolumeLock::acquire(*paths_, volume, wait_notice_));
    DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_CHECK(prepare_write());
    DVOL_TRY(auto parent, head(v));
    DVOL_TRY(ObjectId base_top, commit_tree(*base));
    auto kept = open_kept_objects(lv->cache_dir);
    uint64_t before = store_->stats().bytes_written;
    LayerTreeSinks sinks;
    sinks.meta = [&](const ObjectId& id, std::span<const std::byte> bytes) { return keep_object(lv->cache_dir, id, bytes); };
    sinks.chunk = [&](const ObjectId& id, std::span<const std::byte> bytes) { return store_->put(id, bytes); };
    LayerTree live;
    {
        Quiesced quiet(hooks);
        DVOL_CHECK(quiet.start());
        flush_live_mount(paths_->live_dir(volume));
        DVOL_TRY(live, build_layer_tree(*kept, base_top, layer_dir, sinks));
    }
    if (parent) {
        DVOL_TRY(ObjectId parent_top, commit_tree(*parent));
        if (parent_top == live.top) return make_error(Errc::unsupported, fmt::format("nothing to commit: lazy volume {} has no change", volume));
    }
    DVOL_CHECK(store_->flush());  // every object is durable before anything names it
    DVOL_CHECK(fsync_dir(lv->cache_dir + "/meta"));

    Commit c = new_commit(live.top, parent, who, message);
    DVOL_TRY(auto enc, encode_commit(c));
    ObjectId id = sha256(enc);
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    DVOL_CHECK(refs_->add_commit(v.id, id, live.top, c.time, enc));
    DVOL_CHECK(refs_->swap_tip(v.id, v.branch, parent, id,
                               commit_action(parent, message)));
    DVOL_CHECK(txn.commit());
    // The contents it cut are in the packs now, named by this commit: the next build of the
    // layer may take them as they are. Only a cache: failing to keep it fails nothing.
    (void)save_layer_contents(layer_dir, live.fresh);
    CommitOutcome out;
    out.id = id;
    out.bytes_read = live.chunk_bytes;
    out.bytes_stored = store_->stats().bytes_written - before;
    return out;
}

Result<CommitOutcome> Repository::commit(const std::string& volume, const std::string& message, const WarnFn& warn,
                                         const ProgressFn& progress, const LiveDataHooks& hooks) {
    if (message.empty()) return make_error(Errc::invalid_argument, "You must provide a commit message");
    DVOL_TRY(auto name, config_get("user.name"));
    DVOL_TRY(auto email, config_get("user.email"));
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(bool lazy, is_lazy(v.id));
    if (lazy) return commit_lazy(volume, message, default_identity(std::move(name), std::move(email)), hooks);
    // The author, when dvol's config lacks it, comes from git's config, and libgit2's set-up
    // reads the system's CA certificates (5 ms, a tenth of a small commit): on a thread of its
    // own, beside the scan, which needs it only at the end.
    auto who = std::async(std::launch::async, [name = std::move(name), email = std::move(email)]() mutable {
        return default_identity(std::move(name), std::move(email));
    });
    DVOL_TRY(auto lock, VolumeLock::acquire(*paths_, volume, wait_notice_));
    DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
    DVOL_TRY(v, find_volume(volume));  // the active branch as it is under the lock
    DVOL_CHECK(prepare_write());
    DVOL_TRY(auto parent, head(v));

    StatCache cache(*db_, v.id, cache_damage());
    Scanner scanner(*store_, cache, true, warn);
    scanner.set_progress(progress);
    uint64_t before = store_->stats().bytes_written;
    ObjectId top;
    {
        Quiesced quiet(hooks);
        DVOL_CHECK(quiet.start());
        DVOL_TRY(top, scanner.scan(paths_->live_dir(volume)));
    }
    DVOL_CHECK(store_->flush());  // every object is durable before anything names it

    Commit c = new_commit(top, parent, who.get(), message);
    DVOL_TRY(auto enc, encode_commit(c));
    ObjectId id = sha256(enc);

    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    DVOL_CHECK(refs_->add_commit(v.id, id, top, c.time, enc));
    DVOL_CHECK(refs_->swap_tip(v.id, v.branch, parent, id,
                               commit_action(parent, message)));
    DVOL_CHECK(scanner.save_cache());
    DVOL_CHECK(txn.commit());
    {
        // Rows of files deleted since they were cached are dead weight; drop them when there
        // are more rows than files.
        DVOL_TRY(uint64_t rows, cache.row_count());
        if (rows > scanner.stats().files) {
            DVOL_TRY(auto txn2, meta::Db::Transaction::begin(*db_));
            DVOL_CHECK(cache.prune(paths_->live_dir(volume)));
            DVOL_CHECK(txn2.commit());
        }
    }

    CommitOutcome out;
    out.id = id;
    out.files = scanner.stats().files;
    out.files_read = scanner.stats().files_read;
    out.bytes_read = scanner.stats().bytes_read;
    out.bytes_stored = store_->stats().bytes_written - before;
    return out;
}

Result<std::vector<LogEntry>> Repository::log(const std::string& volume) {
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(auto tip, head(v));
    std::vector<LogEntry> out;
    std::optional<ObjectId> cur = tip;
    while (cur) {
        DVOL_TRY(auto c, load_commit(*cur));
        std::optional<ObjectId> next;
        if (!c.parents.empty()) next = c.parents.front();
        out.push_back(LogEntry{*cur, std::move(c)});
        cur = next;
    }
    return out;
}

Result<ObjectId> Repository::resolve_ref(const std::string& volume, const std::string& ref) {
    DVOL_TRY(auto v, find_volume(volume));
    return resolve_in(v, ref);
}

Result<ObjectId> Repository::resolve_in(const Volume& v, const std::string& ref) {
    const std::string& volume = v.name;
    size_t end = ref.find_first_of("^~");
    std::string base = ref.substr(0, end);
    std::string suffix = end == std::string::npos ? "" : ref.substr(end);
    auto unknown = [&] {
        return make_error(Errc::not_found, fmt::format("unknown revision '{}' in volume {} (use HEAD, HEAD^, HEAD~N, a branch, REMOTE/VOLUME/BRANCH or a commit id)", ref, volume));
    };
    if (base.empty()) return unknown();

    std::optional<ObjectId> id;
    if (base == "HEAD") {
        DVOL_TRY(auto tip, head(v));
        if (!tip) return make_error(Errc::not_found, fmt::format("branch {} of {} has no commits yet", v.branch, volume));
        id = tip;
    } else {
        bool is_branch = false;
        if (valid_name(base)) {
            DVOL_TRY(auto branch, refs_->branch(v.id, base));
            if (branch) {
                if (!branch->tip) return make_error(Errc::not_found, fmt::format("branch {} of {} has no commits yet", base, volume));
                is_branch = true;
                id = branch->tip;
            }
        }
        if (!is_branch && base.find('/') != std::string::npos) {
            // A remote-tracking branch, as fetch names it: REMOTE/VOLUME/BRANCH.
            DVOL_TRY(id, tracking_tip(v, base));
            if (!id) return unknown();
            is_branch = true;
        }
        if (!is_branch) {
            if (is_hex(base) && base.size() < 4)
                return make_error(Errc::invalid_argument, fmt::format("commit id prefix '{}' is too short: give at least 4 hex digits", base));
            if (!is_hex(base) || base.size() > 64) return unknown();
            std::string lo = lower(base), hi = lo;
            lo.append(64 - lo.size(), '0');
            hi.append(64 - hi.size(), 'f');
            auto lo_id = ObjectId::from_hex(lo), hi_id = ObjectId::from_hex(hi);
            DVOL_TRY(auto found, refs_->commits_between(v.id, *lo_id, *hi_id, 2));
            if (found.empty()) return unknown();
            if (found.size() > 1) return make_error(Errc::invalid_argument, fmt::format("commit id prefix '{}' is ambiguous in volume {}; give more digits", base, volume));
            id = found.front();
        }
    }
    // Suffixes: ^ (first parent), ^N (N-th parent), ~N (N first parents).
    size_t i = 0;
    while (i < suffix.size()) {
        char op = suffix[i++];
        if (op != '^' && op != '~') return unknown();
        size_t j = i;
        while (j < suffix.size() && std::isdigit(static_cast<unsigned char>(suffix[j]))) ++j;
        uint64_t n = 1;
        if (j > i) {
            auto [p, ec] = std::from_chars(suffix.data() + i, suffix.data() + j, n);
            if (ec != std::errc() || n > 1'000'000) return unknown();
        }
        i = j;
        if (op == '^') {
            if (n == 0) continue;
            DVOL_TRY(auto c, load_commit(*id));
            if (c.parents.size() < n) return make_error(Errc::not_found, fmt::format("revision '{}' does not exist: commit {} has {} parent(s)", ref, id->hex().substr(0, 12), c.parents.size()));
            id = c.parents[n - 1];
        } else {
            for (uint64_t k = 0; k < n; ++k) {
                DVOL_TRY(auto c, load_commit(*id));
                if (c.parents.empty()) return make_error(Errc::not_found, fmt::format("revision '{}' does not exist: the history of {} is shorter", ref, volume));
                id = c.parents.front();
            }
        }
    }
    return *id;
}

Result<ResetOutcome> Repository::reset_hard(const std::string& volume, const std::string& ref, const ProgressFn& progress,
                                            const LiveDataHooks& hooks) {
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(bool lazy, is_lazy(v.id));
    if (lazy) {
        // The branch moves, the write layer is dropped; the hooks unmount the live directory
        // before (containers stopped) and mount it again after, on the new tip.
        DVOL_TRY(auto lv, lazy_volume(volume));
        std::string layer_dir = lv->cache_dir + "/layer";
        DVOL_TRY(auto lock, VolumeLock::acquire(*paths_, volume, wait_notice_));
        DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
        DVOL_TRY(v, find_volume(volume));
        DVOL_TRY(ObjectId target, resolve_in(v, ref));
        DVOL_TRY(auto old_tip, head(v));
        DVOL_CHECK(require_kept_tree(*lv, target));
        Quiesced quiet(hooks);
        DVOL_CHECK(quiet.start());
        {
            DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
            DVOL_CHECK(refs_->swap_tip(v.id, v.branch, old_tip, target, fmt::format("reset: moving to {}", ref)));
            DVOL_CHECK(txn.commit());
        }
        DVOL_CHECK(remove_tree(layer_dir));
        ResetOutcome out;
        out.id = target;
        return out;
    }
    DVOL_TRY(auto lock, VolumeLock::acquire(*paths_, volume, wait_notice_));
    DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
    // Under the locks: the active branch, the ref and the commit cannot change or go away now.
    DVOL_TRY(v, find_volume(volume));
    DVOL_TRY(ObjectId target, resolve_in(v, ref));
    DVOL_TRY(ObjectId tree, commit_tree(target));
    DVOL_TRY(auto old_tip, head(v));
    DVOL_CHECK(prepare_write());
    // Every object the restore will need is read and verified before anything changes: a
    // damaged store fails here and leaves the branch and the live directory as they were.
    DVOL_TRY(auto verified, verify_restore(v, &tree));
    Quiesced quiet(hooks);
    DVOL_CHECK(quiet.start());
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_CHECK(refs_->swap_tip(v.id, v.branch, old_tip, target, fmt::format("reset: moving to {}", ref)));
        DVOL_CHECK(txn.commit());
    }
    auto out = materialise(v, &tree, target, std::move(verified), progress);
    if (!out) return unfinished(std::move(out).error(), fmt::format("branch {} of {} now names {}", v.branch, volume, target.hex().substr(0, 12)));
    return out;
}

Result<ObjectIdSet> Repository::verify_restore(const Volume& v, const ObjectId* tree, ObjectIdSet trusted) {
    StatCache cache(*db_, v.id, cache_damage());
    Restorer restorer(*store_, cache);
    restorer.trust(std::move(trusted));
    DVOL_CHECK(restorer.verify(paths_->live_dir(v.name), tree));
    return restorer.take_verified();
}

Result<ResetOutcome> Repository::materialise(const Volume& v, const ObjectId* tree, const ObjectId& commit,
                                             ObjectIdSet verified, const ProgressFn& progress) {
    StatCache cache(*db_, v.id, cache_damage());
    cache.begin_batch();  // the write lock is taken only for the final batch, not the whole restore
    Restorer restorer(*store_, cache);
    restorer.trust(std::move(verified));
    restorer.set_progress(progress);
    Status restored = restorer.restore(paths_->live_dir(v.name), tree);
    // The rows of whatever was done are saved even when the restore failed half-way.
    Status saved = [&]() -> Status {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_CHECK(cache.write_batch());
        return txn.commit();
    }();
    // The restore's own failure first: it is what must be fixed (a full disk fails the file
    // write, and then the database too). Rows not saved only cost a re-read: a file written
    // since its row was saved has another ctime, so the old row no longer matches it.
    DVOL_CHECK(restored);
    DVOL_CHECK(saved);
    return ResetOutcome{commit, restorer.stats().files_written, restorer.stats().bytes_written, restorer.stats().removed,
                        restorer.warnings()};
}

Result<std::vector<BranchInfo>> Repository::branches(const std::string& volume) {
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(auto rows, refs_->branches(v.id));
    std::vector<BranchInfo> out;
    for (auto& b : rows) out.push_back(BranchInfo{b.name, b.tip, b.name == v.branch});
    return out;
}

Result<std::string> Repository::active_branch(const std::string& volume) {
    DVOL_TRY(auto v, find_volume(volume));
    return v.branch;
}

Status Repository::delete_branch(const std::string& volume, const std::string& branch, bool force) {
    DVOL_TRY(auto v, find_volume(volume));
    if (!valid_name(branch)) return make_error(Errc::invalid_argument, invalid_name_message(branch, "branch name"));
    if (branch == v.branch) return make_error(Errc::conflict, fmt::format("Cannot delete the active branch {}; check out another branch first", branch));
    auto missing = [&] { return make_error(Errc::not_found, fmt::format("branch {} does not exist in volume {}", branch, volume)); };
    DVOL_TRY(auto row, refs_->branch(v.id, branch));
    if (!row) return missing();
    const auto& tip = row->tip;
    if (tip && !force) {
        // Is the tip in the history of another branch? Walk every other branch's parents.
        DVOL_TRY(auto all, refs_->branches(v.id));
        bool reached = false;
        for (const auto& b : all) {
            if (b.name == branch || !b.tip) continue;
            std::vector<ObjectId> todo{*b.tip};
            ObjectIdSet seen;
            while (!todo.empty() && !reached) {
                ObjectId cur = todo.back();
                todo.pop_back();
                if (!seen.insert(cur).second) continue;
                if (cur == *tip) reached = true;
                DVOL_TRY(auto c, load_commit(cur));
                todo.insert(todo.end(), c.parents.begin(), c.parents.end());
            }
            if (reached) break;
        }
        if (!reached)
            return make_error(Errc::conflict, fmt::format("branch {} has commits that no other branch holds (tip {}); use -D to delete it anyway",
                                                          branch, tip->hex().substr(0, 12)));
    }
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    DVOL_TRY(bool dropped, refs_->drop_branch(v.id, branch));
    if (!dropped) return missing();
    DVOL_CHECK(refs_->log_ref(v.id, branch, tip, std::nullopt, "branch: deleted"));
    return txn.commit();
}

Result<std::vector<Change>> Repository::live_changes(const Volume& v, const WarnFn& warn) {
    DVOL_TRY(auto tip, head(v));
    std::optional<ObjectId> head_tree;
    if (tip) { DVOL_TRY(head_tree, commit_tree(*tip)); }
    StatCache cache(*db_, v.id, cache_damage());
    Scanner scanner(*store_, cache, false, warn);
    DVOL_TRY(ObjectId live_top, scanner.scan(paths_->live_dir(v.name)));
    // No commit yet: everything in the live directory is new.
    return diff_trees(*store_, &scanner.overlay(), head_tree ? &*head_tree : nullptr, &live_top);
}

Status Repository::refuse_uncommitted(const Volume& v, std::string_view otherwise) {
    DVOL_TRY(bool lazy, is_lazy(v.id));
    std::vector<Change> changes;
    if (lazy) {
        DVOL_TRY(changes, status(v.name, nullptr));  // its write layer's changes
    } else {
        DVOL_TRY(changes, live_changes(v, nullptr));
    }
    if (changes.empty()) return {};
    return make_error(Errc::conflict, fmt::format("{} has uncommitted changes ({} path(s)); commit them, or {}", v.name,
                                                  changes.size(), otherwise));
}

Result<std::optional<ObjectId>> Repository::lazy_live_tree(const Volume& v, const LazyVolume& lv, ObjectSource& kept, TreeOverlay& overlay) {
    DVOL_CHECK(check_lazy_live_dir(paths_->live_dir(v.name), v.name));
    std::string layer_dir = lv.cache_dir + "/layer";
    DVOL_TRY(auto base, layer_base(layer_dir));
    if (!base) return std::optional<ObjectId>();
    flush_live_mount(paths_->live_dir(v.name));
    DVOL_TRY(ObjectId base_top, commit_tree(*base));
    LayerTreeSinks sinks;
    sinks.meta = [&overlay](const ObjectId& id, std::span<const std::byte> bytes) -> Status {
        if (auto t = decode_tree(bytes)) overlay.emplace(id, std::move(*t));  // extent lists are not needed
        return {};
    };
    DVOL_TRY(auto live, build_layer_tree(kept, base_top, layer_dir, sinks));
    return std::optional<ObjectId>(live.top);
}

Result<std::vector<Change>> Repository::status(const std::string& volume, const WarnFn& warn) {
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(bool lazy, is_lazy(v.id));
    if (lazy) {
        // Without a write layer its live directory is the mount of its tip. With one,
        // the live state is the layer's base with the layer applied (repo/layer_tree.h), compared
        // with the tip; no chunk is fetched.
        DVOL_TRY(auto lv, lazy_volume(volume));
        auto kept = open_kept_objects(lv->cache_dir);
        TreeOverlay overlay;
        DVOL_TRY(auto live, lazy_live_tree(v, *lv, *kept, overlay));
        if (!live) return std::vector<Change>();
        return diff_trees(*kept, &overlay, &lv->tree, &*live);
    }
    DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
    return live_changes(v, warn);
}

Result<CheckoutOutcome> Repository::checkout(const std::string& volume, const std::string& branch, CheckoutMode mode, bool force,
                                             const ProgressFn& progress, const LiveDataHooks& hooks) {
    DVOL_TRY(auto v, find_volume(volume));
    if (!valid_name(branch)) return make_error(Errc::invalid_argument, invalid_name_message(branch, "branch name"));
    DVOL_TRY(auto lock, VolumeLock::acquire(*paths_, volume, wait_notice_));
    DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
    DVOL_TRY(v, find_volume(volume));  // the active branch as it is under the lock
    DVOL_TRY(auto target, refs_->branch(v.id, branch));
    if (mode == CheckoutMode::create && target) return make_error(Errc::already_exists, fmt::format("Cannot create existing branch {}", branch));
    if (mode == CheckoutMode::switch_branch && !target)
        return make_error(Errc::not_found, fmt::format("Cannot switch to a non-existing branch {}", branch));
    CheckoutOutcome out;
    if (target && branch == v.branch) {
        out.kind = CheckoutOutcome::Kind::already_on;
        return out;
    }
    if (!target) {
        DVOL_TRY(auto tip, head(v));
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_CHECK(refs_->add_branch(v.id, branch, tip));
        DVOL_CHECK(refs_->set_active_branch(v.id, branch));
        DVOL_CHECK(refs_->log_ref(v.id, branch, std::nullopt, tip, fmt::format("branch: created from {}", v.branch)));
        DVOL_CHECK(txn.commit());
        out.kind = CheckoutOutcome::Kind::created;
        out.restore.id = tip.value_or(ObjectId{});
        return out;
    }
    DVOL_TRY(bool lazy, is_lazy(v.id));
    if (lazy) return checkout_lazy(v, branch, *target, force, hooks);
    if (!force) DVOL_CHECK(refuse_uncommitted(v, "use --force to discard them"));
    DVOL_CHECK(prepare_write());
    std::optional<ObjectId> tree;
    if (target->tip) { DVOL_TRY(tree, commit_tree(*target->tip)); }
    DVOL_TRY(auto verified, verify_restore(v, tree ? &*tree : nullptr));
    Quiesced quiet(hooks);
    DVOL_CHECK(quiet.start());
    // Checked again now that nothing writes: what changed between the first look and the
    // quiesce would otherwise be lost.
    if (!force) DVOL_CHECK(refuse_uncommitted(v, "use --force to discard them"));
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_CHECK(refs_->set_active_branch(v.id, branch));
        DVOL_CHECK(txn.commit());
    }
    auto restored = materialise(v, tree ? &*tree : nullptr, target->tip.value_or(ObjectId{}), std::move(verified), progress);
    if (!restored) return unfinished(std::move(restored).error(), fmt::format("the active branch of {} is now {}", volume, branch));
    out.restore = std::move(*restored);
    return out;
}

// A commit a lazy volume is moved to has its top tree with the volume's kept objects (fetched by
// the clone or a pull, or made by its commits): checked before anything changes.
Status Repository::require_kept_tree(const LazyVolume& lv, const ObjectId& commit) {
    DVOL_TRY(ObjectId tree, commit_tree(commit));
    auto kept = open_kept_objects(lv.cache_dir);
    DVOL_TRY(auto top, load_tree(*kept, nullptr, tree));
    (void)top;
    return {};
}

// A lazy volume's live directory is its mount of the tip and the write layer over it. A branch at
// the same commit changes nothing the mount shows (the layer stays, as git keeps uncommitted
// changes); another commit is what reset --hard does: the layer is dropped and the hooks unmount
// the live directory (containers stopped) and mount it again on the branch's tip.
Result<CheckoutOutcome> Repository::checkout_lazy(const Volume& v, const std::string& branch, const meta::BranchRow& target, bool force,
                                                  const LiveDataHooks& hooks) {
    CheckoutOutcome out;
    DVOL_TRY(auto tip, head(v));
    out.restore.id = target.tip.value_or(ObjectId{});
    if (target.tip != tip) {
        if (!target.tip)
            return make_error(Errc::unsupported, fmt::format("branch {} of lazy volume {} has no commit to mount", branch, v.name));
        DVOL_TRY(auto lv, lazy_volume(v.name));
        DVOL_CHECK(require_kept_tree(*lv, *target.tip));
        if (!force) DVOL_CHECK(refuse_uncommitted(v, "use --force to discard them"));
        Quiesced quiet(hooks);
        DVOL_CHECK(quiet.start());
        // Checked again now that nothing writes (the mount is gone).
        if (!force) DVOL_CHECK(refuse_uncommitted(v, "use --force to discard them"));
        {
            DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
            DVOL_CHECK(refs_->set_active_branch(v.id, branch));
            DVOL_CHECK(txn.commit());
        }
        DVOL_CHECK(remove_tree(lv->cache_dir + "/layer"));
        return out;
    }
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    DVOL_CHECK(refs_->set_active_branch(v.id, branch));
    DVOL_CHECK(txn.commit());
    return out;
}

Result<std::vector<FileDiff>> Repository::diff(const std::string& volume, const std::optional<std::string>& from,
                                               const std::optional<std::string>& to, const std::string& path, const WarnFn& warn) {
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(bool lazy, is_lazy(v.id));
    DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
    TreeOverlay overlay;
    std::optional<ObjectId> from_tree, to_tree;
    ObjectId live_top;
    bool to_live = !to;
    if (from) {
        DVOL_TRY(auto c, resolve_in(v, *from));
        DVOL_TRY(from_tree, commit_tree(c));
    } else {
        DVOL_TRY(auto tip, head(v));
        if (tip) { DVOL_TRY(from_tree, commit_tree(*tip)); }
    }
    if (to) {
        DVOL_TRY(auto c, resolve_in(v, *to));
        DVOL_TRY(to_tree, commit_tree(c));
    }
    // Where trees and content are read: the store; for a lazy volume, its kept objects (trees and
    // extent lists) and its remote (the base's chunks, read without the cache its mount holds)
    // after the store (its own commits' chunks).
    ObjectSource* source = store_.get();
    std::unique_ptr<ObjectSource> kept, remote;
    std::unique_ptr<LocalFirst> store_kept, lazy_source;
    if (lazy) {
        DVOL_TRY(auto lv, lazy_volume(volume));
        kept = open_kept_objects(lv->cache_dir);
        if (!to) {
            // The live state: the tip with the write layer applied; without a layer, the tip.
            DVOL_TRY(auto live, lazy_live_tree(v, *lv, *kept, overlay));
            to_live = live.has_value();
            to_tree = live.value_or(lv->tree);
            if (!from && !live) return std::vector<FileDiff>();
        }
        DVOL_TRY(remote, open_lazy_remote(*lv));
        store_kept = std::make_unique<LocalFirst>(*store_, *kept);
        lazy_source = std::make_unique<LocalFirst>(*store_kept, *remote);
        source = lazy_source.get();
    } else if (!to) {
        StatCache cache(*db_, v.id, cache_damage());
        Scanner scanner(*store_, cache, false, warn);
        DVOL_TRY(live_top, scanner.scan(paths_->live_dir(volume)));
        overlay = std::move(scanner.overlay());
        to_tree = live_top;
    }
    std::string prefix = path;
    while (prefix.starts_with("./")) prefix.erase(0, 2);
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    if (prefix == ".") prefix.clear();
    DVOL_TRY(auto changes, diff_trees(*source, &overlay, from_tree ? &*from_tree : nullptr, &*to_tree, prefix));
    if (changes.empty() && !prefix.empty()) {
        // Nothing changed there, or nothing is there: say which (as git does for a path that
        // matches no file).
        bool found = false;
        for (const auto* top : {from_tree ? &*from_tree : nullptr, &*to_tree}) {
            if (!top || found) continue;
            DVOL_TRY(found, path_in_tree(*source, &overlay, *top, prefix));
        }
        if (!found) return make_error(Errc::not_found, fmt::format("path '{}' matches nothing in {} or {}", path, from.value_or("HEAD"),
                                                                   to.value_or("the live directory")));
    }

    std::vector<FileDiff> out;
    for (auto& ch : changes) {
        FileDiff fd{ch, {}};
        const TreeEntry* a = ch.old_entry && ch.old_entry->type == EntryType::file ? &*ch.old_entry : nullptr;
        const TreeEntry* b = ch.new_entry && ch.new_entry->type == EntryType::file ? &*ch.new_entry : nullptr;
        bool content = ch.kind == ChangeKind::added || ch.kind == ChangeKind::deleted || ch.kind == ChangeKind::modified ||
                       ch.kind == ChangeKind::type_changed;
        if (!content || (!a && !b)) {
            out.push_back(std::move(fd));
            continue;
        }
        auto read_side = [&](const TreeEntry* e, bool live) -> Result<std::optional<std::string>> {
            if (!e) return std::optional<std::string>();
            if (e->size > kMaxTextDiffSize) return std::optional<std::string>();
            if (!live) return read_content(*source, e->content, e->size, kMaxTextDiffSize);
            DVOL_TRY(UniqueFd live_fd, open_dir_nofollow(paths_->live_dir(volume)));
            DVOL_TRY(UniqueFd f, open_path_beneath(live_fd.get(), ch.path, O_RDONLY, ch.path));
            std::string data(e->size, '\0');
            DVOL_TRY(size_t n, read_some(f.get(), std::as_writable_bytes(std::span(data)), ch.path));
            data.resize(n);
            return std::optional<std::string>(std::move(data));
        };
        DVOL_TRY(auto old_text, read_side(a, false));
        DVOL_TRY(auto new_text, read_side(b, to_live));
        bool too_big = (a && !old_text) || (b && !new_text);
        bool binary = (old_text && looks_binary(*old_text)) || (new_text && looks_binary(*new_text));
        if (too_big || binary) {
            fd.patch = fmt::format("{} files {} and {} differ ({} -> {} bytes)\n", too_big ? "Large" : "Binary",
                                   a ? "a/" + ch.path : "/dev/null", b ? "b/" + ch.path : "/dev/null", a ? a->size : 0, b ? b->size : 0);
        } else {
            DVOL_TRY(fd.patch, unified_diff(ch.path, a ? old_text : std::nullopt, a ? a->mode : 0,
                                            b ? new_text : std::nullopt, b ? b->mode : 0));
        }
        out.push_back(std::move(fd));
    }
    return out;
}

Result<std::optional<std::string>> Repository::config_get(const std::string& key) { return refs_->config(key); }

Status Repository::config_set(const std::string& key, const std::string& value) { return refs_->set_config(key, value); }

}  // namespace dvol
