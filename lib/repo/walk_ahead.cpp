#include "repo/walk_ahead.h"

#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <string_view>

#include "base/fs.h"

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
    : root_fd_(root_fd),
      live_dir_(std::move(live_dir)),
      max_entries_(std::max<size_t>(max_entries, 1)),
      helper_([this] { stat_loop(); }),
      thread_([this] { run(); }) {}

WalkAhead::~WalkAhead() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    helper_.join();
}

bool WalkAhead::stat_some(std::unique_lock<std::mutex>& lk) {
    for (auto& l : ready_) {
        size_t n = l->dir.names.size();
        if (l->claimed == n) continue;
        Listed& d = *l;  // stays: a listing is let go only when none of its entries is busy
        size_t from = d.claimed, count = std::min(kStatRun, n - from);
        d.claimed += count;
        d.busy += count;
        lk.unlock();
        for (size_t i = from; i < from + count; ++i)
            d.dir.errnos[i] = ::fstatat(d.fd.get(), d.dir.names[i].c_str(), &d.dir.stats[i], AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
        lk.lock();
        d.busy -= count;
        d.done += count;
        if (d.done == n) d.fd.reset();
        if (d.busy == 0) cv_.notify_all();
        return true;
    }
    return false;
}

void WalkAhead::stat_loop() {
    std::unique_lock lk(mu_);
    while (!stop_)
        if (!stat_some(lk)) cv_.wait(lk);
}

std::optional<WalkAhead::Dir> WalkAhead::take(const std::string& path) {
    std::unique_lock lk(mu_);
    for (;;) {
        if (ready_.empty()) {
            if (done_) return std::nullopt;
            cv_.wait(lk);
            continue;
        }
        Listed& front = *ready_.front();
        bool match = front.dir.path == path;
        if (!match && !walk_order_less(front.dir.path, path)) return std::nullopt;  // the walk skipped it
        size_t n = front.dir.names.size();
        if (!match) front.claimed = n;  // dropped: its entries not begun are never lstat'ed
        if (front.claimed < n) {
            stat_some(lk);  // the first with entries to lstat: this one
            continue;
        }
        if (front.busy > 0 || (match && front.done < n)) {
            cv_.wait(lk);
            continue;
        }
        std::unique_ptr<Listed> d = std::move(ready_.front());
        ready_.pop_front();
        queued_entries_ -= n;
        cv_.notify_all();
        if (match) return std::move(d->dir);
    }
}

bool WalkAhead::push(std::unique_ptr<Listed> d) {
    std::unique_lock lk(mu_);
    size_t n = d->dir.names.size();
    // Over the bound, the walk lstats entries of the listings it made rather than wait idle.
    while (!stop_ && (queued_entries_ + n > max_entries_ || ready_.size() >= kMaxListed))
        if (!stat_some(lk)) cv_.wait(lk);
    if (stop_) return false;
    queued_entries_ += n;
    ready_.push_back(std::move(d));
    cv_.notify_all();
    return true;
}

void WalkAhead::run() {
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
    auto stopped = [&] {
        std::lock_guard lk(mu_);
        return stop_;
    };
    // Lists the current directory and hands it out, its entries to be lstat'ed; its
    // subdirectories (by d_type, or an lstat where the file system gives none) are the next
    // frame. A directory larger than the bound is not handed out (the scan probes it a window
    // at a time, so its lstats never all sit in memory at once): the walk goes on below it.
    enum class Visit { listed, unlisted, stop };
    std::vector<unsigned char> types;
    std::vector<size_t> order;
    auto visit = [&](int fd, const std::string& path, std::vector<Frame>& frames) -> Visit {
        auto names = list_dir(fd, path.empty() ? live_dir_ : path, &types);
        if (!names) return Visit::unlisted;  // the scan lists it itself, and says why it cannot
        size_t n = names->size();
        order.resize(n);
        for (size_t i = 0; i < n; ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return (*names)[a] < (*names)[b]; });
        auto l = std::make_unique<Listed>();
        l->dir.path = path;
        l->dir.names.reserve(n);
        Frame f;
        f.path_len = path.size();
        for (size_t i : order) {
            std::string& name = (*names)[i];
            bool dir = types[i] == DT_DIR;
            if (types[i] == DT_UNKNOWN) {
                struct stat st;
                dir = ::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
            }
            if (dir) f.names.push_back(name);
            l->dir.names.push_back(std::move(name));
        }
        frames.push_back(std::move(f));
        if (n > max_entries_) return Visit::listed;
        if (n > 0) {
            // Its own descriptor: the walk has moved on when its entries are lstat'ed.
            l->fd = UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
            if (!l->fd.valid()) return Visit::listed;  // not handed out: the scan lists it
        }
        l->dir.errnos.resize(n);
        l->dir.stats.resize(n);
        return push(std::move(l)) ? Visit::listed : Visit::stop;
    };
    auto dirs = DirStack::begin(root_fd_, live_dir_, false);
    if (!dirs) return finish();
    std::string path;
    std::vector<Frame> frames;
    if (visit(dirs->fd(), path, frames) != Visit::listed) return finish();
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
        Visit visited = visit(dirs->fd(), path, frames);
        if (visited == Visit::stop) break;
        if (visited == Visit::unlisted) {
            if (!dirs->leave(path)) break;
            path.resize(len);
        }
    }
    finish();
}

}  // namespace dvol
