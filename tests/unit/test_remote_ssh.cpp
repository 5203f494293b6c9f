// ssh:// remotes without an ssh server: the protocol of lib/remote/ssh_protocol.h between a
// wire::Client and wire::serve() over a socket pair, against a DirBackend (every call, errors
// with their codes, malformed, oversized, truncated and stalled frames, version mismatches);
// the served directory of `remote-serve --create`; SshBackend's URL parsing, command words,
// command line and error classification; and SshBackend itself with a stand-in for ssh that
// runs the far side's command locally (the built dvol: $DVOL, else ../../cli/dvol next to this
// binary). The real sshd is tests/e2e/test_ssh.sh's.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "remote/dir_backend.h"
#include "remote/open.h"
#include "remote/retry.h"
#include "remote/ssh_backend.h"
#include "remote/ssh_protocol.h"
#include "support.h"

using namespace dvol;
using namespace std::chrono_literals;
using dvol::remote::wire::Frame;
using dvol::test::random_bytes;
using dvol::test::string_of;
using dvol::test::TempDir;
namespace wire = dvol::remote::wire;
namespace fs = std::filesystem;

namespace {

std::string message_of(const Status& s) { return s ? std::string("ok") : s.error().message; }
template <typename T>
std::string message_of(const Result<T>& r) {
    return r ? std::string("ok") : r.error().message;
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

// ---- raw bytes of the protocol, for a test playing one end by hand ----

void put_be(std::string& out, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out += static_cast<char>(v >> (8 * i));
}

std::string str_field(std::string_view s) {
    std::string out;
    put_be(out, s.size(), 4);
    return out + std::string(s);
}

std::string hello(uint32_t version, std::string_view software = "dvol test") {
    std::string out(wire::kMagic);
    put_be(out, version, 4);
    put_be(out, software.size(), 2);
    return out + std::string(software);
}

// A frame announcing `length` (type included) whatever the payload really holds.
std::string frame_with_length(Frame type, uint32_t length, std::string_view payload) {
    std::string out;
    put_be(out, length, 4);
    out += static_cast<char>(type);
    return out + std::string(payload);
}

std::string frame(Frame type, std::string_view payload = {}) {
    return frame_with_length(type, static_cast<uint32_t>(payload.size() + 1), payload);
}

std::string ok_status(std::string_view fields = {}) { return frame(Frame::status, std::string(1, '\0') + str_field("") + std::string(fields)); }

void send_raw(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        REQUIRE(n > 0);
        bytes.remove_prefix(static_cast<size_t>(n));
    }
}

std::string recv_exact(int fd, size_t n) {
    std::string out(n, '\0');
    size_t got = 0;
    while (got < n) {
        ssize_t r = ::recv(fd, out.data() + got, n - got, 0);
        REQUIRE(r > 0);
        got += static_cast<size_t>(r);
    }
    return out;
}

uint64_t be_of(std::string_view b) {
    uint64_t v = 0;
    for (char c : b) v = (v << 8) | static_cast<uint8_t>(c);
    return v;
}

struct RawFrame {
    uint8_t type = 0;
    std::string payload;
};

RawFrame recv_frame(int fd) {
    std::string h = recv_exact(fd, 5);
    RawFrame f;
    f.type = static_cast<uint8_t>(h[4]);
    f.payload = recv_exact(fd, be_of(h.substr(0, 4)) - 1);
    return f;
}

// The server's hello and first STATUS, after sending ours.
void raw_handshake(int fd) {
    send_raw(fd, hello(wire::kProtocolVersion));
    std::string h = recv_exact(fd, 14);
    REQUIRE(h.substr(0, 8) == wire::kMagic);
    recv_exact(fd, be_of(h.substr(12, 2)));
    RawFrame st = recv_frame(fd);
    REQUIRE(st.type == static_cast<uint8_t>(Frame::status));
    REQUIRE(st.payload[0] == '\0');
}

// A socket pair; end 0 is the test's (or the Client's), end 1 the server's.
struct Pair {
    Pair() {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        ours.reset(fds[0]);
        theirs.reset(fds[1]);
    }
    UniqueFd ours, theirs;
};

// wire::serve() on a thread, over a socket pair: the test talks on fd().
class Served {
public:
    explicit Served(remote::Backend& backend, wire::ServeOptions options = {}) {
        thread_ = std::thread([this, &backend, options] { result_ = wire::serve(backend, pair_.theirs.get(), pair_.theirs.get(), options); });
    }
    // A server that refuses the remote.
    Served(const Error& why, wire::ServeOptions options = {}) {
        thread_ = std::thread([this, why, options] { result_ = wire::refuse(why, pair_.theirs.get(), pair_.theirs.get(), options); });
    }
    ~Served() {
        ::shutdown(pair_.ours.get(), SHUT_RDWR);
        if (thread_.joinable()) thread_.join();
    }
    int fd() const { return pair_.ours.get(); }
    // Ends the client's side and returns how serve() ended.
    Status finish() {
        ::shutdown(pair_.ours.get(), SHUT_WR);
        return wait();
    }
    // How serve() ended, without ending the client's side.
    Status wait() {
        thread_.join();
        return result_;
    }

private:
    Pair pair_;
    std::thread thread_;
    Status result_;
};

std::unique_ptr<remote::DirBackend> open_dir(const std::string& path) {
    auto b = remote::DirBackend::open(path);
    REQUIRE(b.ok());
    return std::move(*b);
}

// Every file under `dir` but DirBackend's own tmp~, relative, sorted.
std::vector<std::string> files_under(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
        std::string rel = fs::relative(e.path(), dir).string();
        if (!e.is_directory() && !rel.starts_with("tmp~/")) out.push_back(rel);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::byte> read_back(wire::Client& c, const std::string& key) {
    std::vector<std::byte> out;
    auto st = c.read_all(key, out);
    INFO("read_all " << key << ": " << message_of(st));
    REQUIRE(st.ok());
    return out;
}

}  // namespace

TEST_CASE("ssh protocol: every Backend call over a socket pair, against a DirBackend", "[remote_ssh]") {
    TempDir dir;
    auto backend = open_dir(dir.path());
    wire::ServeOptions options;
    options.spool_dir = dir.path();
    Served server(*backend, options);
    wire::Client c(server.fd(), server.fd(), -1, "test-remote");
    REQUIRE(c.handshake().ok());
    CHECK(c.server_software().starts_with("dvol "));

    SECTION("objects: write, read, ranges, listings") {
        REQUIRE(c.write("a/b", as_bytes("hello")).ok());
        CHECK(string_of(read_back(c, "a/b")) == "hello");
        std::vector<std::byte> out(3, std::byte{'?'});
        REQUIRE(c.read("a/b", 1, 3, out).ok());
        CHECK(string_of(out) == "ell");
        REQUIRE(c.read("a/b", 4, 100, out).ok());
        CHECK(string_of(out) == "o");
        REQUIRE(c.read("a/b", 9, 100, out).ok());
        CHECK(out.empty());
        REQUIRE(c.read("a/b", 0, 0, out).ok());
        CHECK(out.empty());
        REQUIRE(c.write("a/c", {}).ok());
        REQUIRE(c.write("z", as_bytes("zz")).ok());
        auto all = c.list("");
        REQUIRE(all.ok());
        REQUIRE(all->size() == 3);
        CHECK(all->at(0).key == "a/b");
        CHECK(all->at(0).size == 5);
        CHECK(all->at(1).key == "a/c");
        CHECK(all->at(1).size == 0);
        CHECK(all->at(2).key == "z");
        CHECK(c.list("a/")->size() == 2);
        CHECK(c.list("nothing")->empty());
        // The same bytes again are fine; other bytes are the backend's conflict, carried over.
        CHECK(c.write("a/b", as_bytes("hello")).ok());
        auto other = c.write("a/b", as_bytes("other bytes"));
        REQUIRE_FALSE(other.ok());
        CHECK(other.error().code == Errc::conflict);
        CHECK(other.error().message.starts_with("test-remote: "));
        CHECK(test::read_file(dir / "a/b") == "hello");
    }

    SECTION("large objects cross in chunks; large writes are spooled and leave nothing behind") {
        const auto big = random_bytes((5u << 20) + 123, 1);  // over kMaxInMemoryWrite: spooled
        REQUIRE(c.write("packs/big", big).ok());
        CHECK(read_back(c, "packs/big") == big);
        std::vector<std::byte> part;
        REQUIRE(c.read("packs/big", (2u << 20) - 10, 2u << 20, part).ok());
        REQUIRE(part.size() == 2u << 20);
        CHECK(std::equal(part.begin(), part.end(), big.begin() + (2 << 20) - 10));
        REQUIRE(c.read("packs/big", big.size() - 5, UINT64_MAX, part).ok());
        CHECK(part.size() == 5);

        TempDir local;
        for (size_t size : {size_t{0}, size_t{(3u << 20) + 7}, size_t{(9u << 20) + 1}}) {
            INFO("write_file of " << size << " bytes");
            const auto data = random_bytes(size, size);
            test::write_file(local / "src", data);
            auto fd = open_file(local / "src", O_RDONLY);
            REQUIRE(fd);
            REQUIRE(::lseek(fd->get(), 1000, SEEK_SET) == 1000);
            const std::string key = fmt::format("packs/f{}", size);
            auto st = c.write_file(key, fd->get(), size);
            INFO(message_of(st));
            REQUIRE(st.ok());
            CHECK(::lseek(fd->get(), 0, SEEK_CUR) == 1000);
            CHECK(read_back(c, key) == data);
        }
        CHECK(files_under(dir.path()) == std::vector<std::string>{"packs/big", "packs/f0", "packs/f3145735", "packs/f9437185"});
    }

    SECTION("refs: create, compare-and-swap, conflicts, remove") {
        auto none = c.read_ref("refs/main");
        REQUIRE(none.ok());
        CHECK_FALSE(none->has_value());
        auto v1 = c.create_ref("refs/main", "one");
        REQUIRE(v1.ok());
        auto again = c.create_ref("refs/main", "other");
        REQUIRE_FALSE(again.ok());
        CHECK(again.error().code == Errc::conflict);
        CHECK(contains(again.error().message, "refs/main"));
        CHECK(again.error().message.starts_with("test-remote: "));
        std::string binary("a\0b\n\xff", 5);
        auto v2 = c.update_ref("refs/main", binary, *v1);
        REQUIRE(v2.ok());
        CHECK(*v2 != *v1);
        auto stale = c.update_ref("refs/main", "three", *v1);
        REQUIRE_FALSE(stale.ok());
        CHECK(stale.error().code == Errc::conflict);
        auto now = c.read_ref("refs/main");
        REQUIRE(now.ok());
        REQUIRE(now->has_value());
        CHECK((*now)->data == binary);
        CHECK((*now)->version == *v2);
        CHECK(c.update_ref("refs/none", "x", *v2).error().code == Errc::conflict);
        REQUIRE(c.remove("refs/main").ok());
        CHECK(c.remove("refs/main").ok());
        CHECK_FALSE(c.read_ref("refs/main")->has_value());
        // A value too large for a ref never leaves the client.
        CHECK(c.create_ref("refs/huge", std::string(wire::kMaxRefValue + 1, 'x')).error().code == Errc::invalid_argument);
    }

    SECTION("errors cross with their code and name the remote and key") {
        std::vector<std::byte> out;
        auto missing = c.read_all("nope/key", out);
        REQUIRE_FALSE(missing.ok());
        CHECK(missing.error().code == Errc::not_found);
        CHECK(missing.error().message.starts_with("test-remote: "));
        CHECK(contains(missing.error().message, "nope/key"));
        CHECK(c.read("nope/key", 0, 10, out).error().code == Errc::not_found);
        for (std::string key : {"../x", "", "a//b", "lock~", "x\ny"}) {
            INFO("key '" << key << "'");
            CHECK(c.read(key, 0, 1, out).error().code == Errc::invalid_argument);
            CHECK(c.read_all(key, out).error().code == Errc::invalid_argument);
            CHECK(c.write(key, as_bytes("x")).error().code == Errc::invalid_argument);
            CHECK(c.write(key, random_bytes(5u << 20, 2)).error().code == Errc::invalid_argument);
            CHECK(c.read_ref(key).error().code == Errc::invalid_argument);
            CHECK(c.create_ref(key, "x").error().code == Errc::invalid_argument);
            CHECK(c.update_ref(key, "x", "v").error().code == Errc::invalid_argument);
            CHECK(c.remove(key).error().code == Errc::invalid_argument);
        }
        CHECK_FALSE(c.broken());
        CHECK(files_under(dir.path()).empty());
    }

    SECTION("a write_file whose source ends early stores nothing and leaves the connection usable") {
        TempDir local;
        test::write_file(local / "src", std::string_view("0123456789"));
        auto fd = open_file(local / "src", O_RDONLY);
        REQUIRE(fd);
        auto shorter = c.write_file("short", fd->get(), 11);
        REQUIRE_FALSE(shorter.ok());
        CHECK(shorter.error().code == Errc::io);
        CHECK(contains(shorter.error().message, "ends at byte 10 of 11"));
        CHECK_FALSE(c.broken());
        std::vector<std::byte> out;
        CHECK(c.read_all("short", out).error().code == Errc::not_found);
        // And a large one, past the in-memory limit: the spool goes too.
        const auto data = random_bytes(6u << 20, 3);
        test::write_file(local / "big", data);
        auto big = open_file(local / "big", O_RDONLY);
        REQUIRE(big);
        CHECK(c.write_file("short", big->get(), (8u << 20)).error().code == Errc::io);
        REQUIRE(c.write_file("short", big->get(), 4).ok());
        CHECK(read_back(c, "short").size() == 4);
        CHECK(files_under(dir.path()) == std::vector<std::string>{"short"});
    }

    auto end = server.finish();
    INFO(message_of(end));
    CHECK(end.ok());
}

TEST_CASE("ssh protocol: a version mismatch is a clear error on both sides", "[remote_ssh]") {
    TempDir dir;
    auto backend = open_dir(dir.path());
    SECTION("the server is newer") {
        wire::ServeOptions options;
        options.version = wire::kProtocolVersion + 1;
        Served server(*backend, options);
        wire::Client c(server.fd(), server.fd(), -1, "test-remote");
        auto st = c.handshake();
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().code == Errc::unsupported);
        INFO(st.error().message);
        CHECK(contains(st.error().message, fmt::format("version {}", wire::kProtocolVersion + 1)));
        CHECK(contains(st.error().message, fmt::format("version {}", wire::kProtocolVersion)));
        CHECK(contains(st.error().message, "same dvol version"));
        CHECK(c.broken());
        CHECK(c.list("").error().code == Errc::unavailable);
        auto end = server.finish();
        REQUIRE_FALSE(end.ok());
        CHECK(end.error().code == Errc::unsupported);
        CHECK(contains(end.error().message, fmt::format("version {}", wire::kProtocolVersion)));
    }
    SECTION("the client is newer") {
        Served server(*backend);
        wire::ClientOptions options;
        options.version = wire::kProtocolVersion + 7;
        wire::Client c(server.fd(), server.fd(), -1, "test-remote", options);
        auto st = c.handshake();
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().code == Errc::unsupported);
        auto end = server.finish();
        REQUIRE_FALSE(end.ok());
        CHECK(end.error().code == Errc::unsupported);
        CHECK(contains(end.error().message, fmt::format("version {}", wire::kProtocolVersion + 7)));
    }
    CHECK(files_under(dir.path()).empty());
}

