// The S3 remote (lib/remote/s3_backend.cpp, s3_protocol.cpp).
//
// Without a server: URLs, settings and credentials from a fake environment and files, the XML
// documents, and the failures of a server that refuses connections or never answers.
//
// Against a real S3 server, when the environment names one (tests/e2e/test_s3.sh starts a
// Ceph RGW and sets these; without them these cases print "SKIP: ..." and pass):
//   DVOL_TEST_REMOTE_URL   s3://BUCKET[/PREFIX] (the bucket must exist; each case works under
//                          a fresh random prefix below it and removes what it wrote)
//   AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and optionally AWS_REGION)
// Hidden cases the e2e script runs on purpose:
//   [.s3-down]   the server named above is stopped or frozen: every operation is unavailable
//   [.s3-quota]  DVOL_TEST_S3_QUOTA_URL names a bucket whose quota is under 1 MiB: no_space
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <latch>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "remote/s3_backend.h"
#include "remote/s3_protocol.h"
#include "store/hash.h"
#include "support.h"
#include "tiny_server.h"

using namespace dvol;
using namespace dvol::remote;
using dvol::test::TempDir;
using dvol::test::TinyServer;
using dvol::test::answer;
using dvol::test::request_header;

namespace {

// A fake environment: exactly these variables.
s3::EnvLookup fake_env(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
        auto it = vars.find(std::string(name));
        if (it == vars.end() || it->second.empty()) return std::nullopt;
        return it->second;
    };
}

// The process environment with some variables replaced ("" removes one).
s3::EnvLookup env_with(std::map<std::string, std::string> overrides) {
    return [overrides = std::move(overrides), real = s3::process_env()](std::string_view name) -> std::optional<std::string> {
        auto it = overrides.find(std::string(name));
        if (it != overrides.end()) return it->second.empty() ? std::nullopt : std::optional<std::string>(it->second);
        return real(name);
    };
}

// No credential appears in the message.
void check_no_secret(const Error& e, std::initializer_list<std::string> secrets) {
    INFO("message: " << e.message);
    for (const auto& s : secrets) {
        if (s.empty()) continue;
        CHECK(e.message.find(s) == std::string::npos);
    }
}

std::string random_hex(size_t n) {
    std::random_device rd;
    std::mt19937_64 rng(rd());
    std::string out;
    while (out.size() < n) out += fmt::format("{:016x}", rng());
    return out.substr(0, n);
}

// A port on 127.0.0.1 that refuses connections (it was free a moment ago).
int closed_port() {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
    return ntohs(a.sin_port);
}

// The server named by the environment, or nullopt (the caller prints SKIP).
struct Server {
    std::string url;  // DVOL_TEST_REMOTE_URL
    std::string access_key, secret_key;
};
std::optional<Server> server() {
    auto env = s3::process_env();
    auto url = env("DVOL_TEST_REMOTE_URL");
    if (!url || !url->starts_with("s3://") || !env("AWS_ACCESS_KEY_ID") || !env("AWS_SECRET_ACCESS_KEY")) return std::nullopt;
    return Server{*url, *env("AWS_ACCESS_KEY_ID"), *env("AWS_SECRET_ACCESS_KEY")};
}
#define NEED_SERVER(srv)                                                                                              \
    auto srv = server();                                                                                              \
    if (!srv) {                                                                                                       \
        WARN("SKIP: no S3 server: set DVOL_TEST_REMOTE_URL=s3://BUCKET/PREFIX, AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID " \
             "and AWS_SECRET_ACCESS_KEY (tests/e2e/test_s3.sh runs these against a real Ceph RGW)");                 \
        return;                                                                                                       \
    }

std::unique_ptr<S3Backend> open_s3(const std::string& url, S3Options o = {}, s3::EnvLookup env = s3::process_env()) {
    auto b = S3Backend::open(url, o, env);
    if (!b) FAIL(b.error().message);
    return std::move(*b);
}

// A fresh random prefix under the server's URL; what the case wrote there goes at the end.
struct Scratch {
    std::string url;
    std::unique_ptr<S3Backend> s3;
    explicit Scratch(const Server& srv, S3Options o = {}) {
        std::string base = srv.url;
        while (base.ends_with("/")) base.pop_back();
        url = base + "/t-" + random_hex(12);
        s3 = open_s3(url, o);
    }
    ~Scratch() {
        auto keys = s3->list("");
        if (!keys) return;
        for (const auto& e : *keys) (void)s3->remove(e.key);
    }
};

std::string text(const std::vector<std::byte>& b) { return test::string_of(b); }

// Resident memory of this process in KiB: its peak since reset_peak_rss(), and now.
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }
long peak_rss_kib() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.starts_with("VmHWM:")) return std::stol(line.substr(6));
    return -1;
}
long rss_kib() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
    return -1;
}

}  // namespace

// ---- without a server ----------------------------------------------------------------------

TEST_CASE("s3:// URLs: bucket and prefix; refused forms", "[s3]") {
    auto u = s3::parse_url("s3://my-bucket");
    REQUIRE(u.ok());
    CHECK(u->bucket == "my-bucket");
    CHECK(u->prefix.empty());
    u = s3::parse_url("s3://my.bucket_1/team/db/");
    REQUIRE(u.ok());
    CHECK(u->bucket == "my.bucket_1");
    CHECK(u->prefix == "team/db");
    u = s3::parse_url("s3://bkt/");
    REQUIRE(u.ok());
    CHECK(u->prefix.empty());
    for (const char* bad : {"s3:/bkt", "http://bkt/x", "s3://", "s3://ab", "s3://bk t/x", "s3://bkt//x", "s3://bkt/a/../b",
                            "s3://bkt/a b"}) {
        INFO(bad);
        auto r = s3::parse_url(bad);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::invalid_argument);
    }
    // A URL that carries credentials is refused without repeating them.
    for (const char* creds : {"s3://AKIDEXAMPLE:wJalrXUtnFEMI@bkt/x", "s3://AKIDEXAMPLE@bkt"}) {
        auto r = s3::parse_url(creds);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::invalid_argument);
        check_no_secret(r.error(), {"AKIDEXAMPLE", "wJalrXUtnFEMI"});
    }
}

