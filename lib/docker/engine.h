// A client of the Docker Engine API over its unix socket, for what dvol needs: the containers
// that use a volume, and stopping, starting, pausing and removing them, over net::Client.
//
// The API version is negotiated, never pinned: the daemon's version from GET /_ping, capped at
// the newest version this client was written against, as the docker CLI does.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "net/http.h"

namespace dvol::docker {

struct Container {
    std::string id;
    std::string name;   // without Docker's leading '/'
    std::string state;  // "running", "paused", "exited", "created", ...
};

// Where the daemon listens: $DOCKER_HOST when it is a unix:// URL, else /var/run/docker.sock.
// Errc::unsupported when $DOCKER_HOST names another kind of endpoint (tcp://, ssh://).
Result<std::string> default_socket();

class Engine {
public:
    // Connects to the daemon on `socket_path` and negotiates the API version. Errc::not_found
    // when no daemon answers there (no socket, connection refused): the caller may carry on
    // without Docker. Other failures are Errc::io.
    static Result<std::unique_ptr<Engine>> connect(const std::string& socket_path);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const std::string& socket_path() const { return socket_; }
    const std::string& api_version() const { return version_; }

    // Containers (in any state) with a mount of the dvol volume `volume` (a volume of driver
    // "dvol" by that name) or a bind mount of `live_dir` or a path below it; sorted by name.
    Result<std::vector<Container>> containers_using(const std::string& volume, const std::string& live_dir);

    // Each succeeds when the container already is in the state asked for.
    Status stop(const Container& c);  // waits up to 10 s before Docker kills it
    Status start(const Container& c);
    Status pause(const Container& c);
    Status unpause(const Container& c);
    Status remove(const Container& c);  // forced: a running container is killed first

private:
    struct Response {
        long status = 0;
        std::string body;
        std::string api_version;  // the Api-Version header, when the daemon sent one
    };
    Engine() = default;
    Result<Response> request(const std::string& method, const std::string& path);
    Status post_action(const Container& c, const std::string& path, const std::string& what);

    std::string socket_;
    std::string version_;
    std::unique_ptr<net::Client> http_;  // one connection, kept alive
};

}  // namespace dvol::docker