TEST_CASE("ssh protocol: a server that cannot serve its remote says why at the handshake", "[remote_ssh]") {
    Served server(make_error(Errc::not_found, "remote /srv/none does not exist"));
    wire::Client c(server.fd(), server.fd(), -1, "ssh://h/srv/none");
    auto st = c.handshake();
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::not_found);
    CHECK(st.error().message == "ssh://h/srv/none: remote /srv/none does not exist");
    CHECK(c.broken());
    CHECK_FALSE(c.transport_failed());
    CHECK(server.finish().error().code == Errc::not_found);
}

TEST_CASE("ssh protocol: the server rejects oversized, truncated and unexpected frames", "[remote_ssh]") {
    TempDir dir;
    auto backend = open_dir(dir.path());
    wire::ServeOptions options;
    options.spool_dir = dir.path();
    Served server(*backend, options);
    raw_handshake(server.fd());
    // What the server answers to a violation before it stops: a STATUS with Errc::io.
    auto expect_violation = [&](std::string_view what) {
        RawFrame f = recv_frame(server.fd());
        CHECK(f.type == static_cast<uint8_t>(Frame::status));
        CHECK(static_cast<uint8_t>(f.payload[0]) == 6);  // Errc::io on the wire
        INFO(f.payload);
        CHECK(contains(f.payload, "protocol error"));
        CHECK(contains(f.payload, what));
        auto end = server.finish();
        REQUIRE_FALSE(end.ok());
        CHECK(end.error().code == Errc::io);
        CHECK(contains(end.error().message, what));
    };

    SECTION("a frame announcing 4 GiB") {
        send_raw(server.fd(), frame_with_length(Frame::list, 0xffffffffu, ""));
        expect_violation("more than the");
    }
    SECTION("a frame of length 0") {
        send_raw(server.fd(), frame_with_length(Frame::list, 0, ""));
        expect_violation("length 0");
    }
    SECTION("a field running past its frame") {
        send_raw(server.fd(), frame(Frame::read, str_field("key").substr(0, 5)));
        expect_violation("runs past its frame");
    }
    SECTION("a key over its bound") {
        send_raw(server.fd(), frame(Frame::remove, str_field(std::string(wire::kMaxString + 1, 'k'))));
        expect_violation("more than the");
    }
    SECTION("trailing bytes") {
        send_raw(server.fd(), frame(Frame::remove, str_field("key") + "zz"));
        expect_violation("bytes more than its fields");
    }
    SECTION("a frame that is no request") {
        send_raw(server.fd(), frame(Frame::data, "xyz"));
        expect_violation("DATA");
        send_raw(server.fd(), "");
    }
    SECTION("more bytes than a WRITE announced") {
        std::string w;
        put_be(w, 3, 8);
        send_raw(server.fd(), frame(Frame::write, str_field("obj") + w) + frame(Frame::data, "abcd"));
        expect_violation("more than the 3 bytes announced");
        CHECK(files_under(dir.path()).empty());
    }
    SECTION("a WRITE that ends short") {
        std::string w;
        put_be(w, 3, 8);
        send_raw(server.fd(), frame(Frame::write, str_field("obj") + w) + frame(Frame::data, "ab") + frame(Frame::end));
        expect_violation("ended after 2 of its 3 bytes");
        CHECK(files_under(dir.path()).empty());
    }
    SECTION("a request cut off: the server sees the end of its input in the middle of a frame") {
        send_raw(server.fd(), frame_with_length(Frame::list, 100, str_field("pre")));
        auto end = server.finish();
        REQUIRE_FALSE(end.ok());
        CHECK(end.error().code == Errc::unavailable);
        CHECK(contains(end.error().message, "in the middle of a frame"));
    }
    SECTION("a request that stalls: the server gives up after its idle timeout") {
        options.idle_timeout = 100ms;
        Served impatient(*backend, options);
        raw_handshake(impatient.fd());
        send_raw(impatient.fd(), frame_with_length(Frame::list, 100, str_field("pre")));
        auto end = impatient.wait();
        REQUIRE_FALSE(end.ok());
        CHECK(end.error().code == Errc::unavailable);
        CHECK(contains(end.error().message, "sent nothing for 100 ms"));
    }
    SECTION("a WRITE announcing an exabyte, then cut off: nothing is stored or allocated for it") {
        std::string w;
        put_be(w, uint64_t{1} << 60, 8);
        send_raw(server.fd(), frame(Frame::write, str_field("huge") + w) + frame(Frame::data, std::string(1000, 'x')));
        auto end = server.finish();
        REQUIRE_FALSE(end.ok());
        CHECK(end.error().code == Errc::unavailable);
        CHECK(files_under(dir.path()).empty());
    }
}

