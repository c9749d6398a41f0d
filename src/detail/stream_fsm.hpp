// The event stream's sans-I/O core: every rule of lens::event_stream that involves
// time, counting or server data, with no socket, no timer and no clock read.
//
// The driver (src/event_stream.cpp) performs I/O and reports what happened, with the
// current time; each report returns the reader's next step. The FSM owns:
//
// - the SSE parser and the queue of decoded events (backpressure: reading pauses while
//   the queue holds `queue_capacity` events or `queue_max_bytes` bytes, and resumes as
//   soon as it holds less of both);
// - redaction: every event's id, raw JSON, typed fields and malformed text, and the
//   diagnostics of a refusal, are scrubbed of the API key before they are queued;
// - reconnect pacing: every failed attempt goes through lens::decide_retry with the
//   `reconnect` policy, server hints (`retry:`, `Retry-After`) clamped to
//   `max_server_delay`; statuses are mapped by lens::status_condition;
// - the backoff schedule's reset: only a connection that stayed up `reset_after`
//   starts the schedule over, so a server that sends one event and closes is met with
//   ever longer delays, never a storm;
// - resume: the `Last-Event-ID` of each request;
// - the idle watchdog: a read pending for `idle_timeout` with no bytes means a dead
//   connection (a reader paused for backpressure has no read pending: never idle);
// - final failures and their diagnostics, and the statistics.
//
// Time flows in only through the `now` arguments; the one timer the driver needs is
// armed for `wake_at()` and reported with `on_timer()`.
#pragma once

#include "detail/redactor.hpp"

#include <lens/backoff.hpp>
#include <lens/config.hpp>
#include <lens/error.hpp>
#include <lens/event_stream.hpp>
#include <lens/events.hpp>
#include <lens/sse/parser.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lens::detail {

/// A reconnection the FSM decided: what the driver logs as `reconnect`. Recorded only
/// when the configuration's logger is on (`config::log`).
struct reconnect_note {
    boost::system::error_code code;      ///< why the attempt or connection failed
    std::string reason;                  ///< the whole failure as text, free of the API key
    unsigned http_status = 0;            ///< a refusal's status
    /// The server's hint as received (the longer of `retry:` and `Retry-After`), before clamping.
    std::optional<std::chrono::milliseconds> server_delay;
    std::chrono::milliseconds delay{0};  ///< until the next attempt, as decided (hint clamped)
    unsigned attempt = 0;                ///< attempts in a row without a stable connection
};

/// A final failure of the stream, with what the error message needs.
struct stream_failure {
    boost::system::error_code code;
    std::string detail;                  ///< already free of the API key
    unsigned http_status = 0;
    std::vector<server_error> said;      ///< the refusal's diagnostics, scrubbed
};

class stream_fsm {
public:
    using clock = std::chrono::steady_clock;
    using time_point = clock::time_point;

    /// The reader's next step.
    enum class step {
        connect, ///< open a connection and send the request (`last_event_id()`, deadlines below)
        read,    ///< read body bytes, report them with `received()`
        wait,    ///< nothing to do until woken (the timer at `wake_at()`, or a `take()`), then `resume()`
        stop,    ///< the stream is over: ended, closed or failed; the reader returns
    };

    /// What a timer expiry at `wake_at()` asks of the driver.
    enum class timer_step {
        none,            ///< nothing (spurious or stale expiry); re-arm for `wake_at()`
        drop_connection, ///< the idle watchdog fired: close the connection; its read then fails
        wake_reader,     ///< the reconnection delay is over: wake the reader, which calls `resume()`
    };

    enum class phase { idle, connecting, streaming, waiting, ended, closed, failed };

    /// `cfg` gives the per-attempt deadlines (`timeout`, `connect_timeout`) and the
    /// attempts before the first connection (`retry.max_attempts`); `secrets` scrubs
    /// server data; `random` is the jitter source (lens::backoff's default when empty).
    stream_fsm(const event_stream_options& opts, const config& cfg, redactor secrets,
               backoff::random_source random = {});

    // ---- the reader reports; each returns the reader's next step ----------------

    /// The first step (connect), or stop after close().
    step start(time_point now);
    /// Connecting, sending the request or reading the reply head failed (`code` is a
    /// lens condition: timeout, connection_failed, certificate_rejected...).
    step connect_failed(boost::system::error_code code, std::string detail, time_point now);
    /// A reply head with status 200. Not `text/event-stream`: a final failure.
    step accepted(std::string_view content_type, time_point now);
    /// Any other status, with its `Retry-After` header and (bounded) body.
    step refused(unsigned status, std::string_view retry_after, std::string_view body, time_point now);
    /// Body bytes of the current connection (possibly none: framing only). What does
    /// not fit in the queue is kept and parsed as the consumer makes room.
    step received(std::string_view bytes, time_point now);
    /// The connection's body ended or broke (`code` empty: it ended cleanly, without
    /// `sse.stream.end`). Taken into account after any bytes still kept.
    step connection_ended(boost::system::error_code code, std::string detail, time_point now);
    /// The reader was woken after a `wait`.
    step resume(time_point now);
    /// The driver could not go on (an unexpected exception): a final failure.
    void abort(boost::system::error_code code, std::string detail);

    // ---- the timer ------------------------------------------------------------

