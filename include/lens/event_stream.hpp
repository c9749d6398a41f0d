/// \file
/// lens/event_stream.hpp — a session's SSE consumer as an async generator of
/// typed events, resumable without loss (docs/protocol.md §4).
///
///     lens::event_stream stream(executor, cfg, session_id);
///     co_await stream.connect();                // optional: before input_stream.set
///     while (auto ev = co_await stream.next())  // nullopt after sse.stream.end
///         handle(*ev);
///
/// How it works. One reader coroutine per stream owns the HTTP connection: it
/// reads the body and hands the bytes to a sans-I/O state machine
/// (src/detail/stream_fsm.hpp) that parses them (lens::sse::parser), decodes and
/// scrubs the events, queues them, and decides every step: connect, read, pause,
/// wait, give up. `next()` takes from the queue and never touches the socket, so
/// it composes with timeouts and cancellation:
///
///     auto r = co_await (stream.next() || timer.async_wait(use_awaitable));
///
/// is safe: when the timer wins, `next()` gives up without taking an event (it
/// checks its cancellation state before taking one), so nothing is lost and the
/// connection is unaffected. One timer per stream serves the reconnection delay
/// and the idle watchdog; close() (and the destructor) stops the reader, its
/// timer and its connection — nothing keeps running on its own afterwards.
///
/// Backpressure (bounded buffering). The reader stops reading the socket while
/// the queue holds `queue_capacity` events or `queue_max_bytes` payload bytes,
/// and reads again as soon as `next()` brings it below both; TCP flow control
/// then holds the server. Bytes are parsed at most `parse_slice` at a time and
/// the queue is checked between slices, so at most `queue_capacity - 1` events
/// plus the events completed in one slice are queued, and at most
/// `queue_max_bytes - 1` bytes plus those events' bytes (one event of up to
/// `limits.max_event` at worst). Besides the queue, the stream buffers one socket
/// read (`read_buffer_size`) not yet parsed and the parser's unfinished line and
/// event (bounded by `limits`). `statistics()` reports the peaks.
///
/// Resilience.
/// - Network errors, a body that ends without `sse.stream.end`, and the idle
///   watchdog (a read pending for `idle_timeout` with no bytes at all —
///   heartbeats count; a reader paused by backpressure is not idle) make the
///   reader reconnect, sending `Last-Event-ID` with the id of the last event it
///   received. Every event is delivered once: an event cut in half by a
///   connection loss is discarded by the parser and resent by the server after
///   the id.
/// - Every reconnection is decided by lens::decide_retry (lens/retry.hpp) with
///   the `reconnect` policy: an exponential, capped, jittered delay, or the
///   server's hint when longer — the SSE `retry:` field and a refusal's
///   `Retry-After`, both clamped to `reconnect.max_server_delay`, so no server
///   can make the stream storm or stall.
/// - The schedule starts over only after a connection that stayed up
///   `reconnect.reset_after` (measured from the accepted reply to its end).
///   Events do not reset it: a server that sends one event and closes meets
///   ever longer delays, up to `reconnect.max`.
/// - Statuses follow lens::status_condition: 401 and 403 fail at once
///   (errc::unauthorized), 404 (errc::not_found) and every other non-200 status
///   but 408 and 429 (errc::http_error) too; 408, 429 and 5xx are retried. A 200
///   that is not `text/event-stream` fails (errc::not_event_stream). There is no
///   limit on the body's size; the parser's line and event limits apply
///   (errc::limit_exceeded, fatal: reconnecting would meet the same event again).
/// - Giving up: before the first accepted reply the stream makes at most
///   `config::retry.max_attempts` attempts; after it, at most
///   `reconnect.max_attempts` attempts in a row without a stable connection (the
///   one that dropped included; 0: never give up). Then the stream fails with the
///   last failure's code.
/// A failure is thrown from `next()` (as lens::error naming "events") once every
/// event received before it has been delivered.
///
/// Secrets. The API key is sent in the Authorization header only. It is removed
/// from everything the server sends before lens hands it on: each event's id,
/// raw JSON (members named `api_key` dropped, the key replaced at any depth and
/// in any escape form), typed fields and malformed text, and the refusal's
/// diagnostics and errors. No error, log or statistic holds it. (The id sent back
/// in `Last-Event-ID` is the server's own, as received, to the server it came from.)
///
/// Header values. `last_event_id` holding CR, LF or another control character is
/// refused by the constructor (lens::error, errc::invalid_argument) before
/// anything is sent — header injection is impossible by construction. An id the
/// server sends that cannot be sent back fails the stream (errc::protocol_error)
/// when a reconnection would need it.
///
/// Moved-from streams: `next()` returns nullopt, `connect()` throws
/// errc::closed, `close()` does nothing, the accessors return empty values.
///
/// Threading: like Asio I/O objects, a stream is used from one thread (its
/// executor's), and one `next()` or `connect()` at a time.
#pragma once

