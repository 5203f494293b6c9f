#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "containers.h"
#include "context.h"
#include "fetch_report.h"
#include "json_out.h"
#include "lazy_remount.h"
#include "progress.h"

namespace dvol::cli {

void add_pull(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("pull", "Fetch from a remote, then fast-forward a branch (and the live data) to the remote's");
    auto remote = std::make_shared<std::string>();
    auto volume = std::make_shared<std::optional<std::string>>();
    auto branch = std::make_shared<std::optional<std::string>>();
    auto endpoint = std::make_shared<std::string>();
    cmd->add_option("remote", *remote, "A remote's name, or a URL")->required();
    cmd->add_option("volume", *volume, "Volume (default: the active volume)")->type_name("VOLUME");
    cmd->add_option("branch", *branch, "Branch (default: the volume's active branch)")->type_name("BRANCH");
    cmd->add_option("--endpoint", *endpoint, "s3: the service's URL when it is not AWS")->type_name("URL");
    add_json_flag(*cmd, ctx);
    cmd->callback([&ctx, remote, volume, branch, endpoint] {
        std::string vol;
        auto* repo = ctx.repo_for(*volume, vol);
        if (!repo) return;
        // The containers using the volume stop while its data changes and start again after.
        ContainerHold hold(ctx, vol, ContainerHold::Mode::stop);
        LiveDataHooks hooks = hold.hooks();
        LazyRemount lazy(ctx, *repo, vol, hooks);
        ProgressLine progress("Pulling", "");
        // What the fetch brought, kept to be told when the pull is refused after it.
        std::optional<FetchOutcome> fetched;
        auto out = repo->pull(RemoteSpec{*remote, *endpoint}, vol, *branch, progress.callback(), hooks, [&](const FetchOutcome& f) {
            fetched.emplace();
            fetched->remote_volume = f.remote_volume;
            fetched->updates = f.updates;
            fetched->received = f.received;
        });
        lazy.remount();
        progress.finish();
        if (!out) {
            if (fetched && !ctx.json) {
                print_fetch(*remote, *fetched);
                std::fflush(stdout);  // before the error, on stderr
            }
            return ctx.fail(out.error());
        }
        for (const auto& w : out->restore.warnings) Context::warn(w);
        if (ctx.json) {
            auto j = fetch_json(out->fetched);
            j["remote"] = *remote;
            j["volume"] = vol;
            j["branch"] = out->branch;
            j["result"] = out->kind == PullOutcome::Kind::up_to_date ? "up-to-date" : "fast-forward";
            j["old"] = out->old_tip ? out->old_tip->hex() : "";
            j["new"] = out->new_tip.hex();
            print_json(j);
            return;
        }
        print_fetch(*remote, out->fetched);
        if (out->kind == PullOutcome::Kind::up_to_date) {
            fmt::print("Already up to date.\n");
            return;
        }
        if (out->created) {
            // A branch the volume did not have, made at the remote's tip (the live data stays).
            fmt::print("Branch {} created at {}\n", out->branch, out->new_tip.hex().substr(0, 7));
            return;
        }
        fmt::print("Updating {}..{}\nFast-forward\n", out->old_tip ? out->old_tip->hex().substr(0, 7) : "0000000", out->new_tip.hex().substr(0, 7));
    });
}

}  // namespace dvol::cli
