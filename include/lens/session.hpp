// lens/session.hpp — the WebSocket control channel of a session, as an
// awaitable request/response multiplexer (docs/protocol.md §3).
//
// Any number of coroutines may have requests in flight on one session. One
// writer drains the send queue (a burst goes out corked, as few TCP segments);
// one reader matches each reply to the oldest pending request expecting that
// reply type (see detail/reply_matcher.hpp). Both are chains of completion
// handlers, and every timing rule of the channel (connect deadline, keepalive
// ping, dead peer, idle heartbeat, reconnect pacing) is decided by one sans-I/O
// state machine (src/detail/channel_fsm.hpp) that needs ONE timer: an idle
// connected session costs a pending read and one timer wait, no coroutine frames.
// Every request has a deadline (saturating: `milliseconds::max()` never expires);
// expiry or cancellation completes only that caller, and its late reply is
// consumed and dropped.
//
// Failure rules (the protocol has no request ids):
// - a reply `{"type": "T.response", "message": M}` without `event_data` fails the
//   request it answers: errc::query_timed_out for "Response timed out for query",
//   errc::api_error otherwise, M kept in the message;
// - an `{"type": "error", "message": M}` frame fails the OLDEST outstanding request
//   of any type (errc::session_gone when M starts with "Unknown session id",
//   errc::api_error otherwise); with nothing outstanding it goes to the inbox;
// - frames that answer nothing (other types, replies nobody awaits, non-JSON text)
//   go to the inbox, bounded in frames (`inbox_capacity`) and in bytes of frame text
//   (`inbox_max_bytes`). Beyond either bound the OLDEST frames are dropped and
//   `inbox_dropped` counts them (a single frame larger than `inbox_max_bytes` is
//   dropped on arrival): the reader never waits for the inbox's reader. A non-JSON
//   frame is kept as a JSON string of its text.
//
// Secrets: every frame from the server is scrubbed of the API key (the literal key
// in any string or member name, at any depth, and every `api_key` member) before
// anything else sees it: replies, error texts, inbox frames; so are the server texts
// quoted in connection errors.
//
// Byte budgets: a frame over `max_message_size` drops the connection (the reader
// never buffers it: see oversize_disconnects); the session reconnects. A request's
// frame is freed as soon as it can never be written again (after its write unless it
// is idempotent; at once when its caller gives up): see session_stats::pending_bytes.
//
// Connection loss: reconnect with exponential backoff and jitter (`reconnect`; the
// delays grow with failures in a row, including connections that drop before
// `reset_after`; `max_attempts` failures in a row stop the session with the last
// failure's code). Requests already written fail with errc::connection_lost unless
// idempotent (status, validate, read, heartbeat, or `call_options::idempotent`),
// which are resent first, in order; requests not yet written wait for the new
// connection within their deadlines. Final failures stop reconnecting and fail
// everything: an upgrade refused with 401/403 (errc::unauthorized) or 404
// (errc::not_found) — one table, `lens::status_condition` —, a server certificate
// that fails verification (certificate_rejected), a sent `destroy`
// (errc::session_gone).
//
// A session object is used from one thread (its executor's); keep each session
// on one io_context. Destroying it closes the connection and fails its requests
// with errc::closed; it does not destroy the server-side session (see destroy()
// and lens/scoped_session.hpp). Operations started on a moved-from session fail
// with errc::closed when awaited; its accessors return empty values.
#pragma once

#include <lens/backoff.hpp>
#include <lens/client.hpp>
#include <lens/config.hpp>
#include <lens/input_stream.hpp>
#include <lens/query.hpp>
#include <lens/records.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lens {

struct session_options {
    /// Not an aggregate on purpose: g++ 12 destroys a braced aggregate temporary twice
    /// in a co_await expression. Start from a named value and set members.
    session_options() = default;

