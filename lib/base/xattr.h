// Extended attributes (POSIX ACLs included: they are the system.posix_acl_* attributes) of a
// directory entry, addressed as (directory fd, name) and never following a final symlink.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace dvol {

using XattrList = std::vector<std::pair<std::string, std::string>>;

// All attributes of `name` in `dirfd`, sorted by key. A file system without xattr support
// yields an empty list.
Result<XattrList> read_xattrs(int dirfd, const std::string& name, const std::string& path);

// Makes the attributes of `name` exactly `want` (sorted by key): removes the others and sets
// the differing ones. Attributes the kernel refuses to set (EPERM, ENOTSUP: a namespace that
// needs privileges, or a file system without xattrs) are reported through `refused` and
// skipped; other failures are errors.
Status write_xattrs(int dirfd, const std::string& name, const std::string& path, const XattrList& have, const XattrList& want,
                    std::vector<std::string>& refused);

}  // namespace dvol
