// Push, fetch, pull and clone (lib/repo/transfer.cpp) between stores, each a Repository on a
// temporary directory, over a directory remote. Every Backend a Repository opens goes through
// a CountingBackend (transfer_support.h), so the tests can count requests and bytes and
// interrupt a transfer after a number of writes or reads.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <latch>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "meta/db.h"
#include "meta/refs.h"
#include "object/commit.h"
#include "object/tree.h"
#include "remote/dir_backend.h"
#include "remote/layout.h"
#include "repo/repository.h"
#include "store/hash.h"
#include "store/object_store.h"
#include "store/paths.h"
#include "support.h"
#include "transfer_support.h"

using namespace dvol;
using dvol::test::BackendCounts;
using dvol::test::CountingBackend;
using dvol::test::random_bytes;
using dvol::test::TempDir;
namespace fs = std::filesystem;

namespace {

const WarnFn kNoWarn = [](const std::string&) {};

// A store with (usually) one volume, `vol`, and the remote "origin" configured. Every Backend
// its Repository opens counts into `counts`.
struct Store {
    TempDir dir;
    std::unique_ptr<Repository> repo;
    std::shared_ptr<BackendCounts> counts = std::make_shared<BackendCounts>();
    std::string vol;

    explicit Store(const std::string& remote_dir, std::string volume = "vol", bool create = true) : vol(std::move(volume)) {
        open();
        REQUIRE(repo->config_set("user.name", "Unit Tester"));
        REQUIRE(repo->config_set("user.email", "unit@test.example"));
        if (!remote_dir.empty()) REQUIRE(repo->add_remote("origin", remote_dir));
        if (create) REQUIRE(repo->create_volume(vol));
    }
    void open() {
        auto r = Repository::open(dir.path());
        REQUIRE(r);
        repo = std::move(*r);
        repo->set_backend_wrapper([c = counts](std::unique_ptr<remote::Backend> b) -> std::unique_ptr<remote::Backend> {
            return std::make_unique<CountingBackend>(std::move(b), c);
        });
    }

    std::string live() const { return repo->live_dir(vol); }
    std::string at(std::string_view rel) const { return live() + "/" + std::string(rel); }
    void write(std::string_view rel, std::string_view text) { test::write_file(at(rel), text); }
    void write(std::string_view rel, const std::vector<std::byte>& data) { test::write_file(at(rel), data); }
    void mkdir(std::string_view rel) { REQUIRE(make_dirs(at(rel), 0755)); }

    ObjectId commit(const std::string& msg) {
        auto r = repo->commit(vol, msg, kNoWarn);
        INFO(msg << ": " << (r ? std::string("ok") : r.error().message));
        REQUIRE(r);
        return r->id;
    }
    PushOutcome push(const std::optional<std::string>& branch = std::nullopt, PushOptions options = {}) {
        auto r = repo->push(RemoteSpec{"origin", ""}, vol, branch, options);
        INFO("push: " << (r ? std::string("ok") : r.error().message));
        REQUIRE(r);
        return *r;
    }
    PullOutcome pull(const std::optional<std::string>& branch = std::nullopt) {
        auto r = repo->pull(RemoteSpec{"origin", ""}, vol, branch);
        INFO("pull: " << (r ? std::string("ok") : r.error().message));
        REQUIRE(r);
        return *r;
    }
    FetchOutcome fetch() {
        auto r = repo->fetch(RemoteSpec{"origin", ""}, vol);
        INFO("fetch: " << (r ? std::string("ok") : r.error().message));
        REQUIRE(r);
        return *r;
    }
    CloneOutcome clone(const std::string& remote_volume, const std::optional<std::string>& name = std::nullopt) {
        auto r = repo->clone(RemoteSpec{"origin", ""}, remote_volume, CloneOptions{.name = name, .branch = {}});
        INFO("clone: " << (r ? std::string("ok") : r.error().message));
        REQUIRE(r);
        vol = r->volume;
        return *r;
    }
    std::optional<ObjectId> tip(const std::string& branch = "master") {
        auto bs = repo->branches(vol);
        REQUIRE(bs);
        for (const auto& b : *bs)
            if (b.name == branch) return b.tip;
        return std::nullopt;
    }
    std::vector<ObjectId> log_ids() {
        auto r = repo->log(vol);
        REQUIRE(r);
        std::vector<ObjectId> ids;
        for (const auto& e : *r) ids.push_back(e.id);
        return ids;
    }
    void check_fsck() {
        auto r = repo->fsck();
        REQUIRE(r);
        for (const auto& p : r->problems) FAIL_CHECK(p.kind << " " << p.object << ": " << p.message);
        CHECK(r->problems.empty());
    }
    std::vector<std::string> volumes() {
        auto r = repo->list_volumes();
        REQUIRE(r);
        std::vector<std::string> out;
        for (const auto& v : *r) out.push_back(v.name);
        return out;
    }

