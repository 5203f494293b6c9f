#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "context.h"
#include "fetch_report.h"
#include "json_out.h"
#include "progress.h"

namespace dvol::cli {

void add_clone(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("clone", "Make a volume from a remote's: all its branches, its HEAD branch checked out");
    auto remote = std::make_shared<std::string>();
    auto volume = std::make_shared<std::string>();
    auto name = std::make_shared<std::optional<std::string>>();
    auto endpoint = std::make_shared<std::string>();
    auto branch = std::make_shared<std::optional<std::string>>();
    cmd->add_option("remote", *remote, "A remote's name, or a URL")->required();
    cmd->add_option("volume", *volume, "The volume on the remote")->required();
    cmd->add_option("name", *name, "Name of the new volume (default: the remote's name for it)")->type_name("NAME");
    cmd->add_option("-b,--branch", *branch, "The branch to check out (default: the remote's HEAD branch)")->type_name("BRANCH");
    cmd->add_option("--endpoint", *endpoint, "s3: the service's URL when it is not AWS")->type_name("URL");
    add_json_flag(*cmd, ctx);
    cmd->callback([&ctx, remote, volume, name, endpoint, branch] {
        auto* repo = ctx.repo(true);
        if (!repo) return;
        if (!ctx.json) fmt::print("Cloning volume {} from {} into {}...\n", *volume, *remote, name->value_or(*volume));
        std::fflush(stdout);
        ProgressLine progress("Receiving", "");
        auto out = repo->clone(RemoteSpec{*remote, *endpoint}, *volume, CloneOptions{*name, *branch, false}, progress.callback());
        progress.finish();
        if (!out) return ctx.fail(out.error());
        for (const auto& w : out->restore.warnings) Context::warn(w);
        if (ctx.json) {
            auto j = fetch_json(out->fetched);
            j["remote"] = *remote;
            j["volume"] = out->volume;
            j["branch"] = out->branch;
            j["resumed"] = out->resumed;
            j["commit"] = out->restore.id.hex();
            print_json(j);
            return;
        }
        fmt::print("{} object{} received, {:.1f} MiB{}\n", out->fetched.received.objects, out->fetched.received.objects == 1 ? "" : "s",
                   static_cast<double>(out->fetched.received.bytes) / (1 << 20), out->resumed ? " (an interrupted clone finished)" : "");
        fmt::print("Created volume {} on branch {} at {}\n", out->volume, out->branch, short_id(out->restore.id));
    });
}

}  // namespace dvol::cli
