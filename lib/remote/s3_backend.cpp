#include "remote/s3_backend.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "base/fs.h"
#include "store/hash.h"

namespace dvol::remote {

namespace {

// The SHA-256 of no bytes: the payload hash of a GET or a DELETE.
constexpr const char* kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
// S3's limit for one PUT; bigger objects need a multipart upload, which dvol's packs (256 MiB
// at most) never do.
constexpr uint64_t kMaxPut = uint64_t{5} << 30;
// User metadata on every ref write: which write made the object (S3Backend::put_ref).
constexpr const char* kWriteTagHeader = "x-amz-meta-dvol-write";

// The SHA-256 of `size` bytes of `fd` from offset 0, in hex, read 1 MiB at a time.
Result<std::string> hash_file(int fd, uint64_t size) {
    Sha256 h;
    std::vector<std::byte> buf(std::min<uint64_t>(size, 1 << 20));
    uint64_t pos = 0;
    while (pos < size) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - pos));
        DVOL_TRY(size_t got, pread_some(fd, std::span(buf.data(), want), pos, "the file to send"));
        if (got == 0) return make_error(Errc::io, fmt::format("the file to send has {} bytes, not the {} announced", pos, size));
        h.update(std::span(buf.data(), got));
        pos += got;
    }
    return h.finish().hex();
}

}  // namespace

Result<std::unique_ptr<S3Backend>> S3Backend::open(const std::string& url, const S3Options& options) {
    return open(url, options, s3::process_env());
}

Result<std::unique_ptr<S3Backend>> S3Backend::open(const std::string& url, const S3Options& options, const s3::EnvLookup& env) {
    DVOL_TRY(s3::Url parsed, s3::parse_url(url));
    if (options.max_keys < 1 || options.max_keys > 1000)
        return make_error(Errc::invalid_argument, fmt::format("{} keys per listing page: give 1 to 1000", options.max_keys));
    DVOL_TRY(s3::Settings settings, s3::resolve_settings(options.endpoint, options.region, env));
    std::unique_ptr<S3Backend> b(new S3Backend());
    b->location_ = url;
    std::random_device rd;
    for (int i = 0; i < 4; ++i) b->session_ += fmt::format("{:08x}", rd());
    b->url_ = std::move(parsed);
    b->settings_ = std::move(settings);
    b->options_ = options;
    b->sigv4_ = {"aws:amz:" + b->settings_.region + ":s3", b->settings_.credentials.access_key,
                 b->settings_.credentials.secret_key};
    DVOL_TRY(b->http_, net::Client::create({.unix_socket = {},
                                            .ca_file = b->settings_.ca_file,
                                            .connect_timeout_s = options.connect_timeout_s,
                                            .timeout_s = 0,
                                            .stall_timeout_s = options.stall_timeout_s}));
    return b;
}

Error S3Backend::scrubbed(Errc code, std::string message) const {
    const auto& c = settings_.credentials;
    for (const std::string* secret : {&c.access_key, &c.secret_key, &c.session_token}) {
        if (secret->size() < 4) continue;  // too short to tell from ordinary words; never one in practice
        for (size_t at = message.find(*secret); at != std::string::npos; at = message.find(*secret, at))
            message.replace(at, secret->size(), "[redacted]");
    }
    return make_error(code, std::move(message));
}

std::string S3Backend::describe(const Call& call) {
    const std::string& key = call.key;
    switch (call.op) {
        case Op::list: return key.empty() ? std::string("list the remote") : fmt::format("list keys starting with '{}'", key);
        case Op::read: return "read " + key;
        case Op::write: return "write " + key;
        case Op::read_ref: return "read ref " + key;
        case Op::create_ref: return "create ref " + key;
        case Op::update_ref: return "update ref " + key;
        case Op::remove: return "remove " + key;
    }
    return key;
}

Status S3Backend::check_key(const std::string& key) const {
    if (valid_key(key)) return {};
    return make_error(Errc::invalid_argument, fmt::format("{}: '{}' is not a valid key", location_, key));
}

