#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/size.h"
#include "context.h"
#include "fuse-mount/mount.h"
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
    auto lazy = std::make_shared<bool>(false);
    auto cache_size = std::make_shared<std::optional<std::string>>();
    cmd->add_option("remote", *remote, "A remote's name, or a URL")->required();
    cmd->add_option("volume", *volume, "The volume on the remote")->required();
    cmd->add_option("name", *name, "Name of the new volume (default: the remote's name for it)")->type_name("NAME");
    cmd->add_option("-b,--branch", *branch, "The branch to check out (default: the remote's HEAD branch)")->type_name("BRANCH");
    cmd->add_option("--endpoint", *endpoint, "s3: the service's URL when it is not AWS")->type_name("URL");
    cmd->add_flag("--lazy", *lazy,
                  "Fetch only the commits and trees; mount the live directory (writes go to a local layer) and fetch each "
                  "chunk from the remote on first read (needs FUSE)");
    cmd->add_option("--cache-size", *cache_size, "--lazy: the bound of the chunk cache, e.g. 512M, 20G (default 1G; at least 8M)")
        ->type_name("SIZE");
    add_json_flag(*cmd, ctx);
    cmd->callback([&ctx, remote, volume, name, endpoint, branch, lazy, cache_size] {
        uint64_t cache_bytes = 0;
        if (*cache_size) {
            if (!*lazy) return ctx.usage("--cache-size goes with --lazy");
            auto parsed = parse_size(**cache_size);
            if (!parsed) return ctx.usage(fmt::format("--cache-size: '{}' is not a size (a number of bytes, or with K, M, G or T)", **cache_size));
            if (*parsed < kMinLazyCacheSize) return ctx.usage(fmt::format("--cache-size: {} is below the least, 8M", **cache_size));
            cache_bytes = *parsed;
        }
        if (*lazy && !mountfs::fuse_available())
            return ctx.fail(make_error(Errc::unsupported, "clone --lazy needs FUSE: this dvol was built without it (install libfuse3-dev and build again)"));
        auto* repo = ctx.repo(true);
        if (!repo) return;
        if (!ctx.json) fmt::print("Cloning volume {} from {} into {}...\n", *volume, *remote, name->value_or(*volume));
        std::fflush(stdout);
        ProgressLine progress("Receiving", "");
        auto out = repo->clone(RemoteSpec{*remote, *endpoint}, *volume, CloneOptions{*name, *branch, false, *lazy, cache_bytes},
                               progress.callback());
        progress.finish();
        if (!out) return ctx.fail(out.error());
        if (*lazy) {
            // The live directory becomes the mount of the commit; the volume is kept if that
            // fails (dvol mount VOLUME tries again).
            auto st = mountfs::ensure_lazy_mounted(ctx.store_dir, out->volume, [](const mountfs::MountedInfo&) {},
                                                   [](const std::string& m) { fmt::print(stderr, "{}...\n", m); });
            if (!st)
                return ctx.fail(make_error(st.error().code, fmt::format("volume {} was cloned but its live directory could not be mounted: {}; "
                                                                        "mount it with dvol mount {}",
                                                                        out->volume, st.error().message, out->volume)));
        }
        for (const auto& w : out->restore.warnings) Context::warn(w);
        if (ctx.json) {
            auto j = fetch_json(out->fetched);
            j["remote"] = *remote;
            j["volume"] = out->volume;
            j["branch"] = out->branch;
            j["resumed"] = out->resumed;
            j["commit"] = out->restore.id.hex();
            j["lazy"] = *lazy;
            print_json(j);
            return;
        }
        fmt::print("{} object{} received, {:.1f} MiB{}\n", out->fetched.received.objects, out->fetched.received.objects == 1 ? "" : "s",
                   static_cast<double>(out->fetched.received.bytes) / (1 << 20), out->resumed ? " (an interrupted clone finished)" : "");
        fmt::print("Created {}volume {} on branch {} at {}\n", *lazy ? "lazy " : "", out->volume, out->branch, short_id(out->restore.id));
    });
}

}  // namespace dvol::cli
