// dvol: git-like version control for Docker volumes and data directories.
#include <CLI/CLI.hpp>

#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "context.h"
#include "dvol_config.h"

namespace {

using namespace dvol::cli;

std::string version_line() { return fmt::format("dvol {} (store schema version {})", DVOL_VERSION, dvol::store_schema_version()); }

// What `dvol` alone prints: the commands in a few lines, and where to read more.
std::string short_usage(CLI::App& app) {
    std::string names;
    for (const auto* sub : app.get_subcommands([](CLI::App* s) { return !s->get_group().empty(); })) {
        names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    return fmt::format("usage: dvol [-p DIR] [--json] [--disable-docker-integration] COMMAND [ARGS]\n\n"
                       "commands: {}\n\n"
                       "Run 'dvol help' for what each does, 'dvol help COMMAND' for its options; see dvol(1).\n",
                       names);
}

// Whether `arg` names an option of `app` (a long one, or a short one, alone or with its value
// or other flags bundled after it).
bool known_option(const CLI::App& app, const std::string& arg) {
    if (arg.starts_with("--")) {
        std::string name = arg.substr(0, arg.find('='));
        for (const auto* o : app.get_options())
            for (const auto& l : o->get_lnames())
                if ("--" + l == name) return true;
        return name == "--help";
    }
    std::string name = arg.substr(0, 2);
    for (const auto* o : app.get_options())
        for (const auto& sn : o->get_snames())
            if ("-" + sn == name) return true;
    return name == "-h";
}

}  // namespace

int main(int argc, char** argv) {
    // A command fills chunk-sized buffers over and over, on its threads: with glibc's
    // defaults, each buffer above 128 KiB is mapped afresh and freed memory is given back to
    // the kernel, so its pages are faulted in again and again (11-14 us a fault on a VM). Kept
    // instead: the PostgreSQL second state's commit made 12,000 page faults, 9,000 with these
    // (docs/DECISIONS.md, "Buffers kept, on huge pages"). A command ends soon enough to give all
    // of it back then.
    ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
    ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
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
                 "Commit, branch, reset and diff the data of a volume's live directory, share it through remotes, and mount any\n"
                 "commit read-only.",
                 "dvol"};
    app.set_version_flag("--version", version_line());
    app.require_subcommand(1);
    app.fallthrough();
    app.add_option("-p,--store,--pool", ctx.store_dir, "The store's directory (default: $DVOL_ROOT, else /var/lib/dvol)")
        ->type_name("DIR");
    app.add_flag("--disable-docker-integration", ctx.disable_docker, "Work on the data alone; never contact Docker");
    app.add_flag("--json", ctx.json, "Machine-readable output (list, log, branch, status, reflog, fsck, remote, push, fetch, pull, clone)");
    app.footer("Run 'dvol help COMMAND' (or 'dvol COMMAND --help') for a command's options; see dvol(1).");

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
    add_remote(app, ctx);
    add_push(app, ctx);
    add_fetch(app, ctx);
    add_pull(app, ctx);
    add_clone(app, ctx);
    add_remote_serve(app, ctx);
    add_mount(app, ctx);
    add_umount(app, ctx);

    // dvol help [COMMAND] and dvol version, as in git and docker.
    auto* help = app.add_subcommand("help", "Show the commands, or one command's options");
    auto help_topic = std::make_shared<std::optional<std::string>>();
    help->add_option("command", *help_topic, "A command")->type_name("COMMAND");
    help->callback([&app, &ctx, help_topic] {
        // Through the formatter: App::help() would show the help of the command being run.
        auto formatter = app.get_formatter();
        if (!*help_topic) return void(fmt::print("{}", formatter->make_help(&app, "dvol", CLI::AppFormatMode::Normal)));
        for (auto* sub : app.get_subcommands([](CLI::App*) { return true; }))
            if (sub->check_name(**help_topic))
                return void(fmt::print("{}", formatter->make_help(sub, "dvol " + sub->get_name(), CLI::AppFormatMode::Normal)));
        ctx.usage(fmt::format("unknown command '{}'; run 'dvol help' for the list", **help_topic));
    });
    auto* version = app.add_subcommand("version", "Show dvol's version and the store schema version it writes");
    version->callback([] { fmt::print("{}\n", version_line()); });
    for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) sub->group("Commands");

    if (args.size() == 1) {
        fmt::print(stderr, "{}", short_usage(app));
        return kExitUsage;
    }
    // Name an unknown command or option before CLI11 would complain of something else (a
    // missing argument, say).
    CLI::App* command = nullptr;
    for (size_t i = 1; i < args.size(); ++i) {
        std::string a = args[i];
        if (a == "-p" || a == "--store" || a == "--pool") {
            ++i;
            continue;
        }
        if (a.starts_with("-")) {
            if (!command && a != "--version" && !known_option(app, a)) {
                fmt::print(stderr, "Error: unknown option {}\nRun 'dvol --help' for usage.\n", a.substr(0, a.find('=')));
                return kExitUsage;
            }
            if (command && a.size() > 1 && !known_option(*command, a) && !known_option(app, a) &&
                !(a.size() > 1 && std::isdigit(static_cast<unsigned char>(a[1])))) {
                fmt::print(stderr, "Error: unknown option {} for '{}'\nRun 'dvol help {}' for its options.\n", a.substr(0, a.find('=')),
                           command->get_name(), command->get_name());
                return kExitUsage;
            }
            continue;
        }
        if (command) {
            // A subcommand of the command (remote add, ...).
            for (auto* sub : command->get_subcommands([](CLI::App*) { return true; }))
                if (sub->check_name(a)) command = sub;
            continue;
        }
        for (auto* sub : app.get_subcommands([](CLI::App*) { return true; }))
            if (sub->check_name(a)) command = sub;
        if (!command) {
            fmt::print(stderr, "Error: unknown command '{}'\nRun 'dvol help' for the list of commands.\n", a);
            return kExitUsage;
        }
    }
    bool json = false;
    for (size_t j = 1; j < args.size(); ++j) json = json || std::strcmp(args[j], "--json") == 0;
    if (command && json) {
        static const char* const json_commands[] = {"list", "log", "branch", "status", "reflog", "fsck", "remote", "list", "show",
                                                    "push", "fetch", "pull", "clone"};
        bool supports = false;
        for (const char* c : json_commands) supports = supports || command->check_name(c);
        if (!supports) {
            fmt::print(stderr, "Error: --json is not supported by '{}' (only list, log, branch, status, reflog, fsck, remote list, "
                               "remote show, push, fetch, pull and clone)\n",
                       command->get_name());
            return kExitUsage;
        }
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