    std::chrono::milliseconds request_timeout = std::chrono::seconds(30);
    std::chrono::milliseconds query_timeout = std::chrono::seconds(90);   ///< model.query
    /// One connection attempt (TCP + TLS + upgrade); also the whole of `open()`, retries
    /// included: when no attempt succeeds within it, open fails with errc::timeout quoting
    /// the last attempt's failure.
    std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);
    /// No frame (data, ping or pong) for this long means a dead peer: the connection is
    /// dropped and reconnected. A WebSocket ping is sent after half of it idle (0: never).
    std::chrono::milliseconds dead_peer_timeout = std::chrono::seconds(20);
    /// `session.heartbeat` after this long without a request (0: never). The server
    /// idles sessions out; the official SDK uses 30 s.
    std::chrono::milliseconds heartbeat_idle = std::chrono::seconds(30);
    /// Reconnect pacing: failure n in a row (a failed attempt, or a connection lost before
    /// `reset_after`) waits `delay(n - 1)`; a 429/503 upgrade's Retry-After is honoured up to
    /// `max_server_delay`. `max_attempts` failures in a row (0: unlimited) stop the session
    /// with the last failure's code.
    backoff_policy reconnect{std::chrono::milliseconds(100), std::chrono::seconds(10), 2.0, 0.5,
                             std::chrono::seconds(30), 0};
    /// Authenticate with `Sec-WebSocket-Protocol: authenticationauthorization.bearer.<key>,
    /// event-protocol-v1` instead of the Authorization header (what browsers must do).
    bool subprotocol_auth = false;
    /// Unsolicited frames kept for `receive()`; beyond it the oldest is dropped.
    std::size_t inbox_capacity = 256;
    /// Bytes (of frame text) the inbox may hold; beyond it the oldest frames are dropped,
    /// and a single larger frame is dropped on arrival.
    std::size_t inbox_max_bytes = 1024 * 1024;
    /// The largest frame accepted from the server (WebSocket `read_message_max`). A bigger
    /// one drops the connection without being buffered (requests written on it fail or are
    /// resent as after any loss, with "max_message_size" in the error); then the session
    /// reconnects. 0 means no limit.
    std::size_t max_message_size = 4 * 1024 * 1024;
    /// The `client_id` of `read()`; empty: 8 random hex digits per session object.
    std::string client_id;
};

/// The reply to `session.validate`.
struct validation {
    bool is_valid = false;
    std::vector<std::string> error_messages;
    boost::json::value raw;
};

/// One message of the mailbox `session.read` drains.
struct mailbox_message {
    double timestamp = 0;
    std::string type;
    boost::json::value data;
};

/// The reply to `session.read`: empty when the server's `event_data` is null.
struct read_result {
    std::vector<mailbox_message> messages;
    std::string client_id;
    boost::json::value raw;
};

/// Per-call settings; zero timeout means the session's default for that event.
struct call_options {
    std::chrono::milliseconds timeout{0};
    /// Safe to resend after a connection loss (the typed idempotent calls set it).
    bool idempotent = false;
};

/// Counters, for tests and monitoring.
struct session_stats {
    std::size_t connects = 0;          ///< successful upgrades (first connect included)
    std::size_t connect_failures = 0;
    std::size_t requests_sent = 0;
    std::size_t replies_matched = 0;
    std::size_t late_replies_dropped = 0; ///< replies to callers that had given up
    std::size_t inbox_dropped = 0;
    std::size_t heartbeats_sent = 0;
    std::size_t dead_peer_disconnects = 0; ///< connections dropped for silence (dead_peer_timeout)
    std::size_t pongs_received = 0;        ///< answers to keepalive pings
    std::size_t oversize_disconnects = 0;  ///< connections dropped for a frame over max_message_size
    std::size_t pending = 0;           ///< requests awaiting a reply now
    std::size_t pending_bytes = 0;     ///< request frame bytes the session holds now (queued or resendable)
    std::size_t inbox_frames = 0;      ///< unsolicited frames waiting in the inbox now
    std::size_t inbox_bytes = 0;       ///< their bytes of frame text (at most inbox_max_bytes)
};

