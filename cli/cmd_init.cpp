#include <fmt/format.h>

#include "context.h"

namespace dvol::cli {

void add_init(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("init", "Create a volume with branch master and make it active");
    auto name = std::make_shared<std::string>();
    cmd->add_option("volume", *name, "Name of the new volume")->required();
    cmd->callback([&ctx, name] {
        auto* repo = ctx.repo(true);
        if (!repo) return;
        if (auto st = repo->create_volume(*name); !st) return ctx.fail(st.error());
        fmt::print("Created volume {}\nCreated branch {}/master\n", *name, *name);
    });
}

void add_switch(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("switch", "Make a volume the active one");
    auto name = std::make_shared<std::string>();
    cmd->add_option("volume", *name, "Volume to make active")->required();
    cmd->callback([&ctx, name] {
        auto* repo = ctx.repo();
        if (!repo) return;
        if (auto st = repo->switch_volume(*name); !st) return ctx.fail(st.error());
    });
}

void add_path(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("path", "Print the live directory of a volume");
    auto volume = std::make_shared<std::optional<std::string>>();
    add_volume_arg(*cmd, *volume);
    cmd->callback([&ctx, volume] {
        std::string vol;
        auto* repo = ctx.repo_for(*volume, vol);
        if (!repo) return;
        fmt::print("{}\n", repo->live_dir(vol));
    });
}

}  // namespace dvol::cli
