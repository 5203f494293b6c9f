// Canonical binary encoding helpers shared by the tree and commit formats: LEB128 varints,
// length-prefixed byte strings and fixed 32-byte ids. The reader never reads past its input
// and reports truncation instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/object_id.h"

namespace dvol {

class Encoder {
public:
    void u8(uint8_t v) { out_.push_back(static_cast<std::byte>(v)); }
    void varint(uint64_t v) {
        while (v >= 0x80) {
            u8(static_cast<uint8_t>(v | 0x80));
            v >>= 7;
        }
        u8(static_cast<uint8_t>(v));
    }
    void svarint(int64_t v) { varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
    void bytes(std::string_view s) {
        varint(s.size());
        raw(s);
    }
    void raw(std::string_view s) {
        auto b = reinterpret_cast<const std::byte*>(s.data());
        out_.insert(out_.end(), b, b + s.size());
    }
    void id(const ObjectId& id) {
        auto b = id.as_span();
        out_.insert(out_.end(), b.begin(), b.end());
    }
    std::vector<std::byte>& data() { return out_; }

private:
    std::vector<std::byte> out_;
};

class Decoder {
public:
    explicit Decoder(std::span<const std::byte> in) : in_(in) {}
    bool ok() const { return ok_; }
    bool at_end() const { return pos_ == in_.size(); }
    size_t remaining() const { return in_.size() - pos_; }

    uint8_t u8() {
        if (!need(1)) return 0;
        return static_cast<uint8_t>(in_[pos_++]);
    }
    uint64_t varint() {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            uint8_t b = u8();
            if (!ok_) return 0;
            if (shift == 63 && b > 1) break;
            v |= static_cast<uint64_t>(b & 0x7f) << shift;
            if (!(b & 0x80)) {
                // Canonical form only: no redundant trailing zero groups.
                if (b == 0 && shift > 0) break;
                return v;
            }
        }
        ok_ = false;
        return 0;
    }
    int64_t svarint() {
        uint64_t u = varint();
        return static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
    }
    // A length-prefixed string of at most `limit` bytes.
    std::string bytes(size_t limit) {
        uint64_t n = varint();
        if (!ok_ || n > limit || !need(n)) {
            ok_ = false;
            return {};
        }
        std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
        pos_ += n;
        return s;
    }
    bool expect(std::string_view lit) {
        if (!need(lit.size())) return false;
        if (std::string_view(reinterpret_cast<const char*>(in_.data() + pos_), lit.size()) != lit) {
            ok_ = false;
            return false;
        }
        pos_ += lit.size();
        return true;
    }
    ObjectId id() {
        if (!need(ObjectId::size)) return {};
        auto id = ObjectId::from_bytes(in_.subspan(pos_, ObjectId::size));
        pos_ += ObjectId::size;
        return id;
    }
    void fail() { ok_ = false; }

private:
    bool need(uint64_t n) {
        if (!ok_ || n > in_.size() - pos_) {
            ok_ = false;
            return false;
        }
        return true;
    }
    std::span<const std::byte> in_;
    size_t pos_ = 0;
    bool ok_ = true;
};

}  // namespace dvol