TEST_CASE("SigV4 escaping and ETags", "[s3]") {
    CHECK(s3::uri_encode("packs/ab-c_d.e~f", true) == "packs/ab-c_d.e~f");
    CHECK(s3::uri_encode("packs/ab", false) == "packs%2Fab");
    CHECK(s3::uri_encode("a b+c=d&e%", false) == "a%20b%2Bc%3Dd%26e%25");
    CHECK(s3::uri_encode("\xc3\xa9", false) == "%C3%A9");
    CHECK(s3::unquote_etag("\"5d41402abc4b2a76b9719d911017c592\"") == "5d41402abc4b2a76b9719d911017c592");
    CHECK(s3::unquote_etag("5d41402abc4b2a76b9719d911017c592") == "5d41402abc4b2a76b9719d911017c592");
    CHECK(s3::unquote_etag("W/\"abc\"") == "abc");
}

TEST_CASE("ListObjectsV2 pages: keys, sizes, entities, continuation", "[s3]") {
    // As Ceph RGW 16 writes it (one line, a namespace, entities in keys and tokens).
    std::string rgw =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Name>bkt</Name><Prefix></Prefix><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>"
        "<Contents><Key>a</Key><LastModified>2026-12-04T23:03:50.489Z</LastModified>"
        "<ETag>&quot;5d41402abc4b2a76b9719d911017c592&quot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass>"
        "<Type>Normal</Type></Contents>"
        "<Contents><Key>we&amp;ird&lt;key&#x2F;&#47;&gt;&apos;&#233;</Key><Size>18446744073709551615</Size></Contents>"
        "<NextContinuationToken>we&amp;ird&lt;key</NextContinuationToken><KeyCount>2</KeyCount></ListBucketResult>";
    auto page = s3::parse_list_page(rgw);
    REQUIRE(page.ok());
    REQUIRE(page->entries.size() == 2);
    CHECK(page->entries[0].key == "a");
    CHECK(page->entries[0].size == 5);
    CHECK(page->entries[1].key == "we&ird<key//>'\xc3\xa9");
    CHECK(page->entries[1].size == 18446744073709551615ull);
    CHECK(page->truncated);
    CHECK(page->next_token == "we&ird<key");

    // AWS's layout: pretty-printed, a CDATA section, a comment, an empty listing.
    std::string last = "<?xml version=\"1.0\"?>\n<!-- hi -->\n<ListBucketResult>\n  <IsTruncated>false</IsTruncated>\n"
                       "  <Contents>\n    <Key><![CDATA[x<y]]></Key>\n    <Size>0</Size>\n  </Contents>\n"
                       "  <CommonPrefixes><Prefix>not/a/key</Prefix></CommonPrefixes>\n</ListBucketResult>\n";
    page = s3::parse_list_page(last);
    REQUIRE(page.ok());
    REQUIRE(page->entries.size() == 1);
    CHECK(page->entries[0].key == "x<y");
    CHECK_FALSE(page->truncated);
    page = s3::parse_list_page("<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>");
    REQUIRE(page.ok());
    CHECK(page->entries.empty());

    for (const char* bad : {
             "",                                                                                   // nothing
             "<ListBucketResult><IsTruncated>false</IsTruncated>",                                 // truncated document
             "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",               // no token
             "<ListBucketResult><Contents><Key>a</Key></Contents><IsTruncated>false</IsTruncated></ListBucketResult>",
             "<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents><IsTruncated>false</IsTruncated></ListBucketResult>",
             "<ListBucketResult><Contents><Key>a&bogus;</Key><Size>1</Size></Contents></ListBucketResult>",
             "<ListBucketResult><IsTruncated>false</Truncated></ListBucketResult>",                // mismatched tags
             "<Error><Code>NoSuchBucket</Code></Error>",                                           // another document
             "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult><X/>",          // two roots
             "<ListBucketResult><Contents><Key>a</Key><Size>1</Size></Contents>"                   // no IsTruncated
             "</ListBucketResult>",
         }) {
        INFO(bad);
        auto r = s3::parse_list_page(bad);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::io);
    }
}

TEST_CASE("S3 error documents", "[s3]") {
    auto doc = s3::parse_error("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code>"
                               "<Message>a &amp; b</Message><RequestId>tx1</RequestId></Error>");
    CHECK(doc.code == "SignatureDoesNotMatch");
    CHECK(doc.message == "a & b");
    CHECK(s3::parse_error("").code.empty());
    CHECK(s3::parse_error("<html><body>502 Bad Gateway</body></html>").code.empty());
    CHECK(s3::parse_error("<Error><Code>Truncat").code.empty());
}

TEST_CASE("INI files as the AWS tools write them", "[s3]") {
    auto ini = s3::parse_ini("# comment\n[default]\nAWS_Access_Key_ID = AK1 \r\n; other\n[profile dev]\nregion=eu-west-3\n"
                             "s3 =\n    endpoint_url = http://nested\n    region = nested\nendpoint_url = http://top\n");
    REQUIRE(ini.size() == 2);
    CHECK(ini[0].first == "default");
    REQUIRE(ini[0].second.size() == 1);
    CHECK(ini[0].second[0] == std::pair<std::string, std::string>{"aws_access_key_id", "AK1"});
    CHECK(ini[1].first == "profile dev");
    REQUIRE(ini[1].second.size() == 3);
    CHECK(ini[1].second[0].second == "eu-west-3");
    CHECK(ini[1].second[1].first == "s3");
    CHECK(ini[1].second[2] == std::pair<std::string, std::string>{"endpoint_url", "http://top"});
}

