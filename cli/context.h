// Shared state of one dvol invocation: the global options, the lazily opened store and the
// single place where library errors become messages and exit codes.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "docker/engine.h"
#include "repo/repository.h"

namespace dvol::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

struct Context {
    std::string store_dir;  // -p/--store (--pool), else $DVOL_ROOT, else /var/lib/dvol
    bool disable_docker = false;
    bool json = false;
    std::vector<std::string> paths;  // arguments after "--"
    int exit_code = kExitOk;

    // Opens the store on first use; on failure reports and returns null. Only commands that
    // write make a store where there is none (`create`); the others say there is none.
    Repository* repo(bool create = false);
    // The store (which must exist) and the volume a command works on (`arg`, else the active
    // one), its name in `name`; on failure reports and returns null.
    Repository* repo_for(const std::optional<std::string>& arg, std::string& name);
    // Prints the error on stderr (one line, "Error: " and the message) and sets the exit code.
    void fail(const Error& e);
    // A usage mistake: message on stderr, exit code 2.
    void usage(const std::string& message);
    // A warning on stderr.
    static void warn(const std::string& message);

    // The Docker daemon, connected on first use; null when --disable-docker-integration was
    // given or no daemon answers, with the reason in `why_not` (a phrase: "Docker integration
    // is disabled", "no Docker daemon answers at /var/run/docker.sock"). Other failures (a
    // DOCKER_HOST that is not unix://) are errors.
    Result<docker::Engine*> docker(std::string& why_not);

private:
    std::unique_ptr<Repository> repo_;
    std::unique_ptr<docker::Engine> docker_;
    bool docker_tried_ = false;
    std::optional<Error> docker_error_;
    std::string docker_absent_;
};

// Each command adds its subcommand to `app`; its callback runs with the parsed options.
void add_init(CLI::App& app, Context& ctx);
void add_list(CLI::App& app, Context& ctx);
void add_switch(CLI::App& app, Context& ctx);
void add_rm(CLI::App& app, Context& ctx);
void add_path(CLI::App& app, Context& ctx);
void add_commit(CLI::App& app, Context& ctx);
void add_log(CLI::App& app, Context& ctx);
void add_reset(CLI::App& app, Context& ctx);
void add_branch(CLI::App& app, Context& ctx);
void add_checkout(CLI::App& app, Context& ctx);
void add_status(CLI::App& app, Context& ctx);
void add_diff(CLI::App& app, Context& ctx);
void add_config(CLI::App& app, Context& ctx);
void add_fsck(CLI::App& app, Context& ctx);
void add_gc(CLI::App& app, Context& ctx);
void add_reflog(CLI::App& app, Context& ctx);
void add_remote(CLI::App& app, Context& ctx);
void add_push(CLI::App& app, Context& ctx);
void add_fetch(CLI::App& app, Context& ctx);
void add_pull(CLI::App& app, Context& ctx);
void add_clone(CLI::App& app, Context& ctx);
void add_remote_serve(CLI::App& app, Context& ctx);
void add_mount(CLI::App& app, Context& ctx);
void add_umount(CLI::App& app, Context& ctx);

// Adds the optional trailing VOLUME positional shared by most commands.
CLI::Option* add_volume_arg(CLI::App& cmd, std::optional<std::string>& volume);
// Adds --json to a command whose output is data (it also works before the command).
void add_json_flag(CLI::App& cmd, Context& ctx);

std::string short_id(const ObjectId& id);
std::string first_line(const std::string& s);

}  // namespace dvol::cli
