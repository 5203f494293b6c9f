#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "context.h"
#include "fetch_report.h"
#include "json_out.h"
#include "progress.h"

namespace dvol::cli {

nlohmann::json fetch_json(const FetchOutcome& f) {
    auto updates = nlohmann::json::array();
    for (const auto& u : f.updates)
        updates.push_back({{"branch", u.branch}, {"old", u.old_tip ? u.old_tip->hex() : ""}, {"new", u.new_tip ? u.new_tip->hex() : ""}});
    return {{"remote_volume", f.remote_volume}, {"updates", updates}, {"objects", f.received.objects}, {"bytes", f.received.bytes},
            {"requests", f.received.requests}};
}

void print_fetch(const std::string& remote, const FetchOutcome& f) {
    if (f.updates.empty()) return;
    fmt::print("From {}\n", remote);
    for (const auto& u : f.updates) {
        std::string ref = f.remote_volume + "/" + u.branch;
        if (!u.old_tip)
            fmt::print(" * [new branch]      {} -> {}/{}\n", ref, remote, ref);
        else if (!u.new_tip)
            fmt::print(" - [deleted]         (none) -> {}/{}\n", remote, ref);
        else
            fmt::print("   {}..{}  {} -> {}/{}\n", u.old_tip->hex().substr(0, 7), u.new_tip->hex().substr(0, 7), ref, remote, ref);
    }
    // Deletions alone bring nothing.
    if (std::none_of(f.updates.begin(), f.updates.end(), [](const FetchOutcome::Update& u) { return u.new_tip.has_value(); })) return;
    fmt::print("{} object{} received, {:.1f} MiB\n", f.received.objects, f.received.objects == 1 ? "" : "s",
               static_cast<double>(f.received.bytes) / (1 << 20));
}

void add_fetch(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("fetch", "Bring a remote's branches of a volume into its remote-tracking branches (the live data stays)");
    auto remote = std::make_shared<std::string>();
    auto volume = std::make_shared<std::optional<std::string>>();
    auto endpoint = std::make_shared<std::string>();
    cmd->add_option("remote", *remote, "A remote's name, or a URL")->required();
    add_volume_arg(*cmd, *volume);
    cmd->add_option("--endpoint", *endpoint, "s3: the service's URL when it is not AWS")->type_name("URL");
    add_json_flag(*cmd, ctx);
    cmd->callback([&ctx, remote, volume, endpoint] {
        std::string vol;
        auto* repo = ctx.repo_for(*volume, vol);
        if (!repo) return;
        ProgressLine progress("Fetching", "");
        auto out = repo->fetch(RemoteSpec{*remote, *endpoint}, vol, progress.callback());
        progress.finish();
        if (!out) return ctx.fail(out.error());
        if (ctx.json) {
            auto j = fetch_json(*out);
            j["remote"] = *remote;
            j["volume"] = vol;
            print_json(j);
            return;
        }
        print_fetch(*remote, *out);
    });
}

}  // namespace dvol::cli
