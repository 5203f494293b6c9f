#include "repo/readers.h"

#include <fmt/format.h>

namespace dvol {

Result<Tree> load_tree(ObjectSource& source, const TreeOverlay* overlay, const ObjectId& id) {
    if (overlay) {
        if (auto it = overlay->find(id); it != overlay->end()) return it->second;
    }
    DVOL_TRY(auto bytes, source.get(id));
    auto tree = decode_tree(bytes);
    if (!tree) return make_error(Errc::corrupt, fmt::format("tree {}: {}", id.hex(), tree.error().message));
    return tree;
}

Result<bool> path_in_tree(ObjectSource& source, const TreeOverlay* overlay, const ObjectId& top, const std::string& path) {
    DVOL_TRY(Tree t, load_tree(source, overlay, top));
    const TreeEntry* root = t.find(kRootEntryName);
    if (!root || root->type != EntryType::dir) return false;
    ObjectId dir = root->subtree;
    size_t start = 0;
    for (;;) {
        size_t slash = path.find('/', start);
        std::string name = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        DVOL_TRY(Tree here, load_tree(source, overlay, dir));
        const TreeEntry* e = here.find(name);
        if (!e) return false;
        if (slash == std::string::npos) return true;
        if (e->type != EntryType::dir) return false;
        dir = e->subtree;
        start = slash + 1;
    }
}

Result<std::optional<Extent>> ExtentCursor::next() {
    const std::vector<Extent>* v = content_.indirect ? &list_ : &content_.extents;
    while (pos_ >= v->size()) {
        if (!content_.indirect || list_index_ >= content_.lists.size()) return std::optional<Extent>();
        const auto& ref = content_.lists[list_index_++];
        DVOL_TRY(auto bytes, source_.get(ref.id));
        DVOL_TRY(list_, decode_extent_list(bytes));
        if (list_.size() != ref.count) return make_error(Errc::corrupt, fmt::format("extent list {} has the wrong length", ref.id.hex()));
        pos_ = 0;
    }
    const Extent& x = (*v)[pos_++];
    offset_ = next_offset_;
    next_offset_ += x.length;
    return std::optional<Extent>(x);
}

Result<std::optional<std::string>> read_content(ObjectSource& source, const FileContent& content, uint64_t size, uint64_t limit) {
    if (size > limit) return std::optional<std::string>();
    std::string out;
    out.reserve(size);
    ExtentCursor cur(source, content);
    std::vector<std::byte> buf;
    for (;;) {
        DVOL_TRY(auto x, cur.next());
        if (!x) break;
        if (out.size() + x->length > limit) return std::optional<std::string>();
        if (x->hole) {
            out.append(x->length, '\0');
            continue;
        }
        DVOL_CHECK(source.get(x->id, buf));
        out.append(reinterpret_cast<const char*>(buf.data()), buf.size());
    }
    return std::optional<std::string>(std::move(out));
}

}  // namespace dvol
