// Remotes: their configuration, push, fetch, pull and clone (docs/ARCHITECTURE.md, "Remotes";
// the layout on the remote: docs/FORMAT.md, "Remotes").
//
// Invariants a transfer keeps, on the remote and in the local store alike:
// - a tree (or extent list) is stored only after everything below it, so a tree present means
//   its whole content is present: a walk skips what the other side has without reading it;
// - objects are durable before any ref names them (remote: packs, then their indexes, then the
//   ref's compare-and-swap; local: packs flushed, then commit rows and branches in one
//   transaction).
#include <fcntl.h>

#include <algorithm>
#include <deque>
#include <set>
#include <unordered_map>

#include <fmt/format.h>

#include "base/parallel.h"
#include "meta/db.h"
#include "meta/remote_index.h"
#include "object/commit.h"
#include "remote/layout.h"
#include "remote/open.h"
#include "remote/pack_upload.h"
#include "remote/remote_objects.h"
#include "repo/locks.h"
#include "repo/quiesced.h"
#include "repo/layer_tree.h"
#include "repo/repository.h"
#include "repo/stat_cache.h"
#include "repo/walk.h"
#include "store/chunk_cache.h"
#include "store/local_first.h"
#include "store/object_store.h"
#include "store/paths.h"

namespace dvol {

namespace {

constexpr const char* kUpstreamOption = "remote-volume";   // the remote's name for a cloned volume
constexpr const char* kCloningOption = "clone-incomplete";  // set while a clone is unfinished
constexpr uint64_t kDataPackSize = 64u << 20;
constexpr uint64_t kMetadataPackSize = 16u << 20;

std::string url_key(const std::string& name) { return "remote." + name + ".url"; }
std::string endpoint_key(const std::string& name) { return "remote." + name + ".endpoint"; }

bool looks_like_url(const std::string& s) {
    return s.find("://") != std::string::npos || s.find('/') != std::string::npos || s.starts_with(".");
}

// The commit record a remote holds for commit `id`: its encoding, stored raw.
std::vector<std::byte> commit_record(const ObjectId& id, std::span<const std::byte> encoded) {
    std::vector<std::byte> record(kRecordHeaderSize + encoded.size());
    auto len = static_cast<uint32_t>(encoded.size());
    encode_record_header(record.data(), id, Codec::raw, len, len);
    std::copy(encoded.begin(), encoded.end(), record.begin() + kRecordHeaderSize);
    return record;
}

// Counts transfer bytes for a ProgressFn.
struct Meter {
    const ProgressFn& fn;
    Progress p;
    void add(uint64_t objects, uint64_t bytes) {
        p.files += objects;
        p.bytes += bytes;
        if (fn) fn(p);
    }
};

// The branches (with their tips) and HEAD of a volume on the remote.
struct RemoteVolume {
    bool exists = false;  // the remote has refs of the volume, if only deleted branches
    std::vector<std::pair<std::string, ObjectId>> branches;  // by name
    std::optional<std::string> head;
};

}  // namespace

// A remote opened for one command.
struct Repository::Remote {
    std::string name;  // as the user named it (a remote's name, or its URL)
    std::string url;
    std::string key;  // what the local caches know it by
    std::unique_ptr<remote::Backend> backend;
    int64_t id = 0;  // in meta::RemoteIndex
    // A volume's refs, read (with the marker checked) moments ago by clone to see that the
    // remote has the volume; its fetch takes them instead of reading them again.
    std::optional<std::pair<std::string, RemoteVolume>> volume_refs;
};

Result<std::vector<RemoteConfig>> Repository::remotes() {
    DVOL_TRY(auto rows, refs_->config_with_prefix("remote."));
    std::vector<RemoteConfig> out;
    for (const auto& [key, value] : rows) {
        if (!key.ends_with(".url")) continue;
        std::string name = key.substr(7, key.size() - 7 - 4);
        DVOL_TRY(auto endpoint, refs_->config(endpoint_key(name)));
        out.push_back(RemoteConfig{name, value, endpoint.value_or("")});
    }
    return out;
}

Status Repository::add_remote(const std::string& name, const std::string& url, const std::string& endpoint) {
    if (!valid_name(name)) return make_error(Errc::invalid_argument, invalid_name_message(name, "remote name"));
    if (url.empty()) return make_error(Errc::invalid_argument, "a remote needs a URL: a path, file:///path, s3://bucket/prefix or ssh://host/path");
    DVOL_TRY(auto existing, refs_->config(url_key(name)));
    if (existing) return make_error(Errc::already_exists, fmt::format("remote {} already exists", name));
    // The URL is checked by opening it, which reaches no server.
    std::string stored = url;
    if (!looks_like_url(url) || (url.find("://") == std::string::npos && !url.starts_with("/"))) {
        char* abs = ::realpath(url.c_str(), nullptr);
        if (!abs) return errno_error("find the remote directory", url);
        stored = abs;
        ::free(abs);
    }
    remote::BackendOptions options;
    options.endpoint = endpoint;
    DVOL_TRY(auto backend, remote::open_backend(stored, options));
    (void)backend;
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    DVOL_CHECK(refs_->set_config(url_key(name), stored));
    if (!endpoint.empty()) DVOL_CHECK(refs_->set_config(endpoint_key(name), endpoint));
    return txn.commit();
}

Status Repository::remove_remote(const std::string& name) {
    if (!valid_name(name)) return make_error(Errc::invalid_argument, invalid_name_message(name, "remote name"));
    DVOL_TRY(auto url, refs_->config(url_key(name)));
    if (!url) return make_error(Errc::not_found, fmt::format("no such remote: {}", name));
    DVOL_TRY(auto endpoint, refs_->config(endpoint_key(name)));
    // A lazy volume reads through what this store knows of the remote (its pack indexes).
    DVOL_TRY(auto volumes, refs_->volumes());
    for (const auto& vol : volumes) {
        DVOL_TRY(auto lazy_url, refs_->volume_option(vol.id, kLazyUrlOption));
        DVOL_TRY(auto lazy_endpoint, refs_->volume_option(vol.id, kLazyEndpointOption));
        if (lazy_url == url && lazy_endpoint.value_or("") == endpoint.value_or(""))
            return make_error(Errc::conflict, fmt::format("remote {} is where lazy volume {} fetches its data: remove the volume first", name, vol.name));
    }
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    DVOL_CHECK(refs_->unset_config(url_key(name)));
    DVOL_CHECK(refs_->unset_config(endpoint_key(name)));
    // What this store knew of the remote (its indexes, the remote-tracking branches) goes too.
    DVOL_CHECK(remote_index_->drop_remote(meta::remote_key(*url, endpoint.value_or(""))));
    return txn.commit();
}

Result<Repository::Remote> Repository::open_remote(const RemoteSpec& spec, bool for_push) {
    Remote r;
    r.name = spec.remote;
    std::string endpoint = spec.endpoint;
    if (!looks_like_url(spec.remote)) {
        if (!valid_name(spec.remote)) return make_error(Errc::invalid_argument, invalid_name_message(spec.remote, "remote name"));
        DVOL_TRY(auto url, refs_->config(url_key(spec.remote)));
        if (!url)
            return make_error(Errc::not_found, fmt::format("no remote named {}: add one with 'dvol remote add {} URL', or give a URL",
                                                           spec.remote, spec.remote));
        r.url = *url;
        if (endpoint.empty()) {
            DVOL_TRY(auto configured, refs_->config(endpoint_key(spec.remote)));
            endpoint = configured.value_or("");
        }
    } else {
        r.url = spec.remote;
        if (r.url.find("://") == std::string::npos && !r.url.starts_with("/")) {
            char* abs = ::realpath(r.url.c_str(), nullptr);
            if (!abs) return errno_error("find the remote directory", r.url);
            r.url = abs;
            ::free(abs);
        }
    }
    r.key = meta::remote_key(r.url, endpoint);
    remote::BackendOptions options;
    options.endpoint = endpoint;
    options.create = for_push;
    DVOL_TRY(r.backend, remote::open_backend(r.url, options));
    if (backend_wrapper_) r.backend = backend_wrapper_(std::move(r.backend));
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_TRY(r.id, remote_index_->remote_id(r.key));
        DVOL_CHECK(txn.commit());
    }
    return r;
}

