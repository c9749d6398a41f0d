/// \file
/// lens/logger.hpp — the logging hook: what lens does about failures, as it does it.
///
/// Reconnects, retries, dead peers, rate limiting, inbox overflow and stream resumption
/// are otherwise visible only by polling counters (`client::stats()`,
/// `session::stats()`, `event_stream::statistics()`). A `logger` set in
/// `config::log` receives one `log_record` per such event from the client, every
/// session and every event stream made from that configuration:
///
///     lens::config cfg = lens::config::from_environment();
///     cfg.log = lens::logger([](const lens::log_record& r) { std::clog << r.message << '\n'; },
///                            lens::log_level::info);
///
/// Off by default. When off (no sink, or a level below the minimum) an event costs one
/// comparison: no record is built, nothing is formatted or allocated.
///
/// Secrets: every text in a record (reason, target, event id, message) has passed
/// through the API key's redactor; the key never reaches the sink, even when the
/// server quotes it in an error body, a close reason or an event id.
///
/// The sink runs synchronously on the thread of the object that logs (its
/// executor's), in the middle of lens's own work: it should be quick and must not
/// throw (an exception it throws is swallowed). The record and its strings are valid
/// only during the call. Each client, session and stream holds a copy of the logger
/// (so of what the sink captures) and may call it until its work on the executor is
/// over, which can be after the object itself is destroyed.
///
/// Events (stable names; `source` says which part of lens emitted it):
///
/// | event            | level       | source                | when                                                       |
/// |------------------|-------------|-----------------------|------------------------------------------------------------|
/// | `connect`        | info        | session, events       | a connection is up (`reason` "reconnected" after the first) |
/// | `connect`        | debug       | rest                  | a new keep-alive connection was opened                     |
/// | `reconnect`      | warning     | session, events       | an attempt failed or a connection was lost: `reason`, `code`, `http_status`, next attempt in `delay` |
/// | `retry`          | warning     | rest                  | a REST attempt failed and is retried after `delay`         |
/// | `give_up`        | error       | rest                  | a transient failure ends a REST call (attempts or deadline exhausted) |
/// | `rate_limited`   | debug       | rest, session, events | a 429; the server's `Retry-After`, before clamping, in `server_delay` |
/// | `dead_peer`      | warning     | session, events       | a silent connection was dropped (`dead_peer_timeout`, `idle_timeout`) |
/// | `inbox_overflow` | warning     | session               | unsolicited frames were dropped; once until the inbox is drained empty, `count` the total so far |
/// | `stream_resume`  | info        | events                | a stream connected sending `Last-Event-ID` (`last_event_id`) |
/// | `disconnect`     | info, error | session, events       | stopped for good: closed, destroyed, ended (info) or failed (error) |
///
/// A final REST failure that is not transient (401, 404...) is the caller's exception
/// and no record. Counters: `client::stats()` (REST), `session::stats()`,
/// `event_stream::statistics()`.
#pragma once

#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace lens {

/// Severity of a `log_record`, lowest first.
enum class log_level { debug, info, warning, error };

/// "debug", "info", "warning" or "error".
std::string_view to_string(log_level level) noexcept;

/// One event, handed to the sink. Fields that do not apply are empty (0, nullopt, "").
struct log_record {
    /// How serious the event is; the logger's minimum level filters on it.
    log_level level = log_level::info;
    /// The stable name of the event (see the table in lens/logger.hpp).
    std::string_view event;
    /// Which part of lens: "rest", "session" or "events".
    std::string_view source;
    /// REST: the operation ("sessions/create"); empty for sessions and streams.
    std::string_view operation;
    /// What the record concerns: the session's control channel (host and path) or the
    /// stream's session id; empty for REST.
    std::string_view target;
    /// The failure's lens condition (lens::errc), when there is one.
    boost::system::error_code code;
    /// The HTTP status behind the failure (a REST reply, a refused upgrade or consumer request).
    unsigned http_status = 0;
    /// Until the next attempt (retry, reconnect).
    std::optional<std::chrono::milliseconds> delay;
    /// The server's own hint (`Retry-After`, SSE `retry:`) as received, before clamping.
    std::optional<std::chrono::milliseconds> server_delay;
    /// The attempt that failed (REST: of this call; session, events: failures in a row).
    unsigned attempt = 0;
    /// inbox_overflow: frames dropped so far by this session.
    std::size_t count = 0;
    /// stream_resume: the `Last-Event-ID` sent.
    std::string_view last_event_id;
    /// Why: the failure's message (redacted).
    std::string_view reason;
    /// The whole record as one line (redacted), e.g.
    /// "lens warning retry sessions/create: HTTP 429, rate limited, attempt 1, next in 1000 ms - ...".
    std::string_view message;
};

/// The line `log_record::message` holds: level, event, operation or target, then the
/// fields that are set. What lens passes to the sink is already rendered; this is for
/// sinks that build records of their own, and for tests.
std::string format(const log_record& record);

/// The sink and its minimum level, carried in `config::log`. A default-constructed
/// logger is off.
class logger {
public:
    /// What receives the records: called synchronously, must be quick and should not throw.
    using sink_type = std::function<void(const log_record&)>;

    /// Off: nothing is ever built or called.
    logger() noexcept = default;
    /// Calls `sink` for every record of `min_level` or above (an empty sink: off).
    explicit logger(sink_type sink, log_level min_level = log_level::info);

    /// True when a record of `level` would reach the sink. The one test lens makes
    /// before building a record.
    bool enabled(log_level level) const noexcept { return static_cast<int>(level) >= threshold_; }
    /// The minimum level (meaningless when off).
    log_level min_level() const noexcept;
    /// Hands `record` to the sink when its level is enabled; an exception the sink throws
    /// is swallowed (logging never fails an operation).
    void write(const log_record& record) const noexcept;

private:
    static constexpr int off = 1000;
    sink_type sink_;
    int threshold_ = off;
};

} // namespace lens
