// A thread-safe ObjectSource over several sources that are not (each ObjectStore has its own
// SQLite connection and buffers): every call borrows a source no other thread is using, waiting
// when all are busy. With one source it is a mutex around that source; with N, up to N objects
// are read, decompressed and verified at once.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "store/object_source.h"

namespace dvol {

class PooledSource final : public ObjectSource {
public:
    // `sources` must not be empty.
    explicit PooledSource(std::vector<std::unique_ptr<ObjectSource>> sources) : all_(std::move(sources)) {
        for (auto& s : all_) free_.push_back(s.get());
    }

    Result<bool> has(const ObjectId& id) override {
        Lease l(*this);
        return l.source->has(id);
    }
    Status get(const ObjectId& id, std::vector<std::byte>& out) override {
        Lease l(*this);
        return l.source->get(id, out);
    }
    using ObjectSource::get;
    void get_many(std::span<const ObjectId> ids, const ObjectFn& fn) override {
        Lease l(*this);
        l.source->get_many(ids, fn);
    }

    size_t size() const { return all_.size(); }

private:
    struct Lease {
        explicit Lease(PooledSource& p) : pool(p) {
            std::unique_lock lk(pool.mu_);
            pool.cv_.wait(lk, [&] { return !pool.free_.empty(); });
            source = pool.free_.back();
            pool.free_.pop_back();
        }
        ~Lease() {
            {
                std::lock_guard lk(pool.mu_);
                pool.free_.push_back(source);
            }
            pool.cv_.notify_one();
        }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        PooledSource& pool;
        ObjectSource* source = nullptr;
    };

    std::vector<std::unique_ptr<ObjectSource>> all_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<ObjectSource*> free_;
};

}  // namespace dvol
