/// \file
/// lens/session.hpp — the WebSocket control channel of a session, as an
/// awaitable request/response multiplexer (docs/protocol.md §3).
///
/// Any number of coroutines may have requests in flight on one session. One
/// writer drains the send queue (a burst of queued requests leaves in one write);
/// one reader matches each reply to the oldest pending request expecting that
/// reply type (see detail/reply_matcher.hpp). Both are chains of completion
/// handlers, and every timing rule of the channel (connect deadline, keepalive
/// ping, dead peer, idle heartbeat, reconnect pacing) is decided by one sans-I/O
/// state machine (src/detail/channel_fsm.hpp) that needs ONE timer: an idle
/// connected session costs a pending read and one timer wait, no coroutine frames.
/// Every request has a deadline (saturating: `milliseconds::max()` never expires);
/// expiry or cancellation completes only that caller, and its late reply is
/// consumed and dropped. The session keeps the deadlines in order and its one
/// timer serves them: a request costs no timer of its own. A caller whose reply a
/// read brings resumes inside that read's handler, on its own executor when that
/// is the one running (else it is posted there), so its next request leaves before
/// the next read, as in a hand-written loop.
///
/// Failure rules (the protocol has no request ids):
/// - a reply `{"type": "T.response", "message": M}` without `event_data` fails the
///   request it answers: errc::query_timed_out for "Response timed out for query",
///   errc::api_error otherwise, M kept in the message;
/// - an `{"type": "error", "message": M}` frame fails the OLDEST outstanding request
///   of any type (errc::session_gone when M starts with "Unknown session id",
///   errc::api_error otherwise); with nothing outstanding it goes to the inbox;
/// - frames that answer nothing (other types, replies nobody awaits, non-JSON text)
///   go to the inbox, bounded in frames (`inbox_capacity`) and in bytes of frame text
///   (`inbox_max_bytes`). Beyond either bound the OLDEST frames are dropped and
///   `inbox_dropped` counts them (a single frame larger than `inbox_max_bytes` is
///   dropped on arrival): the reader never waits for the inbox's reader. A non-JSON
///   frame is kept as a JSON string of its text.
///
/// Secrets: every frame from the server is scrubbed of the API key (the literal key
/// in any string or member name, at any depth, and every `api_key` member) before
/// anything else sees it: replies, error texts, inbox frames; so are the server texts
/// quoted in connection errors.
///
/// Byte budgets: a frame over `max_message_size` drops the connection (the reader
/// never buffers it: see oversize_disconnects); the session reconnects. A request's
/// frame is freed as soon as it can never be written again (after its write unless it
/// is idempotent; at once when its caller gives up): see session_stats::pending_bytes.
///
/// Connection loss: reconnect with exponential backoff and jitter (`reconnect`; the
/// delays grow with failures in a row, including connections that drop before
/// `reset_after`; `max_attempts` failures in a row stop the session with the last
/// failure's code). Requests already written fail with errc::connection_lost unless
/// idempotent (status, validate, read, heartbeat, or `call_options::idempotent`),
/// which are resent first, in order; requests not yet written wait for the new
/// connection within their deadlines. Final failures stop reconnecting and fail
/// everything: an upgrade refused with 401/403 (errc::unauthorized) or 404
/// (errc::not_found) — one table, `lens::status_condition` —, a server certificate
/// that fails verification (certificate_rejected), a sent `destroy`
/// (errc::session_gone).
///
/// A session object is used from one thread (its executor's); keep each session
/// on one io_context. Destroying it closes the connection and fails its requests
/// with errc::closed; it does not destroy the server-side session (see destroy()
/// and lens/scoped_session.hpp). Operations started on a moved-from session fail
/// with errc::closed when awaited; its accessors return empty values.
#pragma once

#include <lens/backoff.hpp>
#include <lens/client.hpp>
#include <lens/completion_token.hpp>
#include <lens/config.hpp>
#include <lens/detail/async_op.hpp>
#include <lens/diagnostics.hpp>
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
#include <type_traits>
#include <vector>

namespace lens {

/// Deadlines, liveness checks, reconnection pacing and inbox bounds of one session's
/// control channel.
struct session_options {
    /// Not an aggregate on purpose: g++ 12 destroys a braced aggregate temporary twice
    /// in a co_await expression. Start from a named value and set members.
    session_options() = default;