TEST_CASE("S3 settings: endpoint, region and credentials, in their order", "[s3]") {
    TempDir dir;
    const std::string home = dir.path();
    REQUIRE(make_dirs(home + "/.aws").ok());
    test::write_file(home + "/.aws/credentials",
                     std::string_view("[default]\naws_access_key_id = FILEKEY0001\naws_secret_access_key = FILESECRET0001\n"
                                      "[dev]\naws_access_key_id = DEVKEY0002\naws_secret_access_key = DEVSECRET0002\n"
                                      "aws_session_token = DEVTOKEN0002\n[half]\naws_access_key_id = HALFKEY0003\n"));
    test::write_file(home + "/.aws/config",
                     std::string_view("[default]\nregion = eu-central-1\n[profile dev]\nregion = ap-south-1\n"
                                      "endpoint_url = http://127.0.0.1:9000/\n[profile cfgonly]\n"
                                      "aws_access_key_id = CFGKEY0004\naws_secret_access_key = CFGSECRET0004\n"));

    SECTION("the environment's keys come first, with the token; region and endpoint from variables") {
        auto s = s3::resolve_settings("", "", fake_env({{"HOME", home}, {"AWS_ACCESS_KEY_ID", "ENVKEY"}, {"AWS_SECRET_ACCESS_KEY", "ENVSECRET"},
                                                        {"AWS_SESSION_TOKEN", "ENVTOKEN"}, {"AWS_REGION", "us-west-2"},
                                                        {"AWS_DEFAULT_REGION", "eu-north-1"}, {"AWS_ENDPOINT_URL", "http://127.0.0.1:1/"},
                                                        {"AWS_ENDPOINT_URL_S3", "https://s3.example:8443"}}));
        REQUIRE(s.ok());
        CHECK(s->credentials.access_key == "ENVKEY");
        CHECK(s->credentials.secret_key == "ENVSECRET");
        CHECK(s->credentials.session_token == "ENVTOKEN");
        CHECK(s->credentials.source == "AWS_ACCESS_KEY_ID in the environment");
        CHECK(s->region == "us-west-2");
        CHECK(s->endpoint == "https://s3.example:8443");
    }
    SECTION("explicit endpoint and region win over everything") {
        auto s = s3::resolve_settings("http://127.0.0.1:7480/", "r1", fake_env({{"HOME", home}, {"AWS_REGION", "us-west-2"},
                                                                               {"AWS_ENDPOINT_URL", "http://other"}}));
        REQUIRE(s.ok());
        CHECK(s->endpoint == "http://127.0.0.1:7480");
        CHECK(s->region == "r1");
    }
    SECTION("default profile: credentials file, config's region, AWS's regional endpoint") {
        auto s = s3::resolve_settings("", "", fake_env({{"HOME", home}}));
        REQUIRE(s.ok());
        CHECK(s->credentials.access_key == "FILEKEY0001");
        CHECK(s->credentials.secret_key == "FILESECRET0001");
        CHECK(s->credentials.session_token.empty());
        CHECK(s->credentials.source == "profile 'default' in " + home + "/.aws/credentials");
        CHECK(s->region == "eu-central-1");
        CHECK(s->endpoint == "https://s3.eu-central-1.amazonaws.com");
        s = s3::resolve_settings("", "", fake_env({{"HOME", home}, {"AWS_DEFAULT_REGION", "eu-north-1"}}));
        REQUIRE(s.ok());
        CHECK(s->region == "eu-north-1");
    }
    SECTION("AWS_PROFILE: its keys and token, its [profile NAME] config section") {
        auto s = s3::resolve_settings("", "", fake_env({{"HOME", home}, {"AWS_PROFILE", "dev"}}));
        REQUIRE(s.ok());
        CHECK(s->credentials.access_key == "DEVKEY0002");
        CHECK(s->credentials.session_token == "DEVTOKEN0002");
        CHECK(s->region == "ap-south-1");
        CHECK(s->endpoint == "http://127.0.0.1:9000");
        s = s3::resolve_settings("", "", fake_env({{"HOME", home}, {"AWS_PROFILE", "cfgonly"}}));
        REQUIRE(s.ok());
        CHECK(s->credentials.access_key == "CFGKEY0004");
        CHECK(s->credentials.source == "profile 'cfgonly' in " + home + "/.aws/config");
        CHECK(s->region == "us-east-1");
    }
    SECTION("files named by AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE") {
        test::write_file(dir / "c", std::string_view("[default]\naws_access_key_id=OTHERKEY\naws_secret_access_key=OTHERSECRET\n"));
        auto s = s3::resolve_settings("", "", fake_env({{"HOME", home}, {"AWS_SHARED_CREDENTIALS_FILE", dir / "c"},
                                                        {"AWS_CONFIG_FILE", dir / "none"}}));
        REQUIRE(s.ok());
        CHECK(s->credentials.access_key == "OTHERKEY");
        CHECK(s->region == "us-east-1");
    }
    SECTION("missing or half credentials are refused, naming variables and files, never values") {
        auto s = s3::resolve_settings("", "", fake_env({{"HOME", home}, {"AWS_ACCESS_KEY_ID", "LONEKEY"}}));
        REQUIRE_FALSE(s.ok());
        CHECK(s.error().code == Errc::invalid_argument);
        CHECK_THAT(s.error().message, Catch::Contains("AWS_SECRET_ACCESS_KEY"));
        check_no_secret(s.error(), {"LONEKEY"});
        s = s3::resolve_settings("", "", fake_env({{"HOME", home}, {"AWS_SECRET_ACCESS_KEY", "LONESECRET"}}));
        REQUIRE_FALSE(s.ok());
        check_no_secret(s.error(), {"LONESECRET"});
        s = s3::resolve_settings("", "", fake_env({{"HOME", home}, {"AWS_PROFILE", "half"}}));
        REQUIRE_FALSE(s.ok());
        CHECK_THAT(s.error().message, Catch::Contains("aws_secret_access_key"));
        check_no_secret(s.error(), {"HALFKEY0003"});
        s = s3::resolve_settings("", "", fake_env({{"HOME", home}, {"AWS_PROFILE", "nosuch"}}));
        REQUIRE_FALSE(s.ok());
        CHECK_THAT(s.error().message, Catch::Contains("profile 'nosuch'"));
        s = s3::resolve_settings("", "", fake_env({{"HOME", dir / "empty-home"}}));
        REQUIRE_FALSE(s.ok());
        CHECK_THAT(s.error().message, Catch::Contains("no S3 credentials"));
    }
    SECTION("endpoints: http or https, no credentials in them") {
        auto env = fake_env({{"HOME", home}});
        for (const char* bad : {"127.0.0.1:7480", "ftp://host", "http://", "http://USERKEY:PASSSECRET@host", "http://h/x?y=1"}) {
            INFO(bad);
            auto s = s3::resolve_settings(bad, "", env);
            REQUIRE_FALSE(s.ok());
            CHECK(s.error().code == Errc::invalid_argument);
            check_no_secret(s.error(), {"USERKEY", "PASSSECRET"});
        }
        auto s = s3::resolve_settings("", "bad region", env);
        REQUIRE_FALSE(s.ok());
    }
}

