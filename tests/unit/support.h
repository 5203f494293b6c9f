// Helpers shared by the unit tests: temporary directories, deterministic random data, small
// file helpers and an object store on a fresh pool.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "meta/db.h"
#include "meta/schema.h"
#include "store/object_store.h"

namespace dvol::test {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
public:
    TempDir() {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/dvol-unit-XXXXXX";
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() { (void)remove_tree(path_); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }
    std::string operator/(std::string_view rel) const { return path_ + "/" + std::string(rel); }

private:
    std::string path_;
};

inline std::vector<std::byte> bytes_of(std::string_view s) {
    auto b = as_bytes(s);
    return {b.begin(), b.end()};
}

inline std::string string_of(std::span<const std::byte> b) { return std::string(as_chars(b)); }

// `n` pseudo-random bytes, the same for the same seed on every run.
inline std::vector<std::byte> random_bytes(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::byte> out(n);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = rng();
        for (int k = 0; k < 8; ++k) out[i + static_cast<size_t>(k)] = static_cast<std::byte>(v >> (8 * k));
    }
    for (; i < n; ++i) out[i] = static_cast<std::byte>(rng());
    return out;
}

inline void write_file(const std::string& path, std::span<const std::byte> data) {
    auto fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!fd) throw std::runtime_error(fd.error().message);
    auto st = write_all(fd->get(), data, path);
    if (!st) throw std::runtime_error(st.error().message);
}

inline void write_file(const std::string& path, std::string_view text) { write_file(path, as_bytes(text)); }

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

inline struct stat lstat_of(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) throw std::runtime_error("lstat failed: " + path);
    return st;
}

inline int64_t mtime_ns_of(const std::string& path) {
    auto st = lstat_of(path);
    return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

// Sets a path's mtime (and atime) to `ns` without following a symlink.
inline void set_mtime_ns(const std::string& path, int64_t ns) {
    timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts[0].tv_nsec = ts[1].tv_nsec = static_cast<long>(ns % 1'000'000'000);
    if (::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) throw std::runtime_error("utimensat failed: " + path);
}

// A store directory with an initialised database and an object store on it.
struct StoreFixture {
    TempDir dir;
    std::unique_ptr<meta::Db> db;
    std::unique_ptr<ObjectStore> store;

    StoreFixture() {
        auto d = meta::Db::open(StorePaths(dir.path()).db());
        if (!d) throw std::runtime_error(d.error().message);
        db = std::move(*d);
        auto st = meta::init_schema(*db);
        if (!st) throw std::runtime_error(st.error().message);
        store = open_store();
    }

    std::unique_ptr<ObjectStore> open_store() {
        auto s = ObjectStore::open(StorePaths(dir.path()), *db);
        if (!s) throw std::runtime_error(s.error().message);
        return std::move(*s);
    }
};

}  // namespace dvol::test
