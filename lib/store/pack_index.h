// The pack index: which packs are registered, and where each object's record lies (pack,
// offset, lengths, and a CRC-32C of the record's bytes). Kept in the store's SQLite database (tables packs and objects, see
// docs/FORMAT.md, "SQLite"); this is the only code that writes their SQL. Writes run inside the
// caller's meta::Db::Transaction. Not thread-safe (one connection).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"

namespace dvol::meta {
class Db;
}

namespace dvol {

class PackIndex {
public:
    explicit PackIndex(meta::Db& db) : db_(db) {}

    // Where a registered object's record lies.
    struct Location {
        int64_t pack_id = 0;
        uint64_t offset = 0;
        uint32_t stored_len = 0;
        uint32_t raw_len = 0;
        std::optional<uint32_t> crc;  // CRC-32C of the whole record; unknown in rows older than schema 5
    };
    // An object's record within a pack being registered.
    struct Record {
        ObjectId id;
        uint64_t offset = 0;
        uint32_t stored_len = 0;
        uint32_t raw_len = 0;
        std::optional<uint32_t> crc;
    };
    struct Pack {
        int64_t id = 0;
        std::string name;
        uint64_t size = 0;
    };

    Result<std::optional<Location>> find(const ObjectId& id);
    // The name of registered pack `pack_id`, or nullopt.
    Result<std::optional<std::string>> pack_name(int64_t pack_id);
    Result<bool> has_pack(const std::string& name);
    // Every registered pack, by id (the order they were registered in).
    Result<std::vector<Pack>> packs();
    // The records of one pack, by offset.
    Result<std::vector<Record>> records(int64_t pack_id);
    // Every registered object with its pack's name ("(unregistered)" for a row naming no pack),
    // in pack order, streamed: memory stays flat however many objects there are. `fn` may use
    // other statements of the same connection meanwhile.
    Status for_each_object(const std::function<Status(const ObjectId& id, const std::string& pack)>& fn);

    // Registers pack `name` of `size` bytes holding `records`, and drops the packs `replaces`
    // (their rows and their objects' rows). Objects already registered elsewhere keep their row,
    // except rows that name one of `replaces`, which move to the new pack. Returns its id.
    Result<int64_t> add_pack(const std::string& name, uint64_t size, std::span<const Record> records,
                             std::span<const Pack> replaces = {});
    // Drops pack `pack_id` and the rows of its objects.
    Status drop_pack(int64_t pack_id);
    // Drops the rows of these objects (their bytes stay in their packs until those are rewritten).
    Status drop_objects(std::span<const ObjectId> ids);

private:
    meta::Db& db_;
};

}  // namespace dvol