TEST_CASE("ssh protocol: the client rejects oversized, truncated, stalled and foreign answers", "[remote_ssh]") {
    Pair pair;
    const int peer = pair.theirs.get();
    wire::ClientOptions options;
    options.idle_timeout = 100ms;
    // The peer's answers are queued in the socket before the client asks: no thread needed.
    auto client = [&] { return std::make_unique<wire::Client>(pair.ours.get(), pair.ours.get(), -1, "test-remote", options); };

    SECTION("a DATA frame announcing 4 GiB") {
        send_raw(peer, hello(wire::kProtocolVersion) + ok_status() + frame_with_length(Frame::data, 0xffffffffu, "x"));
        auto c = client();
        REQUIRE(c->handshake().ok());
        std::vector<std::byte> out;
        auto st = c->read_all("k", out);
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().code == Errc::io);
        CHECK(contains(st.error().message, "more than the"));
        CHECK(c->broken());
        CHECK_FALSE(c->transport_failed());
        auto later = c->list("");
        CHECK(later.error().code == Errc::unavailable);
        CHECK(contains(later.error().message, "lost earlier"));
    }
    SECTION("more data than was asked for") {
        send_raw(peer, hello(wire::kProtocolVersion) + ok_status() + frame(Frame::data, "12345") + ok_status());
        auto c = client();
        REQUIRE(c->handshake().ok());
        std::vector<std::byte> out;
        auto st = c->read("k", 0, 4, out);
        CHECK(st.error().code == Errc::io);
        CHECK(contains(st.error().message, "more data than the 4 bytes asked for"));
    }
    SECTION("frames that do not belong to the answer") {
        send_raw(peer, hello(wire::kProtocolVersion) + ok_status() + frame(Frame::entries, str_field("k") + std::string(8, '\0')));
        auto c = client();
        REQUIRE(c->handshake().ok());
        auto st = c->remove("k");
        CHECK(st.error().code == Errc::io);
        CHECK(contains(st.error().message, "ENTRIES"));
    }
    SECTION("an error code this version does not know reads as Errc::io, with its message") {
        send_raw(peer, hello(wire::kProtocolVersion) + ok_status() + frame(Frame::status, std::string(1, '\x63') + str_field("new kind of failure")));
        auto c = client();
        REQUIRE(c->handshake().ok());
        auto st = c->remove("k");
        CHECK(st.error().code == Errc::io);
        CHECK(st.error().message == "test-remote: new kind of failure");
        CHECK_FALSE(c->broken());
    }
    SECTION("an answer cut off by the peer closing") {
        send_raw(peer, hello(wire::kProtocolVersion) + ok_status() + frame_with_length(Frame::status, 50, "\0\0\0"));
        auto c = client();
        REQUIRE(c->handshake().ok());
        pair.theirs.reset();
        auto st = c->remove("k");
        CHECK(st.error().code == Errc::unavailable);
        CHECK(contains(st.error().message, "closed the connection"));
        CHECK(c->broken());
        CHECK(c->transport_failed());
    }
    SECTION("an answer that stalls: the idle timeout, not a hang") {
        send_raw(peer, hello(wire::kProtocolVersion) + ok_status() + frame_with_length(Frame::status, 50, "\0\0\0"));
        auto c = client();
        REQUIRE(c->handshake().ok());
        auto st = c->remove("k");
        CHECK(st.error().code == Errc::unavailable);
        CHECK(contains(st.error().message, "sent nothing for 100 ms"));
        CHECK(c->transport_failed());
    }
    SECTION("a peer that does not speak the protocol") {
        send_raw(peer, "Welcome to the server!\n");
        auto c = client();
        auto st = c->handshake();
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().code == Errc::io);
        INFO(st.error().message);
        CHECK(contains(st.error().message, "Welcome to the server!"));
        CHECK(c->broken());
    }
    SECTION("a hello that names its software at length") {
        std::string h(wire::kMagic);
        put_be(h, wire::kProtocolVersion, 4);
        put_be(h, 60000, 2);
        send_raw(peer, h);
        auto st = client()->handshake();
        CHECK(st.error().code == Errc::io);
        CHECK(contains(st.error().message, "60000 bytes"));
    }
}

