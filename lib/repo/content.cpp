#include "repo/content.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "base/fs.h"

namespace dvol {

bool all_zero(std::span<const std::byte> data) {
    static const std::byte zeros[4096] = {};
    while (!data.empty()) {
        size_t n = std::min(data.size(), sizeof zeros);
        if (std::memcmp(data.data(), zeros, n) != 0) return false;
        data = data.subspan(n);
    }
    return true;
}

Status ContentBuilder::add(const Extent& x) {
    size_ += x.length;
    if (x.hole && !pending_.empty() && pending_.back().hole) {
        pending_.back().length += x.length;
        return {};
    }
    // Only spill once a further extent arrives, so a trailing hole can still merge.
    if (pending_.size() == kMaxExtentsPerList) DVOL_CHECK(spill());
    pending_.push_back(x);
    return {};
}

Status ContentBuilder::spill() {
    auto bytes = encode_extent_list(pending_);
    ObjectId id = sha256(bytes);
    if (store_) DVOL_CHECK(store_->put(id, bytes));
    uint64_t len = 0;
    for (const auto& x : pending_) len += x.length;
    content_.indirect = true;
    content_.lists.push_back(ExtentListRef{id, len, pending_.size()});
    pending_.clear();
    return {};
}

Result<FileContent> ContentBuilder::finish() {
    if (content_.indirect) {
        if (!pending_.empty()) DVOL_CHECK(spill());
    } else {
        content_.extents = std::move(pending_);
    }
    FileContent out = std::move(content_);
    content_ = FileContent();
    pending_.clear();
    size_ = 0;
    return out;
}

Result<FileContent> chunk_file(int fd, const std::string& path, const Chunker& chunker, ObjectStore* store,
                               const std::function<void(uint64_t)>& on_read, std::vector<std::byte>* buffer) {
    constexpr size_t kRead = 4u << 20;
    std::vector<std::byte> own;
    std::vector<std::byte>& buf = buffer ? *buffer : own;
    if (buf.size() < kRead + chunker.max_size()) buf.resize(kRead + chunker.max_size());
    size_t have = 0;
    bool eof = false;
    ContentBuilder builder(store);
    for (;;) {
        if (!eof && have < chunker.max_size()) {
            DVOL_TRY(size_t n, read_some(fd, std::span(buf).subspan(have, buf.size() - have), path));
            have += n;
            if (n == 0) eof = true;
            if (on_read && n > 0) on_read(n);
        }
        if (have == 0) break;
        size_t start = 0;
        while (have - start >= chunker.max_size() || (eof && start < have)) {
            auto rest = std::span<const std::byte>(buf).subspan(start, have - start);
            size_t cut = chunker.next_cut(rest);
            auto chunk = rest.first(cut);
            if (all_zero(chunk)) {
                DVOL_CHECK(builder.add(Extent{ObjectId{}, cut, true}));
            } else {
                ObjectId id = sha256(chunk);
                if (store) DVOL_CHECK(store->put(id, chunk));
                DVOL_CHECK(builder.add(Extent{id, cut, false}));
            }
            start += cut;
        }
        std::memmove(buf.data(), buf.data() + start, have - start);
        have -= start;
        if (eof && have == 0) break;
    }
    return builder.finish();
}

Result<std::optional<Extent>> ExtentCursor::next() {
    const std::vector<Extent>* v = content_.indirect ? &list_ : &content_.extents;
    while (pos_ >= v->size()) {
        if (!content_.indirect || list_index_ >= content_.lists.size()) return std::optional<Extent>();
        const auto& ref = content_.lists[list_index_++];
        DVOL_TRY(auto bytes, store_.get(ref.id));
        DVOL_TRY(list_, decode_extent_list(bytes));
        if (list_.size() != ref.count) return make_error(Errc::corrupt, fmt::format("extent list {} has the wrong length", ref.id.hex()));
        pos_ = 0;
    }
    const Extent& x = (*v)[pos_++];
    offset_ = next_offset_;
    next_offset_ += x.length;
    return std::optional<Extent>(x);
}

Result<std::optional<std::string>> read_content(ObjectStore& store, const FileContent& content, uint64_t size, uint64_t limit) {
    if (size > limit) return std::optional<std::string>();
    std::string out;
    out.reserve(size);
    ExtentCursor cur(store, content);
    std::vector<std::byte> buf;
    for (;;) {
        DVOL_TRY(auto x, cur.next());
        if (!x) break;
        if (out.size() + x->length > limit) return std::optional<std::string>();
        if (x->hole) {
            out.append(x->length, '\0');
            continue;
        }
        DVOL_CHECK(store.get(x->id, buf));
        out.append(reinterpret_cast<const char*>(buf.data()), buf.size());
    }
    return std::optional<std::string>(std::move(out));
}

}  // namespace dvol
