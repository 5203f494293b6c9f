#include "repo/repository.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <unordered_set>

#include <fmt/format.h>

#include "diff/text_diff.h"
#include "meta/schema.h"
#include "repo/content.h"
#include "repo/restore.h"
#include "repo/stat_cache.h"

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

Result<VolumeLock> VolumeLock::acquire(const std::string& volume_dir, const WarnFn& waiting) {
    DVOL_TRY(UniqueFd fd, open_file(volume_dir + "/lock", O_RDWR | O_CREAT, 0600));
    int rc = ::flock(fd.get(), LOCK_EX | LOCK_NB);
    if (rc != 0 && errno == EWOULDBLOCK) {
        auto slash = volume_dir.find_last_of('/');
        if (waiting) waiting(fmt::format("waiting for another dvol command on volume {} to finish", volume_dir.substr(slash + 1)));
        do rc = ::flock(fd.get(), LOCK_EX);
        while (rc != 0 && errno == EINTR);
    }
    if (rc != 0) return errno_error("lock", volume_dir + "/lock");
    return VolumeLock(std::move(fd));
}

Repository::~Repository() = default;

Result<std::unique_ptr<Repository>> Repository::open(const std::string& root) {
    std::unique_ptr<Repository> r(new Repository());
    r->root_ = root;
    auto made = make_dirs(root + "/volumes");
    if (!made) return make_error(made.error().code, fmt::format("cannot use {} as the dvol store: {}", root, made.error().message));
    DVOL_TRY(r->db_, meta::Db::open(root + "/dvol.db"));
    DVOL_CHECK(meta::init_schema(*r->db_));
    DVOL_TRY(r->store_, ObjectStore::open(root, *r->db_));
    return r;
}

Status Repository::prepare_write() {
    if (cleaned_) return {};
    cleaned_ = true;
    return store_->cleanup();
}

std::string Repository::live_dir(const std::string& volume) const { return root_ + "/volumes/" + volume + "/data"; }

Result<Repository::Volume> Repository::find_volume(const std::string& name) {
    if (!valid_name(name)) return make_error(Errc::invalid_argument, invalid_name_message(name, "name"));
    DVOL_TRY(auto q, db_->prepare("SELECT id, active_branch FROM volumes WHERE name = ?"));
    q.bind(1, name);
    DVOL_TRY(bool row, q.step());
    if (!row) return make_error(Errc::not_found, fmt::format("{} does not exist", name));
    return Volume{q.int64(0), name, q.text(1)};
}

Status Repository::create_volume(const std::string& name, bool make_active) {
    if (!valid_name(name)) return make_error(Errc::invalid_argument, invalid_name_message(name, "name"));
    {
        DVOL_TRY(auto q, db_->prepare("SELECT 1 FROM volumes WHERE name = ?"));
        q.bind(1, name);
        DVOL_TRY(bool row, q.step());
        if (row) return make_error(Errc::already_exists, fmt::format("volume {} already exists", name));
    }
    // A directory without a row is the leftover of an interrupted rm: clear it first.
    std::string vdir = root_ + "/volumes/" + name;
    DVOL_CHECK(remove_tree(vdir));
    DVOL_CHECK(make_dirs(vdir + "/data", 0755));
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    {
        DVOL_TRY(auto ins, db_->prepare("INSERT INTO volumes(name, active_branch, created_ns) VALUES(?, 'master', ?)"));
        auto st = ins.bind(1, name).bind(2, now_ns()).run();
        if (!st) {
            if (st.error().code == Errc::already_exists) return make_error(Errc::already_exists, fmt::format("volume {} already exists", name));
            return st;
        }
    }
    int64_t id = db_->last_insert_rowid();
    {
        DVOL_TRY(auto ins, db_->prepare("INSERT INTO branches(volume_id, name, tip) VALUES(?, 'master', NULL)"));
        DVOL_CHECK(ins.bind(1, id).run());
    }
    if (make_active) {
        DVOL_TRY(auto ins, db_->prepare("INSERT OR REPLACE INTO config(key, value) VALUES(?, ?)"));
        DVOL_CHECK(ins.bind(1, kActiveVolumeKey).bind(2, name).run());
    }
    DVOL_CHECK(txn.commit());
    return fsync_dir(root_ + "/volumes");
}

Result<std::optional<std::string>> Repository::active_volume() {
    DVOL_TRY(auto v, config_get(kActiveVolumeKey));
    if (!v) return v;
    // The active volume may have been removed by another process.
    DVOL_TRY(auto q, db_->prepare("SELECT 1 FROM volumes WHERE name = ?"));
    q.bind(1, *v);
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<std::string>();
    return v;
}