class session {
public:
    /// Opens the control channel of `record.session_endpoint` and waits until it is
    /// connected (within `connect_timeout`). Authenticates with `cfg.api_key`.
    /// The arguments must outlive the co_await (true of temporaries in the awaiting
    /// expression); they are copied when the coroutine starts.
    static task<session> open(const config& cfg, const session_record& record, const session_options& opts);
    /// \overload for a `session_endpoint` URL (ws or wss).
    static task<session> open(const config& cfg, const std::string& session_endpoint,
                              const session_options& opts);
    // Overloads, not default arguments: g++ 12 mis-copies a class-type default argument
    // materialised in a calling coroutine's frame (a std::string ends up pointing into it).
    static task<session> open(const config& cfg, const session_record& record)
    {
        return open(cfg, record, default_options());
    }
    static task<session> open(const config& cfg, const std::string& session_endpoint)
    {
        return open(cfg, session_endpoint, default_options());
    }
    static const session_options& default_options() noexcept;
    /// Used by `client::open_session`: the control channel at `session_endpoint`, sharing
    /// the client's endpoint (TLS context, header checks, redaction, host rule).
    static task<session> open(std::shared_ptr<const detail::endpoint> ep, std::string session_endpoint,
                              session_options opts);

    session(session&&) noexcept;
    session& operator=(session&&) noexcept;
    ~session();

    /// `session.status`: the session record, `api_key` removed.
    task<session_record> status(call_options o = {});
    task<validation> validate(call_options o = {});
    /// `session.read` with this session's client id.
    task<read_result> read(call_options o = {});
    /// `session.read` with `client_id` (each id is an independent cursor).
    task<read_result> read(std::string client_id, call_options o = {});
    /// `session.destroy`: the server-side session ends; the channel stops reconnecting.
    task<boost::json::value> destroy(call_options o = {});
    /// `input_stream.set`; a reply with `is_valid: false` is errc::api_error.
    /// Like query(), an ordinary function in front of the coroutine: the request is
    /// encoded before it returns, so nothing the caller passed is referenced (or copied,
    /// images included) after the call.
    task<boost::json::value> set_input_stream(const input_stream& s, call_options o = {});
    /// `model.query`: the reply's `event_data.result`.
    task<boost::json::value> query(const query_request& q, call_options o = {});
    /// `session.update` with `{"type": "data.json", "event_data": data}`.
    task<boost::json::value> update(boost::json::value data, call_options o = {});
    task<void> heartbeat(call_options o = {});
    /// Any event: sends `{"type": type, "event_data": event_data}` and returns the whole
    /// raw reply (for session.status, the record), `api_key` removed.
    task<boost::json::value> call(std::string type, boost::json::value event_data, call_options o = {});
    /// \overload without `event_data`.
    task<boost::json::value> call(std::string type) { return call(std::move(type), nullptr); }

    /// The next unsolicited frame, waiting at most `timeout`; nullopt on timeout or when
    /// the session stops (close, destroy, a final failure) while nothing is queued.
    /// Several callers may wait at once: each frame goes to one of them. Cancelling the
    /// caller throws operation_aborted.
    task<std::optional<boost::json::value>> receive(std::chrono::milliseconds timeout);
    /// The next unsolicited frame if one is queued.
    std::optional<boost::json::value> try_receive();

    /// Closes the connection now; pending requests fail with errc::closed, waiting
    /// `receive()` callers get nullopt.
    void close() noexcept;

    const std::string& client_id() const noexcept;
    session_stats stats() const noexcept;
    bool is_connected() const noexcept;

    struct impl;
private:
    explicit session(std::shared_ptr<impl> p) noexcept;
    std::shared_ptr<impl> impl_;
};

} // namespace lens
