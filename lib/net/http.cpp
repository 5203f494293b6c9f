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

#include "base/dynlib.h"
#include "base/fs.h"

namespace dvol::net {

namespace {

// The most of an error document kept: S3's and Docker's are a few hundred bytes; a server
// that sends megabytes with a 5xx gets no more of our memory than this.
constexpr size_t kMaxErrorBody = 64 * 1024;

// libcurl, loaded when the first client is made rather than linked: its dependencies (32
// shared libraries on Debian 12) cost every dvol process about 3 ms at start, and only remotes
// and Docker's API need it (docs/DECISIONS.md, "libcurl and libgit2 loaded when first needed").
struct Curl {
    decltype(&::curl_global_init) global_init;
    decltype(&::curl_easy_init) easy_init;
    decltype(&::curl_easy_cleanup) easy_cleanup;
    decltype(&::curl_easy_reset) easy_reset;
    decltype(&::curl_easy_setopt) easy_setopt;
    decltype(&::curl_easy_perform) easy_perform;
    decltype(&::curl_easy_getinfo) easy_getinfo;
    decltype(&::curl_easy_strerror) easy_strerror;
    decltype(&::curl_slist_append) slist_append;
    decltype(&::curl_slist_free_all) slist_free_all;
};
Curl g_curl;          // set once by load_curl(), before any client exists
std::string g_curl_error;  // why it could not be loaded, "" when it was

// Loads libcurl and runs curl_global_init, once (curl_global_init is not thread-safe in every
// libcurl build, and tests race clients on several threads).
bool load_curl() {
    static std::once_flag once;
    std::call_once(once, [] {
        SharedLibrary lib("libcurl.so.4");
        if (!lib.loaded()) {
            g_curl_error = fmt::format("cannot load libcurl.so.4 ({}): install libcurl4", lib.error());
            return;
        }
        lib.take(g_curl.global_init, "curl_global_init");
        lib.take(g_curl.easy_init, "curl_easy_init");
        lib.take(g_curl.easy_cleanup, "curl_easy_cleanup");
        lib.take(g_curl.easy_reset, "curl_easy_reset");
        lib.take(g_curl.easy_setopt, "curl_easy_setopt");
        lib.take(g_curl.easy_perform, "curl_easy_perform");
        lib.take(g_curl.easy_getinfo, "curl_easy_getinfo");
        lib.take(g_curl.easy_strerror, "curl_easy_strerror");
        lib.take(g_curl.slist_append, "curl_slist_append");
        lib.take(g_curl.slist_free_all, "curl_slist_free_all");
        if (!lib.missing().empty()) {
            g_curl_error = "cannot load libcurl.so.4: it lacks functions dvol needs (libcurl 7.85 or later is)";
            return;
        }
        g_curl.global_init(CURL_GLOBAL_DEFAULT);
    });
    return g_curl_error.empty();
}

struct CurlDeleter {
    void operator()(CURL* c) const { g_curl.easy_cleanup(c); }
};
struct SlistDeleter {
    void operator()(curl_slist* l) const { g_curl.slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

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
    g_curl.easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &d->resp->status);
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
    if (!load_curl()) return make_error(Errc::unsupported, g_curl_error);
    std::unique_ptr<Client> c(new Client());
    c->handle_ = std::make_unique<Handle>();
    c->handle_->curl.reset(g_curl.easy_init());
    if (!c->handle_->curl) return make_error(Errc::internal, "cannot initialise libcurl");
    c->options_ = std::move(options);
    return c;
}

Client::~Client() = default;

Result<Response> Client::perform(const Request& req) {
    CURL* c = handle_->curl.get();
    // Forgets the previous request's options; the connection cache stays.
    g_curl.easy_reset(c);

    SlistPtr headers;
    for (const auto& h : req.headers) {
        curl_slist* l = g_curl.slist_append(headers.get(), h.c_str());
        if (!l) return make_error(Errc::internal, "out of memory building an HTTP request");
        if (!headers) headers.reset(l);  // appending to a list returns its head
    }

    Response resp;
    Upload up;
    Download down;
    down.curl = c;
    down.sink = &req.sink;
    down.resp = &resp;

    g_curl.easy_setopt(c, CURLOPT_URL, req.url.c_str());
    g_curl.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    g_curl.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    g_curl.easy_setopt(c, CURLOPT_CONNECTTIMEOUT, options_.connect_timeout_s);
    g_curl.easy_setopt(c, CURLOPT_TIMEOUT, options_.timeout_s);
    if (options_.stall_timeout_s > 0) {
        g_curl.easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        g_curl.easy_setopt(c, CURLOPT_LOW_SPEED_TIME, options_.stall_timeout_s);
    }
    if (!options_.unix_socket.empty()) g_curl.easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, options_.unix_socket.c_str());
    if (!options_.ca_file.empty()) g_curl.easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
    if (headers) g_curl.easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    g_curl.easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    g_curl.easy_setopt(c, CURLOPT_WRITEDATA, &down);
    g_curl.easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    g_curl.easy_setopt(c, CURLOPT_HEADERDATA, &resp);

    bool has_body = req.body_fd >= 0 || !req.body.empty();
    up.memory = req.body;
    up.fd = req.body_fd;
    up.size = req.body_fd >= 0 ? req.body_size : req.body.size();
    if (has_body || req.method == "PUT") {
        // Also for an empty PUT: libcurl's default would read stdin.
        g_curl.easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        g_curl.easy_setopt(c, CURLOPT_READDATA, &up);
        g_curl.easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
        g_curl.easy_setopt(c, CURLOPT_SEEKDATA, &up);
    }
    const auto size = static_cast<curl_off_t>(up.size);
    if (req.method == "GET") {
        g_curl.easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (req.method == "HEAD") {
        g_curl.easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (req.method == "PUT") {
        // Content-Length from the known size, never chunked (S3 refuses chunked bodies).
        g_curl.easy_setopt(c, CURLOPT_UPLOAD, 1L);
        g_curl.easy_setopt(c, CURLOPT_INFILESIZE_LARGE, size);
    } else if (req.method == "POST") {
        g_curl.easy_setopt(c, CURLOPT_POST, 1L);
        if (has_body) {
            g_curl.easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, size);
        } else {
            g_curl.easy_setopt(c, CURLOPT_POSTFIELDS, "");
            g_curl.easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
        }
    } else {
        g_curl.easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
    if (req.sigv4) {
        g_curl.easy_setopt(c, CURLOPT_AWS_SIGV4, req.sigv4->provider.c_str());
        g_curl.easy_setopt(c, CURLOPT_USERNAME, req.sigv4->access_key.c_str());
        g_curl.easy_setopt(c, CURLOPT_PASSWORD, req.sigv4->secret_key.c_str());
    }

    CURLcode rc = g_curl.easy_perform(c);
    // The credentials are copied into the handle; drop them now rather than at the next request.
    if (req.sigv4) {
        g_curl.easy_setopt(c, CURLOPT_USERNAME, nullptr);
        g_curl.easy_setopt(c, CURLOPT_PASSWORD, nullptr);
    }
    if (rc != CURLE_OK) {
        if (!up.error.empty()) return make_error(Errc::io, up.error);
        if (!down.error.empty()) return make_error(Errc::io, down.error);
        return make_error(transient(rc) ? Errc::unavailable : Errc::io, g_curl.easy_strerror(rc));
    }
    g_curl.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
    return resp;
}

}  // namespace dvol::net