#include <lens/backoff.hpp>
#include <lens/completion_token.hpp>
#include <lens/config.hpp>
#include <lens/detail/async_op.hpp>
#include <lens/diagnostics.hpp>
#include <lens/events.hpp>
#include <lens/sse/parser.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

namespace lens {

namespace detail { class endpoint; }

/// How an event stream buffers, watches for silence and reconnects; the defaults suit
/// the Lens API's 10 s heartbeats.
struct event_stream_options {
    /// Not an aggregate on purpose: g++ 12 destroys a braced aggregate temporary twice
    /// in a co_await expression. Start from a named value and set members.
    event_stream_options() = default;

    /// Resume after this event id (sent as `Last-Event-ID` on the first connection).
    std::string last_event_id;
    /// No bytes for this long means a dead stream: reconnect. Three heartbeat
    /// intervals of the server (10 s assumed); 0 disables the watchdog.
    std::chrono::milliseconds idle_timeout = std::chrono::seconds(30);
    /// Events decoded ahead of the consumer before the reader stops reading.
    std::size_t queue_capacity = 64;
    /// Payload bytes (data and id) decoded ahead of the consumer before the reader
    /// stops reading, whatever the number of events.
    std::size_t queue_max_bytes = std::size_t(4) << 20;
    /// Bytes per socket read.
    std::size_t read_buffer_size = 16 * 1024;
    /// Bytes fed to the parser between two checks of the queue.
    std::size_t parse_slice = 1024;
    /// Spacing of reconnection attempts, when the schedule starts over
    /// (`reset_after`), when to give up (`max_attempts`, 0: never) and the longest
    /// server hint honoured (`max_server_delay`). See "Resilience" above.
    backoff_policy reconnect{std::chrono::milliseconds(250), std::chrono::seconds(30), 2.0, 0.5,
                             std::chrono::seconds(30), 0};
    /// Line and event size limits of the parser.
    sse::limits limits{};
};

/// Counters, for tests and monitoring.
struct event_stream_stats {
    std::size_t attempts = 0;             ///< connection attempts
    std::size_t connections = 0;          ///< responses accepted (200, text/event-stream)
    std::size_t reconnects = 0;           ///< connections after the first
    std::size_t idle_timeouts = 0;        ///< connections dropped by the idle watchdog
    std::size_t retried_statuses = 0;     ///< 408 / 429 / 5xx answers retried
    std::uint64_t bytes_received = 0;     ///< body bytes
    std::size_t reads = 0;                ///< reads of the body (each at most `read_buffer_size` bytes)
    std::size_t events_received = 0;      ///< events decoded
    std::size_t events_delivered = 0;     ///< events returned by next()
    std::size_t half_events_discarded = 0;///< connections that ended inside an event
    std::size_t malformed = 0;            ///< non-JSON payloads delivered (as malformed_event)
    std::size_t queued = 0;               ///< events waiting in the queue now
    std::size_t max_queued = 0;           ///< the most that ever waited
    std::size_t max_queued_bytes = 0;     ///< the most payload bytes (data and id) that ever waited
    std::size_t reader_pauses = 0;        ///< times the reader stopped reading for a full queue
};

/// A session's SSE consumer: an async generator of typed events (`next()`) that
/// reconnects and resumes without loss (see the file description). Move-only.
class event_stream {
public:
    /// Prepares the consumer of `session_id` at `cfg.endpoint`; connects on the
    /// first `connect()` or `next()`. Throws lens::error (errc::invalid_argument)
    /// for a bad configuration or an `opts.last_event_id` that is not a valid
    /// header value; nothing is sent then.
    event_stream(boost::asio::any_io_executor executor, config cfg, std::string session_id,
                 event_stream_options opts);
    /// \overload
    /// With default options (an overload, not a default argument: see session.hpp).
    event_stream(boost::asio::any_io_executor executor, config cfg, std::string session_id);
    /// Used by `client::events`: shares the client's endpoint (TLS context, header checks,
    /// redaction).
    event_stream(boost::asio::any_io_executor executor, std::shared_ptr<const detail::endpoint> ep,
                 std::string session_id, event_stream_options opts);

