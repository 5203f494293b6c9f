#include <fmt/format.h>

#include "containers.h"
#include "context.h"
#include "lazy_remount.h"
#include "progress.h"

namespace dvol::cli {

void add_reset(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("reset", "Move the active branch to REF and make the live directory match it (needs --hard)");
    auto hard = std::make_shared<bool>(false);
    auto ref = std::make_shared<std::string>();
    auto volume = std::make_shared<std::optional<std::string>>();
    cmd->add_flag("--hard", *hard, "Discard uncommitted changes and later commits of the branch");
    cmd->add_option("ref", *ref, "HEAD, HEAD^, HEAD^^, HEAD~N, a branch, or a commit id or unique prefix")->required();
    add_volume_arg(*cmd, *volume);
    cmd->callback([&ctx, hard, ref, volume] {
        if (!*hard)
            return ctx.usage("dvol reset needs --hard: it replaces the live data with REF's and discards uncommitted changes "
                             "(there is no soft reset)");
        std::string vol;
        auto* repo = ctx.repo_for(*volume, vol);
        if (!repo) return;
        // The containers using the volume stop while its data changes and start again after,
        // also when the reset fails; an unknown ref is refused before any is stopped.
        ContainerHold hold(ctx, vol, ContainerHold::Mode::stop);
        LiveDataHooks hooks = hold.hooks();
        LazyRemount lazy(ctx, *repo, vol, hooks);
        ProgressLine progress("Resetting");
        auto out = repo->reset_hard(vol, *ref, progress.callback(), hooks);
        lazy.remount();
        progress.finish();
        if (!out) return ctx.fail(out.error());
        for (const auto& w : out->warnings) Context::warn(w);
        auto c = repo->load_commit(out->id);
        if (!c) return ctx.fail(c.error());
        fmt::print("HEAD is now at {} {}\n", short_id(out->id), first_line(c->message));
    });
}

}  // namespace dvol::cli
