// Unified text diffs (through libgit2) and the user's git identity. git2.h is included here
// only.
#pragma once

#include <optional>
#include <string>

#include "base/error.h"

namespace dvol {

// Files larger than this are summarised rather than diffed.
inline constexpr uint64_t kMaxTextDiffSize = 16u << 20;

// True when `data` looks like text (no NUL in its first 8000 bytes, as git decides).
bool looks_binary(const std::string& data);

// A unified diff of `old_text` -> `new_text` with "a/PATH" and "b/PATH" headers; a missing
// side is /dev/null. The header gives each side's mode as git does, from its permission bits
// (`old_mode`, `new_mode`): 100755 when an execute bit is set, 100644 otherwise. Returns ""
// when both texts are equal.
Result<std::string> unified_diff(const std::string& path, const std::optional<std::string>& old_text, uint32_t old_mode,
                                 const std::optional<std::string>& new_text, uint32_t new_mode, int context_lines = 3);

struct GitIdentity {
    std::optional<std::string> name;
    std::optional<std::string> email;
};

// user.name and user.email from the user's git configuration (global, XDG and system files),
// each absent when not set or when git's configuration cannot be read.
GitIdentity git_identity();

}  // namespace dvol
