// The readers of trees and content (repo/readers.h), tree walks and diffs go through an
// ObjectSource and nothing else: here they read from a source that holds objects in memory,
// never opened as a store, and count every get.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "object/tree.h"
#include "repo/readers.h"
#include "repo/tree_diff.h"
#include "repo/walk.h"
#include "store/hash.h"

using namespace dvol;

namespace {

class MemorySource : public ObjectSource {
public:
    ObjectId put(std::span<const std::byte> bytes) {
        ObjectId id = sha256(bytes);
        objects_[id].assign(bytes.begin(), bytes.end());
        return id;
    }
    ObjectId put(std::string_view s) { return put(std::as_bytes(std::span(s.data(), s.size()))); }

    Result<bool> has(const ObjectId& id) override {
        ++has_calls;
        return objects_.contains(id);
    }
    Status get(const ObjectId& id, std::vector<std::byte>& out) override {
        ++get_calls;
        ++gets[id];
        auto it = objects_.find(id);
        if (it == objects_.end()) return make_error(Errc::not_found, "no such object " + id.hex());
        out = it->second;
        return {};
    }
    using ObjectSource::get;

    int has_calls = 0;
    int get_calls = 0;
    std::map<ObjectId, int> gets;

private:
    std::map<ObjectId, std::vector<std::byte>> objects_;
};

TreeEntry file_entry(const std::string& name, FileContent content, uint64_t size) {
    TreeEntry e;
    e.name = name;
    e.type = EntryType::file;
    e.mode = 0644;
    e.size = size;
    e.content = std::move(content);
    return e;
}

TreeEntry dir_entry(const std::string& name, const ObjectId& subtree) {
    TreeEntry e;
    e.name = name;
    e.type = EntryType::dir;
    e.mode = 0755;
    e.subtree = subtree;
    return e;
}

// A volume's top tree: root -> {a.txt (inline: "hello, " + hole + "world"), big (two extent
// lists: "hello, " + hole + 4094 x "world", then "world"), sub/ -> {b.txt}}.
constexpr uint64_t kBigList1 = 7 + 3 + 5 * (kMaxExtentsPerList - 2);
constexpr uint64_t kBigSize = kBigList1 + 5;

struct Volume {
    MemorySource src;
    ObjectId hello, world, b_chunk, list1, list2, sub, root, top;

    Volume() {
        hello = src.put("hello, ");
        world = src.put("world");
        b_chunk = src.put("bee");
        // Only a file of more than 4096 extents has lists, all full but the last.
        std::vector<Extent> l1{Extent{hello, 7, false}, Extent{{}, 3, true}};
        l1.resize(kMaxExtentsPerList, Extent{world, 5, false});
        std::vector<Extent> l2{Extent{world, 5, false}};
        list1 = src.put(encode_extent_list(l1));
        list2 = src.put(encode_extent_list(l2));

        FileContent a;
        a.extents = {Extent{hello, 7, false}, Extent{{}, 2, true}, Extent{world, 5, false}};
        FileContent big;
        big.indirect = true;
        big.lists = {ExtentListRef{list1, kBigList1, kMaxExtentsPerList}, ExtentListRef{list2, 5, 1}};
        FileContent b;
        b.extents = {Extent{b_chunk, 3, false}};

        Tree subtree;
        subtree.entries = {file_entry("b.txt", b, 3)};
        sub = src.put(encode_tree(subtree));
        Tree rt;
        rt.entries = {file_entry("a.txt", a, 14), file_entry("big", big, kBigSize), dir_entry("sub", sub)};
        root = src.put(encode_tree(rt));
        Tree t;
        t.entries = {dir_entry(std::string(kRootEntryName), root)};
        top = src.put(encode_tree(t));
    }
};

}  // namespace

TEST_CASE("load_tree reads through the source, the overlay first", "[readers]") {
    Volume v;
    auto t = load_tree(v.src, nullptr, v.root);
    REQUIRE(t);
    REQUIRE(t->entries.size() == 3);
    CHECK(v.src.gets[v.root] == 1);

    TreeOverlay overlay;
    Tree shadow;
    shadow.entries = {dir_entry("only-in-overlay", v.sub)};
    overlay.emplace(v.root, shadow);
    auto o = load_tree(v.src, &overlay, v.root);
    REQUIRE(o);
    CHECK(o->entries.size() == 1);
    CHECK(v.src.gets[v.root] == 1);  // not read again

    auto missing = load_tree(v.src, nullptr, sha256("nothing"));
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code == Errc::not_found);
    auto not_a_tree = load_tree(v.src, nullptr, v.hello);
    REQUIRE_FALSE(not_a_tree);
    CHECK(not_a_tree.error().code == Errc::corrupt);
}