Result<std::string> Repository::remote_volume_of(const Volume& v) {
    DVOL_TRY(auto upstream, refs_->volume_option(v.id, kUpstreamOption));
    return upstream.value_or(v.name);
}

Result<std::optional<ObjectId>> Repository::tracking_tip(const Volume& v, std::string_view name) {
    std::optional<ObjectId> none;
    size_t first = name.find('/'), second = name.find('/', first + 1);
    if (first == std::string_view::npos || second == std::string_view::npos) return none;
    std::string remote(name.substr(0, first)), rv(name.substr(first + 1, second - first - 1)), branch(name.substr(second + 1));
    if (!valid_name(remote) || !valid_name(rv) || !valid_name(branch)) return none;
    DVOL_TRY(std::string mine, remote_volume_of(v));
    if (rv != mine) return none;
    DVOL_TRY(auto url, refs_->config(url_key(remote)));
    if (!url) return none;
    DVOL_TRY(auto endpoint, refs_->config(endpoint_key(remote)));
    std::string key = meta::remote_key(*url, endpoint.value_or(""));
    DVOL_TRY(auto rows, refs_->tracking(v.id));
    for (const auto& t : rows)
        if (t.url == key && t.branch == branch) return std::optional<ObjectId>(t.tip);
    return none;
}

Result<bool> Repository::is_ancestor(const ObjectId& ancestor, const ObjectId& tip) {
    std::vector<ObjectId> todo{tip};
    ObjectIdSet seen;
    while (!todo.empty()) {
        ObjectId cur = todo.back();
        todo.pop_back();
        if (cur == ancestor) return true;
        if (!seen.insert(cur).second) continue;
        DVOL_TRY(auto enc, refs_->commit(cur));
        if (!enc) continue;  // not here: its history is not either
        DVOL_TRY(auto c, load_commit(cur));
        todo.insert(todo.end(), c.parents.begin(), c.parents.end());
    }
    return false;
}

namespace {

// Reads the remote's marker: not_found unless the remote is a dvol remote of a version this
// dvol reads.
// Whether the remote holds dvol's marker; a marker of another kind or version is an error.
Result<bool> has_marker(remote::Backend& backend) {
    std::vector<std::byte> marker;
    // A few bytes more than the marker: enough to tell it from anything else, however large.
    auto st = backend.read(std::string(remote::kMarkerKey), 0, remote::kMarker.size() + 16, marker);
    if (!st && st.error().code == Errc::not_found) return false;
    DVOL_CHECK(st);
    if (as_chars(marker) != remote::kMarker) {
        if (as_chars(marker).starts_with("dvol remote "))
            return make_error(Errc::unsupported, fmt::format("{} is a dvol remote of a version this dvol does not read", backend.location()));
        return make_error(Errc::invalid_argument, fmt::format("{} is not a dvol remote ({} holds something else)", backend.location(),
                                                              remote::kMarkerKey));
    }
    return true;
}

// The remote must be a dvol remote (what readers check first).
Status check_marker(remote::Backend& backend) {
    DVOL_TRY(bool marked, has_marker(backend));
    if (marked) return {};
    // The marker's absence, or the remote's (a bucket that does not exist): a listing tells them
    // apart, and its error names what is missing.
    DVOL_CHECK(backend.list(std::string(remote::kMarkerKey)));
    return make_error(Errc::not_found, fmt::format("{} is not a dvol remote (it has no {} file); push a volume to it first",
                                                   backend.location(), remote::kMarkerKey));
}

struct RemoteRef {
    std::optional<remote::RefValue> value;  // none: no such ref
    std::optional<ObjectId> tip;           // none: no ref, or a tombstone
};

Result<RemoteRef> read_branch_ref(remote::Backend& backend, const std::string& volume, const std::string& branch) {
    RemoteRef out;
    DVOL_TRY(out.value, backend.read_ref(remote::branch_ref_key(volume, branch)));
    if (out.value) {
        auto tip = remote::decode_branch_ref(out.value->data);
        if (!tip)
            return make_error(Errc::corrupt, fmt::format("branch {} of {} on remote {}: {}", branch, volume, backend.location(),
                                                         tip.error().message));
        out.tip = *tip;
    }
    return out;
}

Result<RemoteVolume> read_volume_refs(remote::Backend& backend, const std::string& volume) {
    RemoteVolume out;
    DVOL_TRY(auto keys, backend.list(remote::volume_refs_prefix(volume)));
    out.exists = !keys.empty();
    for (const auto& e : keys) {
        if (e.key == remote::head_key(volume)) {
            DVOL_TRY(auto head, backend.read_ref(e.key));
            if (head) {
                auto name = remote::decode_head(head->data);
                if (name && valid_name(*name)) out.head = *name;
            }
            continue;
        }
        auto branch = remote::branch_of_key(volume, e.key);
        if (!branch || !valid_name(*branch)) continue;
        DVOL_TRY(auto ref, read_branch_ref(backend, volume, *branch));
        if (ref.tip) out.branches.emplace_back(*branch, *ref.tip);
    }
    return out;
}

}  // namespace

