#include "volume_driver.h"

#include <map>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

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

struct CreateOptions {
    std::optional<std::string> branch;
    std::optional<bool> exclusive;
};

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
            if (v != "true" && v != "false")
                return make_error(Errc::invalid_argument, fmt::format("option exclusive must be true or false, not '{}'", v));
            o.exclusive = v == "true";
        } else {
            return make_error(Errc::invalid_argument, fmt::format("unknown option '{}' (dvol knows branch= and exclusive=)", key));
        }
    }
    return o;
}

Result<bool> volume_exists(Repository& repo, const std::string& name) {
    auto v = repo.resolve_volume(name);
    if (v) return true;
    if (v.error().code == Errc::not_found) return false;
    return std::move(v).error();
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

Status create(Repository& repo, const json& j, std::string& name) {
    if (j.contains("Name") && j["Name"].is_string()) name = j["Name"].get<std::string>().substr(0, 128);
    DVOL_TRY(name, volume_name(j));
    DVOL_TRY(auto opts, create_options(j));
    DVOL_TRY(bool existed, volume_exists(repo, name));
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

json volume_json(Repository& repo, const std::string& name, bool with_status) {
    json v{{"Name", name}, {"Mountpoint", repo.live_dir(name)}};
    if (with_status) {
        json status = json::object();
        if (auto b = repo.active_branch(name)) status["branch"] = *b;
        if (auto n = mount_count(repo, name)) status["mounts"] = *n;
        if (auto e = repo.volume_option(name, "exclusive"); e && *e) status["exclusive"] = **e == "true";
        v["Status"] = status;
    }
    return v;
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

Reply dispatch(Repository& repo, std::string_view endpoint, const json& j) {
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
        for (const auto& v : *vols) arr.push_back(volume_json(repo, v.name, false));
        return ok_reply(json{{"Volumes", arr}}, fmt::format("{} -> ok, {} volume(s)", what, vols->size()));
    }
    if (endpoint == "VolumeDriver.Create") {
        std::string name;
        if (auto st = create(repo, j, name); !st) return err_reply(fmt::format("{} name={}", what, name), st.error().message);
        return ok_reply(json::object(), fmt::format("{} name={} -> ok", what, name));
    }

    auto name = volume_name(j);
    if (!name) return fail(name.error());
    what += " name=" + *name;
    if (auto st = require_volume(repo, *name); !st) return fail(st.error());

    if (endpoint == "VolumeDriver.Get")
        return ok_reply(json{{"Volume", volume_json(repo, *name, true)}}, what + " -> ok");
    if (endpoint == "VolumeDriver.Path")
        return ok_reply(json{{"Mountpoint", repo.live_dir(*name)}}, what + " -> ok");
    if (endpoint == "VolumeDriver.Remove") {
        auto n = mount_count(repo, *name);
        if (!n) return fail(n.error());
        if (*n > 0)
            return err_reply(what, fmt::format("volume {} is mounted ({} mount(s)); stop the containers using it first", *name, *n));
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
        return dispatch(repo_, endpoint, *j);
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
