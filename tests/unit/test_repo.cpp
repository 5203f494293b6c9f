#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/fs.h"
#include "diff/text_diff.h"
#include "meta/db.h"
#include "repo/readers.h"
#include "repo/repository.h"
#include "repo/stat_cache.h"
#include "repo/walk_ahead.h"
#include "store/object_source.h"
#include "support.h"

using namespace dvol;
using dvol::test::random_bytes;
using dvol::test::mtime_ns_of;
using dvol::test::read_file;
using dvol::test::set_mtime_ns;
using dvol::test::TempDir;
using dvol::test::write_file;
namespace fs = std::filesystem;

namespace {

const WarnFn kNoWarn = [](const std::string&) {};

// A fixed, nanosecond-precise timestamp in the past (so files are never racily clean).
constexpr int64_t kOld = 1'600'000'000'123'456'789;

struct RepoFixture {
    TempDir pool;
    std::unique_ptr<Repository> repo;
    std::string vol = "vol";

    explicit RepoFixture(bool create = true) {
        auto r = Repository::open(pool.path());
        REQUIRE(r);
        repo = std::move(*r);
        REQUIRE(repo->config_set("user.name", "Unit Tester"));
        REQUIRE(repo->config_set("user.email", "unit@test.example"));
        if (create) REQUIRE(repo->create_volume(vol));
    }

    std::string live() const { return repo->live_dir(vol); }
    std::string at(std::string_view rel) const { return live() + "/" + std::string(rel); }

    ObjectId commit(const std::string& msg) {
        auto r = repo->commit(vol, msg, kNoWarn);
        REQUIRE(r);
        return r->id;
    }
    CommitOutcome commit_outcome(const std::string& msg) {
        auto r = repo->commit(vol, msg, kNoWarn);
        REQUIRE(r);
        return *r;
    }
    std::vector<Change> status() {
        auto r = repo->status(vol, kNoWarn);
        REQUIRE(r);
        return *r;
    }
    std::vector<ObjectId> log_ids() {
        auto r = repo->log(vol);
        REQUIRE(r);
        std::vector<ObjectId> ids;
        for (const auto& e : *r) ids.push_back(e.id);
        return ids;
    }
};

// Everything a restore must reproduce about one path.
struct Snap {
    char type = '?';
    unsigned mode = 0;
    uint64_t size = 0;
    int64_t mtime_ns = 0;
    unsigned uid = 0, gid = 0;
    std::string data;  // file content or symlink target
};

void snap_dir(const std::string& root, const std::string& rel, std::map<std::string, Snap>& out) {
    std::string dir = rel.empty() ? root : root + "/" + rel;
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    for (const auto& n : names) {
        std::string r = rel.empty() ? n : rel + "/" + n;
        std::string p = root + "/" + r;
        struct stat st = dvol::test::lstat_of(p);
        Snap s;
        s.mode = st.st_mode & 07777;
        s.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
        s.uid = st.st_uid;
        s.gid = st.st_gid;
        if (S_ISREG(st.st_mode)) {
            s.type = 'f';
            s.size = static_cast<uint64_t>(st.st_size);
            s.data = read_file(p);
        } else if (S_ISLNK(st.st_mode)) {
            s.type = 'l';
            s.data = fs::read_symlink(p).string();
        } else if (S_ISDIR(st.st_mode)) {
            s.type = 'd';
            snap_dir(root, r, out);
        } else {
            s.type = 'o';
        }
        out[r] = s;
    }
}

std::map<std::string, Snap> snapshot(const std::string& root) {
    std::map<std::string, Snap> out;
    snap_dir(root, "", out);
    struct stat st = dvol::test::lstat_of(root);
    Snap s;
    s.type = 'd';
    s.mode = st.st_mode & 07777;
    s.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    out["."] = s;
    return out;
}

void check_same_tree(const std::map<std::string, Snap>& want, const std::map<std::string, Snap>& got) {
    for (const auto& [path, w] : want) {
        INFO("path " << path);
        auto it = got.find(path);
        if (it == got.end()) {
            FAIL_CHECK("missing after restore");
            continue;
        }
        const Snap& g = it->second;
        CHECK(g.type == w.type);
        CHECK(fmt::format("{:04o}", g.mode) == fmt::format("{:04o}", w.mode));
        CHECK(g.mtime_ns == w.mtime_ns);
        CHECK(g.uid == w.uid);
        CHECK(g.gid == w.gid);
        CHECK(g.size == w.size);
        CHECK((g.data == w.data));
    }
    for (const auto& [path, g] : got) {
        INFO("path " << path);
        if (!want.count(path)) FAIL_CHECK("extra path after restore");
    }
}

std::string summary(const std::vector<Change>& changes) {
    std::vector<std::string> lines;
    for (const auto& c : changes) lines.push_back(std::string(change_kind_name(c.kind)) + " " + c.path);
    std::sort(lines.begin(), lines.end());
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
}

const Change* find_change(const std::vector<Change>& changes, const std::string& path) {
    for (const auto& c : changes)
        if (c.path == path) return &c;
    return nullptr;
}

void chmod_path(const std::string& p, mode_t mode) { REQUIRE(::chmod(p.c_str(), mode) == 0); }

}  // namespace

TEST_CASE("valid_name follows Docker's rule", "[repo]") {
    CHECK(valid_name("a"));
    CHECK(valid_name("Frob_mysql-1.0"));
    CHECK(valid_name("0abc"));
    CHECK(valid_name(std::string(128, 'a')));
    CHECK_FALSE(valid_name(std::string(129, 'a')));
    for (std::string bad : {"", "-x", ".", "..", "_x", ".hidden", "foo/bar", "a b", "a\nb", "caf\xc3\xa9", "a:b", "a@b"}) {
        INFO("'" << bad << "'");
        CHECK_FALSE(valid_name(bad));
    }
    CHECK(invalid_name_message("", "name").find("''") != std::string::npos);
}

TEST_CASE("volumes: create, list, switch, remove", "[repo]") {
    RepoFixture f(false);
    auto& r = *f.repo;
    auto none = r.active_volume();
    REQUIRE(none);
    CHECK_FALSE(*none);
    auto unresolved = r.resolve_volume(std::nullopt);
    REQUIRE_FALSE(unresolved);
    CHECK(unresolved.error().code == Errc::not_found);

    REQUIRE(r.create_volume("alpha"));
    REQUIRE(r.create_volume("beta"));
    CHECK(fs::is_directory(r.live_dir("alpha")));
    CHECK(fs::is_directory(r.live_dir("beta")));
    auto dup = r.create_volume("alpha");
    REQUIRE_FALSE(dup);
    CHECK(dup.error().code == Errc::already_exists);

    auto list = r.list_volumes();
    REQUIRE(list);
    REQUIRE(list->size() == 2);
    CHECK((*list)[0].name == "alpha");
    CHECK((*list)[0].branch == "master");
    CHECK_FALSE((*list)[0].active);
    CHECK((*list)[1].name == "beta");
    CHECK((*list)[1].active);  // the newest volume becomes active

    REQUIRE(r.switch_volume("alpha"));
    auto act = r.active_volume();
    REQUIRE(act);
    CHECK(*act == std::optional<std::string>("alpha"));
    auto resolved = r.resolve_volume(std::nullopt);
    REQUIRE(resolved);
    CHECK(*resolved == "alpha");
    auto named = r.resolve_volume(std::string("beta"));
    REQUIRE(named);
    CHECK(*named == "beta");
    auto missing = r.switch_volume("gamma");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code == Errc::not_found);
    auto bad = r.switch_volume("../alpha");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == Errc::invalid_argument);
    auto res_missing = r.resolve_volume(std::string("gamma"));
    REQUIRE_FALSE(res_missing);
    CHECK(res_missing.error().code == Errc::not_found);

    // Volumes are independent.
    write_file(r.live_dir("beta") + "/b", "beta data");
    REQUIRE(r.commit("beta", "beta commit", kNoWarn));
    auto alpha_log = r.log("alpha");
    REQUIRE(alpha_log);
    CHECK(alpha_log->empty());

    REQUIRE(r.remove_volume("beta"));
    CHECK_FALSE(fs::exists(r.live_dir("beta")));
    CHECK_FALSE(fs::exists(f.pool / "volumes/beta"));
    list = r.list_volumes();
    REQUIRE(list);
    REQUIRE(list->size() == 1);
    CHECK((*list)[0].name == "alpha");
    auto again = r.remove_volume("beta");
    REQUIRE_FALSE(again);
    CHECK(again.error().code == Errc::not_found);

    // Removing the active volume leaves none active.
    REQUIRE(r.remove_volume("alpha"));
    act = r.active_volume();
    REQUIRE(act);
    CHECK_FALSE(*act);

    // A re-created volume starts empty, without the old history.
    REQUIRE(r.create_volume("beta"));
    CHECK(fs::is_empty(r.live_dir("beta")));
    auto beta_log = r.log("beta");
    REQUIRE(beta_log);
    CHECK(beta_log->empty());
}

TEST_CASE("invalid volume names are rejected and create nothing", "[repo]") {
    RepoFixture f(false);
    for (std::string name : std::vector<std::string>{"foo/bar", "..", "", std::string(200, 'v'), "-x", ".", "a b", "_x", "x\n", "/abs",
                                                    "../escape"}) {
        INFO("name '" << name << "'");
        auto st = f.repo->create_volume(name);
        REQUIRE_FALSE(st);
        CHECK(st.error().code == Errc::invalid_argument);
        auto rm = f.repo->remove_volume(name);
        REQUIRE_FALSE(rm);
        CHECK(rm.error().code == Errc::invalid_argument);
        auto c = f.repo->commit(name, "m", kNoWarn);
        REQUIRE_FALSE(c);
        CHECK(c.error().code == Errc::invalid_argument);
    }
    CHECK(fs::is_empty(f.pool / "volumes"));
    CHECK_FALSE(fs::exists(f.pool / "escape"));
    auto list = f.repo->list_volumes();
    REQUIRE(list);
    CHECK(list->empty());
    CHECK(f.repo->create_volume(std::string(128, 'v')));
}

