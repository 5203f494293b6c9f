// Lists and lstat()s the directories of a live directory ahead of a scan, in the order the scan
// enters them (depth first, each directory's entries sorted by name bytes, a directory entered
// where it comes). A thread of its own lists the directories (finding the subdirectories by the
// listing's d_type, so it never waits for an lstat); the entries of each listing are lstat'ed by
// a helper thread, and by the scan's thread when it asks for a listing not lstat'ed yet. The
// scan takes each directory's listing from here instead of making the system calls itself,
// which are most of the cost of a scan that finds little changed (a status, a commit of a few
// files).
//
// The walk is a hint: what it did not produce (a directory it could not open, list or enter,
// or one the scan reached by another way), the scan lists itself, and any error is the scan's
// own, with its message. Its lstats are taken between the scan's start and the scan's use of
// them, as the scan's own probes of a window of entries are.
#pragma once

#include <sys/stat.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/fs.h"

namespace dvol {

class WalkAhead {
public:
    struct Dir {
        std::string path;                // relative to the live directory, "" for itself
        std::vector<std::string> names;  // sorted by bytes, without "." and ".."
        std::vector<int> errnos;         // per name: 0, or the lstat's errno
        std::vector<struct stat> stats;  // per name, when its errno is 0
    };

    // Starts walking the directory `root_fd` (borrowed: kept open by the caller until this is
    // destroyed), at most `max_entries` entries ahead of what take() has handed out. A
    // directory holding more entries than that is walked through but not handed out.
    WalkAhead(int root_fd, std::string live_dir, size_t max_entries);
    ~WalkAhead();  // stops the walk and joins its threads
    WalkAhead(const WalkAhead&) = delete;
    WalkAhead& operator=(const WalkAhead&) = delete;

    // The listing of the directory at `path`, with every entry lstat'ed, or nullopt when the
    // walk has not produced it (the caller lists it itself). Listings of directories before
    // `path` in the walk's order that were not taken are dropped: ask in the walk's order.
    // While the listing asked for is not lstat'ed yet, the calling thread lstats its entries
    // too.
    std::optional<Dir> take(const std::string& path);

private:
    // A directory listed and handed out, its entries being lstat'ed by whichever of the threads
    // (the helper, the walk when it waits on its bound, take()'s caller) claims them first.
    struct Listed {
        Dir dir;
        UniqueFd fd;          // the directory, for the lstats (closed once all are taken)
        size_t claimed = 0;   // entries claimed by a thread (or given up: a listing dropped)
        size_t busy = 0;      // of those, entries being lstat'ed now
        size_t done = 0;      // entries lstat'ed
    };
    static constexpr size_t kStatRun = 32;     // entries a thread claims at a time
    static constexpr size_t kMaxListed = 128;  // listings handed out and not taken (an fd each)
    void run();        // the walk: lists the directories, in order
    void stat_loop();  // the helper: lstats entries of the listings
    bool push(std::unique_ptr<Listed> d);  // false: stop
    // With `lk` (on mu_) held: claims up to kStatRun entries of the first listing that has some
    // unclaimed, lstats them with the lock released, and returns true; false when there are
    // none.
    bool stat_some(std::unique_lock<std::mutex>& lk);

    const int root_fd_;
    const std::string live_dir_;
    const size_t max_entries_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::unique_ptr<Listed>> ready_;
    size_t queued_entries_ = 0;
    bool done_ = false;  // the walk has ended
    bool stop_ = false;  // the scan has ended
    std::thread helper_;
    std::thread thread_;  // last: they start once the rest is set
};

// Whether path `a` comes before path `b` in the walk's order: compared component by component
// ("a/b" before "a-c", as the directory "a" is entered before the name "a-c" comes).
bool walk_order_less(const std::string& a, const std::string& b);

}  // namespace dvol
