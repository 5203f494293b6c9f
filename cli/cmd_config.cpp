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
        if (!*value) {
            // The value in effect, also where there is no store yet (the fallback identity).
            auto r = Repository::open(ctx.store_dir, false);
            Identity id;
            if (r) {
                auto got = (*r)->identity();
                if (!got) return ctx.fail(got.error());
                id = *got;
            } else if (r.error().code == Errc::not_found) {
                id = default_identity();
            } else {
                return ctx.fail(r.error());
            }
            fmt::print("{}\n", *key == "user.name" ? id.name : id.email);
            return;
        }
        if ((*value)->empty() || (*value)->find_first_of("<>\n") != std::string::npos)
            return ctx.fail(make_error(Errc::invalid_argument, fmt::format("{} must be non-empty, without '<', '>' or newlines", *key)));
        auto* repo = ctx.repo(true);
        if (!repo) return;
        if (auto st = repo->config_set(*key, **value); !st) return ctx.fail(st.error());
    });
}

}  // namespace dvol::cli
