// The emulator's in-memory state and the pieces its surfaces share.
//
// Everything here runs on the server's one executor: no locks, no strands.
// The REST, WebSocket and SSE surfaces are thin: they parse, apply their fault
// knobs and call into `server::impl`, which owns every lens, session and file.
#pragma once

#include <lens/emulator.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lens::emulator::detail {

class sse_feed;

/// A lens: its public record `{lens_id, lens_name, lens_config}`.
struct lens_entry {
    std::string id;
    boost::json::object record;
    bool builtin = false;
};

/// Where a lens writes its results: `lens_config.output_streams`.
enum class lens_output {
    none,    ///< no writer the emulator knows (`websocket_writer`: replies only)
    sse,     ///< `server_sent_events_writer`: the SSE consumer
    mailbox, ///< `websocket_mailbox_writer`: the WebSocket mailbox drained by `session.read`
};

/// What a session of a lens does, derived from the lens's configuration (custom_lens.cpp),
/// built-in lenses included: their records are configurations like any other, so a
/// registered or cloned lens with the same configuration behaves the same.
struct lens_behaviour {
    lens_output output = lens_output::none;
    bool reads_streams = false;   ///< input streams produce the activity monitor's results (on SSE)
    bool takes_updates = false;   ///< each `session.update` produces one result on `output`
    bool answers_queries = false; ///< answers `model.query` (the query lens's behaviour)
    /// Why the emulator cannot run the configuration (unknown processors); `session.validate`
    /// reports them and the session produces nothing.
    std::vector<std::string> not_emulated;
};

/// The behaviour of a lens record `{lens_id, lens_name, lens_config}` (custom_lens.cpp).
lens_behaviour behaviour_of(const boost::json::object& lens_record);

/// The configured input streams of a lens record: the `input_streams` entries that carry a
/// `stream_config` (an entry without one only declares a type the lens accepts).
std::vector<boost::json::object> configured_input_streams(const boost::json::object& lens_record);

struct session_state {
    std::string id;
    std::string lens_id;
    lens_behaviour behaviour;
    boost::json::object lens; ///< the lens record as it was at create time
    /// `lens_config.model_parameters` at create time, changed by `session.modify`,
    /// answered by `session.get`.
    boost::json::object model_parameters;
    /// What `session.validate` reports: processors not emulated, configured input streams
    /// that were rejected at create time.
    boost::json::array problems;
    std::size_t updates_fed = 0; ///< `session.update`s that produced a result
    bool destroyed = false;
    double registration_timestamp = 0;
    double session_start_timestamp = 0;
    double last_event_timestamp = 0;
    double last_update_timestamp = 0;
    double session_destroyed_timestamp = 0; ///< meaningful once destroyed
    std::size_t num_active_connections = 0;
    std::size_t num_updates = 0;
    std::size_t num_inputs = 0;
    std::size_t num_outputs = 0;
    std::size_t num_events = 0;
    std::string input_data_stream_id;
    std::string output_data_stream_id;
    /// The WebSocket mailbox: `{timestamp, type, data}` messages, never trimmed, so
    /// that a new client id can replay from the start.
    std::vector<boost::json::object> mailbox;
    std::map<std::string, std::size_t, std::less<>> read_cursors;
    std::shared_ptr<sse_feed> feed;
};

/// Contents kept on disk: `size` bytes from `offset` of the file `path` (a spooled upload
/// body, the file part's bytes inside it). The file is removed with the last reference,
/// so a download in progress outlives a delete or a replacement.
struct disk_file {
    std::filesystem::path path;
    std::uint64_t offset = 0;
    std::uint64_t size = 0;

    explicit disk_file(std::filesystem::path p) : path(std::move(p)) {}
    ~disk_file()
    {
        std::error_code ignored;
        std::filesystem::remove(path, ignored);
    }
    disk_file(const disk_file&) = delete;
    disk_file& operator=(const disk_file&) = delete;
};

/// A fresh path in the system's temporary directory for a spooled upload.
std::filesystem::path spool_path();

struct stored_file {
    std::string id;           ///< the basename; what stream configs name
    std::string uid;
    std::string content_type;
    std::string bytes;        ///< the contents, unless `on_disk`
    std::shared_ptr<const disk_file> on_disk; ///< the contents of a spooled upload
    double upload_timestamp = 0;

    std::uint64_t size() const noexcept { return on_disk ? on_disk->size : bytes.size(); }
};

/// The real server spells one session state several ways depending on the call
/// (docs/protocol.md §2.2); the emulator reproduces that deliberately so clients must normalise:
///   create reply          "LensSessionStatus.SESSION_STATUS_REGISTERED" (then RUNNING)
///   REST records          "SESSION_STATUS_RUNNING"
///   WebSocket status      "3" (the bare enum number of RUNNING)
///   destroyed, anywhere   "LensSessionStatus.SESSION_STATUS_STALE"
enum class status_spelling { create_reply, rest, websocket };

/// Something the server must be able to close when it stops (a connection).
class closable {
public:
    virtual ~closable() = default;
    virtual void close() = 0;
};