TEST_CASE("served directory: missing, refused, or created by the first write with --create", "[remote_ssh]") {
    TempDir top;
    const std::string path = top / "remote";
    auto plain = wire::open_served_directory(path, false);
    REQUIRE_FALSE(plain.ok());
    CHECK(plain.error().code == Errc::not_found);
    CHECK(contains(plain.error().message, "does not exist"));

    auto created = wire::open_served_directory(path, true);
    REQUIRE(created.ok());
    remote::Backend& b = **created;
    std::vector<std::byte> out;
    CHECK(b.list("")->empty());
    CHECK(b.read_all("k", out).error().code == Errc::not_found);
    CHECK(b.read("k", 0, 1, out).error().code == Errc::not_found);
    CHECK_FALSE(b.read_ref("refs/main")->has_value());
    CHECK(b.update_ref("refs/main", "x", "v").error().code == Errc::conflict);
    CHECK(b.remove("k").ok());
    CHECK(b.write("../k", as_bytes("x")).error().code == Errc::invalid_argument);
    CHECK(b.read_all("../k", out).error().code == Errc::invalid_argument);
    CHECK_FALSE(fs::exists(path));  // nothing above made it

    REQUIRE(b.create_ref("refs/main", "tip").ok());
    CHECK(fs::is_directory(path));
    CHECK(test::read_file(path + "/refs/main") == "tip");
    REQUIRE(b.write("k", as_bytes("v")).ok());
    CHECK(b.list("")->size() == 2);

    // Its parents are never made.
    auto deeper = wire::open_served_directory(top / "no/such/remote", true);
    REQUIRE(deeper.ok());
    auto st = (*deeper)->write("k", as_bytes("v"));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::not_found);
    CHECK(contains(st.error().message, "parent directory does not exist"));
    CHECK_FALSE(fs::exists(top / "no"));

    test::write_file(top / "file", std::string_view("x"));
    CHECK(wire::open_served_directory(top / "file", true).error().code == Errc::invalid_argument);
    CHECK(wire::open_served_directory(top / "file", false).error().code == Errc::invalid_argument);
}

