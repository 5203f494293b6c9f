#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "context.h"
#include "json_out.h"

namespace dvol::cli {

void add_remote(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("remote", "Manage the remotes volumes are pushed to and pulled from");
    cmd->require_subcommand(1);

    auto* add = cmd->add_subcommand("add", "Add a remote: a directory (path or file:///path), s3://bucket/prefix or ssh://[user@]host[:port]/path");
    auto name = std::make_shared<std::string>();
    auto url = std::make_shared<std::string>();
    auto endpoint = std::make_shared<std::string>();
    add->add_option("name", *name, "Name of the remote")->required();
    add->add_option("url", *url, "Where it is")->required();
    add->add_option("--endpoint", *endpoint, "s3: the service's URL when it is not AWS (Ceph RGW, MinIO)")->type_name("URL");
    add->callback([&ctx, name, url, endpoint] {
        auto* repo = ctx.repo(true);
        if (!repo) return;
        if (auto st = repo->add_remote(*name, *url, *endpoint); !st) return ctx.fail(st.error());
    });

    auto* remove = cmd->add_subcommand("remove", "Forget a remote (what it holds stays there)");
    remove->alias("rm");
    auto rname = std::make_shared<std::string>();
    remove->add_option("name", *rname, "Name of the remote")->required();
    remove->callback([&ctx, rname] {
        auto* repo = ctx.repo();
        if (!repo) return;
        if (auto st = repo->remove_remote(*rname); !st) return ctx.fail(st.error());
    });

    auto* list = cmd->add_subcommand("list", "List the remotes: name and URL");
    list->alias("ls");
    add_json_flag(*list, ctx);
    list->callback([&ctx] {
        auto* repo = ctx.repo();
        if (!repo) return;
        auto rs = repo->remotes();
        if (!rs) return ctx.fail(rs.error());
        if (ctx.json) {
            auto arr = nlohmann::json::array();
            for (const auto& r : *rs) {
                nlohmann::json o{{"name", r.name}, {"url", r.url}};
                if (!r.endpoint.empty()) o["endpoint"] = r.endpoint;
                arr.push_back(o);
            }
            print_json(arr);
            return;
        }
        for (const auto& r : *rs) fmt::print("{}\t{}{}\n", r.name, r.url, r.endpoint.empty() ? "" : " (endpoint " + r.endpoint + ")");
    });

    auto* show = cmd->add_subcommand("show", "List the volumes and branches a remote holds");
    auto sname = std::make_shared<std::string>();
    auto sendpoint = std::make_shared<std::string>();
    show->add_option("remote", *sname, "A remote's name, or a URL")->required();
    show->add_option("--endpoint", *sendpoint, "s3: the service's URL when it is not AWS")->type_name("URL");
    add_json_flag(*show, ctx);
    show->callback([&ctx, sname, sendpoint] {
        auto* repo = ctx.repo();
        if (!repo) return;
        auto bs = repo->show_remote(RemoteSpec{*sname, *sendpoint});
        if (!bs) return ctx.fail(bs.error());
        if (ctx.json) {
            auto arr = nlohmann::json::array();
            for (const auto& b : *bs) arr.push_back({{"volume", b.volume}, {"branch", b.branch}, {"tip", b.tip.hex()}, {"head", b.head}});
            print_json(arr);
            return;
        }
        size_t w = 6;
        for (const auto& b : *bs) w = std::max(w, b.volume.size() + 1 + b.branch.size());
        fmt::print("  {:<{}}  COMMIT\n", "BRANCH", w);
        for (const auto& b : *bs) fmt::print("{} {:<{}}  {}\n", b.head ? '*' : ' ', b.volume + "/" + b.branch, w, short_id(b.tip));
    });
}

}  // namespace dvol::cli
