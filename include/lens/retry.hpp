/// \file
/// lens/retry.hpp — the one retry decision of lens, and the predicates behind it
/// (docs/protocol.md §2.4).
///
/// REST calls, WebSocket (re)connects and SSE (re)connects all ask the same pure
/// function what to do after a failed attempt: "retry at T" or "give up with code C".
/// It sees the failure's code, whether the request may have reached the server,
/// the number of attempts made, the current time and the deadline, and nothing else,
/// so its whole behaviour is table-tested without clocks or sockets.
///
/// The rules, in full:
/// - `is_retryable(code)`: timeouts, failed or lost connections, 429 and 5xx are
///   transient; everything else (401/403, 404, other 4xx, a rejected certificate, an
///   invalid reply, an over-limit body, a closed object...) is final.
/// - A request that may already have reached the server (`request_sent`) and is not
///   idempotent is retried only when the server surely did not act on it: a 429
///   (refused unprocessed) or a connection that failed before anything was sent.
/// - The delay is the backoff schedule's (exponential, capped, jittered) or the
///   server's hint (`Retry-After`, SSE `retry:`) when that is longer; the hint is
///   clamped to `backoff_policy::max_server_delay`, so no server can stall a client
///   for years or, with a tiny or overflowing value, make it storm.
/// - Time arithmetic saturates (see lens/detail/deadline.hpp); a retry that would start at
///   or after the deadline gives up with the failure's own code.
/// - `max_attempts` counts attempts including the first; 0 means unlimited. (Not the
///   same count as `backoff_policy::max_attempts` of the stateful `lens::backoff`, which
///   counts delays handed out, i.e. retries.)
#pragma once

#include <lens/backoff.hpp>
#include <lens/error.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <optional>
#include <string_view>

namespace lens {

/// The lens condition for an HTTP status, one table for REST replies, the WebSocket
/// upgrade and the SSE consumer:
///
/// | status            | condition           | retried                         |
/// |-------------------|---------------------|---------------------------------|
/// | 401, 403          | errc::unauthorized  | never                           |
/// | 404               | errc::not_found     | never                           |
/// | 408               | errc::timeout       | yes, idempotent requests only   |
/// | 429               | errc::rate_limited  | yes, every request              |
/// | 500–599           | errc::server_error  | yes, idempotent requests only   |
/// | other 4xx, 1xx/3xx| errc::http_error    | never                           |
///
/// A 2xx status has no condition (a default-constructed code).
boost::system::error_code status_condition(unsigned http_status) noexcept;

/// True when a new attempt of the same request may succeed: errc::timeout,
/// connection_failed, connection_lost, rate_limited and server_error, and the raw
/// Asio/Beast transport errors that lens reports as those. Users can apply the same
/// rule to a `lens::error` they caught: `lens::is_retryable(e.code())`.
bool is_retryable(const boost::system::error_code& ec) noexcept;

/// True when retrying `ec` is safe even for a request that changes state and may have
/// reached the server: the server surely did not act on it (errc::rate_limited, or
/// errc::connection_failed, which lens reports only when nothing was sent).
bool is_surely_unprocessed(const boost::system::error_code& ec) noexcept;

/// One failed attempt, as the retry decision sees it.
struct attempt_failure {
    /// What went wrong: a lens::errc (from lens::status_condition for HTTP statuses) or a
    /// transport error.
    boost::system::error_code code;
    /// The request may have reached the server (it was written, at least in part).
    bool request_sent = false;
    /// The server's own delay hint (`Retry-After`, SSE `retry:`), as received.
    std::optional<std::chrono::milliseconds> server_delay;
};

/// "retry at `at`" or "give up with `code`".
struct retry_decision {
    bool retry = false;                          ///< true: attempt again at `at`
    std::chrono::steady_clock::time_point at{};  ///< when to start the next attempt (retry only)
    boost::system::error_code code;              ///< the failure to report (give up only)

    /// A decision to attempt again at `t`.
    static retry_decision retry_at(std::chrono::steady_clock::time_point t) { return {true, t, {}}; }
    /// A decision to stop and report `c`.
    static retry_decision give_up(boost::system::error_code c) { return {false, {}, c}; }
};

/// What the schedule asks for before attempt `attempts_made + 1`. Pure: the jitter
/// sample `u` in [0, 1) is an argument (`backoff_policy::delay` documents its use).
retry_decision decide_retry(const backoff_policy& policy, unsigned max_attempts, const attempt_failure& failure,
                            bool idempotent, unsigned attempts_made, std::chrono::steady_clock::time_point now,
                            std::chrono::steady_clock::time_point deadline, double u) noexcept;

/// A `Retry-After` value in delta-seconds ("120"), saturating for absurd values (it is
/// clamped later by the decision). nullopt for anything else: the HTTP-date form is
/// rare on APIs and falls back to the backoff schedule.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value) noexcept;

/// The server's delay hint clamped to [0, policy.max_server_delay].
std::chrono::milliseconds clamp_server_delay(const backoff_policy& policy, std::chrono::milliseconds hint) noexcept;

} // namespace lens
