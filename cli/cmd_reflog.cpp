#include <ctime>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "context.h"
#include "json_out.h"

namespace dvol::cli {

void add_reflog(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("reflog", "Show how the volume's branch tips moved, newest first (find commits dropped by reset)");
    auto volume = std::make_shared<std::optional<std::string>>();
    add_json_flag(*cmd, ctx);
    add_volume_arg(*cmd, *volume);
    cmd->callback([&ctx, volume] {
        std::string vol;
        auto* repo = ctx.repo_for(*volume, vol);
        if (!repo) return;
        auto entries = repo->reflog(vol);
        if (!entries) return ctx.fail(entries.error());
        auto hex = [](const std::optional<ObjectId>& id) { return id ? id->hex() : std::string(); };
        if (ctx.json) {
            auto arr = nlohmann::json::array();
            for (const auto& e : *entries)
                arr.push_back({{"branch", e.branch},
                               {"old", e.old_tip ? nlohmann::json(hex(e.old_tip)) : nlohmann::json()},
                               {"new", e.new_tip ? nlohmann::json(hex(e.new_tip)) : nlohmann::json()},
                               {"time", e.time},
                               {"action", e.action}});
            print_json(arr);
            return;
        }
        for (const auto& e : *entries) {
            time_t t = static_cast<time_t>(e.time);
            struct tm tm;
            ::localtime_r(&t, &tm);
            char when[32];
            std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            std::string id = e.new_tip ? short_id(*e.new_tip) : std::string(12, '-');
            fmt::print("{} {} {}: {}\n", id, when, e.branch, e.action);
        }
    });
}

}  // namespace dvol::cli
