#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "containers.h"
#include "context.h"
#include "json_out.h"
#include "lazy_remount.h"
#include "progress.h"

namespace dvol::cli {

void add_branch(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("branch", "List the branches of a volume, or delete one with -d");
    auto del = std::make_shared<std::optional<std::string>>();
    auto force_del = std::make_shared<std::optional<std::string>>();
    auto volume = std::make_shared<std::optional<std::string>>();
    cmd->add_option("-d,--delete", *del, "Delete this branch (not the active one; refused if its commits are on no other branch)")
        ->type_name("BRANCH");
    cmd->add_option("-D", *force_del, "Delete this branch even if its commits are on no other branch")->type_name("BRANCH");
    add_json_flag(*cmd, ctx);
    add_volume_arg(*cmd, *volume);
    cmd->callback([&ctx, del, force_del, volume] {
        std::string vol;
        auto* repo = ctx.repo_for(*volume, vol);
        if (!repo) return;
        if (*del || *force_del) {
            if (*del && *force_del) return ctx.usage("give either -d or -D, not both");
            const std::string& name = *del ? **del : **force_del;
            if (auto st = repo->delete_branch(vol, name, !*del); !st) return ctx.fail(st.error());
            fmt::print("Deleted branch {}\n", name);
            return;
        }
        auto list = repo->branches(vol);
        if (!list) return ctx.fail(list.error());
        if (ctx.json) {
            auto arr = nlohmann::json::array();
            for (const auto& b : *list)
                arr.push_back({{"name", b.name}, {"active", b.active}, {"tip", b.tip ? nlohmann::json(b.tip->hex()) : nlohmann::json()}});
            print_json(arr);
            return;
        }
        for (const auto& b : *list) fmt::print("{} {}\n", b.active ? '*' : ' ', b.name);
    });
}

void add_checkout(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("checkout", "Switch the volume to another branch, or create one with -b");
    auto create = std::make_shared<bool>(false);
    auto force = std::make_shared<bool>(false);
    auto branch = std::make_shared<std::string>();
    auto volume = std::make_shared<std::optional<std::string>>();
    cmd->add_flag("-b", *create, "Create BRANCH at the current commit and switch to it (the live data stays as it is)");
    cmd->add_flag("-f,--force", *force, "Switch even if there are uncommitted changes, discarding them");
    cmd->add_option("branch", *branch, "Branch to switch to")->required();
    add_volume_arg(*cmd, *volume);
    cmd->callback([&ctx, create, force, branch, volume] {
        std::string vol;
        auto* repo = ctx.repo_for(*volume, vol);
        if (!repo) return;
        // The containers using the volume stop while its data changes and start again after,
        // also when the checkout fails; a refusal comes before any is stopped.
        ContainerHold hold(ctx, vol, ContainerHold::Mode::stop);
        LiveDataHooks hooks = hold.hooks();
        LazyRemount lazy(ctx, *repo, vol, hooks);
        ProgressLine progress("Checking out");
        auto out = repo->checkout(vol, *branch, *create ? CheckoutMode::create : CheckoutMode::switch_branch, *force,
                                  progress.callback(), hooks);
        lazy.remount();
        progress.finish();
        if (!out) return ctx.fail(out.error());
        if (out->kind == CheckoutOutcome::Kind::already_on) {
            fmt::print("Already on branch '{}'\n", *branch);
            return;
        }
        for (const auto& w : out->restore.warnings) Context::warn(w);
        fmt::print("Switched to {}branch '{}'\n", *create ? "a new " : "", *branch);
    });
}

}  // namespace dvol::cli
