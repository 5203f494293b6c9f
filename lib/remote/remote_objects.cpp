#include "remote/remote_objects.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "base/big_buffer.h"
#include "base/parallel.h"
#include "meta/db.h"
#include "store/pack_format.h"

namespace dvol::remote {

namespace {

// An index larger than this names more records than any pack can hold (256 MiB packs of
// 48-byte records at the least).
constexpr uint64_t kMaxIndexSize = 64u << 20;

}  // namespace

Result<RemoteObjects::RefreshStats> RemoteObjects::refresh() {
    RefreshStats out;
    ++stats_.requests;
    DVOL_TRY(auto listing, backend_.list(std::string(kIndexPrefix)));
    DVOL_TRY(auto known_list, index_.packs(remote_));
    std::set<std::string> known(known_list.begin(), known_list.end());
    std::set<std::string> listed;
    std::vector<std::byte> data;
    for (const auto& e : listing) {
        std::string name = e.key.substr(kIndexPrefix.size());
        if (!valid_pack_name(name)) continue;  // not dvol's: ignored
        listed.insert(name);
        if (known.contains(name)) continue;
        if (e.size > kMaxIndexSize)
            return make_error(Errc::corrupt, fmt::format("index {} on remote {} is too large ({} bytes)", name, backend_.location(), e.size));
        ++stats_.requests;
        DVOL_CHECK(backend_.read_all(e.key, data));
        stats_.bytes += data.size();
        auto index = decode_pack_index(data);
        if (!index)
            return make_error(index.error().code, fmt::format("index {} on remote {}: {}", name, backend_.location(), index.error().message));
        std::vector<meta::RemoteIndex::Record> records;
        records.reserve(index->entries.size());
        for (const auto& x : index->entries) records.push_back({x.id, x.offset, x.stored_len, x.raw_len});
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(db_));
        DVOL_CHECK(index_.add_pack(remote_, name, static_cast<int>(index->kind), index->pack_size, records));
        DVOL_CHECK(txn.commit());
        ++out.indexes_read;
    }
    for (const auto& name : known) {
        if (listed.contains(name)) continue;
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(db_));
        DVOL_CHECK(index_.drop_pack(remote_, name));
        DVOL_CHECK(txn.commit());
        ++out.packs_forgotten;
    }
    return out;
}

Result<bool> RemoteObjects::has(const ObjectId& id) { return index_.has(remote_, id); }

Status RemoteObjects::decode(const ObjectId& id, const meta::RemoteIndex::Location& loc, std::span<const std::byte> record,
                             std::vector<std::byte>& out) {
    auto corrupt = [&](std::string_view why) {
        return make_error(Errc::corrupt, fmt::format("object {} in pack {} on remote {} is corrupt: {}", id.hex(), loc.pack,
                                                     backend_.location(), why));
    };
    if (record.size() != kRecordHeaderSize + loc.stored_len) return corrupt("the pack is shorter than its index says");
    if (const char* why = record_header_problem(record.data(), id, loc.raw_len, loc.stored_len)) return corrupt(why);
    if (auto st = decode_record(record, id, loc.raw_len, out, true); !st) return corrupt(st.error().message);
    return {};
}

Status RemoteObjects::read_range(const std::string& pack, uint64_t offset, uint64_t length, std::vector<std::byte>& out) {
    ++stats_.requests;
    DVOL_CHECK(backend_.read(pack_key(pack), offset, length, out));
    stats_.bytes += out.size();
    return {};
}

Result<const std::vector<std::byte>*> RemoteObjects::metadata_pack(const std::string& name, uint64_t size) {
    for (auto it = packs_.begin(); it != packs_.end(); ++it) {
        if (it->first != name) continue;
        packs_.splice(packs_.end(), packs_, it);
        return &packs_.back().second;
    }
    std::vector<std::byte> bytes;
    ++stats_.requests;
    // No further than the index says the pack goes: what the remote serves is bounded by what
    // was checked, however large the file there is.
    DVOL_CHECK(backend_.read(pack_key(name), 0, size, bytes));
    stats_.bytes += bytes.size();
    cached_bytes_ += bytes.size();
    packs_.emplace_back(name, std::move(bytes));
    while (cached_bytes_ > kMetadataCache && packs_.size() > 1) {
        cached_bytes_ -= packs_.front().second.size();
        packs_.pop_front();
    }
    return &packs_.back().second;
}

