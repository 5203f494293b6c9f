// Choosing a remote's Backend from its URL.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "remote/backend.h"
#include "remote/retry.h"

namespace dvol::remote {

// What a URL alone does not say. Each backend reads only its own fields; add one here rather
// than a parameter to open_backend().
struct BackendOptions {
    // s3: the service's URL, for a store other than AWS (Ceph RGW, MinIO). Empty: AWS.
    std::string endpoint;
    // ssh: the command that runs ssh (e.g. "ssh -i key -p 2222"), split into words as
    // split_command_words() (ssh_backend.h) says. $DVOL_SSH_COMMAND wins over it; neither: "ssh".
    std::string ssh_command;
    // ssh: the command that runs dvol on the server, as the remote shell reads it (e.g.
    // "/opt/dvol/bin/dvol"). $DVOL_REMOTE_DVOL wins over it; neither: "dvol".
    std::string remote_dvol;
    // ssh: whether the remote's directory may be created (not its parents) by the first write,
    // for a push to a new remote. Without it a missing directory is Errc::not_found.
    bool create = false;
    // How transient failures are retried; none: RetryPolicy's defaults (up to 30 s). A lazy
    // mount, which answers a reader waiting in read(2), retries for less.
    std::optional<RetryPolicy> retry;
};

// Opens the remote named by `url`:
// - a path, or file:///abs/path: a directory (DirBackend), which must exist;
// - s3://bucket/prefix: an S3-compatible store (S3Backend; endpoint from `options`, else the
//   AWS_* environment and ~/.aws files);
// - ssh://[user@]host[:port]/path: a directory on a server that has dvol, reached with the
//   system's ssh (SshBackend).
// Any other scheme is Errc::invalid_argument. Backends whose failures can be transient come
// wrapped in a RetryingBackend with `options.retry`. The Backend is the caller's.
Result<std::unique_ptr<Backend>> open_backend(const std::string& url, const BackendOptions& options = {});

}  // namespace dvol::remote
