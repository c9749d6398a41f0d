// The control channel's rules of time and reconnection, as a sans-I/O state machine.
//
// lens::session (src/session.cpp) does the I/O: it connects, reads, writes and keeps
// ONE timer. This class decides everything that depends on time or on the history of
// the connection, and nothing else: it has no sockets, no timers and never reads a
// clock. The driver reports events with the current time (`on_connected(now)`, ...),
// then calls `resume(now)` until it answers `wait_until`, doing what each action
// says; `wait_until` carries the single next time anything is due, which is when the
// driver's timer must call `resume` again (a wake-up that comes early is harmless:
// `resume` answers with the new time). So the rules are unit tested on scripted time
// (tests/unit/channel_fsm_test.cpp), and the session needs one timer instead of one
// per rule.
//
// The rules:
// - Connect attempt: `connect_timeout` per attempt (TCP + TLS + upgrade); past it the
//   attempt is aborted and fails with errc::timeout. Until the first connection, every
//   attempt and every backoff must also end within `connect_timeout` of `start()`
//   (that is `session::open`'s deadline): when it cannot, the channel stops with
//   errc::timeout quoting the last attempt's failure.
// - Dead peer: nothing received (data, ping or pong: any frame counts) for
//   `dead_peer_timeout` drops the connection; after half of it a WebSocket ping is due
//   (once per silence), which a live peer answers. 0 disables both.
// - Idle heartbeat: `session.heartbeat` is due after `heartbeat_idle` without a request
//   written (the server idles sessions out), never while a request is being written.
//   0 disables it.
// - Reconnect pacing: connect failures and lost connections count as failures in a
//   row; `lens::decide_retry` with the `reconnect` policy spaces the attempts (failure n
//   waits `delay(n - 1)`, so a server that accepts and closes at once is not stormed)
//   and enforces `max_attempts` (failures in a row, 0 = unlimited): then the channel
//   stops with the last failure's code. A connection that stayed up `reset_after`
//   clears the count before its own loss is counted. An upgrade's `Retry-After` is
//   honoured within the policy's clamp.
// - Final failures stop at once: anything `lens::is_retryable` rejects (unauthorized,
//   not_found — a 404 upgrade, see `lens::status_condition` —, certificate_rejected,
//   invalid_argument...). After `on_destroy_sent()` a lost connection stops with
//   errc::session_gone: there is no session left to reconnect to.
// - Requests after a loss: `fate_after_loss` (abandoned: dropped; written and
//   idempotent: resent first, in original order; written otherwise: failed with
//   errc::connection_lost; not yet written: kept for the next connection).
//
// All time arithmetic saturates (detail/deadline.hpp): no setting overflows into the past.
#pragma once

#include <lens/backoff.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace lens::detail {

/// The settings the rules above use (taken from `session_options`).
struct channel_timing {
    std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);
    std::chrono::milliseconds dead_peer_timeout = std::chrono::seconds(20);
    std::chrono::milliseconds heartbeat_idle = std::chrono::seconds(30);
    backoff_policy reconnect;
};

/// What becomes of a request when the connection it was written on is lost.
enum class request_fate {
    keep_queued,  ///< not written yet: it waits for the next connection (within its deadline)
    drop,         ///< abandoned by its caller: nobody waits for a reply
    resend_first, ///< idempotent: written again first on the next connection, in original order
    fail,         ///< may have taken effect: fails with errc::connection_lost
};

class channel_fsm {
public:
    using clock = std::chrono::steady_clock;
    using time_point = clock::time_point;
    /// A jitter sample uniform in [0, 1) (see `backoff_policy::delay`); null means 0.
    using jitter_source = double (*)();

    enum class phase {
        idle,        ///< before `start()`
        connecting,  ///< an attempt is in progress
        connected,   ///< the connection is up
        backing_off, ///< waiting before the next attempt
        stopped,     ///< for good: see `stop_code()`
    };

    /// What the driver must do now.
    struct action {
        enum kind_type {
            wait_until,     ///< nothing more now; call `resume` again at `until` (max: only on an event)
            connect,        ///< start a connect attempt (ending by `attempt_deadline()`)
            abort_connect,  ///< the attempt ran out of time: tear it down, then report its failure
            send_ping,      ///< write a WebSocket ping (dead-peer check)
            send_heartbeat, ///< queue a `session.heartbeat` request (idle)
            drop_dead_peer, ///< close the live connection (already counted as lost), apply `fate_after_loss`
            stop,           ///< fail everything with `stop_code()` / `stop_detail()`, close, stop timers
        } kind = wait_until;
        time_point until = time_point::max();
    };

