#include "remote/dir_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "store/hash.h"

namespace dvol::remote {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kTempDir = "tmp~";
constexpr uint64_t kMaxRefSize = 16u << 20;
constexpr size_t kMaxLockSize = 4096;

// Who this process is, for lock files. `machine` is empty when /proc cannot tell; then no lock
// is ever judged by its pid, only by its age.
struct Self {
    std::string host;
    std::string machine;
};

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

const Self& self() {
    static const Self s = [] {
        Self me;
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        me.host = host[0] ? host : "localhost";
        // A pid means a process only within one kernel's boot and one pid namespace: two
        // containers on one host share the boot id, not the namespace, and may share the name.
        auto boot = read_small_file("/proc/sys/kernel/random/boot_id", 128);
        char ns[128] = {};
        ssize_t n = ::readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
        if (boot && n > 0) me.machine = trimmed(*boot) + ":" + std::string(ns, static_cast<size_t>(n));
        return me;
    }();
    return s;
}

// A name no other writer, in this process or any other on any host, will pick: random_device
// rather than a seeded generator, whose state a fork would copy.
std::string unique_name() {
    static std::atomic<uint64_t> counter{0};
    std::random_device rd;
    uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    return fmt::format("{}-{}-{:016x}", ::getpid(), counter.fetch_add(1), r);
}

std::string version_of(std::span<const std::byte> data) { return sha256(data).hex(); }

std::string short_version(const std::string& v) { return v.size() > 12 ? v.substr(0, 12) : v; }

std::string parent_of(const std::string& path) { return path.substr(0, path.find_last_of('/')); }

// The link count of the file at `path`, as the server has it: open() revalidates attributes
// on NFS (close-to-open), where a stat() could answer from its cache. 0 when it cannot tell.
nlink_t link_count(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    UniqueFd f(fd);
    struct stat st {};
    return ::fstat(f.get(), &st) == 0 ? st.st_nlink : 0;
}

int64_t ns_of(const timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec; }

void pause_for(std::chrono::microseconds d) {
    thread_local std::minstd_rand rng{std::random_device{}()};
    auto half = d.count() / 2;
    std::uniform_int_distribution<int64_t> jitter(0, half > 0 ? half : 0);
    std::this_thread::sleep_for(std::chrono::microseconds(half + jitter(rng)));
}

}  // namespace

// A file under <root>/tmp~, unlinked on destruction unless released (its name was renamed).
class DirBackend::TempFile {
public:
    TempFile(std::string path, std::string name, UniqueFd fd)
        : path_(std::move(path)), name_(std::move(name)), fd_(std::move(fd)) {}
    TempFile(TempFile&& o) noexcept
        : path_(std::exchange(o.path_, {})), name_(std::move(o.name_)), fd_(std::move(o.fd_)) {}
    TempFile& operator=(TempFile&&) = delete;
    ~TempFile() { remove(); }

    const std::string& path() const { return path_; }
    const std::string& name() const { return name_; }
    int fd() const { return fd_.get(); }
    void close() { fd_.reset(); }
    void release() { path_.clear(); }
    void remove() {
        fd_.reset();
        if (!path_.empty()) ::unlink(path_.c_str());
        path_.clear();
    }

private:
    std::string path_;
    std::string name_;
    UniqueFd fd_;
};

struct DirBackend::LockOwner {
    std::string host;
    std::string machine;
    std::string token;
    long pid = 0;
    int64_t mtime_ns = 0;  // the lock file's, by the remote's clock
};

// A ref's lock file, held; released (unlinked, if it is still ours) on destruction.
class DirBackend::RefLock {
public:
    // `file` is the lock file itself, open: its link count tells whether it still exists
    // somewhere (check_held).
    RefLock(DirBackend* owner, std::string path, std::string token, std::string key, UniqueFd file)
        : owner_(owner), path_(std::move(path)), token_(std::move(token)), key_(std::move(key)), file_(std::move(file)) {}
    RefLock(RefLock&& o) noexcept
        : owner_(o.owner_), path_(std::exchange(o.path_, {})), token_(std::move(o.token_)), key_(std::move(o.key_)),
          file_(std::move(o.file_)) {}
    RefLock& operator=(RefLock&&) = delete;
    ~RefLock() { release(); }

