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

    // The work left, depth-first, on a stack of tasks rather than the C stack, so trees of any
    // depth are compared; the output is in the order a recursion would give (a directory's
    // entries by name, each followed by what lies below it).
    struct Task {
        enum class Kind { add_entry, add_children, compare_children } kind;
        size_t path_len = 0;  // of `path`: the entry (add_entry) or the directory (children)
        TreeEntry entry;      // add_entry
        bool added = false;   // add_entry, add_children
        Tree a, b;            // add_children: a; compare_children: a (old) and b (new)
        size_t i = 0, j = 0;  // next entries of a and b
    };
    std::vector<Task> tasks;
    std::string path;  // of the entry at hand; tasks below keep their prefix of it intact

    // Whether `path` can hold or be under the prefix.
    bool relevant(const std::string& p) const {
        if (prefix.empty() || p == prefix) return true;
        if (p.size() < prefix.size()) return prefix.compare(0, p.size() + 1, p + "/") == 0;
        return p.compare(0, prefix.size() + 1, prefix + "/") == 0;
    }
    bool selected(const std::string& p) const {
        return prefix.empty() || p == prefix || p.compare(0, prefix.size() + 1, prefix + "/") == 0;
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

    void enter(size_t base, const std::string& name) {
        path.resize(base);
        if (!path.empty()) path += '/';
        path += name;
    }

    // The entry at `path`, and (later) everything below it, as added or deleted.
    Status add_entry(const TreeEntry& e, bool added) {
        if (!relevant(path)) return {};
        if (selected(path)) {
            Change c{added ? ChangeKind::added : ChangeKind::deleted, path, {}, {}, {}};
            (added ? c.new_entry : c.old_entry) = e;
            out.push_back(std::move(c));
        }
        if (e.type == EntryType::dir) {
            Task t{Task::Kind::add_children, path.size(), {}, added, {}, {}, 0, 0};
            DVOL_TRY(t.a, load_tree(source, overlay, e.subtree));
            tasks.push_back(std::move(t));
        }
        return {};
    }

    // The entry at `path` in both trees.
    Status compare(const TreeEntry& a, const TreeEntry& b) {
        if (!relevant(path)) return {};
        if (a.type != b.type) {
            if (a.type == EntryType::dir || b.type == EntryType::dir) {
                // All of a as deleted, then all of b as added: b's task waits below a's.
                tasks.push_back(Task{Task::Kind::add_entry, path.size(), b, true, {}, {}, 0, 0});
                return add_entry(a, false);
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
        if (a.type == EntryType::dir && a.subtree != b.subtree) return push_compare(a.subtree, b.subtree);
        return {};
    }

    Status push_compare(const ObjectId& a_id, const ObjectId& b_id) {
        Task t{Task::Kind::compare_children, path.size(), {}, false, {}, {}, 0, 0};
        DVOL_TRY(t.a, load_tree(source, overlay, a_id));
        DVOL_TRY(t.b, load_tree(source, overlay, b_id));
        tasks.push_back(std::move(t));
        return {};
    }

    Status run() {
        while (!tasks.empty()) {
            Task& t = tasks.back();
            path.resize(t.path_len);
            switch (t.kind) {
                case Task::Kind::add_entry: {
                    Task mine = std::move(t);
                    tasks.pop_back();
                    DVOL_CHECK(add_entry(mine.entry, mine.added));
                    break;
                }
                case Task::Kind::add_children: {
                    if (t.i == t.a.entries.size()) {
                        tasks.pop_back();
                        break;
                    }
                    size_t k = t.i++;
                    bool added = t.added;
                    enter(t.path_len, t.a.entries[k].name);
                    TreeEntry e = t.a.entries[k];  // add_entry may push, moving t
                    DVOL_CHECK(add_entry(e, added));
                    break;
                }
                case Task::Kind::compare_children: {
                    auto& a = t.a.entries;
                    auto& b = t.b.entries;
                    if (t.i == a.size() && t.j == b.size()) {
                        tasks.pop_back();
                        break;
                    }
                    if (t.j == b.size() || (t.i < a.size() && a[t.i].name < b[t.j].name)) {
                        enter(t.path_len, a[t.i].name);
                        TreeEntry e = a[t.i++];
                        DVOL_CHECK(add_entry(e, false));
                    } else if (t.i == a.size() || b[t.j].name < a[t.i].name) {
                        enter(t.path_len, b[t.j].name);
                        TreeEntry e = b[t.j++];
                        DVOL_CHECK(add_entry(e, true));
                    } else {
                        enter(t.path_len, a[t.i].name);
                        TreeEntry ea = a[t.i++], eb = b[t.j++];
                        DVOL_CHECK(compare(ea, eb));
                    }
                    break;
                }
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
    Differ d{source, overlay, prefix, {}, {}, {}};
    if (old_top && new_top && *old_top == *new_top) return d.out;
    std::optional<TreeEntry> a, b;
    if (old_top) { DVOL_TRY(a, d.root_of(*old_top)); }
    if (new_top) { DVOL_TRY(b, d.root_of(*new_top)); }
    if (a && b) {
        if (prefix.empty()) {
            auto what = d.metadata_changes(*a, *b);
            if (!what.empty()) d.out.push_back(Change{ChangeKind::metadata, ".", a, b, what});
        }
        if (a->subtree != b->subtree) DVOL_CHECK(d.push_compare(a->subtree, b->subtree));
    } else if (a || b) {
        Differ::Task t{Differ::Task::Kind::add_children, 0, {}, !a, {}, {}, 0, 0};
        DVOL_TRY(t.a, load_tree(source, overlay, (a ? *a : *b).subtree));
        d.tasks.push_back(std::move(t));
    }
    DVOL_CHECK(d.run());
    return std::move(d.out);
}

}  // namespace dvol
