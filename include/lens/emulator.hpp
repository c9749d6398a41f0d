/// \file
/// lens/emulator.hpp — a faithful local emulator of the Lens API.
///
/// One Beast server (HTTP/1.1 keep-alive, optionally TLS) serving the REST,
/// WebSocket and SSE surfaces of docs/protocol.md from in-memory state. It runs on
/// whatever executor it is given: tests put client and emulator on one
/// io_context; benchmarks give it a thread of its own.
///
/// Knobs are plain fields read at the moment they apply; change them from the
/// emulator's own executor (in tests: the same thread that runs everything).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace lens::emulator {

/// The built-in lenses, always present (`lens/metadata` lists them).
///
/// Registered and cloned lenses run too: a session's behaviour follows from its lens's
/// configuration (`model_pipeline` processors, `input_streams`, `output_streams`), mapped
/// onto the behaviours of these three — the built-in lenses themselves go through the same
/// mapping. Configured input streams start with the session; `session.update` feeds the
/// lenses that take sensor data; `session.get` / `session.modify` read and change the
/// session's model parameters; a processor the emulator does not know makes
/// `session.validate` answer `is_valid: false`. The whole table is in docs/protocol.md §6,
/// "What the emulator understands".
namespace builtin {
/// Writes to the SSE consumer: `csv_file_reader` windows → `inference.result`,
/// `video_file_reader` frames → `frame.processed` + `inference.result`, and one
/// `inference.result` per `session.update` (`lens_timeseries_state_processor`).
inline constexpr std::string_view activity_monitor = "lns-emu-activity-monitor";
/// Writes to the WebSocket mailbox drained by `session.read`.
inline constexpr std::string_view mailbox = "lns-emu-mailbox";
/// Answers `model.query` (image QA and bounding boxes), deterministically.
inline constexpr std::string_view query = "lns-emu-query";
} // namespace builtin

// Session status spellings: the emulator varies them deliberately, as the real server
// does (docs/protocol.md §2.2), so that clients must normalise:
//   `lens/sessions/create` reply                "LensSessionStatus.SESSION_STATUS_REGISTERED"
//   REST records (sessions/metadata, destroy)   "SESSION_STATUS_RUNNING"
//   `session.status` (WebSocket, events/process) "3"
//   a destroyed session, everywhere             "LensSessionStatus.SESSION_STATUS_STALE"
// Session records carry `api_key` (the caller's key), as the real ones do.

/// Faults of the REST surface (every HTTP request other than WebSocket upgrades and SSE).
///
/// Each REST request is numbered from 1 (the `*_every_nth` knobs count with it) and
/// gets at most one fault, decided on arrival in this order: drop, fail, html,
/// garbage, oversize (a `*_next` knob before its `*_every_nth` twin). Injected faults
/// happen before the request touches any state, so retrying one is always safe.
/// `delay` applies to every reply, faulty or not (a drop has no reply). Authorization
/// is checked after the faults, as behind a proxy.
struct rest_knobs {
    std::chrono::milliseconds delay{0};   ///< added before every reply
    unsigned fail_every_nth = 0;          ///< every Nth request is answered with `fail_status` (0: never)
    unsigned fail_next = 0;               ///< the next N requests are answered with `fail_status`
    unsigned fail_status = 503;           ///< the HTTP status of injected failures
    unsigned retry_after_seconds = 0;     ///< adds `Retry-After` to injected failures when non-zero
    unsigned drop_every_nth = 0;          ///< every Nth request: the connection is closed without a reply
    unsigned drop_next = 0;               ///< the next N requests are dropped that way
    unsigned html_next = 0;               ///< the next N replies are `502` with an HTML page
    unsigned garbage_next = 0;            ///< the next N replies are `200` with a non-JSON body
    std::size_t oversize_body = 0;        ///< when non-zero, the next reply is a 200 JSON body of this many bytes (then reset to 0)
    std::string fail_body;                ///< when non-empty, the body of injected failures (as given: hostile bodies)
    std::string body_next;                ///< when non-empty, the next reply is a 200 with this body (then cleared)
};

/// Faults of the WebSocket surface.
///
/// Upgrades are checked in this order: `refuse_upgrade_status`, then the key
/// (`Authorization: Bearer` or the `authenticationauthorization.bearer.<key>`
/// subprotocol; 401), then the session (unknown or destroyed: 404).
struct ws_knobs {
    /// Close each connection (abruptly, at the TCP level) on receiving its Nth request
    /// frame, which is never answered: a request in flight at a disconnect (0: never).
    unsigned drop_after_frames = 0;
    std::chrono::milliseconds reply_delay{0}; ///< added before every reply
    unsigned refuse_upgrade_status = 0;   ///< answer upgrades with this HTTP status (0: accept)
    unsigned refuse_next_upgrades = 0;    ///< ...for only the next N upgrades (0: every upgrade while status is set);
                                          ///< when the count runs out, `refuse_upgrade_status` is reset to 0
    unsigned accept_then_close_next = 0;  ///< the next N upgrades complete (101) and the TCP connection is closed at once
    /// On the Nth request frame of a connection, go silent: stop reading (so pings get no
    /// pong) and answering, keeping the TCP connection open — a dead peer. One-shot: the
    /// knob resets to 0 when it fires, so the client's next connection is served.
    unsigned silent_after_frames = 0;
    unsigned malformed_next = 0;          ///< the next N replies are preceded by the text frame `{not json`
    /// The next N requests get `{"type":"error","message":"injected error"}` instead of their
    /// reply; the request itself has no effect.
    unsigned error_frame_next = 0;
    std::chrono::milliseconds query_latency{5};    ///< the query lens's thinking time
    /// A `model.query` whose focus is exactly "emulator:timeout" is answered after this with
    /// `{"type":"model.query.response","message":"Response timed out for query"}`.
    std::chrono::milliseconds query_timeout_after{60000};
};