    /// Deadline of every request but model.query, when its call_options give none; on
    /// expiry only that caller fails (errc::timeout) and its late reply is dropped.
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
    /// Authenticate with the `Sec-WebSocket-Protocol` header, holding
    /// `authenticationauthorization.bearer.KEY, event-protocol-v1` (KEY: the API key),
    /// instead of the Authorization header (what browsers must do).
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
    /// Requests the session holds at once: queued, written and awaiting their reply, or
    /// abandoned by their caller but still owed a late reply (see `session_stats::pending`).
    /// A request beyond it fails at once with errc::limit_exceeded ("max_pending") and is
    /// not sent: backpressure for a caller that issues requests faster than the server
    /// answers, instead of memory that grows without bound. 0 means no limit.
    std::size_t max_pending = 4096;
    /// The `client_id` of `read()`; empty: 8 random hex digits per session object.
    std::string client_id;
};

/// The reply to `session.validate`. The typed fields are decoded from the reply's text
/// without a JSON tree (the text is kept; `raw()` parses it when asked).
struct validation {
    bool is_valid = false;                   ///< `event_data.is_valid`; false when absent
    std::vector<std::string> error_messages; ///< `event_data.error_messages` (non-strings serialized)
    std::string reply;                       ///< the whole reply as JSON text, `api_key` removed
    /// `reply`, parsed (at each call).
    boost::json::value raw() const;
};

/// One message of the mailbox `session.read` drains.
struct mailbox_message {
    double timestamp = 0;    ///< the server's `timestamp` (0 when absent)
    std::string type;        ///< the message's `type` (empty when absent)
    boost::json::value data; ///< its `data`; the whole entry when it is not an object
};

/// The reply to `session.read`: empty when the server's `event_data` is null.
struct read_result {
    std::vector<mailbox_message> messages; ///< the drained messages, in the server's order
    std::string client_id;                 ///< the cursor read: the server's echo, else the id sent
    std::string reply;                     ///< the whole reply as JSON text, `api_key` removed
    /// `reply`, parsed (at each call).
    boost::json::value raw() const;
};

/// Per-call settings; zero timeout means the session's default for that event.
struct call_options {
    /// This request's deadline (0: `request_timeout`, or `query_timeout` for model.query).
    std::chrono::milliseconds timeout{0};
    /// Safe to resend after a connection loss (the typed idempotent calls set it).
    bool idempotent = false;
};

/// Counters, for tests and monitoring.
struct session_stats {
    std::size_t connects = 0;          ///< successful upgrades (first connect included)
    std::size_t connect_failures = 0;  ///< connection attempts that failed (connect, TLS or upgrade)
    std::size_t requests_sent = 0;     ///< request frames written, resends after a reconnect included
    std::size_t writes = 0;            ///< writes to the connection: the frames queued together leave in one
    std::size_t replies_matched = 0;   ///< replies handed to a waiting request (failure replies included)
    std::size_t late_replies_dropped = 0; ///< replies to callers that had given up
    std::size_t inbox_dropped = 0;     ///< unsolicited frames dropped over inbox_capacity or inbox_max_bytes
    std::size_t heartbeats_sent = 0;   ///< automatic `session.heartbeat`s (heartbeat_idle), not heartbeat() calls
    std::size_t dead_peer_disconnects = 0; ///< connections dropped for silence (dead_peer_timeout)
    std::size_t pongs_received = 0;        ///< answers to keepalive pings
    std::size_t oversize_disconnects = 0;  ///< connections dropped for a frame over max_message_size
    std::size_t pending = 0;           ///< requests awaiting a reply now
    std::size_t pending_bytes = 0;     ///< request frame bytes the session holds now (queued or resendable)
    std::size_t inbox_frames = 0;      ///< unsolicited frames waiting in the inbox now
    std::size_t inbox_bytes = 0;       ///< their bytes of frame text (at most inbox_max_bytes)
};

/// A session's WebSocket control channel: requests multiplexed over one connection
/// that reconnects on its own, and an inbox of unsolicited frames (see the file
/// description for deadlines, failures and threading). Move-only.
class session {
public:
    // Every asynchronous operation below takes a completion token last (default:
    // `co_await op(...)`, which throws lens::error) and has an overload taking a
    // `lens::diagnostics&` before the token: see lens/completion_token.hpp. Those of a
    // session object run on the executor the session was opened on.

