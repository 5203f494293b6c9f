#include <fmt/format.h>

#include "context.h"

namespace dvol::cli {

void add_config(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("config", "Get or set user.name / user.email (the commit author)");
    auto key = std::make_shared<std::string>();
    auto value = std::make_shared<std::optional<std::string>>();
    cmd->add_option("key", *key, "user.name or user.email")->required();
    cmd->add_option("value", *value, "New value; without it, print the value in effect");
    cmd->callback([&ctx, key, value] {
        if (*key != "user.name" && *key != "user.email")
            return ctx.usage(fmt::format("unknown configuration key '{}' (known: user.name, user.email)", *key));
        auto* repo = ctx.repo();
        if (!repo) return;
        if (*value) {
            if ((*value)->empty() || (*value)->find_first_of("<>\n") != std::string::npos)
                return ctx.fail(make_error(Errc::invalid_argument, fmt::format("{} must be non-empty, without '<', '>' or newlines", *key)));
            if (auto st = repo->config_set(*key, **value); !st) return ctx.fail(st.error());
            return;
        }
        auto id = repo->identity();
        if (!id) return ctx.fail(id.error());
        fmt::print("{}\n", *key == "user.name" ? id->name : id->email);
    });
}

}  // namespace dvol::cli