Result<std::vector<VolumeInfo>> Repository::list_volumes() {
    DVOL_TRY(auto active, active_volume());
    std::vector<VolumeInfo> out;
    DVOL_TRY(auto q, db_->prepare("SELECT name, active_branch FROM volumes ORDER BY name"));
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        VolumeInfo v{q.text(0), q.text(1), false};
        v.active = active && *active == v.name;
        out.push_back(std::move(v));
    }
    return out;
}

Status Repository::switch_volume(const std::string& name) {
    DVOL_TRY(auto v, find_volume(name));
    return config_set(kActiveVolumeKey, v.name);
}

Result<std::string> Repository::resolve_volume(const std::optional<std::string>& arg) {
    if (arg) {
        if (!valid_name(*arg)) return make_error(Errc::invalid_argument, invalid_name_message(*arg, "name"));
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
        if (v.error().code == Errc::not_found) return make_verbatim_error(Errc::not_found, fmt::format("Volume '{}' does not exist, cannot remove it", name));
        return std::move(v).error();
    }
    std::string vdir = root_ + "/volumes/" + name;
    DVOL_TRY(auto lock, VolumeLock::acquire(vdir, wait_notice_));
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_TRY(auto del, db_->prepare("DELETE FROM volumes WHERE id = ?"));
        DVOL_CHECK(del.bind(1, v->id).run());
        DVOL_TRY(auto act, db_->prepare("DELETE FROM config WHERE key = ? AND value = ?"));
        DVOL_CHECK(act.bind(1, kActiveVolumeKey).bind(2, name).run());
        DVOL_CHECK(txn.commit());
    }
    // The rows are gone; the directory is now garbage. Move it aside first so a new volume of
    // the same name never sees half of it.
    std::string trash = root_ + "/tmp/rm-" + random_name();
    if (::rename(vdir.c_str(), trash.c_str()) != 0) return errno_error("move aside", vdir);
    return remove_tree(trash);
}

Result<std::optional<ObjectId>> Repository::branch_tip(int64_t volume_id, const std::string& branch, bool* exists) {
    DVOL_TRY(auto q, db_->prepare("SELECT tip FROM branches WHERE volume_id = ? AND name = ?"));
    q.bind(1, volume_id).bind(2, branch);
    DVOL_TRY(bool row, q.step());
    if (exists) *exists = row;
    if (!row || q.is_null(0)) return std::optional<ObjectId>();
    auto b = q.blob_view(0);
    if (b.size() != ObjectId::size) return make_error(Errc::corrupt, fmt::format("branch {} has a malformed tip", branch));
    return std::optional<ObjectId>(ObjectId::from_bytes(b));
}

Result<Commit> Repository::load_commit(const ObjectId& id) {
    DVOL_TRY(auto q, db_->prepare("SELECT encoded FROM commits WHERE id = ? LIMIT 1"));
    q.bind_blob(1, id.as_span());
    DVOL_TRY(bool row, q.step());
    if (!row) return make_error(Errc::not_found, fmt::format("commit {} is not in the store", id.hex()));
    auto enc = q.blob_view(0);
    if (sha256(enc) != id) return make_error(Errc::corrupt, fmt::format("commit {} is corrupt: its content does not match its id", id.hex()));
    auto c = decode_commit(enc);
    if (!c) return make_error(Errc::corrupt, fmt::format("commit {}: {}", id.hex(), c.error().message));
    return c;
}

Result<ObjectId> Repository::commit_tree(const ObjectId& commit) {
    DVOL_TRY(auto c, load_commit(commit));
    return c.tree;
}

Result<Identity> Repository::identity() {
    DVOL_TRY(auto name, config_get("user.name"));
    DVOL_TRY(auto email, config_get("user.email"));
    if (!name || !email) {
        auto git = git_identity();
        if (!name) name = git.name;
        if (!email) email = git.email;
    }
    std::string user;
    if (const passwd* pw = ::getpwuid(::geteuid())) user = pw->pw_name;
    if (user.empty()) user = "dvol";
    if (!name) name = user;
    if (!email) {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        email = fmt::format("{}@{}", user, host[0] ? host : "localhost");
    }
    return Identity{*name, *email};
}