    /// Opens the control channel of `record.session_endpoint` and waits until it is
    /// connected (within `connect_timeout`). Authenticates with `cfg.api_key`.
    /// Awaited with the default token, the arguments must outlive the co_await (true of
    /// temporaries in the awaiting expression): they are copied when the coroutine starts.
    /// With any other token they are copied before this returns, and the session runs on
    /// the completion handler's associated executor (lens/completion_token.hpp).
    template <completion_token_for<session> Token = default_token>
    static auto open(const config& cfg, const session_record& record, const session_options& opts, Token&& token = {})
    {
        return detail::async_run<session>(std::forward<Token>(token), handler_executor, [&] {
            if constexpr (std::is_same_v<std::decay_t<Token>, default_token>)
                return open_task(cfg, record, opts);
            else
                return open_copied(cfg, record.session_endpoint, opts);
        });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<session> Token = default_token>
    static auto open(const config& cfg, const session_record& record, const session_options& opts, diagnostics& diag,
                     Token&& token = {})
    {
        return detail::async_run<session>(std::forward<Token>(token), diag, handler_executor,
                                          [&] { return open_copied(cfg, record.session_endpoint, opts); });
    }
    /// \overload
    /// For a `session_endpoint` URL (ws or wss).
    template <completion_token_for<session> Token = default_token>
    static auto open(const config& cfg, const std::string& session_endpoint, const session_options& opts,
                     Token&& token = {})
    {
        return detail::async_run<session>(std::forward<Token>(token), handler_executor, [&] {
            if constexpr (std::is_same_v<std::decay_t<Token>, default_token>)
                return open_task(cfg, session_endpoint, opts);
            else
                return open_copied(cfg, session_endpoint, opts);
        });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<session> Token = default_token>
    static auto open(const config& cfg, const std::string& session_endpoint, const session_options& opts,
                     diagnostics& diag, Token&& token = {})
    {
        return detail::async_run<session>(std::forward<Token>(token), diag, handler_executor,
                                          [&] { return open_copied(cfg, session_endpoint, opts); });
    }
    /// \overload
    /// With default options. Overloads, not default arguments: g++ 12 mis-copies
    /// a class-type default argument materialised in a calling coroutine's frame.
    template <completion_token_for<session> Token = default_token>
    static auto open(const config& cfg, const session_record& record, Token&& token = {})
    {
        return detail::async_run<session>(std::forward<Token>(token), handler_executor, [&] {
            if constexpr (std::is_same_v<std::decay_t<Token>, default_token>)
                return open_task(cfg, record, default_options());
            else
                return open_copied(cfg, record.session_endpoint, default_options());
        });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<session> Token = default_token>
    static auto open(const config& cfg, const session_record& record, diagnostics& diag, Token&& token = {})
    {
        return detail::async_run<session>(std::forward<Token>(token), diag, handler_executor,
                                          [&] { return open_copied(cfg, record.session_endpoint, default_options()); });
    }
    /// \overload
    /// For a `session_endpoint` URL with default options.
    template <completion_token_for<session> Token = default_token>
    static auto open(const config& cfg, const std::string& session_endpoint, Token&& token = {})
    {
        return detail::async_run<session>(std::forward<Token>(token), handler_executor, [&] {
            if constexpr (std::is_same_v<std::decay_t<Token>, default_token>)
                return open_task(cfg, session_endpoint, default_options());
            else
                return open_copied(cfg, session_endpoint, default_options());
        });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<session> Token = default_token>
    static auto open(const config& cfg, const std::string& session_endpoint, diagnostics& diag, Token&& token = {})
    {
        return detail::async_run<session>(std::forward<Token>(token), diag, handler_executor,
                                          [&] { return open_copied(cfg, session_endpoint, default_options()); });
    }
    /// The options the overloads without `opts` use: a default-constructed session_options.
    static const session_options& default_options() noexcept;
    /// Used by `client::open_session`: the control channel at `session_endpoint`, sharing
    /// the client's endpoint (TLS context, header checks, redaction, host rule). Awaitable
    /// only: its first argument is an internal type (the client's overloads take tokens).
    static task<session> open(std::shared_ptr<const detail::endpoint> ep, std::string session_endpoint,
                              session_options opts);

    /// Takes over `other`'s connection and pending requests; `other` becomes moved-from.
    session(session&& other) noexcept;
    /// Closes this session (see close()), then takes over `other`'s; `other` becomes moved-from.
    session& operator=(session&& other) noexcept;
    /// Closes the connection (see close()); the server-side session stays.
    ~session();

    /// `session.status`: the session record, `api_key` removed.
    template <completion_token_for<session_record> Token = default_token>
    auto status(call_options o, Token&& token = {})
    {
        return run<session_record>(std::forward<Token>(token), [&] { return status_task(o); });
    }
    /// \overload
    /// With the session's defaults (an overload, not a default argument).
    template <completion_token_for<session_record> Token = default_token>
    auto status(Token&& token = {})
    {
        return run<session_record>(std::forward<Token>(token), [&] { return status_task(call_options()); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<session_record> Token = default_token>
    auto status(call_options o, diagnostics& diag, Token&& token = {})
    {
        return run<session_record>(std::forward<Token>(token), diag, [&] { return status_task(o); });
    }
    /// \overload
    /// With the session's defaults, filling `diag` on failure.
    template <completion_token_for<session_record> Token = default_token>
    auto status(diagnostics& diag, Token&& token = {})
    {
        return run<session_record>(std::forward<Token>(token), diag, [&] { return status_task(call_options()); });
    }
    /// `session.validate`.
    template <completion_token_for<validation> Token = default_token>
    auto validate(call_options o, Token&& token = {})
    {
        return run<validation>(std::forward<Token>(token), [&] { return validate_task(o); });
    }
    /// \overload
    /// With the session's defaults (an overload, not a default argument).
    template <completion_token_for<validation> Token = default_token>
    auto validate(Token&& token = {})
    {
        return run<validation>(std::forward<Token>(token), [&] { return validate_task(call_options()); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<validation> Token = default_token>
    auto validate(call_options o, diagnostics& diag, Token&& token = {})
    {
        return run<validation>(std::forward<Token>(token), diag, [&] { return validate_task(o); });
    }
    /// \overload
    /// With the session's defaults, filling `diag` on failure.
    template <completion_token_for<validation> Token = default_token>
    auto validate(diagnostics& diag, Token&& token = {})
    {
        return run<validation>(std::forward<Token>(token), diag, [&] { return validate_task(call_options()); });
    }
    /// `session.read` with this session's client id.
    template <completion_token_for<read_result> Token = default_token>
    auto read(call_options o, Token&& token = {})
    {
        return run<read_result>(std::forward<Token>(token), [&] { return read_task(o); });
    }
    /// \overload
    /// With the session's defaults (an overload, not a default argument).
    template <completion_token_for<read_result> Token = default_token>
    auto read(Token&& token = {})
    {
        return run<read_result>(std::forward<Token>(token), [&] { return read_task(call_options()); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<read_result> Token = default_token>
    auto read(call_options o, diagnostics& diag, Token&& token = {})
    {
        return run<read_result>(std::forward<Token>(token), diag, [&] { return read_task(o); });
    }
    /// \overload
    /// With the session's defaults, filling `diag` on failure.
    template <completion_token_for<read_result> Token = default_token>
    auto read(diagnostics& diag, Token&& token = {})
    {
        return run<read_result>(std::forward<Token>(token), diag, [&] { return read_task(call_options()); });
    }
    /// `session.read` with `client_id` (each id is an independent cursor).
    template <completion_token_for<read_result> Token = default_token>
    auto read(std::string client_id, call_options o, Token&& token = {})
    {
        return run<read_result>(std::forward<Token>(token), [&] { return read_task(std::move(client_id), o); });
    }
    /// \overload
    /// With the session's defaults (an overload, not a default argument).
    template <completion_token_for<read_result> Token = default_token>
    auto read(std::string client_id, Token&& token = {})
    {
        return run<read_result>(std::forward<Token>(token),
                                [&] { return read_task(std::move(client_id), call_options()); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<read_result> Token = default_token>
    auto read(std::string client_id, call_options o, diagnostics& diag, Token&& token = {})
    {
        return run<read_result>(std::forward<Token>(token), diag, [&] { return read_task(std::move(client_id), o); });
    }
    /// \overload
    /// With the session's defaults, filling `diag` on failure.
    template <completion_token_for<read_result> Token = default_token>
    auto read(std::string client_id, diagnostics& diag, Token&& token = {})
    {
        return run<read_result>(std::forward<Token>(token), diag,
                                [&] { return read_task(std::move(client_id), call_options()); });
    }
    /// `session.destroy`: the server-side session ends; the channel stops reconnecting.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto destroy(call_options o, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), [&] { return destroy_task(o); });
    }
    /// \overload
    /// With the session's defaults (an overload, not a default argument).
    template <completion_token_for<boost::json::value> Token = default_token>
    auto destroy(Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), [&] { return destroy_task(call_options()); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto destroy(call_options o, diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag, [&] { return destroy_task(o); });
    }
    /// \overload
    /// With the session's defaults, filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto destroy(diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag, [&] { return destroy_task(call_options()); });
    }
    /// `input_stream.set`; a reply with `is_valid: false` is errc::api_error.
    /// Like query(), the request is encoded before this returns, so nothing the caller
    /// passed is referenced (or copied, images included) after the call.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto set_input_stream(const input_stream& s, call_options o, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), [&] { return set_input_stream_task(s, o); });
    }
    /// \overload
    /// With the session's defaults (an overload, not a default argument).
    template <completion_token_for<boost::json::value> Token = default_token>
    auto set_input_stream(const input_stream& s, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token),
                                       [&] { return set_input_stream_task(s, call_options()); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto set_input_stream(const input_stream& s, call_options o, diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag, [&] { return set_input_stream_task(s, o); });
    }
    /// \overload
    /// With the session's defaults, filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto set_input_stream(const input_stream& s, diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag,
                                       [&] { return set_input_stream_task(s, call_options()); });
    }
    /// `model.query`: the reply's `event_data.result`. Encoded before this returns.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto query(const query_request& q, call_options o, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), [&] { return query_task(q, o); });
    }
    /// \overload
    /// With the session's defaults (an overload, not a default argument).
    template <completion_token_for<boost::json::value> Token = default_token>
    auto query(const query_request& q, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), [&] { return query_task(q, call_options()); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto query(const query_request& q, call_options o, diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag, [&] { return query_task(q, o); });
    }
    /// \overload
    /// With the session's defaults, filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto query(const query_request& q, diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag, [&] { return query_task(q, call_options()); });
    }
    /// `session.update` with `{"type": "data.json", "event_data": data}`.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto update(boost::json::value data, call_options o, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), [&] { return update_task(std::move(data), o); });
    }
    /// \overload
    /// With the session's defaults (an overload, not a default argument).
    template <completion_token_for<boost::json::value> Token = default_token>
    auto update(boost::json::value data, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token),
                                       [&] { return update_task(std::move(data), call_options()); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto update(boost::json::value data, call_options o, diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag,
                                       [&] { return update_task(std::move(data), o); });
    }
    /// \overload
    /// With the session's defaults, filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto update(boost::json::value data, diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag,
                                       [&] { return update_task(std::move(data), call_options()); });
    }
    /// `session.heartbeat`.
    template <completion_token_for<void> Token = default_token>
    auto heartbeat(call_options o, Token&& token = {})
    {
        return run<void>(std::forward<Token>(token), [&] { return heartbeat_task(o); });
    }
    /// \overload
    /// With the session's defaults (an overload, not a default argument).
    template <completion_token_for<void> Token = default_token>
    auto heartbeat(Token&& token = {})
    {
        return run<void>(std::forward<Token>(token), [&] { return heartbeat_task(call_options()); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<void> Token = default_token>
    auto heartbeat(call_options o, diagnostics& diag, Token&& token = {})
    {
        return run<void>(std::forward<Token>(token), diag, [&] { return heartbeat_task(o); });
    }
    /// \overload
    /// With the session's defaults, filling `diag` on failure.
    template <completion_token_for<void> Token = default_token>
    auto heartbeat(diagnostics& diag, Token&& token = {})
    {
        return run<void>(std::forward<Token>(token), diag, [&] { return heartbeat_task(call_options()); });
    }
    /// Any event: sends `{"type": type, "event_data": event_data}` and returns the whole
    /// raw reply (for session.status, the record), `api_key` removed.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto call(std::string type, boost::json::value event_data, call_options o, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token),
                                       [&] { return call_task(std::move(type), std::move(event_data), o); });
    }
    /// \overload
    /// With the session's defaults (an overload, not a default argument).
    template <completion_token_for<boost::json::value> Token = default_token>
    auto call(std::string type, boost::json::value event_data, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), [&] {
            return call_task(std::move(type), std::move(event_data), call_options());
        });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto call(std::string type, boost::json::value event_data, call_options o, diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag,
                                       [&] { return call_task(std::move(type), std::move(event_data), o); });
    }
    /// \overload
    /// With the session's defaults, filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto call(std::string type, boost::json::value event_data, diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag, [&] {
            return call_task(std::move(type), std::move(event_data), call_options());
        });
    }
    /// \overload
    /// Without `event_data`, with the session's defaults.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto call(std::string type, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token),
                                       [&] { return call_task(std::move(type), nullptr, call_options()); });
    }
    /// \overload
    /// Without `event_data`, filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto call(std::string type, diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag,
                                       [&] { return call_task(std::move(type), nullptr, call_options()); });
    }

    /// The next unsolicited frame, waiting at most `timeout`; nullopt on timeout or when
    /// the session stops (close, destroy, a final failure) while nothing is queued.
    /// Several callers may wait at once: each frame goes to one of them. Cancelling the
    /// caller throws operation_aborted (completes with it, through a token).
    template <completion_token_for<std::optional<boost::json::value>> Token = default_token>
    auto receive(std::chrono::milliseconds timeout, Token&& token = {})
    {
        return run<std::optional<boost::json::value>>(std::forward<Token>(token),
                                                      [&] { return receive_task(timeout); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<std::optional<boost::json::value>> Token = default_token>
    auto receive(std::chrono::milliseconds timeout, diagnostics& diag, Token&& token = {})
    {
        return run<std::optional<boost::json::value>>(std::forward<Token>(token), diag,
                                                      [&] { return receive_task(timeout); });
    }
    /// The next unsolicited frame if one is queued.
    std::optional<boost::json::value> try_receive();

    /// Closes the connection now; pending requests fail with errc::closed, waiting
    /// `receive()` callers get nullopt.
    void close() noexcept;

    /// The `client_id` read() sends (session_options::client_id or a random one); empty
    /// when moved-from.
    const std::string& client_id() const noexcept;
    /// A snapshot of the counters, the "now" ones included (all zero when moved-from).
    session_stats stats() const noexcept;
    /// True while the WebSocket is up (false while reconnecting, after a stop, or moved-from).
    bool is_connected() const noexcept;

    struct impl;
private:
    explicit session(std::shared_ptr<impl> p) noexcept;

    // The coroutines behind the operations above (src/session.cpp).
    static task<session> open_task(const config& cfg, const session_record& record, const session_options& opts);
    static task<session> open_task(const config& cfg, const std::string& session_endpoint, const session_options& opts);
    /// open() for the token path: every argument copied before it returns.
    static task<session> open_copied(const config& cfg, const std::string& session_endpoint,
                                     const session_options& opts);
    task<session_record> status_task(call_options o);
    task<validation> validate_task(call_options o);
    task<read_result> read_task(call_options o);
    task<read_result> read_task(std::string&& client_id, call_options o);
    task<boost::json::value> destroy_task(call_options o);
    task<boost::json::value> set_input_stream_task(const input_stream& s, call_options o);
    task<boost::json::value> query_task(const query_request& q, call_options o);
    task<boost::json::value> update_task(boost::json::value&& data, call_options o);
    task<void> heartbeat_task(call_options o);
    task<boost::json::value> call_task(std::string&& type, boost::json::value&& event_data, call_options o);
    task<std::optional<boost::json::value>> receive_task(std::chrono::milliseconds timeout);

    /// The empty session a failed open completes with through a token (see
    /// detail::failed_result): a moved-from session.
    friend session lens_failed_result(std::type_identity<session>) noexcept { return session(nullptr); }

    /// Where open() runs on the token path: the completion handler's executor.
    static detail::handler_executor_t handler_executor() noexcept { return detail::handler_executor_t{"session.open"}; }
    /// The executor the token path spawns on; empty for a moved-from session.
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
