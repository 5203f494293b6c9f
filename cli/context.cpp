#include "context.h"

#include <cctype>
#include <filesystem>

#include <fmt/format.h>

#include "base/fs.h"

namespace dvol::cli {

Repository* Context::repo(bool create) {
    if (repo_) return repo_.get();
    // Always absolute: `dvol path` prints paths under it, for containers and scripts.
    std::error_code ec;
    auto abs = std::filesystem::absolute(store_dir, ec).lexically_normal().string();
    if (!ec && !abs.empty()) {
        while (abs.size() > 1 && abs.back() == '/') abs.pop_back();
        store_dir = abs;
    }
    auto r = Repository::open(store_dir, create);
    if (!r) {
        fail(r.error());
        return nullptr;
    }
    repo_ = std::move(*r);
    repo_->set_wait_notice([](const std::string& m) { fmt::print(stderr, "{}...\n", m); });
    repo_->set_warn([](const std::string& m) { Context::warn(m); });
    return repo_.get();
}

Repository* Context::repo_for(const std::optional<std::string>& arg, std::string& name) {
    Repository* r = repo();
    if (!r) return nullptr;
    auto v = r->resolve_volume(arg);
    if (!v) {
        fail(v.error());
        return nullptr;
    }
    name = std::move(*v);
    return r;
}

void Context::fail(const Error& e) {
    fmt::print(stderr, "Error: {}\n", e.message);
    exit_code = kExitError;
}

void Context::usage(const std::string& message) {
    fmt::print(stderr, "Error: {}\n", message);
    exit_code = kExitUsage;
}

void Context::warn(const std::string& message) { fmt::print(stderr, "warning: {}\n", message); }

Result<docker::Engine*> Context::docker(std::string& why_not) {
    why_not.clear();
    if (disable_docker) {
        why_not = "Docker integration is disabled";
        return nullptr;
    }
    if (!docker_tried_) {
        docker_tried_ = true;
        auto sock = docker::default_socket();
        if (!sock) {
            docker_error_ = sock.error();
        } else if (auto e = docker::Engine::connect(*sock)) {
            docker_ = std::move(*e);
        } else if (e.error().code == Errc::not_found) {
            // Without a socket there is no Docker here to speak of: quiet. A socket nobody
            // answers on is a Docker that is down: worth a note where containers mattered.
            docker_absent_ = path_exists(*sock) ? fmt::format("no Docker daemon answers at {}", *sock) : std::string();
        } else {
            docker_error_ = e.error();
        }
    }
    if (docker_error_) return *docker_error_;
    if (!docker_) why_not = docker_absent_;
    return docker_.get();
}

CLI::Option* add_volume_arg(CLI::App& cmd, std::optional<std::string>& volume) {
    return cmd.add_option("volume", volume, "Volume (default: the active volume)")->type_name("VOLUME");
}

void add_json_flag(CLI::App& cmd, Context& ctx) {
    cmd.add_flag("--json", ctx.json, "Machine-readable JSON output");
}

std::string short_id(const ObjectId& id) { return id.hex().substr(0, 12); }

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace dvol::cli
