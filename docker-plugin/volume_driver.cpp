#include "volume_driver.h"

#include <map>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/size.h"

namespace dvol::plugin {

namespace {

using nlohmann::json;

constexpr size_t kMaxMountId = 256;

// A request that cannot be served; becomes {"Err": message}.
struct Refusal {
    std::string message;
};

// Names from a request may hold any bytes; invalid UTF-8 is replaced rather than thrown on.
std::string to_text(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Reply ok_reply(json body, std::string summary) {
    if (!body.contains("Err")) body["Err"] = "";
    return Reply{200, to_text(body), std::move(summary)};
}

Reply err_reply(std::string_view what, const std::string& message) {
    return Reply{200, to_text(json{{"Err", message}}), fmt::format("{} -> Err: {}", what, message)};
}

// The parsed body: a JSON object (an empty body counts as {}).
std::optional<json> parse_body(std::string_view body, std::string& err) {
    if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return json::object();
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded()) {
        err = "the request body is not valid JSON";
        return std::nullopt;
    }
    if (!j.is_object()) {
        err = "the request body is not a JSON object";
        return std::nullopt;
    }
    return j;
}

Result<std::string> string_field(const json& j, const char* key) {
    if (!j.contains(key) || j[key].is_null()) return make_error(Errc::invalid_argument, fmt::format("the request has no {}", key));
    if (!j[key].is_string()) return make_error(Errc::invalid_argument, fmt::format("{} must be a string", key));
    return j[key].get<std::string>();
}

Result<std::string> volume_name(const json& j) {
    DVOL_TRY(auto name, string_field(j, "Name"));
    if (!valid_name(name)) return make_error(Errc::invalid_argument, invalid_name_message(name, "volume name"));
    return name;
}

Result<std::string> mount_id(const json& j) {
    DVOL_TRY(auto id, string_field(j, "ID"));
    if (id.empty() || id.size() > kMaxMountId) return make_error(Errc::invalid_argument, "ID must be 1 to 256 characters");
    for (unsigned char c : id)
        if (c < 0x21 || c > 0x7e) return make_error(Errc::invalid_argument, "ID must be printable ASCII");
    return id;
}

constexpr const char* kFromOption = "from";
constexpr const char* kCloningOption = "clone-incomplete";  // set by Repository::clone until it is done
constexpr const char* kLazyOption = "lazy";
constexpr const char* kCacheSizeOption = "cache-size";

struct From {
    std::string remote;  // a configured remote's name
    std::string volume;
    std::optional<std::string> branch;
};

// "REMOTE/VOLUME[/BRANCH]", REMOTE a remote configured with `dvol remote add`.
Result<From> parse_from(const std::string& v) {
    From f;
    std::vector<std::string> parts;
    size_t start = 0;
    for (;;) {
        size_t slash = v.find('/', start);
        parts.push_back(v.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    auto bad = [&] {
        return make_error(Errc::invalid_argument, fmt::format("option from must be REMOTE/VOLUME or REMOTE/VOLUME/BRANCH, REMOTE a remote "
                                                              "added with 'dvol remote add', not '{}'", v));
    };
    if (parts.size() < 2 || parts.size() > 3) return bad();
    for (const auto& p : parts)
        if (!valid_name(p)) return bad();
    f.remote = parts[0];
    f.volume = parts[1];
    if (parts.size() == 3) f.branch = parts[2];
    return f;
}

struct CreateOptions {
    std::optional<std::string> branch;
    std::optional<bool> exclusive;
    std::optional<std::string> from;  // as given
    bool lazy = false;
    std::optional<uint64_t> cache_size;  // lazy: the chunk cache's bound in bytes
};

Result<bool> true_or_false(const char* key, const std::string& v) {
    if (v != "true" && v != "false") return make_error(Errc::invalid_argument, fmt::format("option {} must be true or false, not '{}'", key, v));
    return v == "true";
}

Result<CreateOptions> create_options(const json& j) {
    CreateOptions o;
    if (!j.contains("Opts") || j["Opts"].is_null()) return o;
    if (!j["Opts"].is_object()) return make_error(Errc::invalid_argument, "Opts must be an object of strings");
    for (const auto& [key, value] : j["Opts"].items()) {
        if (!value.is_string()) return make_error(Errc::invalid_argument, fmt::format("option {} must be a string", key));
        auto v = value.get<std::string>();
        if (key == "branch") {
            if (!valid_name(v)) return make_error(Errc::invalid_argument, "option branch: " + invalid_name_message(v, "branch name"));
            o.branch = v;
        } else if (key == "exclusive") {
            DVOL_TRY(o.exclusive, true_or_false("exclusive", v));
        } else if (key == kFromOption) {
            DVOL_TRY(auto parsed, parse_from(v));
            (void)parsed;
            o.from = v;
        } else if (key == kLazyOption) {
            DVOL_TRY(o.lazy, true_or_false(kLazyOption, v));
        } else if (key == kCacheSizeOption) {
            auto size = parse_size(v);
            if (!size)
                return make_error(Errc::invalid_argument,
                                  fmt::format("option cache-size must be a size (bytes, or with K, M, G or T: 512M, 20G), not '{}'", v));
            if (*size < kMinLazyCacheSize) return make_error(Errc::invalid_argument, fmt::format("option cache-size: {} is below the least, 8M", v));
            o.cache_size = size;
        } else {
            return make_error(Errc::invalid_argument, fmt::format("unknown option '{}' (dvol knows branch=, exclusive=, from=, lazy= "
                                                                  "and cache-size=)", key));
        }
    }
    if (o.lazy && !o.from)
        return make_error(Errc::invalid_argument, "option lazy=true needs from=REMOTE/VOLUME[/BRANCH]: a lazy volume is a clone of a remote's");
    if (o.cache_size && !o.lazy) return make_error(Errc::invalid_argument, "option cache-size goes with lazy=true");
    return o;
}

Result<bool> volume_exists(Repository& repo, const std::string& name) {
    auto v = repo.resolve_volume(name);
    if (v) return true;
    if (v.error().code == Errc::not_found) return false;
    return std::move(v).error();
}

// Whether volume `name` is lazy (made by a lazy clone, its live directory a FUSE mount).
Result<bool> is_lazy(Repository& repo, const std::string& name) {
    DVOL_TRY(auto url, repo.volume_option(name, kLazyUrlOption));
    return url.has_value();
}

Status require_volume(Repository& repo, const std::string& name) {
    DVOL_TRY(bool exists, volume_exists(repo, name));
    if (!exists) return make_error(Errc::not_found, fmt::format("no such volume: {}", name));
    return {};
}

Result<int64_t> mount_count(Repository& repo, const std::string& name) {
    DVOL_TRY(auto ms, repo.docker_mounts(name));
    int64_t n = 0;
    for (const auto& m : ms) n += m.count;
    return n;
}

// Makes `branch` the volume's active branch, creating it at the current tip when missing.
Status use_branch(Repository& repo, const std::string& name, const std::string& branch) {
    DVOL_TRY(auto active, repo.active_branch(name));
    if (active == branch) return {};
    DVOL_TRY(int64_t mounted, mount_count(repo, name));
    if (mounted > 0)
        return make_error(Errc::conflict, fmt::format("volume {} is mounted; switch its branch with 'dvol checkout {} {}'", name, branch, name));
    DVOL_TRY(auto out, repo.checkout(name, branch, CheckoutMode::switch_or_create, false));
    (void)out;
    return {};
}

// The clone job of a volume made with from=, from its options.
Result<CloneJob> clone_job(Repository& repo, const std::string& name) {
    DVOL_TRY(auto from, repo.volume_option(name, kFromOption));
    if (!from) return make_error(Errc::corrupt, fmt::format("volume {} is an unfinished clone without its from= option", name));
    DVOL_TRY(auto f, parse_from(*from));
    DVOL_TRY(bool lazy, is_lazy(repo, name));
    return CloneJob{name, RemoteSpec{f.remote, ""}, f.volume, f.branch, lazy};
}

Status create(Repository& repo, Clones* clones, LazyMounts* lazy, const json& j, std::string& name) {
    if (j.contains("Name") && j["Name"].is_string()) name = j["Name"].get<std::string>().substr(0, 128);
    DVOL_TRY(name, volume_name(j));
    DVOL_TRY(auto opts, create_options(j));
    DVOL_TRY(bool existed, volume_exists(repo, name));
    if (opts.from) {
        if (!clones) return make_error(Errc::unsupported, "this plugin does not clone (option from=)");
        if (opts.lazy && !lazy) return make_error(Errc::unsupported, "this plugin does not mount lazy volumes (option lazy=true)");
        DVOL_TRY(auto f, parse_from(*opts.from));
        if (opts.branch && f.branch && *opts.branch != *f.branch)
            return make_error(Errc::invalid_argument, "options branch= and from=REMOTE/VOLUME/BRANCH name different branches");
        if (opts.branch) f.branch = opts.branch;
        if (existed) {
            // Docker creates a volume again when a container names it: the same from= is fine.
            DVOL_TRY(auto before, repo.volume_option(name, kFromOption));
            if (!before || *before != *opts.from)
                return make_error(Errc::already_exists, fmt::format("volume {} already exists; from= applies only when it is created", name));
            DVOL_TRY(bool was_lazy, is_lazy(repo, name));
            if (was_lazy != opts.lazy)
                return make_error(Errc::already_exists, fmt::format("volume {} already exists{}; lazy= applies only when it is created", name,
                                                                    was_lazy ? " as a lazy volume" : " and is not lazy"));
            return {};
        }
        // The remote is asked here whether it holds the volume (so that a mistake is refused
        // now); the data comes in the background.
        CloneOptions prepare;
        prepare.name = name;
        prepare.branch = f.branch;
        prepare.prepare_only = true;
        prepare.lazy = opts.lazy;
        prepare.cache_size = opts.cache_size.value_or(0);
        DVOL_TRY(auto made, repo.clone(RemoteSpec{f.remote, ""}, f.volume, prepare));
        (void)made;
        auto configure = [&]() -> Status {
            DVOL_CHECK(repo.set_volume_option(name, kFromOption, *opts.from));
            if (opts.exclusive) DVOL_CHECK(repo.set_volume_option(name, "exclusive", *opts.exclusive ? "true" : "false"));
            return {};
        };
        if (auto st = configure(); !st) {
            (void)repo.remove_volume(name);
            return st;
        }
        clones->start(CloneJob{name, RemoteSpec{f.remote, ""}, f.volume, f.branch, opts.lazy});
        return {};
    }
    if (!existed) DVOL_CHECK(repo.create_volume(name, false));
    auto configure = [&]() -> Status {
        if (opts.branch) DVOL_CHECK(use_branch(repo, name, *opts.branch));
        if (opts.exclusive) DVOL_CHECK(repo.set_volume_option(name, "exclusive", *opts.exclusive ? "true" : "false"));
        return {};
    };
    auto st = configure();
    if (!st && !existed) (void)repo.remove_volume(name);  // a failed Create leaves nothing behind
    return st;
}

json volume_json(Repository& repo, Clones* clones, const std::string& name, bool with_status) {
    json v{{"Name", name}, {"Mountpoint", repo.live_dir(name)}};
    if (with_status) {
        json status = json::object();
        if (auto b = repo.active_branch(name)) status["branch"] = *b;
        if (auto n = mount_count(repo, name)) status["mounts"] = *n;
        if (auto e = repo.volume_option(name, "exclusive"); e && *e) status["exclusive"] = **e == "true";
        if (auto f = repo.volume_option(name, kFromOption); f && *f) status["from"] = **f;
        if (auto l = repo.volume_option(name, kLazyUrlOption); l && *l) {
            status["lazy"] = true;
            if (auto c = repo.volume_option(name, kLazyCacheOption); c && *c) status["cache-size"] = **c;
        }
        if (auto c = repo.volume_option(name, kCloningOption); c && *c) {
            json cloning{{"done", false}};
            if (clones) {
                auto s = clones->state(name);
                if (s.kind == CloneState::Kind::running) {
                    cloning["bytes"] = s.bytes;
                    cloning["total"] = s.total;
                }
                if (s.kind == CloneState::Kind::failed) cloning["error"] = s.error;
            }
            status["clone"] = cloning;
        }
        v["Status"] = status;
    }
    return v;
}

// Waits (releasing `lock` meanwhile) until volume `name`, made with from=, is cloned: Ok when
// it is (or never was a clone); the clone's error when it failed (it is started again by the
// next Mount); "not done yet" after `limit`.
Status wait_for_clone(Repository& repo, Clones* clones, const std::string& name, std::unique_lock<std::mutex>& lock,
                      std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    bool started = false;
    for (;;) {
        DVOL_TRY(auto marker, repo.volume_option(name, kCloningOption));
        if (!marker) return {};
        if (!clones) return make_error(Errc::unsupported, fmt::format("volume {} is an unfinished clone and this plugin does not clone", name));
        auto s = clones->state(name);
        if (s.kind == CloneState::Kind::failed && started)
            return make_error(Errc::io, fmt::format("volume {} could not be cloned: {}", name, s.error));
        if (s.kind != CloneState::Kind::running) {
            // Not running: the plugin restarted since, or the last try failed. Try (again).
            DVOL_TRY(auto job, clone_job(repo, name));
            clones->start(job);
            started = true;
            continue;
        }
        if (std::chrono::steady_clock::now() >= deadline)
            return make_error(Errc::busy, fmt::format("volume {} is still being cloned ({:.1f} of {:.1f} MiB); try again shortly", name,
                                                      static_cast<double>(s.bytes) / (1 << 20), static_cast<double>(s.total) / (1 << 20)));
        lock.unlock();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        lock.lock();
    }
}

Reply unknown_endpoint(std::string_view endpoint) {
    return Reply{404, to_text(json{{"Err", fmt::format("unknown endpoint /{}", endpoint)}}), fmt::format("{} -> 404 unknown endpoint", endpoint)};
}

bool known_endpoint(std::string_view e) {
    for (const char* k : {"Plugin.Activate", "VolumeDriver.Capabilities", "VolumeDriver.List", "VolumeDriver.Create",
                          "VolumeDriver.Get", "VolumeDriver.Path", "VolumeDriver.Remove", "VolumeDriver.Mount",
                          "VolumeDriver.Unmount"})
        if (e == k) return true;
    return false;
}

Reply dispatch(Repository& repo, Clones* clones, LazyMounts* lazy, std::chrono::milliseconds mount_wait, std::unique_lock<std::mutex>& lock,
               std::string_view endpoint, const json& j) {
    std::string what(endpoint);
    auto fail = [&](const Error& e) { return err_reply(what, e.message); };
    if (!known_endpoint(endpoint))
        return unknown_endpoint(endpoint);

    if (endpoint == "Plugin.Activate") return ok_reply(json{{"Implements", {"VolumeDriver"}}}, what + " -> ok");
    if (endpoint == "VolumeDriver.Capabilities")
        return ok_reply(json{{"Capabilities", {{"Scope", "local"}}}}, what + " -> ok");
    if (endpoint == "VolumeDriver.List") {
        auto vols = repo.list_volumes();
        if (!vols) return fail(vols.error());
        json arr = json::array();
        for (const auto& v : *vols) arr.push_back(volume_json(repo, clones, v.name, false));
        return ok_reply(json{{"Volumes", arr}}, fmt::format("{} -> ok, {} volume(s)", what, vols->size()));
    }
    if (endpoint == "VolumeDriver.Create") {
        std::string name;
        if (auto st = create(repo, clones, lazy, j, name); !st) return err_reply(fmt::format("{} name={}", what, name), st.error().message);
        return ok_reply(json::object(), fmt::format("{} name={} -> ok", what, name));
    }

    auto name = volume_name(j);
    if (!name) return fail(name.error());
    what += " name=" + *name;
    if (auto st = require_volume(repo, *name); !st) return fail(st.error());

    if (endpoint == "VolumeDriver.Get")
        return ok_reply(json{{"Volume", volume_json(repo, clones, *name, true)}}, what + " -> ok");
    if (endpoint == "VolumeDriver.Path")
        return ok_reply(json{{"Mountpoint", repo.live_dir(*name)}}, what + " -> ok");
    if (endpoint == "VolumeDriver.Remove") {
        auto n = mount_count(repo, *name);
        if (!n) return fail(n.error());
        if (*n > 0)
            return err_reply(what, fmt::format("volume {} is mounted ({} mount(s)); stop the containers using it first", *name, *n));
        if (clones && clones->state(*name).kind == CloneState::Kind::running)
            return err_reply(what, fmt::format("volume {} is being cloned; remove it when that is done", *name));
        // A lazy volume's live directory is its mount: unmounted first; its cache goes with the
        // volume's directory.
        auto lazy_volume = is_lazy(repo, *name);
        if (!lazy_volume) return fail(lazy_volume.error());
        if (*lazy_volume && lazy) {
            if (auto st = lazy->unmount(*name, repo.live_dir(*name)); !st) return fail(st.error());
        }
        if (auto st = repo.remove_volume(*name); !st) return fail(st.error());
        return ok_reply(json::object(), what + " -> ok");
    }
    if (endpoint == "VolumeDriver.Mount" || endpoint == "VolumeDriver.Unmount") {
        auto id = mount_id(j);
        if (!id) return fail(id.error());
        what += " id=" + id->substr(0, 12);
        if (endpoint == "VolumeDriver.Unmount") {
            auto removed = repo.remove_docker_mount(*name, *id);
            if (!removed) return fail(removed.error());
            return ok_reply(json::object(), what + (*removed ? " -> ok" : " -> ok (that ID held no mount)"));
        }
        if (auto st = wait_for_clone(repo, clones, *name, lock, mount_wait); !st) return fail(st.error());
        // A lazy volume's live directory must be its FUSE mount before Docker binds it into the
        // container (else the container would see the empty directory under it): mounted again
        // here when its process is gone (a reboot, a crash).
        auto lazy_volume = is_lazy(repo, *name);
        if (!lazy_volume) return fail(lazy_volume.error());
        if (*lazy_volume) {
            if (!lazy) return fail(Error{Errc::unsupported, fmt::format("volume {} is lazy and this plugin does not mount lazy volumes", *name)});
            if (auto st = lazy->mount(*name); !st) return fail(st.error());
        }
        if (auto st = repo.add_docker_mount(*name, *id); !st) return fail(st.error());
        std::string mp = repo.live_dir(*name);
        return ok_reply(json{{"Mountpoint", mp}}, fmt::format("{} -> ok {}", what, mp));
    }
    return unknown_endpoint(endpoint);
}

}  // namespace

Reply VolumeDriver::handle(std::string_view endpoint, std::string_view body) {
    std::string what(endpoint.substr(0, 64));
    try {
        std::string err;
        auto j = parse_body(body, err);
        if (!j) return err_reply(what, err);
        std::unique_lock lock(mu_);
        return dispatch(repo_, clones_, lazy_, mount_wait_, lock, endpoint, *j);
    } catch (const std::exception& e) {
        // nlohmann::json or the standard library refused something not caught above; the
        // request fails, the plugin goes on.
        return err_reply(what, fmt::format("internal error: {}", e.what()));
    } catch (...) {
        return err_reply(what, "internal error");
    }
}

Reply VolumeDriver::too_large(std::string_view endpoint) {
    return err_reply(std::string(endpoint.substr(0, 64)),
                     fmt::format("the request body is larger than {} KiB", kMaxBody / 1024));
}

}  // namespace dvol::plugin