std::string S3Backend::object_url(const std::string& key) const {
    std::string name = url_.prefix.empty() ? key : url_.prefix + "/" + key;
    return settings_.endpoint + "/" + url_.bucket + "/" + s3::uri_encode(name, true);
}

Result<net::Response> S3Backend::send(net::Request& req, const std::string& payload_sha256, const Call& call) {
    // The payload hash is required by RGW and AWS alike; libcurl 7.88 signs the value given
    // here instead of hashing the body itself (it cannot: the body may be streamed).
    req.headers.push_back("x-amz-content-sha256: " + payload_sha256);
    if (!settings_.credentials.session_token.empty())
        req.headers.push_back("x-amz-security-token: " + settings_.credentials.session_token);
    req.sigv4 = &sigv4_;
    auto resp = http_->perform(req);
    if (!resp)
        return scrubbed(resp.error().code, fmt::format("{}: cannot {} at {}: {}", location_, describe(call),
                                                       settings_.endpoint, resp.error().message));
    return resp;
}

Error S3Backend::answer_error(const net::Response& resp, const Call& call) const {
    const s3::ErrorDoc doc = s3::parse_error(resp.body);
    const std::string& code = doc.code;
    const long st = resp.status;
    const std::string tag = code.empty() ? fmt::format("HTTP {}", st) : fmt::format("{}, HTTP {}", code, st);
    const std::string what = describe(call);
    const bool ref_write = call.op == Op::create_ref || call.op == Op::update_ref;
    const auto& bucket = url_.bucket;

    if (code == "NoSuchBucket")
        return scrubbed(Errc::not_found, fmt::format("{}: bucket {} does not exist at {} (dvol never creates buckets)", location_,
                                                     bucket, settings_.endpoint));
    if (st == 404 && call.op == Op::update_ref)
        return scrubbed(Errc::conflict, fmt::format("{}: cannot update ref {}: it no longer exists", location_, call.key));
    if (st == 404 && call.op == Op::list)
        return scrubbed(Errc::not_found, fmt::format("{}: no bucket {} at {} ({})", location_, bucket, settings_.endpoint, tag));
    if (st == 404) return scrubbed(Errc::not_found, fmt::format("{}: no {} in the remote", location_, call.key));
    if (st == 412 && call.op == Op::create_ref)
        return scrubbed(Errc::conflict, fmt::format("{}: cannot create ref {}: it already exists", location_, call.key));
    if (st == 412 && call.op == Op::update_ref)
        return scrubbed(Errc::conflict, fmt::format("{}: cannot update ref {}: it changed since it was read", location_, call.key));
    if (st == 409 && ref_write && code == "ConditionalRequestConflict")
        return scrubbed(Errc::conflict, fmt::format("{}: cannot {}: another writer is changing it", location_, what));
    if (code == "QuotaExceeded" || code == "EntityTooLarge" || code == "InsufficientCapacity" || st == 507)
        return scrubbed(Errc::no_space, fmt::format("{}: cannot {}: the store is full or the bucket over its quota ({})", location_,
                                                    what, tag));
    if (code == "RequestTimeTooSkewed")
        return scrubbed(Errc::denied, fmt::format("{}: the server refused the request because this machine's clock differs "
                                                  "too much from its own ({}): set the clock",
                                                  location_, tag));
    if (code == "AccessDenied" || code == "AllAccessDisabled")
        return scrubbed(Errc::denied, fmt::format("{}: bucket {} refused access to the credentials from {} ({}): they may not {}",
                                                  location_, bucket, settings_.credentials.source, tag, what));
    if (st == 401 || st == 403 || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "InvalidToken" ||
        code == "ExpiredToken" || code == "TokenRefreshRequired")
        return scrubbed(Errc::denied, fmt::format("{}: the server refused the credentials from {} for bucket {} ({})", location_,
                                                  settings_.credentials.source, bucket, tag));
    if (code == "AuthorizationHeaderMalformed" || code == "PermanentRedirect" || st == 301 || st == 307)
        return scrubbed(Errc::invalid_argument,
                        fmt::format("{}: bucket {} is not served in region {} at {} ({}): set AWS_REGION or the endpoint",
                                    location_, bucket, settings_.region, settings_.endpoint, tag));
    if (code == "XAmzContentSHA256Mismatch" || code == "BadDigest")
        return scrubbed(Errc::io, fmt::format("{}: cannot {}: the bytes the server received differ from those sent ({}); did the "
                                              "file change while it was sent?",
                                              location_, what, tag));
    if (st == 501)
        return scrubbed(Errc::unsupported, fmt::format("{}: cannot {}: the server does not implement it ({})", location_, what, tag));
    if (code == "RequestTimeout" || code == "SlowDown" || code == "OperationAborted" || st == 429 || st >= 500)
        return scrubbed(Errc::unavailable,
                        fmt::format("{}: cannot {}: the server is unavailable or overloaded ({}); try again later", location_, what, tag));
    std::string detail = doc.message.empty() ? "" : ": " + doc.message.substr(0, 300);
    return scrubbed(Errc::io, fmt::format("{}: cannot {}: the server answered {}{}", location_, what, tag, detail));
}

