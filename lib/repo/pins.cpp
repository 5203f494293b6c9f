// Pins: commits held by processes that serve them (dvol mount), which gc treats as roots.
// The file format is in docs/FORMAT.md, "Pins".
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

#include <fmt/format.h>

#include "meta/db.h"
#include "meta/tree_facts.h"
#include "repo/locks.h"
#include "repo/object_reader.h"
#include "repo/readers.h"
#include "repo/repository.h"
#include "store/object_store.h"
#include "store/paths.h"

namespace dvol {

namespace {

constexpr std::string_view kPinMagic = "dvol pin 1\n";
constexpr size_t kMaxPinFile = 1 << 16;

// The holder on one line: backslash and newline escaped.
std::string escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

std::string unescape(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) {
            ++i;
            out += s[i] == 'n' ? '\n' : s[i];
        } else {
            out += s[i];
        }
    }
    return out;
}

std::optional<PinInfo> parse_pin(std::string_view text) {
    if (!text.starts_with(kPinMagic)) return std::nullopt;
    text.remove_prefix(kPinMagic.size());
    PinInfo p;
    bool commit = false, tree = false, pid = false;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        if (nl == std::string_view::npos) return std::nullopt;
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        size_t eq = line.find('=');
        if (eq == std::string_view::npos) return std::nullopt;
        std::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
        if (key == "volume") {
            p.volume = value;
        } else if (key == "commit" || key == "tree") {
            auto id = ObjectId::from_hex(value);
            if (!id) return std::nullopt;
            (key == "commit" ? p.commit : p.tree) = *id;
            (key == "commit" ? commit : tree) = true;
        } else if (key == "pid") {
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), p.pid);
            if (ec != std::errc() || end != value.data() + value.size()) return std::nullopt;
            pid = true;
        } else if (key == "holder") {
            p.holder = unescape(value);
        }
    }
    if (!commit || !tree || !pid) return std::nullopt;
    return p;
}

}  // namespace

CommitPin::~CommitPin() {
    if (fd_.valid()) ::unlink(path_.c_str());
}

Result<CommitPin> Repository::pin_commit(const std::string& volume, const std::string& ref, const std::string& holder) {
    DVOL_TRY(auto v, find_volume(volume));
    // Under the store lock no gc runs: the commit resolved here is pinned before any gc can look.
    DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
    DVOL_TRY(v, find_volume(volume));
    DVOL_TRY(ObjectId id, resolve_in(v, ref));
    DVOL_TRY(ObjectId tree, commit_tree(id));
    DVOL_CHECK(make_dirs(paths_->pins_dir(), 0700));

    CommitPin pin;
    std::string name = random_name();
    std::string staging = paths_->pin_staging(name);
    DVOL_TRY(pin.fd_, open_file(staging, O_RDWR | O_CREAT | O_EXCL, 0600));
    // Locked before it has its name: a pin file without a lock is a dead one.
    if (::flock(pin.fd_.get(), LOCK_EX | LOCK_NB) != 0) {
        auto e = errno_error("lock", staging);
        ::unlink(staging.c_str());
        return e;
    }
    std::string text = fmt::format("{}volume={}\ncommit={}\ntree={}\npid={}\nholder={}\n", kPinMagic, v.name, id.hex(), tree.hex(),
                                   ::getpid(), escape(holder));
    pin.path_ = paths_->pin(name);
    Status written = write_all(pin.fd_.get(), as_bytes(text), staging);
    if (written && ::rename(staging.c_str(), pin.path_.c_str()) != 0) written = errno_error("move into place", pin.path_);
    if (!written) {
        ::unlink(staging.c_str());
        pin.fd_.reset();
        return std::move(written).error();
    }
    pin.volume_ = v.name;
    pin.commit_ = id;
    pin.tree_ = tree;
    return pin;
}

Result<std::vector<PinInfo>> Repository::scan_pins(bool remove_dead) {
    std::vector<PinInfo> out;
    std::string dir = paths_->pins_dir();
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
        if (errno == ENOENT) return out;
        return errno_error("read directory", dir);
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.ends_with(".pin") || n.ends_with(".tmp")) names.push_back(n);
    }
    ::closedir(d);
    for (const auto& n : names) {
        std::string path = dir + "/" + n;
        auto fd = open_file(path, O_RDONLY | O_NOFOLLOW);
        if (!fd) {
            if (fd.error().code == Errc::not_found) continue;  // released meanwhile
            return std::move(fd).error();
        }
        if (::flock(fd->get(), LOCK_SH | LOCK_NB) == 0) {
            // Nobody holds it: its process is gone (or, for a .tmp, died while making it).
            if (remove_dead && ::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("remove", path);
            continue;
        }
        if (errno != EWOULDBLOCK) return errno_error("lock", path);
        if (n.ends_with(".tmp")) continue;  // being made
        DVOL_TRY(auto text, read_small_file(path, kMaxPinFile));
        auto pin = parse_pin(text);
        if (!pin) return make_error(Errc::corrupt, fmt::format("pin file {} is damaged", path));
        pin->file = path;
        out.push_back(std::move(*pin));
    }
    return out;
}

Result<std::vector<PinInfo>> Repository::pins() { return scan_pins(false); }

Result<std::unique_ptr<ObjectSource>> Repository::open_object_reader(ReadCheck check) { return dvol::open_object_reader(*paths_, check); }

namespace {

Result<bool> any_xattrs_below(ObjectSource& source, const ObjectId& tree) {
    // Trees only, each once however often it appears (the answer for a tree is the same
    // wherever it is); the first entry with an xattr ends the walk.
    std::vector<ObjectId> todo{tree};
    ObjectIdSet seen;
    while (!todo.empty()) {
        ObjectId id = todo.back();
        todo.pop_back();
        if (!seen.insert(id).second) continue;
        DVOL_TRY(Tree t, load_tree(source, nullptr, id));
        for (const auto& e : t.entries) {
            if (!e.xattrs.empty()) return true;
            if (e.type == EntryType::dir) todo.push_back(e.subtree);
        }
    }
    return false;
}

}  // namespace

Result<bool> Repository::tree_has_xattrs(const ObjectId& tree) {
    meta::TreeFacts facts(*db_);
    DVOL_TRY(auto known, facts.has_xattrs(tree));
    if (known) return *known;
    bool has = false;
    {
        // Read under the store lock, as every reader of objects: no gc moves them meanwhile.
        DVOL_TRY(auto store_lock, StoreLock::acquire(*paths_, false, wait_notice_));
        DVOL_TRY(has, any_xattrs_below(*store_, tree));
    }
    DVOL_TRY(auto txn, meta::Db::Transaction::begin(*db_));
    DVOL_CHECK(facts.set_has_xattrs(tree, has));
    DVOL_CHECK(txn.commit());
    return has;
}

}  // namespace dvol
