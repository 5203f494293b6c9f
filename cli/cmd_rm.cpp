#include <unistd.h>

#include <iostream>
#include <string>

#include <fmt/format.h>

#include "containers.h"
#include "context.h"
#include "fuse-mount/mount.h"

namespace dvol::cli {

void add_rm(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("rm", "Delete a volume with all its branches, commits and data");
    auto name = std::make_shared<std::string>();
    auto force = std::make_shared<bool>(false);
    cmd->add_flag("-f,--force", *force, "Do not ask for confirmation; remove the containers using the volume first");
    cmd->add_option("volume", *name, "Volume to delete")->required();
    cmd->callback([&ctx, name, force] {
        auto* repo = ctx.repo();
        if (!repo) return;
        if (!valid_name(*name)) return ctx.fail(make_error(Errc::invalid_argument, invalid_name_message(*name, "name")));
        auto vols = repo->list_volumes();
        if (!vols) return ctx.fail(vols.error());
        bool exists = false;
        for (const auto& v : *vols) exists = exists || v.name == *name;
        if (!exists) return ctx.fail(make_error(Errc::not_found, fmt::format("Volume '{}' does not exist, cannot remove it", *name)));
        auto engine = docker_for(ctx, *name, "looked for");
        if (!engine) return ctx.fail(engine.error());
        std::vector<docker::Container> users;
        if (*engine) {
            auto cs = containers_of(ctx, **engine, *name);
            if (!cs) return ctx.fail(cs.error());
            users = std::move(*cs);
        }
        std::string names;
        for (const auto& c : users) names += (names.empty() ? "" : ", ") + c.name;
        if (!users.empty() && !*force)
            return ctx.fail(make_error(Errc::conflict, fmt::format("volume '{}' is in use by container(s) {}; remove them first, "
                                                                   "or use 'dvol rm -f {}' to remove them with the volume",
                                                                   *name, names, *name)));
        if (!*force) {
            fmt::print("This deletes volume '{}' with all its branches, commits and data. Are you sure? [y/N] ", *name);
            std::fflush(stdout);
            std::string answer;
            bool answered = static_cast<bool>(std::getline(std::cin, answer));
            // From a terminal the answer ends the prompt's line; from a pipe nothing does.
            if (!answered || ::isatty(STDIN_FILENO) != 1) fmt::print("\n");
            std::fflush(stdout);
            if (!answered || (answer != "y" && answer != "Y" && answer != "yes"))
                return ctx.fail(make_error(Errc::conflict, fmt::format("not deleting volume '{}' (answer y, or use -f)", *name)));
        }
        for (const auto& c : users) {
            fmt::print("Removing container {}\n", c.name);
            if (auto st = (*engine)->remove(c); !st) return ctx.fail(st.error());
        }
        fmt::print("Deleting volume '{}'\n", *name);
        // A lazy volume's live directory is its mount: unmounted first (its cache goes with the
        // volume's directory).
        if (auto lazy = repo->lazy_volume(*name); lazy && *lazy) {
            auto m = mountfs::is_dvol_mount(repo->live_dir(*name));
            if (m && *m) {
                auto st = mountfs::unmount(repo->live_dir(*name), ctx.store_dir, [](const std::string& msg) { fmt::print(stderr, "{}...\n", msg); });
                if (!st) return ctx.fail(st.error());
            }
        }
        if (auto st = repo->remove_volume(*name); !st) return ctx.fail(st.error());
    });
}

}  // namespace dvol::cli
