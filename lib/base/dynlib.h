// A shared library loaded when first needed (dlopen) instead of linked, and the functions taken
// from it (dlsym): for libraries whose loading would cost every dvol process at start what only
// some commands need (docs/DECISIONS.md, "libcurl and libgit2 loaded when first needed", and
// "SHA-256 through OpenSSL's SHA256_Init/Update/Final, and libcrypto loaded by the first hash").
#pragma once

#include <string>

namespace dvol {

class SharedLibrary {
public:
    // Opens `soname` (RTLD_NOW, RTLD_LOCAL). It is never closed: the functions taken from it
    // live as long as the process.
    explicit SharedLibrary(const char* soname);
    bool loaded() const { return handle_ != nullptr; }
    const std::string& error() const { return error_; }  // dlerror's words when not loaded

    // fn := the library's function `name`, or null; the first name not found is kept.
    template <typename Fn>
    void take(Fn& fn, const char* name) {
        fn = reinterpret_cast<Fn>(symbol(name));
    }
    // The first function take() did not find, "" when all were.
    const std::string& missing() const { return missing_; }

private:
    void* symbol(const char* name);
    void* handle_ = nullptr;
    std::string error_;
    std::string missing_;
};

}  // namespace dvol
