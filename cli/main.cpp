// dvol: git-like version control for Docker volumes and data directories.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "context.h"
#include "dvol_config.h"

int main(int argc, char** argv) {
    using namespace dvol::cli;
    Context ctx;
    const char* env_root = std::getenv("DVOL_ROOT");
    ctx.store_dir = env_root && *env_root ? env_root : "/var/lib/dvol";

    // Everything after "--" is a path (for diff); CLI11 sees only what comes before.
    std::vector<char*> args(argv, argv + argc);
    for (size_t i = 1; i < args.size(); ++i) {
        if (std::strcmp(args[i], "--") == 0) {
            for (size_t j = i + 1; j < args.size(); ++j) ctx.paths.emplace_back(args[j]);
            args.resize(i);
            break;
        }
    }

    CLI::App app{"dvol: version control for Docker volumes and data directories.\n"
                 "Commit, branch, reset and diff the data of a volume's live directory.",
                 "dvol"};
    app.set_version_flag("--version", DVOL_VERSION);
    app.require_subcommand(1);
    app.fallthrough();
    app.add_option("-p,--store,--pool", ctx.store_dir, "The store's directory (default: $DVOL_ROOT, else /var/lib/dvol)")
        ->type_name("DIR");
    app.add_flag("--disable-docker-integration", ctx.disable_docker, "Work on the data alone; never contact Docker");
    app.add_flag("--json", ctx.json, "Machine-readable output (list, log, branch, status, reflog, fsck)");
    app.footer("Run 'dvol COMMAND --help' for a command's options; see dvol(1).");

    add_init(app, ctx);
    add_list(app, ctx);
    add_switch(app, ctx);
    add_rm(app, ctx);
    add_path(app, ctx);
    add_commit(app, ctx);
    add_log(app, ctx);
    add_reset(app, ctx);
    add_branch(app, ctx);
    add_checkout(app, ctx);
    add_status(app, ctx);
    add_diff(app, ctx);
    add_config(app, ctx);
    add_reflog(app, ctx);
    add_fsck(app, ctx);
    add_gc(app, ctx);
    add_remote_serve(app, ctx);
    add_mount(app, ctx);
    add_umount(app, ctx);

    if (args.size() == 1) {
        fmt::print(stderr, "{}", app.help());
        return kExitUsage;
    }
    // Name an unknown command instead of CLI11's "A subcommand is required".
    for (size_t i = 1; i < args.size(); ++i) {
        std::string a = args[i];
        if (a == "-p" || a == "--store" || a == "--pool") {
            ++i;
            continue;
        }
        if (a.starts_with("-")) continue;
        bool known = false;
        for (const auto* sub : app.get_subcommands([](CLI::App*) { return true; }))
            known = known || sub->check_name(a);
        if (!known) {
            fmt::print(stderr, "Error: unknown command '{}'\nRun 'dvol --help' for the list of commands.\n", a);
            return kExitUsage;
        }
        bool json = false;
        for (size_t j = 1; j < args.size(); ++j) json = json || std::strcmp(args[j], "--json") == 0;
        static const char* const json_commands[] = {"list", "ls", "log", "branch", "status", "reflog", "fsck"};
        bool supports = false;
        for (const char* c : json_commands) supports = supports || a == c;
        if (json && !supports) {
            fmt::print(stderr, "Error: --json is not supported by '{}' (only list, log, branch, status, reflog and fsck)\n", a);
            return kExitUsage;
        }
        break;
    }
    try {
        app.parse(static_cast<int>(args.size()), args.data());
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        fmt::print(stderr, "Error: {}\nRun 'dvol --help' for usage.\n", e.what());
        return kExitUsage;
    }
    return ctx.exit_code;
}
