#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "meta/db.h"

namespace dvol::meta {

// 1: first layout; 2: adds the reflog table; 3: adds volume_options and mounts (the Docker
// plugin's state); 4: adds remotes, remote_packs, remote_objects and remote_branches; 5: adds objects.crc;
// 6: adds stat_cache.xattrs; 7: adds tree_facts. Older stores are upgraded in place.
inline constexpr int kSchemaVersion = 8;

// Creates the tables of a new store, or checks that an existing store's schema version is one
// this build understands.
Status init_schema(Db& db);

// Empties the stat cache (every volume's), the one table dvol can rebuild: by deleting its rows,
// or, when its pages are too damaged for that, by dropping the table and creating it again.
Status rebuild_stat_cache(Db& db);

// SQLite's integrity check of the whole database: nothing when it is sound, else its messages,
// each with the table it concerns when SQLite's message names one (by name or by root page).
struct DbDamage {
    std::string table;  // "" when the message names none
    std::string message;
};
Result<std::vector<DbDamage>> check_integrity(Db& db);

}  // namespace dvol::meta
