#include "object/commit.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <optional>
#include <string_view>

#include <fmt/format.h>

namespace dvol {

namespace {

Error malformed(std::string_view why) { return make_error(Errc::corrupt, fmt::format("malformed commit: {}", why)); }

bool valid_meta_key(std::string_view k) {
    if (k.empty() || k.size() > 256) return false;
    return std::all_of(k.begin(), k.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    });
}

bool has_newline_or_nul(std::string_view s) { return s.find_first_of(std::string_view("\n\0", 2)) != std::string_view::npos; }

// Only the canonical form: digits without a plus sign or leading zeros, "-" only for
// negative values (never "-0"), so one commit has exactly one encoding.
template <typename T>
bool parse_int(std::string_view s, T& out) {
    std::string_view digits = s.starts_with('-') ? s.substr(1) : s;
    if (digits.empty() || (digits.size() > 1 && digits[0] == '0') || (s[0] == '-' && digits == "0")) return false;
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

bool two_digits(std::string_view s, int& out) {
    if (s.size() != 2 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') return false;
    out = (s[0] - '0') * 10 + (s[1] - '0');
    return true;
}

// Commit ids are written in lower case; anything else is another encoding of the same commit.
std::optional<ObjectId> canonical_id(std::string_view hex) {
    if (std::any_of(hex.begin(), hex.end(), [](char c) { return c >= 'A' && c <= 'F'; })) return std::nullopt;
    return ObjectId::from_hex(hex);
}

constexpr int kMaxTzMinutes = 23 * 60 + 59;
constexpr size_t kMaxParents = 64;

bool parse_tz(std::string_view s, int& out) {
    if (s.size() != 5 || (s[0] != '+' && s[0] != '-')) return false;
    int hh = 0, mm = 0;
    if (!two_digits(s.substr(1, 2), hh) || !two_digits(s.substr(3, 2), mm) || hh > 23 || mm > 59) return false;
    if (s[0] == '-' && hh == 0 && mm == 0) return false;  // "+0000" is the one spelling of UTC
    out = (hh * 60 + mm) * (s[0] == '-' ? -1 : 1);
    return true;
}

}  // namespace

std::string format_tz(int offset_min) {
    int a = std::abs(offset_min);
    return fmt::format("{}{:02}{:02}", offset_min < 0 ? '-' : '+', a / 60, a % 60);
}

Result<std::vector<std::byte>> encode_commit(const Commit& c) {
    if (has_newline_or_nul(c.author_name) || c.author_name.find_first_of("<>") != std::string::npos)
        return make_error(Errc::invalid_argument, "the author name must not contain '<', '>' or a newline");
    if (has_newline_or_nul(c.author_email) || c.author_email.find_first_of("<>") != std::string::npos)
        return make_error(Errc::invalid_argument, "the author email must not contain '<', '>' or a newline");
    if (c.message.find('\0') != std::string::npos) return make_error(Errc::invalid_argument, "the commit message must not contain NUL");
    if (c.tz_offset_min < -kMaxTzMinutes || c.tz_offset_min > kMaxTzMinutes)
        return make_error(Errc::invalid_argument, "the time zone offset must be less than 24 hours");
    if (c.parents.size() > kMaxParents) return make_error(Errc::invalid_argument, "a commit has at most 64 parents");
    for (size_t i = 0; i < c.metadata.size(); ++i) {
        const auto& [k, v] = c.metadata[i];
        if (!valid_meta_key(k)) return make_error(Errc::invalid_argument, fmt::format("invalid metadata key '{}'", k));
        if (has_newline_or_nul(v)) return make_error(Errc::invalid_argument, fmt::format("metadata value of '{}' has a newline", k));
        if (i > 0 && !(c.metadata[i - 1].first < k)) return make_error(Errc::invalid_argument, "metadata keys must be unique and sorted");
    }
    std::string s = fmt::format("dvol commit 1\ntree {}\n", c.tree.hex());
    for (const auto& p : c.parents) s += fmt::format("parent {}\n", p.hex());
    s += fmt::format("author {} <{}> {} {}\n", c.author_name, c.author_email, c.time, format_tz(c.tz_offset_min));
    for (const auto& [k, v] : c.metadata) s += fmt::format("meta {}={}\n", k, v);
    s += "\n";
    s += c.message;
    if (s.size() > kMaxCommitSize) return make_error(Errc::invalid_argument, "the commit message is too long");
    auto b = reinterpret_cast<const std::byte*>(s.data());
    return std::vector<std::byte>(b, b + s.size());
}

Result<Commit> decode_commit(std::span<const std::byte> data) {
    if (data.size() > kMaxCommitSize) return malformed("too large");
    std::string_view s(reinterpret_cast<const char*>(data.data()), data.size());
    if (s.find('\0') != std::string_view::npos) return malformed("contains NUL");
    auto next_line = [&s](std::string_view& line) {
        auto nl = s.find('\n');
        if (nl == std::string_view::npos) return false;
        line = s.substr(0, nl);
        s.remove_prefix(nl + 1);
        return true;
    };
    Commit c;
    std::string_view line;
    if (!next_line(line) || line != "dvol commit 1") return malformed("bad header");
    if (!next_line(line) || !line.starts_with("tree ")) return malformed("no tree");
    auto tree = canonical_id(line.substr(5));
    if (!tree) return malformed("bad tree id");
    c.tree = *tree;
    if (!next_line(line)) return malformed("truncated");
    while (line.starts_with("parent ")) {
        auto p = canonical_id(line.substr(7));
        if (!p || c.parents.size() >= kMaxParents) return malformed("bad parent id");
        c.parents.push_back(*p);
        if (!next_line(line)) return malformed("truncated");
    }
    if (!line.starts_with("author ")) return malformed("no author");
    {
        std::string_view a = line.substr(7);
        auto lt = a.find(" <"), gt = a.rfind("> ");
        if (lt == std::string_view::npos || gt == std::string_view::npos || gt < lt) return malformed("bad author");
        c.author_name = std::string(a.substr(0, lt));
        c.author_email = std::string(a.substr(lt + 2, gt - lt - 2));
        if (c.author_email.find_first_of("<>") != std::string::npos || c.author_name.find_first_of("<>") != std::string::npos)
            return malformed("bad author");
        std::string_view rest = a.substr(gt + 2);
        auto sp = rest.find(' ');
        if (sp == std::string_view::npos || !parse_int(rest.substr(0, sp), c.time) || !parse_tz(rest.substr(sp + 1), c.tz_offset_min))
            return malformed("bad author date");
    }
    for (;;) {
        if (!next_line(line)) return malformed("truncated");
        if (line.empty()) break;
        if (!line.starts_with("meta ")) return malformed("unexpected header line");
        auto kv = line.substr(5);
        auto eq = kv.find('=');
        if (eq == std::string_view::npos || !valid_meta_key(kv.substr(0, eq))) return malformed("bad metadata");
        c.metadata.emplace_back(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
        if (c.metadata.size() > 1 && !(c.metadata[c.metadata.size() - 2].first < c.metadata.back().first))
            return malformed("metadata not sorted");
    }
    c.message = std::string(s);
    return c;
}

}  // namespace dvol
