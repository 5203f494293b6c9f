#include <syslog.h>
#include <unistd.h>

#include <string>

#include "serve.h"

namespace dvol::mountfs {

void Logger::use_syslog() {
    ::openlog("dvol-mount", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    syslog_ = true;
}

namespace {

void emit(bool to_syslog, int priority, std::string_view msg) {
    if (to_syslog) {
        ::syslog(priority, "%.*s", static_cast<int>(msg.size()), msg.data());
        return;
    }
    std::string line = "dvol mount: ";
    line.append(msg);
    line += '\n';
    // One write: lines of several threads do not mix.
    (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace

void Logger::error(std::string_view msg) const { emit(syslog_, LOG_ERR, msg); }

void Logger::trace(std::string_view msg) const {
    if (verbose_) emit(syslog_, LOG_DEBUG, msg);
}

}  // namespace dvol::mountfs
