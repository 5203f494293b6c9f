#pragma once

#include "base/error.h"
#include "meta/db.h"

namespace dvol::meta {

// 1: first layout; 2: adds the reflog table; 3: adds volume_options and mounts (the Docker
// plugin's state); 4: adds remotes, remote_packs, remote_objects and remote_branches. Older
// stores are upgraded in place.
inline constexpr int kSchemaVersion = 4;

// Creates the tables of a new store, or checks that an existing store's schema version is one
// this build understands.
Status init_schema(Db& db);

}  // namespace dvol::meta
