#include "base/dynlib.h"

#include <dlfcn.h>

namespace dvol {

SharedLibrary::SharedLibrary(const char* soname) {
    handle_ = ::dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!handle_) {
        const char* e = ::dlerror();
        error_ = e ? e : "not found";
    }
}

void* SharedLibrary::symbol(const char* name) {
    void* p = handle_ ? ::dlsym(handle_, name) : nullptr;
    if (!p && missing_.empty()) missing_ = name;
    return p;
}

}  // namespace dvol