Status RemoteObjects::get(const ObjectId& id, std::vector<std::byte>& out) {
    DVOL_TRY(auto loc, index_.find(remote_, id));
    if (!loc) return make_error(Errc::not_found, fmt::format("object {} is not on remote {}", id.hex(), backend_.location()));
    uint64_t length = kRecordHeaderSize + loc->stored_len;
    if (loc->kind == static_cast<int>(PackKind::metadata) && loc->pack_size <= kMetadataCache) {
        DVOL_TRY(const std::vector<std::byte>* pack, metadata_pack(loc->pack, loc->pack_size));
        if (loc->offset > pack->size() || pack->size() - loc->offset < length) return decode(id, *loc, {}, out);
        return decode(id, *loc, std::span(*pack).subspan(loc->offset, length), out);
    }
    DVOL_CHECK(read_range(loc->pack, loc->offset, length, buf_));
    return decode(id, *loc, buf_, out);
}

std::vector<RemoteObjects::Range> RemoteObjects::plan_ranges(std::vector<Wanted>& wanted, uint64_t max_gap, uint64_t max_range) {
    std::sort(wanted.begin(), wanted.end(), [](const Wanted& a, const Wanted& b) {
        return a.loc.pack != b.loc.pack ? a.loc.pack < b.loc.pack : a.loc.offset < b.loc.offset;
    });
    std::vector<Range> ranges;
    for (size_t i = 0; i < wanted.size();) {
        uint64_t start = wanted[i].loc.offset;
        uint64_t end = start + kRecordHeaderSize + wanted[i].loc.stored_len;
        size_t j = i + 1;
        while (j < wanted.size() && wanted[j].loc.pack == wanted[i].loc.pack && wanted[j].loc.offset >= end &&
               wanted[j].loc.offset - end <= max_gap &&
               wanted[j].loc.offset + kRecordHeaderSize + wanted[j].loc.stored_len - start <= max_range) {
            end = wanted[j].loc.offset + kRecordHeaderSize + wanted[j].loc.stored_len;
            ++j;
        }
        ranges.push_back(Range{i, j, start, end});
        i = j;
    }
    return ranges;
}

void RemoteObjects::get_many(std::span<const ObjectId> ids, const ObjectFn& fn) {
    std::vector<Wanted> wanted;
    std::vector<std::byte> plain;
    for (const auto& id : ids) {
        if (std::any_of(wanted.begin(), wanted.end(), [&](const Wanted& w) { return w.id == id; })) continue;
        auto loc = index_.find(remote_, id);
        if (!loc) {
            plain.clear();
            fn(id, loc.error(), plain);
        } else if (!*loc) {
            plain.clear();
            fn(id, make_error(Errc::not_found, fmt::format("object {} is not on remote {}", id.hex(), backend_.location())), plain);
        } else if ((*loc)->kind == static_cast<int>(PackKind::metadata)) {
            // Read whole and kept (metadata_pack): get() does that.
            Status st = get(id, plain);
            if (!st) plain.clear();
            fn(id, st, plain);
        } else {
            wanted.push_back(Wanted{id, std::move(**loc)});
        }
    }
    for (const Range& range : plan_ranges(wanted, kGetManyGap, kGetManyRange)) {
        Status read = read_range(wanted[range.first].loc.pack, range.start, range.end - range.start, buf_);
        for (size_t k = range.first; k < range.last; ++k) {
            const auto& w = wanted[k];
            if (!read) {
                plain.clear();
                fn(w.id, read, plain);
                continue;
            }
            uint64_t at = w.loc.offset - range.start;
            uint64_t length = kRecordHeaderSize + w.loc.stored_len;
            std::span<const std::byte> record;
            if (at <= buf_.size() && buf_.size() - at >= length) record = std::span<const std::byte>(buf_).subspan(at, length);
            Status st = decode(w.id, w.loc, record, plain);  // a short read fails here, record by record
            if (!st) plain.clear();
            fn(w.id, st, plain);
        }
    }
}

