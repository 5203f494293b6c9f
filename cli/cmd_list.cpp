#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "context.h"
#include "json_out.h"

namespace dvol::cli {

void add_list(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("list", "List volumes: name, active branch, containers using it");
    cmd->alias("ls");
    add_json_flag(*cmd, ctx);
    cmd->callback([&ctx] {
        auto* repo = ctx.repo();
        if (!repo) return;
        auto vols = repo->list_volumes();
        if (!vols) return ctx.fail(vols.error());
        if (ctx.json) {
            auto arr = nlohmann::json::array();
            for (const auto& v : *vols)
                arr.push_back({{"name", v.name}, {"branch", v.branch}, {"active", v.active}, {"containers", nlohmann::json::array()}});
            print_json(arr);
            return;
        }
        size_t wv = 6, wb = 6;
        for (const auto& v : *vols) {
            wv = std::max(wv, v.name.size());
            wb = std::max(wb, v.branch.size());
        }
        fmt::print("  {:<{}}  {:<{}}  CONTAINERS\n", "VOLUME", wv, "BRANCH", wb);
        // No container column yet (Docker integration): the row ends after the branch.
        for (const auto& v : *vols) fmt::print("{} {:<{}}  {}\n", v.active ? '*' : ' ', v.name, wv, v.branch);
    });
}

}  // namespace dvol::cli
