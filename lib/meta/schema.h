#pragma once

#include "base/error.h"
#include "meta/db.h"

namespace dvol::meta {

// 1: first layout; 2: adds the reflog table (a v1 store is upgraded in place).
inline constexpr int kSchemaVersion = 2;

// Creates the tables of a new store, or checks that an existing store's schema version is one
// this build understands.
Status init_schema(Db& db);

}  // namespace dvol::meta
