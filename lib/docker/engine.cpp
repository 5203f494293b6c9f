#include "docker/engine.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace dvol::docker {

namespace {

// The newest Engine API version this client was written against (Docker 20.10). Everything
// used here exists since 1.24, the oldest version current daemons still accept.
constexpr const char* kClientVersion = "1.41";
constexpr const char* kOldestVersion = "1.24";

// "1.41" -> {1, 41}; {0, 0} when malformed.
std::pair<int, int> parse_version(const std::string& v) {
    int major = 0, minor = 0;
    if (std::sscanf(v.c_str(), "%d.%d", &major, &minor) != 2) return {0, 0};
    return {major, minor};
}

// The message of an error response ({"message": "..."}), else its body.
std::string daemon_message(const std::string& body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("message") && j["message"].is_string()) return j["message"].get<std::string>();
    std::string s = body.substr(0, 200);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
}

bool under(const std::string& path, const std::string& dir) {
    return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

}  // namespace

Result<std::string> default_socket() {
    const char* host = std::getenv("DOCKER_HOST");
    if (!host || !*host) return std::string("/var/run/docker.sock");
    std::string h = host;
    if (h.starts_with("unix://")) return h.substr(7);
    return make_error(Errc::unsupported,
                      fmt::format("DOCKER_HOST={} is not a unix socket; dvol talks to Docker over unix:// only", h));
}

Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::connect(const std::string& socket_path) {
    struct stat st {};
    if (::stat(socket_path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode))
        return make_error(Errc::not_found, fmt::format("no Docker daemon socket at {}", socket_path));
    std::unique_ptr<Engine> e(new Engine());
    e->socket_ = socket_path;
    // A stop waits up to 10 s for the container; leave room for a slow daemon.
    DVOL_TRY(e->http_, net::Client::create({.unix_socket = socket_path, .ca_file = {}, .connect_timeout_s = 5,
                                            .timeout_s = 120, .stall_timeout_s = 0}));
    auto ping = e->request("GET", "/_ping");
    if (!ping) {
        if (ping.error().code == Errc::io)
            return make_error(Errc::not_found, fmt::format("no Docker daemon answers at {}: {}", socket_path, ping.error().message));
        return std::move(ping).error();
    }
    if (ping->status != 200)
        return make_error(Errc::io, fmt::format("Docker at {} answered /_ping with HTTP {}", socket_path, ping->status));
    std::string server = ping->api_version.empty() ? kOldestVersion : ping->api_version;
    auto sv = parse_version(server);
    if (sv < parse_version(kOldestVersion))
        return make_error(Errc::unsupported, fmt::format("the Docker daemon at {} speaks API {}; dvol needs {} or newer",
                                                         socket_path, server, kOldestVersion));
    e->version_ = sv < parse_version(kClientVersion) ? server : kClientVersion;
    return e;
}

Result<Engine::Response> Engine::request(const std::string& method, const std::string& path) {
    net::Request req;
    req.method = method;
    req.url = "http://docker";
    if (!version_.empty()) req.url += "/v" + version_;
    req.url += path;
    auto answer = http_->perform(req);
    if (!answer)
        return make_error(Errc::io, fmt::format("Docker at {} did not answer {} {}: {}", socket_, method, path, answer.error().message));
    Response resp;
    resp.status = answer->status;
    resp.body = std::move(answer->body);
    if (const std::string* v = answer->header("api-version")) resp.api_version = *v;
    return resp;
}

Result<std::vector<Container>> Engine::containers_using(const std::string& volume, const std::string& live_dir) {
    DVOL_TRY(auto resp, request("GET", "/containers/json?all=1"));
    if (resp.status != 200)
        return make_error(Errc::io, fmt::format("Docker refused to list containers: {}", daemon_message(resp.body)));
    auto j = nlohmann::json::parse(resp.body, nullptr, false);
    if (!j.is_array()) return make_error(Errc::io, "Docker's list of containers is not a JSON array");
    std::vector<Container> out;
    for (const auto& item : j) {
        if (!item.is_object() || !item.contains("Mounts") || !item["Mounts"].is_array()) continue;
        bool uses = false;
        for (const auto& m : item["Mounts"]) {
            if (!m.is_object()) continue;
            auto str = [&m](const char* k) { return m.contains(k) && m[k].is_string() ? m[k].get<std::string>() : std::string(); };
            if ((str("Driver") == "dvol" && str("Name") == volume) || (!str("Source").empty() && under(str("Source"), live_dir))) uses = true;
        }
        if (!uses) continue;
        auto text = [&item](const char* k) { return item.contains(k) && item[k].is_string() ? item[k].get<std::string>() : std::string(); };
        Container c;
        c.id = text("Id");
        if (item.contains("Names") && item["Names"].is_array() && !item["Names"].empty() && item["Names"][0].is_string())
            c.name = item["Names"][0].get<std::string>();
        if (c.name.starts_with("/")) c.name.erase(0, 1);
        if (c.name.empty()) c.name = c.id.substr(0, 12);
        c.state = text("State");
        if (!c.id.empty()) out.push_back(std::move(c));
    }
    std::sort(out.begin(), out.end(), [](const Container& a, const Container& b) { return a.name < b.name; });
    return out;
}

Status Engine::post_action(const Container& c, const std::string& path, const std::string& what) {
    DVOL_TRY(auto resp, request("POST", path));
    // 304: already in that state.
    if (resp.status == 204 || resp.status == 200 || resp.status == 304) return {};
    return make_error(Errc::io, fmt::format("Docker could not {} container {}: {}", what, c.name, daemon_message(resp.body)));
}

Status Engine::stop(const Container& c) { return post_action(c, "/containers/" + c.id + "/stop?t=10", "stop"); }
Status Engine::start(const Container& c) { return post_action(c, "/containers/" + c.id + "/start", "start"); }

Status Engine::pause(const Container& c) { return post_action(c, "/containers/" + c.id + "/pause", "pause"); }

Status Engine::unpause(const Container& c) { return post_action(c, "/containers/" + c.id + "/unpause", "unpause"); }

Status Engine::remove(const Container& c) {
    DVOL_TRY(auto resp, request("DELETE", "/containers/" + c.id + "?force=1"));
    if (resp.status == 204 || resp.status == 200 || resp.status == 404) return {};
    return make_error(Errc::io, fmt::format("Docker could not remove container {}: {}", c.name, daemon_message(resp.body)));
}

}  // namespace dvol::docker