/// The answer to one session event, shared by the WebSocket and `events/process`.
struct event_reply {
    boost::json::value frame;            ///< the whole reply (frame on the WebSocket, body over REST)
    std::string type;                    ///< replies of one type keep request order
    std::chrono::milliseconds delay{0};  ///< the lens's thinking time before the reply exists
};

// ---- small helpers (state.cpp) ---------------------------------------------
std::string random_hex(std::size_t bytes);
std::string random_uid(); ///< uuid-like: 8-4-4-4-12 hex
double now_seconds();     ///< seconds since the epoch, as the API's timestamps
/// Strict base64 (whitespace ignored); nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view text);
/// The content type the API accepts for a file name, empty when the extension is rejected.
std::string content_type_for(std::string_view file_name);
/// Parses a JSON text; nullopt (and `error` set) when malformed.
std::optional<boost::json::value> parse_json(std::string_view text, std::string& error);

/// The built-in lenses of `builtin::`, with realistic records.
std::vector<lens_entry> builtin_lenses();

// ---- multipart/form-data (multipart.cpp) -----------------------------------
struct form_part {
    std::string name;
    std::string file_name;
    std::string content_type;
    std::string body;
};
/// Parses a multipart/form-data body; nullopt when the body or the boundary is malformed.
std::optional<std::vector<form_part>> parse_multipart(std::string_view content_type_header, std::string_view body);
/// A part of a multipart body on disk: its headers, and where its bytes are in the file.
struct spooled_part {
    std::string name;
    std::string file_name;
    std::string content_type;
    std::uint64_t offset = 0;
    std::uint64_t size = 0;
};
/// Parses a multipart/form-data body held in the file `path` a window at a time (the
/// same grammar as parse_multipart); nullopt when malformed or unreadable.
std::optional<std::vector<spooled_part>> parse_multipart_file(std::string_view content_type_header,
                                                              const std::filesystem::path& path);

// ---- TLS (tls.cpp) ---------------------------------------------------------
struct generated_certificates {
    std::string ca_pem;
    std::string server_cert_pem;
    std::string server_key_pem;
};
/// A fresh CA and a server certificate it signed, valid for localhost, 127.0.0.1 and `host`.
generated_certificates generate_certificates(const std::string& host);

} // namespace lens::emulator::detail

namespace lens::emulator {

struct server::impl : std::enable_shared_from_this<server::impl> {
    impl(boost::asio::any_io_executor ex, options o);
    ~impl();

    boost::asio::any_io_executor executor;
    options opts; ///< the live knobs; at a stable address because SSE feeds keep a reference
    emulator::stats counters;
    boost::asio::ip::tcp::acceptor acceptor;
    std::optional<boost::asio::ssl::context> tls; ///< engaged in TLS mode
    unsigned short bound_port = 0; ///< kept: the acceptor is closed after stop()
    std::string ca_path;
    bool ca_path_is_temporary = false;
    bool started = false;
    bool stopped = false;

    /// Sequence number of REST requests, for the `*_every_nth` knobs.
    std::uint64_t rest_sequence = 0;

    std::vector<detail::lens_entry> lenses; ///< built-ins first, then registered ones in order
    std::vector<std::shared_ptr<detail::session_state>> session_order;
    std::unordered_map<std::string, std::shared_ptr<detail::session_state>> sessions;
    std::deque<std::string> destroyed_order; ///< to forget the oldest destroyed sessions
    std::map<std::string, detail::stored_file, std::less<>> files;

    std::map<std::uint64_t, std::weak_ptr<detail::closable>> connections;
    std::uint64_t next_connection_id = 0;

    // ---- addresses
    std::string host_for_urls() const;
    std::string http_base() const; ///< "http(s)://HOST:PORT/v0.5"
    std::string session_endpoint(std::string_view session_id) const;

    // ---- lenses
    detail::lens_entry* find_lens(std::string_view id);
    /// An input stream checked as `input_stream.set` checks it.
    struct input_check {
        boost::json::array errors;              ///< empty: valid
        const std::string* file_bytes = nullptr; ///< a file reader's file, when it exists
    };
    input_check check_input_stream(std::string_view stream_type, const boost::json::object& stream_config) const;
    /// Starts the input streams of `s`'s lens configuration, at create time.
    void start_configured_inputs(detail::session_state& s);

    // ---- sessions
    std::shared_ptr<detail::session_state> find_session(std::string_view id) const;
    std::size_t live_sessions() const;
    /// Creates a session of `lens`; the caller checked the session cap.
    std::shared_ptr<detail::session_state> create_session(const detail::lens_entry& lens);
    /// Marks the session STALE and ends its SSE consumers. Idempotent.
    void destroy_session(detail::session_state& s);
    boost::json::object session_record(const detail::session_state& s, detail::status_spelling spelling) const;
    void append_mailbox(detail::session_state& s, std::string_view type, boost::json::value data);

    // ---- events (events.cpp): one handler for the WebSocket and `events/process`
    detail::event_reply process_event(detail::session_state& s, std::string_view type,
                                      const boost::json::value& event_data);

    // ---- connections
    std::uint64_t track(std::weak_ptr<detail::closable> c);
    void untrack(std::uint64_t id);
    void stop_all();
    /// Closes the acceptor and every connection, ends SSE streams. Idempotent.
    void stop_now();
};

} // namespace lens::emulator
