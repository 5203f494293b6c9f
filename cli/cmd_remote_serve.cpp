// dvol remote-serve: the far side of an ssh:// remote. The user's dvol runs it through ssh
// (lib/remote/ssh_backend.h) and speaks the protocol of lib/remote/ssh_protocol.h with it on
// stdin and stdout; it serves the directory DIR as a directory remote (DirBackend). Nothing
// but protocol frames goes to stdout; diagnostics go to stderr, which ssh carries back.
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include "context.h"
#include "remote/ssh_protocol.h"

namespace dvol::cli {

void add_remote_serve(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("remote-serve",
                                   "Serve the remote directory DIR on stdin/stdout for another dvol "
                                   "(run over ssh for ssh:// remotes; not for use by hand)");
    auto dir = std::make_shared<std::string>();
    auto create = std::make_shared<bool>(false);
    cmd->add_flag("--create", *create,
                  "Serve a missing DIR as an empty remote and create it (not its parents) at the first write");
    cmd->add_option("dir", *dir, "The remote's directory")->required()->type_name("DIR");
    cmd->callback([&ctx, dir, create] {
        // A person who runs this by hand would get binary frames on the terminal.
        if (::isatty(STDOUT_FILENO))
            return ctx.usage("remote-serve speaks a binary protocol on its standard input and output: another dvol runs "
                             "it over ssh for an ssh:// remote; it is not for use from a terminal");
        // A client that goes away makes our writes fail with EPIPE, reported like any error,
        // rather than kill us silently.
        ::signal(SIGPIPE, SIG_IGN);
        remote::wire::ServeOptions options;
        options.spool_dir = *dir;
        auto backend = remote::wire::open_served_directory(*dir, *create);
        Status st = backend ? remote::wire::serve(**backend, STDIN_FILENO, STDOUT_FILENO, options)
                            : remote::wire::refuse(backend.error(), STDIN_FILENO, STDOUT_FILENO, options);
        if (!st) {
            fmt::print(stderr, "dvol remote-serve: {}\n", st.error().message);
            ctx.exit_code = kExitError;
        }
    });
}

}  // namespace dvol::cli