    // What the store's database says, read on a connection of its own.
    struct Rows {
        std::map<std::string, ObjectId> tracking;  // remote-tracking branches of the volume
        size_t commits = 0;                        // commit rows of the volume
        std::vector<meta::BranchRow> branches;
        bool volume = false;
    };
    Rows rows(const std::string& volume) {
        auto db = meta::Db::open(StorePaths(dir.path()).db());
        REQUIRE(db);
        meta::Refs refs(**db);
        Rows out;
        auto v = refs.volume(volume);
        REQUIRE(v);
        if (!*v) return out;
        out.volume = true;
        auto t = refs.tracking((*v)->id);
        REQUIRE(t);
        for (const auto& row : *t) out.tracking[row.branch] = row.tip;
        auto c = refs.commits((*v)->id);
        REQUIRE(c);
        out.commits = c->size();
        auto b = refs.branches((*v)->id);
        REQUIRE(b);
        out.branches = *b;
        return out;
    }
    // Whether the store holds object `id` (registered in its pack index).
    bool holds(const ObjectId& id) {
        auto db = meta::Db::open(StorePaths(dir.path()).db());
        REQUIRE(db);
        auto store = ObjectStore::open(StorePaths(dir.path()), **db);
        REQUIRE(store);
        auto h = (*store)->has(id);
        REQUIRE(h);
        return *h;
    }
};

// Everything a restore must reproduce about one path, for comparing live directories.
std::map<std::string, std::string> snapshot(const std::string& root) {
    std::map<std::string, std::string> out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
        std::string rel = fs::relative(it->path(), root).string();
        struct stat st = test::lstat_of(it->path().string());
        std::string what = fmt::format("{:o} {} {}", st.st_mode, st.st_size, st.st_mtim.tv_sec * 1'000'000'000 + st.st_mtim.tv_nsec);
        if (S_ISDIR(st.st_mode)) what = fmt::format("{:o} dir {}", st.st_mode, st.st_mtim.tv_sec * 1'000'000'000 + st.st_mtim.tv_nsec);
        if (S_ISREG(st.st_mode)) what += " " + sha256(test::read_file(it->path().string())).hex();
        if (S_ISLNK(st.st_mode)) what += " -> " + fs::read_symlink(it->path()).string();
        out[rel] = what;
    }
    return out;
}

std::unique_ptr<remote::DirBackend> open_dir(const std::string& path) {
    auto b = remote::DirBackend::open(path);
    REQUIRE(b);
    return std::move(*b);
}

// The remote's ref `key` as stored, or "" when there is none.
std::string ref_on(const std::string& remote_dir, const std::string& key) {
    auto b = open_dir(remote_dir);
    auto r = b->read_ref(key);
    REQUIRE(r);
    return *r ? (*r)->data : std::string();
}

std::string branch_ref(const std::string& remote_dir, const std::string& volume, const std::string& branch) {
    return ref_on(remote_dir, remote::branch_ref_key(volume, branch));
}

std::string commit_ref(const ObjectId& id) { return remote::encode_branch_ref(id); }

// Every volume on the remote clones into a fresh store that passes fsck, at the remote's tips:
// no ref names a commit whose objects the remote lacks.
void check_remote(const std::string& remote_dir) {
    Store fresh(remote_dir, "unused", false);
    auto branches = fresh.repo->show_remote(RemoteSpec{"origin", ""});
    REQUIRE(branches);
    std::map<std::string, std::map<std::string, ObjectId>> tips;
    for (const auto& b : *branches) tips[b.volume][b.branch] = b.tip;
    for (const auto& [volume, want] : tips) {
        INFO("remote volume " << volume);
        fresh.clone(volume);
        for (const auto& [branch, tip] : want) CHECK(fresh.tip(branch) == std::optional<ObjectId>(tip));
    }
    fresh.check_fsck();
}

// Every object on the remote, counted over all its pack indexes: an object sent twice shows.
std::map<ObjectId, int> remote_objects(const std::string& remote_dir) {
    std::map<ObjectId, int> out;
    if (!fs::exists(remote_dir + "/index")) return out;
    for (const auto& e : fs::directory_iterator(remote_dir + "/index")) {
        auto index = remote::decode_pack_index(test::bytes_of(test::read_file(e.path().string())));
        REQUIRE(index);
        for (const auto& x : index->entries) ++out[x.id];
    }
    return out;
}

// The remote's pack files of one kind: name -> bytes.
std::map<std::string, std::vector<std::byte>> remote_packs(const std::string& remote_dir, remote::PackKind kind) {
    std::map<std::string, std::vector<std::byte>> out;
    if (!fs::exists(remote_dir + "/index")) return out;
    for (const auto& e : fs::directory_iterator(remote_dir + "/index")) {
        auto index = remote::decode_pack_index(test::bytes_of(test::read_file(e.path().string())));
        REQUIRE(index);
        if (index->kind != kind) continue;
        std::string name = e.path().filename().string();
        out[name] = test::bytes_of(test::read_file(remote_dir + "/packs/" + name + ".pack"));
    }
    return out;
}

void flip_byte(const std::string& path, uint64_t offset) {
    auto fd = open_file(path, O_RDWR);
    REQUIRE(fd);
    std::byte b{};
    REQUIRE(::pread(fd->get(), &b, 1, static_cast<off_t>(offset)) == 1);
    b ^= std::byte{0x01};
    REQUIRE(::pwrite(fd->get(), &b, 1, static_cast<off_t>(offset)) == 1);
}

void require_error(const Status& st, Errc code, std::initializer_list<std::string_view> words) {
    REQUIRE_FALSE(st.ok());
    INFO(st.error().message);
    CHECK(st.error().code == code);
    for (auto w : words) CHECK(st.error().message.find(w) != std::string::npos);
    CHECK(st.error().message.find('\n') == std::string::npos);
}

template <typename T>
void require_error(const Result<T>& r, Errc code, std::initializer_list<std::string_view> words) {
    require_error(r ? Status() : Status(r.error()), code, words);
}

// A small volume: text files in two directories, an empty directory, a symlink and a 1.5 MiB
// file of random bytes, all with the same old mtime (so two stores filling a volume with the
// same seed record the same trees below the live directory).
void fill(Store& s, uint64_t seed = 1) {
    s.write("a.txt", fmt::format("alpha {}\n", seed));
    s.mkdir("sub/deep");
    s.mkdir("empty");
    s.write("sub/b.txt", "beta\n");
    s.write("sub/deep/c.txt", "gamma\n");
    s.write("big.bin", random_bytes(3 << 19, seed));
    REQUIRE(::symlink("a.txt", s.at("link").c_str()) == 0);
    for (const char* p : {"a.txt", "sub/b.txt", "sub/deep/c.txt", "big.bin", "link", "sub/deep", "sub", "empty"})
        test::set_mtime_ns(s.at(p), 1'500'000'000'000'000'000);
}

}  // namespace

TEST_CASE("two stores: push, clone, change, push, pull", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    fill(a);
    ObjectId c1 = a.commit("one");
    auto p1 = a.push();
    CHECK(p1.kind == PushOutcome::Kind::created);
    CHECK(p1.remote_volume == "vol");
    CHECK(p1.branch == "master");
    CHECK_FALSE(p1.old_tip);
    CHECK(p1.new_tip == std::optional<ObjectId>(c1));
    CHECK(p1.sent.objects > 5);
    CHECK(branch_ref(remote.path(), "vol", "master") == commit_ref(c1));
    CHECK(ref_on(remote.path(), "refs/vol/HEAD") == "dvol ref 1\nbranch master\n");
    CHECK(test::read_file(remote / "dvol-remote") == "dvol remote 1\n");

    Store b(remote.path(), "vol", false);
    auto cl = b.clone("vol");
    CHECK(cl.volume == "vol");
    CHECK(cl.branch == "master");
    CHECK_FALSE(cl.resumed);
    CHECK(cl.restore.id == c1);
    CHECK(snapshot(b.live()) == snapshot(a.live()));
    CHECK(b.log_ids() == a.log_ids());
    CHECK(b.rows("vol").tracking == std::map<std::string, ObjectId>{{"master", c1}});

    b.write("sub/b.txt", "beta, changed by b\n");
    b.write("new.txt", "new\n");
    REQUIRE(fs::remove(b.at("a.txt")));
    ObjectId c2 = b.commit("two");
    auto p2 = b.push();
    CHECK(p2.kind == PushOutcome::Kind::fast_forward);
    CHECK(p2.old_tip == std::optional<ObjectId>(c1));
    CHECK(branch_ref(remote.path(), "vol", "master") == commit_ref(c2));

    auto pl = a.pull();
    CHECK(pl.kind == PullOutcome::Kind::fast_forward);
    CHECK(pl.old_tip == std::optional<ObjectId>(c1));
    CHECK(pl.new_tip == c2);
    CHECK(a.tip() == std::optional<ObjectId>(c2));
    CHECK(a.log_ids() == b.log_ids());
    CHECK(a.log_ids().size() == 2);
    CHECK(snapshot(a.live()) == snapshot(b.live()));
    CHECK(a.repo->status(a.vol, kNoWarn)->empty());

    auto again = a.pull();
    CHECK(again.kind == PullOutcome::Kind::up_to_date);
    CHECK(a.push().kind == PushOutcome::Kind::up_to_date);
    a.check_fsck();
    b.check_fsck();
    check_remote(remote.path());
}

TEST_CASE("fetch updates the remote-tracking branches only", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    fill(a);
    ObjectId c1 = a.commit("one");
    a.push();
    Store b(remote.path(), "vol", false);
    b.clone("vol");
    a.write("a.txt", "changed\n");
    ObjectId c2 = a.commit("two");
    a.push();

    b.write("local.txt", "uncommitted\n");
    auto before = snapshot(b.live());
    auto f = b.fetch();
    REQUIRE(f.updates.size() == 1);
    CHECK(f.updates[0].branch == "master");
    CHECK(f.updates[0].old_tip == std::optional<ObjectId>(c1));
    CHECK(f.updates[0].new_tip == c2);
    CHECK(f.head == std::optional<std::string>("master"));
    CHECK(f.received.objects > 0);
    CHECK(snapshot(b.live()) == before);
    CHECK(b.tip() == std::optional<ObjectId>(c1));
    CHECK(b.rows("vol").tracking.at("master") == c2);
    CHECK(b.rows("vol").commits == 2);
    b.check_fsck();

    auto nothing = b.fetch();
    CHECK(nothing.updates.empty());
    CHECK(nothing.received.objects == 0);
}

TEST_CASE("a push or pull with nothing to send costs a handful of requests, however long the history", "[transfer]") {
    struct Cost {
        uint64_t push = 0, pull = 0, fetch = 0;
        uint64_t push_one = 0, pull_one = 0;  // of one new commit
        bool operator==(const Cost&) const = default;
    };
    auto measure = [](int commits) {
        TempDir remote;
        Store a(remote.path());
        fill(a);
        for (int i = 0; i < commits; ++i) {
            a.write(fmt::format("f{}.txt", i % 7), fmt::format("commit {}\n", i));
            a.commit(fmt::format("commit {}", i));
        }
        a.push();
        Store b(remote.path(), "vol", false);
        b.clone("vol");
        REQUIRE(b.log_ids().size() == static_cast<size_t>(commits));
        Cost cost;
        a.counts->reset();
        REQUIRE(a.push().kind == PushOutcome::Kind::up_to_date);
        cost.push = a.counts->requests();
        CHECK(a.counts->written.empty());
        b.counts->reset();
        REQUIRE(b.pull().kind == PullOutcome::Kind::up_to_date);
        cost.pull = b.counts->requests();
        CHECK(b.counts->written.empty());
        b.counts->reset();
        REQUIRE(b.fetch().updates.empty());
        cost.fetch = b.counts->requests();
        // One new commit: what it costs does not depend on the history below it either.
        a.write("f0.txt", "one more\n");
        a.commit("one more");
        a.counts->reset();
        REQUIRE(a.push().kind == PushOutcome::Kind::fast_forward);
        cost.push_one = a.counts->requests();
        b.counts->reset();
        REQUIRE(b.pull().kind == PullOutcome::Kind::fast_forward);
        cost.pull_one = b.counts->requests();
        WARN(fmt::format("{} commits: nothing-to-send push {} requests, pull {}, fetch {}; one new commit: push {}, pull {}", commits,
                         cost.push, cost.pull, cost.fetch, cost.push_one, cost.pull_one));
        return cost;
    };
    Cost one = measure(1);
    Cost hundred = measure(100);
    CHECK(one == hundred);
    CHECK(one.push <= 3);
    CHECK(one.pull <= 5);
    CHECK(one.fetch <= 5);
}

TEST_CASE("a second push sends only the new objects", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    fill(a);
    a.commit("one");
    auto first = a.push();
    CHECK(first.sent.bytes > (3u << 19));

    a.write("sub/deep/c.txt", "gamma, changed\n");
    a.commit("two");
    a.counts->reset();
    auto second = a.push();
    CHECK(second.kind == PushOutcome::Kind::fast_forward);
    // The changed file's one chunk, the trees above it (deep, sub, the live directory, the top
    // tree) and the commit.
    CHECK(second.sent.objects == 1 + 4 + 1);
    CHECK(second.sent.bytes < 8192);
    CHECK(a.counts->bytes_written < 16384);
    auto objs = remote_objects(remote.path());
    CHECK(std::all_of(objs.begin(), objs.end(), [](const auto& o) { return o.second == 1; }));
    check_remote(remote.path());
}

TEST_CASE("a volume pushed from another store sends only what differs from what the remote holds", "[transfer]") {
    TempDir remote;
    Store a(remote.path(), "one");
    fill(a, 7);
    a.write("more.bin", random_bytes(1 << 20, 8));
    a.commit("one");
    auto first = a.push();

    // Another store, another volume, most of the same data; it has never talked to the remote.
    Store b(remote.path(), "two");
    fill(b, 7);
    b.write("more.bin", random_bytes(1 << 20, 8));
    b.write("own.txt", "only in two\n");
    b.commit("two");
    auto second = b.push();
    CHECK(second.kind == PushOutcome::Kind::created);
    CHECK(second.remote_volume == "two");
    INFO("first push " << first.sent.bytes << " bytes, second " << second.sent.bytes);
    CHECK(second.sent.bytes * 20 < first.sent.bytes);
    // own.txt's chunk, the live directory's tree, the top tree, the commit.
    CHECK(second.sent.objects == 4);
    auto objs = remote_objects(remote.path());
    CHECK(std::all_of(objs.begin(), objs.end(), [](const auto& o) { return o.second == 1; }));
    check_remote(remote.path());
}

TEST_CASE("a rejected push says why and changes nothing; --force overwrites", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    fill(a);
    ObjectId c1 = a.commit("one");
    a.push();
    Store b(remote.path(), "vol", false);
    b.clone("vol");
    b.write("b.txt", "from b\n");
    ObjectId c2 = b.commit("two from b");
    b.push();
    std::string ref = branch_ref(remote.path(), "vol", "master");
    REQUIRE(ref == commit_ref(c2));

    a.write("a.txt", "from a\n");
    ObjectId c3 = a.commit("two from a");
    // a does not have c2: fetch first.
    auto r1 = a.repo->push(RemoteSpec{"origin", ""}, "vol", std::nullopt, {});
    require_error(r1, Errc::conflict, {"rejected", "vol/master", "fetch first"});
    CHECK(branch_ref(remote.path(), "vol", "master") == ref);
    // With c2 fetched: not a fast-forward.
    a.fetch();
    auto r2 = a.repo->push(RemoteSpec{"origin", ""}, "vol", std::nullopt, {});
    require_error(r2, Errc::conflict, {"rejected", "non-fast-forward"});
    CHECK(branch_ref(remote.path(), "vol", "master") == ref);
    CHECK(a.tip() == std::optional<ObjectId>(c3));

    PushOptions force;
    force.force = true;
    auto forced = a.push(std::nullopt, force);
    CHECK(forced.kind == PushOutcome::Kind::forced);
    CHECK(forced.old_tip == std::optional<ObjectId>(c2));
    CHECK(forced.new_tip == std::optional<ObjectId>(c3));
    CHECK(branch_ref(remote.path(), "vol", "master") == commit_ref(c3));

    // b now holds a commit the remote dropped: its pull is refused as diverged.
    auto pl = b.repo->pull(RemoteSpec{"origin", ""}, "vol", std::nullopt);
    require_error(pl, Errc::conflict, {"diverged"});
    CHECK(b.tip() == std::optional<ObjectId>(c2));
    CHECK(b.rows("vol").tracking.at("master") == c3);
    (void)c1;
    check_remote(remote.path());
}

TEST_CASE("push --delete leaves a tombstone; fetch drops the tracking branch; a push recreates it", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    fill(a);
    ObjectId c1 = a.commit("one");
    a.push();
    REQUIRE(a.repo->checkout("vol", "feature", CheckoutMode::create, false));
    a.write("feature.txt", "feature\n");
    ObjectId f1 = a.commit("feature");
    CHECK(a.push("feature").kind == PushOutcome::Kind::created);

    Store b(remote.path(), "vol", false);
    b.clone("vol");
    CHECK(b.rows("vol").tracking == std::map<std::string, ObjectId>{{"feature", f1}, {"master", c1}});

    PushOptions del;
    del.remove = true;
    auto d = a.push("feature", del);
    CHECK(d.kind == PushOutcome::Kind::deleted);
    CHECK(d.old_tip == std::optional<ObjectId>(f1));
    CHECK(branch_ref(remote.path(), "vol", "feature") == "dvol ref 1\ndeleted\n");
    auto shown = a.repo->show_remote(RemoteSpec{"origin", ""});
    REQUIRE(shown);
    REQUIRE(shown->size() == 1);
    CHECK(shown->at(0).branch == "master");
    CHECK(a.tip("feature") == std::optional<ObjectId>(f1));  // the local branch stays
    CHECK(a.rows("vol").tracking == std::map<std::string, ObjectId>{{"master", c1}});

    b.fetch();
    CHECK(b.rows("vol").tracking == std::map<std::string, ObjectId>{{"master", c1}});
    auto pl = b.repo->pull(RemoteSpec{"origin", ""}, "vol", std::string("feature"));
    require_error(pl, Errc::not_found, {"feature"});

    // Deleting again: there is nothing to delete.
    auto again = a.repo->push(RemoteSpec{"origin", ""}, "vol", std::string("feature"), del);
    require_error(again, Errc::not_found, {"feature"});

    // Pushed again, the branch is back.
    auto re = a.push("feature");
    CHECK(re.kind == PushOutcome::Kind::created);
    CHECK(branch_ref(remote.path(), "vol", "feature") == commit_ref(f1));
    b.fetch();
    CHECK(b.rows("vol").tracking.at("feature") == f1);
    check_remote(remote.path());
}

TEST_CASE("fetch after the remote's last branch of a volume was deleted drops its tracking branch", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    fill(a);
    ObjectId c1 = a.commit("one");
    a.push();
    Store b(remote.path(), "vol", false);
    b.clone("vol");
    PushOptions del;
    del.remove = true;
    a.push("master", del);
    auto f = b.repo->fetch(RemoteSpec{"origin", ""}, "vol");
    INFO((f ? std::string("ok") : f.error().message));
    REQUIRE(f);
    CHECK(b.rows("vol").tracking.empty());
    CHECK(b.tip() == std::optional<ObjectId>(c1));
    // A clone has nothing to check out.
    Store c(remote.path(), "vol", false);
    auto cl = c.repo->clone(RemoteSpec{"origin", ""}, "vol", CloneOptions{});
    require_error(cl, Errc::not_found, {"vol"});
    CHECK(c.volumes().empty());
}

TEST_CASE("pull refuses uncommitted changes and a diverged branch, changing nothing", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    fill(a);
    ObjectId c1 = a.commit("one");
    a.push();
    Store b(remote.path(), "vol", false);
    b.clone("vol");
    a.write("a.txt", "from a\n");
    ObjectId c2 = a.commit("two");
    a.push();

    b.write("sub/b.txt", "uncommitted in b\n");
    auto live = snapshot(b.live());
    auto log = b.log_ids();
    auto r1 = b.repo->pull(RemoteSpec{"origin", ""}, "vol", std::nullopt);
    require_error(r1, Errc::conflict, {"uncommitted changes"});
    CHECK(snapshot(b.live()) == live);
    CHECK(b.tip() == std::optional<ObjectId>(c1));
    CHECK(b.log_ids() == log);

    ObjectId c3 = b.commit("two from b");
    live = snapshot(b.live());
    log = b.log_ids();
    auto r2 = b.repo->pull(RemoteSpec{"origin", ""}, "vol", std::nullopt);
    require_error(r2, Errc::conflict, {"diverged"});
    CHECK(snapshot(b.live()) == live);
    CHECK(b.tip() == std::optional<ObjectId>(c3));
    CHECK(b.log_ids() == log);
    CHECK(b.repo->status("vol", kNoWarn)->empty());

    // The remote behind the local branch: nothing to pull.
    REQUIRE(b.repo->reset_hard("vol", c2.hex()));
    b.write("ahead.txt", "ahead\n");
    ObjectId c4 = b.commit("ahead");
    auto behind = b.pull();
    CHECK(behind.kind == PullOutcome::Kind::up_to_date);
    CHECK(b.tip() == std::optional<ObjectId>(c4));
    b.check_fsck();
}

TEST_CASE("pull of a branch that is not checked out moves it without touching the live directory", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    fill(a);
    a.commit("one");
    a.push();
    REQUIRE(a.repo->checkout("vol", "dev", CheckoutMode::create, false));
    a.write("dev.txt", "dev\n");
    ObjectId d1 = a.commit("dev one");
    a.push("dev");
    Store b(remote.path(), "vol", false);
    b.clone("vol");
    a.write("dev.txt", "dev two\n");
    ObjectId d2 = a.commit("dev two");
    a.push("dev");

    b.write("scratch.txt", "uncommitted on master\n");
    auto live = snapshot(b.live());
    REQUIRE(b.repo->active_branch("vol").value() == "master");
    auto pl = b.pull("dev");
    CHECK(pl.kind == PullOutcome::Kind::fast_forward);
    CHECK(pl.old_tip == std::optional<ObjectId>(d1));
    CHECK(b.tip("dev") == std::optional<ObjectId>(d2));
    CHECK(snapshot(b.live()) == live);
}

TEST_CASE("pull of a branch only the remote has makes it at the remote's tip", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    fill(a);
    a.commit("one");
    a.push();
    Store b(remote.path(), "vol", false);
    b.clone("vol");
    REQUIRE(a.repo->checkout("vol", "hotfix", CheckoutMode::create, false));
    a.write("fix.txt", "fix\n");
    ObjectId h1 = a.commit("fix");
    a.push("hotfix");

    b.write("scratch.txt", "uncommitted\n");
    auto live = snapshot(b.live());
    auto f = b.fetch();
    REQUIRE(f.updates.size() == 1);
    CHECK_FALSE(f.updates[0].old_tip);
    auto pl = b.pull("hotfix");
    CHECK(pl.kind == PullOutcome::Kind::fast_forward);
    CHECK_FALSE(pl.old_tip);
    CHECK(pl.new_tip == h1);
    CHECK(b.tip("hotfix") == std::optional<ObjectId>(h1));
    CHECK(b.repo->active_branch("vol").value() == "master");
    CHECK(snapshot(b.live()) == live);
    auto reflog = b.repo->reflog("vol");
    REQUIRE(reflog);
    REQUIRE_FALSE(reflog->empty());
    CHECK(reflog->front().branch == "hotfix");
    CHECK_FALSE(reflog->front().old_tip);
    CHECK(reflog->front().new_tip == std::optional<ObjectId>(h1));
    REQUIRE(fs::remove(b.at("scratch.txt")));
    REQUIRE(b.repo->checkout("vol", "hotfix", CheckoutMode::switch_branch, false));
    CHECK(test::read_file(b.at("fix.txt")) == "fix\n");
    CHECK(b.pull().kind == PullOutcome::Kind::up_to_date);
}

TEST_CASE("a volume cloned under another name is pushed and fetched under the remote's name", "[transfer]") {
    TempDir remote;
    Store a(remote.path(), "data");
    fill(a);
    ObjectId c1 = a.commit("one");
    a.push();

    Store b(remote.path(), "copy", false);
    auto cl = b.clone("data", std::string("copy"));
    CHECK(cl.volume == "copy");
    CHECK(b.volumes() == std::vector<std::string>{"copy"});
    CHECK(b.tip() == std::optional<ObjectId>(c1));
    b.write("b.txt", "from the copy\n");
    ObjectId c2 = b.commit("two");
    auto p = b.push();
    CHECK(p.remote_volume == "data");
    CHECK(p.kind == PushOutcome::Kind::fast_forward);
    CHECK(branch_ref(remote.path(), "data", "master") == commit_ref(c2));
    CHECK_FALSE(fs::exists(remote / "refs/copy"));

    CHECK(a.pull().new_tip == c2);
    a.write("a.txt", "three\n");
    ObjectId c3 = a.commit("three");
    a.push();
    auto f = b.fetch();
    CHECK(f.remote_volume == "data");
    REQUIRE(f.updates.size() == 1);
    CHECK(f.updates[0].new_tip == c3);
    CHECK(b.pull().new_tip == c3);
    CHECK(snapshot(b.live()) == snapshot(a.live()));

    // The same remote volume cloned again into the same store: every object is here already.
    b.counts->reset();
    auto twin = b.repo->clone(RemoteSpec{"origin", ""}, "data", CloneOptions{});
    REQUIRE(twin);
    CHECK(twin->volume == "data");
    CHECK(twin->fetched.received.objects == 0);
    CHECK(std::none_of(b.counts->read.begin(), b.counts->read.end(), [](const std::string& k) { return k.starts_with("packs/"); }));
    b.check_fsck();
}

TEST_CASE("clone refuses a missing volume, a directory that is not a dvol remote and a missing directory, creating nothing",
          "[transfer]") {
    TempDir remote;
    Store a(remote.path(), "one");
    fill(a);
    a.commit("one");
    a.push();

    Store b("", "x", false);
    auto nothing_created = [&] {
        CHECK(b.volumes().empty());
        CHECK_FALSE(fs::exists(b.dir / "volumes/two"));
        CHECK_FALSE(fs::exists(b.dir / "volumes/vol"));
    };
    require_error(b.repo->clone(RemoteSpec{remote.path(), ""}, "two", CloneOptions{}), Errc::not_found, {"has no volume two"});
    nothing_created();

    TempDir empty;
    require_error(b.repo->clone(RemoteSpec{empty.path(), ""}, "vol", CloneOptions{}), Errc::not_found, {"not a dvol remote"});
    CHECK(fs::is_empty(empty.path()));
    TempDir other;
    test::write_file(other / "notes.txt", "hello\n");
    require_error(b.repo->clone(RemoteSpec{other.path(), ""}, "vol", CloneOptions{}), Errc::not_found, {"not a dvol remote"});
    test::write_file(other / "dvol-remote", "something else\n");
    require_error(b.repo->clone(RemoteSpec{other.path(), ""}, "vol", CloneOptions{}), Errc::invalid_argument, {"not a dvol remote"});
    require_error(b.repo->clone(RemoteSpec{remote.path() + "/missing", ""}, "vol", CloneOptions{}), Errc::not_found, {"missing"});
    require_error(b.repo->clone(RemoteSpec{"nosuchremote", ""}, "vol", CloneOptions{}), Errc::not_found, {"nosuchremote"});
    require_error(b.repo->clone(RemoteSpec{remote.path(), ""}, "../x", CloneOptions{}), Errc::invalid_argument, {"../x"});
    require_error(b.repo->clone(RemoteSpec{remote.path(), ""}, "one", CloneOptions{.name = "a/b", .branch = {}}), Errc::invalid_argument, {"a/b"});
    nothing_created();

    // Into a name that is taken.
    REQUIRE(b.repo->create_volume("one"));
    require_error(b.repo->clone(RemoteSpec{remote.path(), ""}, "one", CloneOptions{}), Errc::already_exists, {"one"});
    CHECK(b.volumes() == std::vector<std::string>{"one"});
}

TEST_CASE("a remote's marker is read no further than a marker can go", "[transfer]") {
    TempDir other;
    test::write_file(other / "dvol-remote", "dvol remote 1\n");
    fs::resize_file(other / "dvol-remote", 64u << 20);
    Store b("", "x", false);
    auto r = b.repo->clone(RemoteSpec{other.path(), ""}, "vol", CloneOptions{});
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message);
    CHECK(b.counts->bytes_read < 4096);
    CHECK(b.volumes().empty());
}

