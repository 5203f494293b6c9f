// Two object sources read as one: the first (the store's packs) before the second (a lazy
// volume's chunk cache or kept objects). A lazy volume's own commits have their new chunks in
// the packs only until they are pushed, and their trees among its kept objects.
#pragma once

#include "store/object_source.h"

namespace dvol {

class LocalFirst final : public ObjectSource {
public:
    LocalFirst(ObjectSource& local, ObjectSource& rest) : local_(local), rest_(rest) {}
    Result<bool> has(const ObjectId& id) override {
        DVOL_TRY(bool here, local_.has(id));
        return here ? true : rest_.has(id);
    }
    Status get(const ObjectId& id, std::vector<std::byte>& out) override {
        auto here = local_.has(id);
        if (here && *here) {
            Status st = local_.get(id, out);
            if (st) return st;
        }
        return rest_.get(id, out);
    }
    Result<std::optional<uint64_t>> size_of(const ObjectId& id) override {
        DVOL_TRY(auto here, local_.size_of(id));
        return here ? here : rest_.size_of(id);
    }
    void prefetch(std::span<const ObjectId> ids) override { rest_.prefetch(ids); }
    using ObjectSource::get;

private:
    ObjectSource& local_;
    ObjectSource& rest_;
};

}  // namespace dvol
