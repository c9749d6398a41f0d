/// \file
/// lens/error.hpp — the error model of lens.
///
/// Every failure is a `boost::system::error_code` of `lens::error_category()`
/// (or an Asio/Beast/SSL code passed through), carried in a `lens::error`
/// exception. The exception's message always names the operation and the
/// cause: "sessions/create: 401 unauthorized: Invalid API key".
///
/// The message rule, in full:
///
///     what() = operation ": " [status " " reason ": "] cause
///     cause  = detail ": " said      when both are present
///            | detail | said        when only one is
///            | code().message()     when neither is
///     said   = each server error's message (its code when the message is empty), joined by "; ",
///              then " (N more)" when N diagnostics were left out
///
/// `status` is the HTTP status (omitted when 0) and `reason` its lower-case reason phrase
/// (omitted for statuses lens does not name). Examples:
///
///     sessions/create: 401 unauthorized: Invalid API key
///     sessions/create: 200 ok: Failed to allocate lens runner - try stopping an older session!
///     model.query: the server timed out answering the query
///     files/upload: 400 bad request: bad row 1; bad row 2; ...; bad row 32 (79968 more)
///
/// Server diagnostics are bounded (see `max_server_errors` and its siblings below): a broken
/// or hostile server can send megabytes of them, and neither reading them nor the message
/// may grow with the body.
///
/// Nothing here ever sees the API key; callers must not put it in `detail`.
#pragma once

#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <cstddef>
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
    body_too_large,         ///< a reply over `config::max_reply_size` (`max_body_size` for downloads) or its memory budget, a frame over `session_options::max_message_size`
    invalid_argument,       ///< rejected client-side before sending (unknown file extension...)
    query_timed_out,        ///< the server's "Response timed out for query" reply to model.query
    session_gone,           ///< the session no longer exists (error frame "Unknown session id", or destroy())
    protocol_error,         ///< a frame or event that violates the protocol
    limit_exceeded,         ///< an SSE line or event over its size limit; a session request beyond `session_options::max_pending`
    not_event_stream,       ///< a consumer reply whose content type is not text/event-stream
    closed,                 ///< the object was closed or destroyed while the request waited
    /// The server's TLS certificate failed verification (untrusted issuer, wrong host name,
    /// expired). A configuration problem, so never retried.
    certificate_rejected,
};

/// The category of lens::errc codes (name "lens"); its messages describe each condition.
const boost::system::error_category& error_category() noexcept;

/// Makes `lens::errc` values usable as error codes (found by argument-dependent lookup):
/// `ec == lens::errc::timeout` works for any `boost::system::error_code`.
inline boost::system::error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), error_category()};
}

/// At most this many diagnostics are kept: the first ones, in the order the server sent them.
inline constexpr std::size_t max_server_errors = 32;
/// Only the first this-many items of each array (`errors`, `detail`, `error_messages`) are
/// examined; the rest are counted as left out without being read, so a body of any length
/// costs a bounded amount of work.
inline constexpr std::size_t max_examined_server_errors = 1024;
/// Each field of a diagnostic is at most this many bytes; a longer one is cut (at a UTF-8
/// character boundary) and ends in "...". A non-string value's JSON text is cut the same way,
/// and is never serialised further than the cut.
inline constexpr std::size_t max_server_error_field = 1024;
/// `error::what()` is at most `operation().size()` plus this many bytes. Diagnostics that do
/// not fit are left out and counted in the message's " (N more)"; a `detail` too long for it
/// is cut and ends in "...".
inline constexpr std::size_t max_error_message = 4096;

/// One diagnostic from the server, whatever shape it came in (docs/protocol.md §2.3).
struct server_error {
    std::string code;        ///< empty when the server gave a plain string
    std::string message;     ///< the diagnostic's text (a plain string error is all message)
    std::string suggestion;  ///< what the server suggests doing, when it says
    std::string error_uid;   ///< the server's id of this occurrence, for support requests
    /// How many further diagnostics the server sent that were left out after this one; set on
    /// the last of a list cut short. Items past `max_examined_server_errors` are counted
    /// unread, so repeats among them count too: it is an upper bound.
    std::size_t omitted_after = 0;
};

/// Collects the server's diagnostics from every error body shape the Lens API uses:
/// `{"errors": [{code, message, suggestion, error_uid}]}`, `{"errors": ["text"]}`,
/// `{"detail": "text"}`, `{"detail": [{"msg": "text", "type": ...}]}` (FastAPI validation),
/// `{"is_valid": false, "error_messages": [...]}` and `{"message": "text"}`, in that order,
/// dropping exact repeats (same code and message). Non-string values are kept as their JSON
/// text. `error_messages` beside `is_valid: true` is ignored. Pass the WebSocket reply's
/// `event_data` for enveloped replies. Any other body (null, an array, a number...) yields no
/// diagnostics; never throws on odd JSON.
///
/// Bounded whatever the body: at most `max_server_errors` diagnostics with fields of at most
/// `max_server_error_field` bytes, read from at most `max_examined_server_errors` items per
/// array; what was left out is counted in the last diagnostic's `omitted_after`.
std::vector<server_error> parse_server_errors(const boost::json::value& body);

/// True when a (2xx) body still reports a failure: `errors` present and non-empty,
/// or `is_valid` exactly `false`.
bool body_reports_failure(const boost::json::value& body);

/// The exception lens throws. `code()` is the condition; the rest is diagnostics.
class error : public boost::system::system_error {
public:
    /// `server_errors` is held to the bounds of `parse_server_errors`, however it was built:
    /// the first `max_server_errors`, fields cut, the rest counted on the last one.
    error(boost::system::error_code ec, std::string operation, std::string detail = {},
          unsigned http_status = 0, std::vector<server_error> server_errors = {});

    /// The operation that failed, e.g. "sessions/create" or "session.validate".
    const std::string& operation() const noexcept { return operation_; }
    /// The HTTP status of the reply, 0 when there was none.
    unsigned http_status() const noexcept { return http_status_; }
    /// The server's own error codes and messages, in order (at most `max_server_errors`).
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

/// \cond
template <>
struct boost::system::is_error_code_enum<lens::errc> : std::true_type {};
/// \endcond