    // Whether the lock file is still ours: another writer may have judged it stale and taken
    // it (we were slower than DirOptions::stale_lock_age).
    // Whether the lock is still this writer's. A writer that takes a lock for stale moves it
    // aside to look at it (break_lock) and, when it is not the stale one it meant, links it
    // back: meanwhile the lock is not at its path but still exists (its link count is not 0).
    // So this waits until the lock is back (held) or gone for good (link count 0: taken as
    // stale, or another lock took its place), and never gives up a lock that is being put
    // back, which would leave it there with no one to release it.
    Status check_held() {
        if (wait_while_aside()) return {};
        return make_error(Errc::busy, fmt::format("the lock {} of ref {} on remote {} was taken from this writer as "
                                                  "stale before it was done; the ref was not changed",
                                                  path_, key_, owner_->location_));
    }

    // Unlinks the lock if it is still ours; when a breaker has it aside, waits for it to come
    // back to unlink it then (given up, it would come back with no one to release it).
    void release() {
        if (path_.empty()) return;
        while (wait_while_aside()) ::unlink(path_.c_str());
        path_.clear();
    }

private:
    // True once the lock at path_ is this writer's; false once its file is gone everywhere
    // (link count 0) or after DirOptions::lock_wait (a breaker killed with it aside).
    bool wait_while_aside() {
        const auto deadline = Clock::now() + owner_->options_.lock_wait;
        std::chrono::microseconds pause{200};
        for (;;) {
            auto current = owner_->read_lock(path_, key_);
            if (current && *current && (*current)->token == token_) return true;
            struct stat st {};
            if (!file_.valid() || ::fstat(file_.get(), &st) != 0 || st.st_nlink == 0 || Clock::now() >= deadline) return false;
            pause_for(pause);
            pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(20));
        }
    }

    DirBackend* owner_;
    std::string path_;
    std::string token_;
    std::string key_;
    UniqueFd file_;
};

Result<std::unique_ptr<DirBackend>> DirBackend::open(const std::string& location, const DirOptions& options) {
    std::string path = location;
    if (location.starts_with("file:")) {
        std::string_view rest(location);
        rest.remove_prefix(5);
        if (rest.starts_with("//localhost/")) rest.remove_prefix(11);
        else if (rest.starts_with("///")) rest.remove_prefix(2);
        else
            return make_error(Errc::invalid_argument,
                              fmt::format("remote URL {} does not name a local directory: write file:///absolute/path", location));
        path.clear();
        for (size_t i = 0; i < rest.size(); ++i) {
            if (rest[i] != '%') {
                path += rest[i];
                continue;
            }
            unsigned v = 0;
            auto hex = [](char c) -> int {
                if (c >= '0' && c <= '9') return c - '0';
                if (c >= 'a' && c <= 'f') return c - 'a' + 10;
                if (c >= 'A' && c <= 'F') return c - 'A' + 10;
                return -1;
            };
            if (i + 2 >= rest.size() || hex(rest[i + 1]) < 0 || hex(rest[i + 2]) < 0)
                return make_error(Errc::invalid_argument, fmt::format("remote URL {} has a bad percent escape", location));
            v = static_cast<unsigned>(hex(rest[i + 1]) * 16 + hex(rest[i + 2]));
            if (v == 0) return make_error(Errc::invalid_argument, fmt::format("remote URL {} has a bad percent escape", location));
            path += static_cast<char>(v);
            i += 2;
        }
    }
    if (path.empty()) return make_error(Errc::invalid_argument, "a remote needs a location");
    // Relative to the directory we start in, not to wherever the process is when it writes.
    if (path[0] != '/') {
        std::error_code ec;
        auto abs = std::filesystem::absolute(path, ec);
        if (ec) return make_error(Errc::io, fmt::format("cannot open remote {}: {}", location, ec.message()));
        path = abs.string();
    }
    while (path.size() > 1 && path.back() == '/') path.pop_back();

    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR)
            return make_error(Errc::not_found, fmt::format("remote {} does not exist", location));
        Error e = errno_error("open remote", location, err);
        if (err == EACCES || err == EPERM) e.code = Errc::denied;
        return e;
    }
    if (!S_ISDIR(st.st_mode)) return make_error(Errc::invalid_argument, fmt::format("remote {} is not a directory", location));
    return std::unique_ptr<DirBackend>(new DirBackend(location, path, options));
}

