#include <fmt/format.h>

#include "containers.h"
#include "context.h"
#include "progress.h"

namespace dvol::cli {

void add_commit(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("commit", "Record the live directory's state as a new commit on the active branch");
    auto message = std::make_shared<std::string>();
    auto volume = std::make_shared<std::optional<std::string>>();
    cmd->add_option("-m,--message", *message, "Commit message (required)");
    add_volume_arg(*cmd, *volume);
    cmd->callback([&ctx, message, volume] {
        if (message->empty()) return ctx.usage("You must provide a commit message");
        std::string vol;
        auto* repo = ctx.repo_for(*volume, vol);
        if (!repo) return;
        // The containers using the volume are paused while it is read, so the commit is
        // crash-consistent, and always unpaused.
        ContainerHold hold(ctx, vol, ContainerHold::Mode::pause);
        ProgressLine progress("Committing");
        auto out = repo->commit(vol, *message, Context::warn, progress.callback(), hold.hooks());
        progress.finish();
        if (!out) return ctx.fail(out.error());
        fmt::print("{}\n", out->id.hex());
    });
}

}  // namespace dvol::cli
