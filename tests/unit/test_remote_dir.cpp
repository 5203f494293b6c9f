// DirBackend (lib/remote/dir_backend.cpp) beyond the conformance suite: opening, what the
// directory holds, ref locks left by others, refused access, a full file system; and
// open_backend()'s choice of backend.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "remote/dir_backend.h"
#include "remote/open.h"
#include "remote/retry.h"
#include "remote/ssh_backend.h"
#include "remote_support.h"
#include "support.h"

using namespace dvol;
using namespace std::chrono_literals;
using dvol::remote::DirBackend;
using dvol::remote::DirOptions;
using dvol::test::random_bytes;
using dvol::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<DirBackend> open_dir(const std::string& path, const DirOptions& options = {}) {
    auto b = DirBackend::open(path, options);
    INFO("open " << path << ": " << (b ? std::string("ok") : b.error().message));
    REQUIRE(b.ok());
    return std::move(*b);
}

// Every file under `dir`, relative, sorted: what the remote really holds.
std::vector<std::string> files_under(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        if (!e.is_directory()) out.push_back(fs::relative(e.path(), dir).string());
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> temp_files(const std::string& root) {
    if (!fs::exists(root + "/tmp~")) return {};
    return files_under(root + "/tmp~");
}

// This process's machine as lock files name it, or "" when /proc cannot tell.
std::string machine() {
    auto boot = read_small_file("/proc/sys/kernel/random/boot_id", 128);
    char ns[128] = {};
    ssize_t n = ::readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
    if (!boot || n <= 0) return "";
    std::string b = *boot;
    while (!b.empty() && b.back() == '\n') b.pop_back();
    return b + ":" + std::string(ns, static_cast<size_t>(n));
}

// Plants a lock file as another writer would have left it, `age` old.
void plant_lock(const std::string& path, const std::string& machine_id, long pid, std::chrono::seconds age = 0s) {
    test::write_file(path, fmt::format("dvol ref lock\nhost=elsewhere\nmachine={}\npid={}\ntime={}\ntoken=planted-{}\n",
                                       machine_id, pid, ::time(nullptr), pid));
    if (age > 0s) {
        timespec now{};
        ::clock_gettime(CLOCK_REALTIME, &now);
        test::set_mtime_ns(path, (static_cast<int64_t>(now.tv_sec) - age.count()) * 1'000'000'000);
    }
}

// A child process that lives until it is killed: a live holder for a lock.
struct LiveChild {
    pid_t pid = -1;
    LiveChild() {
        pid = ::fork();
        if (pid == 0) {
            for (;;) ::pause();
        }
        REQUIRE(pid > 0);
    }
    void stop() {
        if (pid <= 0) return;
        ::kill(pid, SIGKILL);
        int status;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        pid = -1;
    }
    ~LiveChild() { stop(); }
};

// A pid no process has: a child that has exited and been reaped.
pid_t dead_pid() {
    pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    REQUIRE(pid > 0);
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return pid;
}

}  // namespace

TEST_CASE("a directory remote opens from a path or a file:// URL, and names what is wrong", "[remote_dir]") {
    TempDir dir;
    fs::create_directory(dir / "with space");
    CHECK(open_dir(dir.path())->root() == dir.path());
    CHECK(open_dir(dir.path() + "/")->root() == dir.path());
    CHECK(open_dir("file://" + dir.path())->root() == dir.path());
    CHECK(open_dir("file://localhost" + dir.path())->root() == dir.path());
    CHECK(open_dir("file://" + dir.path() + "/with%20space")->root() == dir / "with space");
    CHECK(open_dir("file://" + dir.path())->location() == "file://" + dir.path());
    {
        // A relative path is taken from the directory the remote was opened in.
        auto cwd = fs::current_path();
        fs::current_path(dir.path());
        auto relative = DirBackend::open("with space/");
        fs::current_path(cwd);
        REQUIRE(relative.ok());
        CHECK((*relative)->root() == dir / "with space");
        CHECK((*relative)->location() == "with space/");
        REQUIRE((*relative)->write("k", as_bytes("v")).ok());
        CHECK(test::read_file(dir / "with space/k") == "v");
    }

    auto missing = DirBackend::open(dir / "nope");
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == Errc::not_found);
    CHECK(missing.error().message == "remote " + (dir / "nope") + " does not exist");
    CHECK(DirBackend::open("file://" + (dir / "nope")).error().code == Errc::not_found);
    test::write_file(dir / "file", std::string_view("x"));
    auto file = DirBackend::open(dir / "file");
    CHECK(file.error().code == Errc::invalid_argument);
    CHECK(file.error().message.find("not a directory") != std::string::npos);
    CHECK(DirBackend::open("file://server" + dir.path()).error().code == Errc::invalid_argument);
    CHECK(DirBackend::open("file:" + dir.path()).error().code == Errc::invalid_argument);
    CHECK(DirBackend::open("file://" + dir.path() + "/with%2").error().code == Errc::invalid_argument);
    CHECK(DirBackend::open("").error().code == Errc::invalid_argument);
    // Opening creates nothing.
    fs::remove(dir / "with space/k");
    CHECK(files_under(dir.path()) == std::vector<std::string>{"file"});
}

