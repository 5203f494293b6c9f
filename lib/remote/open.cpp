#include "remote/open.h"

#include <fmt/format.h>

#include "remote/dir_backend.h"
#include "remote/retry.h"
#include "remote/s3_backend.h"
#include "remote/ssh_backend.h"

namespace dvol::remote {

Result<std::unique_ptr<Backend>> open_backend(const std::string& url, const BackendOptions& options) {
    size_t sep = url.find("://");
    std::string scheme = sep == std::string::npos ? "" : url.substr(0, sep);
    if (scheme.empty() || scheme == "file") {
        // A directory's failures are transient only over NFS (a stale handle, a soft mount's
        // timeout), but those are worth the retries.
        DVOL_TRY(auto dir, DirBackend::open(url));
        return std::unique_ptr<Backend>(std::make_unique<RetryingBackend>(std::move(dir), options.retry.value_or(RetryPolicy{})));
    }
    if (scheme == "s3") {
        S3Options s3;
        s3.endpoint = options.endpoint;
        DVOL_TRY(auto backend, S3Backend::open(url, s3));
        return std::unique_ptr<Backend>(std::make_unique<RetryingBackend>(std::move(backend), options.retry.value_or(RetryPolicy{})));
    }
    if (scheme == "ssh") {
        // A dropped connection or a server that restarts is worth the retries; each retry
        // starts a new ssh.
        DVOL_TRY(auto ssh, SshBackend::open(url, options));
        return std::unique_ptr<Backend>(std::make_unique<RetryingBackend>(std::move(ssh), options.retry.value_or(RetryPolicy{})));
    }
    return make_error(Errc::invalid_argument,
                      fmt::format("unknown remote URL scheme '{}': a remote is a directory (a path or file:///path), "
                                  "s3://bucket/prefix or ssh://host/path",
                                  scheme));
}

}  // namespace dvol::remote
