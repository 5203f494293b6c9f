#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "context.h"
#include "json_out.h"
#include "progress.h"

namespace dvol::cli {

void add_fsck(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("fsck", "Verify the store: re-hash every object, check every commit, tree and branch");
    add_json_flag(*cmd, ctx);
    static bool repair = false;
    cmd->add_flag("--repair", repair,
                  "First empty the stat cache, the one part of a store dvol can rebuild (the next commit of each volume reads every file)");
    cmd->callback([&ctx] {
        auto* repo = ctx.repo();
        if (!repo) return;
        ProgressLine progress("Checking", "object");
        auto report = repo->fsck(progress.callback(), repair);
        progress.finish();
        if (!report) return ctx.fail(report.error());
        if (report->repaired) fmt::print(stderr, "note: the stat cache was emptied; the next commit of each volume reads every file again\n");
        if (ctx.json) {
            auto problems = nlohmann::json::array();
            for (const auto& p : report->problems) {
                auto affects = nlohmann::json::array();
                for (const auto& a : p.affects) {
                    nlohmann::json item = {{"volume", a.volume}, {"commit", a.commit}};
                    put_path(item, "path", a.path);
                    affects.push_back(std::move(item));
                }
                problems.push_back({{"kind", p.kind}, {"object", p.object}, {"message", p.message}, {"affects", affects}});
            }
            nlohmann::json j = {{"ok", report->problems.empty()},
                                {"objects_checked", report->objects},
                                {"commits_checked", report->commits},
                                {"repaired", report->repaired},
                                {"problems", problems}};
            print_json(j);
        } else {
            for (const auto& p : report->problems) {
                fmt::print("{}: {}\n", p.kind, p.message);
                for (const auto& a : p.affects)
                    fmt::print("  affects volume {} commit {}{}\n", a.volume, a.commit.substr(0, 12), a.path.empty() ? "" : " path " + a.path);
            }
            if (report->problems.empty())
                fmt::print("no problems found ({} objects, {} commits checked)\n", report->objects, report->commits);
        }
        if (!report->problems.empty()) {
            // The report is the output; the verdict is the error line, as for any failure.
            std::fflush(stdout);
            ctx.fail(make_error(Errc::corrupt, fmt::format("fsck found {} problem(s) ({} objects, {} commits checked)",
                                                           report->problems.size(), report->objects, report->commits)));
        }
    });
}

}  // namespace dvol::cli