    explicit channel_fsm(channel_timing timing, jitter_source jitter = nullptr) noexcept;

    // ---- events ----------------------------------------------------------------

    /// The channel should connect: the first attempt is due now.
    void start(time_point now);
    /// The attempt succeeded. Returns false when it had already been aborted (the driver
    /// then closes the connection; the late success counts as the timed-out failure).
    bool on_connected(time_point now);
    /// The attempt failed with `code` (a lens condition; see `lens::status_condition` for
    /// refused upgrades). `detail` is the user-facing text (already free of secrets);
    /// `server_delay` a `Retry-After` received with the refusal.
    void on_connect_failed(time_point now, boost::system::error_code code, std::string detail,
                           std::optional<std::chrono::milliseconds> server_delay = std::nullopt);
    /// The live connection failed (read or write error, oversized frame...). The driver has
    /// closed it and applies `fate_after_loss` to its requests.
    void on_connection_lost(time_point now, std::string detail);
    /// A frame arrived: data, ping or pong.
    void on_received(time_point now) noexcept;
    /// A write of a request frame (`request`) or a ping started / finished on the live connection.
    void on_write_started(time_point now, bool request) noexcept;
    void on_write_finished(time_point now, bool request) noexcept;
    /// A `session.destroy` was written: a later loss stops instead of reconnecting.
    void on_destroy_sent() noexcept { destroy_sent_ = true; }
    /// Stop for good (closed, destroyed, open cancelled). The first reason wins.
    void stop(boost::system::error_code code, std::string detail);

    // ---- decisions ---------------------------------------------------------------

    /// The next thing to do at `now`. Call repeatedly until it returns `wait_until`.
    action resume(time_point now);

    /// The rule for requests of a lost connection.
    static request_fate fate_after_loss(bool written, bool abandoned, bool idempotent) noexcept;

    // ---- state -------------------------------------------------------------------

    phase current() const noexcept { return phase_; }
    bool stopped() const noexcept { return phase_ == phase::stopped; }
    bool connected() const noexcept { return phase_ == phase::connected; }
    /// The deadline of the attempt in progress.
    time_point attempt_deadline() const noexcept { return attempt_deadline_; }
    /// Failures in a row (attempts and losses since the last stable connection).
    unsigned failures() const noexcept { return failures_; }
    const boost::system::error_code& stop_code() const noexcept { return stop_code_; }
    const std::string& stop_detail() const noexcept { return stop_detail_; }
    /// Why the last attempt failed or the last connection was lost.
    const std::string& last_failure() const noexcept { return last_failure_; }
    /// Its code (errc::connection_lost for a lost connection, dead peers included).
    const boost::system::error_code& last_failure_code() const noexcept { return last_failure_code_; }
    /// When the next attempt is due, while `backing_off` (time_point::max(): never, the
    /// settings asked for it). With `last_failure()` it is what the driver logs as a
    /// reconnect: the delay is `retry_at() - now` at the failure.
    time_point retry_at() const noexcept { return retry_at_; }
    const channel_timing& timing() const noexcept { return timing_; }

private:
    void begin_attempt(time_point now);
    void count_loss(time_point now, std::string detail);
    void fail_attempt(time_point now, boost::system::error_code code, std::string detail,
                      std::optional<std::chrono::milliseconds> server_delay);
    void enter_stop(boost::system::error_code code, std::string detail);
    action resume_connected(time_point now);

    channel_timing timing_;
    jitter_source jitter_;
    phase phase_ = phase::idle;
    bool ever_connected_ = false;
    bool abort_requested_ = false;
    bool destroy_sent_ = false;
    bool request_writing_ = false;
    bool stop_announced_ = false;
    unsigned failures_ = 0;
    time_point open_deadline_ = time_point::max(); ///< until the first connection
    time_point attempt_deadline_ = time_point::max();
    time_point retry_at_{};
    time_point connected_at_{};
    time_point last_receive_{};
    time_point last_send_{};
    time_point pinged_for_ = time_point::min(); ///< the `last_receive_` the last ping was about
    boost::system::error_code stop_code_;
    std::string stop_detail_;
    std::string last_failure_;
    boost::system::error_code last_failure_code_;
};

} // namespace lens::detail
