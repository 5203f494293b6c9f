// Choosing a remote's Backend from its URL.
#pragma once

#include <memory>
#include <string>

#include "base/error.h"
#include "remote/backend.h"

namespace dvol::remote {

// What a URL alone does not say. Each backend reads only its own fields; add one here rather
// than a parameter to open_backend().
struct BackendOptions {
    // s3: the service's URL, for a store other than AWS (Ceph RGW, MinIO). Empty: AWS.
    std::string endpoint;
    // ssh: the command that runs ssh (e.g. "ssh -i key -p 2222"). Empty: "ssh".
    std::string ssh_command;
};

// Opens the remote named by `url`:
// - a path, or file:///abs/path: a directory (DirBackend), which must exist;
// - s3://bucket/prefix: an S3-compatible store (S3Backend; endpoint from `options`, else the
//   AWS_* environment and ~/.aws files);
// - ssh://[user@]host[:port]/path: Errc::unsupported for now.
// Any other scheme is Errc::invalid_argument. Backends whose failures can be transient come
// wrapped in a RetryingBackend with the default policy. The Backend is the caller's.
Result<std::unique_ptr<Backend>> open_backend(const std::string& url, const BackendOptions& options = {});

}  // namespace dvol::remote
