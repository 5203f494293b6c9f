// Shared helpers for the libFuzzer targets: byte views of the fuzzer's input and a check that
// aborts (so libFuzzer records the input as a crash) when a decoder property is violated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

namespace dvol_fuzz {

inline std::span<const std::byte> as_bytes(const uint8_t* data, size_t size) {
    return {reinterpret_cast<const std::byte*>(data), size};
}

[[noreturn]] inline void violated(const char* target, const char* what) {
    std::fprintf(stderr, "%s: property violated: %s\n", target, what);
    std::abort();
}

inline void check(bool ok, const char* target, const char* what) {
    if (!ok) violated(target, what);
}

inline bool same_bytes(std::span<const std::byte> a, const std::vector<std::byte>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

}  // namespace dvol_fuzz