Result<std::vector<Entry>> S3Backend::list(const std::string& prefix) {
    const std::string base = url_.prefix.empty() ? "" : url_.prefix + "/";
    const Call call{Op::list, prefix};
    std::vector<Entry> out;
    std::string token;
    for (;;) {
        // The query in SigV4's canonical form (parameters sorted, values escaped strictly):
        // libcurl 7.88 signs the query as it is written.
        std::string query;
        if (!token.empty()) query += "continuation-token=" + s3::uri_encode(token, false) + "&";
        query += fmt::format("list-type=2&max-keys={}&prefix={}", options_.max_keys, s3::uri_encode(base + prefix, false));
        net::Request req;
        req.url = settings_.endpoint + "/" + url_.bucket + "?" + query;
        DVOL_TRY(net::Response resp, send(req, kEmptySha256, call));
        if (resp.status != 200) return answer_error(resp, call);
        auto page = s3::parse_list_page(resp.body);
        if (!page) return scrubbed(Errc::io, fmt::format("{}: cannot {}: {}", location_, describe(call), page.error().message));
        for (auto& e : page->entries) {
            if (!e.key.starts_with(base)) continue;
            std::string key = e.key.substr(base.size());
            // A key no Backend could name (written by another tool) is not ours to list.
            if (valid_key(key)) out.push_back({std::move(key), e.size});
        }
        if (!page->truncated) break;
        if (page->next_token == token)
            return scrubbed(Errc::io, fmt::format("{}: cannot {}: the server repeats its continuation token", location_, describe(call)));
        token = std::move(page->next_token);
    }
    std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.key < b.key; });
    return out;
}

Status S3Backend::read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) {
    DVOL_CHECK(check_key(key));
    out.clear();
    const Call call{Op::read, key};
    net::Request req;
    req.url = object_url(key);
    // Zero bytes still tells whether the object exists: ask for its first byte and keep none.
    const uint64_t first = length == 0 ? 0 : offset;
    const uint64_t want = length;
    if (length == 0) req.headers.push_back("Range: bytes=0-0");
    else if (length - 1 > std::numeric_limits<uint64_t>::max() - offset) req.headers.push_back(fmt::format("Range: bytes={}-", offset));
    else req.headers.push_back(fmt::format("Range: bytes={}-{}", offset, offset + length - 1));
    out.reserve(static_cast<size_t>(std::min<uint64_t>(want, 16 << 20)));
    // A 206 holds the range; a 200 (a server that ignores Range) the whole object, of which
    // only the range is kept.
    uint64_t seen = 0;
    req.sink = [&](const net::Response& head, std::span<const std::byte> b) {
        const uint64_t start = head.status == 206 ? 0 : first;
        const uint64_t end = want > std::numeric_limits<uint64_t>::max() - start ? std::numeric_limits<uint64_t>::max() : start + want;
        const uint64_t lo = std::max(seen, start), hi = std::min(seen + b.size(), end);
        if (lo < hi) out.insert(out.end(), b.begin() + static_cast<ptrdiff_t>(lo - seen), b.begin() + static_cast<ptrdiff_t>(hi - seen));
        seen += b.size();
    };
    auto resp = send(req, kEmptySha256, call);
    if (!resp) {
        out.clear();
        return std::move(resp).error();
    }
    if (resp->status == 206 && length != 0) {
        const std::string* range = resp->header("content-range");
        if (!range || !range->starts_with(fmt::format("bytes {}-", offset))) {
            out.clear();
            return scrubbed(Errc::io, fmt::format("{}: cannot read {}: the server sent another range than bytes {}- ({})", location_,
                                                  key, offset, range ? *range : "no Content-Range"));
        }
    }
    if (resp->status == 200 || resp->status == 206) return {};
    out.clear();
    // The object exists (else 404) and the range starts at or past its end.
    if (resp->status == 416) return {};
    return answer_error(*resp, call);
}

