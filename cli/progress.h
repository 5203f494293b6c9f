// A one-line progress display on stderr, shown only when stderr is a terminal and the work
// takes longer than a moment; scripts see nothing.
#pragma once

#include <unistd.h>

#include <chrono>
#include <string>

#include <fmt/format.h>

#include "repo/progress.h"

namespace dvol::cli {

class ProgressLine {
public:
    // `unit` names what Progress::files counts ("file", "object"); "" shows bytes only.
    explicit ProgressLine(std::string label, std::string unit = "file")
        : label_(std::move(label)), unit_(std::move(unit)), enabled_(::isatty(STDERR_FILENO) == 1) {
        start_ = last_ = std::chrono::steady_clock::now();
    }
    ~ProgressLine() { finish(); }

    ProgressFn callback() {
        if (!enabled_) return {};
        return [this](const Progress& p) { update(p); };
    }

    void finish() {
        if (shown_) fmt::print(stderr, "\r\033[K");
        shown_ = false;
    }

private:
    void update(const Progress& p) {
        auto now = std::chrono::steady_clock::now();
        if (now - last_ < std::chrono::milliseconds(100) || now - start_ < std::chrono::milliseconds(500)) return;
        last_ = now;
        double secs = std::chrono::duration<double>(now - start_).count();
        double mib = static_cast<double>(p.bytes) / (1 << 20);
        double rate = secs > 0 ? mib / secs : 0.0;
        std::string count = unit_.empty() ? "" : fmt::format("{} {}{}, ", p.files, unit_, p.files == 1 ? "" : "s");
        if (p.bytes == 0) {
            fmt::print(stderr, "\r\033[K{}: {} {}{}", label_, p.files, unit_, p.files == 1 ? "" : "s");
        } else if (p.total > 0 && p.total >= p.bytes) {
            double total = static_cast<double>(p.total) / (1 << 20);
            double left = rate > 0 ? (total - mib) / rate : 0.0;
            fmt::print(stderr, "\r\033[K{}: {}{:.1f} of {:.1f} MiB ({:.0f}%), {:.1f} MiB/s, {:.0f} s left", label_, count, mib, total,
                       100.0 * mib / total, rate, left);
        } else {
            fmt::print(stderr, "\r\033[K{}: {}{:.1f} MiB ({:.1f} MiB/s)", label_, count, mib, rate);
        }
        std::fflush(stderr);
        shown_ = true;
    }
    std::string label_;
    std::string unit_;
    bool enabled_;
    bool shown_ = false;
    std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace dvol::cli