TEST_CASE("a push of a branch without commits is refused before the remote is touched", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    auto r = a.repo->push(RemoteSpec{"origin", ""}, "vol", std::nullopt, {});
    require_error(r, Errc::not_found, {"no commits"});
    CHECK(fs::is_empty(remote.path()));
    CHECK(a.counts->written.empty());
    auto missing = a.repo->push(RemoteSpec{"origin", ""}, "vol", std::string("nope"), {});
    require_error(missing, Errc::not_found, {"nope"});
    CHECK(fs::is_empty(remote.path()));
}

TEST_CASE("push refuses a damaged local object instead of sending it", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    std::string text(20000, 'x');
    for (size_t i = 0; i < text.size(); i += 7) text[i] = static_cast<char>('a' + i % 26);
    a.write("doc.txt", text);
    a.commit("one");
    // Damage the chunk of doc.txt in the local pack (its record is the first one of the pack).
    ObjectId chunk = sha256(text);
    std::string pack;
    for (const auto& e : fs::directory_iterator(a.dir / "objects/packs")) pack = e.path().string();
    auto records = test::pack_records(test::bytes_of(test::read_file(pack)));
    auto it = std::find_if(records.begin(), records.end(), [&](const test::PackRecord& r) { return r.id == chunk; });
    REQUIRE(it != records.end());
    flip_byte(pack, it->offset + kRecordHeaderSize + it->stored_len / 2);

    auto r = a.repo->push(RemoteSpec{"origin", ""}, "vol", std::nullopt, {});
    require_error(r, Errc::corrupt, {chunk.hex()});
    CHECK(branch_ref(remote.path(), "vol", "master").empty());
    CHECK(remote_objects(remote.path()).count(chunk) == 0);
}