    /// When the driver must call `on_timer()`: the end of the reconnection delay, or the
    /// idle deadline of the pending read; `time_point::max()` when nothing is timed.
    time_point wake_at() const noexcept;
    timer_step on_timer(time_point now);

    // ---- the consumer -----------------------------------------------------------

    /// The oldest queued event, if any.
    std::optional<session_event> take();
    /// True when the reader waits for room and `take()` drained the queue to half its
    /// bounds (events and bytes): wake it.
    bool reader_may_continue() const noexcept;
    /// Stops everything; queued events can still be taken.
    void close() noexcept;

    // ---- state ----------------------------------------------------------------

    phase current_phase() const noexcept { return phase_; }
    /// Ended, closed or failed: no more events will be queued.
    bool over() const noexcept { return phase_ == phase::ended || phase_ == phase::closed || phase_ == phase::failed; }
    bool ended() const noexcept { return phase_ == phase::ended; }
    bool closed() const noexcept { return phase_ == phase::closed; }
    /// A reply was accepted at least once.
    bool connected_once() const noexcept { return connected_once_; }
    /// Set in phase failed.
    const stream_failure* failure() const noexcept { return phase_ == phase::failed ? &failure_ : nullptr; }

    /// What to send as `Last-Event-ID` on the attempt `connect` asked for ("" none).
    const std::string& last_event_id() const noexcept { return parser_.last_event_id(); }
    /// Deadlines of that attempt: TCP (and TLS) establishment, and the whole exchange up
    /// to the reply head.
    time_point connect_deadline() const noexcept { return connect_deadline_; }
    time_point head_deadline() const noexcept { return head_deadline_; }

    /// The (scrubbed) id of the last event taken, or the one the stream resumed from.
    const std::string& delivered_id() const noexcept { return delivered_id_; }
    /// Counters; `queued` is current.
    event_stream_stats statistics() const noexcept;
    /// The reconnection decided since the last call, once (none when the logger is off).
    std::optional<reconnect_note> take_reconnect_note() noexcept { return std::exchange(note_, std::nullopt); }

private:
    /// An event waits in the queue as its text and is decoded when taken, so its JSON
    /// tree is built just before the consumer sees it and freed soon after: one event's
    /// allocations at a time instead of a queue's worth (which cost more in malloc and
    /// free than the parse itself). A possible `sse.stream.end` is decoded on arrival,
    /// because the end stops the reader.
    ///
    /// The texts are copied one after another into `texts_`, not each into a string of
    /// its own: a read queues a few hundred events at once, and as many allocations of
    /// a few hundred bytes, freed one by one as they are taken, ran past glibc's
    /// per-thread cache into its slow paths.
    struct queued_event {
        std::string id;
        std::size_t at;   ///< where the text starts: a position in the stream of `texts_`
        std::size_t size; ///< its length
        std::unique_ptr<session_event> decoded; ///< rare: a pointer keeps the queue's nodes small
        std::size_t bytes;
    };

    step begin_attempt(time_point now);
    step retry_or_fail(boost::system::error_code code, std::optional<std::chrono::milliseconds> server_delay,
                       std::string detail, unsigned status, std::vector<server_error> said, time_point now);
    step fail(boost::system::error_code code, std::string detail, unsigned status = 0,
              std::vector<server_error> said = {});
    step end_connection(time_point now);
    /// Parses kept bytes while the queue has room; then the step that follows.
    step parse_kept(time_point now);
    step start_read(time_point now);
    void on_event(sse::event&& e);
    bool queue_full() const noexcept;

    // settings
    std::chrono::milliseconds idle_timeout_;
    std::size_t queue_capacity_;
    std::size_t queue_max_bytes_;
    std::size_t parse_slice_;
    backoff_policy reconnect_;
    unsigned first_connection_attempts_;
    std::chrono::milliseconds request_timeout_;
    std::chrono::milliseconds connect_timeout_;
    redactor secrets_;
    backoff jitter_; ///< only its random source: the schedule is decide_retry's

    phase phase_ = phase::idle;
    stream_failure failure_;

    // attempts and the schedule
    unsigned attempts_in_run_ = 0; ///< attempts since the last stable connection, this one included
    time_point retry_at_{};
    time_point connect_deadline_{};
    time_point head_deadline_{};
    bool connected_once_ = false;
    time_point connected_at_{};

    // the current connection
    bool read_pending_ = false;
    time_point read_since_{};
    bool idle_dropped_ = false;     ///< the watchdog asked for this connection to be dropped
    bool paused_ = false;           ///< the reader waits for room in the queue
    std::string kept_;              ///< received bytes not parsed yet (the queue filled up)
    std::size_t kept_pos_ = 0;
    struct connection_end {
        boost::system::error_code code;
        std::string detail;
    };
    std::optional<connection_end> pending_end_; ///< reported while bytes were still kept

    sse::parser parser_;
    std::deque<queued_event> queue_;
    std::size_t queued_bytes_ = 0;
    std::string texts_;           ///< the queued events' texts, in order (see queued_event)
    std::size_t texts_base_ = 0;  ///< the position of texts_[0] in the stream of texts
    std::string delivered_id_;
    event_stream_stats stats_;
    bool notes_ = false; ///< the logger is on: keep a reconnect_note for the driver
    std::optional<reconnect_note> note_;
};

} // namespace lens::detail
