#include "repo/store_behind.h"

namespace dvol {

bool StoreBehind::work(int worker) {
    std::unique_lock lock(mu_);
    if (next_start_ == tail_) return false;
    Job& j = slots_[next_start_++ % kSlots];
    lock.unlock();
    j.codec = compressors_[worker].compress_or_keep(j.input(), j.stored);
    lock.lock();
    j.done = true;
    done_cv_.notify_all();
    return true;
}

Status StoreBehind::queue(ObjectStore& store, const ObjectId& id, std::span<const std::byte> data, int tag) {
    if (!pool_.has_helper()) {
        Job& j = slots_[0];
        Codec codec = compressors_[0].compress_or_keep(data, j.stored);
        return store.put_encoded(id, codec, codec == Codec::raw ? data : std::span<const std::byte>(j.stored), static_cast<uint32_t>(data.size()));
    }
    while (tail_ - head_ == kSlots) DVOL_CHECK(step(store, true));
    // The slot at tail_ lies outside [head_, tail_): no other thread looks at it.
    Job& j = slots_[tail_ % kSlots];
    j.id = id;
    j.length = static_cast<uint32_t>(data.size());
    j.done = false;
    if (data.size() < kCopyBelow) {
        j.copy.assign(data.begin(), data.end());
        j.data = {};
        j.tag = -1;
    } else {
        j.copy.clear();
        j.data = data;
        j.tag = tag;
    }
    ids_.insert(id);
    {
        std::lock_guard lock(mu_);
        ++tail_;
    }
    pool_.wake();
    return {};
}

bool StoreBehind::busy_with(int tag) const {
    for (uint64_t s = head_; s < tail_; ++s)
        if (slots_[s % kSlots].tag == tag) return true;
    return false;
}

Status StoreBehind::step(ObjectStore& store, bool wait) {
    if (wait && head_ < tail_) {
        bool head_done;
        {
            std::lock_guard lock(mu_);
            head_done = slots_[head_ % kSlots].done;
        }
        // Compress the oldest unstarted chunk here rather than wait idle; once none is left,
        // wait for the helper's.
        if (!head_done && !work(0)) {
            std::unique_lock lock(mu_);
            done_cv_.wait(lock, [&] { return slots_[head_ % kSlots].done; });
        }
    }
    for (;;) {
        {
            std::lock_guard lock(mu_);
            if (head_ == tail_ || !slots_[head_ % kSlots].done) return {};
        }
        // Done and not yet stored: no other thread touches this job.
        Job& j = slots_[head_ % kSlots];
        Status s = store.put_encoded(j.id, j.codec, j.codec == Codec::raw ? j.input() : std::span<const std::byte>(j.stored), j.length);
        ids_.erase(j.id);
        j.data = {};
        j.tag = -1;
        // Keep a typical chunk's buffers for the next job; let a rare large one go.
        if (j.stored.capacity() > (2u << 20)) std::vector<std::byte>().swap(j.stored);
        if (j.copy.capacity() > kCopyBelow) std::vector<std::byte>().swap(j.copy);
        ++head_;
        if (!s) return s;
    }
}

Status StoreBehind::release(ObjectStore& store, int tag) {
    while (busy_with(tag)) DVOL_CHECK(step(store, true));
    return {};
}

Status StoreBehind::finish(ObjectStore& store) {
    while (head_ < tail_) DVOL_CHECK(step(store, true));
    return {};
}

}  // namespace dvol
