// The object store: content-addressed objects (file chunks, trees, extent lists) kept in
// append-only pack files (store/pack_format.h) under the store directory, with the pack index
// (store/pack_index.h) saying where each record lies. It is the local ObjectSource, with fast
// paths of its own for commit (put_encoded, locate and holds) and restore (read_stored and
// decode_stored on other threads).
//
// Durability: new objects go to a staging pack under tmp/ that its writer holds locked; flush()
// publishes it (publish_pack), so the index only ever names fsynced data, and cleanup() deletes
// what a crash leaves (docs/FORMAT.md, "Durability order").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "store/codec.h"
#include "store/hash.h"
#include "store/object_source.h"
#include "store/pack_format.h"
#include "store/pack_index.h"
#include "store/paths.h"

namespace dvol::meta {
class Db;
}

namespace dvol {

class ObjectStore : public ObjectSource {
public:
    // The objects of the store in `paths.dir()`, indexed in `db` (borrowed: it must outlive
    // the store). Not thread-safe.
    static Result<std::unique_ptr<ObjectStore>> open(const StorePaths& paths, meta::Db& db);
    ~ObjectStore() override;

    // True when the object is stored (registered, or written to this store's staging pack).
    Result<bool> has(const ObjectId& id) override;
    // Its plain length from the index (the record's header is checked against it on every read).
    Result<std::optional<uint64_t>> size_of(const ObjectId& id) override;

    // Stores `data` under its SHA-256 unless already present; returns the id. The object is
    // durable only after flush().
    Result<ObjectId> put(std::span<const std::byte> data);
    // Same, with the id already computed by the caller (it must be sha256(data)).
    Status put(const ObjectId& id, std::span<const std::byte> data);
    // Appends an object the caller has already compressed (compression can then run on other
    // threads): `stored` is the output of Compressor::compress for `raw_len` plain bytes whose
    // SHA-256 is `id`. The caller has found has(id) false; an object already staged is skipped.
    Status put_encoded(const ObjectId& id, Codec codec, std::span<const std::byte> stored, uint32_t raw_len);

    // Reads an object, verifying its hash (ObjectSource). A missing object is `not_found`; a
    // damaged one is `corrupt` with a message naming the object and its pack.
    Status get(const ObjectId& id, std::vector<std::byte>& out) override;
    using ObjectSource::get;
    // Like get(), but without re-hashing the content (it is still decompressed and its length
    // checked). Only for an object this process has verified since it took the store lock:
    // packs do not change while it is held, so the same record decodes to the same bytes.
    Status get_verified(const ObjectId& id, std::vector<std::byte>& out);
    // Like get(), and the record's bytes checked against the index's CRC-32C as well, when it
    // has one (fsck: a mismatch would make push refuse the object).
    Status get_checked(const ObjectId& id, std::vector<std::byte>& out);
    // Like get(), but the bytes read are proven by the CRC-32C the index keeps of the record
    // rather than by hashing the content: the checksum was computed when the record was written,
    // from content hashed and compressed moments before, so a match shows these are the bytes
    // this store wrote under `id` (docs/DECISIONS.md, "FUSE mount"). A row without one (a store
    // older than schema 5) is hashed as get() does. A record stored raw is read straight into
    // `out`, with no copy. Errors as get().
    Status get_by_checksum(const ObjectId& id, std::vector<std::byte>& out);