TEST_CASE("an S3 server that refuses connections or never answers is unavailable; no credential in messages", "[s3]") {
    const std::string key = "AKIATESTNOSERVER0001", secret = "secretNoServerSecretNoServer01", token = "TOKENnoServer0001";
    auto env = fake_env({{"HOME", "/nonexistent"}, {"AWS_ACCESS_KEY_ID", key}, {"AWS_SECRET_ACCESS_KEY", secret},
                         {"AWS_SESSION_TOKEN", token}});
    S3Options o;
    o.stall_timeout_s = 1;
    o.endpoint = "http://127.0.0.1:" + std::to_string(closed_port());
    auto s3 = open_s3("s3://bkt/p", o, env);
    CHECK(s3->location() == "s3://bkt/p");
    std::vector<std::byte> out;
    auto st = s3->read_all("packs/x", out);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::unavailable);
    CHECK_THAT(st.error().message, Catch::Contains("s3://bkt/p") && Catch::Contains("packs/x"));
    check_no_secret(st.error(), {key, secret, token});
    auto ref = s3->create_ref("refs/main", "x");
    REQUIRE_FALSE(ref.ok());
    CHECK(ref.error().code == Errc::unavailable);
    check_no_secret(ref.error(), {key, secret, token});

    // Accepts the connection (the kernel's backlog) and never answers.
    UniqueFd mute(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(mute.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(mute.get(), 16) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(mute.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
    o.endpoint = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    s3 = open_s3("s3://bkt", o, env);
    auto keys = s3->list("");
    REQUIRE_FALSE(keys.ok());
    CHECK(keys.error().code == Errc::unavailable);
    check_no_secret(keys.error(), {key, secret, token});
    st = s3->write("packs/y", test::bytes_of("data"));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::unavailable);

    // Keys are checked before anything is sent.
    st = s3->write("../x", test::bytes_of("data"));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::invalid_argument);
    // A version no ref can have loses the swap without a request.
    for (const char* bad : {"", "*", "a,b", "\"\""}) {
        auto upd = s3->update_ref("refs/main", "x", bad);
        REQUIRE_FALSE(upd.ok());
        CHECK(upd.error().code == Errc::conflict);
    }
}

// ---- against a scripted server: answers a real one rarely gives ---------------------------

namespace {

const std::string kKey = "AKIAFAKESERVER000001", kSecret = "fakeServerSecretfakeServerSecret00001", kToken = "FakeServerToken0001";

std::unique_ptr<S3Backend> fake_s3(const TinyServer& srv, bool token = false) {
    S3Options o;
    o.endpoint = srv.base_url();
    o.stall_timeout_s = 5;
    std::map<std::string, std::string> env{{"HOME", "/nonexistent"}, {"AWS_ACCESS_KEY_ID", kKey}, {"AWS_SECRET_ACCESS_KEY", kSecret}};
    if (token) env["AWS_SESSION_TOKEN"] = kToken;
    return open_s3("s3://bkt/p", o, fake_env(env));
}

std::string error_xml(const std::string& code, const std::string& message = "") {
    return "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>" + code + "</Code><Message>" + message +
           "</Message><RequestId>tx1</RequestId></Error>";
}

std::string s3_answer(int status, const std::string& code, const std::string& message = "") {
    return answer(status, "Whatever", error_xml(code, message), "Content-Type: application/xml\r\n");
}

}  // namespace

TEST_CASE("requests are signed by libcurl with the payload's SHA-256 and the session token", "[s3]") {
    TinyServer srv({answer(200, "OK", "", "ETag: \"e\"\r\n"), answer(200, "OK", "x")});
    auto s3 = fake_s3(srv, true);
    REQUIRE(s3->write("packs/a", test::bytes_of("hello")).ok());
    std::vector<std::byte> out;
    REQUIRE(s3->read_all("packs/a", out).ok());
    auto reqs = srv.requests();
    REQUIRE(reqs.size() == 2);
    CHECK(reqs[0].starts_with("PUT /bkt/p/packs/a HTTP/1.1\r\n"));
    CHECK(request_header(reqs[0], "x-amz-content-sha256") == sha256(std::string_view("hello")).hex());
    CHECK(request_header(reqs[0], "x-amz-security-token") == kToken);
    const std::string auth = request_header(reqs[0], "authorization");
    CHECK(auth.starts_with("AWS4-HMAC-SHA256 Credential=" + kKey + "/"));
    CHECK_THAT(auth, Catch::Contains("/us-east-1/s3/aws4_request") && Catch::Contains("x-amz-content-sha256") &&
                         Catch::Contains("x-amz-security-token") && Catch::Contains("Signature="));
    CHECK(auth.find(kSecret) == std::string::npos);
    CHECK(reqs[1].starts_with("GET /bkt/p/packs/a HTTP/1.1\r\n"));
    CHECK(request_header(reqs[1], "x-amz-content-sha256") == sha256(std::string_view("")).hex());
}

TEST_CASE("S3 answers map to error kinds; no credential in a message, even one the server echoes", "[s3]") {
    struct Case {
        int status;
        std::string code;
        Errc want;
        std::string says;
    };
    const std::vector<Case> cases = {
        {403, "SignatureDoesNotMatch", Errc::denied, "refused the credentials from AWS_ACCESS_KEY_ID in the environment for bucket bkt"},
        {403, "InvalidAccessKeyId", Errc::denied, "refused the credentials"},
        {400, "ExpiredToken", Errc::denied, "refused the credentials"},
        {403, "AccessDenied", Errc::denied, "bucket bkt refused access"},
        {403, "RequestTimeTooSkewed", Errc::denied, "clock"},
        {403, "QuotaExceeded", Errc::no_space, "quota"},
        {400, "EntityTooLarge", Errc::no_space, "full"},
        {507, "InsufficientCapacity", Errc::no_space, "full"},
        {404, "NoSuchBucket", Errc::not_found, "bucket bkt does not exist at http://127.0.0.1:"},
        {500, "InternalError", Errc::unavailable, "InternalError, HTTP 500"},
        {503, "SlowDown", Errc::unavailable, "SlowDown, HTTP 503"},
        {429, "TooManyRequests", Errc::unavailable, "HTTP 429"},
        {400, "RequestTimeout", Errc::unavailable, "RequestTimeout"},
        {501, "NotImplemented", Errc::unsupported, "does not implement"},
        {301, "PermanentRedirect", Errc::invalid_argument, "region us-east-1"},
        {400, "AuthorizationHeaderMalformed", Errc::invalid_argument, "AWS_REGION"},
        {400, "XAmzContentSHA256Mismatch", Errc::io, "differ from those sent"},
        {409, "BucketNotEmpty", Errc::io, "BucketNotEmpty, HTTP 409"},
        {400, "InvalidArgument", Errc::io, "InvalidArgument, HTTP 400: key " /* the server's Message, scrubbed */},
    };
    for (const auto& c : cases) {
        INFO(c.status << " " << c.code);
        TinyServer srv({s3_answer(c.status, c.code, "key " + kKey + " secret " + kSecret + " token " + kToken)});
        auto s3 = fake_s3(srv, true);
        auto st = s3->write("packs/a", test::bytes_of("x"));
        REQUIRE_FALSE(st.ok());
        INFO(st.error().message);
        CHECK(st.error().code == c.want);
        CHECK_THAT(st.error().message, Catch::Contains(c.says) && Catch::StartsWith("s3://bkt/p: "));
        check_no_secret(st.error(), {kKey, kSecret, kToken});
    }
    // Not XML at all (a proxy's page).
    TinyServer html({answer(502, "Bad Gateway", "<html><body>bad gateway</body></html>")});
    auto st = fake_s3(html)->write("packs/a", test::bytes_of("x"));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::unavailable);
    CHECK_THAT(st.error().message, Catch::Contains("HTTP 502"));
}