TEST_CASE("ssh URLs: what is accepted and how it is read", "[remote_ssh]") {
    auto t = remote::parse_ssh_url("ssh://host/srv/remote");
    REQUIRE(t.ok());
    CHECK(t->user.empty());
    CHECK(t->host == "host");
    CHECK(t->port == 0);
    CHECK(t->path == "/srv/remote");
    CHECK(t->destination() == "host");

    t = remote::parse_ssh_url("ssh://alice_b@h-1.example.com:2222/srv/re%20mote/");
    REQUIRE(t.ok());
    CHECK(t->user == "alice_b");
    CHECK(t->host == "h-1.example.com");
    CHECK(t->port == 2222);
    CHECK(t->path == "/srv/re mote");
    CHECK(t->destination() == "alice_b@h-1.example.com");

    t = remote::parse_ssh_url("ssh://root@[::1]:22/x");
    REQUIRE(t.ok());
    CHECK(t->host == "::1");
    CHECK(t->port == 22);
    CHECK(t->destination() == "root@::1");
    CHECK(remote::parse_ssh_url("ssh://[fe80::1]/x")->host == "fe80::1");

    CHECK(remote::parse_ssh_url("ssh://h/~/remotes/a")->path == "./remotes/a");
    CHECK(remote::parse_ssh_url("ssh://h/~")->path == ".");
    CHECK(remote::parse_ssh_url("ssh://h/-rf")->path == "/-rf");

    for (std::string bad : {"ssh://host", "ssh://host/", "ssh:///path", "ssh://u:secret@h/x", "ssh://-oProxyCommand=x/y",
                            "ssh://-u@h/x", "ssh://h:0/x", "ssh://h:65536/x", "ssh://h:x/x", "ssh://h:/x", "ssh://[zz]/x",
                            "ssh://[::1/x", "ssh://[::1]x/y", "ssh://h;rm/x", "ssh://h$(x)/x", "ssh://a b/x", "ssh://h/a%00b",
                            "ssh://h/a%zzb", "ssh://h/a%2", "ssh://h/~bob/x", "ssh://u@@h/x", "http://h/x"}) {
        INFO(bad);
        auto r = remote::parse_ssh_url(bad);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::invalid_argument);
        CHECK_FALSE(contains(r.error().message, "secret"));
    }
}

