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
        if (!content_.indirect) return std::optional<Extent>();
        if (list_index_ > 0) {
            // The list just read must cover the bytes its reference says.
            const auto& done = content_.lists[list_index_ - 1];
            if (next_offset_ - list_start_ != done.length)
                return make_error(Errc::corrupt, fmt::format("extent list {} covers {} bytes, not the {} its file says", done.id.hex(),
                                                             next_offset_ - list_start_, done.length));
        }
        if (list_index_ >= content_.lists.size()) return std::optional<Extent>();
        const auto& ref = content_.lists[list_index_++];
        DVOL_TRY(auto bytes, source_.get(ref.id));
        DVOL_TRY(list_, decode_extent_list(bytes));
        if (list_.size() != ref.count) return make_error(Errc::corrupt, fmt::format("extent list {} has the wrong length", ref.id.hex()));
        if (last_hole_ && list_.front().hole)
            return make_error(Errc::corrupt, fmt::format("extent list {} starts with a hole after a hole (writers merge them)", ref.id.hex()));
        list_start_ = next_offset_;
        pos_ = 0;
    }
    const Extent& x = (*v)[pos_++];
    offset_ = next_offset_;
    next_offset_ += x.length;
    last_hole_ = x.hole;
    return std::optional<Extent>(x);
}

Result<std::optional<TreeEntry>> TreePaths::find(std::string_view path) {
    std::vector<std::string_view> names;
    for (size_t start = 0;;) {
        size_t slash = path.find('/', start);
        names.push_back(path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    if (chain_.empty()) {
        DVOL_TRY(Tree t, load_tree(source_, nullptr, root_));
        chain_.emplace_back(std::string(), std::move(t));
    }
    // Keep the directories this path shares with the last one; load the others.
    size_t keep = 1;
    while (keep < chain_.size() && keep <= names.size() - 1 && chain_[keep].first == names[keep - 1]) ++keep;
    chain_.resize(keep);
    for (size_t i = keep - 1; i + 1 < names.size(); ++i) {
        const TreeEntry* dir = chain_.back().second.find(names[i]);
        if (!dir || dir->type != EntryType::dir) return std::optional<TreeEntry>();
        DVOL_TRY(Tree t, load_tree(source_, nullptr, dir->subtree));
        chain_.emplace_back(std::string(names[i]), std::move(t));
    }
    const TreeEntry* e = chain_.back().second.find(names.back());
    if (!e) return std::optional<TreeEntry>();
    return std::optional<TreeEntry>(*e);
}

Result<std::optional<std::string>> hardlink_problem(TreePaths& paths, const std::string& path, const std::string& target) {
    using Why = std::optional<std::string>;
    if (!scan_order_before(target, path))
        return Why(fmt::format("hard link {} names {}, which does not come before it in the tree", path, target));
    auto found = paths.find(target);
    if (!found) return Why(fmt::format("hard link {} names {}, whose directory cannot be read: {}", path, target, found.error().message));
    if (!*found || (*found)->type != EntryType::file)
        return Why(fmt::format("hard link {} names {}, which is not a file of the same tree", path, target));
    return Why();
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
