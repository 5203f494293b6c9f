#include "repo/walk_ahead.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <string_view>

#include "base/fs.h"
#include "base/parallel.h"

namespace dvol {

bool walk_order_less(const std::string& a, const std::string& b) {
    size_t i = 0, j = 0;
    for (;;) {
        if (j >= b.size()) return false;  // b is done: a is b or below it
        if (i >= a.size()) return true;   // a is an ancestor of b
        size_t ai = a.find('/', i), bj = b.find('/', j);
        std::string_view ac(a.data() + i, (ai == std::string::npos ? a.size() : ai) - i);
        std::string_view bc(b.data() + j, (bj == std::string::npos ? b.size() : bj) - j);
        if (ac != bc) return ac < bc;
        if (ai == std::string::npos) return bj != std::string::npos;
        if (bj == std::string::npos) return false;
        i = ai + 1;
        j = bj + 1;
    }
}

WalkAhead::WalkAhead(int root_fd, std::string live_dir, size_t max_entries)
    : root_fd_(root_fd), live_dir_(std::move(live_dir)), max_entries_(std::max<size_t>(max_entries, 1)), thread_([this] { run(); }) {}

WalkAhead::~WalkAhead() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

std::optional<WalkAhead::Dir> WalkAhead::take(const std::string& path) {
    std::unique_lock lk(mu_);
    for (;;) {
        cv_.wait(lk, [&] { return !ready_.empty() || done_; });
        if (ready_.empty()) return std::nullopt;
        Dir& front = ready_.front();
        bool match = front.path == path;
        if (!match && !walk_order_less(front.path, path)) return std::nullopt;  // the walk skipped it
        Dir d = std::move(front);
        ready_.pop_front();
        queued_entries_ -= d.names.size();
        cv_.notify_all();
        if (match) return d;
    }
}

bool WalkAhead::push(Dir d) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return stop_ || queued_entries_ + d.names.size() <= max_entries_; });
    if (stop_) return false;
    queued_entries_ += d.names.size();
    ready_.push_back(std::move(d));
    cv_.notify_all();
    return true;
}

void WalkAhead::run() {
    ParallelFor stat_workers;
    struct Frame {
        std::vector<std::string> names;  // the directories among the entries, in order
        size_t next = 0;
        size_t path_len = 0;
    };
    auto finish = [&] {
        std::lock_guard lk(mu_);
        done_ = true;
        cv_.notify_all();
    };
    // The scan has ended (with an error, or done): a walk that hands nothing out for a while
    // (directories larger than the bound) must not keep its destructor waiting.
    auto stopped = [&] {
        std::lock_guard lk(mu_);
        return stop_;
    };
    // Lists the current directory and hands it out; its subdirectories are the next frame.
    // A directory larger than the bound is not handed out (the scan probes it a window at a
    // time, so its lstats never all sit in memory at once): only its subdirectories are kept,
    // found a window at a time, and the walk goes on below it.
    enum class Listed { yes, no, stop };
    std::vector<int> errnos;
    std::vector<struct stat> stats;
    auto visit = [&](int fd, const std::string& path, std::vector<Frame>& frames) -> Listed {
        auto names = list_dir(fd, path.empty() ? live_dir_ : path);
        if (!names) return Listed::no;  // the scan lists it itself, and says why it cannot
        std::sort(names->begin(), names->end());
        bool whole = names->size() <= max_entries_;
        size_t window = whole ? names->size() : max_entries_;
        Frame f;
        f.path_len = path.size();
        for (size_t first = 0; first < names->size(); first += window) {
            if (first > 0 && stopped()) return Listed::stop;
            size_t n = std::min(window, names->size() - first);
            errnos.resize(n);
            stats.resize(n);
            // Each lstat a path lookup: shared with a second thread.
            stat_workers.run(n, [&](size_t i, int) {
                errnos[i] = ::fstatat(fd, (*names)[first + i].c_str(), &stats[i], AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
            });
            for (size_t i = 0; i < n; ++i)
                if (errnos[i] == 0 && S_ISDIR(stats[i].st_mode)) f.names.push_back((*names)[first + i]);
        }
        frames.push_back(std::move(f));
        if (!whole) return Listed::yes;
        Dir d;
        d.path = path;
        d.names = std::move(*names);
        d.errnos = errnos;
        d.stats = stats;
        return push(std::move(d)) ? Listed::yes : Listed::stop;
    };
    auto dirs = DirStack::begin(root_fd_, live_dir_, false);
    if (!dirs) return finish();
    std::string path;
    std::vector<Frame> frames;
    if (visit(dirs->fd(), path, frames) != Listed::yes) return finish();
    while (!frames.empty() && !stopped()) {
        Frame& f = frames.back();
        if (f.next == f.names.size()) {
            frames.pop_back();
            if (frames.empty()) break;
            if (!dirs->leave(path)) break;  // the tree moved: the scan goes on alone
            path.resize(frames.back().path_len);
            continue;
        }
        const std::string& name = f.names[f.next++];
        size_t len = path.size();
        if (!path.empty()) path += '/';
        path += name;
        if (!dirs->enter(name, path)) {
            path.resize(len);
            continue;
        }
        Listed listed = visit(dirs->fd(), path, frames);
        if (listed == Listed::stop) break;
        if (listed == Listed::no) {
            if (!dirs->leave(path)) break;
            path.resize(len);
        }
    }
    finish();
}

}  // namespace dvol
