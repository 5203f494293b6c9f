#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "containers.h"
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
        // Containers from Docker; without Docker the column stays empty.
        std::string why_not;
        auto engine = ctx.docker(why_not);
        if (!engine) return ctx.fail(engine.error());
        std::vector<std::vector<std::string>> users(vols->size());
        for (size_t i = 0; *engine && i < vols->size(); ++i) {
            auto cs = containers_of(ctx, **engine, (*vols)[i].name);
            if (!cs) return ctx.fail(cs.error());
            for (const auto& c : *cs) users[i].push_back(c.name);
        }
        if (ctx.json) {
            auto arr = nlohmann::json::array();
            for (size_t i = 0; i < vols->size(); ++i) {
                const auto& v = (*vols)[i];
                arr.push_back({{"name", v.name}, {"branch", v.branch}, {"active", v.active}, {"containers", users[i]}});
            }
            print_json(arr);
            return;
        }
        size_t wv = 6, wb = 6;
        for (const auto& v : *vols) {
            wv = std::max(wv, v.name.size());
            wb = std::max(wb, v.branch.size());
        }
        fmt::print("  {:<{}}  {:<{}}  CONTAINERS\n", "VOLUME", wv, "BRANCH", wb);
        for (size_t i = 0; i < vols->size(); ++i) {
            const auto& v = (*vols)[i];
            std::string names;
            for (const auto& n : users[i]) names += (names.empty() ? "" : ",") + n;
            // A row without containers ends after the branch (no trailing blanks).
            if (names.empty()) fmt::print("{} {:<{}}  {}\n", v.active ? '*' : ' ', v.name, wv, v.branch);
            else fmt::print("{} {:<{}}  {:<{}}  {}\n", v.active ? '*' : ' ', v.name, wv, v.branch, wb, names);
        }
    });
}

}  // namespace dvol::cli
