// Errors as values: Error carries a code and a one-line message that names the object and,
// where it helps, what to do next. Result<T> is either a T or an Error. Front ends map an
// Error exactly once (CLI: message + exit status).
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace dvol {

enum class Errc {
    invalid_argument,  // bad user input: a name, a ref, an option value
    not_found,         // a volume, branch, commit or file that does not exist
    already_exists,
    conflict,          // the operation would lose data (uncommitted changes, branch in use)
    corrupt,           // an object or the store failed verification
    io,                // the operating system refused (errno in the message)
    busy,              // another process holds what we need
    unsupported,
    unavailable,       // a remote did not answer, timed out or failed on its side (5xx): worth retrying
    denied,            // a remote refused our credentials or the access asked for
    no_space,          // the disk (or a remote) is full
    internal,
};

struct Error {
    Errc code = Errc::internal;
    std::string message;
    // The errno a file system front end answers, when the failure is one of a file system's own
    // (ENOTEMPTY, EEXIST, ENOTDIR...): fuse-mount's write layer sets it, its FUSE glue answers it.
    // 0: the front end maps `code`.
    int sys = 0;
};

inline Error make_error(Errc code, std::string message) { return Error{code, std::move(message)}; }

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { assert(ok()); return std::get<0>(v_); }
    const T& value() const& { assert(ok()); return std::get<0>(v_); }
    T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const& { assert(!ok()); return std::get<1>(v_); }
    Error&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : err_(std::move(error)), failed_(true) {}

    bool ok() const { return !failed_; }
    explicit operator bool() const { return ok(); }
    const Error& error() const& { assert(failed_); return err_; }
    Error&& error() && { assert(failed_); return std::move(err_); }

private:
    Error err_;
    bool failed_ = false;
};

using Status = Result<void>;

}  // namespace dvol

#define DVOL_CONCAT_INNER(a, b) a##b
#define DVOL_CONCAT(a, b) DVOL_CONCAT_INNER(a, b)

// Return the error of a Status-returning expression from the enclosing function.
#define DVOL_CHECK(expr)                                              \
    do {                                                              \
        auto dvol_check_result_ = (expr);                             \
        if (!dvol_check_result_) return std::move(dvol_check_result_).error(); \
    } while (0)

// Declare `decl` from the value of a Result-returning expression, or return its error.
#define DVOL_TRY(decl, expr) DVOL_TRY_IMPL(DVOL_CONCAT(dvol_try_, __LINE__), decl, expr)
#define DVOL_TRY_IMPL(tmp, decl, expr)              \
    auto tmp = (expr);                              \
    if (!tmp) return std::move(tmp).error();        \
    decl = std::move(tmp).value()
