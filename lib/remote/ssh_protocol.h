// The protocol between an ssh:// remote's two ends: SshBackend (lib/remote/ssh_backend.h) on the
// user's side, and `dvol remote-serve DIR` on the server, started by ssh, serving a directory
// through a Backend. It carries one request per Backend call over a pair of byte streams (the
// server's stdin and stdout), so it works over any pipe, socket or ssh channel.
//
// Handshake: both ends send a hello at once, without waiting for the other's:
//     magic "DVOL-RS\n" (8 bytes), u32 protocol version, u16 n, n bytes naming the software
//     (e.g. "dvol 0.1.0", n <= 256)
// This layout never changes between versions. An end that gets another version says so (the
// client's error is Errc::unsupported, naming both versions and the server's software; the
// server writes the same to stderr) and stops. The server then sends one STATUS frame: ok, or
// why the remote cannot be served (its directory does not exist, is not a directory...).
//
// Frames, after the hello, in both directions:
//     u32 length (of what follows, >= 1), u8 type, length - 1 bytes of payload
// Integers are big-endian; a "str" is a u32 length and that many bytes. Every length read from
// the wire is checked against the bounds below before anything is allocated for it, and a
// frame's payload buffer grows only as its bytes arrive.
//
// Requests (client to server), one at a time; the server answers each before reading the next:
//     LIST       str prefix                      -> ENTRIES*, STATUS
//     READ       str key, u64 offset, u64 length -> DATA*, STATUS
//     READ_ALL   str key                         -> DATA*, STATUS
//     WRITE      str key, u64 size, then DATA* and END (or ABORT: str why) -> STATUS
//     READ_REF   str key                         -> STATUS + u8 present, str data, str version
//     CREATE_REF str key, str data               -> STATUS + str version
//     UPDATE_REF str key, str data, str expected -> STATUS + str version
//     REMOVE     str key                         -> STATUS
// DATA payloads are raw bytes, at most kMaxChunk each. ENTRIES payloads are whole entries
// (str key, u64 size), at most kMaxChunk bytes of them per frame. STATUS is u8 code (0: ok,
// else an Errc, see the .cpp for the numbers), str message, then the request's results when
// ok. An error STATUS after some DATA means the data is to be dropped.
//
// Either end that receives something it does not expect (an unknown type, a frame over its
// bound, a field running past its frame, a WRITE with more or fewer bytes than announced)
// treats the connection as broken: the server answers a STATUS with Errc::io when it can and
// stops; the client drops the connection.
//
// Keys are not checked here: the served Backend validates them as it always does.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "remote/backend.h"

