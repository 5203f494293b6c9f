// Lazy volumes (docs/ARCHITECTURE.md, "Lazy volumes"): a volume whose commits, trees and extent
// lists were fetched by clone --lazy, and whose chunks come from the remote on first read, through
// a ChunkCache in the volume's directory. The mount (fuse-mount/) reads through open_lazy_source.
#include <fmt/format.h>

#include "meta/db.h"
#include "meta/remote_index.h"
#include "remote/layout.h"
#include "remote/open.h"
#include "remote/remote_objects.h"
#include "repo/repository.h"
#include "store/chunk_cache.h"
#include "store/local_first.h"
#include "store/paths.h"
#include "store/pooled_source.h"

namespace dvol {

namespace {

// One reader of the remote, for one thread at a time: its own SQLite connection (the remote's
// pack index), backend and RemoteObjects.
class RemoteReader final : public ObjectSource {
public:
    static Result<std::unique_ptr<RemoteReader>> open(const std::string& db_path, const LazyVolume& lazy, const LazySourceOptions& options) {
        std::unique_ptr<RemoteReader> r(new RemoteReader);
        DVOL_TRY(r->db_, meta::Db::open(db_path));
        r->index_ = std::make_unique<meta::RemoteIndex>(*r->db_);
        remote::BackendOptions bo;
        bo.endpoint = lazy.endpoint;
        remote::RetryPolicy policy;
        policy.max_total = options.retry_for;
        policy.max_delay = std::min(policy.max_delay, options.retry_for);
        bo.retry = policy;
        DVOL_TRY(r->backend_, remote::open_backend(lazy.url, bo));
        if (options.wrap) r->backend_ = options.wrap(std::move(r->backend_));
        std::string key = meta::remote_key(lazy.url, lazy.endpoint);
        {
            DVOL_TRY(auto txn, meta::Db::Transaction::begin(*r->db_));
            DVOL_TRY(r->remote_id_, r->index_->remote_id(key));
            DVOL_CHECK(txn.commit());
        }
        r->objects_ = std::make_unique<remote::RemoteObjects>(*r->backend_, *r->db_, *r->index_, r->remote_id_);
        return r;
    }
    Result<bool> has(const ObjectId& id) override { return objects_->has(id); }
    Status get(const ObjectId& id, std::vector<std::byte>& out) override { return objects_->get(id, out); }
    using ObjectSource::get;
    void get_many(std::span<const ObjectId> ids, const ObjectFn& fn) override { objects_->get_many(ids, fn); }

private:
    RemoteReader() = default;
    std::unique_ptr<meta::Db> db_;
    std::unique_ptr<meta::RemoteIndex> index_;
    std::unique_ptr<remote::Backend> backend_;
    int64_t remote_id_ = 0;
    std::unique_ptr<remote::RemoteObjects> objects_;
};

class LazySourceImpl final : public LazySource {
public:
    ObjectSource& source() override { return *first_; }
    ChunkCache& cache() override { return *cache_; }

    std::unique_ptr<PooledSource> remote_;
    std::unique_ptr<PooledSource> local_;
    std::unique_ptr<ChunkCache> cache_;  // destroyed first: its prefetch threads use remote_
    std::unique_ptr<LocalFirst> first_;
    ~LazySourceImpl() override {
        first_.reset();
        cache_.reset();
    }
};

}  // namespace

Result<bool> Repository::is_lazy(int64_t volume_id) {
    DVOL_TRY(auto url, refs_->volume_option(volume_id, kLazyUrlOption));
    return url.has_value();
}

Result<std::optional<LazyVolume>> Repository::lazy_volume(const std::string& volume) {
    DVOL_TRY(auto v, find_volume(volume));
    DVOL_TRY(auto url, refs_->volume_option(v.id, kLazyUrlOption));
    if (!url) return std::optional<LazyVolume>();
    LazyVolume out;
    out.volume = v.name;
    out.url = *url;
    DVOL_TRY(auto endpoint, refs_->volume_option(v.id, kLazyEndpointOption));
    out.endpoint = endpoint.value_or("");
    DVOL_TRY(auto size, refs_->volume_option(v.id, kLazyCacheOption));
    out.cache_size = kDefaultLazyCacheSize;
    if (size) {
        try {
            out.cache_size = std::stoull(*size);
        } catch (...) {
            return make_error(Errc::corrupt, fmt::format("volume {}: option {} is not a number: {}", v.name, kLazyCacheOption, *size));
        }
    }
    out.cache_dir = paths_->volume_dir(v.name) + "/cache";
    out.branch = v.branch;
    DVOL_TRY(auto tip, head(v));
    if (!tip) return make_error(Errc::not_found, fmt::format("lazy volume {} has no commit on branch {}", v.name, v.branch));
    out.commit = *tip;
    DVOL_TRY(out.tree, commit_tree(*tip));
    return std::optional<LazyVolume>(std::move(out));
}

Result<std::unique_ptr<ObjectSource>> Repository::open_lazy_remote(const LazyVolume& lazy) {
    DVOL_TRY(auto r, RemoteReader::open(paths_->db(), lazy, LazySourceOptions{}));
    return std::unique_ptr<ObjectSource>(std::move(r));
}

namespace {

// Credentials the remote refuses would fail every read of the mount (EIO) while the mount itself
// came up fine: one request before serving, not retried, says so at once. Any other failure
// (the remote unreachable) is left to the reads, so that what the cache holds stays readable
// offline.
Status check_credentials(const LazyVolume& lazy) {
    remote::BackendOptions bo;
    bo.endpoint = lazy.endpoint;
    bo.retry = remote::RetryPolicy{.max_attempts = 1};
    auto backend = remote::open_backend(lazy.url, bo);
    if (!backend) return backend.error().code == Errc::denied ? std::move(backend).error() : Status{};
    std::vector<std::byte> none;
    auto st = (*backend)->read(std::string(remote::kMarkerKey), 0, 0, none);
    if (!st && st.error().code == Errc::denied) return st;
    return {};
}

}  // namespace

Result<std::unique_ptr<LazySource>> Repository::open_lazy_source(const LazyVolume& lazy, const LazySourceOptions& options) {
    DVOL_CHECK(check_credentials(lazy));
    auto out = std::make_unique<LazySourceImpl>();
    std::vector<std::unique_ptr<ObjectSource>> readers;
    for (unsigned i = 0; i < std::max(1u, options.readers); ++i) {
        DVOL_TRY(auto r, RemoteReader::open(paths_->db(), lazy, options));
        readers.push_back(std::move(r));
    }
    out->remote_ = std::make_unique<PooledSource>(std::move(readers));
    ChunkCache::Options co;
    co.bound = lazy.cache_size;
    co.log = options.log;
    // RemoteObjects decodes every record and hashes it against its id before handing it over.
    co.trust_upstream = true;
    DVOL_TRY(out->cache_, ChunkCache::open(lazy.cache_dir, *out->remote_, co));
    std::vector<std::unique_ptr<ObjectSource>> local;
    for (unsigned i = 0; i < std::max(1u, options.readers); ++i) {
        DVOL_TRY(auto r, open_object_reader());
        local.push_back(std::move(r));
    }
    out->local_ = std::make_unique<PooledSource>(std::move(local));
    out->first_ = std::make_unique<LocalFirst>(*out->local_, *out->cache_);
    return std::unique_ptr<LazySource>(std::move(out));
}

}  // namespace dvol