TEST_CASE("concurrent pushes of one branch from two stores: one wins, the other is rejected, nothing is lost", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    Store b(remote.path(), "vol", false);
    a.write("base.txt", "base\n");
    a.commit("base");
    a.push();
    b.clone("vol");
    constexpr int kRounds = 20;

    // One round: each store commits its own change on the remote's tip, then both push at once
    // (`race` runs the two pushes and returns their outcomes, a's first).
    using Race = std::function<std::pair<Result<PushOutcome>, Result<PushOutcome>>()>;
    auto rounds = [&](const std::string& how, const Race& race) {
        for (int round = 0; round < kRounds; ++round) {
            INFO(how << " round " << round);
            a.write("a.txt", fmt::format("a {} {}\n", how, round));
            b.write("b.txt", fmt::format("b {} {}\n", how, round));
            ObjectId ca = a.commit("a");
            ObjectId cb = b.commit("b");
            auto [ra, rb] = race();
            std::string ea = ra ? "" : ra.error().message, eb = rb ? "" : rb.error().message;
            INFO("a: " << (ra ? "won" : ea) << "; b: " << (rb ? "won" : eb));
            REQUIRE(ra.ok() != rb.ok());
            Store& winner = ra ? a : b;
            Store& loser = ra ? b : a;
            const auto& lost = ra ? rb : ra;
            CHECK(lost.error().code == Errc::conflict);
            CHECK(lost.error().message.find("rejected") != std::string::npos);
            ObjectId won = ra ? ca : cb;
            CHECK(branch_ref(remote.path(), "vol", "master") == commit_ref(won));
            CHECK(winner.tip() == std::optional<ObjectId>(won));
            // Nothing lost: the loser still has its commit; it drops it and takes the winner's.
            CHECK(loser.tip() == std::optional<ObjectId>(ra ? cb : ca));
            REQUIRE(loser.repo->reset_hard("vol", "HEAD~1"));
            CHECK(loser.pull().new_tip == won);
        }
    };

    SECTION("threads") {
        rounds("threads", [&] {
            std::latch go(2);
            std::optional<Result<PushOutcome>> ra, rb;
            std::thread ta([&] {
                go.arrive_and_wait();
                ra.emplace(a.repo->push(RemoteSpec{"origin", ""}, "vol", std::nullopt, {}));
            });
            std::thread tb([&] {
                go.arrive_and_wait();
                rb.emplace(b.repo->push(RemoteSpec{"origin", ""}, "vol", std::nullopt, {}));
            });
            ta.join();
            tb.join();
            return std::make_pair(std::move(*ra), std::move(*rb));
        });
    }
    SECTION("processes") {
        rounds("processes", [&] {
            // No connection crosses the fork: each child opens its store afresh.
            a.repo.reset();
            b.repo.reset();
            int go[2];
            REQUIRE(::pipe(go) == 0);
            auto child = [&](const std::string& dir) {
                pid_t pid = ::fork();
                if (pid != 0) return pid;
                ::close(go[1]);
                auto repo = Repository::open(dir);
                char c;
                if (!repo || ::read(go[0], &c, 1) != 1) ::_exit(3);
                auto r = (*repo)->push(RemoteSpec{"origin", ""}, "vol", std::nullopt, {});
                ::_exit(r ? 0 : r.error().code == Errc::conflict ? 1 : 2);
            };
            pid_t pa = child(a.dir.path());
            pid_t pb = child(b.dir.path());
            ::close(go[0]);
            REQUIRE(::write(go[1], "gg", 2) == 2);
            ::close(go[1]);
            auto wait = [](pid_t pid) {
                int status = 0;
                while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
                return WIFEXITED(status) ? WEXITSTATUS(status) : 4;
            };
            int sa = wait(pa), sb = wait(pb);
            a.open();
            b.open();
            auto as_result = [](int code) -> Result<PushOutcome> {
                if (code == 0) return PushOutcome{};
                return make_error(code == 1 ? Errc::conflict : Errc::internal, fmt::format("rejected: exit status {}", code));
            };
            return std::make_pair(as_result(sa), as_result(sb));
        });
    }
    a.check_fsck();
    b.check_fsck();
    CHECK(a.log_ids() == b.log_ids());
    CHECK(a.log_ids().size() == kRounds + 1);
    check_remote(remote.path());
}

