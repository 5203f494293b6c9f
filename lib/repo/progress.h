// How long work reports back to a front end: one-line warnings, and progress counts.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace dvol {

using WarnFn = std::function<void(const std::string&)>;

// Progress of long work: files (or objects) visited and bytes read, written or sent so far,
// and the bytes expected in all when known (0: unknown).
struct Progress {
    uint64_t files = 0;
    uint64_t bytes = 0;
    uint64_t total = 0;
};
using ProgressFn = std::function<void(const Progress&)>;

}  // namespace dvol
