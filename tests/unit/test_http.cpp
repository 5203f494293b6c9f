// The HTTP client (lib/net/http.cpp) against a tiny server run by the test on a unix socket or
// on 127.0.0.1: methods, bodies from memory and from a file, the final answer's headers after
// a 100 Continue, error bodies, and the failures that must be Errc::unavailable.
#include <catch2/catch.hpp>

#include "net/http.h"
#include "support.h"
#include "tiny_server.h"

using namespace dvol;
using dvol::test::TempDir;
using dvol::test::TinyServer;
using dvol::test::answer;
using dvol::test::listen_socket;

namespace {

std::unique_ptr<net::Client> client(net::ClientOptions o = {}) {
    auto c = net::Client::create(std::move(o));
    REQUIRE(c.ok());
    return std::move(*c);
}

}  // namespace

TEST_CASE("requests over a unix socket reuse one connection; headers come lower-cased", "[http]") {
    TempDir dir;
    TinyServer server({answer(200, "OK", "OK", "Api-Version: 1.43\r\nX-Two:  spaced \r\n"), answer(204, "No Content", ""),
                       answer(404, "Not Found", "{\"message\":\"no such container\"}")},
                      dir / "sock");
    auto c = client({.unix_socket = dir / "sock", .ca_file = {}, .connect_timeout_s = 5, .timeout_s = 30, .stall_timeout_s = 0});
    net::Request get;
    get.url = "http://docker/v1.41/_ping";
    auto r = c->perform(get);
    REQUIRE(r.ok());
    CHECK(r->status == 200);
    CHECK(r->body == "OK");
    REQUIRE(r->header("api-version"));
    CHECK(*r->header("api-version") == "1.43");
    CHECK(*r->header("x-two") == "spaced");
    CHECK_FALSE(r->header("Api-Version"));

    net::Request post;
    post.method = "POST";
    post.url = "http://docker/containers/abc/stop?t=10";
    r = c->perform(post);
    REQUIRE(r.ok());
    CHECK(r->status == 204);
    net::Request del;
    del.method = "DELETE";
    del.url = "http://docker/containers/abc?force=1";
    r = c->perform(del);
    REQUIRE(r.ok());
    CHECK(r->status == 404);
    CHECK(r->body == "{\"message\":\"no such container\"}");

    auto reqs = server.requests();
    REQUIRE(reqs.size() == 3);
    CHECK(reqs[0].starts_with("GET /v1.41/_ping HTTP/1.1\r\n"));
    CHECK(reqs[1].starts_with("POST /containers/abc/stop?t=10 HTTP/1.1\r\n"));
    CHECK(reqs[1].find("Content-Length: 0\r\n") != std::string::npos);
    CHECK(reqs[2].starts_with("DELETE /containers/abc?force=1 HTTP/1.1\r\n"));
}

TEST_CASE("PUT bodies from memory and streamed from a file arrive whole; the final answer's headers", "[http]") {
    TempDir dir;
    auto data = test::random_bytes(3 * 1024 * 1024 + 17, 7);
    test::write_file(dir / "f", data);
    TinyServer server({answer(200, "OK", "", "ETag: \"abc\"\r\n"), answer(200, "OK", "", "ETag: \"def\"\r\n"), answer(200, "OK", "")});
    auto c = client();
    auto fd = open_file(dir / "f", O_RDONLY);
    REQUIRE(fd.ok());

    net::Request put;
    put.method = "PUT";
    put.url = server.url("/b/k1");
    put.headers = {"If-None-Match: *"};
    put.body_fd = fd->get();
    put.body_size = data.size();
    auto r = c->perform(put);
    REQUIRE(r.ok());
    CHECK(r->status == 200);
    REQUIRE(r->header("etag"));
    CHECK(*r->header("etag") == "\"abc\"");  // not the 100 Continue's (empty) header set

    net::Request mem;
    mem.method = "PUT";
    mem.url = server.url("/b/k2");
    auto small = test::bytes_of("small body");
    mem.body = small;
    r = c->perform(mem);
    REQUIRE(r.ok());
    CHECK(*r->header("etag") == "\"def\"");

    net::Request empty;
    empty.method = "PUT";
    empty.url = server.url("/b/k3");
    r = c->perform(empty);
    REQUIRE(r.ok());

    auto reqs = server.requests();
    REQUIRE(reqs.size() == 3);
    CHECK(reqs[0].find("If-None-Match: *\r\n") != std::string::npos);
    CHECK(reqs[0].find("Transfer-Encoding") == std::string::npos);
    auto body0 = reqs[0].substr(reqs[0].find("\r\n\r\n") + 4);
    CHECK(body0 == test::string_of(data));
    CHECK(reqs[1].ends_with("\r\n\r\nsmall body"));
    CHECK(reqs[2].find("Content-Length: 0\r\n") != std::string::npos);
}

TEST_CASE("a sink takes a 2xx body, with the status and headers; an error body is kept, its first 64 KiB", "[http]") {
    std::string big(200 * 1024, 'e');
    TinyServer server({answer(206, "Partial Content", "0123456789", "X-Note: before the body\r\n"), answer(503, "Slow Down", big)});
    auto c = client();
    std::string got;
    net::Request get;
    get.url = server.url("/x");
    long sink_status = 0;
    std::string sink_header;
    get.sink = [&](const net::Response& head, std::span<const std::byte> b) {
        sink_status = head.status;
        if (const std::string* v = head.header("x-note")) sink_header = *v;
        CHECK(head.body.empty());
        got += test::string_of(b);
    };
    auto r = c->perform(get);
    REQUIRE(r.ok());
    CHECK(r->status == 206);
    CHECK(sink_status == 206);
    CHECK(sink_header == "before the body");
    CHECK(got == "0123456789");
    CHECK(r->body.empty());
    got.clear();
    r = c->perform(get);
    REQUIRE(r.ok());
    CHECK(r->status == 503);
    CHECK(got.empty());
    CHECK(r->body.size() == 64 * 1024);
}

TEST_CASE("a file shorter than announced fails the request as io", "[http]") {
    TempDir dir;
    test::write_file(dir / "f", std::string_view("short"));
    TinyServer server({answer(200, "OK", "")});
    auto c = client({.unix_socket = {}, .ca_file = {}, .connect_timeout_s = 5, .timeout_s = 30, .stall_timeout_s = 0});
    auto fd = open_file(dir / "f", O_RDONLY);
    REQUIRE(fd.ok());
    net::Request put;
    put.method = "PUT";
    put.url = server.url("/b/k");
    put.body_fd = fd->get();
    put.body_size = 100;
    auto r = c->perform(put);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::io);
    CHECK_THAT(r.error().message, Catch::Contains("ended at 5 bytes of the 100"));
}

TEST_CASE("no server, or one that accepts and never answers: unavailable, not a hang", "[http]") {
    int port = 0;
    std::string refused_url;
    {
        auto l = listen_socket("", port);  // a port that was free; closed again at once
        refused_url = "http://127.0.0.1:" + std::to_string(port) + "/x";
    }
    auto c = client({.unix_socket = {}, .ca_file = {}, .connect_timeout_s = 5, .timeout_s = 0, .stall_timeout_s = 1});
    net::Request get;
    get.url = refused_url;
    auto r = c->perform(get);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unavailable);

    // The kernel completes the handshake into the backlog; nobody ever reads or answers.
    auto mute = listen_socket("", port);
    get.url = "http://127.0.0.1:" + std::to_string(port) + "/x";
    r = c->perform(get);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unavailable);
}
