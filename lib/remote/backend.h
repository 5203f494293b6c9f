// A remote's storage, seen as a flat namespace of keys holding bytes: what push, pull, clone
// and lazy fetch need from a directory, an S3 bucket or an SSH server, and nothing more.
// Everything dvol-specific (the remote layout: packs, their indexes, refs) lives above this
// interface (docs/FORMAT.md, "Remotes"); a backend only moves bytes.
//
// Keys are relative '/'-separated paths whose segments are made of [A-Za-z0-9._-], never
// empty, never "." or "..". Backends refuse any other key (Errc::invalid_argument).
//
// Two kinds of keys live side by side:
// - objects: immutable once written (packs, pack indexes). write() makes one appear whole or
//   not at all; writing an existing key again is allowed only with the same bytes.
// - refs: small mutable values (a branch's tip) changed only by compare-and-swap, so two
//   writers racing on one ref have exactly one winner.
//
// Errors: Errc::not_found for a missing key; Errc::conflict when a ref's compare-and-swap
// lost; Errc::unavailable for a transient failure (timeout, connection refused or reset, 5xx)
// that a retry may cure; Errc::denied when the remote refuses the credentials; Errc::no_space
// when the remote is full; Errc::io for other failures. Messages name the remote by
// location() and the key, and never contain a credential.
//
// A Backend is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"

namespace dvol::remote {

// One key of a listing and the size of what it holds.
struct Entry {
    std::string key;
    uint64_t size = 0;
};

// A ref's value, and the token that names this version of it for compare-and-swap (an S3
// ETag without its quotes, a generation number...). Opaque to callers.
struct RefValue {
    std::string data;
    std::string version;
};

class Backend {
public:
    virtual ~Backend() = default;

    // The remote as the user named it, without credentials: for messages.
    virtual const std::string& location() const = 0;

    // Every object and ref whose key starts with `prefix` (a plain string prefix, "" for all),
    // sorted by key.
    virtual Result<std::vector<Entry>> list(const std::string& prefix) = 0;

    // Bytes [offset, offset + length) of object `key` into `out` (resized to what was read:
    // fewer than `length` only where the object ends). Errc::not_found when there is no such
    // object. One request for the whole range, so that one record of a pack can be read alone.
    virtual Status read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) = 0;
    // The whole object.
    virtual Status read_all(const std::string& key, std::vector<std::byte>& out) = 0;

    // Stores an immutable object atomically: once this returns, readers see exactly `data`
    // under `key` (durably, as far as the remote can promise); before, they see nothing there,
    // never a part. Writing a key that already holds the same bytes succeeds.
    virtual Status write(const std::string& key, std::span<const std::byte> data) = 0;
    // The same, streaming `size` bytes read from `fd` from offset 0 (large packs: the bytes are
    // not held in memory). `fd` is borrowed.
    virtual Status write_file(const std::string& key, int fd, uint64_t size) = 0;
    // The same, when the caller knows the SHA-256 of those bytes (a pack, named by it): a
    // backend that sends it with the bytes (S3's signed payload hash, which the server checks)
    // takes it instead of reading the file once more to compute it. By default, write_file.
    virtual Status write_file_hashed(const std::string& key, int fd, uint64_t size, const ObjectId& sha256) {
        (void)sha256;
        return write_file(key, fd, size);
    }

    // The ref's current value, or nullopt when it does not exist.
    virtual Result<std::optional<RefValue>> read_ref(const std::string& key) = 0;
    // Creates ref `key` holding `data` unless it exists (Errc::conflict then). Returns the new
    // version.
    virtual Result<std::string> create_ref(const std::string& key, std::string_view data) = 0;
    // Replaces ref `key` by `data` if its version is still `expected` (Errc::conflict when it
    // changed or no longer exists). Returns the new version.
    virtual Result<std::string> update_ref(const std::string& key, std::string_view data, const std::string& expected) = 0;

    // Deletes an object or ref; a missing key is not an error. Not for refs that another
    // writer may be changing: callers retire a ref by update_ref() to a tombstone instead.
    virtual Status remove(const std::string& key) = 0;
};

// True when `key` is a valid key (see above).
bool valid_key(std::string_view key);

}  // namespace dvol::remote