    // An object's record as read from its pack, not yet decoded, so that decoding and
    // verifying can run on another thread.
    struct StoredObject {
        ObjectId id;
        std::string pack;
        uint32_t raw_len = 0;
        std::optional<uint32_t> crc;    // the index's CRC-32C of the record (read_stored), if it has one
        std::vector<std::byte> record;  // header and payload
    };
    // Reads the record of `id`, checking its header against the index (errors as get()).
    Status read_stored(const ObjectId& id, StoredObject& out);
    // Decompresses and (with `check_hash`) verifies what read_stored read. Touches only its
    // arguments, so it may run on any thread.
    static Status decode_stored(const StoredObject& in, std::vector<std::byte>& out, bool check_hash = true);
    // Checks that what read_stored read is the record the store wrote, before it is copied
    // elsewhere as is (push): its bytes against the CRC-32C the index keeps of them, computed
    // when the record was written from content hashed then (git checks a reused packed
    // object's CRC-32 the same way); a row without one (a store older than schema 5) by
    // decoding and hashing, in `scratch`. Any thread.
    static Status check_stored(const StoredObject& in, std::vector<std::byte>& scratch);
    // What reset and checkout check of a chunk before they change anything (docs/DECISIONS.md,
    // "Verify before restore"): check_stored, and a compressed record also decompressed (into
    // `scratch`) to the length the index gives, without hashing it: the bytes are those this
    // store wrote under the id, and they decode. A row without a checksum (a store older than
    // schema 5) is decoded and hashed. Any thread.
    static Status check_stored_decodes(const StoredObject& in, std::vector<std::byte>& scratch);
    // Frees the buffers of `slots` beyond the first `bytes` of capacity: slots reused batch after
    // batch keep no more than a batch's worth (left alone, each would grow to the largest
    // record it ever held).
    static void trim_slots(std::span<StoredObject> slots, size_t bytes);
    // Like decode_stored, but a record stored raw (incompressible data) is not copied: `plain`
    // is set to its payload inside in.record; otherwise the record is decompressed into
    // `scratch` and `plain` names that. Any thread.
    static Status decode_stored_view(const StoredObject& in, std::vector<std::byte>& scratch, std::span<const std::byte>& plain,
                                     bool check_hash = true);

    // Where an object's record lies, for reading it on another thread (holds()).
    struct RecordRef {
        int fd = -1;  // borrowed from the store: valid while it lives
        uint64_t offset = 0;
        uint32_t stored_len = 0;
        uint32_t raw_len = 0;
    };
    // The record of `id`, or nullopt when the store does not hold it (errors as get()).
    Result<std::optional<RecordRef>> locate(const ObjectId& id);
    // Where the record of `id` lies, for read_located on another thread: read_stored in two
    // halves, so that the reads themselves (and the buffers they fill) can be spread over
    // threads. A missing object is `not_found`, as for get().
    struct StoredRef {
        ObjectId id;
        RecordRef where;
        const std::string* pack = nullptr;  // the pack's name, owned by the store (see close_packs)
        std::optional<uint32_t> crc;        // the index's CRC-32C of the record, if it has one
    };
    Status locate_stored(const ObjectId& id, StoredRef& out);
    // Reads the record `ref` names into `out`, checking its header as read_stored does.
    // Touches only its arguments: any thread.
    static Status read_located(const StoredRef& ref, StoredObject& out);
    // Copies the payload of the record `ref` names, when it is stored raw (incompressible
    // data), into `out_fd` at `offset` inside the kernel (copy_file_range: the bytes do not pass
    // through a buffer of ours). Only for a record this process has checked since it took the
    // store lock: the header is checked again, the payload is not. False when the record is
    // compressed or the kernel cannot copy between the two files; then part of the range may
    // have been written, and the caller writes it all itself. Any thread.
    static Result<bool> copy_raw_payload(const StoredRef& ref, int out_fd, uint64_t offset, std::string_view path);
    // Per-thread buffers for holds().
    struct CompareBuffers {
        std::vector<std::byte> record;
        std::vector<std::byte> plain;
    };
    // Whether the record at `ref` is object `id` and decodes to exactly `data`, judged from
    // the page cache alone: false, without waiting for the disk, when any of the record is
    // not cached; false when it is damaged or differs. A true answer means `data`'s id is
    // `id` without hashing it: the bytes equal what the store holds under that id (and a
    // damaged record that decoded to them anyway is still caught when it is read back, since
    // every read re-hashes). Touches only its arguments: any thread.
    static bool holds(const RecordRef& ref, const ObjectId& id, std::span<const std::byte> data, CompareBuffers& buffers);