    /// Takes over `other`'s reader, queue and connection; `other` becomes moved-from.
    event_stream(event_stream&& other) noexcept;
    /// Closes this stream, then takes over `other`'s; `other` becomes moved-from.
    event_stream& operator=(event_stream&& other) noexcept;
    /// Closes the stream (see close()).
    ~event_stream();

    /// Starts the reader if needed and waits until a response has been accepted
    /// (or the stream ended or failed, which next() then reports). Throws
    /// lens::error on a failure that is final. Takes a completion token (default:
    /// `co_await stream.connect()`) and optionally a `lens::diagnostics&` before it: see
    /// lens/completion_token.hpp; through a token it runs on the stream's executor.
    template <completion_token_for<void> Token = default_token>
    auto connect(Token&& token = {})
    {
        return run<void>(std::forward<Token>(token), [&] { return connect_task(impl_); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<void> Token = default_token>
    auto connect(diagnostics& diag, Token&& token = {})
    {
        return run<void>(std::forward<Token>(token), diag, [&] { return connect_task(impl_); });
    }

    /// The next event; nullopt once the stream is over (after `sse.stream.end`,
    /// which is delivered, or after close()). Throws lens::error on a final failure,
    /// after the events received before it; cancellation throws
    /// `boost::asio::error::operation_aborted` and takes no event (through a token: completes
    /// with it, after a terminal cancellation of the handler's slot).
    template <completion_token_for<std::optional<session_event>> Token = default_token>
    auto next(Token&& token = {})
    {
        return run<std::optional<session_event>>(std::forward<Token>(token), [&] { return next_task(impl_); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<std::optional<session_event>> Token = default_token>
    auto next(diagnostics& diag, Token&& token = {})
    {
        return run<std::optional<session_event>>(std::forward<Token>(token), diag, [&] { return next_task(impl_); });
    }

    /// Stops reading and closes the connection. Queued events can still be taken;
    /// then next() returns nullopt.
    void close() noexcept;

    /// The id of the last event next() returned (or the one the stream resumed from),
    /// scrubbed of the API key.
    const std::string& last_event_id() const noexcept;
    /// True once `sse.stream.end` was received.
    bool ended() const noexcept;
    /// The session whose events this stream consumes (empty when moved-from).
    const std::string& session_id() const noexcept;
    /// A snapshot of the counters (all zero when moved-from).
    event_stream_stats statistics() const noexcept;

    struct impl;
private:
    // The coroutines behind connect() and next() (src/event_stream.cpp). They hold the
    // stream's state, never `this`: a token may run them after the call returns.
    static task<void> connect_task(std::shared_ptr<impl> self);
    static task<std::optional<session_event>> next_task(std::shared_ptr<impl> self);

    /// The executor the token path spawns on; empty for a moved-from stream.
    boost::asio::any_io_executor token_executor() const noexcept;
    template <class T, class Token, class Make>
    auto run(Token&& token, Make&& make)
    {
        return detail::async_run<T>(
            std::forward<Token>(token), [this] { return token_executor(); }, std::forward<Make>(make));
    }
    template <class T, class Token, class Make>
    auto run(Token&& token, diagnostics& diag, Make&& make)
    {
        return detail::async_run<T>(
            std::forward<Token>(token), diag, [this] { return token_executor(); }, std::forward<Make>(make));
    }

    std::shared_ptr<impl> impl_;
};

} // namespace lens