TEST_CASE("commit and log", "[repo]") {
    RepoFixture f;
    auto empty_msg = f.repo->commit(f.vol, "", kNoWarn);
    REQUIRE_FALSE(empty_msg);
    CHECK(empty_msg.error().code == Errc::invalid_argument);
    auto unknown = f.repo->commit("nosuch", "m", kNoWarn);
    REQUIRE_FALSE(unknown);
    CHECK(unknown.error().code == Errc::not_found);

    write_file(f.at("a.txt"), "first\n");
    REQUIRE(make_dirs(f.at("d/e")));
    write_file(f.at("d/e/b.txt"), "nested\n");
    auto first = f.commit_outcome("first commit");
    CHECK(first.files == 2);
    CHECK(first.files_read == 2);
    CHECK(first.bytes_read == 13);
    write_file(f.at("a.txt"), "second\n");
    ObjectId second = f.commit("second commit\n\nwith a body\n");

    auto log = f.repo->log(f.vol);
    REQUIRE(log);
    REQUIRE(log->size() == 2);
    CHECK((*log)[0].id == second);
    CHECK((*log)[1].id == first.id);
    CHECK((*log)[0].commit.message == "second commit\n\nwith a body\n");
    CHECK((*log)[1].commit.message == "first commit");
    CHECK((*log)[0].commit.parents == std::vector<ObjectId>{first.id});
    CHECK((*log)[1].commit.parents.empty());
    CHECK((*log)[0].commit.author_name == "Unit Tester");
    CHECK((*log)[0].commit.author_email == "unit@test.example");
    CHECK((*log)[0].commit.time >= (*log)[1].commit.time);
    CHECK((*log)[0].commit.tree != (*log)[1].commit.tree);

    auto loaded = f.repo->load_commit(second);
    REQUIRE(loaded);
    CHECK(loaded->tree == (*log)[0].commit.tree);
    auto missing = f.repo->load_commit(sha256("no such commit"));
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code == Errc::not_found);

    auto branches = f.repo->branches(f.vol);
    REQUIRE(branches);
    REQUIRE(branches->size() == 1);
    CHECK((*branches)[0].name == "master");
    CHECK((*branches)[0].tip == std::optional<ObjectId>(second));
    CHECK((*branches)[0].active);

    // A second repository object on the same pool sees the same history.
    auto other = Repository::open(f.pool.path());
    REQUIRE(other);
    auto log2 = (*other)->log(f.vol);
    REQUIRE(log2);
    CHECK(log2->size() == 2);
}

TEST_CASE("an unchanged volume commits without reading its files", "[repo]") {
    RepoFixture f;
    write_file(f.at("big"), random_bytes(3 << 20, 31));
    write_file(f.at("small"), "small");
    set_mtime_ns(f.at("big"), kOld);
    set_mtime_ns(f.at("small"), kOld);
    auto first = f.commit_outcome("one");
    CHECK(first.files_read == 2);
    auto second = f.commit_outcome("two");
    CHECK(second.files == 2);
    CHECK(second.files_read == 0);
    CHECK(second.bytes_read == 0);
    CHECK(second.bytes_stored == 0);
    // A change that keeps size and mtime is still seen (ctime and the racy rule).
    write_file(f.at("small"), "SMALL");
    set_mtime_ns(f.at("small"), kOld);
    auto third = f.commit_outcome("three");
    CHECK(third.files_read == 1);
    auto log = f.repo->log(f.vol);
    REQUIRE(log);
    CHECK((*log)[0].commit.tree != (*log)[1].commit.tree);
}

TEST_CASE("a scan past a directory larger than the walk ahead's bound sees everything", "[repo]") {
    // 5,000 entries in one directory (more than the 4,096 the walk ahead holds), with a
    // subdirectory, between directories it lists: status and commit see every change.
    RepoFixture f;
    for (const char* d : {"a", "big", "big/sub", "z", "z/deep"}) REQUIRE(::mkdir(f.at(d).c_str(), 0755) == 0);
    for (int i = 0; i < 5000; ++i) {
        write_file(f.at(fmt::format("big/f{:04}", i)), fmt::format("{}", i));
        set_mtime_ns(f.at(fmt::format("big/f{:04}", i)), kOld);
    }
    for (const char* p : {"a/one", "big/sub/five", "z/two", "z/deep/three"}) {
        write_file(f.at(p), p);
        set_mtime_ns(f.at(p), kOld);
    }
    f.commit("one");
    CHECK(f.status().empty());
    write_file(f.at("a/one"), "changed");
    write_file(f.at("big/f4999"), "changed too");
    write_file(f.at("big/sub/five"), "changed below");
    write_file(f.at("z/deep/four"), "new");
    REQUIRE(::unlink(f.at("z/two").c_str()) == 0);
    auto st = f.status();
    std::vector<std::string> paths;
    for (const auto& c : st) paths.push_back(c.path);
    std::sort(paths.begin(), paths.end());
    CHECK(paths == std::vector<std::string>{"a/one", "big/f4999", "big/sub/five", "z/deep/four", "z/two"});
    auto out = f.commit_outcome("two");
    CHECK(out.files == 5004);
    CHECK(out.files_read == 4);  // the others were known unchanged, the big directory's too
    CHECK(f.status().empty());
}

namespace {

// The paths of the volume's directory rows (stat_cache.h, "the directory cache"), sorted.
std::vector<std::string> dir_row_paths(const RepoFixture& f) {
    auto db = meta::Db::open(f.pool / "dvol.db");
    REQUIRE(db);
    auto q = (*db)->prepare("SELECT path FROM dir_cache ORDER BY path");
    REQUIRE(q);
    std::vector<std::string> out;
    for (;;) {
        auto row = q->step();
        REQUIRE(row);
        if (!*row) return out;
        out.emplace_back(as_chars(q->blob_view(0)));
    }
}

void exec_sql(const RepoFixture& f, const std::string& sql) {
    auto db = meta::Db::open(f.pool / "dvol.db");
    REQUIRE(db);
    REQUIRE((*db)->exec(sql));
}

}  // namespace

