// dvol-docker-plugin: Docker's legacy volume plugin protocol on a unix socket, HTTP served by
// libmicrohttpd, each request handed to VolumeDriver (volume_driver.h) over libdvol.
//
// It runs in the foreground, logs one line per request on stderr, and stops on SIGTERM,
// SIGINT or SIGHUP, removing its socket.
#include <CLI/CLI.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "base/fs.h"
#include "dvol_config.h"
#include "lazy_mounts.h"
#include "repo/repository.h"
#include "volume_driver.h"

namespace {

using dvol::plugin::kMaxBody;
using dvol::plugin::Reply;
using dvol::plugin::VolumeDriver;

constexpr const char* kDefaultSocket = "/run/docker/plugins/dvol.sock";
constexpr const char* kContentType = "application/vnd.docker.plugins.v1+json";

void log_line(const std::string& line) {
    char ts[32];
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fmt::print(stderr, "{} {}\n", ts, line);
    std::fflush(stderr);
}

// What the log shows of an untrusted string: printable ASCII, at most `max` characters.
std::string printable(std::string_view s, size_t max = 64) {
    std::string out;
    for (char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    return out;
}

struct RequestBody {
    std::string data;
    bool too_large = false;
};

MHD_Result send_reply(MHD_Connection* conn, const Reply& reply) {
    MHD_Response* resp = MHD_create_response_from_buffer(reply.body.size(), const_cast<char*>(reply.body.data()),
                                                         MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, kContentType);
    MHD_Result r = MHD_queue_response(conn, reply.status, resp);
    MHD_destroy_response(resp);
    return r;
}

MHD_Result on_request(void* cls, MHD_Connection* conn, const char* url, const char* method, const char* /*version*/,
                      const char* upload_data, size_t* upload_data_size, void** con_cls) noexcept {
    try {
        auto* driver = static_cast<VolumeDriver*>(cls);
        if (!*con_cls) {
            *con_cls = new RequestBody();
            return MHD_YES;
        }
        auto* body = static_cast<RequestBody*>(*con_cls);
        if (*upload_data_size > 0) {
            // Keep reading what the client sends (so the reply reaches it), but keep no more
            // than the limit.
            if (body->data.size() + *upload_data_size > kMaxBody) {
                body->too_large = true;
                body->data.clear();
                body->data.shrink_to_fit();
            } else if (!body->too_large) {
                body->data.append(upload_data, *upload_data_size);
            }
            *upload_data_size = 0;
            return MHD_YES;
        }
        std::string_view path = url ? url : "";
        if (path.starts_with("/")) path.remove_prefix(1);
        Reply reply;
        if (std::strcmp(method, "POST") != 0) {
            reply = Reply{405, R"({"Err":"the plugin API takes POST requests only"})",
                          fmt::format("{} {} -> 405", printable(method), printable(path))};
        } else if (body->too_large) {
            reply = VolumeDriver::too_large(printable(path));
        } else {
            reply = driver->handle(path, body->data);
        }
        log_line(printable(reply.summary, 1024));
        return send_reply(conn, reply);
    } catch (...) {
        return MHD_NO;  // microhttpd closes the connection
    }
}

void on_completed(void* /*cls*/, MHD_Connection* /*conn*/, void** con_cls, MHD_RequestTerminationCode /*toe*/) noexcept {
    delete static_cast<RequestBody*>(*con_cls);
    *con_cls = nullptr;
}

// A listening unix socket at `path`, mode 0600 (root-only when run as root). A socket file
// left by a plugin that died is replaced; one that answers is another plugin's, and refused.
int listen_unix(const std::string& path, std::string& err) {
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path) {
        err = fmt::format("socket path {} is too long", path);
        return -1;
    }
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    auto slash = path.find_last_of('/');
    if (slash != std::string::npos && slash > 0) {
        if (auto st = dvol::make_dirs(path.substr(0, slash), 0755); !st) {
            err = st.error().message;
            return -1;
        }
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            err = fmt::format("{} exists and is not a socket", path);
            return -1;
        }
        int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool alive = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
        if (probe >= 0) ::close(probe);
        if (alive) {
            err = fmt::format("another process is serving {}; stop it first", path);
            return -1;
        }
        ::unlink(path.c_str());
    }
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = fmt::format("socket: {}", std::strerror(errno));
        return -1;
    }
    mode_t old = ::umask(0177);
    int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::umask(old);
    if (rc != 0 || ::chmod(path.c_str(), 0600) != 0 || ::listen(fd, 64) != 0) {
        err = fmt::format("cannot listen on {}: {}", path, std::strerror(errno));
        ::close(fd);
        return -1;
    }
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    const char* env_root = std::getenv("DVOL_ROOT");
    std::string store_dir = env_root && *env_root ? env_root : "/var/lib/dvol";
    std::string socket_path = kDefaultSocket;
    // The dvol command mounts lazy volumes (lazy_mounts.h): the installed one, else dvol on PATH.
    std::string dvol_cli = dvol::path_exists(DVOL_INSTALLED_CLI) ? DVOL_INSTALLED_CLI : "dvol";

    CLI::App app{"dvol-docker-plugin: the Docker volume plugin of dvol (--volume-driver=dvol).\n"
                 "Serves Docker's volume plugin protocol on a unix socket, in the foreground; logs to stderr.",
                 "dvol-docker-plugin"};
    app.set_version_flag("--version", DVOL_VERSION);
    app.add_option("-p,--store,--pool", store_dir, "The store's directory (default: $DVOL_ROOT, else /var/lib/dvol)")
        ->type_name("DIR");
    app.add_option("--socket", socket_path, "Unix socket to listen on (Docker looks in /run/docker/plugins/)")
        ->capture_default_str();
    app.add_option("--dvol", dvol_cli, "The dvol command, which mounts lazy volumes (default: " DVOL_INSTALLED_CLI ", else dvol on PATH)")
        ->type_name("PATH");
    app.footer("See dvol-docker-plugin(8).");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    auto repo = dvol::Repository::open(store_dir);
    if (!repo) {
        fmt::print(stderr, "Error: {}\n", repo.error().message);
        return 1;
    }
    dvol::plugin::ThreadClones clones(store_dir, log_line);
    dvol::plugin::ProcessLazyMounts lazy_mounts(dvol_cli, store_dir, log_line);
    VolumeDriver driver(**repo, &clones, std::chrono::seconds(100), &lazy_mounts);

    std::string err;
    int fd = listen_unix(socket_path, err);
    if (fd < 0) {
        fmt::print(stderr, "Error: {}\n", err);
        return 1;
    }

    // Signals are taken by sigwait below; microhttpd's thread inherits the blocked mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    MHD_Daemon* daemon = MHD_start_daemon(
        // A thread per connection: a Mount waiting for a clone must not hold up Get and List
        // (VolumeDriver serialises the rest).
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0, nullptr, nullptr, &on_request, &driver,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, &on_completed, nullptr,
        MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_END);
    if (!daemon) {
        fmt::print(stderr, "Error: cannot start the HTTP server on {}\n", socket_path);
        ::close(fd);
        ::unlink(socket_path.c_str());
        return 1;
    }
    log_line(fmt::format("dvol-docker-plugin {} serving {} for the store {}", DVOL_VERSION, socket_path, store_dir));

    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0) {
    }
    log_line(fmt::format("stopping on signal {}", sig));
    MHD_stop_daemon(daemon);
    ::close(fd);
    ::unlink(socket_path.c_str());
    return 0;
}
