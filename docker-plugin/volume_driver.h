// Docker's legacy volume plugin protocol (Plugin.Activate and VolumeDriver.*) mapped onto
// libdvol. Transport-free: the HTTP server hands each request's endpoint and body here and
// sends back what comes out, so the protocol can be tested without a socket.
//
// Every request is validated: a malformed body, a missing or invalid Name, an unknown option or
// endpoint gets a reply with a non-empty "Err" (never an exception or a crash). State (volumes,
// options, mount counts per mount ID) lives in the store, so a restarted plugin loses nothing.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>

#include "clones.h"
#include "lazy_mounts.h"
#include "repo/repository.h"

namespace dvol::plugin {

// Docker sends small JSON documents; anything bigger is refused unread.
inline constexpr size_t kMaxBody = 64 * 1024;

struct Reply {
    unsigned status = 200;  // HTTP status: 200, or 404 for an unknown endpoint
    std::string body;       // JSON
    std::string summary;    // one line for the log: what was asked and how it ended
};

class VolumeDriver {
public:
    // Borrows `repo`, `clones` (null: the option from= is refused) and `lazy` (null: the option
    // lazy=true is refused, and a lazy volume's Mount fails) for the driver's lifetime.
    // Thread-safe: requests are served one at a time, except that a Mount waiting for a
    // volume's clone lets the others through. A Mount waits at most `mount_wait` (under
    // Docker's two minutes) for the clone, then answers that it is not done yet.
    explicit VolumeDriver(Repository& repo, Clones* clones = nullptr, std::chrono::milliseconds mount_wait = std::chrono::seconds(100),
                          LazyMounts* lazy = nullptr)
        : repo_(repo), clones_(clones), lazy_(lazy), mount_wait_(mount_wait) {}

    // `endpoint` is the request path without its leading '/', e.g. "VolumeDriver.Mount".
    Reply handle(std::string_view endpoint, std::string_view body);
    // The reply to a body larger than kMaxBody.
    static Reply too_large(std::string_view endpoint);

private:
    Repository& repo_;
    Clones* clones_;
    LazyMounts* lazy_;
    std::chrono::milliseconds mount_wait_;
    std::mutex mu_;
};

}  // namespace dvol::plugin
