// Sizes as users write them on command lines and in options: 512M, 20G, 1048576.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace dvol {

// Bytes, with an optional K, M, G or T suffix (powers of 1024), optionally followed by B, case
// ignored: "512M", "20g", "1GB", "1048576". nullopt for anything else (empty, a sign, a fraction,
// spaces, more than 12 digits, or a value that does not fit in 64 bits).
std::optional<uint64_t> parse_size(std::string_view s);

}  // namespace dvol
