// lens/event_stream.hpp — a session's SSE consumer as an async generator of
// typed events, resumable without loss (PROTOCOL.md §4).
//
//     lens::event_stream stream(executor, cfg, session_id);
//     co_await stream.connect();                // optional: before input_stream.set
//     while (auto ev = co_await stream.next())  // nullopt after sse.stream.end
//         handle(*ev);
//
// How it works. One reader coroutine per stream owns the HTTP connection: it
// reads the body, parses it (lens::sse::parser), decodes events and appends
// them to a bounded queue; `next()` takes from the queue. `next()` never
// touches the socket, so it composes with timeouts and cancellation:
//
//     auto r = co_await (stream.next() || timer.async_wait(use_awaitable));
//
// is safe: when the timer wins, `next()` gives up without taking an event (it
// checks its cancellation state before taking one), so nothing is lost and the
// connection is unaffected.
//
// Backpressure (bounded buffering). When `queue_capacity` events wait in the
// queue the reader stops reading the socket until `next()` makes room; TCP flow
// control then holds the server. The reader feeds the parser at most
// `parse_slice` bytes at a time and checks the queue between slices, so at most
// `queue_capacity - 1` + (the events of one slice) are queued, plus one socket
// read (`read_buffer_size`) not yet parsed. `statistics()` reports the peaks.
//
// Resilience.
// - Network errors, a body that ends without `sse.stream.end`, and the idle
//   watchdog (no bytes at all — heartbeats count — for `idle_timeout`) make the
//   reader reconnect after a backoff delay (lens::backoff, at least the
//   server's `retry:` and any `Retry-After`), sending `Last-Event-ID` with the
//   id of the last event it received. Every event is delivered once: an event
//   cut in half by a connection loss is discarded by the parser and resent by
//   the server after the id.
// - The backoff schedule restarts after a connection that delivered an event
//   with a new id or stayed up for `reconnect.reset_after`.
// - 401 and 403 fail at once (errc::unauthorized), 404 fails at once
//   (errc::not_found), other 4xx (but 408 and 429) are errc::http_error; 408,
//   429 and 5xx are retried. A 200 that is not `text/event-stream` fails
//   (errc::not_event_stream). There is no limit on the body's size; the parser's
//   line and event limits apply (errc::limit_exceeded, fatal: reconnecting would
//   meet the same event again).
// - When reconnection attempts run out (`reconnect.max_attempts`, 0: never) the
//   stream fails with the last failure's code.
// A failure is thrown from `next()` (as lens::error naming "events") once every
// event received before it has been delivered. The API key is sent in the
// Authorization header and appears in no error, log or statistic.
//
// Threading: like Asio I/O objects, a stream is used from one thread (its
// executor's), and one `next()` or `connect()` at a time.
#pragma once

#include <lens/backoff.hpp>
#include <lens/config.hpp>
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
    /// Bytes per socket read.
    std::size_t read_buffer_size = 16 * 1024;
    /// Bytes fed to the parser between two checks of the queue.
    std::size_t parse_slice = 1024;
    /// Spacing of reconnection attempts.
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
    std::size_t events_received = 0;      ///< events decoded
    std::size_t events_delivered = 0;     ///< events returned by next()
    std::size_t half_events_discarded = 0;///< connections that ended inside an event
    std::size_t malformed = 0;            ///< non-JSON payloads (delivered as malformed_event)
    std::size_t queued = 0;               ///< events waiting in the queue now
    std::size_t max_queued = 0;           ///< the most that ever waited
    std::size_t max_queued_bytes = 0;     ///< the most payload bytes that ever waited
    std::size_t reader_pauses = 0;        ///< times the reader stopped reading for a full queue
};

class event_stream {
public:
    /// Prepares the consumer of `session_id` at `cfg.endpoint`; connects on the
    /// first `connect()` or `next()`.
    event_stream(boost::asio::any_io_executor executor, config cfg, std::string session_id,
                 event_stream_options opts);
    /// \overload with default options (an overload, not a default argument: see session.hpp).
    event_stream(boost::asio::any_io_executor executor, config cfg, std::string session_id);
    /// Used by `client::events`: shares the client's endpoint (TLS context, header checks,
    /// redaction).
    event_stream(boost::asio::any_io_executor executor, std::shared_ptr<const detail::endpoint> ep,
                 std::string session_id, event_stream_options opts);

    event_stream(event_stream&&) noexcept;
    event_stream& operator=(event_stream&&) noexcept;
    /// Closes the stream (see close()).
    ~event_stream();

    /// Starts the reader if needed and waits until a response has been accepted
    /// (or the stream ended or failed, which next() then reports). Throws
    /// lens::error on a failure that is final.
    boost::asio::awaitable<void> connect();

    /// The next event; nullopt once the stream is over (after `sse.stream.end`,
    /// which is delivered, or after close()). Throws lens::error on a final failure,
    /// after the events received before it; cancellation throws
    /// `boost::asio::error::operation_aborted` and takes no event.
    boost::asio::awaitable<std::optional<session_event>> next();

    /// Stops reading and closes the connection. Queued events can still be taken;
    /// then next() returns nullopt.
    void close() noexcept;

    /// The id of the last event next() returned (or the one the stream resumed from).
    const std::string& last_event_id() const noexcept;
    /// True once `sse.stream.end` was received.
    bool ended() const noexcept;
    const std::string& session_id() const noexcept;
    event_stream_stats statistics() const noexcept;

    struct impl;
private:
    std::shared_ptr<impl> impl_;
};

} // namespace lens