Status DirBackend::check_key(const std::string& key) const {
    if (valid_key(key)) return {};
    return make_error(Errc::invalid_argument,
                      fmt::format("invalid key '{}' for remote {}: a key is '/'-separated names of letters, digits, "
                                  "'.', '_' and '-', none empty, '.' or '..'",
                                  key, location_));
}

Error DirBackend::fail(std::string_view what, std::string_view key, int err) const {
    Error e = errno_error(what, fmt::format("{} on remote {}", key, location_), err);
    switch (err) {
    case EACCES:
    case EPERM:
    case EROFS: e.code = Errc::denied; break;
    case ESTALE:
    case ETIMEDOUT: e.code = Errc::unavailable; break;
    default: break;
    }
    return e;
}

Result<DirBackend::TempFile> DirBackend::new_temp() {
    std::string dir = root_ + "/" + kTempDir;
    if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST) return fail("create directory", kTempDir, errno);
    std::string name = unique_name();
    std::string path = dir + "/" + name;
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) return fail("create", std::string(kTempDir) + "/" + name, errno);
    TempFile temp(std::move(path), std::move(name), UniqueFd(fd));
    // Once per backend: what writers that died left here (a killed push's partial pack).
    if (!swept_temps_) {
        swept_temps_ = true;
        struct stat st {};
        int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd >= 0) {
            UniqueFd guard(dir_fd);
            if (::fstat(temp.fd(), &st) == 0) sweep_temps(dir_fd, ns_of(st.st_mtim), temp.name());
        }
    }
    return temp;
}

void DirBackend::sweep_temps(int dir_fd, int64_t now_ns, const std::string& own) {
    int fd = ::dup(dir_fd);
    if (fd < 0) return;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::fdopendir(fd), ::closedir);
    if (!d) {
        ::close(fd);
        return;
    }
    const int64_t limit_ns = now_ns - std::chrono::duration_cast<std::chrono::nanoseconds>(options_.stale_temp_age).count();
    while (dirent* e = ::readdir(d.get())) {
        std::string_view name(e->d_name);
        if (name == "." || name == ".." || name == own) continue;
        struct stat st {};
        if (::fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        if (ns_of(st.st_mtim) < limit_ns) (void)::unlinkat(dir_fd, e->d_name, 0);
    }
}

Result<DirBackend::TempFile> DirBackend::temp_holding(std::string_view key, std::span<const std::byte> data) {
    DVOL_TRY(TempFile temp, new_temp());
    std::string what = fmt::format("{} on remote {}", key, location_);
    DVOL_CHECK(write_all(temp.fd(), data, what));
    DVOL_CHECK(fsync_fd(temp.fd(), what));
    return temp;
}

Status DirBackend::make_parents(const std::string& key) {
    for (size_t slash = key.find('/'); slash != std::string::npos; slash = key.find('/', slash + 1)) {
        std::string dir = path_of(key.substr(0, slash));
        if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST) return fail("create directory", key.substr(0, slash), errno);
    }
    return {};
}

// Every directory from the key's up to the root, not only those this call created: another
// writer may have created one an instant before, and not yet made it durable.
Status DirBackend::sync_parents(const std::string& key) {
    std::string dir = parent_of(path_of(key));
    for (;;) {
        DVOL_CHECK(fsync_dir(dir));
        if (dir.size() <= root_.size()) return {};
        dir = parent_of(dir);
    }
}

Result<UniqueFd> DirBackend::open_regular(const std::string& key, uint64_t& size) {
    int fd = ::open(path_of(key).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR) return make_error(Errc::not_found, fmt::format("no key {} on remote {}", key, location_));
        return fail("open", key, err);
    }
    UniqueFd f(fd);
    struct stat st {};
    if (::fstat(f.get(), &st) != 0) return fail("stat", key, errno);
    if (!S_ISREG(st.st_mode)) return make_error(Errc::not_found, fmt::format("no key {} on remote {}", key, location_));
    size = static_cast<uint64_t>(st.st_size);
    return f;
}

