// A tiny HTTP/1.1 server for unit tests of HTTP clients: it listens on 127.0.0.1 (a port the
// kernel chooses) or on a unix socket, serves one connection at a time on its own thread, and
// answers each request with what a responder function returns (raw HTTP, Content-Length
// included). A request that says "Expect: 100-continue" first gets a 100. It serves
// `max_requests` requests, then stops accepting.
#pragma once

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/fs.h"

namespace dvol::test {

// A listening socket on 127.0.0.1 (port chosen by the kernel, stored in `port`) or on a unix
// socket path.
inline UniqueFd listen_socket(const std::string& unix_path, int& port) {
    UniqueFd fd;
    if (unix_path.empty()) {
        fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port = ntohs(a.sin_port);
    } else {
        fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        REQUIRE(unix_path.size() < sizeof a.sun_path);
        std::memcpy(a.sun_path, unix_path.c_str(), unix_path.size());
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    }
    REQUIRE(::listen(fd.get(), 8) == 0);
    return fd;
}

// A raw HTTP answer.
inline std::string answer(int status, const std::string& reason, const std::string& body, const std::string& extra = "") {
    return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n" + extra + "Content-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
}

// The value of header `name` (any case) in a raw request, "" when absent.
inline std::string request_header(const std::string& request, const std::string& name) {
    std::string lower = request;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string key = "\r\n" + name + ":";
    std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
    size_t at = lower.find(key);
    if (at == std::string::npos) return "";
    size_t start = at + key.size(), end = request.find("\r\n", start);
    std::string v = request.substr(start, end - start);
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    while (!v.empty() && v.back() == ' ') v.pop_back();
    return v;
}

class TinyServer {
public:
    using Responder = std::function<std::string(const std::string& request)>;

    TinyServer(Responder respond, size_t max_requests, const std::string& unix_path = "")
        : respond_(std::move(respond)), max_requests_(max_requests) {
        listener_ = listen_socket(unix_path, port_);
        thread_ = std::thread([this] { serve(); });
    }
    // Answers the requests with `answers`, in order.
    explicit TinyServer(std::vector<std::string> answers, const std::string& unix_path = "")
        : TinyServer([answers, n = size_t{0}](const std::string&) mutable { return answers[n++]; }, answers.size(), unix_path) {}
    ~TinyServer() {
        ::shutdown(listener_.get(), SHUT_RDWR);
        thread_.join();
    }
    TinyServer(const TinyServer&) = delete;
    TinyServer& operator=(const TinyServer&) = delete;

    std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    std::string url(const std::string& path) const { return base_url() + path; }
    std::vector<std::string> requests() {
        std::lock_guard lock(mu_);
        return requests_;
    }

private:
    void serve() {
        size_t served = 0;
        while (served < max_requests_) {
            UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!conn.valid()) return;
            std::string buf;
            while (served < max_requests_) {
                size_t head_end;
                while ((head_end = buf.find("\r\n\r\n")) == std::string::npos)
                    if (!read_more(conn.get(), buf)) break;
                if (head_end == std::string::npos) break;
                std::string head = buf.substr(0, head_end + 4);
                std::string length_text = request_header(head, "content-length");
                size_t length = length_text.empty() ? 0 : std::stoul(length_text);
                if (request_header(head, "expect") == "100-continue") send_all(conn.get(), "HTTP/1.1 100 Continue\r\n\r\n");
                while (buf.size() < head.size() + length)
                    if (!read_more(conn.get(), buf)) break;
                std::string request = buf.substr(0, head.size() + length);
                {
                    std::lock_guard lock(mu_);
                    requests_.push_back(request);
                }
                buf.erase(0, std::min(buf.size(), head.size() + length));
                ++served;
                send_all(conn.get(), respond_(request));
            }
        }
    }
    static bool read_more(int fd, std::string& buf) {
        char tmp[65536];
        ssize_t n = ::read(fd, tmp, sizeof tmp);
        if (n <= 0) return false;
        buf.append(tmp, static_cast<size_t>(n));
        return true;
    }
    static void send_all(int fd, const std::string& s) {
        size_t off = 0;
        while (off < s.size()) {
            ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
            if (n <= 0) return;
            off += static_cast<size_t>(n);
        }
    }

    Responder respond_;
    size_t max_requests_;
    UniqueFd listener_;
    int port_ = 0;
    std::thread thread_;
    std::mutex mu_;
    std::vector<std::string> requests_;
};

}  // namespace dvol::test