TEST_CASE("open_backend picks the backend from the URL", "[remote_dir]") {
    TempDir dir;
    auto b = remote::open_backend(dir.path());
    REQUIRE(b.ok());
    CHECK((*b)->location() == dir.path());
    CHECK(dynamic_cast<remote::RetryingBackend*>(b->get()) != nullptr);
    REQUIRE((*b)->write("k", as_bytes("v")).ok());
    auto u = remote::open_backend("file://" + dir.path());
    REQUIRE(u.ok());
    std::vector<std::byte> out;
    REQUIRE((*u)->read_all("k", out).ok());
    CHECK(test::string_of(out) == "v");

    // An S3 remote is opened without a request: only its settings are read.
    ::setenv("AWS_ACCESS_KEY_ID", "AKIATESTTESTTEST", 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret", 1);
    remote::BackendOptions s3_options;
    s3_options.endpoint = "http://127.0.0.1:9";
    auto s3 = remote::open_backend("s3://bucket/prefix", s3_options);
    ::unsetenv("AWS_ACCESS_KEY_ID");
    ::unsetenv("AWS_SECRET_ACCESS_KEY");
    REQUIRE(s3.ok());
    CHECK((*s3)->location() == "s3://bucket/prefix");
    CHECK(dynamic_cast<remote::RetryingBackend*>(s3->get()) != nullptr);
    auto ssh = remote::open_backend("ssh://host/srv/remote");  // connects at its first call
    REQUIRE(ssh.ok());
    auto* retrying = dynamic_cast<remote::RetryingBackend*>(ssh->get());
    REQUIRE(retrying);
    CHECK(dynamic_cast<remote::SshBackend*>(&retrying->inner()) != nullptr);
    CHECK((*ssh)->location() == "ssh://host/srv/remote");
    CHECK(remote::open_backend("ssh://host").error().code == Errc::invalid_argument);
    auto other = remote::open_backend("ftp://user:secret@host/x");
    CHECK(other.error().code == Errc::invalid_argument);
    CHECK(other.error().message.find("secret") == std::string::npos);
    CHECK(remote::open_backend(dir / "nope").error().code == Errc::not_found);
}

TEST_CASE("keys are plain files; temp files, locks and foreign names are never listed", "[remote_dir]") {
    TempDir dir;
    auto b = open_dir(dir.path());
    REQUIRE(b->write("packs/ab/p1.pack", as_bytes("pack")).ok());
    REQUIRE(b->create_ref("refs/main", "tip").ok());
    CHECK(test::read_file(dir / "packs/ab/p1.pack") == "pack");
    CHECK(test::read_file(dir / "refs/main") == "tip");
    CHECK(temp_files(dir.path()).empty());

    test::write_file(dir / "tmp~/123-0-abc", std::string_view("half"));
    test::write_file(dir / "refs/main~lock", std::string_view("dvol ref lock\n"));
    test::write_file(dir / "refs/.nfs000000000012345600000001", std::string_view("silly"));
    test::write_file(dir / "has space", std::string_view("x"));
    fs::create_symlink("refs/main", dir / "link");
    ::mkfifo((dir / "fifo").c_str(), 0600);
    auto all = b->list("");
    REQUIRE(all.ok());
    REQUIRE(all->size() == 2);
    CHECK(all->at(0).key == "packs/ab/p1.pack");
    CHECK(all->at(0).size == 4);
    CHECK(all->at(1).key == "refs/main");
    CHECK(all->at(1).size == 3);
}

TEST_CASE("an object is never replaced: other bytes under an existing key are a conflict", "[remote_dir]") {
    TempDir dir;
    auto b = open_dir(dir.path());
    REQUIRE(b->write("obj", as_bytes("first")).ok());
    auto ino = test::lstat_of(dir / "obj").st_ino;
    REQUIRE(b->write("obj", as_bytes("first")).ok());
    CHECK(test::lstat_of(dir / "obj").st_ino == ino);
    auto other = b->write("obj", as_bytes("second, longer"));
    REQUIRE_FALSE(other.ok());
    CHECK(other.error().code == Errc::conflict);
    CHECK(other.error().message.find("obj") != std::string::npos);
    CHECK(test::read_file(dir / "obj") == "first");
    // A key whose place is a directory of other keys.
    REQUIRE(b->write("d/inner", as_bytes("x")).ok());
    CHECK(b->write("d", as_bytes("x")).error().code == Errc::conflict);
    CHECK(b->create_ref("d", "x").error().code == Errc::conflict);
    CHECK(temp_files(dir.path()).empty());
}

TEST_CASE("failed ref changes leave no temp file or lock behind", "[remote_dir]") {
    TempDir dir;
    auto b = open_dir(dir.path());
    auto v = b->create_ref("refs/main", "one");
    REQUIRE(v.ok());
    CHECK(b->create_ref("refs/main", "two").error().code == Errc::conflict);
    CHECK(b->update_ref("refs/main", "two", "stale").error().code == Errc::conflict);
    CHECK(b->update_ref("refs/other", "two", *v).error().code == Errc::conflict);
    CHECK(b->update_ref("nodir/other", "two", *v).error().code == Errc::conflict);
    REQUIRE(b->update_ref("refs/main", "two", *v).ok());
    CHECK(temp_files(dir.path()).empty());
    CHECK(files_under(dir.path()) == std::vector<std::string>{"refs/main"});
}

TEST_CASE("a lock left by a dead process is broken", "[remote_dir]") {
    std::string me = machine();
    if (me.empty()) {
        WARN("SKIP: /proc does not tell the boot id and pid namespace");
        return;
    }
    TempDir dir;
    auto b = open_dir(dir.path());
    auto v = b->create_ref("refs/main", "one");
    REQUIRE(v.ok());
    plant_lock(b->lock_path("refs/main"), me, dead_pid());
    auto u = b->update_ref("refs/main", "two", *v);
    INFO((u ? std::string("ok") : u.error().message));
    REQUIRE(u.ok());
    CHECK((*b->read_ref("refs/main"))->data == "two");
    CHECK_FALSE(fs::exists(b->lock_path("refs/main")));
    CHECK(temp_files(dir.path()).empty());
}

TEST_CASE("a lock older than stale_lock_age is broken, whoever holds it", "[remote_dir]") {
    TempDir dir;
    auto b = open_dir(dir.path());
    auto v = b->create_ref("refs/main", "one");
    REQUIRE(v.ok());
    // Another machine's, where no pid can be checked.
    plant_lock(b->lock_path("refs/main"), "other-boot:pid:[1]", 1, 120s);
    auto u = b->update_ref("refs/main", "two", *v);
    INFO((u ? std::string("ok") : u.error().message));
    REQUIRE(u.ok());
    // One that is not even a dvol lock.
    test::write_file(b->lock_path("refs/main"), std::string_view(""));
    test::set_mtime_ns(b->lock_path("refs/main"), (static_cast<int64_t>(::time(nullptr)) - 300) * 1'000'000'000);
    REQUIRE(b->update_ref("refs/main", "three", *u).ok());
    CHECK((*b->read_ref("refs/main"))->data == "three");
    CHECK_FALSE(fs::exists(b->lock_path("refs/main")));
}

TEST_CASE("a live lock makes update_ref wait: busy at the deadline, done once it goes", "[remote_dir]") {
    std::string me = machine();
    TempDir dir;
    auto quick = open_dir(dir.path(), DirOptions{.lock_wait = 300ms, .stale_lock_age = 60s});
    auto v = quick->create_ref("refs/main", "one");
    REQUIRE(v.ok());
    const std::string lock = quick->lock_path("refs/main");

    // A live process of this machine, then a fresh lock of another machine.
    LiveChild holder;
    for (std::string machine_id : {me, std::string("other-boot:pid:[1]")}) {
        if (machine_id.empty()) continue;
        INFO("lock of machine " << machine_id);
        plant_lock(lock, machine_id, holder.pid);
        auto busy = quick->update_ref("refs/main", "two", *v);
        REQUIRE_FALSE(busy.ok());
        CHECK(busy.error().code == Errc::busy);
        INFO(busy.error().message);
        CHECK(busy.error().message.find(lock) != std::string::npos);
        CHECK(busy.error().message.find(std::to_string(holder.pid)) != std::string::npos);
        CHECK((*quick->read_ref("refs/main"))->data == "one");
        CHECK(fs::exists(lock));  // not broken
    }

    // The holder lets go while we wait.
    auto patient = open_dir(dir.path(), DirOptions{.lock_wait = 120s, .stale_lock_age = 60s});
    std::thread release([&] {
        std::this_thread::sleep_for(200ms);
        ::unlink(lock.c_str());
    });
    auto u = patient->update_ref("refs/main", "two", *v);
    release.join();
    INFO((u ? std::string("ok") : u.error().message));
    REQUIRE(u.ok());
    CHECK((*patient->read_ref("refs/main"))->data == "two");

    // The holder dies with its lock in place: the next writer breaks it.
    if (!me.empty()) {
        plant_lock(lock, me, holder.pid);
        CHECK(quick->update_ref("refs/main", "three", *u).error().code == Errc::busy);
        holder.stop();
        auto w = quick->update_ref("refs/main", "three", *u);
        INFO((w ? std::string("ok") : w.error().message));
        REQUIRE(w.ok());
        CHECK((*quick->read_ref("refs/main"))->data == "three");
    }
    CHECK_FALSE(fs::exists(lock));
}

TEST_CASE("a stale lock met by racing writers is broken once: one winner per round", "[remote_dir]") {
    std::string me = machine();
    if (me.empty()) {
        WARN("SKIP: /proc does not tell the boot id and pid namespace");
        return;
    }
    TempDir dir;
    auto b = open_dir(dir.path());
    pid_t dead = dead_pid();
    for (int round = 0; round < 10; ++round) {
        INFO("round " << round);
        const std::string key = fmt::format("refs/stale-{}", round);
        auto v = b->create_ref(key, "base");
        REQUIRE(v.ok());
        plant_lock(b->lock_path(key), me, dead);
        auto out = test::race_threads([&] { return std::unique_ptr<remote::Backend>(open_dir(dir.path())); }, 4,
                                      [&](remote::Backend& mine, int i) {
            return test::outcome_of(mine.update_ref(key, fmt::format("by {}", i), *v));
        });
        auto won = std::count(out.begin(), out.end(), test::Outcome::won);
        auto lost = std::count(out.begin(), out.end(), test::Outcome::conflict);
        REQUIRE(won == 1);
        REQUIRE(lost == 3);
        auto winner = std::find(out.begin(), out.end(), test::Outcome::won) - out.begin();
        CHECK((*b->read_ref(key))->data == fmt::format("by {}", winner));
        CHECK_FALSE(fs::exists(b->lock_path(key)));
    }
    CHECK(temp_files(dir.path()).empty());
}

TEST_CASE("refused access is Errc::denied", "[remote_dir]") {
    TempDir dir;
    ::chmod(dir.path().c_str(), 0755);
    auto b = open_dir(dir.path());
    REQUIRE(b->write("private", as_bytes("secret")).ok());
    ::chmod((dir / "private").c_str(), 0600);
    REQUIRE(b->create_ref("refs/main", "tip").ok());
    if (::geteuid() != 0) {
        ::chmod(dir.path().c_str(), 0555);
        auto w = b->write("new", as_bytes("x"));
        ::chmod(dir.path().c_str(), 0755);
        REQUIRE_FALSE(w.ok());
        CHECK(w.error().code == Errc::denied);
        CHECK(w.error().message.find(dir.path()) != std::string::npos);
        return;
    }
    // Root passes permission checks: a child that becomes nobody tries instead, and reports
    // by its exit status which calls were denied (bit i for call i).
    pid_t pid = ::fork();
    if (pid == 0) {
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(255);
        auto nb = DirBackend::open(dir.path());
        if (!nb) ::_exit(254);
        auto is_denied = [](const auto& r) { return !r.ok() && r.error().code == Errc::denied; };
        std::vector<std::byte> out;
        int denied = 0;
        if (is_denied((*nb)->write("new", as_bytes("x")))) denied |= 1;
        if (is_denied((*nb)->read_all("private", out))) denied |= 2;
        if (is_denied((*nb)->create_ref("refs/other", "x"))) denied |= 4;
        auto v = (*nb)->read_ref("refs/main");
        if (v && *v && is_denied((*nb)->update_ref("refs/main", "x", (*v)->version))) denied |= 8;
        ::_exit(denied);
    }
    REQUIRE(pid > 0);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 15);
    CHECK((*b->read_ref("refs/main"))->data == "tip");
}

namespace {

// A tmpfs of `size`, mounted for the test's duration.
class SmallTmpfs {
public:
    explicit SmallTmpfs(const std::string& options) {
        if (::geteuid() != 0) {
            why_not_ = "not root, so no tmpfs can be mounted";
            return;
        }
        if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
            why_not_ = fmt::format("cannot mount a tmpfs ({}): {}", options, std::strerror(errno));
            return;
        }
        mounted_ = true;
    }
    ~SmallTmpfs() {
        if (mounted_ && ::umount2(dir_.path().c_str(), 0) != 0) ::umount2(dir_.path().c_str(), MNT_DETACH);
    }
    SmallTmpfs(const SmallTmpfs&) = delete;
    SmallTmpfs& operator=(const SmallTmpfs&) = delete;

    bool mounted() const { return mounted_; }
    const std::string& why_not() const { return why_not_; }
    const std::string& path() const { return dir_.path(); }

private:
    TempDir dir_;
    bool mounted_ = false;
    std::string why_not_;
};

void check_full(const Status& st, const std::string& key, const std::string& root) {
    REQUIRE_FALSE(st.ok());
    INFO(st.error().message);
    CHECK(st.error().code == Errc::no_space);
    CHECK(st.error().message.find(key) != std::string::npos);
    CHECK(st.error().message.find(root) != std::string::npos);
    CHECK_FALSE(fs::exists(root + "/" + key));
    CHECK(temp_files(root).empty());
}

}  // namespace

