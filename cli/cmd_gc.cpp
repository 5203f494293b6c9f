#include <fmt/format.h>

#include "context.h"
#include "progress.h"

namespace dvol::cli {

namespace {

std::string human(uint64_t bytes) {
    if (bytes >= (1u << 30)) return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1u << 30));
    if (bytes >= (1u << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1u << 20));
    if (bytes >= 1024) return fmt::format("{:.1f} KiB", static_cast<double>(bytes) / 1024);
    return fmt::format("{} bytes", bytes);
}

}  // namespace

void add_gc(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("gc", "Remove data no branch of any volume uses (dropped commits, deleted branches and volumes)");
    cmd->callback([&ctx] {
        auto* repo = ctx.repo();
        if (!repo) return;
        ProgressLine progress("Marking", "object");
        auto r = repo->gc(progress.callback());
        progress.finish();
        if (!r) return ctx.fail(r.error());
        uint64_t reclaimed = r->bytes_before > r->bytes_after ? r->bytes_before - r->bytes_after : 0;
        fmt::print("Removed {} commit(s) and {} object(s); deleted {} pack(s), rewrote {}; reclaimed {} ({} bytes)\n", r->commits_removed,
                   r->objects_removed, r->packs_deleted, r->packs_rewritten, human(reclaimed), reclaimed);
        if (r->pinned > 0) fmt::print(stderr, "note: kept everything {} mounted commit(s) use (dvol mount)\n", r->pinned);
    });
}

}  // namespace dvol::cli
