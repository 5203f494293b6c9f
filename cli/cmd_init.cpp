#include <fmt/format.h>

#include "context.h"
#include "fuse-mount/mount.h"

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
        // A lazy volume's live directory is its mount: brought back if its process is gone.
        auto lazy = repo->lazy_volume(vol);
        if (!lazy) return ctx.fail(lazy.error());
        if (*lazy) {
            auto st = mountfs::ensure_lazy_mounted(ctx.store_dir, vol, [](const mountfs::MountedInfo& m) {
                if (!m.already) fmt::print(stderr, "note: mounted lazy volume {} again\n", m.volume);
            }, [](const std::string& m) { fmt::print(stderr, "{}...\n", m); });
            if (!st) return ctx.fail(st.error());
        }
        fmt::print("{}\n", repo->live_dir(vol));
    });
}

}  // namespace dvol::cli
