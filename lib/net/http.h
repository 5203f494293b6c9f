// A small HTTP/1.1 client: what the Docker Engine client and the S3 remote need, and the one
// module that includes curl.h. One Client holds one libcurl handle, reused request after
// request so that the connection is kept alive.
//
// Failures to get an answer are errors: Errc::unavailable when a retry may cure them (no
// connection, connection reset or closed early, timeout, stalled transfer, host name not
// resolved), Errc::io otherwise (including a request body that could not be read); the
// message is libcurl's short description of the failure, or the body's read error, and never
// holds the URL's query or a credential. Any answer the server sent, whatever its status, is a
// Response; what a status means is the caller's business.
//
// A Client is used by one thread at a time; clients on different threads are independent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"

namespace dvol::net {

struct ClientOptions {
    // Connect to this unix socket instead of the URL's host (the URL's path still counts).
    std::string unix_socket;
    // CA certificates for https (a PEM file); empty: the system's.
    std::string ca_file;
    long connect_timeout_s = 10;
    // The whole request; 0: no limit (uploads of any size).
    long timeout_s = 0;
    // A request that moves less than one byte per second for this long is abandoned
    // (Errc::unavailable); 0: never. What makes a server that accepted the connection and
    // then hangs an error instead of a hang.
    long stall_timeout_s = 0;
};

// AWS Signature Version 4, computed by libcurl itself (CURLOPT_AWS_SIGV4).
struct AwsSigV4 {
    std::string provider;  // "aws:amz:REGION:SERVICE"
    std::string access_key;
    std::string secret_key;
};

struct Response;

struct Request {
    std::string method = "GET";  // GET, HEAD, PUT, POST or DELETE
    // Sent as is: the caller escapes the path and the query.
    std::string url;
    std::vector<std::string> headers;  // "Name: value"
    // The body of a PUT or POST, from memory or streamed from `body_fd` (`body_size` bytes
    // from offset 0, read as they are sent: memory stays bounded). Neither: an empty body.
    // Both are borrowed for the call.
    std::span<const std::byte> body;
    int body_fd = -1;
    uint64_t body_size = 0;
    // Signs the request when set (borrowed).
    const AwsSigV4* sigv4 = nullptr;
    // When set, receives the body of a 2xx answer piece by piece instead of Response::body,
    // each piece with the answer so far (status and headers, no body).
    std::function<void(const Response& head, std::span<const std::byte> data)> sink;
};

struct Response {
    long status = 0;
    // The final answer's headers (not those of a "100 Continue"), names in lower case.
    std::vector<std::pair<std::string, std::string>> headers;
    // The answer's body, unless `sink` took it. The body of a non-2xx answer (an error
    // document) always lands here, its first 64 KiB.
    std::string body;

    // The value of header `name` (lower case), or nullptr.
    const std::string* header(std::string_view name) const;
};

class Client {
public:
    static Result<std::unique_ptr<Client>> create(ClientOptions options);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    Result<Response> perform(const Request& request);

private:
    Client() = default;
    struct Handle;
    std::unique_ptr<Handle> handle_;
    ClientOptions options_;
};

}  // namespace dvol::net