TEST_CASE("an interrupted push resumes without sending again what landed", "[transfer]") {
    Store a("", "vol");
    fill(a);
    ObjectId c1 = a.commit("one");
    // A clean push, to know what a push writes: marker, data pack and index, metadata pack and
    // index, the branch's ref and HEAD.
    uint64_t writes = 0;
    {
        TempDir remote;
        REQUIRE(a.repo->add_remote("clean", remote.path()));
        a.counts->reset();
        REQUIRE(a.repo->push(RemoteSpec{"clean", ""}, "vol", std::nullopt, {}));
        writes = a.counts->writes;
        CHECK(writes == 7);
        REQUIRE(a.repo->remove_remote("clean"));
    }
    for (uint64_t n = 0; n < writes; ++n) {
        INFO("the push fails after " << n << " writes");
        TempDir remote;
        std::string name = fmt::format("r{}", n);
        REQUIRE(a.repo->add_remote(name, remote.path()));
        a.counts->reset();
        a.counts->fail_after_writes = static_cast<int64_t>(n);
        auto failed = a.repo->push(RemoteSpec{name, ""}, "vol", std::nullopt, {});
        REQUIRE_FALSE(failed.ok());
        CHECK(failed.error().message.find("injected failure") != std::string::npos);
        // The push failed: the branch is not on the remote.
        CHECK(branch_ref(remote.path(), "vol", "master").empty());
        auto first = a.counts->written;
        // What landed in full: every key written, but a pack whose index did not follow.
        std::set<std::string> landed(first.begin(), first.end());
        for (const auto& k : first)
            if (k.starts_with("packs/") && !landed.contains("index/" + k.substr(6, 64))) landed.erase(k);

        a.counts->reset();
        auto rerun = a.repo->push(RemoteSpec{name, ""}, "vol", std::nullopt, {});
        INFO((rerun ? std::string("ok") : rerun.error().message));
        REQUIRE(rerun);
        CHECK(rerun->kind == PushOutcome::Kind::created);
        for (const auto& k : a.counts->written) CHECK_FALSE(landed.contains(k));
        CHECK(branch_ref(remote.path(), "vol", "master") == commit_ref(c1));
        CHECK(ref_on(remote.path(), "refs/vol/HEAD") == "dvol ref 1\nbranch master\n");
        auto objs = remote_objects(remote.path());
        CHECK(std::all_of(objs.begin(), objs.end(), [](const auto& o) { return o.second == 1; }));
        check_remote(remote.path());
    }
}

