// lens/error.hpp — the error model of lens.
//
// Every failure is a `boost::system::error_code` of `lens::error_category()`
// (or an Asio/Beast/SSL code passed through), carried in a `lens::error`
// exception. The exception's message always names the operation and the
// cause: "sessions/create: 401 unauthorized: Invalid API key".
//
// The message rule, in full:
//
//     what() = operation ": " [status " " reason ": "] cause
//     cause  = detail ": " said      when both are present
//            | detail | said        when only one is
//            | code().message()     when neither is
//     said   = each server error's message (its code when the message is empty), joined by "; "
//
// `status` is the HTTP status (omitted when 0) and `reason` its lower-case reason phrase
// (omitted for statuses lens does not name). Examples:
//
//     sessions/create: 401 unauthorized: Invalid API key
//     sessions/create: 200 ok: Failed to allocate lens runner - try stopping an older session!
//     model.query: the server timed out answering the query
//
// Nothing here ever sees the API key; callers must not put it in `detail`.
#pragma once

#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace lens {

/// Error conditions raised by lens itself.
enum class errc {
    timeout = 1,            ///< the operation's deadline passed
    connection_failed,      ///< could not connect (DNS, refused, TLS handshake)
    connection_lost,        ///< the connection dropped while the request was in flight
    unauthorized,           ///< HTTP 401/403, or a WebSocket upgrade refused with 401/403
    not_found,              ///< HTTP 404 (unknown lens, session or file)
    rate_limited,           ///< HTTP 429 after every retry
    server_error,           ///< HTTP 5xx after every retry
    http_error,             ///< any other non-success HTTP status
    api_error,              ///< a 2xx reply carrying `errors` or `is_valid: false`
    invalid_response,       ///< a reply that is not the JSON we expect (an HTML error page...)
    body_too_large,         ///< a reply body over `config::max_body_size`
    invalid_argument,       ///< rejected client-side before sending (unknown file extension...)
    query_timed_out,        ///< the server's "Response timed out for query" reply to model.query
    session_gone,           ///< the session no longer exists (upgrade refused, or destroyed)
    protocol_error,         ///< a frame or event that violates the protocol
    limit_exceeded,         ///< an SSE line or event over its size limit
    not_event_stream,       ///< a consumer reply whose content type is not text/event-stream
    closed,                 ///< the object was closed or destroyed while the request waited
    /// The server's TLS certificate failed verification (untrusted issuer, wrong host name,
    /// expired). A configuration problem, so never retried.
    certificate_rejected,
};

const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), error_category()};
}

/// One diagnostic from the server, whatever shape it came in (PROTOCOL.md §2).
struct server_error {
    std::string code;        ///< empty when the server gave a plain string
    std::string message;
    std::string suggestion;
    std::string error_uid;
};

/// Collects the server's diagnostics from every error body shape the Lens API uses:
/// `{"errors": [{code, message, suggestion, error_uid}]}`, `{"errors": ["text"]}`,
/// `{"detail": "text"}`, `{"detail": [{"msg": "text", "type": ...}]}` (FastAPI validation),
/// `{"is_valid": false, "error_messages": [...]}` and `{"message": "text"}`, in that order,
/// dropping exact repeats. Non-string values are kept as their JSON text. `error_messages`
/// beside `is_valid: true` is ignored. Pass the WebSocket reply's `event_data` for enveloped
/// replies. Any other body (null, an array, a number...) yields no diagnostics; never throws
/// on odd JSON.
std::vector<server_error> parse_server_errors(const boost::json::value& body);

/// True when a (2xx) body still reports a failure: `errors` present and non-empty,
/// or `is_valid` exactly `false`.
bool body_reports_failure(const boost::json::value& body);

/// The exception lens throws. `code()` is the condition; the rest is diagnostics.
class error : public boost::system::system_error {
public:
    error(boost::system::error_code ec, std::string operation, std::string detail = {},
          unsigned http_status = 0, std::vector<server_error> server_errors = {});

    /// The operation that failed, e.g. "sessions/create" or "session.validate".
    const std::string& operation() const noexcept { return operation_; }
    /// The HTTP status of the reply, 0 when there was none.
    unsigned http_status() const noexcept { return http_status_; }
    /// The server's own error codes and messages, in order.
    const std::vector<server_error>& server_errors() const noexcept { return server_errors_; }

    /// The message described at the top of this header (without system_error's " [lens:N]").
    const char* what() const noexcept override { return what_.c_str(); }

private:
    std::string what_;
    std::string operation_;
    unsigned http_status_;
    std::vector<server_error> server_errors_;
};

/// Throws `lens::error` for `ec` with a message naming `operation`.
[[noreturn]] void throw_error(boost::system::error_code ec, std::string operation,
                              std::string detail = {});

} // namespace lens

template <>
struct boost::system::is_error_code_enum<lens::errc> : std::true_type {};
