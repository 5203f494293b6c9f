#include "net/http.h"

#include <sys/types.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>

#include <curl/curl.h>
#include <fmt/format.h>

#include "base/fs.h"

namespace dvol::net {

namespace {

// The most of an error document kept: S3's and Docker's are a few hundred bytes; a server
// that sends megabytes with a 5xx gets no more of our memory than this.
constexpr size_t kMaxErrorBody = 64 * 1024;

struct CurlDeleter {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

// curl_global_init is not thread-safe in every libcurl build; curl_easy_init would call it
// implicitly, possibly from two threads at once (tests race clients on several threads).
void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// The request body, read as libcurl sends it. libcurl may rewind (a kept-alive connection the
// server closed meanwhile is retried on a fresh one, body and all), hence the seek callback.
struct Upload {
    std::span<const std::byte> memory;
    int fd = -1;
    uint64_t size = 0;
    uint64_t pos = 0;
    std::string error;  // why reading failed, for the caller
};

size_t on_read(char* buf, size_t size, size_t n, void* user) {
    auto* u = static_cast<Upload*>(user);
    uint64_t want = std::min<uint64_t>(static_cast<uint64_t>(size) * n, u->size - u->pos);
    if (want == 0) return 0;
    if (u->fd < 0) {
        std::memcpy(buf, u->memory.data() + u->pos, static_cast<size_t>(want));
        u->pos += want;
        return static_cast<size_t>(want);
    }
    auto got = pread_some(u->fd, {reinterpret_cast<std::byte*>(buf), static_cast<size_t>(want)}, u->pos, "the file being sent");
    if (!got) {
        u->error = got.error().message;
        return CURL_READFUNC_ABORT;
    }
    if (*got == 0) {
        u->error = fmt::format("the file being sent ended at {} bytes of the {} announced", u->pos, u->size);
        return CURL_READFUNC_ABORT;
    }
    u->pos += *got;
    return *got;
}

int on_seek(void* user, curl_off_t offset, int origin) {
    auto* u = static_cast<Upload*>(user);
    if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > u->size) return CURL_SEEKFUNC_CANTSEEK;
    u->pos = static_cast<uint64_t>(offset);
    return CURL_SEEKFUNC_OK;
}

struct Download {
    CURL* curl = nullptr;
    const std::function<void(const Response&, std::span<const std::byte>)>* sink = nullptr;
    Response* resp = nullptr;  // its headers are complete when the body starts
    std::string error;         // what the sink threw
};

size_t on_write(char* data, size_t size, size_t n, void* user) {
    auto* d = static_cast<Download*>(user);
    size_t len = size * n;
    curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &d->resp->status);
    bool success = d->resp->status >= 200 && d->resp->status < 300;
    std::string& body = d->resp->body;
    try {
        if (success && *d->sink) {
            (*d->sink)(*d->resp, {reinterpret_cast<const std::byte*>(data), len});
        } else if (success) {
            body.append(data, len);
        } else if (body.size() < kMaxErrorBody) {
            body.append(data, std::min(len, kMaxErrorBody - body.size()));
        }
    } catch (const std::exception& e) {
        d->error = e.what();
        return 0;  // aborts the transfer: CURLE_WRITE_ERROR
    }
    return len;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
    auto* r = static_cast<Response*>(user);
    std::string_view line(data, size * n);
    if (line.starts_with("HTTP/")) {
        r->headers.clear();  // a new answer begins (after a 100 Continue, say)
        return size * n;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return size * n;
    std::string name(trim(line.substr(0, colon)));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    r->headers.emplace_back(std::move(name), std::string(trim(line.substr(colon + 1))));
    return size * n;
}

// Failures that a retry may cure: the server could not be reached, went away or went quiet.
bool transient(CURLcode rc) {
    switch (rc) {
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_PARTIAL_FILE:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_GOT_NOTHING:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
            return true;
        default:
            return false;
    }
}

}  // namespace

struct Client::Handle {
    std::unique_ptr<CURL, CurlDeleter> curl;
};

const std::string* Response::header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (k == name) return &v;
    return nullptr;
}

Result<std::unique_ptr<Client>> Client::create(ClientOptions options) {
    global_init();
    std::unique_ptr<Client> c(new Client());
    c->handle_ = std::make_unique<Handle>();
    c->handle_->curl.reset(curl_easy_init());
    if (!c->handle_->curl) return make_error(Errc::internal, "cannot initialise libcurl");
    c->options_ = std::move(options);
    return c;
}

Client::~Client() = default;

Result<Response> Client::perform(const Request& req) {
    CURL* c = handle_->curl.get();
    // Forgets the previous request's options; the connection cache stays.
    curl_easy_reset(c);

    SlistPtr headers;
    for (const auto& h : req.headers) {
        curl_slist* l = curl_slist_append(headers.get(), h.c_str());
        if (!l) return make_error(Errc::internal, "out of memory building an HTTP request");
        if (!headers) headers.reset(l);  // appending to a list returns its head
    }

    Response resp;
    Upload up;
    Download down;
    down.curl = c;
    down.sink = &req.sink;
    down.resp = &resp;

    curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, options_.connect_timeout_s);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, options_.timeout_s);
    if (options_.stall_timeout_s > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, options_.stall_timeout_s);
    }
    if (!options_.unix_socket.empty()) curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, options_.unix_socket.c_str());
    if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
    if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &down);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &resp);

    bool has_body = req.body_fd >= 0 || !req.body.empty();
    up.memory = req.body;
    up.fd = req.body_fd;
    up.size = req.body_fd >= 0 ? req.body_size : req.body.size();
    if (has_body || req.method == "PUT") {
        // Also for an empty PUT: libcurl's default would read stdin.
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
        curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(c, CURLOPT_SEEKDATA, &up);
    }
    const auto size = static_cast<curl_off_t>(up.size);
    if (req.method == "GET") {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (req.method == "HEAD") {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (req.method == "PUT") {
        // Content-Length from the known size, never chunked (S3 refuses chunked bodies).
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, size);
    } else if (req.method == "POST") {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        if (has_body) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, size);
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
        }
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
    if (req.sigv4) {
        curl_easy_setopt(c, CURLOPT_AWS_SIGV4, req.sigv4->provider.c_str());
        curl_easy_setopt(c, CURLOPT_USERNAME, req.sigv4->access_key.c_str());
        curl_easy_setopt(c, CURLOPT_PASSWORD, req.sigv4->secret_key.c_str());
    }

    CURLcode rc = curl_easy_perform(c);
    // The credentials are copied into the handle; drop them now rather than at the next request.
    if (req.sigv4) {
        curl_easy_setopt(c, CURLOPT_USERNAME, nullptr);
        curl_easy_setopt(c, CURLOPT_PASSWORD, nullptr);
    }
    if (rc != CURLE_OK) {
        if (!up.error.empty()) return make_error(Errc::io, up.error);
        if (!down.error.empty()) return make_error(Errc::io, down.error);
        return make_error(transient(rc) ? Errc::unavailable : Errc::io, curl_easy_strerror(rc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
    return resp;
}

}  // namespace dvol::net
