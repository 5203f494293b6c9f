#include "repo/object_reader.h"

#include "meta/db.h"
#include "store/object_store.h"

namespace dvol {

namespace {

class ObjectReader final : public ObjectSource {
public:
    ObjectReader(std::unique_ptr<meta::Db> db, std::unique_ptr<ObjectStore> store, ReadCheck check)
        : db_(std::move(db)), store_(std::move(store)), check_(check) {}
    ~ObjectReader() override { store_.reset(); }  // before the connection it borrows

    Result<bool> has(const ObjectId& id) override { return store_->has(id); }

    Status get(const ObjectId& id, std::vector<std::byte>& out) override {
        // Now and then, let go of packs a gc deleted, so their space comes back while we run.
        if (++gets_ % kCheckDeletedEvery == 0) store_->close_deleted_packs();
        auto st = read(id, out);
        if (st || st.error().code != Errc::corrupt) return st;
        // A gc may have moved the record since we opened its pack: look it up again.
        store_->close_packs();
        return read(id, out);
    }

private:
    Status read(const ObjectId& id, std::vector<std::byte>& out) {
        return check_ == ReadCheck::checksum ? store_->get_by_checksum(id, out) : store_->get(id, out);
    }

    static constexpr uint64_t kCheckDeletedEvery = 256;
    std::unique_ptr<meta::Db> db_;
    std::unique_ptr<ObjectStore> store_;
    ReadCheck check_;
    uint64_t gets_ = 0;
};

}  // namespace

Result<std::unique_ptr<ObjectSource>> open_object_reader(const StorePaths& paths, ReadCheck check) {
    DVOL_TRY(auto db, meta::Db::open(paths.db()));
    DVOL_TRY(auto store, ObjectStore::open(paths, *db));
    return std::unique_ptr<ObjectSource>(new ObjectReader(std::move(db), std::move(store), check));
}

}  // namespace dvol
