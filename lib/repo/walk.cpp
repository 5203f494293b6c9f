#include "repo/walk.h"

#include <fmt/format.h>

namespace dvol {

namespace {

std::string join(const std::string& base, const std::string& name) { return base.empty() ? name : base + "/" + name; }

Status walk_content(ObjectSource& source, const FileContent& c, const std::string& path, const ObjectWalker& w) {
    auto chunks = [&](const std::vector<Extent>& extents) -> Status {
        for (const auto& x : extents) {
            if (x.hole) continue;
            DVOL_TRY(bool unused, w.visit(x.id, ObjectKind::chunk, path));
            (void)unused;
        }
        return {};
    };
    if (!c.indirect) return chunks(c.extents);
    for (const auto& ref : c.lists) {
        DVOL_TRY(bool descend, w.visit(ref.id, ObjectKind::extent_list, path));
        if (!descend) continue;
        auto bytes = source.get(ref.id);
        if (!bytes) {
            w.unreadable(ref.id, path, bytes.error());
            continue;
        }
        auto list = decode_extent_list(*bytes);
        if (!list) {
            w.unreadable(ref.id, path, list.error());
            continue;
        }
        DVOL_CHECK(chunks(*list));
        if (w.leave) DVOL_CHECK(w.leave(ref.id, ObjectKind::extent_list));
    }
    return {};
}

}  // namespace

Status walk_tree(ObjectSource& source, const ObjectId& id, const std::string& path, const ObjectWalker& w, bool top) {
    DVOL_TRY(bool descend, w.visit(id, ObjectKind::tree, path));
    if (!descend) return {};
    auto bytes = source.get(id);
    if (!bytes) {
        w.unreadable(id, path, bytes.error());
        return {};
    }
    auto tree = decode_tree(*bytes);
    if (!tree) {
        w.unreadable(id, path, make_error(Errc::corrupt, fmt::format("tree {}: {}", id.hex(), tree.error().message)));
        return {};
    }
    for (const auto& e : tree->entries) {
        // The single entry of a commit's top tree is the live directory itself.
        std::string p = top ? path : join(path, e.name);
        if (e.type == EntryType::dir) DVOL_CHECK(walk_tree(source, e.subtree, p, w, false));
        if (e.type == EntryType::file) DVOL_CHECK(walk_content(source, e.content, p, w));
    }
    if (w.leave) DVOL_CHECK(w.leave(id, ObjectKind::tree));
    return {};
}

}  // namespace dvol
