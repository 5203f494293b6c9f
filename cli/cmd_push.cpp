#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "context.h"
#include "json_out.h"
#include "progress.h"

namespace dvol::cli {

namespace {

std::string tip_or_null(const std::optional<ObjectId>& id) { return id ? id->hex() : std::string(); }

const char* kind_name(PushOutcome::Kind k) {
    switch (k) {
        case PushOutcome::Kind::up_to_date: return "up-to-date";
        case PushOutcome::Kind::created: return "created";
        case PushOutcome::Kind::fast_forward: return "fast-forward";
        case PushOutcome::Kind::forced: return "forced";
        case PushOutcome::Kind::deleted: return "deleted";
    }
    return "?";
}

}  // namespace

void add_push(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("push", "Send a branch of a volume to a remote: the objects it lacks, then the branch");
    auto remote = std::make_shared<std::string>();
    auto volume = std::make_shared<std::optional<std::string>>();
    auto branch = std::make_shared<std::optional<std::string>>();
    auto endpoint = std::make_shared<std::string>();
    auto options = std::make_shared<PushOptions>();
    cmd->add_option("remote", *remote, "A remote's name, or a URL")->required();
    cmd->add_option("volume", *volume, "Volume (default: the active volume)")->type_name("VOLUME");
    cmd->add_option("branch", *branch, "Branch (default: the volume's active branch)")->type_name("BRANCH");
    cmd->add_flag("-f,--force", options->force, "Overwrite the remote branch even when it is not an ancestor of the local one");
    cmd->add_flag("-d,--delete", options->remove, "Delete the branch on the remote instead");
    cmd->add_option("--endpoint", *endpoint, "s3: the service's URL when it is not AWS")->type_name("URL");
    add_json_flag(*cmd, ctx);
    cmd->callback([&ctx, remote, volume, branch, endpoint, options] {
        std::string vol;
        auto* repo = ctx.repo_for(*volume, vol);
        if (!repo) return;
        ProgressLine progress("Pushing", "");
        auto out = repo->push(RemoteSpec{*remote, *endpoint}, vol, *branch, *options, progress.callback());
        progress.finish();
        if (!out) return ctx.fail(out.error());
        std::string ref = out->remote_volume + "/" + out->branch;
        if (ctx.json) {
            print_json({{"remote", *remote}, {"volume", vol}, {"remote_volume", out->remote_volume}, {"branch", out->branch},
                        {"result", kind_name(out->kind)}, {"old", tip_or_null(out->old_tip)}, {"new", tip_or_null(out->new_tip)},
                        {"objects", out->sent.objects}, {"packs", out->sent.packs}, {"bytes", out->sent.bytes}});
            return;
        }
        if (out->kind == PushOutcome::Kind::up_to_date) {
            fmt::print("Everything up-to-date\n");
            return;
        }
        fmt::print("To {}\n", *remote);
        switch (out->kind) {
            case PushOutcome::Kind::created: fmt::print(" * [new branch]      {} -> {}\n", vol + "/" + out->branch, ref); break;
            case PushOutcome::Kind::deleted: fmt::print(" - [deleted]         {}\n", ref); break;
            case PushOutcome::Kind::forced:
                fmt::print(" + {}...{} {} -> {} (forced update)\n", short_id(*out->old_tip).substr(0, 7), short_id(*out->new_tip).substr(0, 7),
                           vol + "/" + out->branch, ref);
                break;
            default:
                fmt::print("   {}..{}  {} -> {}\n", short_id(*out->old_tip).substr(0, 7), short_id(*out->new_tip).substr(0, 7),
                           vol + "/" + out->branch, ref);
        }
        if (out->kind != PushOutcome::Kind::deleted)
            fmt::print("{} object{} sent, {:.1f} MiB in {} pack{}\n", out->sent.objects, out->sent.objects == 1 ? "" : "s",
                       static_cast<double>(out->sent.bytes) / (1 << 20), out->sent.packs, out->sent.packs == 1 ? "" : "s");
    });
}

}  // namespace dvol::cli
