#include "repo/tree_diff.h"

#include <fmt/format.h>

namespace dvol {

const char* change_kind_name(ChangeKind k) {
    switch (k) {
        case ChangeKind::added: return "added";
        case ChangeKind::deleted: return "deleted";
        case ChangeKind::modified: return "modified";
        case ChangeKind::type_changed: return "typechange";
        case ChangeKind::metadata: return "metadata";
    }
    return "?";
}

namespace {

struct Differ {
    ObjectSource& source;
    const TreeOverlay* overlay;
    std::string prefix;
    std::vector<Change> out;

    // Whether `path` can hold or be under the prefix.
    bool relevant(const std::string& path) const {
        if (prefix.empty() || path == prefix) return true;
        if (path.size() < prefix.size()) return prefix.compare(0, path.size() + 1, path + "/") == 0;
        return path.compare(0, prefix.size() + 1, prefix + "/") == 0;
    }
    bool selected(const std::string& path) const {
        return prefix.empty() || path == prefix || path.compare(0, prefix.size() + 1, prefix + "/") == 0;
    }

    std::vector<std::string> metadata_changes(const TreeEntry& a, const TreeEntry& b) {
        std::vector<std::string> what;
        if (a.mode != b.mode) what.push_back(fmt::format("mode {:04o} -> {:04o}", a.mode, b.mode));
        if (a.uid != b.uid || a.gid != b.gid) what.push_back(fmt::format("owner {}:{} -> {}:{}", a.uid, a.gid, b.uid, b.gid));
        if (a.xattrs != b.xattrs) what.push_back("xattrs");
        // A directory's mtime follows its children; only files and links report it.
        if (a.type != EntryType::dir && a.mtime_ns != b.mtime_ns) what.push_back("mtime");
        return what;
    }

    Status add_all(const std::string& path, const TreeEntry& e, bool added) {
        if (!relevant(path)) return {};
        if (selected(path)) {
            Change c{added ? ChangeKind::added : ChangeKind::deleted, path, {}, {}, {}};
            (added ? c.new_entry : c.old_entry) = e;
            out.push_back(std::move(c));
        }
        if (e.type == EntryType::dir) {
            DVOL_TRY(Tree t, load_tree(source, overlay, e.subtree));
            for (const auto& sub : t.entries) DVOL_CHECK(add_all(path + "/" + sub.name, sub, added));
        }
        return {};
    }

    Status compare(const std::string& path, const TreeEntry& a, const TreeEntry& b) {
        if (!relevant(path)) return {};
        if (a.type != b.type) {
            if (a.type == EntryType::dir || b.type == EntryType::dir) {
                DVOL_CHECK(add_all(path, a, false));
                return add_all(path, b, true);
            }
            if (selected(path)) out.push_back(Change{ChangeKind::type_changed, path, a, b, {}});
            return {};
        }
        bool content_differs = false;
        switch (a.type) {
            case EntryType::file: content_differs = a.size != b.size || !(a.content == b.content); break;
            case EntryType::symlink:
            case EntryType::hardlink: content_differs = a.target != b.target; break;
            case EntryType::chardev:
            case EntryType::blockdev: content_differs = a.rdev != b.rdev; break;
            default: break;
        }
        auto what = metadata_changes(a, b);
        if (selected(path)) {
            if (content_differs) out.push_back(Change{ChangeKind::modified, path, a, b, what});
            else if (!what.empty()) out.push_back(Change{ChangeKind::metadata, path, a, b, what});
        }
        if (a.type == EntryType::dir && a.subtree != b.subtree) return compare_dirs(path, a.subtree, b.subtree);
        return {};
    }

    Status compare_dirs(const std::string& base, const ObjectId& a_id, const ObjectId& b_id) {
        DVOL_TRY(Tree a, load_tree(source, overlay, a_id));
        DVOL_TRY(Tree b, load_tree(source, overlay, b_id));
        auto join = [&](const std::string& n) { return base.empty() ? n : base + "/" + n; };
        size_t i = 0, j = 0;
        while (i < a.entries.size() || j < b.entries.size()) {
            if (j == b.entries.size() || (i < a.entries.size() && a.entries[i].name < b.entries[j].name)) {
                DVOL_CHECK(add_all(join(a.entries[i].name), a.entries[i], false));
                ++i;
            } else if (i == a.entries.size() || b.entries[j].name < a.entries[i].name) {
                DVOL_CHECK(add_all(join(b.entries[j].name), b.entries[j], true));
                ++j;
            } else {
                DVOL_CHECK(compare(join(a.entries[i].name), a.entries[i], b.entries[j]));
                ++i;
                ++j;
            }
        }
        return {};
    }

    Result<TreeEntry> root_of(const ObjectId& top) {
        DVOL_TRY(Tree t, load_tree(source, overlay, top));
        const TreeEntry* r = t.find(kRootEntryName);
        if (t.entries.size() != 1 || !r || r->type != EntryType::dir)
            return make_error(Errc::corrupt, fmt::format("tree {} is not a volume's top tree", top.hex()));
        return *r;
    }
};

}  // namespace

Result<std::vector<Change>> diff_trees(ObjectSource& source, const TreeOverlay* overlay, const ObjectId* old_top,
                                       const ObjectId* new_top, const std::string& prefix) {
    Differ d{source, overlay, prefix, {}};
    if (old_top && new_top && *old_top == *new_top) return d.out;
    std::optional<TreeEntry> a, b;
    if (old_top) { DVOL_TRY(a, d.root_of(*old_top)); }
    if (new_top) { DVOL_TRY(b, d.root_of(*new_top)); }
    if (a && b) {
        if (prefix.empty()) {
            auto what = d.metadata_changes(*a, *b);
            if (!what.empty()) d.out.push_back(Change{ChangeKind::metadata, ".", a, b, what});
        }
        DVOL_CHECK(d.compare_dirs("", a->subtree, b->subtree));
    } else if (a || b) {
        const TreeEntry& r = a ? *a : *b;
        DVOL_TRY(Tree t, load_tree(source, overlay, r.subtree));
        for (const auto& e : t.entries) DVOL_CHECK(d.add_all(e.name, e, !a));
    }
    return std::move(d.out);
}

}  // namespace dvol