    // Makes every object put so far durable and visible to other processes.
    Status flush();

    // For a reader that does not hold the store lock (repo/object_reader.h), which gc may
    // change the packs under: forget every open pack, so that the next read looks the record
    // up and opens its pack afresh (after a gc moved it, or reused a deleted pack's id).
    void close_packs() { packs_.clear(); }
    // Closes the packs whose file has been deleted (by a gc), giving their space back.
    void close_deleted_packs();

    // Deletes pack files that no registered pack names (leftovers of crashed writers) and
    // stale staging files whose writer is gone.
    Status cleanup();

    struct CollectStats {
        uint64_t objects_removed = 0;
        uint64_t packs_deleted = 0;
        uint64_t packs_rewritten = 0;
        uint64_t bytes_before = 0;  // pack bytes before
        uint64_t bytes_after = 0;   // pack bytes after
    };
    // Removes every object for which `is_live` is false. Packs with no live object are deleted;
    // packs whose live records take less than `repack_below` of their size are rewritten with
    // only their live records (each verified on the way); in the others only the index rows of
    // dead objects go (their bytes stay until the pack is rewritten). Every step is one SQLite
    // transaction naming only fsynced packs; files are unlinked after it commits, so a crash
    // leaves unregistered files that cleanup() removes. The caller must hold the store
    // exclusively: no other process may read or write objects meanwhile.
    Result<CollectStats> collect(const std::function<Result<bool>(const ObjectId&)>& is_live, double repack_below = 0.5);

    // Every registered object, in pack order: (id, pack name). For fsck.
    Status for_each_object(const std::function<Status(const ObjectId& id, const std::string& pack)>& fn) {
        return index_.for_each_object(fn);
    }

    struct Stats {
        uint64_t objects_written = 0;
        uint64_t bytes_written = 0;  // stored (compressed) bytes appended to packs
    };
    const Stats& stats() const { return stats_; }

private:
    ObjectStore(const StorePaths& paths, meta::Db& db) : paths_(paths), db_(db), index_(db) {}
    using Location = PackIndex::Location;  // pack_id 0: this store's staging pack
    Result<bool> lookup(const ObjectId& id, Location& loc);
    Result<int> pack_fd(int64_t pack_id, std::string& name);

    // A pack being written under tmp/, with its header, locked (flock) by this process until
    // it is published.
    struct PackFile {
        UniqueFd fd;
        std::string name;
        uint64_t size = 0;
    };
    Result<PackFile> create_pack();
    // The publish protocol, for new objects (flush) and rewritten packs (collect) alike: fsyncs
    // `pack`, moves it into objects/packs/ and, in one SQLite transaction, registers it with
    // `records` and drops the packs it `replaces` (PackIndex::add_pack). Nothing names the pack
    // before it is durable in place; should the transaction fail, the file goes back to tmp/.
    // Then the replaced packs' files are deleted. Returns the new pack's id.
    Result<int64_t> publish_pack(PackFile& pack, std::span<const PackIndex::Record> records,
                                 std::span<const PackIndex::Pack> replaces = {});
    // Closes a registered pack's fd (before its file is deleted).
    void forget_pack(int64_t pack_id) { packs_.erase(pack_id); }

    StorePaths paths_;
    meta::Db& db_;
    PackIndex index_;
    Compressor compressor_;
    std::vector<std::byte> scratch_;
    std::vector<std::byte> record_;
    StoredObject stored_;  // get()'s read buffer

    PackFile staging_;
    uint64_t staging_written_back_ = 0;  // writeback started up to here (see put_encoded)
    std::unordered_map<ObjectId, Location, ObjectIdHash> staged_;

    std::unordered_map<int64_t, std::pair<UniqueFd, std::string>> packs_;
    Stats stats_;
};

}  // namespace dvol