TEST_CASE("ranged reads from a server that ignores Range, or answers another range", "[s3]") {
    TinyServer srv({answer(200, "OK", "0123456789"), answer(200, "OK", "0123456789"),
                    answer(206, "Partial Content", "01", "Content-Range: bytes 0-1/10\r\n")});
    auto s3 = fake_s3(srv);
    std::vector<std::byte> out;
    REQUIRE(s3->read("k", 3, 4, out).ok());
    CHECK(text(out) == "3456");
    REQUIRE(s3->read("k", 8, 10, out).ok());
    CHECK(text(out) == "89");
    auto st = s3->read("k", 5, 2, out);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::io);
    CHECK(out.empty());
    auto reqs = srv.requests();
    CHECK(request_header(reqs[0], "range") == "bytes=3-6");
    CHECK(request_header(reqs[1], "range") == "bytes=8-17");
}

TEST_CASE("listing pages: the query in canonical order, tokens escaped, foreign keys skipped", "[s3]") {
    auto page = [](const std::string& contents, const std::string& next) {
        return answer(200, "OK",
                      "<ListBucketResult><IsTruncated>" + std::string(next.empty() ? "false" : "true") + "</IsTruncated>" + contents +
                          (next.empty() ? "" : "<NextContinuationToken>" + next + "</NextContinuationToken>") + "</ListBucketResult>");
    };
    auto item = [](const std::string& key, int size) {
        return "<Contents><Key>" + key + "</Key><Size>" + std::to_string(size) + "</Size></Contents>";
    };
    TinyServer srv({page(item("p/refs/b", 2) + item("p/bad//key", 1) + item("p/refs/a", 1), "a+b/=&amp;"),
                    page(item("p/refs/c", 3) + item("elsewhere/x", 1), "")});
    auto s3 = fake_s3(srv);
    auto keys = s3->list("refs/");
    REQUIRE(keys.ok());
    REQUIRE(keys->size() == 3);
    CHECK((*keys)[0].key == "refs/a");
    CHECK((*keys)[1].key == "refs/b");
    CHECK((*keys)[2].key == "refs/c");
    CHECK((*keys)[2].size == 3);
    auto reqs = srv.requests();
    REQUIRE(reqs.size() == 2);
    CHECK(reqs[0].starts_with("GET /bkt?list-type=2&max-keys=1000&prefix=p%2Frefs%2F HTTP/1.1\r\n"));
    CHECK(reqs[1].starts_with("GET /bkt?continuation-token=a%2Bb%2F%3D%26&list-type=2&max-keys=1000&prefix=p%2Frefs%2F HTTP/1.1\r\n"));

    // A server that hands out the same token again is not followed forever.
    TinyServer loop({page("", "t1"), page("", "t1")});
    keys = fake_s3(loop)->list("");
    REQUIRE_FALSE(keys.ok());
    CHECK(keys.error().code == Errc::io);
}

TEST_CASE("a ref write whose answer is a 5xx is settled by reading the ref back", "[s3]") {
    // The server answers the PUT with `put_status`, then the GET with the ref as `state` says:
    // "ours" (our tag, version v2), "unchanged" (version v1), "other" (v3, another tag),
    // "missing" (404).
    auto run = [](int put_status, const std::string& state, bool create) {
        auto tag = std::make_shared<std::string>();
        TinyServer srv(
            [=](const std::string& req) {
                if (req.starts_with("PUT ")) {
                    *tag = request_header(req, "x-amz-meta-dvol-write");
                    return s3_answer(put_status, put_status == 412 ? "PreconditionFailed" : "UnknownError");
                }
                if (state == "missing") return s3_answer(404, "NoSuchKey");
                if (state == "ours") return answer(200, "OK", "new", "ETag: \"v2\"\r\nx-amz-meta-dvol-write: " + *tag + "\r\n");
                if (state == "unchanged") return answer(200, "OK", "old", "ETag: \"v1\"\r\nx-amz-meta-dvol-write: x-1\r\n");
                return answer(200, "OK", "new", "ETag: \"v3\"\r\nx-amz-meta-dvol-write: someone-else-1\r\n");
            },
            put_status == 412 ? 1 : 2);
        auto s3 = fake_s3(srv);
        auto r = create ? s3->create_ref("refs/main", "new") : s3->update_ref("refs/main", "new", "v1");
        CHECK_FALSE(tag->empty());
        CHECK(srv.requests().size() == (put_status == 412 ? 1u : 2u));
        return r;
    };
    auto r = run(500, "ours", false);
    REQUIRE(r.ok());
    CHECK(*r == "v2");
    r = run(500, "unchanged", false);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unavailable);
    r = run(500, "other", false);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::conflict);
    CHECK_THAT(r.error().message, Catch::Contains("changed since it was read"));
    r = run(503, "missing", false);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::conflict);
    r = run(500, "ours", true);
    REQUIRE(r.ok());
    CHECK(*r == "v2");
    r = run(503, "missing", true);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unavailable);
    r = run(500, "other", true);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::conflict);
    CHECK_THAT(r.error().message, Catch::Contains("already exists"));
    // A 412 is a definite answer: no read-back.
    r = run(412, "ours", false);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::conflict);
}

// ---- against a real S3 server ----------------------------------------------------------------

