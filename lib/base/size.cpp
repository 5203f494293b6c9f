#include "base/size.h"

#include <cctype>

namespace dvol {

std::optional<uint64_t> parse_size(std::string_view s) {
    auto upper = [](char c) { return static_cast<char>(std::toupper(static_cast<unsigned char>(c))); };
    if (s.size() > 1 && upper(s.back()) == 'B') s.remove_suffix(1);
    unsigned shift = 0;
    if (!s.empty()) {
        char last = upper(s.back());
        shift = last == 'K' ? 10 : last == 'M' ? 20 : last == 'G' ? 30 : last == 'T' ? 40 : 0;
        if (shift) s.remove_suffix(1);
    }
    if (s.empty() || s.size() > 12 || s.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
    uint64_t n = 0;
    for (char c : s) n = n * 10 + static_cast<uint64_t>(c - '0');  // at most 12 digits: no overflow
    if (shift && n > (UINT64_MAX >> shift)) return std::nullopt;
    return n << shift;
}

}  // namespace dvol