/// Faults and pacing of the SSE surface.
struct sse_knobs {
    std::chrono::milliseconds heartbeat_interval{10000};  ///< spacing of `sse.stream.heartbeat`
    std::chrono::milliseconds result_interval{50};  ///< spacing of activity-monitor results
    std::size_t csv_window_rows = 10;               ///< CSV rows per inference.result
    unsigned cut_after_events = 0;   ///< close each consumer connection after N events (0: never)
    /// The line ending the stream is written with.
    enum class line_ending { lf, crlf, cr };
    line_ending line_end = line_ending::lf;   ///< every line end of the stream uses it
    std::size_t chunk_size = 0;      ///< write the stream in chunks of this many bytes (0: whole events)
    bool bom = false;                ///< start each stream with a UTF-8 BOM
    bool comments = false;           ///< interleave `: comment` lines
    bool stall = false;              ///< stop writing anything (connection stays open)
};

/// What the emulator serves and how; `server::knobs()` changes them while it runs.
struct options {
    std::string host = "127.0.0.1";          ///< the address to listen on
    unsigned short port = 0;                 ///< 0: an ephemeral port
    bool tls = false;                        ///< serve https/wss with a certificate generated at start-up
    std::string ca_file;                     ///< where to write the CA (TLS); empty: a temporary file
    std::string api_key = "emulator-key";    ///< the only key accepted
    std::size_t max_sessions = 64;           ///< live sessions before create answers "Failed to allocate lens runner"
    /// Uploads to `files` (not `files/base64`) announcing a Content-Length over this many
    /// bytes are spooled to a temporary file rather than memory, and their downloads are
    /// served from it a chunk at a time: the emulator accepts and serves files of any
    /// size in bounded memory. (A spooled file's bytes are not seen by file readers of
    /// input streams, which work on in-memory files.) The files are removed with the
    /// emulator or when deleted or replaced.
    std::uint64_t spool_uploads_over = 64ull * 1024 * 1024;
    rest_knobs rest;                         ///< faults of the REST surface
    ws_knobs ws;                             ///< faults of the WebSocket surface
    sse_knobs sse;                           ///< faults and pacing of the SSE surface
};

/// Counters for tests.
struct stats {
    std::size_t tcp_connections = 0;     ///< connections accepted (TLS handshakes that fail included)
    std::size_t http_requests = 0;       ///< REST requests (not upgrades, not SSE consumers), faulty ones included
    std::size_t ws_upgrades = 0;         ///< upgrade requests, refused ones included
    std::size_t ws_frames_received = 0;  ///< request frames over every WebSocket
    std::size_t sse_connections = 0;     ///< consumer requests handed to the SSE surface
    std::size_t live_sessions = 0;       ///< sessions created and not destroyed
    std::size_t spooled_uploads = 0;     ///< upload bodies spooled to disk (options::spool_uploads_over)
};

/// The emulator: a listening socket and the state of its lenses, sessions and files,
/// served on the executor it was given.
class server {
public:
    /// Binds and listens at once (throws `lens::error` on failure); serving starts with `start()`.
    server(boost::asio::any_io_executor executor, options opts = {});
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    /// Starts accepting. Returns immediately; the executor's context does the work.
    void start();
    /// Stops accepting, closes every connection; ends SSE streams and WebSockets, and
    /// cancels every pending knob delay, so the executor's `run()` returns.
    /// Called from a thread other than the one running the emulator's io_context, it
    /// hands the work to that thread and returns at once (the destructor does the same).
    void stop();

    /// "http://127.0.0.1:PORT/v0.5", or https in TLS mode.
    std::string endpoint() const;
    /// The port listened on (the ephemeral one chosen when `options::port` was 0).
    unsigned short port() const;
    /// The PEM file of the CA that signed the server certificate (TLS mode), else empty.
    const std::string& ca_file() const;
    /// The API key the emulator accepts (`options::api_key`).
    const std::string& api_key() const;

    /// The live knobs; changes apply to what happens next.
    options& knobs();
    /// The counters so far.
    stats statistics() const;

    struct impl;
private:
    std::shared_ptr<impl> impl_;
};

/// The answer the query lens gives (its `event_data.result`), exposed so tests can
/// check every reply's content: derived from the template, the focus and the image bytes.
/// `image_qa_template_task` gives a string, `image_bbox_template_task` an array of boxes.
boost::json::value expected_query_answer(std::string_view template_name, std::string_view focus,
                                         std::string_view image_bytes);

} // namespace lens::emulator
