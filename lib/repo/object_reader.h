// An ObjectSource for a process that serves a store's objects for a long time without holding
// the store lock (the FUSE mount): it has its own SQLite connection, so each reader can run on a
// thread of its own, and it keeps working while a gc runs.
//
// What it relies on: the objects it is asked for are kept alive by a pin (Repository::pin_commit),
// so gc never deletes them; gc may still move their records into a new pack and delete the old
// one. Packs are immutable, so an open pack stays readable after it is deleted; a record looked
// up after gc moved it is found in its new pack. What can go wrong is a lookup made before the
// move and a pack opened after the delete (or a deleted pack's id reused by a new pack): the read
// then fails verification, and the reader looks the record up once more with its packs closed.
// A second failure is reported as it is (a damaged object stays `corrupt`).
#pragma once

#include <memory>

#include "base/error.h"
#include "store/object_source.h"
#include "store/paths.h"

namespace dvol {

// How a reader proves what it reads: `hash`, by hashing the content (ObjectSource::get's
// contract); `checksum`, by the CRC-32C the index keeps of each record
// (ObjectStore::get_by_checksum), which shows the bytes are the ones this store wrote under the
// id, at a fraction of the cost (the mount of a commit: docs/DECISIONS.md, "FUSE mount").
enum class ReadCheck { hash, checksum };

// A reader of the store at `paths`. Not thread-safe: one thread at a time; open one per thread.
Result<std::unique_ptr<ObjectSource>> open_object_reader(const StorePaths& paths, ReadCheck check = ReadCheck::hash);

}  // namespace dvol
