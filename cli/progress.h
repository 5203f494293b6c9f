// A one-line progress display on stderr, shown only when stderr is a terminal and the work
// takes longer than a moment; scripts see nothing.
#pragma once

#include <unistd.h>

#include <chrono>
#include <string>

#include <fmt/format.h>

#include "repo/scan.h"

namespace dvol::cli {

class ProgressLine {
public:
    // `unit` names what Progress::files counts ("file", "object").
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
        if (p.bytes == 0) {
            fmt::print(stderr, "\r\033[K{}: {} {}{}", label_, p.files, unit_, p.files == 1 ? "" : "s");
        } else {
            fmt::print(stderr, "\r\033[K{}: {} {}{}, {:.1f} MiB ({:.1f} MiB/s)", label_, p.files, unit_, p.files == 1 ? "" : "s", mib,
                       secs > 0 ? mib / secs : 0.0);
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