TEST_CASE("an interrupted clone resumes and fetches only the rest", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    // Four pushes, four data packs of 1 MiB each.
    for (int i = 0; i < 4; ++i) {
        a.write(fmt::format("part{}.bin", i), random_bytes(1 << 20, 40 + static_cast<uint64_t>(i)));
        a.commit(fmt::format("part {}", i));
        a.push();
    }
    auto data_packs = remote_packs(remote.path(), remote::PackKind::data);
    REQUIRE(data_packs.size() == 4);
    auto is_data = [data_packs](const std::string& key) {
        return key.starts_with("packs/") && data_packs.contains(key.substr(6, 64));
    };
    auto data_reads = [&](const BackendCounts& counts) {
        std::vector<std::string> out;
        std::copy_if(counts.read.begin(), counts.read.end(), std::back_inserter(out), is_data);
        return out;
    };

    // How many reads of data packs a clean clone makes.
    uint64_t ranged = 0;
    {
        Store c(remote.path(), "vol", false);
        c.clone("vol");
        ranged = data_reads(*c.counts).size();
        CHECK(ranged == 4);
        WARN(fmt::format("clone of 4 x 1 MiB in 4 data packs: {} requests in all ({} reads, {} bytes); {} reads of data packs, {} "
                         "bytes each",
                         c.counts->requests(), c.counts->read.size(), c.counts->bytes_read, ranged,
                         ((1u << 20) + kRecordHeaderSize)));
    }
    for (uint64_t n = 0; n < ranged; ++n) {
        INFO("the clone fails after " << n << " reads of data packs");
        Store c(remote.path(), "vol", false);
        c.counts->reads_of = is_data;
        c.counts->fail_after_reads = static_cast<int64_t>(n);
        auto failed = c.repo->clone(RemoteSpec{"origin", ""}, "vol", CloneOptions{});
        REQUIRE_FALSE(failed.ok());
        CHECK(failed.error().message.find("injected failure") != std::string::npos);
        auto first = data_reads(*c.counts);
        std::set<std::string> fetched(first.begin(), first.end());
        CHECK(fetched.size() == n);
        // Nothing names what is not here: no commit row, no branch tip yet.
        auto rows = c.rows("vol");
        CHECK(rows.commits == 0);
        CHECK(rows.tracking.empty());
        c.check_fsck();

        // Run again (by a new process): only the packs not read before are read.
        c.open();
        c.counts->reset();
        auto done = c.repo->clone(RemoteSpec{"origin", ""}, "vol", CloneOptions{});
        INFO((done ? std::string("ok") : done.error().message));
        REQUIRE(done);
        CHECK(done->resumed);
        CHECK(done->restore.id == *a.tip());
        auto second = data_reads(*c.counts);
        CHECK(second.size() == ranged - n);
        for (const auto& k : second) CHECK_FALSE(fetched.contains(k));
        CHECK(snapshot(c.live()) == snapshot(a.live()));
        CHECK(c.log_ids() == a.log_ids());
        c.check_fsck();
    }
}

