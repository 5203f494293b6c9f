#include "diff/text_diff.h"

#include <git2.h>

#include <cstring>
#include <memory>

#include <fmt/format.h>

namespace dvol {

namespace {

// libgit2 must be initialised once per process; it is never shut down (harmless at exit).
void ensure_git() {
    static const int init = git_libgit2_init();
    (void)init;
}

struct PatchDeleter {
    void operator()(git_patch* p) const { git_patch_free(p); }
};
struct ConfigDeleter {
    void operator()(git_config* c) const { git_config_free(c); }
};

Error libgit2_error(std::string_view what) {
    const ::git_error* e = ::git_error_last();
    return make_error(Errc::internal, fmt::format("{}: {}", what, e && e->message ? e->message : "libgit2 error"));
}

}  // namespace

bool looks_binary(const std::string& data) {
    size_t n = std::min<size_t>(data.size(), 8000);
    return std::memchr(data.data(), '\0', n) != nullptr;
}

Result<std::string> unified_diff(const std::string& path, const std::optional<std::string>& old_text,
                                 const std::optional<std::string>& new_text, int context_lines) {
    ensure_git();
    git_diff_options opts = GIT_DIFF_OPTIONS_INIT;
    opts.context_lines = static_cast<uint32_t>(context_lines);
    opts.flags = GIT_DIFF_FORCE_TEXT;
    git_patch* raw = nullptr;
    const char* old_path = old_text ? path.c_str() : nullptr;
    const char* new_path = new_text ? path.c_str() : nullptr;
    int rc = git_patch_from_buffers(&raw, old_text ? old_text->data() : nullptr, old_text ? old_text->size() : 0, old_path,
                                    new_text ? new_text->data() : nullptr, new_text ? new_text->size() : 0, new_path, &opts);
    if (rc != 0) return libgit2_error("cannot diff " + path);
    std::unique_ptr<git_patch, PatchDeleter> patch(raw);
    git_buf buf = GIT_BUF_INIT;
    if (git_patch_to_buf(&buf, patch.get()) != 0) return libgit2_error("cannot format the diff of " + path);
    std::string out(buf.ptr ? buf.ptr : "", buf.size);
    git_buf_dispose(&buf);
    return out;
}

GitIdentity git_identity() {
    ensure_git();
    GitIdentity id;
    git_config* raw = nullptr;
    if (git_config_open_default(&raw) != 0) return id;
    std::unique_ptr<git_config, ConfigDeleter> cfg(raw);
    auto get = [&](const char* key) -> std::optional<std::string> {
        git_buf buf = GIT_BUF_INIT;
        if (git_config_get_string_buf(&buf, cfg.get(), key) != 0) return std::nullopt;
        std::string v(buf.ptr, buf.size);
        git_buf_dispose(&buf);
        if (v.empty()) return std::nullopt;
        return v;
    };
    id.name = get("user.name");
    id.email = get("user.email");
    return id;
}

}  // namespace dvol
