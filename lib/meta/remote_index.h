// What this store knows of its remotes' packs (tables remotes, remote_packs, remote_objects;
// docs/FORMAT.md): read from the pack indexes it wrote to a remote or read from it, so that a
// push sends only the objects a remote lacks and a fetch finds any record of a remote with one
// lookup. A cache: everything here can be rebuilt from the remote's index/ files. Writes run
// in the caller's transaction where several must land together. Not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"

namespace dvol::meta {

class Db;

// How the index names a remote: its URL, and the S3 endpoint after a space when there is one
// (one bucket behind two endpoints is two remotes to it).
inline std::string remote_key(const std::string& url, const std::string& endpoint) {
    return endpoint.empty() ? url : url + " " + endpoint;
}

class RemoteIndex {
public:
    explicit RemoteIndex(Db& db) : db_(db) {}

    // The id under which the remote at `url` is known, added when new.
    Result<int64_t> remote_id(const std::string& url);
    // Forgets the remote at `url` and everything known of it (its tracking branches too).
    Status drop_remote(const std::string& url);

    struct Record {
        ObjectId id;
        uint64_t offset = 0;
        uint32_t stored_len = 0;
        uint32_t raw_len = 0;
    };
    struct Location {
        std::string pack;  // the pack's name
        int kind = 0;      // remote::PackKind
        uint64_t pack_size = 0;
        uint64_t offset = 0;
        uint32_t stored_len = 0;
        uint32_t raw_len = 0;
    };

    // The names of the remote's packs known here.
    Result<std::vector<std::string>> packs(int64_t remote);
    // Records that pack `name` of the remote holds `records`. A pack already known is left.
    Status add_pack(int64_t remote, const std::string& name, int kind, uint64_t size, std::span<const Record> records);
    // Forgets a pack the remote no longer has.
    Status drop_pack(int64_t remote, const std::string& name);
    Result<std::optional<Location>> find(int64_t remote, const ObjectId& id);
    Result<bool> has(int64_t remote, const ObjectId& id);

private:
    Db& db_;
};

}  // namespace dvol::meta