TEST_CASE("ssh command words: split as a shell would, never run by one", "[remote_ssh]") {
    using V = std::vector<std::string>;
    auto words = [](std::string_view text) {
        auto r = remote::split_command_words(text);
        INFO(text << ": " << message_of(r));
        REQUIRE(r.ok());
        return *r;
    };
    CHECK(words("ssh") == V{"ssh"});
    CHECK(words("").empty());
    CHECK(words(" \t\n").empty());
    CHECK(words("  ssh  -i  key\t-p 2222 ") == V{"ssh", "-i", "key", "-p", "2222"});
    CHECK(words("ssh -i 'my key' -o \"UserKnownHostsFile=/a b/kh\"") == V{"ssh", "-i", "my key", "-o", "UserKnownHostsFile=/a b/kh"});
    CHECK(words("ssh -i my\\ key") == V{"ssh", "-i", "my key"});
    CHECK(words("a'b'\"c\"d") == V{"abcd"});
    CHECK(words("'' x") == V{"", "x"});
    CHECK(words("'$HOME `x` | ; & < > ( )'") == V{"$HOME `x` | ; & < > ( )"});
    CHECK(words("\"a \\\"q\\\" \\\\ \\$ \\` \\x\"") == V{"a \"q\" \\ $ ` \\x"});
    CHECK(words("\\$x") == V{"$x"});
    CHECK(words("/usr/bin/ssh -F /dev/null") == V{"/usr/bin/ssh", "-F", "/dev/null"});

    for (std::string bad : {"ssh; rm -rf /", "ssh $HOME", "ssh `id`", "ssh | tee", "ssh & x", "ssh > f", "ssh (x)", "ssh 'open",
                            "ssh \"open", "ssh \"$HOME\"", "ssh \"`id`\"", "ssh \\"}) {
        INFO(bad);
        auto r = remote::split_command_words(bad);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::invalid_argument);
    }
}