TEST_CASE("a damaged pack on the remote is caught by clone: nothing of it is recorded or stored", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    fill(a);
    ObjectId c1 = a.commit("one");
    a.push();
    auto check_refused = [&](const ObjectId& damaged) {
        Store b(remote.path(), "vol", false);
        auto r = b.repo->clone(RemoteSpec{"origin", ""}, "vol", CloneOptions{});
        require_error(r, Errc::corrupt, {damaged.hex()});
        auto rows = b.rows("vol");
        CHECK(rows.commits == 0);
        CHECK(rows.tracking.empty());
        CHECK(std::none_of(rows.branches.begin(), rows.branches.end(), [](const meta::BranchRow& br) { return br.tip.has_value(); }));
        CHECK_FALSE(b.holds(damaged));
        CHECK_FALSE(b.holds(c1));
        CHECK(fs::is_empty(b.repo->live_dir("vol")));
        b.check_fsck();
        // Still refused when run again.
        auto again = b.repo->clone(RemoteSpec{"origin", ""}, "vol", CloneOptions{});
        require_error(again, Errc::corrupt, {damaged.hex()});
    };

    SECTION("a chunk") {
        auto packs = remote_packs(remote.path(), remote::PackKind::data);
        REQUIRE(packs.size() == 1);
        auto records = test::pack_records(packs.begin()->second);
        REQUIRE(records.size() >= 2);
        const auto& victim = records[records.size() / 2];
        flip_byte(remote.path() + "/packs/" + packs.begin()->first + ".pack", victim.offset + kRecordHeaderSize + victim.stored_len / 3);
        check_refused(victim.id);
    }
    SECTION("a tree") {
        auto packs = remote_packs(remote.path(), remote::PackKind::metadata);
        REQUIRE(packs.size() == 1);
        auto records = test::pack_records(packs.begin()->second);
        REQUIRE(records.size() >= 3);
        const auto& victim = records[0];  // a tree (the commit comes last)
        flip_byte(remote.path() + "/packs/" + packs.begin()->first + ".pack", victim.offset + kRecordHeaderSize + 2);
        check_refused(victim.id);
    }
}

namespace {

// Objects planted on a remote by hand, as a hostile or broken dvol could write them.
struct Planted {
    std::vector<std::vector<std::byte>> objects;
    ObjectId add(std::vector<std::byte> plain) {
        ObjectId id = sha256(plain);
        objects.push_back(std::move(plain));
        return id;
    }
    ObjectId add_tree(const Tree& t) { return add(encode_tree(t)); }
    // A commit of `top` (the top tree) on `parent`.
    ObjectId add_commit(const ObjectId& top, const std::optional<ObjectId>& parent) {
        Commit c;
        c.tree = top;
        if (parent) c.parents.push_back(*parent);
        c.author_name = "Mallory";
        c.author_email = "mallory@example.org";
        c.time = 1'700'000'000;
        c.message = "hostile";
        auto enc = encode_commit(c);
        REQUIRE(enc);
        return add(*enc);
    }
    // Writes the objects as one pack (records stored raw) with its index.
    void write(remote::Backend& b) {
        std::vector<std::byte> pack;
        auto hdr = pack_header();
        pack.insert(pack.end(), hdr.begin(), hdr.end());
        remote::PackIndexFile index;
        index.kind = remote::PackKind::metadata;
        for (const auto& o : objects) {
            ObjectId id = sha256(o);
            std::vector<std::byte> h(kRecordHeaderSize);
            auto len = static_cast<uint32_t>(o.size());
            encode_record_header(h.data(), id, Codec::raw, len, len);
            index.entries.push_back(remote::IndexEntry{id, pack.size(), len, len});
            pack.insert(pack.end(), h.begin(), h.end());
            pack.insert(pack.end(), o.begin(), o.end());
        }
        index.pack_size = pack.size();
        std::string name = sha256(pack).hex();
        REQUIRE(b.write(remote::pack_key(name), pack));
        REQUIRE(b.write(remote::index_key(name), remote::encode_pack_index(index)));
    }
};

TreeEntry dir_entry(const std::string& name, const ObjectId& subtree) {
    TreeEntry e;
    e.name = name;
    e.type = EntryType::dir;
    e.mode = 0755;
    e.mtime_ns = 1'600'000'000'000'000'000;
    e.subtree = subtree;
    return e;
}

TreeEntry file_entry(const std::string& name, Planted& p, std::string_view text) {
    TreeEntry e;
    e.name = name;
    e.type = EntryType::file;
    e.mode = 0644;
    e.mtime_ns = 1'600'000'000'000'000'000;
    e.size = text.size();
    e.content.extents.push_back(Extent{p.add(test::bytes_of(text)), text.size(), false});
    return e;
}

// A top tree whose live directory holds `entries` (sorted here by name bytes).
ObjectId hostile_top(Planted& p, std::vector<TreeEntry> entries) {
    std::sort(entries.begin(), entries.end(), [](const TreeEntry& x, const TreeEntry& y) { return x.name < y.name; });
    ObjectId root = p.add_tree(Tree{std::move(entries)});
    return p.add_tree(Tree{{dir_entry(std::string(kRootEntryName), root)}});
}

// Every path under `dir`.
std::set<std::string> all_files(const std::string& dir) {
    std::set<std::string> out;
    for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it)
        out.insert(fs::relative(it->path(), dir).string());
    return out;
}

}  // namespace