Result<CommitOutcome> Repository::commit(const std::string& volume, const std::string& message, const WarnFn& warn,
                                         const ProgressFn& progress) {
    if (message.empty()) return make_verbatim_error(Errc::invalid_argument, "You must provide a commit message");
    DVOL_TRY(auto who, identity());
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(auto lock, VolumeLock::acquire(root_ + "/volumes/" + volume, wait_notice_));
    DVOL_TRY(auto store_lock, StoreLock::acquire(root_, false, wait_notice_));
    DVOL_TRY(v, find_volume(volume));  // the active branch as it is under the lock
    DVOL_CHECK(prepare_write());
    DVOL_TRY(auto parent, branch_tip(v.id, v.branch));

    StatCache cache(*db_, v.id);
    Scanner scanner(*store_, cache, true, warn);
    scanner.set_progress(progress);
    uint64_t before = store_->stats().bytes_written;
    DVOL_TRY(ObjectId top, scanner.scan(live_dir(volume)));
    DVOL_CHECK(store_->flush());  // every object is durable before anything names it

    Commit c;
    c.tree = top;
    if (parent) c.parents.push_back(*parent);
    c.author_name = who.name;
    c.author_email = who.email;
    c.time = static_cast<int64_t>(::time(nullptr));
    struct tm tm_local;
    time_t t = static_cast<time_t>(c.time);
    ::localtime_r(&t, &tm_local);
    c.tz_offset_min = static_cast<int>(tm_local.tm_gmtoff / 60);
    c.message = message;
    DVOL_TRY(auto enc, encode_commit(c));
    ObjectId id = sha256(enc);

    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    {
        DVOL_TRY(auto ins, db_->prepare("INSERT OR IGNORE INTO commits(id, volume_id, tree, time, encoded) VALUES(?, ?, ?, ?, ?)"));
        DVOL_CHECK(ins.bind_blob(1, id.as_span()).bind(2, v.id).bind_blob(3, top.as_span()).bind(4, c.time).bind_blob(5, enc).run());
    }
    {
        DVOL_TRY(auto up, db_->prepare("UPDATE branches SET tip = ? WHERE volume_id = ? AND name = ?"));
        DVOL_CHECK(up.bind_blob(1, id.as_span()).bind(2, v.id).bind(3, v.branch).run());
    }
    DVOL_CHECK(log_ref(v.id, v.branch, parent, id, fmt::format("commit{}: {}", parent ? "" : " (initial)", message.substr(0, message.find('\n')))));
    DVOL_CHECK(scanner.save_cache());
    DVOL_CHECK(txn.commit());
    {
        // Rows of files deleted since they were cached are dead weight; drop them when there
        // are more rows than files.
        DVOL_TRY(auto q, db_->prepare("SELECT count(*) FROM stat_cache WHERE volume_id = ?"));
        q.bind(1, v.id);
        DVOL_TRY(bool row, q.step());
        if (row && static_cast<uint64_t>(q.int64(0)) > scanner.stats().files) {
            DVOL_TRY(auto txn2, meta::Db::Transaction::begin(*db_));
            DVOL_CHECK(cache.prune(live_dir(volume)));
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
    DVOL_TRY(auto tip, branch_tip(v.id, v.branch));
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
    size_t end = ref.find_first_of("^~");
    std::string base = ref.substr(0, end);
    std::string suffix = end == std::string::npos ? "" : ref.substr(end);
    auto unknown = [&] {
        return make_error(Errc::not_found, fmt::format("unknown revision '{}' in volume {} (use HEAD, HEAD^, HEAD~N, a branch or a commit id)", ref, volume));
    };
    if (base.empty()) return unknown();

    std::optional<ObjectId> id;
    if (base == "HEAD") {
        DVOL_TRY(auto tip, branch_tip(v.id, v.branch));
        if (!tip) return make_error(Errc::not_found, fmt::format("branch {} of {} has no commits yet", v.branch, volume));
        id = tip;
    } else {
        bool is_branch = false;
        if (valid_name(base)) {
            DVOL_TRY(auto tip, branch_tip(v.id, base, &is_branch));
            if (is_branch) {
                if (!tip) return make_error(Errc::not_found, fmt::format("branch {} of {} has no commits yet", base, volume));
                id = tip;
            }
        }
        if (!is_branch) {
            if (is_hex(base) && base.size() < 4)
                return make_error(Errc::invalid_argument, fmt::format("commit id prefix '{}' is too short: give at least 4 hex digits", base));
            if (!is_hex(base) || base.size() > 64) return unknown();
            std::string lo = lower(base), hi = lo;
            lo.append(64 - lo.size(), '0');
            hi.append(64 - hi.size(), 'f');
            auto lo_id = ObjectId::from_hex(lo), hi_id = ObjectId::from_hex(hi);
            DVOL_TRY(auto q, db_->prepare("SELECT id FROM commits WHERE volume_id = ? AND id >= ? AND id <= ? LIMIT 2"));
            q.bind(1, v.id).bind_blob(2, lo_id->as_span()).bind_blob(3, hi_id->as_span());
            std::vector<ObjectId> found;
            for (;;) {
                DVOL_TRY(bool row, q.step());
                if (!row) break;
                found.push_back(ObjectId::from_bytes(q.blob_view(0)));
            }
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

Result<ResetOutcome> Repository::reset_hard(const std::string& volume, const std::string& ref, const ProgressFn& progress) {
    DVOL_TRY(auto v, find_volume(volume));
    {
        // Bad refs fail before anything (even a lock file) is created.
        DVOL_TRY(ObjectId early, resolve_ref(volume, ref));
        (void)early;
    }
    DVOL_TRY(auto lock, VolumeLock::acquire(root_ + "/volumes/" + volume, wait_notice_));
    DVOL_TRY(auto store_lock, StoreLock::acquire(root_, false, wait_notice_));
    // Under the locks: the active branch, the ref and the commit cannot change or go away now.
    DVOL_TRY(v, find_volume(volume));
    DVOL_TRY(ObjectId target, resolve_ref(volume, ref));
    DVOL_TRY(ObjectId tree, commit_tree(target));
    DVOL_CHECK(prepare_write());
    // Every object the restore will need is read and verified before anything changes: a
    // damaged store fails here and leaves the branch and the live directory as they were.
    DVOL_TRY(auto verified, verify_restore(v, &tree));
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_TRY(auto old_tip, branch_tip(v.id, v.branch));
        DVOL_TRY(auto up, db_->prepare("UPDATE branches SET tip = ? WHERE volume_id = ? AND name = ?"));
        DVOL_CHECK(up.bind_blob(1, target.as_span()).bind(2, v.id).bind(3, v.branch).run());
        DVOL_CHECK(log_ref(v.id, v.branch, old_tip, target, fmt::format("reset: moving to {}", ref)));
        DVOL_CHECK(txn.commit());
    }
    return materialise(v, &tree, target, std::move(verified), progress);
}

Result<Restorer::ChunkSet> Repository::verify_restore(const Volume& v, const ObjectId* tree) {
    StatCache cache(*db_, v.id);
    Restorer restorer(*store_, cache);
    DVOL_CHECK(restorer.verify(live_dir(v.name), tree));
    return restorer.take_verified();
}

Result<ResetOutcome> Repository::materialise(const Volume& v, const ObjectId* tree, const ObjectId& commit,
                                             Restorer::ChunkSet verified, const ProgressFn& progress) {
    StatCache cache(*db_, v.id);
    cache.begin_batch();  // the write lock is taken only for the final batch, not the whole restore
    Restorer restorer(*store_, cache);
    restorer.trust(std::move(verified));
    restorer.set_progress(progress);
    Status restored = restorer.restore(live_dir(v.name), tree);
    {
        // The rows of whatever was done are saved even when the restore failed half-way.
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_CHECK(cache.write_batch());
        DVOL_CHECK(txn.commit());
    }
    DVOL_CHECK(restored);
    return ResetOutcome{commit, restorer.stats().files_written, restorer.stats().bytes_written, restorer.stats().removed,
                        restorer.warnings()};
}

Result<std::vector<BranchInfo>> Repository::branches(const std::string& volume) {
    DVOL_TRY(auto v, find_volume(volume));
    std::vector<BranchInfo> out;
    DVOL_TRY(auto q, db_->prepare("SELECT name, tip FROM branches WHERE volume_id = ? ORDER BY name"));
    q.bind(1, v.id);
    for (;;) {
        DVOL_TRY(bool row, q.step());
        if (!row) break;
        BranchInfo b{q.text(0), std::nullopt, false};
        if (!q.is_null(1) && q.blob_view(1).size() == ObjectId::size) b.tip = ObjectId::from_bytes(q.blob_view(1));
        b.active = b.name == v.branch;
        out.push_back(std::move(b));
    }
    return out;
}

Result<std::string> Repository::active_branch(const std::string& volume) {
    DVOL_TRY(auto v, find_volume(volume));
    return v.branch;
}

Status Repository::delete_branch(const std::string& volume, const std::string& branch, bool force) {
    DVOL_TRY(auto v, find_volume(volume));
    if (!valid_name(branch)) return make_error(Errc::invalid_argument, invalid_name_message(branch, "branch name"));
    if (branch == v.branch) return make_verbatim_error(Errc::conflict, fmt::format("Cannot delete the active branch {}; check out another branch first", branch));
    bool exists = false;
    DVOL_TRY(auto tip, branch_tip(v.id, branch, &exists));
    if (!exists) return make_error(Errc::not_found, fmt::format("branch {} does not exist in volume {}", branch, volume));
    if (tip && !force) {
        // Is the tip in the history of another branch? Walk every other branch's parents.
        DVOL_TRY(auto all, branches(volume));
        bool reached = false;
        for (const auto& b : all) {
            if (b.name == branch || !b.tip) continue;
            std::vector<ObjectId> todo{*b.tip};
            std::unordered_set<ObjectId, ObjectIdHash> seen;
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
    {
        DVOL_TRY(auto del, db_->prepare("DELETE FROM branches WHERE volume_id = ? AND name = ?"));
        DVOL_CHECK(del.bind(1, v.id).bind(2, branch).run());
    }
    if (db_->changes() == 0) return make_error(Errc::not_found, fmt::format("branch {} does not exist in volume {}", branch, volume));
    DVOL_CHECK(log_ref(v.id, branch, tip, std::nullopt, "branch: deleted"));
    return txn.commit();
}

Result<std::vector<Change>> Repository::live_changes(const Volume& v, const WarnFn& warn, TreeOverlay& overlay, ObjectId& live_top) {
    DVOL_TRY(auto tip, branch_tip(v.id, v.branch));
    std::optional<ObjectId> head_tree;
    if (tip) { DVOL_TRY(head_tree, commit_tree(*tip)); }
    StatCache cache(*db_, v.id);
    Scanner scanner(*store_, cache, false, warn);
    DVOL_TRY(live_top, scanner.scan(live_dir(v.name)));
    overlay = std::move(scanner.overlay());
    if (!head_tree) {
        // No commit yet: everything in the live directory is new.
        return diff_trees(*store_, &overlay, nullptr, &live_top);
    }
    return diff_trees(*store_, &overlay, &*head_tree, &live_top);
}

Result<std::vector<Change>> Repository::status(const std::string& volume, const WarnFn& warn) {
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(auto store_lock, StoreLock::acquire(root_, false, wait_notice_));
    TreeOverlay overlay;
    ObjectId top;
    return live_changes(v, warn, overlay, top);
}

namespace {

// checkout()'s refusal, if any, for a branch that exists or not.
Status checkout_refusal(const std::string& branch, bool exists, bool create) {
    if (create && exists) return make_verbatim_error(Errc::already_exists, fmt::format("Cannot create existing branch {}", branch));
    if (!create && !exists) return make_verbatim_error(Errc::not_found, fmt::format("Cannot switch to a non-existing branch {}", branch));
    return {};
}

}  // namespace

Result<bool> Repository::branch_exists(const std::string& volume, const std::string& branch) {
    DVOL_TRY(auto v, find_volume(volume));
    bool exists = false;
    DVOL_TRY(auto tip, branch_tip(v.id, branch, &exists));
    (void)tip;
    return exists;
}

Status Repository::check_checkout(const std::string& volume, const std::string& branch, bool create) {
    if (!valid_name(branch)) return make_error(Errc::invalid_argument, invalid_name_message(branch, "branch name"));
    DVOL_TRY(bool exists, branch_exists(volume, branch));
    return checkout_refusal(branch, exists, create);
}

Result<ResetOutcome> Repository::checkout(const std::string& volume, const std::string& branch, bool create, bool force,
                                          const ProgressFn& progress) {
    DVOL_TRY(auto v, find_volume(volume));
    if (!valid_name(branch)) return make_error(Errc::invalid_argument, invalid_name_message(branch, "branch name"));
    DVOL_TRY(auto lock, VolumeLock::acquire(root_ + "/volumes/" + volume, wait_notice_));
    DVOL_TRY(auto store_lock, StoreLock::acquire(root_, false, wait_notice_));
    DVOL_TRY(v, find_volume(volume));  // the active branch as it is under the lock
    bool exists = false;
    DVOL_TRY(auto target_tip, branch_tip(v.id, branch, &exists));
    DVOL_CHECK(checkout_refusal(branch, exists, create));
    if (create) {
        DVOL_TRY(auto tip, branch_tip(v.id, v.branch));
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        {
            DVOL_TRY(auto ins, db_->prepare("INSERT INTO branches(volume_id, name, tip) VALUES(?, ?, ?)"));
            ins.bind(1, v.id).bind(2, branch);
            if (tip) ins.bind_blob(3, tip->as_span());
            else ins.bind_null(3);
            DVOL_CHECK(ins.run());
        }
        {
            DVOL_TRY(auto up, db_->prepare("UPDATE volumes SET active_branch = ? WHERE id = ?"));
            DVOL_CHECK(up.bind(1, branch).bind(2, v.id).run());
        }
        DVOL_CHECK(log_ref(v.id, branch, std::nullopt, tip, fmt::format("branch: created from {}", v.branch)));
        DVOL_CHECK(txn.commit());
        return ResetOutcome{tip.value_or(ObjectId{}), 0, 0, 0, {}};
    }
    if (!force) {
        TreeOverlay overlay;
        ObjectId top;
        DVOL_TRY(auto changes, live_changes(v, nullptr, overlay, top));
        if (!changes.empty())
            return make_error(Errc::conflict, fmt::format("{} has uncommitted changes ({} path(s)); commit them, or use --force to discard them",
                                                          volume, changes.size()));
    }
    DVOL_CHECK(prepare_write());
    std::optional<ObjectId> tree;
    if (target_tip) { DVOL_TRY(tree, commit_tree(*target_tip)); }
    DVOL_TRY(auto verified, verify_restore(v, tree ? &*tree : nullptr));
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_TRY(auto up, db_->prepare("UPDATE volumes SET active_branch = ? WHERE id = ?"));
        DVOL_CHECK(up.bind(1, branch).bind(2, v.id).run());
        DVOL_CHECK(txn.commit());
    }
    return materialise(v, tree ? &*tree : nullptr, target_tip.value_or(ObjectId{}), std::move(verified), progress);
}

Result<std::vector<FileDiff>> Repository::diff(const std::string& volume, const std::optional<std::string>& from,
                                               const std::optional<std::string>& to, const std::string& path, const WarnFn& warn) {
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(auto store_lock, StoreLock::acquire(root_, false, wait_notice_));
    TreeOverlay overlay;
    std::optional<ObjectId> from_tree, to_tree;
    ObjectId live_top;
    bool to_live = !to;
    if (from) {
        DVOL_TRY(auto c, resolve_ref(volume, *from));
        DVOL_TRY(from_tree, commit_tree(c));
    } else {
        DVOL_TRY(auto tip, branch_tip(v.id, v.branch));
        if (tip) { DVOL_TRY(from_tree, commit_tree(*tip)); }
    }
    if (to) {
        DVOL_TRY(auto c, resolve_ref(volume, *to));
        DVOL_TRY(to_tree, commit_tree(c));
    } else {
        StatCache cache(*db_, v.id);
        Scanner scanner(*store_, cache, false, warn);
        DVOL_TRY(live_top, scanner.scan(live_dir(volume)));
        overlay = std::move(scanner.overlay());
        to_tree = live_top;
    }
    std::string prefix = path;
    while (prefix.starts_with("./")) prefix.erase(0, 2);
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    if (prefix == ".") prefix.clear();
    DVOL_TRY(auto changes, diff_trees(*store_, &overlay, from_tree ? &*from_tree : nullptr, &*to_tree, prefix));

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
            if (!live) return read_content(*store_, e->content, e->size, kMaxTextDiffSize);
            DVOL_TRY(UniqueFd f, open_file(live_dir(volume) + "/" + ch.path, O_RDONLY | O_NOFOLLOW));
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
            DVOL_TRY(fd.patch, unified_diff(ch.path, a ? old_text : std::nullopt, b ? new_text : std::nullopt));
        }
        out.push_back(std::move(fd));
    }
    return out;
}

Result<std::optional<std::string>> Repository::config_get(const std::string& key) {
    DVOL_TRY(auto q, db_->prepare("SELECT value FROM config WHERE key = ?"));
    q.bind(1, key);
    DVOL_TRY(bool row, q.step());
    if (!row) return std::optional<std::string>();
    return std::optional<std::string>(q.text(0));
}

Status Repository::config_set(const std::string& key, const std::string& value) {
    DVOL_TRY(auto q, db_->prepare("INSERT OR REPLACE INTO config(key, value) VALUES(?, ?)"));
    return q.bind(1, key).bind(2, value).run();
}

}  // namespace dvol