Status RemoteObjects::fetch(std::vector<ObjectId> ids, const RecordFn& fn, const std::function<void(uint64_t)>& on_bytes) {
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    std::vector<Wanted> wanted;
    wanted.reserve(ids.size());
    for (const auto& id : ids) {
        DVOL_TRY(auto loc, index_.find(remote_, id));
        if (!loc) return make_error(Errc::not_found, fmt::format("object {} is not on remote {}", id.hex(), backend_.location()));
        wanted.push_back(Wanted{id, std::move(*loc)});
    }
    std::vector<Range> ranges = plan_ranges(wanted, kMaxGap, kMaxRange);
    if (ranges.empty()) return {};

    // Verifying (decompressing and hashing) is most of the work: the records of one read are
    // verified on two threads, while one of them reads the next range, and then handed to `fn`
    // in order on this thread. Two reads' bytes in memory at most.
    ParallelFor pool;
    // Filled for the first time, the buffers cost a page fault per 4 KiB: 8,000 for two reads
    // of 16 MiB, 0.1 s of CPU where a fault costs 12 us, and as many again for the decoded
    // chunks' buffers growing chunk by chunk. Each is made as large as it will get at once,
    // on huge pages where the kernel gives them (BigBuffer's hint; the backends and the
    // decoder fill vectors).
    std::vector<std::byte> current, next;
    std::vector<std::byte> plain[2];
    uint64_t largest = 0;
    for (const auto& w : wanted) largest = std::max<uint64_t>(largest, w.loc.raw_len);
    for (auto* b : {&current, &next}) reserve_huge(*b, kMaxRange + (size_t{2} << 20));
    for (auto* b : {&plain[0], &plain[1]}) reserve_huge(*b, static_cast<size_t>(largest));
    std::vector<Status> verdicts;
    DVOL_CHECK(read_range(wanted[ranges[0].first].loc.pack, ranges[0].start, ranges[0].end - ranges[0].start, current));
    if (on_bytes) on_bytes(current.size());
    for (size_t r = 0; r < ranges.size(); ++r) {
        const Range& range = ranges[r];
        const Range* ahead = r + 1 < ranges.size() ? &ranges[r + 1] : nullptr;
        size_t count = range.last - range.first;
        auto record_of = [&](size_t k) -> std::span<const std::byte> {
            const auto& w = wanted[k];
            uint64_t at = w.loc.offset - range.start;
            uint64_t length = kRecordHeaderSize + w.loc.stored_len;
            if (at > current.size() || current.size() - at < length) return {};  // short: decode() says so
            return std::span<const std::byte>(current).subspan(at, length);
        };
        verdicts.assign(count, Status{});
        Status read_ahead;
        // Task 0 reads ahead (the only one touching the backend and the stats); task 1 + k
        // verifies record first + k.
        pool.run(count + 1, [&](size_t task, int worker) {
            if (task == 0) {
                if (ahead) read_ahead = read_range(wanted[ahead->first].loc.pack, ahead->start, ahead->end - ahead->start, next);
                return;
            }
            size_t k = range.first + task - 1;
            verdicts[task - 1] = decode(wanted[k].id, wanted[k].loc, record_of(k), plain[worker]);
        });
        for (size_t k = range.first; k < range.last; ++k) {
            DVOL_CHECK(std::move(verdicts[k - range.first]));
            auto record = record_of(k);
            DVOL_CHECK(fn(wanted[k].id, record_codec(record.data()), record.subspan(kRecordHeaderSize), wanted[k].loc.raw_len));
        }
        if (!ahead) break;
        DVOL_CHECK(std::move(read_ahead));
        if (on_bytes) on_bytes(next.size());
        std::swap(current, next);
    }
    return {};
}

}  // namespace dvol::remote