TEST_CASE("ExtentCursor loads extent lists through the source, one at a time", "[readers]") {
    Volume v;
    auto t = load_tree(v.src, nullptr, v.root);
    REQUIRE(t);
    const TreeEntry* big = t->find("big");
    REQUIRE(big);
    ExtentCursor cur(v.src, big->content);
    std::vector<uint64_t> offsets;
    auto x = cur.next();
    REQUIRE(x);
    REQUIRE(*x);
    offsets.push_back(cur.offset());
    CHECK(v.src.gets[v.list1] == 1);
    CHECK(v.src.gets[v.list2] == 0);  // the second list is loaded only when reached
    for (;;) {
        x = cur.next();
        REQUIRE(x);
        if (!*x) break;
        offsets.push_back(cur.offset());
    }
    REQUIRE(offsets.size() == kMaxExtentsPerList + 1);
    CHECK(offsets[1] == 7);
    CHECK(offsets[2] == 10);
    CHECK(offsets.back() == kBigList1);
    CHECK(v.src.gets[v.list2] == 1);
}

TEST_CASE("read_content reads every chunk through the source", "[readers]") {
    Volume v;
    auto t = load_tree(v.src, nullptr, v.root);
    REQUIRE(t);
    auto a = read_content(v.src, t->find("a.txt")->content, 14, 1 << 20);
    REQUIRE(a);
    REQUIRE(*a);
    CHECK(**a == std::string("hello, \0\0world", 14));
    auto big = read_content(v.src, t->find("big")->content, kBigSize, 1 << 20);
    REQUIRE(big);
    REQUIRE(*big);
    std::string want("hello, \0\0\0", 10);
    for (size_t i = 0; i < kMaxExtentsPerList - 1; ++i) want += "world";
    CHECK(**big == want);
    CHECK(v.src.gets[v.hello] == 2);
    CHECK(v.src.gets[v.world] == kMaxExtentsPerList);
    auto limited = read_content(v.src, t->find("big")->content, kBigSize, 10);
    REQUIRE(limited);
    CHECK_FALSE(*limited);
}

TEST_CASE("walk_tree reads trees and extent lists through the source, not chunks", "[readers]") {
    Volume v;
    std::map<ObjectId, ObjectKind> seen;
    ObjectWalker w;
    w.visit = [&](const ObjectId& id, ObjectKind kind, const std::string&) -> Result<bool> {
        return seen.emplace(id, kind).second;
    };
    w.unreadable = [](const ObjectId&, const std::string&, const Error& e) { FAIL(e.message); };
    REQUIRE(walk_tree(v.src, v.top, "", w, true));
    CHECK(seen.size() == 8);  // 3 trees, 2 extent lists, 3 distinct chunks
    CHECK(seen[v.list1] == ObjectKind::extent_list);
    CHECK(seen[v.b_chunk] == ObjectKind::chunk);
    CHECK(v.src.gets[v.top] == 1);
    CHECK(v.src.gets[v.root] == 1);
    CHECK(v.src.gets[v.sub] == 1);
    CHECK(v.src.gets[v.list1] == 1);
    CHECK(v.src.gets[v.hello] == 0);  // chunks are visited, never read
}

TEST_CASE("diff_trees reads only the subtrees that differ, through the source", "[readers]") {
    Volume v;
    // A second state: sub/ unchanged, a.txt's mode changed.
    auto rt = load_tree(v.src, nullptr, v.root);
    REQUIRE(rt);
    Tree changed = *rt;
    changed.entries[0].mode = 0600;
    ObjectId root2 = v.src.put(encode_tree(changed));
    Tree t2;
    t2.entries = {dir_entry(std::string(kRootEntryName), root2)};
    ObjectId top2 = v.src.put(encode_tree(t2));

    v.src.gets.clear();
    v.src.get_calls = 0;
    auto d = diff_trees(v.src, nullptr, &v.top, &top2);
    REQUIRE(d);
    REQUIRE(d->size() == 1);
    CHECK((*d)[0].path == "a.txt");
    CHECK((*d)[0].kind == ChangeKind::metadata);
    CHECK(v.src.get_calls > 0);
    CHECK(v.src.gets[v.sub] == 0);  // same id on both sides: never loaded

    auto all = diff_trees(v.src, nullptr, nullptr, &v.top);
    REQUIRE(all);
    CHECK(all->size() == 4);  // a.txt, big, sub, sub/b.txt
}

TEST_CASE("TreePaths finds entries by path and hardlink_problem applies the format's rule", "[readers]") {
    Volume v;
    TreePaths paths(v.src, v.root);
    auto b = paths.find("sub/b.txt");
    REQUIRE(b);
    REQUIRE(*b);
    CHECK((*b)->type == EntryType::file);
    auto none = paths.find("sub/nothing");
    REQUIRE(none);
    CHECK_FALSE(*none);
    auto through_file = paths.find("a.txt/x");
    REQUIRE(through_file);
    CHECK_FALSE(*through_file);

    auto ok = hardlink_problem(paths, "z", "sub/b.txt");  // the target comes earlier
    REQUIRE(ok);
    CHECK_FALSE(*ok);
    auto later = hardlink_problem(paths, "a.txt", "sub/b.txt");
    REQUIRE(later);
    CHECK(*later);
    auto to_dir = hardlink_problem(paths, "z", "sub");
    REQUIRE(to_dir);
    CHECK(*to_dir);
    auto missing = hardlink_problem(paths, "z", "a.txu");
    REQUIRE(missing);
    CHECK(*missing);
}
