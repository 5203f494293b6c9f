#include <fmt/format.h>

#include "containers.h"
#include "fuse-mount/mount.h"
#include "context.h"
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
        auto lazy = repo->lazy_volume(vol);
        bool remount = false;
        if (lazy && *lazy) {
            // A lazy volume's live directory is its mount: unmounted once the containers are
            // stopped; mounted again on the new tip once the reset has let go of the volume's
            // lock (the mount process, forked, would hold it for good), and the containers
            // start after that, when `hold` lets them go.
            std::string live = repo->live_dir(vol);
            std::string store = ctx.store_dir;
            hooks.quiesce = [q = hooks.quiesce, live, store, &remount]() -> Status {
                if (q) DVOL_CHECK(q());
                remount = true;
                DVOL_TRY(bool mounted, mountfs::is_dvol_mount(live));
                if (mounted) DVOL_CHECK(mountfs::unmount(live, store, Context::warn));
                return {};
            };
            hooks.resume = [] {};
        }
        ProgressLine progress("Resetting");
        auto out = repo->reset_hard(vol, *ref, progress.callback(), hooks);
        if (remount) {
            auto st = mountfs::ensure_lazy_mounted(ctx.store_dir, vol, [](const mountfs::MountedInfo&) {}, Context::warn);
            if (!st) Context::warn(fmt::format("lazy volume {} is not mounted again: {}; dvol mount {} mounts it", vol, st.error().message, vol));
        }
        progress.finish();
        if (!out) return ctx.fail(out.error());
        for (const auto& w : out->warnings) Context::warn(w);
        auto c = repo->load_commit(out->id);
        if (!c) return ctx.fail(c.error());
        fmt::print("HEAD is now at {} {}\n", short_id(out->id), first_line(c->message));
    });
}

}  // namespace dvol::cli
