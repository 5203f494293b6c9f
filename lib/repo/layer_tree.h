// A lazy volume's write layer as a tree: the live directory's state, built from the layer's base
// commit and what the layer holds (fuse-mount/layer_fs.h writes it; its layout is docs/FORMAT.md
// "The write layer"). What status and commit of a lazy volume read instead of scanning the live
// directory, which would fetch every chunk of every changed file from the remote.
//
// Cost: the layer's rows and the bytes it holds, never the base's data. A directory with no row
// and no row below it keeps its base tree's id; a file's base extents that were not copied keep
// their ids; only the bytes of copied extents and of what was written past the base are read
// (from the layer's data files), cut by the store's chunker and hashed. No chunk of the base is
// read: a truncate inside a base extent copies that extent first (layer_fs.h).
//
// The layer is read as it is on disk: the caller makes the mount flush first (an fsync of the live
// directory's root does) and keeps writers away (containers paused).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"
#include "store/object_source.h"

namespace dvol {

// The base commit the layer in `layer_dir` holds changes to; nullopt when there is no layer.
Result<std::optional<ObjectId>> layer_base(const std::string& layer_dir);

struct LayerTreeSinks {
    // Each new tree and extent list, with its plain bytes; may be empty (not kept).
    std::function<Status(const ObjectId&, std::span<const std::byte>)> meta;
    // Each chunk cut from the layer's bytes (holes excluded); may be empty (ids only).
    std::function<Status(const ObjectId&, std::span<const std::byte>)> chunk;
};

// A file's content as built from the layer, with what it depends on (its row, copied marks and
// data file's identity and times): a later build takes it as it is while that is unchanged.
struct LayerContentEntry {
    uint64_t ino = 0;
    std::string key;
    std::vector<std::byte> content;  // encode_content
};

struct LayerTree {
    ObjectId top;           // the top tree
    uint64_t chunks = 0;    // chunks cut from the layer's bytes
    uint64_t chunk_bytes = 0;
    uint64_t cache_hits = 0;  // files taken from the content cache, their bytes not read
    // Contents built from the layer's bytes that may go to the content cache: only once the
    // commit that stored their chunks is durable (save_layer_contents).
    std::vector<LayerContentEntry> fresh;
};

// A lazy volume's kept objects (its trees and extent lists: <cache>/meta/<hex>, docs/FORMAT.md
// "The cache"), read without opening the cache (its mount process owns it): each file verified
// against its name.
std::unique_ptr<ObjectSource> open_kept_objects(const std::string& cache_dir);

// Keeps object `id` (a tree or extent list of the volume's own commits, or fetched for it) with
// the volume's other kept objects: written under <cache>/tmp/, fsync'ed and renamed into
// <cache>/meta/; the caller fsyncs <cache>/meta/ before anything names it. Nothing when it is
// kept already. Safe while the volume's mount runs.
Status keep_object(const std::string& cache_dir, const ObjectId& id, std::span<const std::byte> bytes);

// Makes the mount on `live_dir` write what it holds in memory to its layer (an fsync of the
// directory, which the write layer answers by flushing everything). Nothing when it is not
// mounted or its process is gone: the layer on disk is then all there is.
void flush_live_mount(const std::string& live_dir);

// The top tree of base tree `base_top` (read through `base`: trees and extent lists only) with the
// layer in `layer_dir` applied. A file whose row and data file are as a previous commit saw them
// takes the content that commit stored (the content cache, `layer_dir`/contents.db), its bytes
// not read again: a commit costs what changed since the last one.
// `as_of_ns`: the build's time (0: now), which decides what is too recent to cache; tests give
// a later one.
Result<LayerTree> build_layer_tree(ObjectSource& base, const ObjectId& base_top, const std::string& layer_dir, const LayerTreeSinks& sinks,
                                   int64_t as_of_ns = 0);

// Adds `entries` (LayerTree::fresh of a build whose chunks are all durable in the store) to the
// content cache of the layer in `layer_dir`.
Status save_layer_contents(const std::string& layer_dir, const std::vector<LayerContentEntry>& entries);

}  // namespace dvol