TEST_CASE("a remote tree with a hostile entry name is refused by clone and pull; nothing escapes the live directory", "[transfer]") {
    TempDir remote;
    Store a(remote.path());
    a.write("a.txt", "mine\n");
    ObjectId c1 = a.commit("one");
    a.push();

    struct Case {
        std::string label;
        std::function<std::vector<TreeEntry>(Planted&)> entries;
    };
    std::vector<Case> cases = {
        {"..", [](Planted& p) {
             Tree inner{{file_entry("escaped", p, "pwned\n")}};
             return std::vector<TreeEntry>{dir_entry("..", p.add_tree(inner))};
         }},
        {"../escaped", [](Planted& p) { return std::vector<TreeEntry>{file_entry("../escaped", p, "pwned\n")}; }},
        {"a/b", [](Planted& p) {
             return std::vector<TreeEntry>{dir_entry("a", p.add_tree(Tree{})), file_entry("a/b", p, "pwned\n")};
         }},
        {".", [](Planted& p) { return std::vector<TreeEntry>{file_entry(".", p, "pwned\n")}; }},
    };
    for (const auto& c : cases) {
        INFO("entry name " << c.label);

        SECTION("clone " + c.label) {
            Planted p;
            ObjectId top = hostile_top(p, c.entries(p));
            ObjectId evil = p.add_commit(top, std::nullopt);
            auto b = open_dir(remote.path());
            p.write(*b);
            REQUIRE(b->create_ref(remote::branch_ref_key("evil", "master"), remote::encode_branch_ref(evil)));

            Store victim(remote.path(), "x", false);
            auto r = victim.repo->clone(RemoteSpec{"origin", ""}, "evil", CloneOptions{});
            require_error(r, Errc::corrupt, {"invalid entry name"});
            auto rows = victim.rows("evil");
            CHECK(rows.commits == 0);
            CHECK(rows.tracking.empty());
            CHECK_FALSE(victim.holds(top));
            for (const auto& f : all_files(victim.dir.path())) {
                INFO(f);
                CHECK(f.find("escaped") == std::string::npos);
                CHECK(f.find("pwned") == std::string::npos);
            }
            CHECK(fs::is_empty(victim.repo->live_dir("evil")));
        }
        SECTION("pull " + c.label) {
            Planted p;
            ObjectId top = hostile_top(p, c.entries(p));
            ObjectId evil = p.add_commit(top, c1);
            auto b = open_dir(remote.path());
            p.write(*b);
            auto ref = b->read_ref(remote::branch_ref_key("vol", "master"));
            REQUIRE(ref);
            REQUIRE(*ref);
            REQUIRE(b->update_ref(remote::branch_ref_key("vol", "master"), remote::encode_branch_ref(evil), (*ref)->version));

            auto live = snapshot(a.live());
            auto r = a.repo->pull(RemoteSpec{"origin", ""}, "vol", std::nullopt);
            require_error(r, Errc::corrupt, {"invalid entry name"});
            CHECK(a.tip() == std::optional<ObjectId>(c1));
            CHECK(snapshot(a.live()) == live);
            CHECK(a.rows("vol").commits == 1);
            CHECK_FALSE(a.holds(top));
            for (const auto& f : all_files(a.dir.path())) {
                INFO(f);
                CHECK(f.find("escaped") == std::string::npos);
            }
            a.check_fsck();
        }
    }
}

TEST_CASE("a remote hard link through a symlink is refused by the restore", "[transfer]") {
    TempDir remote;
    TempDir outside;
    test::write_file(outside / "secret", "secret\n");
    Planted p;
    TreeEntry link;
    link.name = "s";
    link.type = EntryType::symlink;
    link.mode = 0777;
    link.size = outside.path().size();
    link.target = outside.path();
    TreeEntry hard;
    hard.name = "t";
    hard.type = EntryType::hardlink;
    hard.mode = 0644;
    hard.target = "s/secret";
    ObjectId top = hostile_top(p, {link, hard});
    ObjectId evil = p.add_commit(top, std::nullopt);
    auto b = open_dir(remote.path());
    REQUIRE(b->write(std::string(remote::kMarkerKey), test::bytes_of(remote::kMarker)));
    p.write(*b);
    REQUIRE(b->create_ref(remote::branch_ref_key("evil", "master"), remote::encode_branch_ref(evil)));

    Store victim(remote.path(), "x", false);
    auto r = victim.repo->clone(RemoteSpec{"origin", ""}, "evil", CloneOptions{});
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message);
    CHECK_FALSE(fs::exists(victim.repo->live_dir("evil") + "/t"));
    CHECK(test::lstat_of(outside / "secret").st_nlink == 1);
}

TEST_CASE("whatever a pack holds, all below it was stored before it: trees after their subtrees", "[transfer]") {
    // Identical directories in several places (here empty ones, and a copied subtree) make one
    // subtree shared by trees the walk reaches at different times.
    TempDir remote;
    Store a(remote.path());
    a.mkdir("a/empty");
    a.mkdir("b/c/empty");
    a.mkdir("d/x");
    a.mkdir("e/f/x");
    a.write("d/x/same.txt", "same\n");
    a.write("e/f/x/same.txt", "same\n");
    test::set_mtime_ns(a.at("d/x/same.txt"), 1'600'000'000'000'000'000);
    test::set_mtime_ns(a.at("e/f/x/same.txt"), 1'600'000'000'000'000'000);
    for (const char* d : {"a/empty", "b/c/empty", "d/x", "e/f/x"}) test::set_mtime_ns(a.at(d), 1'600'000'000'000'000'000);
    a.commit("one");
    a.write("a/new.txt", "new\n");
    a.commit("two");
    a.push();

    // The order of a sequence of objects is sound when no tree names an object stored after it.
    auto check_order = [](const std::vector<std::pair<ObjectId, std::vector<std::byte>>>& seq) {
        std::set<ObjectId> before;
        std::set<ObjectId> all;
        for (const auto& [id, bytes] : seq) all.insert(id);
        for (const auto& [id, bytes] : seq) {
            auto tree = decode_tree(bytes);
            if (tree) {
                for (const auto& e : tree->entries) {
                    if (e.type == EntryType::dir && all.contains(e.subtree)) {
                        INFO("tree " << id.hex() << " names " << e.subtree.hex() << " (" << e.name << ")");
                        CHECK(before.contains(e.subtree));
                    }
                }
            }
            before.insert(id);
        }
    };
    auto decoded = [](const std::vector<std::byte>& pack) {
        std::vector<std::pair<ObjectId, std::vector<std::byte>>> out;
        for (const auto& r : test::pack_records(pack)) {
            auto record = std::span(pack).subspan(r.offset, kRecordHeaderSize + r.stored_len);
            std::vector<std::byte> plain;
            REQUIRE(decode_record(record, r.id, r.raw_len, plain, true));
            out.emplace_back(r.id, std::move(plain));
        }
        return out;
    };

    // On the remote: the metadata pack of the push.
    auto meta = remote_packs(remote.path(), remote::PackKind::metadata);
    REQUIRE(meta.size() == 1);
    check_order(decoded(meta.begin()->second));

    // In a clone's store: its packs, in the order they were written.
    Store b(remote.path(), "vol", false);
    b.clone("vol");
    std::vector<std::pair<ObjectId, std::vector<std::byte>>> stored;
    for (const auto& e : fs::directory_iterator(b.dir / "objects/packs")) {
        auto got = decoded(test::bytes_of(test::read_file(e.path().string())));
        stored.insert(stored.end(), got.begin(), got.end());
    }
    check_order(stored);
}
