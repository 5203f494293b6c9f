#include "repo/walk.h"

#include <fmt/format.h>

namespace dvol {

namespace {

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
    // Depth-first with a stack of frames, not the C stack: a tree of any depth is walked.
    struct Frame {
        Tree tree;
        size_t next = 0;
        size_t path_len = 0;  // of `cur` for this tree's directory
        bool top = false;
        ObjectId id;
    };
    std::vector<Frame> frames;
    std::string cur = path;
    // Visits tree `tid` at `cur` and, when it is to be descended, pushes its frame.
    auto open = [&](const ObjectId& tid, bool is_top) -> Status {
        DVOL_TRY(bool descend, w.visit(tid, ObjectKind::tree, cur));
        if (!descend) return {};
        auto bytes = source.get(tid);
        if (!bytes) {
            w.unreadable(tid, cur, bytes.error());
            return {};
        }
        auto tree = decode_tree(*bytes);
        if (!tree) {
            w.unreadable(tid, cur, make_error(Errc::corrupt, fmt::format("tree {}: {}", tid.hex(), tree.error().message)));
            return {};
        }
        frames.push_back(Frame{std::move(*tree), 0, cur.size(), is_top, tid});
        return {};
    };
    DVOL_CHECK(open(id, top));
    while (!frames.empty()) {
        Frame& f = frames.back();
        if (f.next == f.tree.entries.size()) {
            // Post-order: a tree is left once everything below it has been (walk.h).
            ObjectId done = f.id;
            frames.pop_back();
            if (w.leave) DVOL_CHECK(w.leave(done, ObjectKind::tree));
            continue;
        }
        const TreeEntry& e = f.tree.entries[f.next++];
        cur.resize(f.path_len);
        // The single entry of a commit's top tree is the live directory itself.
        if (!f.top) {
            if (!cur.empty()) cur += '/';
            cur += e.name;
        }
        if (e.type == EntryType::file) DVOL_CHECK(walk_content(source, e.content, cur, w));
        if (e.type == EntryType::dir) {
            ObjectId sub = e.subtree;  // open() may move the frame
            DVOL_CHECK(open(sub, false));
        }
    }
    return {};
}

}  // namespace dvol