Result<std::vector<RemoteBranch>> Repository::show_remote(const RemoteSpec& spec) {
    DVOL_TRY(auto r, open_remote(spec));
    DVOL_CHECK(check_marker(*r.backend));
    DVOL_TRY(auto keys, r.backend->list("refs/"));
    std::set<std::string> volumes;
    for (const auto& e : keys) {
        auto v = remote::volume_of_key(e.key);
        if (v && valid_name(*v)) volumes.insert(*v);
    }
    std::vector<RemoteBranch> out;
    for (const auto& v : volumes) {
        DVOL_TRY(auto refs, read_volume_refs(*r.backend, v));
        for (const auto& [b, tip] : refs.branches) out.push_back(RemoteBranch{v, b, tip, refs.head && *refs.head == b});
    }
    return out;
}

Result<PushOutcome> Repository::push(const RemoteSpec& spec, const std::string& volume, const std::optional<std::string>& branch_arg,
                                     const PushOptions& options, const ProgressFn& progress) {
    DVOL_TRY(auto v, find_volume(volume));
    std::string branch = branch_arg.value_or(v.branch);
    if (!valid_name(branch)) return make_error(Errc::invalid_argument, invalid_name_message(branch, "branch name"));
    DVOL_TRY(auto row, refs_->branch(v.id, branch));
    if (!row && !options.remove) return make_error(Errc::not_found, fmt::format("branch {} does not exist in volume {}", branch, volume));
    // Refused before the remote is reached: the first push to a directory makes it a remote.
    if (!options.remove && !row->tip)
        return make_error(Errc::not_found, fmt::format("branch {} of {} has no commits to push", branch, volume));
    DVOL_TRY(std::string rv, remote_volume_of(v));
    DVOL_TRY(auto r, open_remote(spec, !options.remove));
    DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
    DVOL_CHECK(prepare_write());

    PushOutcome out;
    out.remote_volume = rv;
    out.branch = branch;
    // A remote without dvol's marker (a new directory, an empty prefix) gets it just before the
    // first object is written, once everything that can refuse the push has been checked: a push
    // refused before that leaves the place as it found it. A delete needs a dvol remote.
    DVOL_TRY(bool marked, has_marker(*r.backend));
    if (!marked && options.remove) DVOL_CHECK(check_marker(*r.backend));
    DVOL_TRY(auto remote_ref, read_branch_ref(*r.backend, rv, branch));
    out.old_tip = remote_ref.tip;
    std::string where = fmt::format("{}/{}", rv, branch);

    if (options.remove) {
        if (!remote_ref.tip)
            return make_error(Errc::not_found, fmt::format("remote {} has no branch {}", r.name, where));
        auto st = r.backend->update_ref(remote::branch_ref_key(rv, branch), remote::encode_branch_ref(std::nullopt),
                                        remote_ref.value->version);
        if (!st && st.error().code == Errc::conflict)
            return make_error(Errc::conflict, fmt::format("rejected: {} on {} moved while deleting it; fetch first", where, r.name));
        DVOL_CHECK(st);
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_CHECK(refs_->set_tracking(v.id, r.id, branch, std::nullopt));
        DVOL_CHECK(txn.commit());
        out.kind = PushOutcome::Kind::deleted;
        return out;
    }

    const ObjectId tip = *row->tip;
    out.new_tip = tip;
    auto track = [&]() -> Status {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_CHECK(refs_->set_tracking(v.id, r.id, branch, tip));
        return txn.commit();
    };
    if (remote_ref.tip == tip) {
        out.kind = PushOutcome::Kind::up_to_date;
        DVOL_CHECK(track());
        return out;
    }
    if (remote_ref.tip) {
        DVOL_TRY(bool ff, is_ancestor(*remote_ref.tip, tip));
        if (!ff && !options.force) {
            DVOL_TRY(auto known, refs_->commit(*remote_ref.tip));
            if (!known)
                return make_error(Errc::conflict, fmt::format("rejected: {} on {} holds commits this store does not have "
                                                              "(fetch first, or push --force to overwrite them)",
                                                              where, r.name));
            return make_error(Errc::conflict, fmt::format("rejected: {} on {} is not an ancestor of {} (non-fast-forward; "
                                                          "pull first, or push --force)",
                                                          where, r.name, branch));
        }
        out.kind = ff ? PushOutcome::Kind::fast_forward : PushOutcome::Kind::forced;
    } else {
        out.kind = PushOutcome::Kind::created;
    }

    // A lazy volume's trees and extent lists are its kept objects (docs/FORMAT.md, "The cache"),
    // not the store's; the chunks of its own commits are in the store, the others on the remote
    // it was cloned from, which a push there skips as it has them.
    DVOL_TRY(bool lazy, is_lazy(v.id));
    std::unique_ptr<ObjectSource> kept;
    std::unique_ptr<LocalFirst> store_then_kept;
    if (lazy) {
        kept = open_kept_objects(paths_->volume_dir(v.name) + "/cache");
        store_then_kept = std::make_unique<LocalFirst>(*store_, *kept);
    }
    ObjectSource& trees = lazy ? static_cast<ObjectSource&>(*store_then_kept) : *store_;

    // What the remote lacks: the commits from the tip down to those it has, and what their trees
    // reach that it has not (a tree it has holds all below it).
    remote::RemoteObjects objects(*r.backend, *db_, *remote_index_, r.id);
    DVOL_TRY(auto refreshed, objects.refresh());
    (void)refreshed;
    std::vector<ObjectId> commits;  // newest first
    ObjectIdSet queued;
    std::vector<ObjectId> chunks;
    std::vector<ObjectId> metadata;  // trees and extent lists, each after everything below it
    {
        std::deque<ObjectId> todo{tip};
        while (!todo.empty()) {
            ObjectId c = todo.front();
            todo.pop_front();
            if (!queued.insert(c).second) continue;
            DVOL_TRY(bool there, objects.has(c));
            if (there) continue;
            commits.push_back(c);
            DVOL_TRY(auto commit, load_commit(c));
            todo.insert(todo.end(), commit.parents.begin(), commit.parents.end());
        }
        ObjectWalker walker;
        std::optional<Error> unreadable;
        walker.visit = [&](const ObjectId& id, ObjectKind kind, const std::string&) -> Result<bool> {
            if (queued.contains(id)) return false;
            DVOL_TRY(bool there, objects.has(id));
            if (there) return false;
            queued.insert(id);
            if (kind == ObjectKind::chunk) chunks.push_back(id);
            return true;
        };
        walker.leave = [&](const ObjectId& id, ObjectKind) -> Status {
            metadata.push_back(id);
            return {};
        };
        walker.unreadable = [&](const ObjectId& id, const std::string& path, const Error& e) {
            if (!unreadable) unreadable = make_error(e.code, fmt::format("cannot push: object {} (at {}) cannot be read: {}", id.hex(),
                                                                         path.empty() ? "/" : path, e.message));
        };
        for (const auto& c : commits) {
            DVOL_TRY(auto commit, load_commit(c));
            DVOL_CHECK(walk_tree(trees, commit.tree, "", walker, true));
        }
        if (unreadable) return *unreadable;
    }

    auto not_here = [&](const ObjectId& id) {
        return make_error(Errc::not_found, fmt::format("cannot push: object {} is neither in this store nor on remote {} "
                                                       "(lazy volume {} has its data on the remote it was cloned from: "
                                                       "push it there)",
                                                       id.hex(), r.name, v.name));
    };
    Meter meter{progress, {}};
    for (const auto* ids : {&chunks, &metadata}) {
        for (const auto& id : *ids) {
            DVOL_TRY(auto ref, store_->locate(id));
            if (ref) {
                meter.p.total += kRecordHeaderSize + ref->stored_len;
            } else if (lazy && ids == &chunks) {
                // A lazy volume's chunks are in the store (its own commits') or on its remote.
                return not_here(id);
            }
        }
    }
    if (!marked) DVOL_CHECK(r.backend->write(std::string(remote::kMarkerKey), as_bytes(remote::kMarker)));
    // Each record is checked before it leaves: on the remote a damaged object would stay for
    // good (objects are immutable there, and a push skips what the remote holds). The check is
    // the record's CRC-32C from the index (ObjectStore::check_stored; decoding and hashing for
    // rows older than schema 5). Records are read in batches (at most 64, or 16 MiB: a push of
    // 8 GiB of incompressible data peaked at 151 MiB with 64 MiB batches), checked on two
    // threads, then appended in order.
    ParallelFor pool;
    std::vector<ObjectStore::StoredObject> batch(64);
    std::vector<Status> verdicts(batch.size());
    std::vector<std::byte> plain[2];
    // A record from the store's packs, or one made of a lazy volume's kept object (verified
    // against its id as it is read; stored raw, as commits are).
    std::vector<std::byte> kept_bytes;
    auto read_record = [&](const ObjectId& id, ObjectStore::StoredObject& slot) -> Status {
        auto st = store_->read_stored(id, slot);
        if (st || st.error().code != Errc::not_found || !kept) return st;
        auto found = kept->get(id, kept_bytes);
        if (!found && found.error().code == Errc::not_found) return not_here(id);
        DVOL_CHECK(found);
        slot.id = id;
        slot.pack = "(kept objects)";
        slot.raw_len = static_cast<uint32_t>(kept_bytes.size());
        slot.record = commit_record(id, kept_bytes);
        slot.crc = crc32c(slot.record);
        return {};
    };
    auto send = [&](remote::PackUpload& up, std::span<const ObjectId> ids) -> Status {
        constexpr size_t kBatchBytes = size_t{16} << 20;
        while (!ids.empty()) {
            size_t n = 0, bytes = 0;
            while (n < ids.size() && n < batch.size() && bytes < kBatchBytes) {
                DVOL_CHECK(read_record(ids[n], batch[n]));
                bytes += batch[n].record.size();
                ++n;
            }
            pool.run(n, [&](size_t i, int worker) { verdicts[i] = ObjectStore::check_stored(batch[i], plain[worker]); });
            for (size_t i = 0; i < n; ++i) {
                if (!verdicts[i])
                    return make_error(verdicts[i].error().code, fmt::format("cannot push: {}; run dvol fsck", verdicts[i].error().message));
                const auto& rec = batch[i].record;
                DVOL_CHECK(up.add(ids[i], rec, static_cast<uint32_t>(rec.size() - kRecordHeaderSize), batch[i].raw_len));
            }
            ObjectStore::trim_slots(batch, kBatchBytes);
            ids = ids.subspan(n);
        }
        return {};
    };
    // Chunks first, then what names them, each after everything below it (the walk's
    // post-order; the reverse of the order it reached them is not one: a subtree shared by two
    // trees is reached under the first only), then the commits, oldest first: whatever a
    // remote pack holds, all below it is there.
    remote::PackUpload data(*r.backend, *db_, *remote_index_, r.id, paths_->tmp_dir(), remote::PackKind::data, kDataPackSize);
    data.set_on_upload([&](uint64_t bytes) { meter.add(0, bytes); });
    DVOL_CHECK(send(data, chunks));
    DVOL_CHECK(data.finish());
    remote::PackUpload meta_up(*r.backend, *db_, *remote_index_, r.id, paths_->tmp_dir(), remote::PackKind::metadata,
                               kMetadataPackSize);
    meta_up.set_on_upload([&](uint64_t bytes) { meter.add(0, bytes); });
    DVOL_CHECK(send(meta_up, metadata));
    for (auto it = commits.rbegin(); it != commits.rend(); ++it) {
        DVOL_TRY(auto enc, refs_->commit(*it));
        auto rec = commit_record(*it, *enc);
        DVOL_CHECK(meta_up.add(*it, rec, static_cast<uint32_t>(enc->size()), static_cast<uint32_t>(enc->size())));
    }
    DVOL_CHECK(meta_up.finish());
    out.sent.objects = data.stats().objects + meta_up.stats().objects;
    out.sent.packs = data.stats().packs + meta_up.stats().packs;
    out.sent.bytes = data.stats().bytes + meta_up.stats().bytes;

    // The branch a clone checks out: the first one pushed. Named before the branch's ref is
    // made, so that a push which fails after that ref is there has not failed half-way (its
    // rerun finds the branch up to date and would never make HEAD); a HEAD naming a branch not
    // there yet is ignored by readers.
    if (!remote_ref.value) {
        auto head = r.backend->create_ref(remote::head_key(rv), remote::encode_head(branch));
        if (!head && head.error().code != Errc::conflict) return std::move(head).error();
    }
    // The ref last, by compare-and-swap from what was read: a push that raced another loses
    // here, with nothing of the remote's refs changed.
    std::string key = remote::branch_ref_key(rv, branch);
    std::string value = remote::encode_branch_ref(tip);
    auto swapped = remote_ref.value ? r.backend->update_ref(key, value, remote_ref.value->version) : r.backend->create_ref(key, value);
    if (!swapped && swapped.error().code == Errc::conflict)
        return make_error(Errc::conflict, fmt::format("rejected: {} on {} changed while pushing (another push won); fetch first", where, r.name));
    DVOL_CHECK(swapped);
    DVOL_CHECK(track());
    return out;
}

