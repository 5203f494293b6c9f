#include "lazy_remount.h"

#include <fmt/format.h>

#include "fuse-mount/mount.h"

namespace dvol::cli {

LazyRemount::LazyRemount(Context& ctx, Repository& repo, const std::string& volume, LiveDataHooks& hooks)
    : ctx_(ctx), volume_(volume) {
    auto lazy = repo.lazy_volume(volume);
    if (!lazy || !*lazy) return;  // not lazy, or unreadable: the command reports it
    std::string live = repo.live_dir(volume);
    std::string store = ctx.store_dir;
    hooks.quiesce = [q = hooks.quiesce, live, store, this]() -> Status {
        if (q) DVOL_CHECK(q());
        remount_ = true;
        DVOL_TRY(bool mounted, mountfs::is_dvol_mount(live));
        if (mounted) DVOL_CHECK(mountfs::unmount(live, store, Context::warn));
        return {};
    };
    hooks.resume = [] {};
}

void LazyRemount::remount() {
    if (!remount_) return;
    remount_ = false;
    auto st = mountfs::ensure_lazy_mounted(ctx_.store_dir, volume_, [](const mountfs::MountedInfo&) {}, Context::warn);
    if (!st) Context::warn(fmt::format("lazy volume {} is not mounted again: {}; dvol mount {} mounts it", volume_, st.error().message, volume_));
}

}  // namespace dvol::cli