TEST_CASE("S3: write, read, ranges, list, remove", "[s3]") {
    NEED_SERVER(srv);
    Scratch t(*srv);
    auto& s3 = *t.s3;
    auto data = test::random_bytes(100'000, 1);
    REQUIRE(s3.write("packs/p1", data).ok());
    REQUIRE(s3.write("packs/p1", data).ok());  // the same bytes again
    REQUIRE(s3.write("packs/p2.idx", test::bytes_of("index")).ok());
    REQUIRE(s3.write("empty", std::span<const std::byte>()).ok());

    std::vector<std::byte> out;
    REQUIRE(s3.read_all("packs/p1", out).ok());
    CHECK(out == data);
    REQUIRE(s3.read("packs/p1", 1000, 5000, out).ok());
    CHECK(out == std::vector<std::byte>(data.begin() + 1000, data.begin() + 6000));
    REQUIRE(s3.read("packs/p1", 99'990, 100, out).ok());  // runs past the end
    CHECK(out == std::vector<std::byte>(data.end() - 10, data.end()));
    REQUIRE(s3.read("packs/p1", 100'000, 10, out).ok());  // starts at the end
    CHECK(out.empty());
    REQUIRE(s3.read("packs/p1", 5'000'000, 10, out).ok());  // far past it
    CHECK(out.empty());
    REQUIRE(s3.read("packs/p1", 7, 0, out).ok());
    CHECK(out.empty());
    REQUIRE(s3.read("packs/p1", 0, std::numeric_limits<uint64_t>::max(), out).ok());
    CHECK(out == data);
    REQUIRE(s3.read_all("empty", out).ok());
    CHECK(out.empty());
    REQUIRE(s3.read("empty", 0, 10, out).ok());
    CHECK(out.empty());

    for (uint64_t len : {uint64_t{0}, uint64_t{10}}) {
        auto st = s3.read("packs/missing", 0, len, out);
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().code == Errc::not_found);
        CHECK_THAT(st.error().message, Catch::Contains("packs/missing") && Catch::Contains(t.url));
    }
    auto st = s3.read_all("packs/missing", out);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::not_found);

    auto keys = s3.list("");
    REQUIRE(keys.ok());
    REQUIRE(keys->size() == 3);
    CHECK((*keys)[0].key == "empty");
    CHECK((*keys)[0].size == 0);
    CHECK((*keys)[1].key == "packs/p1");
    CHECK((*keys)[1].size == 100'000);
    CHECK((*keys)[2].key == "packs/p2.idx");
    keys = s3.list("packs/p2");
    REQUIRE(keys.ok());
    REQUIRE(keys->size() == 1);
    CHECK((*keys)[0].key == "packs/p2.idx");
    keys = s3.list("nothing/");
    REQUIRE(keys.ok());
    CHECK(keys->empty());

    REQUIRE(s3.remove("packs/p1").ok());
    REQUIRE(s3.remove("packs/p1").ok());  // gone already: fine
    st = s3.read_all("packs/p1", out);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::not_found);
    keys = s3.list("packs/");
    REQUIRE(keys.ok());
    CHECK(keys->size() == 1);
}

TEST_CASE("S3: listings page with continuation tokens", "[s3]") {
    NEED_SERVER(srv);
    S3Options small;
    small.max_keys = 7;
    Scratch t(*srv, small);
    std::vector<std::string> names;
    for (int i = 0; i < 25; ++i) names.push_back(fmt::format("k/{:03}", (i * 7) % 25));
    for (const auto& n : names) REQUIRE(t.s3->write(n, test::bytes_of(n)).ok());
    REQUIRE(t.s3->write("other", test::bytes_of("x")).ok());
    auto keys = t.s3->list("k/");
    REQUIRE(keys.ok());
    REQUIRE(keys->size() == 25);
    for (int i = 0; i < 25; ++i) {
        CHECK((*keys)[static_cast<size_t>(i)].key == fmt::format("k/{:03}", i));
        CHECK((*keys)[static_cast<size_t>(i)].size == 5);
    }
    keys = t.s3->list("");
    REQUIRE(keys.ok());
    CHECK(keys->size() == 26);
}

TEST_CASE("S3: more than 1000 keys page at the server's own limit", "[s3]") {
    NEED_SERVER(srv);
    Scratch t(*srv);
    constexpr int n = 1010;
    for (int i = 0; i < n; ++i) REQUIRE(t.s3->write(fmt::format("many/{:05}", i), test::bytes_of(std::to_string(i))).ok());
    auto keys = t.s3->list("many/");
    REQUIRE(keys.ok());
    REQUIRE(keys->size() == static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) CHECK((*keys)[static_cast<size_t>(i)].key == fmt::format("many/{:05}", i));
}

TEST_CASE("S3: refs are created once and changed by compare-and-swap on the bare ETag", "[s3]") {
    NEED_SERVER(srv);
    Scratch t(*srv);
    auto& s3 = *t.s3;
    auto none = s3.read_ref("refs/main");
    REQUIRE(none.ok());
    CHECK_FALSE(none->has_value());

    auto v1 = s3.create_ref("refs/main", "commit-1");
    REQUIRE(v1.ok());
    CHECK_FALSE(v1->empty());
    CHECK(v1->find('"') == std::string::npos);
    auto again = s3.create_ref("refs/main", "commit-x");
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().code == Errc::conflict);
    CHECK_THAT(again.error().message, Catch::Contains("refs/main") && Catch::Contains("already exists"));

    auto cur = s3.read_ref("refs/main");
    REQUIRE(cur.ok());
    REQUIRE(cur->has_value());
    CHECK((*cur)->data == "commit-1");
    CHECK((*cur)->version == *v1);

    auto v2 = s3.update_ref("refs/main", "commit-2", *v1);
    REQUIRE(v2.ok());
    CHECK(*v2 != *v1);
    auto stale = s3.update_ref("refs/main", "commit-3", *v1);
    REQUIRE_FALSE(stale.ok());
    CHECK(stale.error().code == Errc::conflict);
    CHECK_THAT(stale.error().message, Catch::Contains("changed since it was read"));
    // The quoted form of the version is accepted too (and sent bare).
    auto v3 = s3.update_ref("refs/main", "commit-3", "\"" + *v2 + "\"");
    REQUIRE(v3.ok());
    cur = s3.read_ref("refs/main");
    REQUIRE(cur.ok());
    CHECK((*cur)->data == "commit-3");
    CHECK((*cur)->version == *v3);

    // A ref that does not exist (any more) cannot be updated.
    auto gone = s3.update_ref("refs/never", "x", *v3);
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().code == Errc::conflict);
    REQUIRE(s3.remove("refs/main").ok());
    gone = s3.update_ref("refs/main", "x", *v3);
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().code == Errc::conflict);
    none = s3.read_ref("refs/main");
    REQUIRE(none.ok());
    CHECK_FALSE(none->has_value());
}