Result<FetchOutcome> Repository::fetch_into(Remote& r, const Volume& v, const std::string& rv, const ProgressFn& progress,
                                            const std::string& lazy_cache, bool lazy_mounted) {
    FetchOutcome out;
    out.remote_volume = rv;
    RemoteVolume refs;
    if (r.volume_refs && r.volume_refs->first == rv) {
        refs = std::move(r.volume_refs->second);
        r.volume_refs.reset();
    } else {
        DVOL_CHECK(check_marker(*r.backend));
        DVOL_TRY(refs, read_volume_refs(*r.backend, rv));
    }
    // A volume whose branches were all deleted is fetched too: its tracking branches go.
    if (!refs.exists) return make_error(Errc::not_found, fmt::format("remote {} has no volume {}", r.name, rv));
    out.head = refs.head;

    // The remote's indexes are read only when a tip is new to this volume: a fetch with nothing
    // to bring costs the refs' requests alone.
    remote::RemoteObjects objects(*r.backend, *db_, *remote_index_, r.id);
    // A lazy volume's trees and extent lists go to its cache's kept tier, not to the store's
    // packs (whose invariant, a tree present means its content present, they would break): by
    // the cache itself for a clone (nothing mounts it yet), else one by one beside it (its mount
    // may run and owns the cache), each fsync'ed.
    bool lazy = !lazy_cache.empty();
    std::unique_ptr<ChunkCache> cache;
    std::unique_ptr<ObjectSource> kept;
    if (lazy && !lazy_mounted) {
        ChunkCache::Options co;
        co.prefetch_threads = 0;
        co.bound = UINT64_MAX;  // only the kept tier is written here: nothing to evict
        DVOL_TRY(cache, ChunkCache::open(lazy_cache, objects, co));
    } else if (lazy) {
        kept = open_kept_objects(lazy_cache);
    }
    for (const auto& [b, tip] : refs.branches) {
        DVOL_TRY(bool have, refs_->has_commit(v.id, tip));
        if (have) continue;
        DVOL_TRY(auto refreshed, objects.refresh());
        (void)refreshed;
        break;
    }

    // The commits this volume lacks, newest first: read from the remote, or from another
    // volume of this store that has them.
    struct NewCommit {
        ObjectId id;
        std::vector<std::byte> encoded;
        Commit commit;
        bool local;  // its objects are here already
    };
    std::vector<NewCommit> commits;
    {
        std::deque<ObjectId> todo;
        for (const auto& [b, tip] : refs.branches) todo.push_back(tip);
        ObjectIdSet seen;
        std::vector<std::byte> bytes;
        while (!todo.empty()) {
            ObjectId c = todo.front();
            todo.pop_front();
            if (!seen.insert(c).second) continue;
            DVOL_TRY(bool have, refs_->has_commit(v.id, c));
            if (have) continue;
            NewCommit n{c, {}, {}, false};
            DVOL_TRY(auto local, refs_->commit(c));
            if (local) {
                n.encoded = std::move(*local);
            } else {
                DVOL_CHECK(objects.get(c, n.encoded));  // verified: it hashes to c
            }
            auto decoded = decode_commit(n.encoded);
            if (!decoded) return make_error(Errc::corrupt, fmt::format("commit {} on remote {}: {}", c.hex(), r.name, decoded.error().message));
            n.commit = std::move(*decoded);
            // Another volume's commit: its objects are here when its tree is in the store's packs
            // (a tree present means its content present). A lazy volume's commit has its trees in
            // that volume's cache: they are fetched like a new commit's.
            if (local) { DVOL_TRY(n.local, store_->has(n.commit.tree)); }
            todo.insert(todo.end(), n.commit.parents.begin(), n.commit.parents.end());
            commits.push_back(std::move(n));
        }
    }

    // What their trees reach that this store lacks (a tree it has holds all below it). The
    // trees and extent lists are read from the remote (verified) and kept to be stored after
    // what they name.
    std::vector<ObjectId> chunks;
    std::unordered_map<ObjectId, std::vector<std::byte>, ObjectIdHash> read;  // trees and extent lists
    std::vector<ObjectId> metadata;  // the same, each after everything below it
    {
        ObjectIdSet queued;
        class Keeping : public ObjectSource {
        public:
            Keeping(ObjectSource& from, std::unordered_map<ObjectId, std::vector<std::byte>, ObjectIdHash>& kept)
                : from_(from), kept_(kept) {}
            Result<bool> has(const ObjectId& id) override { return from_.has(id); }
            Status get(const ObjectId& id, std::vector<std::byte>& out) override {
                DVOL_CHECK(from_.get(id, out));
                kept_[id] = out;
                return {};
            }
            using ObjectSource::get;

        private:
            ObjectSource& from_;
            std::unordered_map<ObjectId, std::vector<std::byte>, ObjectIdHash>& kept_;
        } keeping(objects, read);
        std::optional<Error> unreadable;
        ObjectWalker walker;
        walker.visit = [&](const ObjectId& id, ObjectKind kind, const std::string&) -> Result<bool> {
            if (queued.contains(id)) return false;
            if (lazy) {
                // Kept children first: a kept tree has all its trees and lists kept below it.
                if (kind == ObjectKind::chunk) return false;
                if (cache && cache->pinned(id)) return false;
                if (kept) {
                    DVOL_TRY(bool here, kept->has(id));
                    if (here) return false;
                }
                queued.insert(id);
                return true;
            }
            DVOL_TRY(bool here, store_->has(id));
            if (here) return false;
            queued.insert(id);
            if (kind == ObjectKind::chunk) chunks.push_back(id);
            return true;
        };
        walker.leave = [&](const ObjectId& id, ObjectKind) -> Status {
            metadata.push_back(id);
            return {};
        };
        walker.unreadable = [&](const ObjectId& id, const std::string& path, const Error& e) {
            if (!unreadable) unreadable = make_error(e.code, fmt::format("cannot fetch object {} (at {}) from remote {}: {}", id.hex(),
                                                                         path.empty() ? "/" : path, r.name, e.message));
        };
        for (const auto& n : commits)
            if (!n.local || lazy) DVOL_CHECK(walk_tree(keeping, n.commit.tree, "", walker, true));
        if (unreadable) return *unreadable;
    }
    if (lazy) {
        for (const auto& id : metadata) {
            if (cache) {
                DVOL_CHECK(cache->pin(id, read.at(id)));
            } else {
                DVOL_CHECK(keep_object(lazy_cache, id, read.at(id)));
            }
        }
        if (kept) DVOL_CHECK(fsync_dir(lazy_cache + "/meta"));
        out.received.objects = metadata.size();
        out.received.bytes = objects.stats().bytes;
        out.received.requests = objects.stats().requests;
    }

    // Chunks first, coalesced into few ranged reads and verified one by one; then trees and
    // extent lists, each after everything below it; all durable before the commit rows name
    // them.
    Meter meter{progress, {}};
    if (lazy) chunks.clear();
    for (const auto& id : chunks) {
        DVOL_TRY(auto loc, remote_index_->find(r.id, id));
        if (loc) meter.p.total += kRecordHeaderSize + loc->stored_len;
    }
    Status received = objects.fetch(chunks, [&](const ObjectId& id, Codec codec, std::span<const std::byte> stored, uint32_t raw_len) -> Status {
        ++out.received.objects;
        DVOL_CHECK(store_->put_encoded(id, codec, stored, raw_len));
        out.verified.insert(id);
        return {};
    }, [&](uint64_t bytes) { meter.add(0, bytes); });
    for (size_t i = 0; received && !lazy && i < metadata.size(); ++i) received = store_->put(metadata[i], read.at(metadata[i]));
    // What arrived is verified, and each object was stored after all below it: it is kept even
    // when the fetch failed half-way, so that the command run again fetches only the rest.
    Status flushed = store_->flush();
    DVOL_CHECK(received);
    DVOL_CHECK(flushed);
    if (!lazy) {
        out.received.objects += metadata.size();
        out.received.bytes = objects.stats().bytes;
        out.received.requests = objects.stats().requests;
    }

    DVOL_TRY(auto tracking, refs_->tracking(v.id));
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    for (auto it = commits.rbegin(); it != commits.rend(); ++it)
        DVOL_CHECK(refs_->add_commit(v.id, it->id, it->commit.tree, it->commit.time, it->encoded));
    for (const auto& [b, tip] : refs.branches) {
        std::optional<ObjectId> old;
        for (const auto& t : tracking)
            if (t.remote_id == r.id && t.branch == b) old = t.tip;
        if (old == tip) continue;
        DVOL_CHECK(refs_->set_tracking(v.id, r.id, b, tip));
        out.updates.push_back(FetchOutcome::Update{b, old, tip});
    }
    // Branches deleted on the remote leave their tracking branch.
    for (const auto& t : tracking) {
        if (t.remote_id != r.id) continue;
        bool still = std::any_of(refs.branches.begin(), refs.branches.end(), [&](const auto& b) { return b.first == t.branch; });
        if (still) continue;
        DVOL_CHECK(refs_->set_tracking(v.id, r.id, t.branch, std::nullopt));
        out.updates.push_back(FetchOutcome::Update{t.branch, t.tip, std::nullopt});
    }
    DVOL_CHECK(txn.commit());
    return out;
}

