#include "remote/ssh_protocol.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "base/fs.h"
#include "dvol_config.h"
#include "remote/dir_backend.h"

namespace dvol::remote::wire {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kHeaderSize = 5;         // u32 length, u8 type
constexpr size_t kSideKeep = 16u << 10;   // the tail of the side stream kept for messages
constexpr size_t kReadBuffer = 64u << 10;

std::string software_name() { return fmt::format("dvol {}", DVOL_VERSION); }

// Errc values on the wire: numbered here, not by the enum's order, so that reordering the
// enum cannot change the protocol. An unknown number reads as Errc::io.
uint8_t wire_code(Errc c) {
    switch (c) {
    case Errc::invalid_argument: return 1;
    case Errc::not_found: return 2;
    case Errc::already_exists: return 3;
    case Errc::conflict: return 4;
    case Errc::corrupt: return 5;
    case Errc::io: return 6;
    case Errc::busy: return 7;
    case Errc::unsupported: return 8;
    case Errc::unavailable: return 9;
    case Errc::denied: return 10;
    case Errc::no_space: return 11;
    case Errc::internal: return 12;
    }
    return 6;
}

Errc errc_of(uint8_t w) {
    switch (w) {
    case 1: return Errc::invalid_argument;
    case 2: return Errc::not_found;
    case 3: return Errc::already_exists;
    case 4: return Errc::conflict;
    case 5: return Errc::corrupt;
    case 6: return Errc::io;
    case 7: return Errc::busy;
    case 8: return Errc::unsupported;
    case 9: return Errc::unavailable;
    case 10: return Errc::denied;
    case 11: return Errc::no_space;
    case 12: return Errc::internal;
    default: return Errc::io;
    }
}

const char* frame_name(uint8_t t) {
    switch (static_cast<Frame>(t)) {
    case Frame::list: return "LIST";
    case Frame::read: return "READ";
    case Frame::read_all: return "READ_ALL";
    case Frame::write: return "WRITE";
    case Frame::read_ref: return "READ_REF";
    case Frame::create_ref: return "CREATE_REF";
    case Frame::update_ref: return "UPDATE_REF";
    case Frame::remove: return "REMOVE";
    case Frame::data: return "DATA";
    case Frame::end: return "END";
    case Frame::abort: return "ABORT";
    case Frame::entries: return "ENTRIES";
    case Frame::status: return "STATUS";
    }
    return "unknown";
}

struct Header {
    uint8_t type = 0;
    uint32_t frame_length = 0;  // as announced: the type byte and the payload
    size_t length = 0;          // of the payload
};

// What is wrong with a frame's header by itself (nullopt: nothing): a length of 0 (no room
// for the type), or more than kMaxFrame. Each reader then applies its type's own bound.
std::optional<std::string> frame_problem(const Header& h) {
    if (h.frame_length == 0) return std::string("a frame of length 0");
    if (h.frame_length > kMaxFrame)
        return fmt::format("a {} frame of {} bytes, more than the {} allowed", frame_name(h.type), h.frame_length,
                           kMaxFrame);
    return std::nullopt;
}

class Encoder {
public:
    void u8(uint8_t v) { buf_.push_back(static_cast<std::byte>(v)); }
    void u16(uint16_t v) { be(v, 2); }
    void u32(uint32_t v) { be(v, 4); }
    void u64(uint64_t v) { be(v, 8); }
    void raw(std::span<const std::byte> b) { buf_.insert(buf_.end(), b.begin(), b.end()); }
    void str(std::string_view s) {
        u32(static_cast<uint32_t>(s.size()));
        raw(as_bytes(s));
    }
    size_t size() const { return buf_.size(); }
    void clear() { buf_.clear(); }
    std::span<const std::byte> view() const { return buf_; }

private:
    void be(uint64_t v, int n) {
        for (int i = n - 1; i >= 0; --i) buf_.push_back(static_cast<std::byte>(v >> (8 * i)));
    }
    std::vector<std::byte> buf_;
};

// Reads fields off a frame's payload. A field running past the payload, or a string over its
// bound, fails the decoder (ok() false, why() says what), and later reads return zeros.
class Decoder {
public:
    explicit Decoder(std::span<const std::byte> b) : b_(b) {}
    uint8_t u8() { return static_cast<uint8_t>(be(1, "a byte")); }
    uint16_t u16() { return static_cast<uint16_t>(be(2, "a u16")); }
    uint32_t u32() { return static_cast<uint32_t>(be(4, "a u32")); }
    uint64_t u64() { return be(8, "a u64"); }
    std::string str(size_t max, const char* what) {
        uint32_t n = u32();
        if (!ok_) return {};
        if (n > max) {
            bad(fmt::format("{} of {} bytes, more than the {} allowed", what, n, max));
            return {};
        }
        if (n > b_.size() - pos_) {
            bad(fmt::format("{} of {} bytes runs past its frame", what, n));
            return {};
        }
        std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
        pos_ += n;
        return s;
    }
    bool ok() const { return ok_; }
    bool at_end() const { return pos_ == b_.size(); }
    size_t left() const { return b_.size() - pos_; }
    const std::string& why() const { return why_; }
    // Fails unless every byte was read: trailing bytes mean the peer meant something else.
    bool finish(const char* what) {
        if (ok_ && !at_end()) bad(fmt::format("{} has {} bytes more than its fields", what, left()));
        return ok_;
    }

private:
    uint64_t be(size_t n, const char* what) {
        if (!ok_) return 0;
        if (b_.size() - pos_ < n) {
            bad(fmt::format("the frame ends before {}", what));
            return 0;
        }
        uint64_t v = 0;
        for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(b_[pos_ + i]);
        pos_ += n;
        return v;
    }
    void bad(std::string why) {
        if (ok_) why_ = std::move(why);
        ok_ = false;
    }
    std::span<const std::byte> b_;
    size_t pos_ = 0;
    bool ok_ = true;
    std::string why_;
};

// One end of a connection: buffered, non-blocking reads and writes through poll(2), each wait
// bounded by the idle timeout unless told otherwise, while a side stream (ssh's stderr) is
// drained into a bounded tail. Transport failures are Errc::unavailable; `failed_` remembers
// that one happened.
class Channel {
public:
    Channel(int in, int out, int side, std::chrono::milliseconds idle, std::string peer)
        : in_(in), out_(out), side_(side), idle_(idle), peer_(std::move(peer)), rbuf_(kReadBuffer) {
        for (int fd : {in_, out_, side_}) {
            if (fd < 0 || std::find_if(saved_.begin(), saved_.end(), [&](auto& s) { return s.first == fd; }) != saved_.end())
                continue;
            int flags = ::fcntl(fd, F_GETFL);
            if (flags < 0) continue;
            saved_.emplace_back(fd, flags);
            if (!(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        }
    }
    ~Channel() {
        for (auto [fd, flags] : saved_) ::fcntl(fd, F_SETFL, flags);
    }
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;

    // Exactly dst.size() bytes. With `at_rest`, the first byte is awaited without limit, and
    // the peer closing before it is a clean end: false. Otherwise true.
    Result<bool> read_exact(std::span<std::byte> dst, bool at_rest = false) {
        size_t done = 0;
        while (done < dst.size()) {
            if (rpos_ < rlen_) {
                size_t n = std::min(rlen_ - rpos_, dst.size() - done);
                std::memcpy(dst.data() + done, rbuf_.data() + rpos_, n);
                rpos_ += n;
                done += n;
                continue;
            }
            bool direct = dst.size() - done >= rbuf_.size();
            std::byte* to = direct ? dst.data() + done : rbuf_.data();
            size_t room = direct ? dst.size() - done : rbuf_.size();
            ssize_t n = ::read(in_, to, room);
            if (n > 0) {
                if (direct) done += static_cast<size_t>(n);
                else rpos_ = 0, rlen_ = static_cast<size_t>(n);
                continue;
            }
            if (n == 0) {
                if (at_rest && done == 0) return false;
                return transport(done == 0 ? "closed the connection" : "closed the connection in the middle of a frame");
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                DVOL_CHECK(wait(in_, POLLIN, at_rest && done == 0));
                continue;
            }
            return transport_errno("read from", errno);
        }
        return true;
    }

    Status write_all(std::span<const std::byte> data) {
        while (!data.empty()) {
            ssize_t n;
            if (out_is_socket_) {
                n = ::send(out_, data.data(), data.size(), MSG_NOSIGNAL);
                if (n < 0 && errno == ENOTSOCK) {
                    out_is_socket_ = false;
                    continue;
                }
            } else {
                // A pipe: SIGPIPE is the caller's to ignore (remote-serve does).
                n = ::write(out_, data.data(), data.size());
            }
            if (n >= 0) {
                data = data.subspan(static_cast<size_t>(n));
                continue;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                DVOL_CHECK(wait(out_, POLLOUT, false));
                continue;
            }
            return transport_errno("write to", errno);
        }
        return {};
    }

    Status write_frame(Frame type, std::span<const std::byte> a, std::span<const std::byte> b = {}) {
        uint64_t len = 1 + a.size() + b.size();
        if (len > kMaxFrame)
            return make_error(Errc::internal, fmt::format("a {} frame of {} bytes is too large",
                                                          frame_name(static_cast<uint8_t>(type)), len));
        std::byte h[kHeaderSize];
        for (int i = 0; i < 4; ++i) h[i] = static_cast<std::byte>(len >> (8 * (3 - i)));
        h[4] = static_cast<std::byte>(type);
        // One write for small frames; a large payload goes on its own rather than copied.
        if (a.size() + b.size() <= 4096) {
            std::byte small[kHeaderSize + 4096];
            std::memcpy(small, h, kHeaderSize);
            if (!a.empty()) std::memcpy(small + kHeaderSize, a.data(), a.size());
            if (!b.empty()) std::memcpy(small + kHeaderSize + a.size(), b.data(), b.size());
            return write_all(std::span<const std::byte>(small, kHeaderSize + a.size() + b.size()));
        }
        DVOL_CHECK(write_all(h));
        DVOL_CHECK(write_all(a));
        return write_all(b);
    }

    // The next frame's header, not yet checked (frame_problem() does that). At rest (the
    // server between requests), the peer closing is a clean end: nullopt.
    Result<std::optional<Header>> read_header(bool at_rest) {
        std::byte h[kHeaderSize];
        DVOL_TRY(bool got, read_exact(h, at_rest));
        if (!got) return std::optional<Header>();
        Header out;
        for (int i = 0; i < 4; ++i) out.frame_length = (out.frame_length << 8) | static_cast<uint8_t>(h[i]);
        out.type = static_cast<uint8_t>(h[4]);
        out.length = out.frame_length == 0 ? 0 : out.frame_length - 1;
        return std::optional<Header>(out);
    }

    // A payload of `length` bytes (already checked against its bound) appended to `out`,
    // which grows only as the bytes arrive.
    Status read_payload(size_t length, std::vector<std::byte>& out) {
        size_t start = out.size();
        size_t done = 0;
        while (done < length) {
            size_t step = std::min(length - done, kMaxChunk);
            out.resize(start + done + step);
            DVOL_TRY(bool got, read_exact(std::span(out).subspan(start + done, step)));
            (void)got;
            done += step;
        }
        return {};
    }

    // Whatever arrives within `wait`, up to `max` bytes, never failing: context for a message
    // about a peer that sent something unexpected.
    std::vector<std::byte> whatever_comes(size_t max, std::chrono::milliseconds wait) {
        std::vector<std::byte> out;
        const auto deadline = Clock::now() + wait;
        while (out.size() < max) {
            if (rpos_ < rlen_) {
                size_t n = std::min(rlen_ - rpos_, max - out.size());
                out.insert(out.end(), rbuf_.begin() + static_cast<std::ptrdiff_t>(rpos_),
                           rbuf_.begin() + static_cast<std::ptrdiff_t>(rpos_ + n));
                rpos_ += n;
                continue;
            }
            ssize_t n = ::read(in_, rbuf_.data(), rbuf_.size());
            if (n > 0) {
                rpos_ = 0, rlen_ = static_cast<size_t>(n);
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
            if (left <= 0) break;
            pollfd p{in_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
        }
        return out;
    }

    bool failed() const { return failed_; }

    std::string side_text() {
        drain_side();
        return side_tail_;
    }

private:
    // Waits for `events` on `fd`, draining the side stream meanwhile. Without `forever`, no
    // event within the idle timeout is a failure.
    Status wait(int fd, short events, bool forever) {
        const auto deadline = Clock::now() + idle_;
        for (;;) {
            pollfd p[2] = {{fd, events, 0}, {side_open_ ? side_ : -1, POLLIN, 0}};
            int timeout = -1;
            if (!forever) {
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
                if (left <= 0)
                    return transport(
                        fmt::format("{} nothing for {} ms", events == POLLOUT ? "took" : "sent", idle_.count()));
                timeout = static_cast<int>(std::min<int64_t>(left, 60'000));
            }
            int r = ::poll(p, 2, timeout);
            if (r < 0) {
                if (errno == EINTR) continue;
                return transport_errno("wait for", errno);
            }
            if (p[1].revents) drain_side();
            if (p[0].revents) return {};
        }
    }

    void drain_side() {
        if (!side_open_ || side_ < 0) return;
        char buf[4096];
        for (;;) {
            ssize_t n = ::read(side_, buf, sizeof buf);
            if (n > 0) {
                side_tail_.append(buf, static_cast<size_t>(n));
                if (side_tail_.size() > 2 * kSideKeep) side_tail_.erase(0, side_tail_.size() - kSideKeep);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) side_open_ = false;
            break;
        }
        if (side_tail_.size() > kSideKeep) side_tail_.erase(0, side_tail_.size() - kSideKeep);
    }

    Error transport(const std::string& what) {
        failed_ = true;
        return make_error(Errc::unavailable, fmt::format("{} {}", peer_, what));
    }
    Error transport_errno(const char* what, int err) {
        failed_ = true;
        if (err == EPIPE || err == ECONNRESET)
            return make_error(Errc::unavailable, fmt::format("{} closed the connection", peer_));
        return make_error(Errc::unavailable, fmt::format("cannot {} {}: {}", what, peer_, std::strerror(err)));
    }

    int in_, out_, side_;
    bool side_open_ = true;
    bool out_is_socket_ = true;
    bool failed_ = false;
    std::chrono::milliseconds idle_;
    std::string peer_;
    std::vector<std::pair<int, int>> saved_;
    std::vector<std::byte> rbuf_;
    size_t rpos_ = 0, rlen_ = 0;
    std::string side_tail_;
};

void encode_hello(Encoder& e, uint32_t version) {
    e.raw(as_bytes(kMagic));
    e.u32(version);
    std::string sw = software_name();
    e.u16(static_cast<uint16_t>(sw.size()));
    e.raw(as_bytes(sw));
}

// What came instead of a hello, printable, for messages.
std::string printable(std::span<const std::byte> b) {
    std::string s;
    for (std::byte x : b) {
        auto c = static_cast<unsigned char>(x);
        if (c >= 0x20 && c < 0x7f && c != '\\') s += static_cast<char>(c);
        else if (c == '\n') s += "\\n";
        else s += fmt::format("\\x{:02x}", c);
    }
    return s;
}

struct Hello {
    uint32_t version = 0;
    std::string software;
};

// Reads the peer's hello. A wrong magic is Errc::io naming the bytes that came instead; EOF is
// the channel's error. With `patient`, the first byte is awaited without the idle timeout (the
// server: its client's ssh may be slow to start, and closes the connection if it dies).
Result<Hello> read_hello(Channel& ch, const std::string& peer, bool patient) {
    std::byte magic[8];
    // Byte by byte until it differs: a peer that sends something short (a shell's one-line
    // error) and stays open must not leave us waiting for 8 bytes.
    for (size_t i = 0; i < sizeof magic; ++i) {
        DVOL_TRY(bool got, ch.read_exact(std::span(magic).subspan(i, 1), patient && i == 0));
        if (!got) return make_error(Errc::unavailable, fmt::format("{} closed the connection before its hello", peer));
        if (static_cast<char>(magic[i]) != kMagic[i]) {
            std::vector<std::byte> seen(magic, magic + i + 1);
            auto more = ch.whatever_comes(120, std::chrono::milliseconds(200));
            seen.insert(seen.end(), more.begin(), more.end());
            return make_error(Errc::io, fmt::format("{} does not speak dvol's remote protocol: it sent \"{}\" instead of a hello "
                                                    "(is the command on the far side dvol? does a login script print to "
                                                    "standard output?)",
                                                    peer, printable(seen)));
        }
    }
    std::byte fixed[6];
    DVOL_TRY(bool got, ch.read_exact(fixed));
    (void)got;
    Decoder d(fixed);
    Hello h;
    h.version = d.u32();
    uint16_t n = d.u16();
    if (n > kMaxSoftware)
        return make_error(Errc::io, fmt::format("protocol error: {} names its software in {} bytes, more than {}", peer, n,
                                                kMaxSoftware));
    std::vector<std::byte> sw(n);
    DVOL_TRY(bool got2, ch.read_exact(sw));
    (void)got2;
    h.software = printable(sw);
    return h;
}

void encode_status(Encoder& e, const Status& st) {
    if (st) {
        e.u8(0);
        e.str("");
        return;
    }
    e.u8(wire_code(st.error().code));
    std::string_view m = st.error().message;
    e.str(m.substr(0, kMaxString));
}

// A spool file for a large write: unlinked from the start (O_TMPFILE, else mkstemp and
// unlink), in `dir` if possible, else $TMPDIR or /tmp.
Result<UniqueFd> open_spool(const std::string& dir) {
    std::vector<std::string> dirs;
    if (!dir.empty()) dirs.push_back(dir);
    const char* t = std::getenv("TMPDIR");
    dirs.push_back(t && *t ? t : "/tmp");
    int last = 0;
    for (const auto& d : dirs) {
        int fd = ::open(d.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0) return UniqueFd(fd);
        std::string tmpl = d + "/.dvol-spool~XXXXXX";  // '~': never a key, never listed
        fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
        if (fd >= 0) {
            ::unlink(tmpl.c_str());
            return UniqueFd(fd);
        }
        last = errno;
    }
    return errno_error("create a spool file in", dirs.front(), last);
}

class Server {
public:
    Server(Backend* backend, int in, int out, const ServeOptions& options)
        : backend_(backend), options_(options), ch_(in, out, -1, options.idle_timeout, "the client") {}

    Status handshake(const Error* refusal) {
        Encoder e;
        encode_hello(e, options_.version);
        DVOL_CHECK(ch_.write_all(e.view()));
        DVOL_TRY(Hello h, read_hello(ch_, "the client", true));
        if (h.version != options_.version) {
            Error mismatch = make_error(
                Errc::unsupported,
                fmt::format("{} speaks dvol remote protocol version {}, and the client ({}) version {}: install the same "
                            "dvol version on both sides",
                            software_name(), options_.version, h.software, h.version));
            (void)reply(mismatch);
            return mismatch;
        }
        if (refusal) {
            DVOL_CHECK(reply(*refusal));
            return *refusal;
        }
        return reply({});
    }

    Status loop() {
        for (;;) {
            DVOL_TRY(auto header, ch_.read_header(true));
            if (!header) return {};
            if (auto problem = frame_problem(*header)) return violation(*problem);
            body_.clear();
            switch (static_cast<Frame>(header->type)) {
            case Frame::list:
            case Frame::read:
            case Frame::read_all:
            case Frame::write:
            case Frame::read_ref:
            case Frame::create_ref:
            case Frame::update_ref:
            case Frame::remove: break;
            default:
                return violation(fmt::format("a {} frame (type {}) where a request was expected", frame_name(header->type),
                                             header->type));
            }
            DVOL_CHECK(ch_.read_payload(header->length, body_));
            DVOL_CHECK(dispatch(static_cast<Frame>(header->type)));
        }
    }

private:
    Status dispatch(Frame type) {
        Decoder d(body_);
        std::string key = d.str(kMaxString, type == Frame::list ? "a prefix" : "a key");
        switch (type) {
        case Frame::list:
            if (!d.finish("LIST")) return violation(d.why());
            return do_list(key);
        case Frame::read: {
            uint64_t offset = d.u64(), length = d.u64();
            if (!d.finish("READ")) return violation(d.why());
            return do_read(key, offset, length);
        }
        case Frame::read_all:
            if (!d.finish("READ_ALL")) return violation(d.why());
            return do_read(key, 0, UINT64_MAX);
        case Frame::write: {
            uint64_t size = d.u64();
            if (!d.finish("WRITE")) return violation(d.why());
            return do_write(key, size);
        }
        case Frame::read_ref: {
            if (!d.finish("READ_REF")) return violation(d.why());
            auto r = backend_->read_ref(key);
            if (!r) return reply(r.error());
            Encoder e;
            e.u8(r->has_value() ? 1 : 0);
            e.str(r->has_value() ? std::string_view((*r)->data) : std::string_view());
            e.str(r->has_value() ? std::string_view((*r)->version) : std::string_view());
            return reply({}, e.view());
        }
        case Frame::create_ref:
        case Frame::update_ref: {
            std::string data = d.str(kMaxRefValue, "a ref's data");
            std::string expected = type == Frame::update_ref ? d.str(kMaxString, "a version") : std::string();
            if (!d.finish(frame_name(static_cast<uint8_t>(type)))) return violation(d.why());
            auto r = type == Frame::create_ref ? backend_->create_ref(key, data) : backend_->update_ref(key, data, expected);
            if (!r) return reply(r.error());
            Encoder e;
            e.str(*r);
            return reply({}, e.view());
        }
        case Frame::remove:
            if (!d.finish("REMOVE")) return violation(d.why());
            return reply(backend_->remove(key));
        default: return violation("an unknown request");
        }
    }

    Status do_list(const std::string& prefix) {
        auto r = backend_->list(prefix);
        if (!r) return reply(r.error());
        Encoder batch;
        for (const auto& entry : *r) {
            if (batch.size() + 12 + entry.key.size() > kMaxChunk) {
                DVOL_CHECK(ch_.write_frame(Frame::entries, batch.view()));
                batch.clear();
            }
            batch.str(entry.key);
            batch.u64(entry.size);
        }
        if (batch.size() > 0) DVOL_CHECK(ch_.write_frame(Frame::entries, batch.view()));
        return reply({});
    }

    // In chunks of kMaxChunk, each read from the backend as it is sent: objects are
    // immutable, and the server never holds more than a chunk of one.
    Status do_read(const std::string& key, uint64_t offset, uint64_t length) {
        uint64_t done = 0;
        std::vector<std::byte> chunk;
        for (;;) {
            uint64_t want = std::min<uint64_t>(length - done, kMaxChunk);
            if (offset > UINT64_MAX - done) break;
            auto st = backend_->read(key, offset + done, want, chunk);
            if (!st) return reply(st);
            if (!chunk.empty()) DVOL_CHECK(ch_.write_frame(Frame::data, chunk));
            done += chunk.size();
            if (chunk.size() < want || want == 0 || done == length) break;
        }
        return reply({});
    }

    // Small writes are gathered in memory and go to Backend::write; larger ones are spooled to
    // an unlinked file and go to Backend::write_file. The data is read to its END whatever
    // happens, so that the connection stays in step.
    Status do_write(const std::string& key, uint64_t size) {
        const bool in_memory = size <= kMaxInMemoryWrite;
        std::vector<std::byte> mem;
        UniqueFd spool;
        std::optional<Error> failed;
        // An invalid key is not spooled: the backend says why at the END.
        if (!in_memory && valid_key(key)) {
            auto s = open_spool(options_.spool_dir);
            if (s) spool = std::move(*s);
            else failed = s.error();
        }
        uint64_t got = 0;
        for (;;) {
            DVOL_TRY(auto header, ch_.read_header(false));
            if (auto problem = frame_problem(*header)) return violation(*problem);
            auto type = static_cast<Frame>(header->type);
            if (type == Frame::data) {
                if (header->length > kMaxChunk) return violation(fmt::format("a DATA frame of {} bytes", header->length));
                if (header->length > size - got)
                    return violation(fmt::format("more than the {} bytes announced for {}", size, key));
                if (in_memory) {
                    DVOL_CHECK(ch_.read_payload(header->length, mem));
                } else {
                    chunk_.clear();
                    DVOL_CHECK(ch_.read_payload(header->length, chunk_));
                    if (spool.valid() && !failed) {
                        auto st = pwrite_all(spool.get(), chunk_, got, "the spool file");
                        if (!st) failed = st.error();
                    }
                }
                got += header->length;
            } else if (type == Frame::end) {
                if (header->length != 0) return violation("an END frame with a payload");
                if (got != size)
                    return violation(fmt::format("a WRITE of {} ended after {} of its {} bytes", key, got, size));
                break;
            } else if (type == Frame::abort) {
                if (header->length > kMaxString + 4) return violation("an oversized ABORT frame");
                body_.clear();
                DVOL_CHECK(ch_.read_payload(header->length, body_));
                Decoder d(body_);
                std::string why = d.str(kMaxString, "a reason");
                if (!d.finish("ABORT")) return violation(d.why());
                return reply(make_error(Errc::io, fmt::format("the client abandoned its write of {}: {}", key, why)));
            } else {
                return violation(fmt::format("a {} frame in the middle of a WRITE", frame_name(header->type)));
            }
        }
        if (failed) return reply(*failed);
        if (in_memory || !spool.valid()) return reply(backend_->write(key, mem));
        return reply(backend_->write_file(key, spool.get(), size));
    }

    Status reply(const Status& st, std::span<const std::byte> fields = {}) {
        Encoder e;
        encode_status(e, st);
        return ch_.write_frame(Frame::status, e.view(), st ? fields : std::span<const std::byte>());
    }

    // Tells the client (if it still listens) and ends the session.
    Status violation(const std::string& what) {
        Error e = make_error(Errc::io, fmt::format("protocol error from the client: {}", what));
        (void)reply(e);
        return e;
    }

    Backend* backend_;
    ServeOptions options_;
    Channel ch_;
    std::vector<std::byte> body_;
    std::vector<std::byte> chunk_;
};

// The served directory: a DirBackend once the directory exists; before, with `create`, an
// empty remote whose first write makes it.
class ServedDirectory final : public Backend {
public:
    explicit ServedDirectory(std::string path) : path_(std::move(path)) {}

    const std::string& location() const override { return path_; }

    Result<std::vector<Entry>> list(const std::string& prefix) override {
        DVOL_TRY(Backend * b, existing());
        if (!b) return std::vector<Entry>();
        return b->list(prefix);
    }
    Status read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) override {
        DVOL_TRY(Backend * b, existing());
        if (!b) return missing(key);
        return b->read(key, offset, length, out);
    }
    Status read_all(const std::string& key, std::vector<std::byte>& out) override {
        DVOL_TRY(Backend * b, existing());
        if (!b) return missing(key);
        return b->read_all(key, out);
    }
    Status write(const std::string& key, std::span<const std::byte> data) override {
        DVOL_TRY(Backend * b, made(key));
        return b->write(key, data);
    }
    Status write_file(const std::string& key, int fd, uint64_t size) override {
        DVOL_TRY(Backend * b, made(key));
        return b->write_file(key, fd, size);
    }
    Result<std::optional<RefValue>> read_ref(const std::string& key) override {
        DVOL_TRY(Backend * b, existing());
        if (!b) {
            DVOL_CHECK(check_key(key));
            return std::optional<RefValue>();
        }
        return b->read_ref(key);
    }
    Result<std::string> create_ref(const std::string& key, std::string_view data) override {
        DVOL_TRY(Backend * b, made(key));
        return b->create_ref(key, data);
    }
    Result<std::string> update_ref(const std::string& key, std::string_view data, const std::string& expected) override {
        DVOL_TRY(Backend * b, existing());
        if (!b) {
            DVOL_CHECK(check_key(key));
            return make_error(Errc::conflict, fmt::format("ref {} does not exist on remote {}", key, path_));
        }
        return b->update_ref(key, data, expected);
    }
    Status remove(const std::string& key) override {
        DVOL_TRY(Backend * b, existing());
        if (!b) return check_key(key);
        return b->remove(key);
    }

private:
    // The directory's backend, or null while it does not exist (another client may make it
    // at any time, so this looks again until it does).
    Result<Backend*> existing() {
        if (dir_) return static_cast<Backend*>(dir_.get());
        auto d = DirBackend::open(path_);
        if (!d) {
            if (d.error().code == Errc::not_found) return static_cast<Backend*>(nullptr);
            return std::move(d).error();
        }
        dir_ = std::move(*d);
        return static_cast<Backend*>(dir_.get());
    }

    // The directory's backend, the directory made (mode 0777 less the umask) if need be. An
    // invalid key makes nothing.
    Result<Backend*> made(const std::string& key) {
        DVOL_TRY(Backend * b, existing());
        if (b) return b;
        DVOL_CHECK(check_key(key));
        if (::mkdir(path_.c_str(), 0777) != 0 && errno != EEXIST) {
            int err = errno;
            if (err == ENOENT)
                return make_error(Errc::not_found,
                                  fmt::format("cannot create remote {}: its parent directory does not exist", path_));
            Error e = errno_error("create remote", path_, err);
            if (err == EACCES || err == EPERM || err == EROFS) e.code = Errc::denied;
            return e;
        }
        std::string parent = path_.find('/') == std::string::npos ? "." : path_.substr(0, path_.find_last_of('/'));
        DVOL_CHECK(fsync_dir(parent.empty() ? "/" : parent));
        DVOL_TRY(b, existing());
        if (!b) return make_error(Errc::not_found, fmt::format("remote {} vanished as it was created", path_));
        return b;
    }

    Status check_key(const std::string& key) const {
        if (valid_key(key)) return {};
        return make_error(Errc::invalid_argument,
                          fmt::format("invalid key '{}' for remote {}: a key is '/'-separated names of letters, digits, "
                                      "'.', '_' and '-', none empty, '.' or '..'",
                                      key, path_));
    }

    Status missing(const std::string& key) const {
        DVOL_CHECK(check_key(key));
        return make_error(Errc::not_found, fmt::format("no key {} on remote {} (the remote is empty: its directory does not "
                                                       "exist yet)",
                                                       key, path_));
    }

    std::string path_;
    std::unique_ptr<DirBackend> dir_;
};

}  // namespace

// ---- the client -------------------------------------------------------------------------------

class Client::Io : public Channel {
public:
    using Channel::Channel;
};

struct Client::Answer {
    std::vector<std::byte> fields;  // the STATUS's results, after its code and message
};

Client::Client(int in, int out, int side, std::string location, ClientOptions options)
    : io_(std::make_unique<Io>(in, out, side, options.idle_timeout, location)),
      location_(std::move(location)),
      options_(options) {}

Client::~Client() = default;

std::string Client::side_text() { return io_->side_text(); }

Status Client::usable() const {
    if (broken_)
        return make_error(Errc::unavailable, fmt::format("the connection to {} was lost earlier", location_));
    return {};
}

Error Client::lost(Error e) {
    broken_ = true;
    transport_failed_ = io_->failed();
    return e;
}

Status Client::handshake() {
    Encoder e;
    encode_hello(e, options_.version);
    if (auto st = io_->write_all(e.view()); !st) return lost(std::move(st).error());
    auto hello = read_hello(*io_, location_, false);
    if (!hello) return lost(std::move(hello).error());
    server_software_ = hello->software;
    if (hello->version != options_.version)
        return lost(make_error(Errc::unsupported,
                               fmt::format("{}: the server runs {}, which speaks dvol remote protocol version {}; this dvol ({}) "
                                           "speaks version {}: install the same dvol version on both sides",
                                           location_, hello->software, hello->version, software_name(), options_.version)));
    auto a = answer(nullptr, nullptr, 0);
    if (!a) {
        // The server stops after refusing: this connection is done either way.
        broken_ = true;
        transport_failed_ = io_->failed();
        return std::move(a).error();
    }
    if (!a->fields.empty())
        return lost(make_error(Errc::io, fmt::format("protocol error from {}: a hello STATUS with results", location_)));
    return {};
}

Status Client::send(Frame type, std::span<const std::byte> a, std::span<const std::byte> b) {
    if (auto st = io_->write_frame(type, a, b); !st) return lost(std::move(st).error());
    return {};
}

// Reads frames up to the STATUS that ends an answer: DATA appended to `data` (at most `limit`
// bytes in all), ENTRIES to `entries`; anything else, or either where it is not expected, is a
// protocol violation.
Result<Client::Answer> Client::answer(std::vector<std::byte>* data, std::vector<Entry>* entries, uint64_t limit) {
    auto violation = [&](const std::string& what) {
        return lost(make_error(Errc::io, fmt::format("protocol error from {}: {}", location_, what)));
    };
    std::vector<std::byte> body;
    for (;;) {
        auto header = io_->read_header(false);
        if (!header) return lost(std::move(header).error());
        if (auto problem = frame_problem(**header)) return violation(*problem);
        const auto type = static_cast<Frame>((*header)->type);
        const size_t length = (*header)->length;
        if (type == Frame::data && data) {
            if (length > kMaxChunk) return violation(fmt::format("a DATA frame of {} bytes", length));
            if (length > limit - std::min<uint64_t>(limit, data->size()))
                return violation(fmt::format("more data than the {} bytes asked for", limit));
            if (auto st = io_->read_payload(length, *data); !st) return lost(std::move(st).error());
        } else if (type == Frame::entries && entries) {
            if (length > kMaxChunk) return violation(fmt::format("an ENTRIES frame of {} bytes", length));
            body.clear();
            if (auto st = io_->read_payload(length, body); !st) return lost(std::move(st).error());
            Decoder d(body);
            while (d.ok() && !d.at_end()) {
                Entry entry;
                entry.key = d.str(kMaxString, "a key");
                entry.size = d.u64();
                if (d.ok()) entries->push_back(std::move(entry));
            }
            if (!d.ok()) return violation(d.why());
        } else if (type == Frame::status) {
            body.clear();
            if (auto st = io_->read_payload(length, body); !st) return lost(std::move(st).error());
            Decoder d(body);
            uint8_t code = d.u8();
            std::string message = d.str(kMaxString, "a message");
            if (!d.ok()) return violation(d.why());
            if (code != 0) {
                if (message.empty()) message = "the server failed without saying why";
                return make_error(errc_of(code), fmt::format("{}: {}", location_, message));
            }
            Answer a;
            a.fields.assign(body.end() - static_cast<std::ptrdiff_t>(d.left()), body.end());
            return a;
        } else {
            return violation(fmt::format("an unexpected {} frame (type {})", frame_name((*header)->type), (*header)->type));
        }
    }
}

Result<std::vector<Entry>> Client::list(const std::string& prefix) {
    DVOL_CHECK(usable());
    Encoder e;
    e.str(prefix);
    DVOL_CHECK(send(Frame::list, e.view()));
    std::vector<Entry> out;
    DVOL_TRY(Answer a, answer(nullptr, &out, 0));
    if (!a.fields.empty())
        return lost(make_error(Errc::io, fmt::format("protocol error from {}: LIST's STATUS has results", location_)));
    return out;
}

Status Client::read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out) {
    DVOL_CHECK(usable());
    Encoder e;
    e.str(key);
    e.u64(offset);
    e.u64(length);
    DVOL_CHECK(send(Frame::read, e.view()));
    out.clear();
    DVOL_TRY(Answer a, answer(&out, nullptr, length));
    (void)a;
    return {};
}

Status Client::read_all(const std::string& key, std::vector<std::byte>& out) {
    DVOL_CHECK(usable());
    Encoder e;
    e.str(key);
    DVOL_CHECK(send(Frame::read_all, e.view()));
    out.clear();
    DVOL_TRY(Answer a, answer(&out, nullptr, UINT64_MAX));
    (void)a;
    return {};
}

Status Client::send_data(std::span<const std::byte> data) {
    while (!data.empty()) {
        auto part = data.first(std::min(data.size(), kMaxChunk));
        DVOL_CHECK(send(Frame::data, part));
        data = data.subspan(part.size());
    }
    return {};
}

Status Client::write(const std::string& key, std::span<const std::byte> data) {
    DVOL_CHECK(usable());
    Encoder e;
    e.str(key);
    e.u64(data.size());
    DVOL_CHECK(send(Frame::write, e.view()));
    DVOL_CHECK(send_data(data));
    DVOL_CHECK(send(Frame::end, {}));
    DVOL_TRY(Answer a, answer(nullptr, nullptr, 0));
    (void)a;
    return {};
}

// The server drops what it received and answers; our own reason is what the caller gets.
Error Client::abandon_write(Error why) {
    Encoder e;
    e.str(std::string_view(why.message).substr(0, kMaxString));
    if (!send(Frame::abort, e.view())) return why;
    auto a = answer(nullptr, nullptr, 0);
    if (!a && broken_) return a.error();  // the connection went meanwhile: that is worth knowing
    return why;
}

Status Client::write_file(const std::string& key, int fd, uint64_t size) {
    DVOL_CHECK(usable());
    Encoder e;
    e.str(key);
    e.u64(size);
    DVOL_CHECK(send(Frame::write, e.view()));
    std::vector<std::byte> buf(static_cast<size_t>(std::min<uint64_t>(size, kMaxChunk)));
    uint64_t done = 0;
    while (done < size) {
        auto part = std::span(buf).first(static_cast<size_t>(std::min<uint64_t>(size - done, buf.size())));
        auto n = pread_some(fd, part, done, fmt::format("the source of {}", key));
        if (!n) return abandon_write(std::move(n).error());
        if (*n == 0)
            return abandon_write(make_error(Errc::io, fmt::format("cannot write {} on remote {}: its source ends at byte {} of {}",
                                                                  key, location_, done, size)));
        DVOL_CHECK(send(Frame::data, part.first(*n)));
        done += *n;
    }
    DVOL_CHECK(send(Frame::end, {}));
    DVOL_TRY(Answer a, answer(nullptr, nullptr, 0));
    (void)a;
    return {};
}

Result<std::optional<RefValue>> Client::read_ref(const std::string& key) {
    DVOL_CHECK(usable());
    Encoder e;
    e.str(key);
    DVOL_CHECK(send(Frame::read_ref, e.view()));
    DVOL_TRY(Answer a, answer(nullptr, nullptr, 0));
    Decoder d(a.fields);
    uint8_t present = d.u8();
    RefValue v;
    v.data = d.str(kMaxRefValue, "a ref's data");
    v.version = d.str(kMaxString, "a version");
    if (!d.finish("READ_REF's STATUS") || present > 1)
        return lost(make_error(Errc::io, fmt::format("protocol error from {}: {}", location_,
                                                     d.ok() ? std::string("a bad READ_REF answer") : d.why())));
    if (!present) return std::optional<RefValue>();
    return std::optional<RefValue>(std::move(v));
}

Result<std::string> Client::change_ref(Frame type, const std::string& key, std::string_view data,
                                       const std::string* expected) {
    DVOL_CHECK(usable());
    if (data.size() > kMaxRefValue)
        return make_error(Errc::invalid_argument,
                          fmt::format("ref {} on remote {}: a value of {} bytes, more than a ref may hold ({})", key, location_,
                                      data.size(), kMaxRefValue));
    Encoder e;
    e.str(key);
    e.str(data);
    if (expected) e.str(*expected);
    DVOL_CHECK(send(type, e.view()));
    DVOL_TRY(Answer a, answer(nullptr, nullptr, 0));
    Decoder d(a.fields);
    std::string version = d.str(kMaxString, "a version");
    if (!d.finish("the ref's STATUS"))
        return lost(make_error(Errc::io, fmt::format("protocol error from {}: {}", location_, d.why())));
    return version;
}

Result<std::string> Client::create_ref(const std::string& key, std::string_view data) {
    return change_ref(Frame::create_ref, key, data, nullptr);
}

Result<std::string> Client::update_ref(const std::string& key, std::string_view data, const std::string& expected) {
    return change_ref(Frame::update_ref, key, data, &expected);
}

Status Client::remove(const std::string& key) {
    DVOL_CHECK(usable());
    Encoder e;
    e.str(key);
    DVOL_CHECK(send(Frame::remove, e.view()));
    DVOL_TRY(Answer a, answer(nullptr, nullptr, 0));
    (void)a;
    return {};
}

// ---- the server -------------------------------------------------------------------------------

Status serve(Backend& backend, int in, int out, const ServeOptions& options) {
    Server server(&backend, in, out, options);
    DVOL_CHECK(server.handshake(nullptr));
    return server.loop();
}

Status refuse(const Error& why, int in, int out, const ServeOptions& options) {
    Server server(nullptr, in, out, options);
    return server.handshake(&why);
}

Result<std::unique_ptr<Backend>> open_served_directory(const std::string& path, bool create) {
    if (path.empty()) return make_error(Errc::invalid_argument, "remote-serve needs a directory");
    if (!create) {
        DVOL_TRY(auto dir, DirBackend::open(path));
        return std::unique_ptr<Backend>(std::move(dir));
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
        return make_error(Errc::invalid_argument, fmt::format("remote {} is not a directory", path));
    return std::unique_ptr<Backend>(std::make_unique<ServedDirectory>(path));
}

}  // namespace dvol::remote::wire
