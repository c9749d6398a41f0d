/// \file
/// lens/diagnostics.hpp — what a failure said, for callers that take error codes
/// instead of exceptions.
///
/// A `lens::error` carries more than its code: the operation, the HTTP status and the
/// server's own diagnostics. The overloads of lens operations that take a
/// `lens::diagnostics&` (just before the completion token, as in Boost.MySQL) keep all
/// of it reachable without an exception:
///
///     lens::diagnostics diag;
///     auto [ec, s] = co_await c.get_session(id, diag, asio::as_tuple(asio::use_awaitable));
///     if (ec)
///         std::cerr << diag.message() << '\n';   // "sessions/metadata: no record with id ..."
///
/// Filled when the operation fails, cleared when it succeeds. Like every lens message,
/// it never holds the API key.
#pragma once

#include <lens/error.hpp>

#include <boost/system/system_error.hpp>

#include <string>
#include <vector>

namespace lens {

/// The operation, HTTP status, server errors and message of the last failure of the
/// operations it was passed to (empty after a success). Not thread-safe: like the
/// object whose operation fills it, used from one thread; it must outlive the operation.
class diagnostics {
public:
    /// Empty: no failure recorded.
    diagnostics() = default;
    /// Everything `e` carries.
    explicit diagnostics(const lens::error& e);
    /// A failure that is not a `lens::error` (an Asio or Beast error, operation_aborted
    /// after a cancellation): only its message; no operation, status or server errors.
    explicit diagnostics(const boost::system::system_error& e);

    /// The operation that failed, e.g. "sessions/metadata" or "session.validate";
    /// empty when unknown (see above) or when nothing failed.
    const std::string& operation() const noexcept { return operation_; }
    /// The HTTP status of the reply, 0 when there was none.
    unsigned http_status() const noexcept { return http_status_; }
    /// The server's own error codes and messages, in order (bounded as lens::error's).
    const std::vector<server_error>& server_errors() const noexcept { return server_errors_; }
    /// The whole message, as `lens::error::what()` would say it.
    const std::string& message() const noexcept { return message_; }

    /// Back to the empty state (the operations do it on success).
    void clear() noexcept;

private:
    std::string operation_;
    unsigned http_status_ = 0;
    std::vector<server_error> server_errors_;
    std::string message_;
};

} // namespace lens