// A lazy volume fetches from the remote it reads its chunks from (another one's commits would
// name chunks its mount cannot reach), into its cache. "" for an ordinary volume.
Result<std::string> Repository::lazy_fetch_cache(const Volume& v, const Remote& r, std::string_view what) {
    DVOL_TRY(auto lv, lazy_volume(v.name));
    if (!lv) return std::string();
    std::string endpoint = r.key.size() > r.url.size() ? r.key.substr(r.url.size() + 1) : "";
    if (lv->url != r.url || lv->endpoint != endpoint)
        return make_error(Errc::unsupported, fmt::format("lazy volume {} reads its data from {}: {} from that remote only", v.name, lv->url, what));
    return lv->cache_dir;
}

Result<FetchOutcome> Repository::fetch(const RemoteSpec& spec, const std::string& volume, const ProgressFn& progress) {
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(std::string rv, remote_volume_of(v));
    DVOL_TRY(auto r, open_remote(spec));
    DVOL_TRY(std::string lazy_cache, lazy_fetch_cache(v, r, "fetch"));
    DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
    DVOL_CHECK(prepare_write());
    return fetch_into(r, v, rv, progress, lazy_cache, true);
}

Result<PullOutcome> Repository::pull(const RemoteSpec& spec, const std::string& volume, const std::optional<std::string>& branch_arg,
                                     const ProgressFn& progress, const LiveDataHooks& hooks, const FetchedFn& fetched) {
    DVOL_TRY(auto v, find_volume(volume));
    std::string branch = branch_arg.value_or(v.branch);
    if (!valid_name(branch)) return make_error(Errc::invalid_argument, invalid_name_message(branch, "branch name"));
    DVOL_TRY(std::string rv, remote_volume_of(v));
    DVOL_TRY(auto r, open_remote(spec));
    DVOL_TRY(std::string lazy_cache, lazy_fetch_cache(v, r, "pull"));
    DVOL_TRY(auto lock, VolumeLock::acquire(*paths_, volume, wait_notice_));
    DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
    DVOL_CHECK(prepare_write());
    DVOL_TRY(v, find_volume(volume));
    PullOutcome out;
    out.branch = branch;
    DVOL_TRY(out.fetched, fetch_into(r, v, rv, progress, lazy_cache, true));
    if (fetched) fetched(out.fetched);

    std::optional<ObjectId> theirs;
    DVOL_TRY(auto tracking, refs_->tracking(v.id));
    for (const auto& t : tracking)
        if (t.remote_id == r.id && t.branch == branch) theirs = t.tip;
    if (!theirs) return make_error(Errc::not_found, fmt::format("remote {} has no branch {}/{}", r.name, rv, branch));
    out.new_tip = *theirs;
    std::string action = fmt::format("pull: fast-forward from {}", r.name);
    DVOL_TRY(auto row, refs_->branch(v.id, branch));
    if (!row) {
        // A branch only the remote has (a fetch named it) is made at the remote's tip. It is not
        // the active branch, so the live directory stays as it is.
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_CHECK(refs_->add_branch(v.id, branch, std::nullopt));
        DVOL_CHECK(refs_->swap_tip(v.id, branch, std::nullopt, *theirs, action));
        DVOL_CHECK(txn.commit());
        out.kind = PullOutcome::Kind::fast_forward;
        out.created = true;
        out.restore.id = *theirs;
        return out;
    }
    out.old_tip = row->tip;
    if (row->tip == theirs) return out;
    if (row->tip) {
        DVOL_TRY(bool ff, is_ancestor(*row->tip, *theirs));
        if (!ff) {
            DVOL_TRY(bool behind, is_ancestor(*theirs, *row->tip));
            if (behind) return out;  // the remote is behind: nothing to pull
            // Theirs by its remote-tracking name (a revision), or by id for a remote given as a URL.
            std::string their_ref = looks_like_url(r.name) ? theirs->hex().substr(0, 12) : fmt::format("{}/{}/{}", r.name, rv, branch);
            return make_error(Errc::conflict, fmt::format("not possible to fast-forward: {} and {}/{} on {} have diverged; "
                                                          "reset --hard {} to take theirs, or push --force to keep yours",
                                                          branch, rv, branch, r.name, their_ref));
        }
    }
    out.kind = PullOutcome::Kind::fast_forward;
    if (branch != v.branch) {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_CHECK(refs_->swap_tip(v.id, branch, row->tip, *theirs, action));
        DVOL_CHECK(txn.commit());
        out.restore.id = *theirs;
        return out;
    }
    DVOL_CHECK(refuse_uncommitted(v, "reset --hard, before pulling"));
    if (!lazy_cache.empty()) {
        // As reset --hard does: the hooks unmount the live directory (containers stopped) and
        // mount it again on the new tip; the layer, with nothing uncommitted, goes.
        Quiesced quiet(hooks);
        DVOL_CHECK(quiet.start());
        DVOL_CHECK(refuse_uncommitted(v, "reset --hard, before pulling"));
        {
            DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
            DVOL_CHECK(refs_->swap_tip(v.id, branch, row->tip, *theirs, action));
            DVOL_CHECK(txn.commit());
        }
        DVOL_CHECK(remove_tree(lazy_cache + "/layer"));
        out.restore.id = *theirs;
        return out;
    }
    DVOL_TRY(ObjectId tree, commit_tree(*theirs));
    DVOL_TRY(auto verified, verify_restore(v, &tree, std::move(out.fetched.verified)));
    Quiesced quiet(hooks);
    DVOL_CHECK(quiet.start());
    DVOL_CHECK(refuse_uncommitted(v, "reset --hard, before pulling"));  // again, now that nothing writes
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_CHECK(refs_->swap_tip(v.id, branch, row->tip, *theirs, action));
        DVOL_CHECK(txn.commit());
    }
    DVOL_TRY(out.restore, materialise(v, &tree, *theirs, std::move(verified), progress));
    return out;
}