namespace {

// What /bin/sh makes of `command`: the words printf gets, one per line.
std::string as_sh_runs(const std::string& command) {
    int p[2];
    REQUIRE(::pipe(p) == 0);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(p[1], 1);
        ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(p[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    ::close(p[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return out;
}

}  // namespace

TEST_CASE("ssh command line: options, destination, and the far side's command quoted for its shell", "[remote_ssh]") {
    remote::SshTarget t;
    t.user = "root";
    t.host = "127.0.0.1";
    t.port = 2222;
    t.path = "/srv/it's here";
    auto argv = remote::ssh_command_line(t, {"ssh", "-i", "k"}, "/opt/dvol/bin/dvol", true);
    CHECK(argv == std::vector<std::string>{"ssh", "-i", "k", "-x", "-a", "-T", "-o", "BatchMode=yes", "-p", "2222", "root@127.0.0.1",
                                           "/opt/dvol/bin/dvol remote-serve --create '/srv/it'\\''s here'"});
    t.port = 0;
    t.user.clear();
    argv = remote::ssh_command_line(t, {"ssh"}, "dvol", false);
    CHECK(argv == std::vector<std::string>{"ssh", "-x", "-a", "-T", "-o", "BatchMode=yes", "127.0.0.1", "dvol remote-serve '/srv/it'\\''s here'"});
    for (const auto& a : argv) {
        CHECK_FALSE(contains(a, "StrictHostKeyChecking"));
        CHECK_FALSE(contains(a, "UserKnownHostsFile"));
    }

    // Whatever the path holds, the remote shell gives it to dvol as one word.
    for (std::string path : {"/a b", "/it's", "/$(touch /tmp/pwned)", "/`id`", "/a\nb", "/back\\slash", "/\"q\"", "/;rm", "/*"}) {
        INFO(path);
        t.path = path;
        auto line = remote::ssh_command_line(t, {"ssh"}, "printf '%s|'", false).back();
        CHECK(as_sh_runs(line) == "remote-serve|" + path + "|");
    }
}

TEST_CASE("ssh failures are told apart by ssh's exit status and stderr", "[remote_ssh]") {
    remote::SshTarget t;
    t.user = "root";
    t.host = "127.0.0.1";
    t.port = 2222;
    t.path = "/srv/r";
    const std::string loc = "ssh://root@127.0.0.1:2222/srv/r";
    const Error eof = make_error(Errc::unavailable, loc + " closed the connection");
    auto explain = [&](int code, std::string_view err, bool answered = false) {
        return remote::explain_ssh_failure(loc, t, "dvol", W_EXITCODE(code, 0), err, eof, answered);
    };

    // The texts are OpenSSH 9.2's.
    auto unknown = explain(255, "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\r\n"
                                "Host key verification failed.\r\n");
    CHECK(unknown.code == Errc::denied);
    CHECK(contains(unknown.message, "host key of 127.0.0.1:2222 is not known"));
    CHECK(contains(unknown.message, "ssh -p 2222 root@127.0.0.1"));
    CHECK_FALSE(contains(unknown.message, "\r"));

    auto changed = explain(255, "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n"
                                "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n"
                                "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n"
                                "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r\n"
                                "Offending ED25519 key in /root/.ssh/known_hosts:3\r\n"
                                "Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.\r\n"
                                "Host key verification failed.\r\n");
    CHECK(changed.code == Errc::denied);
    CHECK(contains(changed.message, "has CHANGED"));
    CHECK(contains(changed.message, "Offending ED25519 key in /root/.ssh/known_hosts:3"));
    CHECK_FALSE(contains(changed.message, "@@@"));

    auto refused_key = explain(255, "root@127.0.0.1: Permission denied (publickey).\r\n");
    CHECK(refused_key.code == Errc::denied);
    CHECK(contains(refused_key.message, "refused the credentials"));
    CHECK(contains(refused_key.message, "Permission denied (publickey)"));

    auto refused = explain(255, "ssh: connect to host 127.0.0.1 port 2222: Connection refused\r\n");
    CHECK(refused.code == Errc::unavailable);
    CHECK(contains(refused.message, "Connection refused"));
    CHECK(explain(255, "Connection closed by 127.0.0.1 port 2222\r\n").code == Errc::unavailable);
    CHECK(explain(255, "").code == Errc::unavailable);

    CHECK(explain(255, "ssh: Could not resolve hostname nohost: Name or service not known\r\n").code == Errc::not_found);
    CHECK(explain(255, "ssh: Could not resolve hostname h: Temporary failure in name resolution\r\n").code == Errc::unavailable);

    for (int code : {127, 126}) {
        auto missing = explain(code, "bash: line 1: dvol: command not found\n");
        CHECK(missing.code == Errc::unsupported);
        CHECK(contains(missing.message, "dvol must be installed on the server"));
        CHECK(contains(missing.message, "DVOL_REMOTE_DVOL"));
        CHECK(contains(missing.message, "command not found"));
    }
    auto old = explain(2, "Error: unknown command 'remote-serve'\nRun 'dvol --help' for the list of commands.\n");
    CHECK(old.code == Errc::unsupported);
    CHECK(contains(old.message, "older than this one"));

    auto silent = explain(0, "", false);
    CHECK(silent.code == Errc::io);
    CHECK(contains(silent.message, "ended before it answered"));

    // After the handshake, a connection that dies is worth a retry, with what ssh said.
    auto died = remote::explain_ssh_failure(loc, t, "dvol", W_EXITCODE(0, SIGKILL), "", eof, true);
    CHECK(died.code == Errc::unavailable);
    CHECK(contains(died.message, "killed by signal 9"));
    auto dropped = explain(1, "dvol remote-serve: something broke\n", true);
    CHECK(dropped.code == Errc::unavailable);
    CHECK(contains(dropped.message, "exited with status 1: dvol remote-serve: something broke"));
}

namespace {

// The dvol under test: $DVOL, else the one this build made next to the unit tests.
std::string dvol_binary() {
    if (const char* d = std::getenv("DVOL"); d && *d) return d;
    std::error_code ec;
    auto self = fs::read_symlink("/proc/self/exe", ec);
    if (ec) return {};
    return (self.parent_path().parent_path().parent_path() / "cli" / "dvol").string();
}

// Unsets a variable for the test's duration, restoring it after.
class Unset {
public:
    explicit Unset(const char* name) : name_(name) {
        if (const char* v = std::getenv(name)) old_ = v;
        ::unsetenv(name);
    }
    ~Unset() {
        if (old_) ::setenv(name_, old_->c_str(), 1);
    }

private:
    const char* name_;
    std::optional<std::string> old_;
};

// A stand-in for ssh: records its arguments, then runs the last one (the far side's command)
// with sh, here, as sshd would on the server.
std::string fake_ssh(const TempDir& dir) {
    const std::string path = dir / "fake-ssh";
    test::write_file(path, fmt::format("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nfor last; do :; done\nexec sh -c \"exec $last\"\n",
                                       dir / "argv"));
    REQUIRE(::chmod(path.c_str(), 0755) == 0);
    return path;
}

bool reaped(pid_t pid) { return ::waitpid(pid, nullptr, WNOHANG) < 0 && errno == ECHILD; }

}  // namespace

TEST_CASE("SshBackend: the far side through the ssh command; a dead connection is made anew", "[remote_ssh]") {
    Unset a("DVOL_SSH_COMMAND"), b("DVOL_REMOTE_DVOL");
    const std::string dvol = dvol_binary();
    INFO("the dvol under test: " << dvol << " (set DVOL to another)");
    REQUIRE(::access(dvol.c_str(), X_OK) == 0);
    TempDir tools, remote_dir;
    remote::BackendOptions options;
    options.ssh_command = fake_ssh(tools) + " -o SomeOption=yes";
    options.remote_dvol = dvol;
    const std::string url = "ssh://someone@fakehost:2222" + remote_dir.path();

    auto opened = remote::SshBackend::open(url, options);
    REQUIRE(opened.ok());
    remote::SshBackend& ssh = **opened;
    CHECK(ssh.location() == url);
    CHECK(ssh.child_pid() == 0);  // connects at the first call

    auto v = ssh.create_ref("refs/main", "tip");
    INFO(message_of(v));
    REQUIRE(v.ok());
    REQUIRE(ssh.write("obj", as_bytes("bytes")).ok());
    CHECK(test::read_file(remote_dir / "obj") == "bytes");
    const pid_t first = ssh.child_pid();
    REQUIRE(first > 0);
    auto argv = test::read_file(tools / "argv");
    CHECK(argv == fmt::format("-o\nSomeOption=yes\n-x\n-a\n-T\n-o\nBatchMode=yes\n-p\n2222\nsomeone@fakehost\n{} remote-serve '{}'\n", dvol,
                              remote_dir.path()));

    // The connection dies: the call fails as unavailable (worth a retry), the process is
    // reaped, and the next call connects again.
    REQUIRE(::kill(first, SIGKILL) == 0);
    auto lost = ssh.list("");
    REQUIRE_FALSE(lost.ok());
    CHECK(lost.error().code == Errc::unavailable);
    CHECK(ssh.child_pid() == 0);
    CHECK(reaped(first));
    auto again = ssh.list("");
    REQUIRE(again.ok());
    CHECK(again->size() == 2);
    const pid_t second = ssh.child_pid();
    CHECK(second > 0);
    CHECK(second != first);

    // Through RetryingBackend the caller sees nothing of it.
    remote::RetryPolicy no_waits;
    no_waits.sleep = [](std::chrono::milliseconds) {};
    remote::RetryingBackend retrying(std::move(*opened), no_waits);
    REQUIRE(::kill(second, SIGKILL) == 0);
    auto r = retrying.read_ref("refs/main");
    INFO(message_of(r));
    REQUIRE(r.ok());
    CHECK((*r)->data == "tip");
    const pid_t third = static_cast<remote::SshBackend&>(retrying.inner()).child_pid();
    CHECK(third > 0);

    // Destruction ends the far side and reaps ssh.
    { auto gone = std::move(retrying); (void)gone; }
    (void)third;
}

TEST_CASE("SshBackend: destruction reaps ssh; a missing directory; --create", "[remote_ssh]") {
    Unset a("DVOL_SSH_COMMAND"), b("DVOL_REMOTE_DVOL");
    const std::string dvol = dvol_binary();
    REQUIRE(::access(dvol.c_str(), X_OK) == 0);
    TempDir tools, top;
    remote::BackendOptions options;
    options.ssh_command = fake_ssh(tools);
    options.remote_dvol = dvol;
    pid_t pid = 0;
    {
        auto ssh = remote::SshBackend::open("ssh://h" + top.path(), options);
        REQUIRE(ssh.ok());
        REQUIRE((*ssh)->list("").ok());
        pid = (*ssh)->child_pid();
        REQUIRE(pid > 0);
    }
    CHECK(reaped(pid));

    auto plain = remote::SshBackend::open("ssh://h" + top.path() + "/new", options);
    REQUIRE(plain.ok());
    auto st = (*plain)->list("");
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == Errc::not_found);
    CHECK(contains(st.error().message, "does not exist"));
    CHECK((*plain)->child_pid() == 0);

    options.create = true;
    auto creating = remote::SshBackend::open("ssh://h" + top.path() + "/new", options);
    REQUIRE(creating.ok());
    CHECK((*creating)->list("")->empty());
    CHECK_FALSE(fs::exists(top / "new"));
    REQUIRE((*creating)->create_ref("refs/main", "tip").ok());
    CHECK(test::read_file(top / "new/refs/main") == "tip");
    CHECK(contains(test::read_file(tools / "argv"), "remote-serve --create '"));
}

TEST_CASE("SshBackend: ssh that cannot connect, and a server without dvol, fail at once with the reason", "[remote_ssh]") {
    Unset a("DVOL_SSH_COMMAND"), b("DVOL_REMOTE_DVOL");
    TempDir tools, top;
    remote::BackendOptions options;
    auto first_call = [&](const std::string& url = "ssh://root@127.0.0.1:9/srv/r") {
        auto ssh = remote::SshBackend::open(url, options);
        REQUIRE(ssh.ok());
        auto st = (*ssh)->list("");
        REQUIRE_FALSE(st.ok());
        CHECK((*ssh)->child_pid() == 0);
        return st.error();
    };

    options.ssh_command = "sh -c 'echo \"ssh: connect to host 127.0.0.1 port 9: Connection refused\" >&2; exit 255' fake-ssh";
    auto refused = first_call();
    CHECK(refused.code == Errc::unavailable);
    CHECK(contains(refused.message, "Connection refused"));

    options.ssh_command = "sh -c 'echo \"Host key verification failed.\" >&2; exit 255' fake-ssh";
    CHECK(first_call().code == Errc::denied);

    options.ssh_command = tools / "no-such-ssh";
    auto no_ssh = first_call();
    CHECK(no_ssh.code == Errc::unsupported);
    CHECK(contains(no_ssh.message, "DVOL_SSH_COMMAND"));

    options.ssh_command = fake_ssh(tools);
    options.remote_dvol = tools / "no-dvol-here";
    auto no_dvol = first_call("ssh://h" + top.path());
    CHECK(no_dvol.code == Errc::unsupported);
    CHECK(contains(no_dvol.message, "dvol must be installed on the server"));

    // The environment wins over the options, as GIT_SSH_COMMAND over core.sshCommand.
    ::setenv("DVOL_SSH_COMMAND", "sh -c 'echo \"Permission denied (publickey).\" >&2; exit 255' env-ssh", 1);
    auto from_env = first_call();
    CHECK(from_env.code == Errc::denied);
    ::unsetenv("DVOL_SSH_COMMAND");
    ::setenv("DVOL_SSH_COMMAND", "ssh; rm -rf /", 1);
    auto bad = remote::SshBackend::open("ssh://h/x", options);
    ::unsetenv("DVOL_SSH_COMMAND");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code == Errc::invalid_argument);
}
