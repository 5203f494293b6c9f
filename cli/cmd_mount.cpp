// dvol mount and dvol umount: the CLI's side of fuse-mount/ (mount.h), which does the work.
#include <cstdio>

#include <fmt/format.h>

#include "context.h"
#include "fuse-mount/mount.h"

namespace dvol::cli {

void add_mount(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("mount", "Mount a commit of a volume read-only on DIR (FUSE); dvol umount DIR undoes it");
    struct Args {
        std::string target;
        std::string dir;
        bool foreground = false;
        bool verbose = false;
        bool count_links = false;
        unsigned threads = 4;
        size_t cache = 64;
        unsigned readahead = 1024;
    };
    auto a = std::make_shared<Args>();
    cmd->add_option("target", a->target,
                    "VOLUME, or VOLUME@REF with REF as reset takes it (HEAD, HEAD~N, a branch, a commit id or prefix); "
                    "@REF alone is the active volume")
        ->required()
        ->type_name("VOLUME[@REF]");
    cmd->add_option("dir", a->dir, "An existing directory to mount it on; without it, a lazy volume is mounted on its live directory")
        ->type_name("DIR");
    cmd->add_flag("-f,--foreground", a->foreground, "Serve in this process until unmounted (or interrupted) instead of a daemon");
    cmd->add_flag("-v,--verbose", a->verbose, "Log every object the mount loads (stderr with -f, else syslog)");
    cmd->add_flag("--count-links", a->count_links,
                  "Read every directory of the commit when mounting, so that hard-linked files show their exact link count");
    // A bound checked without a description: CLI11 would append it to the value's name in the
    // help (--threads UINT:UINT in [1 - 64]); the descriptions give the ranges.
    auto range = [](auto lo, auto hi) { return CLI::Range(lo, hi).description(""); };
    cmd->add_option("--threads", a->threads, "Threads serving requests, each with its own reader of the store (1 to 64, default 4)")
        ->type_name("N")
        ->check(range(1u, 64u));
    cmd->add_option("--cache", a->cache, "MiB of file content kept decoded in memory (1 to 65536, default 64)")
        ->type_name("MIB")
        ->check(range(size_t{1}, size_t{65536}));
    cmd->add_option("--readahead", a->readahead, "The mount's readahead in KiB, as root (0 to 65536, default 1024; 0: the kernel's)")
        ->type_name("KIB")
        ->check(range(0u, 65536u));
    cmd->callback([&ctx, a] {
        mountfs::MountRequest req;
        req.store_dir = ctx.store_dir;
        size_t at = a->target.find('@');
        std::string volume = a->target.substr(0, at);
        if (!volume.empty()) req.volume = volume;
        if (at != std::string::npos) {
            req.ref = a->target.substr(at + 1);
            if (req.ref.empty()) return ctx.usage(fmt::format("'{}' names no revision after '@'", a->target));
        } else if (volume.empty()) {
            return ctx.usage("dvol mount needs VOLUME[@REF] and DIR");
        }
        req.dir = a->dir;
        // A lazy volume's tip: its mount shows the commit its write layer was made over with the
        // layer, which is the tip (and what is not committed yet) once commits moved it on.
        std::optional<ObjectId> tip;
        if (a->dir.empty()) {
            // dvol mount VOLUME: a lazy volume's live directory, mounted again.
            if (at != std::string::npos)
                return ctx.usage("dvol mount VOLUME without DIR mounts a lazy volume's tip on its live directory: it takes no @REF");
            std::string name;
            auto* repo = ctx.repo_for(req.volume, name);
            if (!repo) return;
            auto lazy = repo->lazy_volume(name);
            if (!lazy) return ctx.fail(lazy.error());
            if (!*lazy) return ctx.usage(fmt::format("dvol mount needs DIR: only a lazy volume ({} is not) is mounted without one, on its live directory", name));
            req.lazy = true;
            tip = (*lazy)->commit;
        }
        req.foreground = a->foreground;
        req.verbose = a->verbose;
        req.count_links = a->count_links;
        req.threads = a->threads;
        req.cache_mib = a->cache;
        req.readahead_kib = a->readahead;
        auto st = mountfs::mount_commit(
            req,
            [&tip](const mountfs::MountedInfo& m) {
                if (m.already) {
                    fmt::print("{} is mounted on {} already\n", m.volume, m.dir);
                    std::fflush(stdout);
                    return;
                }
                fmt::print("Mounted {} at {} on {}\n", m.volume, short_id(tip.value_or(m.commit)), m.dir);
                std::fflush(stdout);
            },
            [](const std::string& m) { fmt::print(stderr, "{}...\n", m); });
        if (!st) ctx.fail(st.error());
    });
}

void add_umount(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("umount", "Unmount a commit mounted with dvol mount");
    auto dir = std::make_shared<std::string>();
    cmd->add_option("dir", *dir, "The directory the commit is mounted on")->required()->type_name("DIR");
    cmd->callback([&ctx, dir] {
        auto st = mountfs::unmount(*dir, ctx.store_dir, [](const std::string& m) { fmt::print(stderr, "{}...\n", m); });
        if (!st) ctx.fail(st.error());
    });
}

}  // namespace dvol::cli
