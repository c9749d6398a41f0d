// lens/client.hpp — the REST face of the Lens API.
//
// A `client` owns a configuration and a small pool of keep-alive connections
// to one endpoint. Every call is an awaitable with a deadline (`config::timeout`,
// retries and backoff included); transient failures (429, 5xx, connection
// failures) are retried with exponential backoff and jitter, honouring
// `Retry-After`. Calls that may have taken effect (create, register, clone,
// upload, events/process) are retried on a 5xx or a dropped connection only
// when the request surely never reached the server: a failed connect, or a 429
// (the server refused it unprocessed).
//
// Failures throw `lens::error` naming the operation: "sessions/create: 401 ...".
// Records handed out never contain the `api_key` field the server echoes.
//
// A client is a cheap handle: copies share the configuration and the connection
// pool. Every call keeps the shared state alive until it completes, so the last
// copy may be destroyed while calls are in flight; a moved-from client fails every
// call with errc::closed. Like Asio I/O objects, it is used from one thread (its
// executor's). Per-call cancellation works:
// `co_await (c.list_sessions() || timer.async_wait())`.
#pragma once

#include <lens/config.hpp>
#include <lens/error.hpp>
#include <lens/records.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lens {

template <class T>
using task = boost::asio::awaitable<T>;

class session;
struct session_options;
class event_stream;
struct event_stream_options;
namespace detail { class endpoint; }

/// The REST counters of a client and its copies (`client::stats()`): every call and
/// every attempt, by outcome. The one place they live; sessions and event streams
/// keep their own (`session_stats`, `event_stream_stats`). Plain increments, always on.
struct client_stats {
    std::size_t calls = 0;               ///< REST calls started
    std::size_t succeeded = 0;           ///< calls that got their reply
    std::size_t failed = 0;              ///< calls that ended with an error or were cancelled
    std::size_t attempts = 0;            ///< requests tried, first attempts and retries
    std::size_t retries = 0;             ///< attempts after the first
    std::size_t rate_limited = 0;        ///< attempts answered 429
    std::size_t server_errors = 0;       ///< attempts answered 5xx
    std::size_t http_errors = 0;         ///< attempts answered another error status (401, 404, 400...)
    std::size_t timeouts = 0;            ///< attempts that ran out of time, and 408 answers
    std::size_t connection_failures = 0; ///< attempts that could not connect (nothing sent)
    std::size_t connections_lost = 0;    ///< attempts whose connection dropped after the request was sent
    std::size_t connections_opened = 0;  ///< new connections (the other attempts reused a kept-alive one)
    std::uint64_t bytes_sent = 0;        ///< request body bytes
    std::uint64_t bytes_received = 0;    ///< reply body bytes
};

class client {
public:
    client(boost::asio::any_io_executor executor, config cfg);
    ~client();
    client(const client&) = default;
    client& operator=(const client&) = default;
    client(client&&) noexcept;
    client& operator=(client&&) noexcept;

    /// Both throw errc::closed on a moved-from client.
    const config& configuration() const;
    boost::asio::any_io_executor get_executor() const;
    /// The REST counters of this client and its copies; empty on a moved-from client.
    client_stats stats() const noexcept;

    // ---- sessions and streams that share this client's endpoint ------------
    // Opened from the client, they use its TLS context (trust store loaded once), its
    // header checks, its redaction and its session endpoint rule (config::session_hosts).
    // Include lens/session.hpp and lens/event_stream.hpp to use them.

    /// Opens the control channel of `record.session_endpoint` (see session::open).
    task<session> open_session(const session_record& record, const session_options& opts) const;
    /// \overload with default options (an overload, not a default argument: g++ 12).
    task<session> open_session(const session_record& record) const;
    /// The SSE consumer of `session_id`; connects on its first `connect()` or `next()`.
    event_stream events(std::string session_id, const event_stream_options& opts) const;
    /// \overload with default options.
    event_stream events(std::string session_id) const;

    // ---- lenses --------------------------------------------------------
    task<boost::json::value> lens_info();
    task<std::vector<lens_record>> list_lenses();
    task<lens_record> get_lens(std::string lens_id);
    /// POST lens/register: `{"lens_config": {"lens_name": name, "lens_config": lens_config}}`.
    task<lens_record> register_lens(std::string lens_name, boost::json::object lens_config);
    task<lens_record> clone_lens(std::string lens_id);
    /// POST lens/modify with `fields` merged beside `lens_id`.
    task<lens_record> modify_lens(std::string lens_id, boost::json::object fields);
    task<void> delete_lens(std::string lens_id);

    // ---- sessions ------------------------------------------------------
    task<boost::json::value> sessions_info();
    task<std::vector<session_record>> list_sessions();
    task<session_record> get_session(std::string session_id);
    task<session_record> create_session(std::string lens_id);
    task<session_record> destroy_session(std::string session_id);
    /// POST lens/sessions/events/process: the reply the WebSocket would give, raw (scrubbed).
    task<boost::json::value> process_event(std::string session_id, std::string type,
                                           boost::json::value event_data);

    // ---- files ---------------------------------------------------------
    /// Multipart upload of a local file. The content type comes from the extension
    /// (png, jpg/jpeg, mp4, csv, json/jsonl/txt); others are rejected before sending.
    task<file_record> upload_file(std::filesystem::path path);
    /// Multipart upload of in-memory contents under `file_name`.
    task<file_record> upload_file(std::string file_name, std::string contents);
    /// POST files/base64: the same multipart with the content base64-encoded.
    task<file_record> upload_file_base64(std::string file_name, std::string contents);
    task<boost::json::value> files_info();
    task<std::vector<file_record>> list_files();
    task<file_record> get_file(std::string file_id);
    task<std::string> download_file(std::string file_id);
    task<void> delete_file(std::string file_id);

    struct impl;

private:
    /// The moved-from check: a clear error naming `operation`, never a null dereference.
    impl& checked(const char* operation) const;
    std::shared_ptr<impl> impl_;
};

/// The MIME type the Lens API expects for a file name, or empty when the
/// extension is not one it accepts.
std::string_view content_type_for(std::string_view file_name) noexcept;

} // namespace lens
