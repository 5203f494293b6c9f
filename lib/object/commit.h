// Commits: a canonical text encoding ("dvol commit 1", tree, parents, author, metadata, a
// blank line, the message) whose SHA-256 is the commit id, identical on every machine. The
// encoding and what decoders accept: docs/FORMAT.md, "Commits".
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/object_id.h"

namespace dvol {

struct Commit {
    ObjectId tree;
    std::vector<ObjectId> parents;
    std::string author_name;
    std::string author_email;
    int64_t time = 0;       // seconds since the epoch
    int tz_offset_min = 0;  // minutes east of UTC
    std::vector<std::pair<std::string, std::string>> metadata;  // sorted by key
    std::string message;
};

inline constexpr size_t kMaxCommitSize = 1 << 20;

// Validates the fields that the text format cannot carry (newlines in the name, '<' in the
// email, bad metadata keys) and returns the encoding.
Result<std::vector<std::byte>> encode_commit(const Commit& c);
Result<Commit> decode_commit(std::span<const std::byte> data);

// "+hhmm" / "-hhmm"
std::string format_tz(int offset_min);

}  // namespace dvol