Status S3Backend::read_all(const std::string& key, std::vector<std::byte>& out) {
    DVOL_CHECK(check_key(key));
    out.clear();
    const Call call{Op::read, key};
    net::Request req;
    req.url = object_url(key);
    req.sink = [&out](const net::Response& head, std::span<const std::byte> b) {
        // One allocation for the whole object, not a doubling vector (a 256 MiB pack could
        // end up in 512 MiB of capacity).
        if (out.empty())
            if (const std::string* len = head.header("content-length"))
                out.reserve(static_cast<size_t>(std::min<uint64_t>(std::strtoull(len->c_str(), nullptr, 10), kMaxPut)));
        out.insert(out.end(), b.begin(), b.end());
    };
    auto resp = send(req, kEmptySha256, call);
    if (resp && resp->status == 200) return {};
    out.clear();
    if (!resp) return std::move(resp).error();
    return answer_error(*resp, call);
}

Status S3Backend::put(const std::string& key, net::Request& req, const std::string& payload_sha256, const Call& call,
                      std::string* etag) {
    req.method = "PUT";
    req.url = object_url(key);
    DVOL_TRY(net::Response resp, send(req, payload_sha256, call));
    if (resp.status != 200 && resp.status != 201 && resp.status != 204) return answer_error(resp, call);
    if (etag) {
        const std::string* e = resp.header("etag");
        if (!e || s3::unquote_etag(*e).empty())
            return scrubbed(Errc::io, fmt::format("{}: cannot {}: the server's answer has no ETag to version it by", location_,
                                                  describe(call)));
        *etag = s3::unquote_etag(*e);
    }
    return {};
}

Status S3Backend::write(const std::string& key, std::span<const std::byte> data) {
    DVOL_CHECK(check_put(key, data.size()));
    net::Request req;
    req.body = data;
    return put(key, req, sha256(data).hex(), {Op::write, key}, nullptr);
}

Status S3Backend::write_file(const std::string& key, int fd, uint64_t size) {
    DVOL_CHECK(check_put(key, size));
    // One more read of the file, so that the server can check every byte it stores.
    auto hash = hash_file(fd, size);
    if (!hash) return make_error(hash.error().code, fmt::format("{}: cannot write {}: {}", location_, key, hash.error().message));
    return put_file(key, fd, size, *hash);
}

Status S3Backend::write_file_hashed(const std::string& key, int fd, uint64_t size, const ObjectId& sha256) {
    DVOL_CHECK(check_put(key, size));
    return put_file(key, fd, size, sha256.hex());
}

Status S3Backend::check_put(const std::string& key, uint64_t size) const {
    DVOL_CHECK(check_key(key));
    if (size > kMaxPut)
        return make_error(Errc::unsupported, fmt::format("{}: cannot write {}: S3 takes at most 5 GiB in one request", location_, key));
    return {};
}

Status S3Backend::put_file(const std::string& key, int fd, uint64_t size, const std::string& payload_sha256) {
    net::Request req;
    req.body_fd = fd;
    req.body_size = size;
    return put(key, req, payload_sha256, {Op::write, key}, nullptr);
}

