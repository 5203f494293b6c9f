#pragma once

#include "base/error.h"
#include "meta/db.h"

namespace dvol::meta {

inline constexpr int kSchemaVersion = 1;

// Creates the tables of a new store, or checks that an existing store's schema version is one
// this build understands.
Status init_schema(Db& db);

}  // namespace dvol::meta
