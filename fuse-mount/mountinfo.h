// What is mounted where, from /proc/self/mountinfo.
#pragma once

#include <optional>
#include <string>

#include "base/error.h"

namespace dvol::mountfs {

// The file system type dvol's mounts show (FUSE's "fuse." and the subtype dvol).
inline constexpr const char* kDvolFsType = "fuse.dvol";

struct MountEntry {
    std::string mount_point;  // absolute, unescaped
    std::string fstype;       // e.g. fuse.dvol, ext4
    std::string source;       // e.g. dvol:VOLUME@ID
};

// The mount on `dir` (an absolute path without symlinks), the topmost when several are stacked;
// nullopt when `dir` is not a mount point.
Result<std::optional<MountEntry>> find_mount(const std::string& dir);

// One line of mountinfo, parsed (exposed for the unit tests); nullopt when malformed.
std::optional<MountEntry> parse_mountinfo_line(const std::string& line);

}  // namespace dvol::mountfs
