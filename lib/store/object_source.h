// Where readers of trees, extent lists and content get objects from: the seam between what
// reads objects (tree loading, extent cursors, content reads, tree walks and diffs, fsck) and
// where the objects are. The local ObjectStore is one source; a chunk cache in front of a
// remote is another. Readers take an ObjectSource& and never learn which.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"

namespace dvol {

class ObjectSource {
public:
    virtual ~ObjectSource() = default;

    // Whether the source holds object `id` (without reading it).
    virtual Result<bool> has(const ObjectId& id) = 0;

    // Reads object `id` into `out` (replacing its contents), verified: what comes back hashes
    // to `id`. Errc::not_found when the source does not hold it; Errc::corrupt, naming the
    // object, when what it holds is damaged; other codes when it cannot be reached.
    virtual Status get(const ObjectId& id, std::vector<std::byte>& out) = 0;

    // The plain length of object `id`, or nullopt when the source does not hold it. By
    // default the object is read (verified) and measured; a source that knows lengths (the
    // local store's index) answers without reading.
    virtual Result<std::optional<uint64_t>> size_of(const ObjectId& id) {
        DVOL_TRY(bool held, has(id));
        if (!held) return std::optional<uint64_t>();
        std::vector<std::byte> out;
        DVOL_CHECK(get(id, out));
        return std::optional<uint64_t>(out.size());
    }

    // A hint that `ids` will probably be read soon (a sequential read going on): a source in
    // front of a slow one (store/chunk_cache.h) starts fetching them in the background. By
    // default nothing happens. Never fails, never blocks for long.
    virtual void prefetch(std::span<const ObjectId> ids) { (void)ids; }

    // One object of get_many: its verified bytes when `st` is Ok (the callee may take them,
    // moving from the vector), else the error that concerns this object alone (bytes empty).
    using ObjectFn = std::function<void(const ObjectId& id, const Status& st, std::vector<std::byte>& bytes)>;
    // Reads several objects, handing each id of `ids` (once, whatever its repeats) to `fn`, on
    // this thread. A remote source reads neighbouring records with one request
    // (remote/remote_objects.h); by default each is get() in turn.
    virtual void get_many(std::span<const ObjectId> ids, const ObjectFn& fn) {
        std::vector<std::byte> out;
        std::vector<ObjectId> done;
        for (const auto& id : ids) {
            if (std::find(done.begin(), done.end(), id) != done.end()) continue;
            done.push_back(id);
            Status st = get(id, out);
            if (!st) out.clear();
            fn(id, st, out);
        }
    }

    // The same, into a new buffer.
    Result<std::vector<std::byte>> get(const ObjectId& id) {
        std::vector<std::byte> out;
        DVOL_CHECK(get(id, out));
        return out;
    }
};

}  // namespace dvol