Result<std::vector<Entry>> DirBackend::list(const std::string& prefix) {
    std::vector<Entry> out;
    // `rel` is "" or a directory's key with its trailing '/'.
    auto walk = [&](auto& self, const std::string& rel) -> Status {
        std::string dir = rel.empty() ? root_ : root_ + "/" + rel.substr(0, rel.size() - 1);
        std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
        if (!d) {
            int err = errno;
            if (err == ENOENT && !rel.empty()) return {};  // removed while we listed
            if (err == ENOENT) return make_error(Errc::not_found, fmt::format("remote {} does not exist", location_));
            return fail("list", rel.empty() ? "/" : rel, err);
        }
        for (;;) {
            errno = 0;
            dirent* e = ::readdir(d.get());
            if (!e) {
                if (errno != 0) return fail("list", rel.empty() ? "/" : rel, errno);
                return {};
            }
            std::string_view name(e->d_name);
            // Temp files, locks and NFS's silly renames are not keys.
            if (!valid_key(name) || name.starts_with(".nfs")) continue;
            std::string key = rel + std::string(name);
            struct stat st {};
            if (::fstatat(::dirfd(d.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno == ENOENT) continue;
                return fail("stat", key, errno);
            }
            if (S_ISDIR(st.st_mode)) {
                std::string sub = key + "/";
                if (sub.starts_with(prefix) || prefix.starts_with(sub)) DVOL_CHECK(self(self, sub));
            } else if (S_ISREG(st.st_mode) && key.starts_with(prefix)) {
                out.push_back(Entry{std::move(key), static_cast<uint64_t>(st.st_size)});
            }
        }
    };
    DVOL_CHECK(walk(walk, ""));
    std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.key < b.key; });
    return out;
}

Status DirBackend::read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) {
    DVOL_CHECK(check_key(key));
    uint64_t size = 0;
    DVOL_TRY(UniqueFd fd, open_regular(key, size));
    out.resize(offset >= size ? 0 : static_cast<size_t>(std::min(length, size - offset)));
    DVOL_TRY(size_t n, pread_some(fd.get(), out, offset, fmt::format("{} on remote {}", key, location_)));
    out.resize(n);
    return {};
}

Status DirBackend::read_all(const std::string& key, std::vector<std::byte>& out) {
    return read(key, 0, UINT64_MAX, out);
}

// An object that is already there is not written again: a push that resumes, or retries after
// a lost answer, does not send a pack twice.
Status DirBackend::write(const std::string& key, std::span<const std::byte> data) {
    DVOL_CHECK(check_key(key));
    DVOL_TRY(bool there, holds(key, data.size()));
    if (there) return sync_parents(key);
    DVOL_TRY(TempFile temp, temp_holding(key, data));
    return publish_object(temp, key, data.size());
}

Status DirBackend::write_file(const std::string& key, int fd, uint64_t size) {
    DVOL_CHECK(check_key(key));
    DVOL_TRY(bool there, holds(key, size));
    if (there) return sync_parents(key);
    DVOL_TRY(TempFile temp, new_temp());
    DVOL_CHECK(copy_into(temp.fd(), fd, size, key));
    DVOL_CHECK(fsync_fd(temp.fd(), fmt::format("{} on remote {}", key, location_)));
    return publish_object(temp, key, size);
}

// Only the size is compared: the contract allows writing a key again with the same bytes only,
// and reading a large pack back to check it would cost what the write saves.
Result<bool> DirBackend::holds(const std::string& key, uint64_t size) {
    struct stat st {};
    if (::stat(path_of(key).c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) return false;
        return fail("stat", key, errno);
    }
    if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == size) return true;
    if (!S_ISREG(st.st_mode))
        return make_error(Errc::conflict, fmt::format("key {} on remote {} is a directory of other keys", key, location_));
    return make_error(Errc::conflict, fmt::format("key {} on remote {} already holds other content ({} bytes, not {})", key,
                                                  location_, static_cast<uint64_t>(st.st_size), size));
}

