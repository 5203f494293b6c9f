// An LRU cache of decoded objects bounded by their size in bytes, shared by threads, with one
// load per object at a time: a thread asking for an object another thread is loading waits for
// that load instead of reading and decoding it a second time (the kernel's readahead asks for
// neighbouring pieces of one chunk on several threads at once). A failed load is not cached:
// the next caller tries again. Values are shared, immutable, and outlive their eviction for as
// long as a caller holds them.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "base/error.h"
#include "base/object_id.h"

namespace dvol::mountfs {

template <typename V>
class LoadingCache {
public:
    using Ptr = std::shared_ptr<const V>;
    struct Loaded {
        Ptr value;
        size_t bytes = 0;  // what it costs in memory
    };

    explicit LoadingCache(size_t max_bytes) : max_bytes_(max_bytes) {}
    LoadingCache(const LoadingCache&) = delete;
    LoadingCache& operator=(const LoadingCache&) = delete;

    // The value of `id`, from the cache, or from `load()` (called without any lock held). The
    // most recently used values are kept while they fit in max_bytes (the newest always stays).
    template <typename Load>
    Result<Ptr> get(const ObjectId& id, Load&& load) {
        std::unique_lock lk(mu_);
        for (;;) {
            auto it = map_.find(id);
            if (it == map_.end()) break;
            if (!it->second.loading) {
                lru_.splice(lru_.begin(), lru_, it->second.lru);
                hits_++;
                return it->second.value;
            }
            cv_.wait(lk);  // another thread is loading it; then look again (it may have failed)
        }
        map_.emplace(id, Slot{});
        lk.unlock();
        Result<Loaded> r = make_error(Errc::internal, "not loaded");
        try {
            r = load();
        } catch (...) {
            lk.lock();
            map_.erase(id);
            cv_.notify_all();
            throw;
        }
        lk.lock();
        auto it = map_.find(id);
        if (!r) {
            map_.erase(it);
            cv_.notify_all();
            return std::move(r).error();
        }
        loads_++;
        Slot& s = it->second;
        s.value = std::move(r->value);
        s.bytes = r->bytes;
        s.loading = false;
        lru_.push_front(id);
        s.lru = lru_.begin();
        bytes_ += s.bytes;
        Ptr out = s.value;
        while (bytes_ > max_bytes_ && lru_.size() > 1) {
            auto victim = map_.find(lru_.back());
            bytes_ -= victim->second.bytes;
            map_.erase(victim);
            lru_.pop_back();
        }
        cv_.notify_all();
        return out;
    }

    // Says no caller is expected to ask for `id` again soon (a sequential read has passed it).
    // The last `kRetiredKept` values retired stay (reads of one stretch of a file arrive in any
    // order on several threads); older ones are let go at once instead of when they become the
    // least recently used, so their memory serves the next loads while the CPU's caches still
    // hold it. A value retired and asked for again is simply loaded again.
    void retire(const ObjectId& id) {
        std::lock_guard lk(mu_);
        if (std::find(retired_.begin(), retired_.end(), id) != retired_.end()) return;
        retired_.push_back(id);
        if (retired_.size() <= kRetiredKept) return;
        auto it = map_.find(retired_.front());
        retired_.pop_front();
        if (it == map_.end() || it->second.loading) return;
        bytes_ -= it->second.bytes;
        lru_.erase(it->second.lru);
        map_.erase(it);
    }

    struct Stats {
        uint64_t hits = 0;
        uint64_t loads = 0;
        size_t bytes = 0;
        size_t entries = 0;
    };
    Stats stats() const {
        std::lock_guard lk(mu_);
        return Stats{hits_, loads_, bytes_, lru_.size()};
    }

private:
    struct Slot {
        Ptr value;
        size_t bytes = 0;
        bool loading = true;
        typename std::list<ObjectId>::iterator lru;
    };
    const size_t max_bytes_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::unordered_map<ObjectId, Slot, ObjectIdHash> map_;
    std::list<ObjectId> lru_;  // loaded values, most recently used first
    static constexpr size_t kRetiredKept = 8;
    std::deque<ObjectId> retired_;  // the last values retired, oldest first
    size_t bytes_ = 0;
    uint64_t hits_ = 0;
    uint64_t loads_ = 0;
};

}  // namespace dvol::mountfs
