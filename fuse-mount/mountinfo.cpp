#include "mountinfo.h"

#include <sstream>
#include <vector>

#include "base/fs.h"

namespace dvol::mountfs {

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' && s[i + 2] <= '7' &&
            s[i + 3] >= '0' && s[i + 3] <= '7') {
            out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

}  // namespace

std::optional<MountEntry> parse_mountinfo_line(const std::string& line) {
    // id parent major:minor root mount-point options [optional fields...] - fstype source super-options
    std::vector<std::string> f;
    std::istringstream in(line);
    for (std::string w; in >> w;) f.push_back(w);
    if (f.size() < 7) return std::nullopt;
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash + 2 >= f.size()) return std::nullopt;
    return MountEntry{unescape(f[4]), unescape(f[dash + 1]), unescape(f[dash + 2])};
}

Result<std::optional<MountEntry>> find_mount(const std::string& dir) {
    DVOL_TRY(std::string text, read_small_file("/proc/self/mountinfo", 64u << 20));
    std::optional<MountEntry> found;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        auto m = parse_mountinfo_line(line);
        if (m && m->mount_point == dir) found = std::move(m);  // the last one is on top
    }
    return found;
}

}  // namespace dvol::mountfs