Result<CloneOutcome> Repository::clone(const RemoteSpec& spec, const std::string& remote_volume, const CloneOptions& options,
                                       const ProgressFn& progress) {
    if (!valid_name(remote_volume)) return make_error(Errc::invalid_argument, invalid_name_message(remote_volume, "volume name"));
    std::string name = options.name.value_or(remote_volume);
    if (!valid_name(name)) return make_error(Errc::invalid_argument, invalid_name_message(name, "name"));
    if (options.branch && !valid_name(*options.branch)) return make_error(Errc::invalid_argument, invalid_name_message(*options.branch, "branch name"));
    DVOL_TRY(auto r, open_remote(spec));
    CloneOutcome out;
    out.volume = name;
    // A clone that was interrupted left its volume marked; running it again finishes it.
    DVOL_TRY(auto existing, refs_->volume(name));
    if (existing) {
        DVOL_TRY(auto cloning, refs_->volume_option(existing->id, kCloningOption));
        if (!cloning || *cloning != r.key + " " + remote_volume)
            return make_error(Errc::already_exists, fmt::format("volume {} already exists", name));
        out.resumed = true;
    } else {
        DVOL_CHECK(check_marker(*r.backend));
        DVOL_TRY(auto refs, read_volume_refs(*r.backend, remote_volume));
        if (refs.branches.empty()) return make_error(Errc::not_found, fmt::format("remote {} has no volume {}", r.name, remote_volume));
        if (options.branch && std::none_of(refs.branches.begin(), refs.branches.end(), [&](const auto& b) { return b.first == *options.branch; }))
            return make_error(Errc::not_found, fmt::format("remote {} has no branch {}/{}", r.name, remote_volume, *options.branch));
        r.volume_refs.emplace(remote_volume, std::move(refs));
        // Marked unfinished in the very transaction that creates it: a clone killed at any
        // point after leaves a volume that running the clone again finishes.
        std::vector<std::pair<std::string, std::string>> volume_options{{kCloningOption, r.key + " " + remote_volume}};
        if (name != remote_volume) volume_options.emplace_back(kUpstreamOption, remote_volume);
        if (options.lazy) {
            volume_options.emplace_back(kLazyUrlOption, r.url);
            if (r.key.size() > r.url.size()) volume_options.emplace_back(kLazyEndpointOption, r.key.substr(r.url.size() + 1));
            volume_options.emplace_back(kLazyCacheOption, std::to_string(options.cache_size ? options.cache_size : kDefaultLazyCacheSize));
        }
        DVOL_CHECK(create_volume(name, false, volume_options));
        if (options.prepare_only) {
            out.prepared = true;
            return out;
        }
    }
    DVOL_TRY(auto lock, VolumeLock::acquire(*paths_, name, wait_notice_));
    DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
    DVOL_CHECK(prepare_write());
    DVOL_TRY(auto v, find_volume(name));
    DVOL_TRY(bool lazy, is_lazy(v.id));
    if (lazy != options.lazy)
        return make_error(Errc::conflict, fmt::format("volume {} is an interrupted {}clone: finish it with the same command{}", name,
                                                      lazy ? "lazy " : "", lazy ? " (with --lazy)" : " (without --lazy)"));
    DVOL_TRY(out.fetched, fetch_into(r, v, remote_volume, progress, lazy ? paths_->volume_dir(name) + "/cache" : ""));

    // Local branches at the remote's tips; the remote's HEAD branch checked out.
    DVOL_TRY(auto tracking, refs_->tracking(v.id));
    std::vector<std::pair<std::string, ObjectId>> theirs;
    for (const auto& t : tracking)
        if (t.remote_id == r.id) theirs.emplace_back(t.branch, t.tip);
    // Its branches deleted since this clone began.
    if (theirs.empty()) return make_error(Errc::not_found, fmt::format("remote {} has no volume {}", r.name, remote_volume));
    std::string active = theirs.front().first;
    if (options.branch) {
        if (std::none_of(theirs.begin(), theirs.end(), [&](const auto& b) { return b.first == *options.branch; }))
            return make_error(Errc::not_found, fmt::format("remote {} has no branch {}/{}", r.name, remote_volume, *options.branch));
        active = *options.branch;
    } else if (out.fetched.head && std::any_of(theirs.begin(), theirs.end(), [&](const auto& b) { return b.first == *out.fetched.head; }))
        active = *out.fetched.head;
    else if (std::any_of(theirs.begin(), theirs.end(), [](const auto& b) { return b.first == "master"; }))
        active = "master";
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
        DVOL_TRY(auto mine, refs_->branches(v.id));
        for (const auto& [b, tip] : theirs) {
            auto it = std::find_if(mine.begin(), mine.end(), [&](const meta::BranchRow& m) { return m.name == b; });
            std::string action = fmt::format("clone: from {}", r.name);
            if (it == mine.end()) {
                DVOL_CHECK(refs_->add_branch(v.id, b, std::nullopt));
                DVOL_CHECK(refs_->swap_tip(v.id, b, std::nullopt, tip, action));
            } else if (it->tip != tip) {
                DVOL_CHECK(refs_->swap_tip(v.id, b, it->tip, tip, action));
            }
        }
        // The master made with the volume, when the remote has none.
        bool has_master = std::any_of(theirs.begin(), theirs.end(), [](const auto& b) { return b.first == "master"; });
        if (!has_master) {
            DVOL_TRY(auto master, refs_->branch(v.id, "master"));
            if (master && !master->tip) {
                DVOL_TRY(bool dropped, refs_->drop_branch(v.id, "master"));
                (void)dropped;
            }
        }
        DVOL_CHECK(refs_->set_active_branch(v.id, active));
        DVOL_CHECK(txn.commit());
    }
    DVOL_TRY(v, find_volume(name));
    out.branch = active;
    ObjectId tip = std::find_if(theirs.begin(), theirs.end(), [&](const auto& b) { return b.first == active; })->second;
    if (lazy) {
        // Nothing to restore: the front end mounts the commit on the live directory.
        out.restore.id = tip;
    } else {
        DVOL_TRY(ObjectId tree, commit_tree(tip));
        DVOL_TRY(auto verified, verify_restore(v, &tree, std::move(out.fetched.verified)));
        DVOL_TRY(out.restore, materialise(v, &tree, tip, std::move(verified), progress));
    }
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    DVOL_CHECK(refs_->unset_volume_option(v.id, kCloningOption));
    DVOL_CHECK(txn.commit());
    return out;
}

}  // namespace dvol
