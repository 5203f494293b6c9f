#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "context.h"
#include "json_out.h"

namespace dvol::cli {

namespace {

std::string join_what(const std::vector<std::string>& what) {
    std::string s;
    for (const auto& w : what) s += (s.empty() ? "" : ", ") + w;
    return s;
}

}  // namespace

void add_status(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("status", "Show what changed in the live directory since the last commit");
    auto volume = std::make_shared<std::optional<std::string>>();
    add_json_flag(*cmd, ctx);
    add_volume_arg(*cmd, *volume);
    cmd->callback([&ctx, volume] {
        std::string vol;
        auto* repo = ctx.repo_for(*volume, vol);
        if (!repo) return;
        auto branch = repo->active_branch(vol);
        if (!branch) return ctx.fail(branch.error());
        auto changes = repo->status(vol, Context::warn);
        if (!changes) return ctx.fail(changes.error());
        if (ctx.json) {
            auto arr = nlohmann::json::array();
            for (const auto& c : *changes) {
                nlohmann::json item = {{"status", change_kind_name(c.kind)}, {"details", c.what}};
                put_path(item, "path", c.path);
                arr.push_back(std::move(item));
            }
            nlohmann::json j = {{"volume", vol}, {"branch", *branch}, {"clean", changes->empty()}, {"changes", arr}};
            print_json(j);
            return;
        }
        fmt::print("On branch {} of volume {}\n", *branch, vol);
        if (changes->empty()) {
            fmt::print("nothing to commit, live directory clean\n");
            return;
        }
        fmt::print("Changes not committed:\n");
        for (const auto& c : *changes) {
            std::string label = fmt::format("{}:", change_kind_name(c.kind));
            if (c.kind == ChangeKind::metadata)
                fmt::print("  {:<12}{} ({})\n", label, c.path, join_what(c.what));
            else
                fmt::print("  {:<12}{}\n", label, c.path);
        }
    });
}

void add_diff(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("diff",
                                   "Show changes: live directory vs HEAD, vs REF, or between two REFs; '-- PATH' limits it to PATH");
    auto from = std::make_shared<std::optional<std::string>>();
    auto to = std::make_shared<std::optional<std::string>>();
    auto volume = std::make_shared<std::string>();
    cmd->add_option("from", *from, "Old side (default: HEAD)")->type_name("REF");
    cmd->add_option("to", *to, "New side (default: the live directory)")->type_name("REF");
    cmd->add_option("--volume", *volume, "Volume (default: the active volume)")->type_name("VOLUME");
    cmd->callback([&ctx, from, to, volume] {
        if (ctx.paths.size() > 1) return ctx.usage("diff takes at most one PATH after --");
        auto* repo = ctx.repo();
        if (!repo) return;
        auto v = repo->resolve_volume(volume->empty() ? std::nullopt : std::optional<std::string>(*volume));
        if (!v) return ctx.fail(v.error());
        auto diffs = repo->diff(*v, *from, *to, ctx.paths.empty() ? "" : ctx.paths[0], Context::warn);
        if (!diffs) return ctx.fail(diffs.error());
        for (const auto& d : *diffs) {
            const auto& c = d.change;
            if (!d.patch.empty()) {
                fmt::print("{}", d.patch);
                // A content change moves the mtime anyway; report only the other attributes.
                std::vector<std::string> what;
                for (const auto& w : c.what)
                    if (w != "mtime") what.push_back(w);
                if (!what.empty()) fmt::print("metadata of {}: {}\n", c.path, join_what(what));
                continue;
            }
            if (c.kind == ChangeKind::metadata) {
                fmt::print("metadata of {}: {}\n", c.path, join_what(c.what));
                continue;
            }
            const auto& e = c.new_entry ? *c.new_entry : *c.old_entry;
            std::string detail;
            if (e.type == EntryType::symlink) {
                detail = fmt::format(" -> {}", c.new_entry ? c.new_entry->target : c.old_entry->target);
            }
            fmt::print("{} {} {}{}\n", change_kind_name(c.kind), entry_type_name(e.type), c.path, detail);
        }
    });
}

}  // namespace dvol::cli
