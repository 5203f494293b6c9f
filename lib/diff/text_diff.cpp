#include "diff/text_diff.h"

#include <git2.h>

#include <cstring>
#include <memory>
#include <mutex>

#include <fmt/format.h>

#include "base/dynlib.h"
#include "dvol_config.h"

namespace dvol {

namespace {

// libgit2, loaded when first needed rather than linked: its dependencies cost every dvol
// process about 1 ms at start, and only text diffs and the author's default need it
// (docs/DECISIONS.md, "libcurl and libgit2 loaded when first needed"). DVOL_LIBGIT2_SONAME is
// the library meson found (libgit2.so.MAJOR.MINOR).
struct Git {
    decltype(&::git_libgit2_init) libgit2_init;
    decltype(&::git_patch_free) patch_free;
    decltype(&::git_config_free) config_free;
    decltype(&::git_error_last) error_last;
    decltype(&::git_patch_from_buffers) patch_from_buffers;
    decltype(&::git_patch_to_buf) patch_to_buf;
    decltype(&::git_buf_dispose) buf_dispose;
    decltype(&::git_config_open_default) config_open_default;
    decltype(&::git_config_get_string_buf) config_get_string_buf;
};
Git g_git;
std::string g_git_error;  // why it could not be loaded, "" when it was

// Loads and initialises libgit2 once per process (never shut down: harmless at exit).
bool ensure_git() {
    static std::once_flag once;
    std::call_once(once, [] {
        SharedLibrary lib(DVOL_LIBGIT2_SONAME);
        if (!lib.loaded()) {
            g_git_error = fmt::format("cannot load {} ({})", DVOL_LIBGIT2_SONAME, lib.error());
            return;
        }
        lib.take(g_git.libgit2_init, "git_libgit2_init");
        lib.take(g_git.patch_free, "git_patch_free");
        lib.take(g_git.config_free, "git_config_free");
        lib.take(g_git.error_last, "git_error_last");
        lib.take(g_git.patch_from_buffers, "git_patch_from_buffers");
        lib.take(g_git.patch_to_buf, "git_patch_to_buf");
        lib.take(g_git.buf_dispose, "git_buf_dispose");
        lib.take(g_git.config_open_default, "git_config_open_default");
        lib.take(g_git.config_get_string_buf, "git_config_get_string_buf");
        if (!lib.missing().empty()) {
            g_git_error = fmt::format("cannot load {}: it lacks functions dvol needs", DVOL_LIBGIT2_SONAME);
            return;
        }
        g_git.libgit2_init();
    });
    return g_git_error.empty();
}

struct PatchDeleter {
    void operator()(git_patch* p) const { g_git.patch_free(p); }
};
struct ConfigDeleter {
    void operator()(git_config* c) const { g_git.config_free(c); }
};

Error libgit2_error(std::string_view what) {
    const ::git_error* e = g_git.error_last();
    return make_error(Errc::internal, fmt::format("{}: {}", what, e && e->message ? e->message : "libgit2 error"));
}

// git's mode of a file: 100755 when any execute bit is set, 100644 otherwise.
std::string_view git_file_mode(uint32_t mode) { return mode & 0111 ? "100755" : "100644"; }

// libgit2 gives a buffer the mode of a plain file (100644), whatever its file's: the header
// lines before "--- " are written again with each side's mode, as git writes them (an index
// line carries the mode when both sides have it, "old mode"/"new mode" lines come before it
// when it changed).
std::string with_modes(const std::string& patch, uint32_t old_mode, uint32_t new_mode) {
    std::string out;
    size_t pos = 0;
    while (pos < patch.size()) {
        size_t end = patch.find('\n', pos);
        end = end == std::string::npos ? patch.size() : end + 1;
        std::string_view line(patch.data() + pos, end - pos);
        if (line.starts_with("--- ")) break;
        pos = end;
        if (line.starts_with("new file mode ")) {
            out += fmt::format("new file mode {}\n", git_file_mode(new_mode));
        } else if (line.starts_with("deleted file mode ")) {
            out += fmt::format("deleted file mode {}\n", git_file_mode(old_mode));
        } else if (size_t space = line.find(' ', 6); line.starts_with("index ") && space != std::string_view::npos) {
            std::string_view ids = line.substr(6, space - 6);
            if (git_file_mode(old_mode) == git_file_mode(new_mode))
                out += fmt::format("index {} {}\n", ids, git_file_mode(new_mode));
            else
                out += fmt::format("old mode {}\nnew mode {}\nindex {}\n", git_file_mode(old_mode), git_file_mode(new_mode), ids);
        } else {
            out += line;
        }
    }
    out.append(patch, pos);
    return out;
}

}  // namespace

bool looks_binary(const std::string& data) {
    size_t n = std::min<size_t>(data.size(), 8000);
    return std::memchr(data.data(), '\0', n) != nullptr;
}

Result<std::string> unified_diff(const std::string& path, const std::optional<std::string>& old_text, uint32_t old_mode,
                                 const std::optional<std::string>& new_text, uint32_t new_mode, int context_lines) {
    if (!ensure_git()) return make_error(Errc::unsupported, fmt::format("cannot diff {}: {}", path, g_git_error));
    git_diff_options opts = GIT_DIFF_OPTIONS_INIT;
    opts.context_lines = static_cast<uint32_t>(context_lines);
    opts.flags = GIT_DIFF_FORCE_TEXT;
    git_patch* raw = nullptr;
    const char* old_path = old_text ? path.c_str() : nullptr;
    const char* new_path = new_text ? path.c_str() : nullptr;
    int rc = g_git.patch_from_buffers(&raw, old_text ? old_text->data() : nullptr, old_text ? old_text->size() : 0, old_path,
                                    new_text ? new_text->data() : nullptr, new_text ? new_text->size() : 0, new_path, &opts);
    if (rc != 0) return libgit2_error("cannot diff " + path);
    std::unique_ptr<git_patch, PatchDeleter> patch(raw);
    git_buf buf = GIT_BUF_INIT;
    if (g_git.patch_to_buf(&buf, patch.get()) != 0) return libgit2_error("cannot format the diff of " + path);
    std::string out(buf.ptr ? buf.ptr : "", buf.size);
    g_git.buf_dispose(&buf);
    return with_modes(out, old_mode, new_mode);
}

GitIdentity git_identity() {
    GitIdentity id;
    if (!ensure_git()) return id;  // no git config to read: the defaults apply
    git_config* raw = nullptr;
    if (g_git.config_open_default(&raw) != 0) return id;
    std::unique_ptr<git_config, ConfigDeleter> cfg(raw);
    auto get = [&](const char* key) -> std::optional<std::string> {
        git_buf buf = GIT_BUF_INIT;
        if (g_git.config_get_string_buf(&buf, cfg.get(), key) != 0) return std::nullopt;
        std::string v(buf.ptr, buf.size);
        g_git.buf_dispose(&buf);
        if (v.empty()) return std::nullopt;
        return v;
    };
    id.name = get("user.name");
    id.email = get("user.email");
    return id;
}

}  // namespace dvol
