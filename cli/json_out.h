// JSON output for --json: one place that prints, and paths that survive being any bytes.
#pragma once

#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace dvol::cli {

// Prints `j` indented. Strings that are not valid UTF-8 are printed with U+FFFD in place of the
// bad bytes rather than aborting; fields that can hold such bytes carry a hex twin (see
// put_path).
inline void print_json(const nlohmann::json& j) { fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)); }

// Sets obj[key] to `path`; when the path is not valid UTF-8 (file names can be any bytes) also
// sets obj[key + "_hex"] to its exact bytes in hex.
inline void put_path(nlohmann::json& obj, const std::string& key, const std::string& path) {
    obj[key] = path;
    try {
        (void)nlohmann::json(path).dump();
    } catch (const nlohmann::json::type_error&) {
        std::string hex;
        for (unsigned char c : path) hex += fmt::format("{:02x}", c);
        obj[key + "_hex"] = hex;
    }
}

}  // namespace dvol::cli
