#include "remote/backend.h"

namespace dvol::remote {

bool valid_key(std::string_view key) {
    if (key.empty() || key.size() > 1024) return false;
    size_t start = 0;
    for (;;) {
        size_t end = key.find('/', start);
        std::string_view seg = key.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
        if (seg.empty() || seg == "." || seg == "..") return false;
        for (char c : seg) {
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
            if (!ok) return false;
        }
        if (end == std::string_view::npos) return true;
        start = end + 1;
    }
}

}  // namespace dvol::remote