// copy_file_range lets the kernel copy without passing the bytes through us (a reflink, or a
// server-side copy on NFS 4.2); it refuses across file systems of different types (EXDEV),
// where sendfile still copies in the kernel. Plain reads and writes are the last resort. Each
// reads the source at explicit offsets, so the caller's file position is left alone.
Status DirBackend::copy_into(int out, int in, uint64_t size, std::string_view key) {
    enum class How { copy_range, send_file, read_write } how = How::copy_range;
    std::vector<std::byte> buffer;
    std::string what = fmt::format("{} on remote {}", key, location_);
    uint64_t done = 0;
    while (done < size) {
        size_t chunk = static_cast<size_t>(std::min<uint64_t>(size - done, 1u << 30));
        ssize_t n = 0;
        if (how == How::copy_range) {
            loff_t off_in = static_cast<loff_t>(done), off_out = static_cast<loff_t>(done);
            n = ::copy_file_range(in, &off_in, out, &off_out, chunk, 0);
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EBADF)) {
                how = How::send_file;
                if (::lseek(out, static_cast<off_t>(done), SEEK_SET) < 0) return fail("write", key, errno);
                continue;
            }
        } else if (how == How::send_file) {
            off_t off = static_cast<off_t>(done);
            n = ::sendfile(out, in, &off, chunk);
            if (n < 0 && (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
                how = How::read_write;
                buffer.resize(1u << 20);
                continue;
            }
        } else {
            auto part = std::span(buffer).first(std::min(buffer.size(), chunk));
            DVOL_TRY(size_t got, pread_some(in, part, done, fmt::format("the source of {}", what)));
            if (got > 0) DVOL_CHECK(pwrite_all(out, part.first(got), done, what));
            n = static_cast<ssize_t>(got);
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail("write", key, errno);
        }
        if (n == 0)
            return make_error(Errc::io, fmt::format("cannot write {}: its source ends at byte {} of {}", what, done, size));
        done += static_cast<uint64_t>(n);
    }
    return {};
}

// link(2) publishes the complete, fsynced file under its key in one step, and fails with
// EEXIST rather than replace an existing one. On NFS a retransmitted LINK whose first reply
// was lost answers EEXIST although ours made the name: the temp file then has two links.
Status DirBackend::publish_object(TempFile& temp, const std::string& key, uint64_t size) {
    temp.close();
    std::string final_path = path_of(key);
    for (int attempt = 0;; ++attempt) {
        if (::link(temp.path().c_str(), final_path.c_str()) == 0) break;
        int err = errno;
        if (err == ENOENT && attempt == 0) {
            DVOL_CHECK(make_parents(key));
            continue;
        }
        if (err == EEXIST) {
            if (link_count(temp.path()) == 2) break;
            DVOL_TRY(bool there, holds(key, size));
            if (there) break;
            if (attempt < 3) continue;  // removed since our link()
            return fail("write", key, err);
        }
        if (err == EPERM || err == EOPNOTSUPP) {
            // A file system without hard links (some FUSE and SMB mounts): rename, which
            // replaces what is there.
            if (::rename(temp.path().c_str(), final_path.c_str()) != 0) return fail("write", key, errno);
            temp.release();
            break;
        }
        return fail("write", key, err);
    }
    DVOL_CHECK(sync_parents(key));
    temp.remove();
    return {};
}

Result<std::optional<RefValue>> DirBackend::read_ref(const std::string& key) {
    DVOL_CHECK(check_key(key));
    uint64_t size = 0;
    auto fd = open_regular(key, size);
    if (!fd) {
        if (fd.error().code == Errc::not_found) return std::optional<RefValue>();
        return std::move(fd).error();
    }
    if (size > kMaxRefSize)
        return make_error(Errc::corrupt, fmt::format("ref {} on remote {} is {} bytes, more than a ref may hold ({})", key,
                                                     location_, size, kMaxRefSize));
    std::string data(static_cast<size_t>(size), '\0');
    DVOL_TRY(size_t n, pread_some(fd->get(), std::as_writable_bytes(std::span(data)), 0,
                                  fmt::format("{} on remote {}", key, location_)));
    data.resize(n);
    std::string version = version_of(as_bytes(data));
    return std::optional<RefValue>(RefValue{std::move(data), std::move(version)});
}