TEST_CASE("S3: concurrent creators of one new ref, 20 rounds: exactly one wins each", "[s3]") {
    NEED_SERVER(srv);
    Scratch t(*srv);
    constexpr int rounds = 20, writers = 4;
    std::vector<std::unique_ptr<S3Backend>> backends;
    for (int w = 0; w < writers; ++w) backends.push_back(open_s3(t.url));
    for (int r = 0; r < rounds; ++r) {
        const std::string key = fmt::format("refs/race-{}", r);
        std::vector<Result<std::string>> results(writers, make_error(Errc::internal, "not run"));
        std::latch start(writers);
        std::vector<std::thread> threads;
        for (int w = 0; w < writers; ++w)
            threads.emplace_back([&, w] {
                start.arrive_and_wait();
                results[static_cast<size_t>(w)] = backends[static_cast<size_t>(w)]->create_ref(key, fmt::format("writer-{}", w));
            });
        for (auto& th : threads) th.join();
        int wins = 0, winner = -1;
        for (int w = 0; w < writers; ++w) {
            const auto& res = results[static_cast<size_t>(w)];
            INFO("round " << r << " writer " << w << ": " << (res.ok() ? *res : res.error().message));
            if (res.ok()) ++wins, winner = w;
            else CHECK(res.error().code == Errc::conflict);
        }
        CHECK(wins == 1);
        auto cur = t.s3->read_ref(key);
        REQUIRE(cur.ok());
        REQUIRE(cur->has_value());
        CHECK((*cur)->data == fmt::format("writer-{}", winner));
        CHECK((*cur)->version == *results[static_cast<size_t>(winner)]);
    }
}

TEST_CASE("S3: concurrent compare-and-swap on one ref: one winner per version, no lost update", "[s3]") {
    NEED_SERVER(srv);
    Scratch t(*srv);
    constexpr int rounds = 20, writers = 4;
    std::vector<std::unique_ptr<S3Backend>> backends;
    for (int w = 0; w < writers; ++w) backends.push_back(open_s3(t.url));
    auto v = t.s3->create_ref("refs/cas", "start");
    REQUIRE(v.ok());
    std::string version = *v;
    for (int r = 0; r < rounds; ++r) {
        std::vector<Result<std::string>> results(writers, make_error(Errc::internal, "not run"));
        std::latch start(writers);
        std::vector<std::thread> threads;
        for (int w = 0; w < writers; ++w)
            threads.emplace_back([&, w] {
                start.arrive_and_wait();
                results[static_cast<size_t>(w)] =
                    backends[static_cast<size_t>(w)]->update_ref("refs/cas", fmt::format("round-{}-writer-{}", r, w), version);
            });
        for (auto& th : threads) th.join();
        int wins = 0, winner = -1;
        for (int w = 0; w < writers; ++w) {
            const auto& res = results[static_cast<size_t>(w)];
            INFO("round " << r << " writer " << w << ": " << (res.ok() ? *res : res.error().message));
            if (res.ok()) ++wins, winner = w;
            else CHECK(res.error().code == Errc::conflict);
        }
        REQUIRE(wins == 1);
        auto cur = t.s3->read_ref("refs/cas");
        REQUIRE(cur.ok());
        CHECK((*cur)->data == fmt::format("round-{}-writer-{}", r, winner));
        version = *results[static_cast<size_t>(winner)];
        CHECK((*cur)->version == version);
    }

    // A counter incremented by read-modify-CAS loops on three threads loses no increment.
    constexpr int threads_n = 3, increments = 10;
    REQUIRE(t.s3->create_ref("refs/counter", "0").ok());
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int w = 0; w < threads_n; ++w)
        threads.emplace_back([&, w] {
            auto& b = *backends[static_cast<size_t>(w)];
            for (int i = 0; i < increments; ++i) {
                for (int attempt = 0;; ++attempt) {
                    auto cur = b.read_ref("refs/counter");
                    if (!cur || !cur->has_value() || attempt > 1000) return void(++failures);
                    auto next = std::to_string(std::stoi((*cur)->data) + 1);
                    auto res = b.update_ref("refs/counter", next, (*cur)->version);
                    if (res) break;
                    if (res.error().code != Errc::conflict) return void(++failures);
                }
            }
        });
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
    auto fin = t.s3->read_ref("refs/counter");
    REQUIRE(fin.ok());
    CHECK((*fin)->data == std::to_string(threads_n * increments));
}

TEST_CASE("S3: a 24 MiB file streamed from its fd, in bounded memory, reads back byte-exact", "[s3]") {
    NEED_SERVER(srv);
    Scratch t(*srv);
    TempDir dir;
    constexpr size_t piece = 1 << 20, pieces = 24, tail = 12345;
    const std::string path = dir / "pack";
    {
        auto fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC);
        REQUIRE(fd.ok());
        for (size_t i = 0; i <= pieces; ++i) REQUIRE(write_all(fd->get(), test::random_bytes(i < pieces ? piece : tail, 100 + i), path).ok());
    }
    const uint64_t size = pieces * piece + tail;
    auto fd = open_file(path, O_RDONLY);
    REQUIRE(fd.ok());

    reset_peak_rss();
    const long before = rss_kib();
    // Kernels before 4.0 cannot reset the peak: then the bound is not checked.
    const bool peak_reset = before > 0 && peak_rss_kib() <= before + 1024;
    REQUIRE(t.s3->write_file("packs/big", fd->get(), size).ok());
    const long grew = peak_rss_kib() - before;
    INFO("peak resident memory grew by " << grew << " KiB while sending " << size / 1024 << " KiB");
    if (peak_reset) CHECK(grew < 8 * 1024);
    else WARN("the peak resident memory cannot be reset here: the memory bound of a streamed upload is not checked");

    auto keys = t.s3->list("packs/");
    REQUIRE(keys.ok());
    REQUIRE(keys->size() == 1);
    CHECK((*keys)[0].size == size);
    // Piece by piece with ranged reads, then whole.
    std::vector<std::byte> out;
    for (size_t i = 0; i <= pieces; ++i) {
        REQUIRE(t.s3->read("packs/big", i * piece, piece, out).ok());
        CHECK((out == test::random_bytes(i < pieces ? piece : tail, 100 + i)));
    }
    REQUIRE(t.s3->read("packs/big", piece - 3, 6, out).ok());  // across two pieces
    auto a = test::random_bytes(piece, 100), b = test::random_bytes(piece, 101);
    CHECK((out == std::vector<std::byte>{a[piece - 3], a[piece - 2], a[piece - 1], b[0], b[1], b[2]}));
    REQUIRE(t.s3->read_all("packs/big", out).ok());
    REQUIRE(out.size() == size);
    Sha256 h;
    for (size_t i = 0; i <= pieces; ++i) h.update(test::random_bytes(i < pieces ? piece : tail, 100 + i));
    CHECK(sha256(out) == h.finish());

    // A file shorter than announced: refused before anything is stored.
    auto st = t.s3->write_file("packs/short", fd->get(), size + 1);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::io);
    st = t.s3->read_all("packs/short", out);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::not_found);
}

