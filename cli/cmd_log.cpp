#include <ctime>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "context.h"
#include "json_out.h"

namespace dvol::cli {

namespace {

// The commit's own time zone, as git shows it: "Sun Nov 22 03:03:58 2026 +0000".
std::string git_date(const Commit& c) {
    time_t t = static_cast<time_t>(c.time + static_cast<int64_t>(c.tz_offset_min) * 60);
    struct tm tm;
    ::gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a %b %e %H:%M:%S %Y", &tm);
    return fmt::format("{} {}", buf, format_tz(c.tz_offset_min));
}

std::string iso_date(const Commit& c) {
    time_t t = static_cast<time_t>(c.time + static_cast<int64_t>(c.tz_offset_min) * 60);
    struct tm tm;
    ::gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::string tz = format_tz(c.tz_offset_min);
    return fmt::format("{}{}:{}", buf, tz.substr(0, 3), tz.substr(3));
}

}  // namespace

void add_log(CLI::App& app, Context& ctx) {
    auto* cmd = app.add_subcommand("log", "Show the commits of the active branch, newest first");
    auto volume = std::make_shared<std::optional<std::string>>();
    auto max = std::make_shared<std::optional<int64_t>>();
    auto oneline = std::make_shared<bool>(false);
    cmd->add_option("-n,--max-count", *max, "Show at most N commits")->type_name("N")->check(
        CLI::Range(int64_t{0}, std::numeric_limits<int64_t>::max()).description(""));
    cmd->add_flag("--oneline", *oneline, "One line per commit: the short id and the message's first line");
    add_json_flag(*cmd, ctx);
    add_volume_arg(*cmd, *volume);
    cmd->callback([&ctx, volume, max, oneline] {
        std::string vol;
        auto* repo = ctx.repo_for(*volume, vol);
        if (!repo) return;
        auto entries = repo->log(vol);
        if (!entries) return ctx.fail(entries.error());
        if (*max && entries->size() > static_cast<uint64_t>(**max)) entries->resize(static_cast<size_t>(**max));
        if (*oneline && !ctx.json) {
            for (const auto& e : *entries) fmt::print("{} {}\n", short_id(e.id), first_line(e.commit.message));
            return;
        }
        if (ctx.json) {
            auto arr = nlohmann::json::array();
            for (const auto& e : *entries) {
                auto parents = nlohmann::json::array();
                for (const auto& p : e.commit.parents) parents.push_back(p.hex());
                arr.push_back({{"id", e.id.hex()},
                               {"tree", e.commit.tree.hex()},
                               {"parents", parents},
                               {"author", {{"name", e.commit.author_name}, {"email", e.commit.author_email}}},
                               {"date", iso_date(e.commit)},
                               {"time", e.commit.time},
                               {"message", e.commit.message}});
            }
            print_json(arr);
            return;
        }
        bool first = true;
        for (const auto& e : *entries) {
            if (!first) fmt::print("\n");
            first = false;
            fmt::print("commit {}\nAuthor: {} <{}>\nDate:   {}\n\n", e.id.hex(), e.commit.author_name, e.commit.author_email,
                       git_date(e.commit));
            std::string msg = e.commit.message;
            while (!msg.empty() && msg.back() == '\n') msg.pop_back();
            size_t start = 0;
            while (start <= msg.size()) {
                size_t nl = msg.find('\n', start);
                if (nl == std::string::npos) nl = msg.size();
                std::string line = msg.substr(start, nl - start);
                fmt::print("{}{}\n", line.empty() ? "" : "    ", line);
                start = nl + 1;
            }
        }
    });
}

}  // namespace dvol::cli