TEST_CASE("the directory cache gives unchanged directories' trees and misses no change", "[repo]") {
    // Ten directories d0..d9, each with files and a subdirectory s holding more; a change is
    // made in each in turn, so that the directory changed is scanned while its parents come
    // from their rows. After each: status sees the change, the commit records it, and the same
    // live directory scanned without any directory row is that commit's tree.
    RepoFixture f;
    for (int d = 0; d < 10; ++d) {
        std::string dir = "d" + std::to_string(d);
        REQUIRE(make_dirs(f.at(dir + "/s")));
        for (int i = 0; i < 3; ++i) {
            for (std::string name : {dir + "/f" + std::to_string(i), dir + "/s/g" + std::to_string(i)}) {
                write_file(f.at(name), "content of " + name);
                set_mtime_ns(f.at(name), kOld);
            }
        }
    }
    write_file(f.at("top"), "top");
    (void)f.commit("one");
    // Every entry changed moments ago (its ctime at least): racily clean, no row kept.
    CHECK(dir_row_paths(f).empty());
    ::usleep(static_cast<useconds_t>(kRacyWindowNs / 1000 + 100'000));
    (void)f.commit("rows");
    auto rows = dir_row_paths(f);
    CHECK(rows.size() == 21);  // the live directory, d0..d9 and their s
    CHECK(rows.front() == "");

    auto check = [&](const std::string& what, const std::string& want) {
        INFO(what);
        CHECK(summary(f.status()) == want);
        ObjectId c = f.commit(what);
        CHECK(f.log_ids().front() == c);
        CHECK(summary(f.status()) == "");
        // The truth: the live directory scanned entry by entry (the rows put back after).
        exec_sql(f, "CREATE TABLE kept AS SELECT * FROM dir_cache; DELETE FROM dir_cache");
        CHECK(summary(f.status()) == "");
        exec_sql(f, "INSERT INTO dir_cache SELECT * FROM kept; DROP TABLE kept");
    };
    write_file(f.at("d0/s/g1"), "CONTENT OF d0/s/g1");
    set_mtime_ns(f.at("d0/s/g1"), kOld);
    check("content changed, size and mtime kept", "modified d0/s/g1\n");
    write_file(f.at("d1/f0"), "content of d1/f0 and more");
    check("content", "modified d1/f0\n");
    REQUIRE(::chmod(f.at("d2/s/g2").c_str(), 0600) == 0);
    check("mode", "metadata d2/s/g2\n");
    write_file(f.at("d3/s/new"), "new");
    check("added", "added d3/s/new\n");
    REQUIRE(::unlink(f.at("d4/s/g0").c_str()) == 0);
    check("deleted", "deleted d4/s/g0\n");
    REQUIRE(::rename(f.at("d5/s/g0").c_str(), f.at("d5/s/h0").c_str()) == 0);
    check("renamed", "added d5/s/h0\ndeleted d5/s/g0\n");
    if (::setxattr(f.at("d6/s/g1").c_str(), "user.dvol-test", "v", 1, 0) == 0) check("xattr", "metadata d6/s/g1\n");
    REQUIRE(make_dirs(f.at("d7/s/sub")));
    write_file(f.at("d7/s/sub/x"), "x");
    check("new directory", "added d7/s/sub\nadded d7/s/sub/x\n");
    REQUIRE(::symlink("g0", f.at("d8/s/link").c_str()) == 0);
    check("symlink", "added d8/s/link\n");
    REQUIRE(::link(f.at("d9/f0").c_str(), f.at("d9/s/hard").c_str()) == 0);
    check("hard link", "added d9/s/hard\n");
    // The directories whose entries did not change kept their rows, and d4/s, whose remaining
    // entries are old: its row is new.
    CHECK(dir_row_paths(f) == std::vector<std::string>{"", "d0", "d1/s", "d2", "d4/s", "d6"});
    // Past the window, a directory holding a file of several links keeps no row (its entries
    // depend on the order the links are met in); the others do.
    ::usleep(static_cast<useconds_t>(kRacyWindowNs / 1000 + 100'000));
    (void)f.commit("rows once more");
    rows = dir_row_paths(f);
    CHECK(rows.size() == 20);
    CHECK(std::find(rows.begin(), rows.end(), "d9") == rows.end());
    CHECK(std::find(rows.begin(), rows.end(), "d9/s") == rows.end());
    CHECK(std::find(rows.begin(), rows.end(), "d7/s/sub") != rows.end());
    // A row naming a tree the store lacks (gc deleted it) or forged for other entries is not
    // taken: the directory is scanned.
    exec_sql(f, "UPDATE dir_cache SET tree = randomblob(32) WHERE path = 'd0'");
    exec_sql(f, "UPDATE dir_cache SET own = randomblob(32) WHERE path = 'd1'");
    CHECK(summary(f.status()) == "");
    write_file(f.at("d0/s/g2"), "CONTENT OF d0/s/g2");
    set_mtime_ns(f.at("d0/s/g2"), kOld);
    write_file(f.at("d1/f1"), "CONTENT OF d1/f1");
    set_mtime_ns(f.at("d1/f1"), kOld);
    check("under rows not taken", "modified d0/s/g2\nmodified d1/f1\n");
    // Without a single file row, nothing is read: the files come from the directories' trees.
    ::usleep(static_cast<useconds_t>(kRacyWindowNs / 1000 + 100'000));
    (void)f.commit("rows at last");
    // A directory scanned after others taken from their rows finds its files' rows: only the
    // file changed is read.
    write_file(f.at("d5/f1"), "CONTENT OF d5/f1");
    set_mtime_ns(f.at("d5/f1"), kOld);
    auto one = f.commit_outcome("one file");
    CHECK(one.files_read == 1);
    exec_sql(f, "DELETE FROM stat_cache");
    auto again = f.commit_outcome("from the rows");
    CHECK(again.files == 62);
    CHECK(again.files_read == 9);  // those of d5 (changed moments ago), d9 and d9/s (no rows kept)
    CHECK(again.bytes_stored == 0);
    // fsck --repair, which rebuilds the stat cache, drops the directory rows with it.
    auto repaired = f.repo->fsck({}, true);
    REQUIRE(repaired);
    CHECK(dir_row_paths(f).empty());
}

TEST_CASE("resolve_ref", "[repo]") {
    RepoFixture f;
    auto no_commits = f.repo->resolve_ref(f.vol, "HEAD");
    REQUIRE_FALSE(no_commits);
    CHECK(no_commits.error().code == Errc::not_found);

    write_file(f.at("f"), "1");
    ObjectId c1 = f.commit("c1");
    write_file(f.at("f"), "2");
    ObjectId c2 = f.commit("c2");
    write_file(f.at("f"), "3");
    ObjectId c3 = f.commit("c3");

    auto resolves_to = [&](const std::string& ref, const ObjectId& want) {
        INFO("ref '" << ref << "'");
        auto r = f.repo->resolve_ref(f.vol, ref);
        if (!r) FAIL_CHECK(r.error().message);
        else CHECK(r->hex() == want.hex());
    };
    resolves_to("HEAD", c3);
    resolves_to("HEAD^", c2);
    resolves_to("HEAD^^", c1);
    resolves_to("HEAD~1", c2);
    resolves_to("HEAD~2", c1);
    resolves_to("HEAD~0", c3);
    resolves_to("HEAD^0", c3);
    resolves_to("HEAD^1", c2);
    resolves_to("HEAD~1^", c1);
    resolves_to("master", c3);
    resolves_to("master~2", c1);
    resolves_to(c2.hex(), c2);
    std::string upper = c1.hex();
    for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    resolves_to(upper, c1);
    resolves_to(c3.hex().substr(0, 12), c3);
    resolves_to(c3.hex().substr(0, 12) + "^", c2);
    resolves_to(c3.hex() + "~2", c1);

    auto fails = [&](const std::string& ref, Errc code) {
        INFO("ref '" << ref << "'");
        auto r = f.repo->resolve_ref(f.vol, ref);
        if (r) FAIL_CHECK("resolved to " << r->hex());
        else CHECK(r.error().code == code);
    };
    fails("HEAD~3", Errc::not_found);
    fails("HEAD^^^", Errc::not_found);
    fails("HEAD^2", Errc::not_found);
    fails("", Errc::not_found);
    fails("^", Errc::not_found);
    fails("nosuchbranch", Errc::not_found);
    fails("zzzz", Errc::not_found);
    fails(c1.hex().substr(0, 3), Errc::invalid_argument);  // too short to be a prefix
    fails(std::string(64, '0'), Errc::not_found);
    fails(c1.hex() + "0", Errc::not_found);
    fails("HEAD~99999999999999999999", Errc::not_found);

    // Commits of another volume are not revisions of this one.
    REQUIRE(f.repo->create_volume("other"));
    write_file(f.repo->live_dir("other") + "/x", "x");
    auto foreign = f.repo->commit("other", "foreign", kNoWarn);
    REQUIRE(foreign);
    fails(foreign->id.hex(), Errc::not_found);
    fails(foreign->id.hex().substr(0, 16), Errc::not_found);
}

TEST_CASE("resolve_ref rejects junk after ~ and ^", "[repo]") {
    RepoFixture f;
    for (int i = 0; i < 3; ++i) {
        write_file(f.at("f"), std::to_string(i));
        (void)f.commit("c" + std::to_string(i));
    }
    for (std::string ref : {"HEAD~x", "HEAD^a", "HEAD~-1", "HEAD~1x", "HEAD^ "}) {
        INFO("ref '" << ref << "'");
        auto r = f.repo->resolve_ref(f.vol, ref);
        if (r) FAIL_CHECK("'" << ref << "' resolved to " << r->hex().substr(0, 12) << " instead of failing");
    }
}

TEST_CASE("resolve_ref reports an ambiguous prefix", "[repo]") {
    RepoFixture f;
    write_file(f.at("f"), "1");
    ObjectId real = f.commit("real");
    // Two commit rows whose ids share the prefix "abcd", added behind the repository's back.
    ObjectId a = *ObjectId::from_hex("abcd00" + std::string(58, '1'));
    ObjectId b = *ObjectId::from_hex("abcd11" + std::string(58, '2'));
    {
        auto db = meta::Db::open(f.pool / "dvol.db");
        REQUIRE(db);
        auto q = (*db)->prepare("SELECT id FROM volumes WHERE name = ?");
        REQUIRE(q);
        q->bind(1, f.vol);
        auto row = q->step();
        REQUIRE(row);
        REQUIRE(*row);
        int64_t vid = q->int64(0);
        for (const ObjectId* id : {&a, &b}) {
            auto ins = (*db)->prepare("INSERT INTO commits(id, volume_id, tree, time, encoded) VALUES(?, ?, ?, 0, x'00')");
            REQUIRE(ins);
            REQUIRE(ins->bind_blob(1, id->as_span()).bind(2, vid).bind_blob(3, real.as_span()).run());
        }
    }
    auto amb = f.repo->resolve_ref(f.vol, "abcd");
    REQUIRE_FALSE(amb);
    CHECK(amb.error().code == Errc::invalid_argument);
    CHECK(amb.error().message.find("ambiguous") != std::string::npos);
    auto one = f.repo->resolve_ref(f.vol, "abcd0");
    REQUIRE(one);
    CHECK(*one == a);
    auto two = f.repo->resolve_ref(f.vol, "ABCD1");
    REQUIRE(two);
    CHECK(*two == b);
    // The fake rows are not valid commits: walking from them reports corruption.
    auto bad = f.repo->resolve_ref(f.vol, "abcd0^");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == Errc::corrupt);
}

TEST_CASE("reset --hard restores content, modes, links, empty directories and mtimes", "[repo]") {
    RepoFixture f;
    auto L = [&](std::string_view rel) { return f.at(rel); };
    write_file(L("a.txt"), "alpha\n");
    write_file(L("exec.sh"), "#!/bin/sh\necho hi\n");
    write_file(L("private"), "secret");
    write_file(L("suid"), "setuid binary");
    write_file(L("readonly"), "ro");
    REQUIRE(make_dirs(L("dir/sub")));
    write_file(L("dir/sub/deep.txt"), "deep");
    REQUIRE(make_dirs(L("emptydir")));
    REQUIRE(make_dirs(L("typechg")));
    write_file(L("typechg/inner"), "inner");
    write_file(L("big.bin"), random_bytes(700 << 10, 41));
    {
        // A sparse file: data, a hole, data.
        auto data = random_bytes(100 << 10, 42);
        auto fd = open_file(L("sparse"), O_WRONLY | O_CREAT, 0644);
        REQUIRE(fd);
        REQUIRE(pwrite_all(fd->get(), data, 0, "sparse"));
        REQUIRE(pwrite_all(fd->get(), data, 5 << 20, "sparse"));
    }
    REQUIRE(::symlink("a.txt", L("link").c_str()) == 0);
    REQUIRE(::symlink("../nowhere", L("dangling").c_str()) == 0);
    chmod_path(L("exec.sh"), 0755);
    chmod_path(L("private"), 0600);
    chmod_path(L("suid"), 04755);
    chmod_path(L("readonly"), 0444);
    chmod_path(L("emptydir"), 0700);
    chmod_path(L("dir/sub"), 02755);
    int64_t t = kOld;
    for (std::string p : {"a.txt", "exec.sh", "private", "suid", "readonly", "dir/sub/deep.txt", "typechg/inner", "big.bin",
                          "sparse", "link", "dangling", "dir/sub", "dir", "emptydir", "typechg"}) {
        set_mtime_ns(L(p), t);
        t += 1'000'000'007;  // distinct seconds and nanoseconds
    }
    set_mtime_ns(f.live(), t);
    auto before = snapshot(f.live());
    ObjectId c1 = f.commit("original");

    // A later commit with everything changed.
    write_file(L("a.txt"), "ALPHA, changed\n");
    chmod_path(L("exec.sh"), 0644);
    REQUIRE(::unlink(L("private").c_str()) == 0);
    chmod_path(L("suid"), 0644);
    REQUIRE(remove_tree(L("emptydir")));
    REQUIRE(remove_tree(L("typechg")));
    write_file(L("typechg"), "now a file");
    REQUIRE(::unlink(L("link").c_str()) == 0);
    REQUIRE(::symlink("exec.sh", L("link").c_str()) == 0);
    set_mtime_ns(L("dir/sub/deep.txt"), kOld + 5);
    write_file(L("extra.txt"), "extra");
    REQUIRE(make_dirs(L("newdir/more")));
    write_file(L("newdir/more/x"), "x");
    {
        auto fd = open_file(L("big.bin"), O_WRONLY);
        REQUIRE(fd);
        auto patch = random_bytes(1000, 43);
        REQUIRE(pwrite_all(fd->get(), patch, 300 << 10, "big.bin"));
    }
    ObjectId c2 = f.commit("everything changed");
    CHECK(c2 != c1);
    // And uncommitted changes on top.
    write_file(L("untracked"), "u");
    write_file(L("dir/sub/deep.txt"), "modified but not committed");

    auto out = f.repo->reset_hard(f.vol, "HEAD^");
    REQUIRE(out);
    CHECK(out->id == c1);
    CHECK(out->removed >= 3);
    check_same_tree(before, snapshot(f.live()));

    // The later commit left the branch.
    CHECK(f.log_ids() == std::vector<ObjectId>{c1});
    auto head = f.repo->resolve_ref(f.vol, "HEAD");
    REQUIRE(head);
    CHECK(*head == c1);
    // And nothing is left to commit.
    CHECK(summary(f.status()) == "");

    // The dropped commit can still be reached by id.
    auto forward = f.repo->reset_hard(f.vol, c2.hex());
    REQUIRE(forward);
    CHECK(read_file(L("a.txt")) == "ALPHA, changed\n");
    CHECK(fs::exists(L("newdir/more/x")));
    CHECK_FALSE(fs::exists(L("emptydir")));
    CHECK(f.log_ids() == std::vector<ObjectId>{c2, c1});
}

TEST_CASE("reset --hard HEAD discards uncommitted changes and a second reset writes nothing", "[repo]") {
    RepoFixture f;
    write_file(f.at("keep"), "committed");
    REQUIRE(make_dirs(f.at("d")));
    write_file(f.at("d/f"), "committed too");
    set_mtime_ns(f.at("keep"), kOld);
    set_mtime_ns(f.at("d/f"), kOld);
    ObjectId c = f.commit("base");
    write_file(f.at("keep"), "edited");
    write_file(f.at("d/new"), "new");
    REQUIRE(::unlink(f.at("d/f").c_str()) == 0);

    auto r1 = f.repo->reset_hard(f.vol, "HEAD");
    REQUIRE(r1);
    CHECK(r1->id == c);
    CHECK(read_file(f.at("keep")) == "committed");
    CHECK(read_file(f.at("d/f")) == "committed too");
    CHECK_FALSE(fs::exists(f.at("d/new")));
    CHECK(r1->removed == 1);
    CHECK(r1->files_written == 2);

    auto r2 = f.repo->reset_hard(f.vol, "HEAD");
    REQUIRE(r2);
    CHECK(r2->files_written == 0);
    CHECK(r2->bytes_written == 0);
    CHECK(r2->removed == 0);
    CHECK(summary(f.status()) == "");
}

TEST_CASE("reset --hard restores the owner when running as root", "[repo]") {
    if (::geteuid() != 0) {
        WARN("SKIP: not root, cannot change file owners");
        return;
    }
    RepoFixture f;
    write_file(f.at("owned"), "data");
    REQUIRE(::chown(f.at("owned").c_str(), 1234, 5678) == 0);
    (void)f.commit("owned");
    REQUIRE(::chown(f.at("owned").c_str(), 0, 0) == 0);
    auto st = f.status();
    const Change* c = find_change(st, "owned");
    REQUIRE(c);
    CHECK(c->kind == ChangeKind::metadata);
    REQUIRE(f.repo->reset_hard(f.vol, "HEAD"));
    struct stat s = dvol::test::lstat_of(f.at("owned"));
    CHECK(s.st_uid == 1234u);
    CHECK(s.st_gid == 5678u);
}

TEST_CASE("reset --hard of a large file rewrites only what differs", "[repo]") {
    RepoFixture f;
    const size_t size = 20 << 20;
    auto original = random_bytes(size, 51);
    write_file(f.at("db.img"), original);
    auto first = f.commit_outcome("20 MiB");
    CHECK(first.bytes_read == size);
    CHECK(first.bytes_stored >= size);  // random data does not compress

    auto patch = random_bytes(1 << 20, 52);
    {
        auto fd = open_file(f.at("db.img"), O_WRONLY);
        REQUIRE(fd);
        REQUIRE(pwrite_all(fd->get(), patch, 10 << 20, "db.img"));
    }
    auto second = f.commit_outcome("1 MiB changed");
    INFO("second commit stored " << second.bytes_stored << " bytes");
    CHECK(second.bytes_stored > (1u << 20));
    CHECK(second.bytes_stored < (3u << 20));

    auto back = f.repo->reset_hard(f.vol, "HEAD^");
    REQUIRE(back);
    INFO("reset wrote " << back->bytes_written << " bytes");
    CHECK(back->files_written == 1);
    CHECK(back->bytes_written >= (1u << 20));
    CHECK(back->bytes_written < (3u << 20));
    CHECK(sha256(dvol::test::bytes_of(read_file(f.at("db.img")))) == sha256(original));

    auto fwd = f.repo->reset_hard(f.vol, second.id.hex());
    REQUIRE(fwd);
    INFO("reset forward wrote " << fwd->bytes_written << " bytes");
    CHECK(fwd->bytes_written < (3u << 20));
    auto now = read_file(f.at("db.img"));
    REQUIRE(now.size() == size);
    CHECK(now.compare(10 << 20, patch.size(), dvol::test::string_of(patch)) == 0);
    CHECK(now.compare(0, 10 << 20, dvol::test::string_of(std::span(original).first(10 << 20))) == 0);
}

TEST_CASE("reset --hard of a file larger than one write batch restores every chunk and the mtime", "[repo]") {
    // About 80 random 1 MiB chunks, stored raw: the restore's write batches (at most 64
    // records or 64 MiB) are flushed in the middle of the file as well as at its end.
    RepoFixture f;
    auto original = random_bytes(80 << 20, 53);
    write_file(f.at("big.img"), original);
    write_file(f.at("small"), "small file");
    set_mtime_ns(f.at("big.img"), 1'600'000'000'123'456'789);
    f.commit_outcome("big");
    REQUIRE(::unlink(f.at("big.img").c_str()) == 0);
    write_file(f.at("small"), "changed");

    auto back = f.repo->reset_hard(f.vol, "HEAD");
    REQUIRE(back);
    CHECK(back->files_written == 2);
    CHECK(back->bytes_written >= original.size());
    CHECK(sha256(dvol::test::bytes_of(read_file(f.at("big.img")))) == sha256(original));
    CHECK(read_file(f.at("small")) == "small file");
    CHECK(mtime_ns_of(f.at("big.img")) == 1'600'000'000'123'456'789);
}

TEST_CASE("reset --hard into an empty live directory restores many small files in batches", "[repo]") {
    // More new files in one directory than a write batch holds (128 records), files before and
    // after a subdirectory, a hard link to a file still waiting for its batch, sparse tails and
    // empty files: every file gets its content, size, mode and mtime, and a stat cache row (a
    // second reset writes nothing).
    RepoFixture f;
    REQUIRE(make_dirs(f.at("many")));
    REQUIRE(make_dirs(f.at("m/sub")));
    int64_t t = kOld;
    for (int i = 0; i < 300; ++i) {
        std::string p = f.at(fmt::format("many/f{:03d}", i));
        write_file(p, fmt::format("file {} ", i) + std::string(static_cast<size_t>(i * 7 % 2000), 'x'));
        chmod_path(p, i % 3 == 0 ? 0600 : i % 3 == 1 ? 0644 : 0755);
        set_mtime_ns(p, t += 1'000'000'007);
    }
    write_file(f.at("m/a"), "before the subdirectory");
    write_file(f.at("m/sub/x"), "inside");
    write_file(f.at("m/z"), "after the subdirectory");
    write_file(f.at("m/empty"), "");
    REQUIRE(::link(f.at("many/f005").c_str(), f.at("many/f005-link").c_str()) == 0);
    {
        auto fd = open_file(f.at("m/sparse"), O_WRONLY | O_CREAT, 0644);
        REQUIRE(fd);
        REQUIRE(pwrite_all(fd->get(), dvol::as_bytes("head"), 0, "sparse"));
        REQUIRE(::ftruncate(fd->get(), 2 << 20) == 0);
    }
    for (std::string p : {"m/a", "m/sub/x", "m/z", "m/empty", "m/sparse", "m/sub", "m", "many"}) set_mtime_ns(f.at(p), t += 1'000'000'007);
    auto want = snapshot(f.live());
    f.commit("many");
    for (const auto& e : fs::directory_iterator(f.live())) REQUIRE(remove_tree(e.path().string()));

    auto r1 = f.repo->reset_hard(f.vol, "HEAD");
    REQUIRE(r1);
    check_same_tree(want, snapshot(f.live()));
    CHECK(r1->files_written == 305);  // the link is made, not written
    struct stat a = dvol::test::lstat_of(f.at("many/f005")), b = dvol::test::lstat_of(f.at("many/f005-link"));
    CHECK(a.st_ino == b.st_ino);
    CHECK(dvol::test::lstat_of(f.at("m/sparse")).st_size == (2 << 20));

    // Only the link's target is written again: making the link changed its ctime after its
    // stat cache row was taken, so the row no longer matches (as before the batching).
    auto r2 = f.repo->reset_hard(f.vol, "HEAD");
    REQUIRE(r2);
    CHECK(r2->files_written == 1);
    CHECK(r2->bytes_written == read_file(f.at("many/f005")).size());
    CHECK(summary(f.status()) == "");
    check_same_tree(want, snapshot(f.live()));
}

TEST_CASE("checkout -b keeps the data; checkout of another branch materialises it", "[repo]") {
    RepoFixture f;
    write_file(f.at("m.txt"), "master");
    ObjectId m1 = f.commit("on master");

    auto created = f.repo->checkout(f.vol, "feature", CheckoutMode::create, false);
    REQUIRE(created);
    CHECK(created->restore.id == m1);
    CHECK(created->restore.files_written == 0);
    CHECK(read_file(f.at("m.txt")) == "master");
    auto ab = f.repo->active_branch(f.vol);
    REQUIRE(ab);
    CHECK(*ab == "feature");
    auto branches = f.repo->branches(f.vol);
    REQUIRE(branches);
    REQUIRE(branches->size() == 2);
    CHECK((*branches)[0].name == "feature");
    CHECK((*branches)[0].active);
    CHECK((*branches)[0].tip == std::optional<ObjectId>(m1));
    CHECK((*branches)[1].name == "master");
    CHECK_FALSE((*branches)[1].active);
    auto vols = f.repo->list_volumes();
    REQUIRE(vols);
    CHECK((*vols)[0].branch == "feature");

    write_file(f.at("m.txt"), "changed on feature");
    write_file(f.at("f.txt"), "feature only");
    REQUIRE(make_dirs(f.at("fdir")));
    ObjectId f1 = f.commit("on feature");
    CHECK(f.log_ids() == std::vector<ObjectId>{f1, m1});

    auto to_master = f.repo->checkout(f.vol, "master", CheckoutMode::switch_branch, false);
    REQUIRE(to_master);
    CHECK(to_master->restore.id == m1);
    CHECK(read_file(f.at("m.txt")) == "master");
    CHECK_FALSE(fs::exists(f.at("f.txt")));
    CHECK_FALSE(fs::exists(f.at("fdir")));
    CHECK(f.log_ids() == std::vector<ObjectId>{m1});
    CHECK(summary(f.status()) == "");

    auto to_feature = f.repo->checkout(f.vol, "feature", CheckoutMode::switch_branch, false);
    REQUIRE(to_feature);
    CHECK(to_feature->restore.id == f1);
    CHECK(read_file(f.at("m.txt")) == "changed on feature");
    CHECK(read_file(f.at("f.txt")) == "feature only");
    CHECK(fs::is_directory(f.at("fdir")));

    auto exists = f.repo->checkout(f.vol, "master", CheckoutMode::create, false);
    REQUIRE_FALSE(exists);
    CHECK(exists.error().code == Errc::already_exists);
    auto missing = f.repo->checkout(f.vol, "nosuch", CheckoutMode::switch_branch, false);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code == Errc::not_found);
    auto invalid = f.repo->checkout(f.vol, "bad/name", CheckoutMode::create, false);
    REQUIRE_FALSE(invalid);
    CHECK(invalid.error().code == Errc::invalid_argument);
    auto still = f.repo->active_branch(f.vol);
    REQUIRE(still);
    CHECK(*still == "feature");

    // Switching to the active branch does nothing; switch_or_create does whichever applies.
    write_file(f.at("m.txt"), "uncommitted");
    auto same = f.repo->checkout(f.vol, "feature", CheckoutMode::switch_branch, false);
    REQUIRE(same);
    CHECK(same->kind == CheckoutOutcome::Kind::already_on);
    CHECK(read_file(f.at("m.txt")) == "uncommitted");
    auto made = f.repo->checkout(f.vol, "third", CheckoutMode::switch_or_create, false);
    REQUIRE(made);
    CHECK(made->kind == CheckoutOutcome::Kind::created);
    CHECK(read_file(f.at("m.txt")) == "uncommitted");
    auto switched = f.repo->checkout(f.vol, "master", CheckoutMode::switch_or_create, true);
    REQUIRE(switched);
    CHECK(switched->kind == CheckoutOutcome::Kind::switched);
    CHECK(read_file(f.at("m.txt")) == "master");
}

TEST_CASE("checkout of a branch without commits empties the live directory", "[repo]") {
    RepoFixture f;
    REQUIRE(f.repo->checkout(f.vol, "dev", CheckoutMode::create, false));
    write_file(f.at("dev.txt"), "dev");
    ObjectId d1 = f.commit("dev work");
    auto to_master = f.repo->checkout(f.vol, "master", CheckoutMode::switch_branch, false);
    REQUIRE(to_master);
    CHECK(fs::is_empty(f.live()));
    auto back = f.repo->checkout(f.vol, "dev", CheckoutMode::switch_branch, false);
    REQUIRE(back);
    CHECK(back->restore.id == d1);
    CHECK(read_file(f.at("dev.txt")) == "dev");
}

TEST_CASE("checkout with uncommitted changes needs force", "[repo]") {
    RepoFixture f;
    write_file(f.at("a"), "a");
    (void)f.commit("base");
    REQUIRE(f.repo->checkout(f.vol, "other", CheckoutMode::create, false));
    write_file(f.at("b"), "b on other");
    (void)f.commit("other work");

    write_file(f.at("a"), "uncommitted edit");
    auto refused = f.repo->checkout(f.vol, "master", CheckoutMode::switch_branch, false);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == Errc::conflict);
    CHECK(read_file(f.at("a")) == "uncommitted edit");
    auto ab = f.repo->active_branch(f.vol);
    REQUIRE(ab);
    CHECK(*ab == "other");

    write_file(f.at("untracked"), "new file");
    REQUIRE(::unlink(f.at("a").c_str()) == 0);
    auto refused2 = f.repo->checkout(f.vol, "master", CheckoutMode::switch_branch, false);
    REQUIRE_FALSE(refused2);
    CHECK(refused2.error().code == Errc::conflict);

    auto forced = f.repo->checkout(f.vol, "master", CheckoutMode::switch_branch, true);
    REQUIRE(forced);
    CHECK(read_file(f.at("a")) == "a");
    CHECK_FALSE(fs::exists(f.at("b")));
    CHECK_FALSE(fs::exists(f.at("untracked")));
    ab = f.repo->active_branch(f.vol);
    REQUIRE(ab);
    CHECK(*ab == "master");
}

TEST_CASE("delete_branch", "[repo]") {
    RepoFixture f;
    write_file(f.at("a"), "a");
    (void)f.commit("base");
    REQUIRE(f.repo->checkout(f.vol, "side", CheckoutMode::create, false));
    auto active = f.repo->delete_branch(f.vol, "side");
    REQUIRE_FALSE(active);
    CHECK(active.error().code == Errc::conflict);
    REQUIRE(f.repo->checkout(f.vol, "master", CheckoutMode::switch_branch, false));
    REQUIRE(f.repo->delete_branch(f.vol, "side"));
    auto b = f.repo->branches(f.vol);
    REQUIRE(b);
    REQUIRE(b->size() == 1);
    CHECK((*b)[0].name == "master");
    auto again = f.repo->delete_branch(f.vol, "side");
    REQUIRE_FALSE(again);
    CHECK(again.error().code == Errc::not_found);
    auto master = f.repo->delete_branch(f.vol, "master");
    REQUIRE_FALSE(master);
    CHECK(master.error().code == Errc::conflict);
    auto invalid = f.repo->delete_branch(f.vol, "..");
    REQUIRE_FALSE(invalid);
    CHECK(invalid.error().code == Errc::invalid_argument);
    // A deleted branch cannot be checked out.
    auto gone = f.repo->checkout(f.vol, "side", CheckoutMode::switch_branch, false);
    REQUIRE_FALSE(gone);
    CHECK(gone.error().code == Errc::not_found);
}

TEST_CASE("status lists added, modified, deleted and metadata changes", "[repo]") {
    RepoFixture f;
    write_file(f.at("new-before-commit"), "x");
    CHECK(summary(f.status()) == "added new-before-commit\n");

    write_file(f.at("modify"), "original content");
    write_file(f.at("delete"), "to be deleted");
    write_file(f.at("chmod"), "mode will change");
    write_file(f.at("touch"), "mtime will change");
    write_file(f.at("same"), "unchanged");
    REQUIRE(make_dirs(f.at("sub")));
    write_file(f.at("sub/gone"), "whole dir goes");
    for (std::string p : {"modify", "delete", "chmod", "touch", "same", "sub/gone"}) set_mtime_ns(f.at(p), kOld);
    (void)f.commit("base");
    CHECK(summary(f.status()) == "");

    write_file(f.at("modify"), "original CONTENT");  // same size
    set_mtime_ns(f.at("modify"), kOld);
    REQUIRE(::unlink(f.at("delete").c_str()) == 0);
    chmod_path(f.at("chmod"), 0755);
    set_mtime_ns(f.at("touch"), kOld + 1);
    write_file(f.at("added"), "brand new");
    REQUIRE(make_dirs(f.at("newdir")));
    write_file(f.at("newdir/inner"), "inner");
    REQUIRE(remove_tree(f.at("sub")));

    auto changes = f.status();
    CHECK(summary(changes) ==
          "added added\n"
          "added newdir\n"
          "added newdir/inner\n"
          "deleted delete\n"
          "deleted sub\n"
          "deleted sub/gone\n"
          "metadata chmod\n"
          "metadata touch\n"
          "modified modify\n");
    const Change* chmod = find_change(changes, "chmod");
    REQUIRE(chmod);
    REQUIRE(chmod->what.size() == 1);
    CHECK(chmod->what[0].find("mode") == 0);
    const Change* touch = find_change(changes, "touch");
    REQUIRE(touch);
    CHECK(touch->what == std::vector<std::string>{"mtime"});
    const Change* mod = find_change(changes, "modify");
    REQUIRE(mod);
    REQUIRE(mod->old_entry);
    REQUIRE(mod->new_entry);
    CHECK(mod->old_entry->size == mod->new_entry->size);
    const Change* del = find_change(changes, "delete");
    REQUIRE(del);
    CHECK(del->old_entry);
    CHECK_FALSE(del->new_entry);
    // status writes nothing.
    CHECK(f.log_ids().size() == 1);
}

TEST_CASE("status reports a type change", "[repo]") {
    RepoFixture f;
    write_file(f.at("x"), "file");
    REQUIRE(::symlink("x", f.at("l").c_str()) == 0);
    (void)f.commit("base");
    REQUIRE(::unlink(f.at("l").c_str()) == 0);
    write_file(f.at("l"), "now a file");
    auto changes = f.status();
    const Change* c = find_change(changes, "l");
    REQUIRE(c);
    CHECK(c->kind == ChangeKind::type_changed);
}

TEST_CASE("diff gives a unified diff for text and a summary line for binary files", "[repo]") {
    RepoFixture f;
    write_file(f.at("notes.txt"), "line one\nline two\nline three\n");
    std::string bin = std::string("\x7f" "ELF\0\0\0", 7) + "binary payload";
    write_file(f.at("blob.bin"), bin);
    write_file(f.at("untouched.txt"), "same\n");
    (void)f.commit("base");

    write_file(f.at("notes.txt"), "line one\nline 2\nline three\n");
    bin[10] = 'X';
    write_file(f.at("blob.bin"), bin);
    write_file(f.at("added.txt"), "fresh\n");

    auto d = f.repo->diff(f.vol, std::nullopt, std::nullopt, "", kNoWarn);
    REQUIRE(d);
    std::map<std::string, FileDiff> by_path;
    for (const auto& fd : *d) by_path.emplace(fd.change.path, fd);
    CHECK(by_path.size() == 3);
    CHECK_FALSE(by_path.count("untouched.txt"));

    REQUIRE(by_path.count("notes.txt"));
    const std::string& text = by_path.at("notes.txt").patch;
    INFO(text);
    CHECK(text.find("--- a/notes.txt\n") != std::string::npos);
    CHECK(text.find("+++ b/notes.txt\n") != std::string::npos);
    CHECK(text.find("\n-line two\n") != std::string::npos);
    CHECK(text.find("\n+line 2\n") != std::string::npos);
    CHECK(text.find(" line one\n") != std::string::npos);

    REQUIRE(by_path.count("blob.bin"));
    const std::string& binary = by_path.at("blob.bin").patch;
    CHECK(binary.rfind("Binary files a/blob.bin and b/blob.bin differ", 0) == 0);
    CHECK(binary.find("\n-") == std::string::npos);

    REQUIRE(by_path.count("added.txt"));
    const std::string& added = by_path.at("added.txt").patch;
    CHECK(added.find("--- /dev/null") != std::string::npos);
    CHECK(added.find("+fresh") != std::string::npos);
    CHECK(by_path.at("added.txt").change.kind == ChangeKind::added);

    // A path restricts the diff.
    auto only = f.repo->diff(f.vol, std::nullopt, std::nullopt, "notes.txt", kNoWarn);
    REQUIRE(only);
    REQUIRE(only->size() == 1);
    CHECK((*only)[0].change.path == "notes.txt");

    // Between two commits.
    (void)f.commit("second");
    auto between = f.repo->diff(f.vol, std::string("HEAD^"), std::string("HEAD"), "./notes.txt", kNoWarn);
    REQUIRE(between);
    REQUIRE(between->size() == 1);
    CHECK((*between)[0].patch.find("+line 2") != std::string::npos);
    auto clean = f.repo->diff(f.vol, std::nullopt, std::nullopt, "", kNoWarn);
    REQUIRE(clean);
    CHECK(clean->empty());
    auto reverse = f.repo->diff(f.vol, std::string("HEAD"), std::string("HEAD^"), "added.txt", kNoWarn);
    REQUIRE(reverse);
    REQUIRE(reverse->size() == 1);
    CHECK((*reverse)[0].change.kind == ChangeKind::deleted);
    CHECK((*reverse)[0].patch.find("+++ /dev/null") != std::string::npos);
    auto bad_ref = f.repo->diff(f.vol, std::string("nosuch"), std::nullopt, "", kNoWarn);
    REQUIRE_FALSE(bad_ref);
    CHECK(bad_ref.error().code == Errc::not_found);
}

TEST_CASE("config values and identity", "[repo]") {
    RepoFixture f;
    auto name = f.repo->config_get("user.name");
    REQUIRE(name);
    CHECK(*name == std::optional<std::string>("Unit Tester"));
    auto unset = f.repo->config_get("no.such.key");
    REQUIRE(unset);
    CHECK_FALSE(*unset);
    REQUIRE(f.repo->config_set("user.name", "Renamed"));
    auto id = f.repo->identity();
    REQUIRE(id);
    CHECK(id->name == "Renamed");
    CHECK(id->email == "unit@test.example");
}

TEST_CASE("reset --hard never follows a symlink planted in the live directory", "[repo]") {
    RepoFixture f;
    TempDir outside;
    write_file(outside / "f", "outside");
    write_file(outside / "x", "outside x");
    REQUIRE(make_dirs(f.at("d")));
    write_file(f.at("d/f"), "inside");
    write_file(f.at("x"), "inside x");
    (void)f.commit("base");

    REQUIRE(remove_tree(f.at("d")));
    REQUIRE(::symlink(outside.path().c_str(), f.at("d").c_str()) == 0);
    REQUIRE(::unlink(f.at("x").c_str()) == 0);
    REQUIRE(::symlink((outside / "x").c_str(), f.at("x").c_str()) == 0);

    REQUIRE(f.repo->reset_hard(f.vol, "HEAD"));
    CHECK(read_file(outside / "f") == "outside");
    CHECK(read_file(outside / "x") == "outside x");
    CHECK(fs::is_directory(fs::symlink_status(f.at("d"))));
    CHECK(fs::is_regular_file(fs::symlink_status(f.at("x"))));
    CHECK(read_file(f.at("d/f")) == "inside");
    CHECK(read_file(f.at("x")) == "inside x");
}

TEST_CASE("reset --hard through the stat cache rewrites only changed ranges", "[repo]") {
    // With old mtimes the cache rows are trusted, so the restorer compares extent lists instead
    // of reading the file.
    RepoFixture f;
    auto v1 = random_bytes(48 << 20, 61);
    write_file(f.at("img"), v1);
    set_mtime_ns(f.at("img"), kOld);
    ObjectId c1 = f.commit("v1");

    auto v2 = v1;
    auto patch = random_bytes(256 << 10, 62);
    std::copy(patch.begin(), patch.end(), v2.begin() + (8 << 20));
    auto tail = random_bytes(300 << 10, 63);
    v2.insert(v2.end(), tail.begin(), tail.end());
    write_file(f.at("img"), v2);
    set_mtime_ns(f.at("img"), kOld + 1'000'000'000);
    ObjectId c2 = f.commit("v2");

    auto back = f.repo->reset_hard(f.vol, c1.hex());
    REQUIRE(back);
    CHECK(read_file(f.at("img")) == dvol::test::string_of(v1));
    CHECK(mtime_ns_of(f.at("img")) == kOld);
    INFO("back wrote " << back->bytes_written);
    CHECK(back->bytes_written < (12u << 20) + (512u << 10));  // of 48 MiB: the patched and last chunks

    auto fwd = f.repo->reset_hard(f.vol, c2.hex());
    REQUIRE(fwd);
    CHECK(read_file(f.at("img")) == dvol::test::string_of(v2));
    INFO("forward wrote " << fwd->bytes_written);
    CHECK(fwd->bytes_written < (12u << 20) + (512u << 10));

    auto same = f.repo->reset_hard(f.vol, c2.hex());
    REQUIRE(same);
    CHECK(same->bytes_written == 0);
    CHECK(same->files_written == 0);

    // The cache rows written by the restore are right: a commit now reads nothing.
    auto again = f.commit_outcome("unchanged");
    CHECK(again.files_read == 0);
    auto log = f.repo->log(f.vol);
    REQUIRE(log);
    CHECK((*log)[0].commit.tree == (*log)[1].commit.tree);
}

namespace {

// Bytes this process has passed to write(2) and its kin so far (/proc/self/io, all threads).
uint64_t bytes_written_by_process() {
    std::string io = read_file("/proc/self/io");
    auto at = io.find("wchar: ");
    REQUIRE(at != std::string::npos);
    return std::stoull(io.substr(at + 7));
}

}  // namespace

TEST_CASE("reset --hard writes only the pages of a changed chunk that differ", "[repo]") {
    // As a database changes a file: a few 8 KiB pages here and there, so every chunk they fall
    // in differs, while almost all of its pages are still what the target holds.
    RepoFixture f;
    auto v1 = random_bytes(32 << 20, 71);
    write_file(f.at("table"), v1);
    set_mtime_ns(f.at("table"), kOld);
    ObjectId c1 = f.commit("v1");
    auto v2 = v1;
    for (size_t page = 0; page < 8; ++page) {
        auto p = random_bytes(8192, 72 + page);
        std::copy(p.begin(), p.end(), v2.begin() + static_cast<std::ptrdiff_t>(page * (4 << 20) + 8192 * 37));
    }
    write_file(f.at("table"), v2);
    set_mtime_ns(f.at("table"), kOld + 1'000'000'000);
    f.commit("v2");

    uint64_t before = bytes_written_by_process();
    auto back = f.repo->reset_hard(f.vol, c1.hex());
    REQUIRE(back);
    uint64_t written = bytes_written_by_process() - before;
    CHECK(read_file(f.at("table")) == dvol::test::string_of(v1));
    CHECK(mtime_ns_of(f.at("table")) == kOld);
    INFO("reset wrote " << written << " bytes (the database's writes included), chunks worth " << back->bytes_written);
    CHECK(back->bytes_written >= (8u << 20) / 4);  // whole chunks differ
    CHECK(written < (1u << 20));                   // but only 64 KiB of pages
}

TEST_CASE("reset --hard HEAD after pages changed in place writes only those pages back", "[repo]") {
    // The stat cache no longer matches, so the file is read and compared range by range.
    RepoFixture f;
    auto v1 = random_bytes(16 << 20, 81);
    write_file(f.at("table"), v1);
    set_mtime_ns(f.at("table"), kOld);
    f.commit("v1");
    {
        auto fd = open_file(f.at("table"), O_WRONLY);
        REQUIRE(fd);
        for (size_t page = 0; page < 4; ++page)
            REQUIRE(pwrite_all(fd->get(), random_bytes(8192, 82 + page), page * (4 << 20) + 8192 * 11, "table"));
    }
    uint64_t before = bytes_written_by_process();
    auto back = f.repo->reset_hard(f.vol, "HEAD");
    REQUIRE(back);
    uint64_t written = bytes_written_by_process() - before;
    CHECK(read_file(f.at("table")) == dvol::test::string_of(v1));
    INFO("reset wrote " << written << " bytes (the database's writes included)");
    CHECK(written < (1u << 20));
}

TEST_CASE("odd names, empty files and sparse tails survive a reset", "[repo]") {
    RepoFixture f;
    std::vector<std::string> names = {"with\nnewline", "caf\xc3\xa9", "sp ace", "-dash", ".hidden", "\x01\x7f\xff"};
    for (const auto& n : names) write_file(f.at(n), "name: " + n);
    write_file(f.at("empty"), "");
    {
        auto fd = open_file(f.at("sparse-tail"), O_WRONLY | O_CREAT, 0644);
        REQUIRE(fd);
        REQUIRE(pwrite_all(fd->get(), dvol::as_bytes("head"), 0, "sparse-tail"));
        REQUIRE(::ftruncate(fd->get(), 3 << 20) == 0);
    }
    auto want = snapshot(f.live());
    (void)f.commit("odd");
    for (const auto& n : names) REQUIRE(::unlink(f.at(n).c_str()) == 0);
    write_file(f.at("empty"), "not empty any more");
    write_file(f.at("sparse-tail"), "short");
    REQUIRE(f.repo->reset_hard(f.vol, "HEAD"));
    check_same_tree(want, snapshot(f.live()));
    struct stat st = dvol::test::lstat_of(f.at("sparse-tail"));
    CHECK(st.st_size == (3 << 20));
    CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < (1u << 20));  // the tail stays a hole
}

TEST_CASE("fifos and device nodes survive a reset", "[repo]") {
    RepoFixture f;
    REQUIRE(::mkfifo(f.at("pipe").c_str(), 0640) == 0);
    bool devices = ::mknod(f.at("null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0;
    if (!devices) WARN("SKIP device nodes: mknod not permitted here");
    set_mtime_ns(f.at("pipe"), kOld);
    auto want = snapshot(f.live());
    (void)f.commit("special");
    CHECK(summary(f.status()) == "");
    REQUIRE(::unlink(f.at("pipe").c_str()) == 0);
    if (devices) {
        REQUIRE(::unlink(f.at("null").c_str()) == 0);
        REQUIRE(::mknod(f.at("null").c_str(), S_IFCHR | 0666, makedev(1, 5)) == 0);
        auto st = f.status();
        const Change* c = find_change(st, "null");
        REQUIRE(c);
        CHECK(c->kind == ChangeKind::modified);
    }
    REQUIRE(f.repo->reset_hard(f.vol, "HEAD"));
    check_same_tree(want, snapshot(f.live()));
    CHECK(S_ISFIFO(dvol::test::lstat_of(f.at("pipe")).st_mode));
    if (devices) CHECK(dvol::test::lstat_of(f.at("null")).st_rdev == makedev(1, 3));
}

TEST_CASE("extended attributes survive commit and reset", "[repo]") {
    // docs/ARCHITECTURE.md ("Data model"): trees carry xattrs (POSIX ACLs included) for a faithful restore.
    RepoFixture f;
    write_file(f.at("tagged"), "data");
    if (::setxattr(f.at("tagged").c_str(), "user.dvol-test", "v1", 2, 0) != 0) {
        WARN("SKIP: the file system does not support user xattrs");
        return;
    }
    (void)f.commit("with xattr");
    REQUIRE(::removexattr(f.at("tagged").c_str(), "user.dvol-test") == 0);
    auto st = f.status();
    const Change* c = find_change(st, "tagged");
    CHECK(c);
    if (c) CHECK(c->kind == ChangeKind::metadata);
    REQUIRE(f.repo->reset_hard(f.vol, "HEAD"));
    char buf[16] = {};
    ssize_t n = ::getxattr(f.at("tagged").c_str(), "user.dvol-test", buf, sizeof buf);
    CHECK(n == 2);
    CHECK(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0) == "v1");
}

namespace {

// The stat-cache row of `path` in the fixture's volume, read behind the repository's back:
// its xattrs field (none: NULL, unknown), ctime and scan time.
struct RowXattrs {
    std::optional<Xattrs> xattrs;
    int64_t ctime_ns = 0;
    int64_t scan_ns = 0;
};

RowXattrs row_xattrs(const RepoFixture& f, const std::string& path) {
    auto db = meta::Db::open(f.pool / "dvol.db");
    REQUIRE(db);
    auto q = (*db)->prepare("SELECT xattrs, ctime_ns, scan_ns FROM stat_cache WHERE path = ?");
    REQUIRE(q);
    q->bind_blob(1, as_bytes(path));
    auto row = q->step();
    REQUIRE(row);
    REQUIRE(*row);
    RowXattrs out;
    if (!q->is_null(0)) {
        auto x = decode_xattrs(q->blob_view(0));
        REQUIRE(x);
        out.xattrs = std::move(*x);
    }
    out.ctime_ns = q->int64(1);
    out.scan_ns = q->int64(2);
    return out;
}

// Sets the row's xattrs field and scan time (a forged row: what a scan would take as the truth),
// and drops the directory rows.
void forge_row(const RepoFixture& f, const std::string& path, const Xattrs& x, int64_t scan_ns) {
    auto db = meta::Db::open(f.pool / "dvol.db");
    REQUIRE(db);
    auto q = (*db)->prepare("UPDATE stat_cache SET xattrs = ?, scan_ns = ? WHERE path = ?");
    REQUIRE(q);
    REQUIRE(q->bind_blob(1, encode_xattrs(x)).bind(2, scan_ns).bind_blob(3, as_bytes(path)).run());
    REQUIRE((*db)->changes() == 1);
    // Without the directory rows, whose trees would give the file's entry whole: the scan
    // looks the file's row up.
    REQUIRE((*db)->exec("DELETE FROM dir_cache"));
}

}  // namespace

TEST_CASE("xattrs kept in the stat cache spare their listing, and an xattr change is still seen", "[repo]") {
    // stat_cache.h: a row records the file's xattrs, trusted as its content is but with ctime
    // for mtime (an xattr change moves ctime alone). Commit records them and refreshes the rows
    // that lack them; restore's rows do not know them; fsck checks them against the file.
    RepoFixture f;
    write_file(f.at("x"), "data");
    write_file(f.at("y"), "more data");
    if (::setxattr(f.at("x").c_str(), "user.dvol-test", "v1", 2, 0) != 0) {
        WARN("SKIP: the file system does not support user xattrs");
        return;
    }
    set_mtime_ns(f.at("x"), kOld);
    set_mtime_ns(f.at("y"), kOld);
    const Xattrs v1 = {{"user.dvol-test", "v1"}};
    (void)f.commit("v1");
    // The commit read the files and their xattrs; their ctime is too recent for the xattrs to be
    // trusted yet (the content is: its mtime is old).
    auto r = row_xattrs(f, "x");
    REQUIRE(r.xattrs);
    CHECK(*r.xattrs == v1);
    CHECK(r.ctime_ns + kRacyWindowNs > r.scan_ns);

    // An xattr change in the same second as the commit: ctime may not even move, and status
    // and commit still see it.
    REQUIRE(::setxattr(f.at("x").c_str(), "user.dvol-test", "v2", 2, 0) == 0);
    CHECK(summary(f.status()) == "metadata x\n");
    (void)f.commit("v2 at once");
    CHECK(summary(f.status()) == "");
    REQUIRE(::removexattr(f.at("x").c_str(), "user.dvol-test") == 0);
    CHECK(summary(f.status()) == "metadata x\n");
    REQUIRE(::setxattr(f.at("x").c_str(), "user.dvol-test", "v3", 2, 0) == 0);
    ObjectId c3 = f.commit("v3");
    const Xattrs v3 = {{"user.dvol-test", "v3"}};

    // Past the racy window, the next commit refreshes the rows: now their xattrs are trusted.
    ::usleep(static_cast<useconds_t>(kRacyWindowNs / 1000 + 100'000));
    auto out = f.commit_outcome("refresh");
    CHECK(out.files_read == 0);  // the content came from the rows
    r = row_xattrs(f, "x");
    REQUIRE(r.xattrs);
    CHECK(*r.xattrs == v3);
    CHECK(r.ctime_ns + kRacyWindowNs <= r.scan_ns);
    r = row_xattrs(f, "y");
    REQUIRE(r.xattrs);
    CHECK(r.xattrs->empty());
    CHECK(summary(f.status()) == "");

    // The scan takes a trusted row's xattrs without listing the file's: a forged row shows it
    // (status reports a change the file does not have), and fsck names the row.
    forge_row(f, "x", {{"user.dvol-test", "forged"}}, r.scan_ns);
    CHECK(summary(f.status()) == "metadata x\n");
    auto report = f.repo->fsck();
    REQUIRE(report);
    bool named = false;
    for (const auto& p : report->problems)
        named = named || (p.kind == "bad-stat-cache" && p.message.find("records extended attributes the file does not have") != std::string::npos);
    CHECK(named);
    // The same forged row inside the racy window (ctime less than 2 s before its scan) is not
    // trusted: the file's own xattrs are listed, and nothing changed.
    forge_row(f, "x", {{"user.dvol-test", "forged"}}, r.ctime_ns + kRacyWindowNs - 1);
    CHECK(summary(f.status()) == "");
    report = f.repo->fsck();
    REQUIRE(report);
    CHECK(report->problems.empty());
    forge_row(f, "x", v3, r.scan_ns);

    // A change to a file whose row is trusted moves its ctime: seen by status and commit.
    REQUIRE(::setxattr(f.at("x").c_str(), "user.dvol-test", "v4", 2, 0) == 0);
    CHECK(summary(f.status()) == "metadata x\n");
    (void)f.commit("v4");
    CHECK(summary(f.status()) == "");

    // Restore's rows do not know the xattrs it set (their ctime is the restore's own).
    REQUIRE(f.repo->reset_hard(f.vol, c3.hex()));
    CHECK_FALSE(row_xattrs(f, "x").xattrs);
    char buf[8] = {};
    CHECK(::getxattr(f.at("x").c_str(), "user.dvol-test", buf, sizeof buf) == 2);
    CHECK(std::string(buf, 2) == "v3");
    CHECK(summary(f.status()) == "");
}

TEST_CASE("a directory of more entries than the scan probes at once is scanned entry by entry", "[repo]") {
    // The scan stats and lists the xattrs of a directory's entries a window at a time, on two
    // threads (scan.cpp, kProbeWindow = 256): entries on both sides of each window's edge keep
    // their own metadata, and a change to any of them is seen.
    RepoFixture f;
    REQUIRE(make_dirs(f.at("many")));
    constexpr int kFiles = 700;
    auto name = [](int i) { return fmt::format("many/f{:04d}", i); };
    for (int i = 0; i < kFiles; ++i) {
        write_file(f.at(name(i)), fmt::format("file {}", i));
        set_mtime_ns(f.at(name(i)), kOld + i);
    }
    bool xattrs = ::setxattr(f.at(name(256)).c_str(), "user.dvol-test", "w2", 2, 0) == 0;
    if (xattrs) REQUIRE(::setxattr(f.at(name(255)).c_str(), "user.dvol-test", "w1", 2, 0) == 0);
    if (!xattrs) WARN("the file system does not support user xattrs: the xattr part is skipped");
    auto first = f.commit_outcome("many");
    CHECK(first.files == kFiles);
    CHECK(first.files_read == kFiles);
    CHECK(summary(f.status()) == "");
    auto second = f.commit_outcome("again");
    CHECK(second.files_read == 0);

    write_file(f.at(name(600)), "FILE 600");  // same size, same mtime
    set_mtime_ns(f.at(name(600)), kOld + 600);
    chmod_path(f.at(name(511)), 0600);
    std::string want = "metadata " + name(511) + "\nmodified " + name(600) + "\n";
    if (xattrs) {
        REQUIRE(::removexattr(f.at(name(256)).c_str(), "user.dvol-test") == 0);
        want = "metadata " + name(256) + "\n" + want;
    }
    CHECK(summary(f.status()) == want);
    REQUIRE(f.repo->reset_hard(f.vol, "HEAD"));
    CHECK(summary(f.status()) == "");
    CHECK(read_file(f.at(name(600))) == "file 600");
    if (xattrs) {
        char buf[8] = {};
        CHECK(::getxattr(f.at(name(256)).c_str(), "user.dvol-test", buf, sizeof buf) == 2);
        CHECK(::getxattr(f.at(name(255)).c_str(), "user.dvol-test", buf, sizeof buf) == 2);
        CHECK(::getxattr(f.at(name(257)).c_str(), "user.dvol-test", buf, sizeof buf) < 0);
    }
}

TEST_CASE("a file replaced by a new one at the same path commits and resets as one changed in place", "[repo]") {
    // A restore, a dump reload or rsync without --inplace writes a new file and renames it over
    // the old: a new inode. Its stat-cache row no longer matches, but still gives the previous
    // extents, so the commit stores only the changed chunk and records a row for the new inode,
    // through which a reset back rewrites only that chunk's range without reading the file.
    RepoFixture f;
    auto v1 = random_bytes(16 << 20, 71);
    write_file(f.at("table"), v1);
    set_mtime_ns(f.at("table"), kOld);
    ObjectId c1 = f.commit("v1");
    struct stat before;
    REQUIRE(::stat(f.at("table").c_str(), &before) == 0);

    auto v2 = v1;
    auto patch = random_bytes(4096, 72);
    std::copy(patch.begin(), patch.end(), v2.begin() + (8 << 20));
    write_file(f.at(".table.tmp"), v2);
    set_mtime_ns(f.at(".table.tmp"), kOld + 1'000'000'000);
    REQUIRE(::rename(f.at(".table.tmp").c_str(), f.at("table").c_str()) == 0);
    struct stat after;
    REQUIRE(::stat(f.at("table").c_str(), &after) == 0);
    REQUIRE(after.st_ino != before.st_ino);

    auto second = f.commit_outcome("v2");
    CHECK(second.files_read == 1);
    INFO("stored " << second.bytes_stored);
    CHECK(second.bytes_stored < (4u << 20) + (64u << 10));  // one chunk of at most 4 MiB, and the trees

    auto back = f.repo->reset_hard(f.vol, c1.hex());
    REQUIRE(back);
    CHECK(read_file(f.at("table")) == dvol::test::string_of(v1));
    INFO("back wrote " << back->bytes_written);
    CHECK(back->bytes_written <= (4u << 20));  // the one changed chunk, found by the extents alone
    CHECK(f.commit_outcome("v1 again").files_read == 0);
}

TEST_CASE("reset --hard to an unknown ref changes nothing", "[repo]") {
    RepoFixture f;
    write_file(f.at("a"), "committed");
    ObjectId c = f.commit("base");
    write_file(f.at("a"), "uncommitted");
    for (std::string ref : {"HEAD~5", "nosuch", "ffff"}) {
        auto r = f.repo->reset_hard(f.vol, ref);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == Errc::not_found);
    }
    CHECK(read_file(f.at("a")) == "uncommitted");
    CHECK(f.log_ids() == std::vector<ObjectId>{c});
    auto other = f.repo->reset_hard("nosuch", "HEAD");
    REQUIRE_FALSE(other);
    CHECK(other.error().code == Errc::not_found);
}

TEST_CASE("checkout -b keeps uncommitted changes", "[repo]") {
    RepoFixture f;
    write_file(f.at("a"), "committed");
    (void)f.commit("base");
    write_file(f.at("a"), "work in progress");
    write_file(f.at("b"), "new");
    REQUIRE(f.repo->checkout(f.vol, "wip", CheckoutMode::create, false));
    CHECK(read_file(f.at("a")) == "work in progress");
    CHECK(read_file(f.at("b")) == "new");
    CHECK(summary(f.status()) == "added b\nmodified a\n");
}

TEST_CASE("diff summarises files too large for a text diff", "[repo]") {
    RepoFixture f;
    write_file(f.at("big.log"), "small at first\n");
    (void)f.commit("base");
    {
        auto fd = open_file(f.at("big.log"), O_WRONLY);
        REQUIRE(fd);
        REQUIRE(::ftruncate(fd->get(), static_cast<off_t>(kMaxTextDiffSize + 1)) == 0);
    }
    auto d = f.repo->diff(f.vol, std::nullopt, std::nullopt, "", kNoWarn);
    REQUIRE(d);
    REQUIRE(d->size() == 1);
    CHECK((*d)[0].patch.rfind("Large files a/big.log and b/big.log differ", 0) == 0);
}

TEST_CASE("opening a pool on a regular file fails cleanly", "[repo]") {
    TempDir d;
    write_file(d / "file", "not a directory");
    auto r = Repository::open(d / "file");
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find(d / "file") != std::string::npos);
}

namespace {

// The bytes of `name` in the live directory of the commit whose top tree is `top`, read through
// `source` alone.
std::string committed_file(ObjectSource& source, const ObjectId& top, const std::string& name) {
    auto t = load_tree(source, nullptr, top);
    REQUIRE(t);
    auto root = load_tree(source, nullptr, t->entries.at(0).subtree);
    REQUIRE(root);
    const TreeEntry* e = root->find(name);
    REQUIRE(e);
    auto data = read_content(source, e->content, e->size, 1u << 30);
    REQUIRE(data);
    REQUIRE(*data);
    return **data;
}

}  // namespace

TEST_CASE("a pin keeps its commit's objects through gc while its holder lives", "[repo]") {
    RepoFixture f;
    auto big = random_bytes(2'000'000, 7);
    write_file(f.at("big"), big);
    ObjectId c = f.commit("one");
    auto pin = f.repo->pin_commit(f.vol, "HEAD", "mount /some dir\nwith a newline");
    REQUIRE(pin);
    CHECK(pin->commit() == c);
    CHECK(pin->volume() == f.vol);
    ObjectId top = pin->tree();
    auto pins = f.repo->pins();
    REQUIRE(pins);
    REQUIRE(pins->size() == 1);
    CHECK((*pins)[0].holder == "mount /some dir\nwith a newline");
    CHECK((*pins)[0].pid == ::getpid());
    CHECK((*pins)[0].commit == c);
    CHECK((*pins)[0].tree == top);

    // No branch reaches the commit any more; the pin alone keeps it.
    REQUIRE(f.repo->remove_volume(f.vol));
    auto gc = f.repo->gc();
    REQUIRE(gc);
    CHECK(gc->pinned == 1);
    CHECK(gc->objects_removed == 0);
    auto reader = f.repo->open_object_reader();
    REQUIRE(reader);
    CHECK(committed_file(**reader, top, "big") == dvol::test::string_of(big));

    // The pin goes: so do the objects.
    std::string pin_file = (*pins)[0].file;
    { CommitPin gone = std::move(*pin); }
    CHECK(!path_exists(pin_file));
    pins = f.repo->pins();
    REQUIRE(pins);
    CHECK(pins->empty());
    gc = f.repo->gc();
    REQUIRE(gc);
    CHECK(gc->pinned == 0);
    CHECK(gc->objects_removed > 0);
    auto has = (*reader)->has(top);
    REQUIRE(has);
    CHECK(!*has);
}

TEST_CASE("a pin file nobody holds is a dead pin: not listed, deleted by gc", "[repo]") {
    RepoFixture f;
    write_file(f.at("a"), "a");
    ObjectId c = f.commit("one");
    REQUIRE(make_dirs(f.pool / "pins"));
    std::string dead = f.pool / "pins/0123456789abcdef0123456789abcdef.pin";
    write_file(dead, fmt::format("dvol pin 1\nvolume=vol\ncommit={}\ntree={}\npid=1\nholder=mount /gone\n", c.hex(), c.hex()));
    auto pins = f.repo->pins();
    REQUIRE(pins);
    CHECK(pins->empty());
    REQUIRE(f.repo->gc());
    CHECK(!path_exists(dead));
}

TEST_CASE("an object reader reads on while gc moves records into a new pack", "[repo]") {
    // Both ways of checking a record: by its hash, and by its checksum (the mount's readers): a
    // record looked up before gc moved it fails its checksum in the reused or deleted pack, and
    // is looked up again.
    ReadCheck check = GENERATE(ReadCheck::hash, ReadCheck::checksum);
    RepoFixture f;
    auto x = random_bytes(400'000, 11), y = random_bytes(400'000, 12);
    write_file(f.at("x"), x);
    write_file(f.at("y"), y);
    write_file(f.at("d"), random_bytes(4'000'000, 13));
    f.commit("x, y and d in one pack");
    REQUIRE(f.repo->create_volume("other", false));
    write_file(f.repo->live_dir("other") + "/x", x);
    write_file(f.repo->live_dir("other") + "/y", y);
    REQUIRE(f.repo->commit("other", "x and y again", kNoWarn));
    auto pin = f.repo->pin_commit("other", "HEAD", "test");
    REQUIRE(pin);

    auto reader = f.repo->open_object_reader(check);
    REQUIRE(reader);
    CHECK(committed_file(**reader, pin->tree(), "x") == dvol::test::string_of(x));  // its pack is open now
    REQUIRE(f.repo->remove_volume(f.vol));
    auto gc = f.repo->gc();
    REQUIRE(gc);
    CHECK(gc->packs_rewritten >= 1);
    CHECK(committed_file(**reader, pin->tree(), "y") == dvol::test::string_of(y));
    CHECK(committed_file(**reader, pin->tree(), "x") == dvol::test::string_of(x));
}

namespace {

// The tree_facts row of `tree`: -1 when there is none, else has_xattrs.
int fact_row(const RepoFixture& f, const ObjectId& tree) {
    auto db = meta::Db::open(f.pool / "dvol.db");
    REQUIRE(db);
    auto q = (*db)->prepare("SELECT has_xattrs FROM tree_facts WHERE tree = ?");
    REQUIRE(q);
    q->bind_blob(1, tree.as_span());
    auto row = q->step();
    REQUIRE(row);
    return *row ? static_cast<int>(q->int64(0)) : -1;
}

ObjectId top_tree(RepoFixture& f, const ObjectId& commit) {
    auto c = f.repo->load_commit(commit);
    REQUIRE(c);
    return c->tree;
}

}  // namespace

TEST_CASE("tree_has_xattrs: found by walking the trees once, recorded, dropped by gc with its tree", "[repo]") {
    // The fact that lets a read-only mount of a commit without xattrs tell the kernel to stop
    // asking for them (fuse-mount/serve.h): it must see an xattr however deep it is.
    RepoFixture f;
    REQUIRE(make_dirs(f.at("a/b/c")));
    REQUIRE(make_dirs(f.at("z")));
    write_file(f.at("top"), "top");
    write_file(f.at("z/other"), "other");
    write_file(f.at("a/b/c/deep"), "deep");
    ObjectId plain = top_tree(f, f.commit("no xattr anywhere"));
    if (::setxattr(f.at("a/b/c/deep").c_str(), "user.dvol-test", "v", 1, 0) != 0) {
        WARN("SKIP: the file system does not support user xattrs");
        return;
    }
    ObjectId deep = top_tree(f, f.commit("one xattr, three directories down"));
    REQUIRE(deep != plain);

    CHECK(fact_row(f, plain) == -1);
    auto has = f.repo->tree_has_xattrs(plain);
    REQUIRE(has);
    CHECK(!*has);
    has = f.repo->tree_has_xattrs(deep);
    REQUIRE(has);
    CHECK(*has);
    CHECK(fact_row(f, plain) == 0);
    CHECK(fact_row(f, deep) == 1);

    // The live directory's own xattr counts too (the top tree's one entry).
    REQUIRE(::removexattr(f.at("a/b/c/deep").c_str(), "user.dvol-test") == 0);
    REQUIRE(::setxattr(f.live().c_str(), "user.dvol-test", "v", 1, 0) == 0);
    ObjectId root_only = top_tree(f, f.commit("an xattr on the live directory only"));
    has = f.repo->tree_has_xattrs(root_only);
    REQUIRE(has);
    CHECK(*has);

    // Asked again, the row answers: the trees are not walked a second time (a row changed by
    // hand shows it).
    {
        auto db = meta::Db::open(f.pool / "dvol.db");
        REQUIRE(db);
        auto up = (*db)->prepare("UPDATE tree_facts SET has_xattrs = 1 WHERE tree = ?");
        REQUIRE(up);
        REQUIRE(up->bind_blob(1, plain.as_span()).run());
    }
    has = f.repo->tree_has_xattrs(plain);
    REQUIRE(has);
    CHECK(*has);

    // gc drops the rows of the trees it deletes and keeps the others.
    REQUIRE(f.repo->reset_hard(f.vol, "HEAD~2"));
    REQUIRE(f.repo->gc());
    CHECK(fact_row(f, plain) == 1);
    CHECK(fact_row(f, deep) == -1);
    CHECK(fact_row(f, root_only) == -1);

    // An unreadable tree is an error, and nothing is recorded.
    std::array<std::byte, ObjectId::size> junk{};
    junk.fill(std::byte{0x5a});
    ObjectId missing = ObjectId::from_bytes(junk);
    CHECK(!f.repo->tree_has_xattrs(missing));
    CHECK(fact_row(f, missing) == -1);
}

TEST_CASE("walk order: paths compare component by component", "[repo]") {
    CHECK(walk_order_less("", "a"));
    CHECK(walk_order_less("a", "a/b"));
    CHECK(walk_order_less("a/b", "a-c"));  // the directory a is entered before the name a-c comes
    CHECK_FALSE(walk_order_less("a-c", "a/b"));
    CHECK(walk_order_less("a/b/c", "a/c"));
    CHECK(walk_order_less("a/z", "b"));
    CHECK_FALSE(walk_order_less("a/b", "a"));
    CHECK_FALSE(walk_order_less("a/b", "a/b"));
    CHECK_FALSE(walk_order_less("", ""));
}

TEST_CASE("WalkAhead lists and lstats directories in the scan's order; what it skipped is the caller's", "[repo]") {
    TempDir t;
    for (const char* d : {"a", "a/b", "a/b/c", "a-c", "e", "e/f"}) REQUIRE(::mkdir((t / d).c_str(), 0755) == 0);
    for (const char* f : {"z", "a/x", "a/b/c/y", "a-c/w", "e/f/v"}) write_file(t / f, std::string(f));
    REQUIRE(::symlink("a", (t / "s").c_str()) == 0);  // never entered: not a directory to lstat
    UniqueFd root(::open(t.path().c_str(), O_RDONLY | O_DIRECTORY));
    REQUIRE(root.get() >= 0);
    for (size_t bound : {size_t{5}, size_t{4096}}) {
        WalkAhead w(root.get(), t.path(), bound);
        auto top = w.take("");
        REQUIRE(top);
        CHECK(top->names == std::vector<std::string>{"a", "a-c", "e", "s", "z"});
        REQUIRE(top->stats.size() == 5);
        CHECK(top->errnos == std::vector<int>(5, 0));
        CHECK(S_ISDIR(top->stats[0].st_mode));
        CHECK(S_ISLNK(top->stats[3].st_mode));
        CHECK(top->stats[4].st_size == 1);
        auto a = w.take("a");
        REQUIRE(a);
        CHECK(a->names == std::vector<std::string>{"b", "x"});
        // a/b is skipped by the caller: asking for a/b/c drops it.
        auto c = w.take("a/b/c");
        REQUIRE(c);
        CHECK(c->names == std::vector<std::string>{"y"});
        // Asking for what the walk never made (s is a symlink) gives nothing and drops nothing.
        CHECK_FALSE(w.take("a-b"));
        auto ac = w.take("a-c");
        REQUIRE(ac);
        CHECK(ac->names == std::vector<std::string>{"w"});
        // Skipping e drops e and hands out e/f.
        auto f = w.take("e/f");
        REQUIRE(f);
        CHECK(f->names == std::vector<std::string>{"v"});
        CHECK_FALSE(w.take("s"));  // the walk is over
    }
    // Destroyed before everything was taken, with the walk blocked on its bound: it stops.
    {
        WalkAhead w(root.get(), t.path(), 5);
        REQUIRE(w.take(""));
    }
    // A directory larger than the bound is not handed out, but what lies below it is.
    {
        WalkAhead w(root.get(), t.path(), 2);
        CHECK_FALSE(w.take(""));  // five entries
        auto a = w.take("a");
        REQUIRE(a);
        CHECK(a->names == std::vector<std::string>{"b", "x"});
        CHECK(w.take("e/f"));
    }
    {
        WalkAhead w(root.get(), t.path(), 5);
        REQUIRE(w.take(""));
        REQUIRE(w.take("a"));
        for (int i = 0; i < 6; ++i) write_file(t / fmt::format("a-c/many{}", i), "x");  // a-c: 7 entries
        // The walk may have listed a-c before or after: either it is handed out whole, or not
        // at all; never a part of it.
        auto ac = w.take("a-c");
        if (ac) CHECK(ac->names.size() == ac->stats.size());
        if (ac) CHECK(ac->names.size() <= 5);
    }
}