TEST_CASE("a full file system is Errc::no_space, and leaves nothing behind", "[remote_dir]") {
    SmallTmpfs full("size=1m");
    if (!full.mounted()) {
        WARN("SKIP: " << full.why_not());
        return;
    }
    auto b = open_dir(full.path());
    REQUIRE(b->write("packs/first.pack", random_bytes(600 << 10, 1)).ok());

    const auto big = random_bytes(2 << 20, 2);
    check_full(b->write("packs/big.pack", big), "packs/big.pack", full.path());

    TempDir local;
    test::write_file(local / "big", big);
    auto fd = open_file(local / "big", O_RDONLY);
    REQUIRE(fd);
    check_full(b->write_file("packs/big2.pack", fd->get(), big.size()), "packs/big2.pack", full.path());

    auto ref = b->create_ref("refs/huge", std::string(2 << 20, 'r'));
    REQUIRE_FALSE(ref.ok());
    CHECK(ref.error().code == Errc::no_space);
    CHECK_FALSE(b->read_ref("refs/huge")->has_value());
    CHECK(temp_files(full.path()).empty());

    // What was there is intact, and the space the failures took is back.
    std::vector<std::byte> out;
    REQUIRE(b->read_all("packs/first.pack", out).ok());
    CHECK(out == random_bytes(600 << 10, 1));
    REQUIRE(b->write("packs/small.pack", random_bytes(100 << 10, 3)).ok());
    auto all = b->list("");
    REQUIRE(all.ok());
    REQUIRE(all->size() == 2);
    CHECK(all->at(0).key == "packs/first.pack");
    CHECK(all->at(1).key == "packs/small.pack");
}