Result<std::string> DirBackend::create_ref(const std::string& key, std::string_view data) {
    DVOL_CHECK(check_key(key));
    DVOL_TRY(TempFile temp, temp_holding(key, as_bytes(data)));
    temp.close();
    std::string final_path = path_of(key);
    for (int attempt = 0;; ++attempt) {
        if (::link(temp.path().c_str(), final_path.c_str()) == 0) break;
        int err = errno;
        if (err == ENOENT && attempt == 0) {
            DVOL_CHECK(make_parents(key));
            continue;
        }
        if (err == EEXIST) {
            if (link_count(temp.path()) == 2) break;
            return make_error(Errc::conflict, fmt::format("ref {} already exists on remote {}", key, location_));
        }
        if (err == EPERM || err == EOPNOTSUPP)
            return make_error(Errc::unsupported,
                              fmt::format("remote {} is on a file system without hard links, which its refs need", location_));
        return fail("create ref", key, err);
    }
    DVOL_CHECK(sync_parents(key));
    return version_of(as_bytes(data));
}

Result<std::string> DirBackend::update_ref(const std::string& key, std::string_view data, const std::string& expected) {
    DVOL_CHECK(check_key(key));
    // The new value is written and made durable before the lock is taken, to hold it briefly.
    DVOL_TRY(TempFile temp, temp_holding(key, as_bytes(data)));
    temp.close();
    // A lock lost before the rename was taken by a writer that judged it stale (wrongly, since
    // this one was still working): the whole update starts again, and meets that writer's
    // change as a conflict if it made one.
    std::optional<RefLock> held_lock;  // held until the rename is done
    for (int attempt = 0;; ++attempt) {
        held_lock.reset();
        auto lock = lock_ref(key);
        if (!lock) {
            if (lock.error().code == Errc::not_found)
                return make_error(Errc::conflict, fmt::format("ref {} does not exist on remote {}", key, location_));
            return std::move(lock).error();
        }
        DVOL_TRY(auto current, read_ref(key));
        if (!current) return make_error(Errc::conflict, fmt::format("ref {} does not exist on remote {}", key, location_));
        if (current->version != expected)
            return make_error(Errc::conflict, fmt::format("ref {} on remote {} changed: it is at version {}, not {}", key, location_,
                                                          short_version(current->version), short_version(expected)));
        if (auto held = lock->check_held(); !held) {
            if (attempt < 3) continue;
            return std::move(held).error();
        }
        held_lock.emplace(std::move(*lock));
        break;
    }
    std::string final_path = path_of(key);
    if (::rename(temp.path().c_str(), final_path.c_str()) != 0) return fail("update ref", key, errno);
    temp.release();
    DVOL_CHECK(fsync_dir(parent_of(final_path)));
    return version_of(as_bytes(data));
}

Status DirBackend::remove(const std::string& key) {
    DVOL_CHECK(check_key(key));
    std::string path = path_of(key);
    if (::unlink(path.c_str()) != 0) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR || err == EISDIR) return {};
        return fail("remove", key, err);
    }
    return fsync_dir(parent_of(path));
}

Result<std::optional<DirBackend::LockOwner>> DirBackend::read_lock(const std::string& path, std::string_view key) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return std::optional<LockOwner>();
        return fail("read the lock of", key, errno);
    }
    UniqueFd f(fd);
    struct stat st {};
    if (::fstat(f.get(), &st) != 0) return fail("read the lock of", key, errno);
    char buf[kMaxLockSize];
    DVOL_TRY(size_t n, read_some(f.get(), std::as_writable_bytes(std::span(buf)), path));
    LockOwner owner;
    owner.mtime_ns = ns_of(st.st_mtim);
    std::string_view text(buf, n);
    while (!text.empty()) {
        size_t end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
        size_t eq = line.find('=');
        if (eq == std::string_view::npos) continue;
        std::string_view name = line.substr(0, eq);
        std::string value(line.substr(eq + 1));
        if (name == "host") owner.host = value;
        else if (name == "machine") owner.machine = value;
        else if (name == "token") owner.token = value;
        else if (name == "pid") owner.pid = std::strtol(value.c_str(), nullptr, 10);
    }
    return std::optional<LockOwner>(std::move(owner));
}