Result<std::optional<S3Backend::StoredRef>> S3Backend::fetch_ref(const std::string& key) {
    const Call call{Op::read_ref, key};
    net::Request req;
    req.url = object_url(key);
    DVOL_TRY(net::Response resp, send(req, kEmptySha256, call));
    if (resp.status == 200) {
        const std::string* e = resp.header("etag");
        if (!e || s3::unquote_etag(*e).empty())
            return scrubbed(Errc::io, fmt::format("{}: cannot read ref {}: the server's answer has no ETag", location_, key));
        const std::string* tag = resp.header(kWriteTagHeader);
        return std::optional<StoredRef>(StoredRef{{std::move(resp.body), s3::unquote_etag(*e)}, tag ? *tag : ""});
    }
    if (resp.status == 404 && s3::parse_error(resp.body).code != "NoSuchBucket") return std::optional<StoredRef>();
    return answer_error(resp, call);
}

Result<std::optional<RefValue>> S3Backend::read_ref(const std::string& key) {
    DVOL_CHECK(check_key(key));
    DVOL_TRY(std::optional<StoredRef> ref, fetch_ref(key));
    if (!ref) return std::optional<RefValue>();
    return std::optional<RefValue>(std::move(ref->value));
}

Result<std::string> S3Backend::create_ref(const std::string& key, std::string_view data) {
    DVOL_CHECK(check_key(key));
    return put_ref({Op::create_ref, key}, data, nullptr);
}

Result<std::string> S3Backend::update_ref(const std::string& key, std::string_view data, const std::string& expected) {
    DVOL_CHECK(check_key(key));
    // RGW matches If-Match against the bare ETag only (the quoted form always fails).
    const std::string version = s3::unquote_etag(expected);
    // No ref ever has such a version, so the swap cannot succeed ("*" would match any).
    if (version.empty() || version.find_first_of("\r\n,*\"") != std::string::npos)
        return make_error(Errc::conflict, fmt::format("{}: cannot update ref {}: '{}' is not a version it can have", location_, key,
                                                      expected));
    return put_ref({Op::update_ref, key}, data, &version);
}

Result<std::string> S3Backend::put_ref(const Call& call, std::string_view data, const std::string* expected) {
    const std::string tag = fmt::format("{}-{}", session_, ++ref_writes_);
    net::Request req;
    req.headers.push_back(expected ? "If-Match: " + *expected : std::string("If-None-Match: *"));
    req.headers.push_back(fmt::format("{}: {}", kWriteTagHeader, tag));
    req.body = as_bytes(data);
    std::string etag;
    auto st = put(call.key, req, sha256(data).hex(), call, &etag);
    if (st) return etag;
    Error failure = std::move(st).error();
    if (failure.code != Errc::unavailable) return failure;

    // The outcome is unknown: no answer, or a 5xx, which is what RGW answers the loser of an
    // If-Match race when the object changed under its write. What the ref holds now tells.
    auto cur = fetch_ref(call.key);
    if (!cur) return failure;
    const std::optional<StoredRef>& ref = *cur;
    if (ref && ref->tag == tag) return ref->value.version;  // our write took
    // Nothing changed: the write did not happen, and trying again is safe.
    if (expected ? (ref && ref->value.version == *expected) : !ref) return failure;
    if (!ref) return scrubbed(Errc::conflict, fmt::format("{}: cannot update ref {}: it no longer exists", location_, call.key));
    return scrubbed(Errc::conflict, fmt::format("{}: cannot {}: {}", location_, describe(call),
                                                expected ? "it changed since it was read" : "it already exists"));
}

Status S3Backend::remove(const std::string& key) {
    DVOL_CHECK(check_key(key));
    const Call call{Op::remove, key};
    net::Request req;
    req.method = "DELETE";
    req.url = object_url(key);
    DVOL_TRY(net::Response resp, send(req, kEmptySha256, call));
    if (resp.status == 204 || resp.status == 200) return {};
    if (resp.status == 404 && s3::parse_error(resp.body).code != "NoSuchBucket") return {};
    return answer_error(resp, call);
}

}  // namespace dvol::remote