namespace dvol::remote::wire {

inline constexpr std::string_view kMagic = "DVOL-RS\n";
inline constexpr uint32_t kProtocolVersion = 1;

// Bounds on what the wire may announce.
inline constexpr size_t kMaxChunk = 1u << 20;                          // a DATA or ENTRIES payload
inline constexpr size_t kMaxRefValue = 16u << 20;                      // a ref's data
inline constexpr size_t kMaxString = 64u << 10;                        // keys, prefixes, versions, messages
inline constexpr size_t kMaxFrame = kMaxRefValue + 3 * kMaxString;     // any frame
inline constexpr size_t kMaxSoftware = 256;                            // the hello's software name

// Frame types.
enum class Frame : uint8_t {
    list = 1,
    read = 2,
    read_all = 3,
    write = 4,
    read_ref = 5,
    create_ref = 6,
    update_ref = 7,
    remove = 8,
    data = 16,
    end = 17,
    abort = 18,
    entries = 19,
    status = 32,
};

// How long either end waits for bytes it is owed (the rest of a frame, an answer) before it
// gives the connection up as dead (Errc::unavailable). A server waits for the next request
// without limit: the client may hold the connection idle.
inline constexpr std::chrono::milliseconds kDefaultIdleTimeout{300'000};

// The client end, over two file descriptors it borrows: `in` reads the server's output, `out`
// writes its input. Both are switched to non-blocking mode for the Client's lifetime (their
// previous flags are restored after). While it waits, the Client also drains `side` (ssh's
// stderr, or -1), keeping the last 16 KiB of it, so that a chatty peer never blocks on it.
//
// After a transport failure (the peer closed, a write found no reader, the idle timeout, a
// protocol violation) broken() is true and every call fails at once: make a new connection.
// Errors the server reports in a STATUS are returned with their code, the message prefixed by
// "<location>: ".
struct ClientOptions {
    uint32_t version = kProtocolVersion;  // tests use another to provoke a mismatch
    std::chrono::milliseconds idle_timeout = kDefaultIdleTimeout;
};

class Client {
public:
    Client(int in, int out, int side, std::string location, ClientOptions options = {});
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Exchanges hellos and reads the server's first STATUS. Errc::unsupported for a version
    // mismatch, Errc::io when the peer does not speak this protocol (with what it sent), the
    // server's error when it cannot serve the remote.
    Status handshake();
    // The server's software name from its hello ("" before the handshake).
    const std::string& server_software() const { return server_software_; }

    bool broken() const { return broken_; }
    // Whether the last failure was the transport's (EOF, EPIPE, a timeout), as opposed to a
    // protocol violation or an error the server reported: only then is the peer's stderr the
    // likely explanation.
    bool transport_failed() const { return transport_failed_; }
    // What was drained from `side` so far (its last 16 KiB), and drains it once more without
    // waiting.
    std::string side_text();

    Result<std::vector<Entry>> list(const std::string& prefix);
    Status read(const std::string& key, uint64_t offset, uint64_t length, std::vector<std::byte>& out);
    Status read_all(const std::string& key, std::vector<std::byte>& out);
    Status write(const std::string& key, std::span<const std::byte> data);
    // Streams `size` bytes of `fd` from offset 0 (pread: the file position is left alone), a
    // chunk at a time. A source that ends early or fails is ABORTed: the server stores nothing
    // and the connection stays usable.
    Status write_file(const std::string& key, int fd, uint64_t size);
    Result<std::optional<RefValue>> read_ref(const std::string& key);
    Result<std::string> create_ref(const std::string& key, std::string_view data);
    Result<std::string> update_ref(const std::string& key, std::string_view data, const std::string& expected);
    Status remove(const std::string& key);

private:
    class Io;
    struct Answer;

    Status usable() const;
    Error lost(Error e);
    Status send(Frame type, std::span<const std::byte> a, std::span<const std::byte> b = {});
    Result<Answer> answer(std::vector<std::byte>* data, std::vector<Entry>* entries, uint64_t limit);
    Status send_data(std::span<const std::byte> data);
    Error abandon_write(Error why);
    Result<std::string> change_ref(Frame type, const std::string& key, std::string_view data, const std::string* expected);

    std::unique_ptr<Io> io_;
    std::string location_;
    ClientOptions options_;
    std::string server_software_;
    bool broken_ = false;
    bool transport_failed_ = false;
};

struct ServeOptions {
    uint32_t version = kProtocolVersion;  // tests use another to provoke a mismatch
    // Writes larger than kMaxInMemoryWrite are spooled to an unlinked file here (O_TMPFILE),
    // then handed to Backend::write_file: the server never holds a large object in memory. Put
    // it on the remote's file system, so that the copy can be a reflink. Empty, or when a file
    // cannot be made there: $TMPDIR, else /tmp.
    std::string spool_dir;
    std::chrono::milliseconds idle_timeout = kDefaultIdleTimeout;
};
inline constexpr size_t kMaxInMemoryWrite = 4u << 20;

// Serves `backend` on `in` and `out` (borrowed): the handshake, then requests until the client
// closes its end at a frame boundary (success). A protocol violation or a transport failure
// is returned as an error, after the client was told when it could be. Never writes anything
// to `out` but the protocol.
Status serve(Backend& backend, int in, int out, const ServeOptions& options = {});
// The same for a remote that cannot be served: the handshake, answered with `why`.
Status refuse(const Error& why, int in, int out, const ServeOptions& options = {});

// What `dvol remote-serve` serves: the directory at `path` through a DirBackend. A missing
// directory is Errc::not_found ("remote <path> does not exist") unless `create`; then it is
// served as an empty remote (listings empty, reads not_found, no refs) and created (not its
// parents: a mistyped parent is an error, Errc::not_found) by the first write or create_ref.
Result<std::unique_ptr<Backend>> open_served_directory(const std::string& path, bool create);

}  // namespace dvol::remote::wire
