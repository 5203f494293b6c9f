// A remote in an S3 bucket: s3://BUCKET/PREFIX on AWS S3, Ceph RGW, MinIO or any store that
// speaks the S3 API with Signature V4, path-style (ENDPOINT/BUCKET/KEY). Each key of the
// Backend is the object PREFIX/KEY.
//
// - Objects are single PUTs (up to 5 GiB: Errc::unsupported beyond), each carrying the
//   SHA-256 of its bytes, which the server checks before it stores them.
// - Refs are objects changed by conditional PUTs: create_ref with "If-None-Match: *",
//   update_ref with "If-Match: <version>", where a version is the object's ETag without its
//   quotes (the MD5 of its bytes, on AWS and RGW alike). Each ref write carries a tag of its
//   own (user metadata), so that when its answer is lost or ambiguous, reading the ref back
//   tells whether it took. A store that ignores the conditional headers cannot hold refs
//   safely; Ceph RGW honours them.
// - list() pages through ListObjectsV2.
// Settings (endpoint, region, credentials) come from S3Options and the environment as
// s3::resolve_settings (remote/s3_protocol.h) says. The bucket must exist: dvol never creates
// one.
//
// Errors (see Backend): 403 and other refusals of the credentials -> Errc::denied, naming the
// bucket and where the credentials came from, never them; a missing bucket -> Errc::not_found
// ("bucket B does not exist"); a lost compare-and-swap (412, 409) -> Errc::conflict; no
// answer, a timeout, a stalled transfer, 5xx, 429 and SlowDown -> Errc::unavailable (except
// 501 -> Errc::unsupported and 507 -> Errc::no_space); quota exceeded or entity too large ->
// Errc::no_space; anything else -> Errc::io with the S3 error code and HTTP status.
#pragma once

#include <memory>
#include <string>

#include "net/http.h"
#include "remote/backend.h"
#include "remote/s3_protocol.h"

namespace dvol::remote {

struct S3Options {
    // scheme://host[:port]; empty: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's
    // endpoint_url, else AWS's endpoint for the region.
    std::string endpoint;
    // Empty: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else us-east-1.
    std::string region;
    long connect_timeout_s = 10;
    // A request that moves no byte for this long fails as Errc::unavailable.
    long stall_timeout_s = 30;
    // Keys per ListObjectsV2 page, 1 to 1000 (tests use small pages).
    int max_keys = 1000;
};

class S3Backend final : public Backend {
public:
    // The remote at `url` (s3://BUCKET[/PREFIX]), with settings from `options` and `env`.
    // Sends nothing yet: a missing bucket or wrong credentials show at the first request.
    static Result<std::unique_ptr<S3Backend>> open(const std::string& url, const S3Options& options,
                                                   const s3::EnvLookup& env);
    // The same with the process environment.
    static Result<std::unique_ptr<S3Backend>> open(const std::string& url, const S3Options& options);

    const std::string& location() const override { return location_; }
    const std::string& endpoint() const { return settings_.endpoint; }
    const std::string& region() const { return settings_.region; }

    Result<std::vector<Entry>> list(const std::string& prefix) override;
    Status read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) override;
    Status read_all(const std::string& key, std::vector<std::byte>& out) override;
    Status write(const std::string& key, std::span<const std::byte> data) override;
    Status write_file(const std::string& key, int fd, uint64_t size) override;
    Status write_file_hashed(const std::string& key, int fd, uint64_t size, const ObjectId& sha256) override;
    Result<std::optional<RefValue>> read_ref(const std::string& key) override;
    Result<std::string> create_ref(const std::string& key, std::string_view data) override;
    Result<std::string> update_ref(const std::string& key, std::string_view data, const std::string& expected) override;
    Status remove(const std::string& key) override;

private:
    S3Backend() = default;

    // What a request is for: chooses how its failures read and map.
    enum class Op { list, read, write, read_ref, create_ref, update_ref, remove };
    struct Call {
        Op op;
        std::string key;  // the Backend's key ("" for a listing)
    };

    static std::string describe(const Call& call);  // "read packs/x", for messages
    Status check_key(const std::string& key) const;
    // check_key, and a size S3 takes in one PUT (5 GiB).
    Status check_put(const std::string& key, uint64_t size) const;
    std::string object_url(const std::string& key) const;
    // Sends `req` signed, with the payload hash (`payload_sha256`, hex) and the session token.
    Result<net::Response> send(net::Request& req, const std::string& payload_sha256, const Call& call);
    // The Error for an answer that is not a success.
    Error answer_error(const net::Response& resp, const Call& call) const;
    // An Error whose message has every credential blotted out, whatever it quotes.
    Error scrubbed(Errc code, std::string message) const;
    struct StoredRef {
        RefValue value;
        std::string tag;  // its write tag, "" when it has none
    };
    Result<std::optional<StoredRef>> fetch_ref(const std::string& key);
    // A conditional PUT of a ref (If-None-Match: * when `expected` is null, else If-Match)
    // tagged "<session_>-<n>" (user metadata, unique to this call); when its outcome is
    // unknown, the ref read back tells: our tag (it took), the expected state (it did not:
    // Errc::unavailable, safe to retry), anything else (Errc::conflict).
    Result<std::string> put_ref(const Call& call, std::string_view data, const std::string* expected);
    // PUT of `size` bytes of `fd` whose SHA-256 (hex) is `payload_sha256`.
    Status put_file(const std::string& key, int fd, uint64_t size, const std::string& payload_sha256);
    Status put(const std::string& key, net::Request& req, const std::string& payload_sha256, const Call& call,
               std::string* etag);

    std::string location_;
    std::string session_;  // random, per backend: part of each ref write's tag
    uint64_t ref_writes_ = 0;
    s3::Url url_;
    s3::Settings settings_;
    S3Options options_;
    net::AwsSigV4 sigv4_;
    std::unique_ptr<net::Client> http_;
};

}  // namespace dvol::remote