// The lock is taken by link(2) of a complete file, never by open(O_CREAT | O_EXCL) and a
// write after: no one ever sees a lock file without its owner. link(2) is atomic on every
// NFS version, and its lost-reply case is told by the link count as for objects.
Result<DirBackend::RefLock> DirBackend::lock_ref(const std::string& key) {
    std::string lock = lock_path(key);
    DVOL_TRY(TempFile candidate, new_temp());
    std::string text = fmt::format("dvol ref lock\nhost={}\nmachine={}\npid={}\ntime={}\ntoken={}\n", self().host,
                                   self().machine, ::getpid(), ::time(nullptr), candidate.name());
    DVOL_CHECK(write_all(candidate.fd(), as_bytes(text), fmt::format("the lock of {} on remote {}", key, location_)));
    // The remote's clock now, from the file just written there: lock ages are measured on the
    // server's clock, whatever the skew between the hosts sharing it.
    struct stat st {};
    if (::fstat(candidate.fd(), &st) != 0) return fail("stat", candidate.path(), errno);
    UniqueFd file(::fcntl(candidate.fd(), F_DUPFD_CLOEXEC, 0));
    if (!file.valid()) return fail("lock", key, errno);
    candidate.close();
    const int64_t remote_start_ns = ns_of(st.st_mtim);
    const auto start = Clock::now();
    const auto deadline = start + options_.lock_wait;
    std::chrono::microseconds pause{500};

    for (;;) {
        if (::link(candidate.path().c_str(), lock.c_str()) == 0) break;
        int err = errno;
        if (err == EEXIST && link_count(candidate.path()) == 2) break;
        if (err == ENOENT) return make_error(Errc::not_found, fmt::format("ref {} does not exist on remote {}", key, location_));
        if (err == EPERM || err == EOPNOTSUPP)
            return make_error(Errc::unsupported,
                              fmt::format("remote {} is on a file system without hard links, which its refs need", location_));
        if (err != EEXIST) return fail("lock", key, err);

        DVOL_TRY(auto holder, read_lock(lock, key));
        auto now = Clock::now();
        int64_t age_s = 0;
        if (holder) {
            int64_t remote_now_ns = remote_start_ns + std::chrono::duration_cast<std::chrono::nanoseconds>(now - start).count();
            age_s = (remote_now_ns - holder->mtime_ns) / 1'000'000'000;
            bool gone = !holder->machine.empty() && holder->machine == self().machine && holder->pid > 0 &&
                        ::kill(static_cast<pid_t>(holder->pid), 0) != 0 && errno == ESRCH;
            if (gone || age_s >= options_.stale_lock_age.count()) {
                DVOL_CHECK(break_lock(lock, *holder, key));
                continue;
            }
        }
        if (now >= deadline) {
            std::string who = holder && holder->pid > 0
                                  ? fmt::format("pid {} on {}", holder->pid, holder->host.empty() ? "?" : holder->host)
                                  : std::string("another writer");
            return make_error(Errc::busy,
                              fmt::format("ref {} on remote {} is locked by {} for {} s (lock file {}); gave up after {} ms. "
                                          "If that process is gone, delete the lock file; it is broken anyway once {} s old",
                                          key, location_, who, std::max<int64_t>(age_s, 0), lock,
                                          std::chrono::duration_cast<std::chrono::milliseconds>(now - start).count(),
                                          options_.stale_lock_age.count()));
        }
        // Paused even when the lock seemed gone: an NFS client may answer the open() from a
        // cached lookup while link() still meets the file on the server.
        pause_for(pause);
        pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(50));
    }
    return RefLock(this, lock, candidate.name(), key, std::move(file));
}

// Breaking by rename(2) lets one breaker win: a second one's rename finds no file. But between
// a breaker's look at the stale lock and its rename, another breaker may have won and a live
// writer taken the lock afresh; the token of what was moved tells, and that lock goes back
// with link(2), which cannot replace a lock taken since.
Status DirBackend::break_lock(const std::string& lock, const LockOwner& stale, std::string_view key) {
    std::string aside = root_ + "/" + kTempDir + "/" + unique_name() + "-broken";
    if (::rename(lock.c_str(), aside.c_str()) != 0) {
        if (errno == ENOENT) return {};
        return fail("break the stale lock of", key, errno);
    }
    auto moved = read_lock(aside, key);
    if (moved && *moved && (*moved)->token != stale.token) (void)::link(aside.c_str(), lock.c_str());
    ::unlink(aside.c_str());
    return {};
}

}  // namespace dvol::remote
