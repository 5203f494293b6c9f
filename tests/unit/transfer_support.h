// What the remote_objects and transfer tests share: a Backend wrapper that counts the requests
// and bytes going to a remote, and fails on demand after a number of writes or reads (an
// interrupted transfer); and readers of a pack file's records.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "remote/backend.h"
#include "store/pack_format.h"

namespace dvol::test {

// What went through a CountingBackend, and the failures it should inject. Shared (the Backend
// lives inside a Repository command, the test reads the counts after it).
struct BackendCounts {
    std::map<std::string, uint64_t> calls;  // by operation: list, read, read_all, write, ...
    uint64_t bytes_read = 0;
    uint64_t bytes_written = 0;
    std::vector<std::string> written;  // keys of successful writes (objects and refs), in order
    std::vector<std::string> read;     // keys of successful reads (read, read_all), in order

    // After this many successful writes (write, write_file, create_ref, update_ref) or reads
    // (read, read_all) every further one fails with Errc::unavailable. Negative: never. With
    // `reads_of`, only reads of the keys it accepts count and fail.
    int64_t fail_after_writes = -1;
    int64_t fail_after_reads = -1;
    std::function<bool(const std::string& key)> reads_of;
    uint64_t writes = 0;
    uint64_t reads = 0;

    uint64_t requests() const {
        uint64_t n = 0;
        for (const auto& [op, count] : calls) n += count;
        return n;
    }
    uint64_t count(const std::string& op) const {
        auto it = calls.find(op);
        return it == calls.end() ? 0 : it->second;
    }
    void reset() {
        calls.clear();
        bytes_read = bytes_written = 0;
        written.clear();
        read.clear();
        writes = reads = 0;
        fail_after_writes = fail_after_reads = -1;
        reads_of = nullptr;
    }
};

class CountingBackend final : public remote::Backend {
public:
    CountingBackend(std::unique_ptr<remote::Backend> inner, std::shared_ptr<BackendCounts> counts)
        : inner_(std::move(inner)), c_(std::move(counts)) {}

    const std::string& location() const override { return inner_->location(); }

    Result<std::vector<remote::Entry>> list(const std::string& prefix) override {
        ++c_->calls["list"];
        return inner_->list(prefix);
    }
    Status read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) override {
        ++c_->calls["read"];
        if (auto e = read_failure(key)) return *e;
        DVOL_CHECK(inner_->read(key, offset, length, out));
        c_->bytes_read += out.size();
        c_->read.push_back(key);
        return {};
    }
    Status read_all(const std::string& key, std::vector<std::byte>& out) override {
        ++c_->calls["read_all"];
        if (auto e = read_failure(key)) return *e;
        DVOL_CHECK(inner_->read_all(key, out));
        c_->bytes_read += out.size();
        c_->read.push_back(key);
        return {};
    }
    Status write(const std::string& key, std::span<const std::byte> data) override {
        ++c_->calls["write"];
        if (auto e = write_failure(key)) return *e;
        DVOL_CHECK(inner_->write(key, data));
        c_->bytes_written += data.size();
        c_->written.push_back(key);
        return {};
    }
    Status write_file(const std::string& key, int fd, uint64_t size) override {
        ++c_->calls["write_file"];
        if (auto e = write_failure(key)) return *e;
        DVOL_CHECK(inner_->write_file(key, fd, size));
        c_->bytes_written += size;
        c_->written.push_back(key);
        return {};
    }
    Result<std::optional<remote::RefValue>> read_ref(const std::string& key) override {
        ++c_->calls["read_ref"];
        return inner_->read_ref(key);
    }
    Result<std::string> create_ref(const std::string& key, std::string_view data) override {
        ++c_->calls["create_ref"];
        if (auto e = write_failure(key)) return *e;
        DVOL_TRY(auto v, inner_->create_ref(key, data));
        c_->written.push_back(key);
        return v;
    }
    Result<std::string> update_ref(const std::string& key, std::string_view data, const std::string& expected) override {
        ++c_->calls["update_ref"];
        if (auto e = write_failure(key)) return *e;
        DVOL_TRY(auto v, inner_->update_ref(key, data, expected));
        c_->written.push_back(key);
        return v;
    }
    Status remove(const std::string& key) override {
        ++c_->calls["remove"];
        return inner_->remove(key);
    }

private:
    std::optional<Error> write_failure(const std::string& key) {
        if (c_->fail_after_writes >= 0 && c_->writes >= static_cast<uint64_t>(c_->fail_after_writes))
            return make_error(Errc::unavailable, "injected failure writing " + key);
        ++c_->writes;
        return std::nullopt;
    }
    std::optional<Error> read_failure(const std::string& key) {
        if (c_->reads_of && !c_->reads_of(key)) return std::nullopt;
        if (c_->fail_after_reads >= 0 && c_->reads >= static_cast<uint64_t>(c_->fail_after_reads))
            return make_error(Errc::unavailable, "injected failure reading " + key);
        ++c_->reads;
        return std::nullopt;
    }

    std::unique_ptr<remote::Backend> inner_;
    std::shared_ptr<BackendCounts> c_;
};

// One record of a pack file: its object, where its header lies, and its lengths.
struct PackRecord {
    ObjectId id;
    uint64_t offset = 0;
    uint32_t stored_len = 0;
    uint32_t raw_len = 0;
};

// The records of the pack file `bytes`, in file order (empty when it is not a pack).
inline std::vector<PackRecord> pack_records(std::span<const std::byte> bytes) {
    std::vector<PackRecord> out;
    if (bytes.size() < kPackHeaderSize || !valid_pack_header(bytes.first(kPackHeaderSize))) return out;
    auto le32 = [&](uint64_t at) {
        uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(bytes[at + static_cast<uint64_t>(i)]) << (8 * i);
        return v;
    };
    uint64_t at = kPackHeaderSize;
    while (at + kRecordHeaderSize <= bytes.size()) {
        PackRecord r;
        r.offset = at;
        r.raw_len = le32(at + 8);
        r.stored_len = le32(at + 12);
        r.id = ObjectId::from_bytes(bytes.subspan(at + 16, 32));
        out.push_back(r);
        at += kRecordHeaderSize + r.stored_len;
    }
    return out;
}

}  // namespace dvol::test