TEST_CASE("S3: refused credentials are denied, naming the bucket and never the key or secret", "[s3]") {
    NEED_SERVER(srv);
    Scratch t(*srv);
    REQUIRE(t.s3->write("obj", test::bytes_of("x")).ok());
    const auto bucket = s3::parse_url(srv->url)->bucket;
    const std::string wrong_secret = "WrongSecretWrongSecretWrongSecret0123456", unknown_key = "AKIAUNKNOWNKEY000001";
    const std::string token = "SessionTokenThatMustNotShow0001";
    struct Case {
        const char* what;
        std::map<std::string, std::string> env;
    };
    for (const Case& c : {Case{"wrong secret", {{"AWS_SECRET_ACCESS_KEY", wrong_secret}}},
                          Case{"unknown access key", {{"AWS_ACCESS_KEY_ID", unknown_key}}},
                          Case{"wrong secret with a session token", {{"AWS_SECRET_ACCESS_KEY", wrong_secret}, {"AWS_SESSION_TOKEN", token}}}}) {
        INFO(c.what);
        auto bad = open_s3(t.url, {}, env_with(c.env));
        std::vector<std::byte> out;
        std::vector<Error> errors;
        if (auto st = bad->read_all("obj", out); !st) errors.push_back(st.error());
        if (auto st = bad->read("obj", 0, 1, out); !st) errors.push_back(st.error());
        if (auto st = bad->write("obj2", test::bytes_of("y")); !st) errors.push_back(st.error());
        if (auto r = bad->list(""); !r) errors.push_back(r.error());
        if (auto r = bad->read_ref("obj"); !r) errors.push_back(r.error());
        if (auto r = bad->create_ref("refs/x", "y"); !r) errors.push_back(r.error());
        if (auto r = bad->update_ref("obj", "y", "abc"); !r) errors.push_back(r.error());
        if (auto st = bad->remove("obj"); !st) errors.push_back(st.error());
        REQUIRE(errors.size() == 8);
        for (const auto& e : errors) {
            INFO(e.message);
            CHECK(e.code == Errc::denied);
            CHECK_THAT(e.message, Catch::Contains("refused the credentials") && Catch::Contains("bucket " + bucket));
            check_no_secret(e, {srv->access_key, srv->secret_key, wrong_secret, unknown_key, token});
        }
    }
    std::vector<std::byte> out;
    REQUIRE(t.s3->read_all("obj", out).ok());  // untouched
    CHECK(text(out) == "x");
}

TEST_CASE("S3: a bucket that does not exist is named as such", "[s3]") {
    NEED_SERVER(srv);
    const std::string bucket = "dvol-missing-" + random_hex(10);
    auto s3 = open_s3("s3://" + bucket + "/p");
    std::vector<std::byte> out;
    std::vector<Error> errors;
    if (auto st = s3->read_all("obj", out); !st) errors.push_back(st.error());
    if (auto st = s3->read("obj", 0, 0, out); !st) errors.push_back(st.error());
    if (auto st = s3->write("obj", test::bytes_of("y")); !st) errors.push_back(st.error());
    if (auto r = s3->list(""); !r) errors.push_back(r.error());
    if (auto r = s3->read_ref("refs/x"); !r) errors.push_back(r.error());
    if (auto r = s3->create_ref("refs/x", "y"); !r) errors.push_back(r.error());
    if (auto st = s3->remove("obj"); !st) errors.push_back(st.error());
    REQUIRE(errors.size() == 7);
    for (const auto& e : errors) {
        INFO(e.message);
        CHECK(e.code == Errc::not_found);
        CHECK_THAT(e.message, Catch::Contains("bucket " + bucket + " does not exist"));
        check_no_secret(e, {srv->access_key, srv->secret_key});
    }
}

TEST_CASE("S3: a server that is stopped or frozen is unavailable, not a hang", "[.s3-down]") {
    NEED_SERVER(srv);
    S3Options o;
    o.connect_timeout_s = 5;
    o.stall_timeout_s = 3;
    auto s3 = open_s3(srv->url, o);
    std::vector<std::byte> out;
    std::vector<Error> errors;
    if (auto st = s3->read_all("obj", out); !st) errors.push_back(st.error());
    if (auto st = s3->write("obj", test::bytes_of("y")); !st) errors.push_back(st.error());
    if (auto r = s3->list(""); !r) errors.push_back(r.error());
    if (auto r = s3->update_ref("refs/x", "y", "abc"); !r) errors.push_back(r.error());
    REQUIRE(errors.size() == 4);
    for (const auto& e : errors) {
        INFO(e.message);
        CHECK(e.code == Errc::unavailable);
        check_no_secret(e, {srv->access_key, srv->secret_key});
    }
}

TEST_CASE("S3: a bucket over its quota is no_space", "[.s3-quota]") {
    NEED_SERVER(srv);
    auto url = s3::process_env()("DVOL_TEST_S3_QUOTA_URL");
    if (!url) {
        WARN("SKIP: DVOL_TEST_S3_QUOTA_URL names no bucket with a quota");
        return;
    }
    auto s3 = open_s3(*url);
    auto st = s3->write("big", test::random_bytes(2 << 20, 5));
    REQUIRE_FALSE(st.ok());
    INFO(st.error().message);
    CHECK(st.error().code == Errc::no_space);
    check_no_secret(st.error(), {srv->access_key, srv->secret_key});
}

TEST_CASE("S3: latency of small requests (printed, never checked)", "[.s3-latency]") {
    NEED_SERVER(srv);
    Scratch t(*srv);
    auto v = t.s3->create_ref("refs/l", "0");
    REQUIRE(v.ok());
    std::string version = *v;
    constexpr int n = 200;
    std::vector<double> reads, writes;
    for (int i = 0; i < n; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        auto cur = t.s3->read_ref("refs/l");
        auto t1 = std::chrono::steady_clock::now();
        REQUIRE(cur.ok());
        auto next = t.s3->update_ref("refs/l", std::to_string(i + 1), version);
        auto t2 = std::chrono::steady_clock::now();
        REQUIRE(next.ok());
        version = *next;
        reads.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        writes.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    }
    auto summary = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return fmt::format("median {:.2f} ms, 90th percentile {:.2f} ms", v[v.size() / 2], v[v.size() * 9 / 10]);
    };
    fmt::print("latency of read_ref (GET of a 1-3 byte ref), {} in a row: {}\n", n, summary(reads));
    fmt::print("latency of update_ref (conditional PUT), {} in a row: {}\n", n, summary(writes));
}
