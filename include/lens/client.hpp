/// \file
/// lens/client.hpp — the REST face of the Lens API.
///
/// A `client` owns a configuration and a small pool of keep-alive connections
/// to one endpoint. Every call is an awaitable with a deadline (`config::timeout`,
/// retries and backoff included) — except the streamed file transfers
/// (`upload_file(path)`, `download_file_to`, `download_file_to_sink`), whose deadline
/// bounds stalls instead (lens/transfer.hpp); transient failures (429, 5xx, connection
/// failures) are retried with exponential backoff and jitter, honouring
/// `Retry-After`. Calls that may have taken effect (create, register, clone,
/// upload, events/process) are retried on a 5xx or a dropped connection only
/// when the request surely never reached the server: a failed connect, or a 429
/// (the server refused it unprocessed).
///
/// Failures throw `lens::error` naming the operation: "sessions/create: 401 ...".
/// Every operation also takes an Asio completion token (lens/completion_token.hpp):
/// `co_await c.list_sessions(asio::as_tuple(asio::use_awaitable))` reports the failure
/// as an error code instead, with the details in an optional `lens::diagnostics&`.
/// Records handed out never contain the `api_key` field the server echoes.
///
/// A client is a cheap handle: copies share the configuration and the connection
/// pool. Every call keeps the shared state alive until it completes, so the last
/// copy may be destroyed while calls are in flight; a moved-from client fails every
/// call with errc::closed. Like Asio I/O objects, it is used from one thread (its
/// executor's). Per-call cancellation works:
/// `co_await (c.list_sessions() || timer.async_wait())`.
#pragma once

#include <lens/completion_token.hpp>
#include <lens/config.hpp>
#include <lens/detail/async_op.hpp>
#include <lens/diagnostics.hpp>
#include <lens/error.hpp>
#include <lens/page.hpp>
#include <lens/records.hpp>
#include <lens/transfer.hpp>

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
    /// TLS handshakes completed by every connection of this client and of its sessions and
    /// streams (REST, WebSocket, SSE), all sharing the client's one TLS context.
    std::size_t tls_handshakes = 0;
    /// Of those, the ones that resumed an earlier session with the same host and port
    /// (no certificate exchange): the client keeps the latest session ticket per origin.
    std::size_t tls_resumed = 0;
};

/// The REST client of the Lens API: a cheap, copyable handle to one endpoint's
/// configuration, TLS context and keep-alive connection pool (see the file description
/// for deadlines, retries, errors and threading).
class client {
public:
    /// Validates `cfg` and takes it; every operation runs on `executor`. Throws lens::error
    /// (errc::invalid_argument) for an endpoint that is not an http(s) URL, a control
    /// character in the API key, user agent or a session host (header injection), or a CA
    /// file that cannot be loaded; nothing is sent then. Connects lazily, on the first call.
    client(boost::asio::any_io_executor executor, config cfg);
    /// Drops this handle; calls in flight keep the shared state alive until they complete.
    ~client();
    /// Another handle to the same configuration, connection pool and counters.
    client(const client&) = default;
    /// Makes this a handle to `other`'s configuration, connection pool and counters.
    client& operator=(const client&) = default;
    /// Takes over `other`'s handle; `other` then fails every call with errc::closed.
    client(client&& other) noexcept;
    /// Takes over `other`'s handle; `other` then fails every call with errc::closed.
    client& operator=(client&& other) noexcept;

    /// The configuration the client was made with. Throws errc::closed on a moved-from client.
    const config& configuration() const;
    /// The executor every operation runs on. Throws errc::closed on a moved-from client.
    boost::asio::any_io_executor get_executor() const;
    /// The REST counters of this client and its copies; empty on a moved-from client.
    client_stats stats() const noexcept;

    // ---- sessions and streams that share this client's endpoint ------------
    // Opened from the client, they use its TLS context (trust store loaded once), its
    // header checks, its redaction and its session endpoint rule (config::session_hosts).
    // Include lens/session.hpp and lens/event_stream.hpp to use them.
    //
    // Every asynchronous operation below takes a completion token last (default:
    // `co_await op(...)`, which throws lens::error) and has an overload taking a
    // `lens::diagnostics&` before the token: see lens/completion_token.hpp. The
    // arguments are copied before the operation's initiating function returns.

    /// Opens the control channel of `record.session_endpoint` (see session::open), on this
    /// client's executor.
    template <completion_token_for<session> Token = default_token>
    auto open_session(const session_record& record, const session_options& opts, Token&& token = {}) const
    {
        return run<session>(std::forward<Token>(token), [&] { return open_session_task(record, opts); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<session> Token = default_token>
    auto open_session(const session_record& record, const session_options& opts, diagnostics& diag,
                      Token&& token = {}) const
    {
        return run<session>(std::forward<Token>(token), diag, [&] { return open_session_task(record, opts); });
    }
    /// \overload
    /// With default options (an overload, not a default argument: g++ 12).
    template <completion_token_for<session> Token = default_token>
    auto open_session(const session_record& record, Token&& token = {}) const
    {
        return run<session>(std::forward<Token>(token), [&] { return open_session_task(record); });
    }
    /// \overload
    /// With default options, filling `diag` on failure.
    template <completion_token_for<session> Token = default_token>
    auto open_session(const session_record& record, diagnostics& diag, Token&& token = {}) const
    {
        return run<session>(std::forward<Token>(token), diag, [&] { return open_session_task(record); });
    }
    /// The SSE consumer of `session_id`; connects on its first `connect()` or `next()`.
    /// Throws errc::closed on a moved-from client, errc::invalid_argument for an
    /// `opts.last_event_id` that is not a valid header value.
    event_stream events(std::string session_id, const event_stream_options& opts) const;
    /// \overload
    /// With default options (an overload, not a default argument: g++ 12).
    event_stream events(std::string session_id) const;

    // ---- lenses ------------------------------------------------------------
    /// GET lens/info: the service description, raw.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto lens_info(Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), [&] { return lens_info_task(); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto lens_info(diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag, [&] { return lens_info_task(); });
    }
    /// Every lens the account sees (lens/metadata).
    template <completion_token_for<std::vector<lens_record>> Token = default_token>
    auto list_lenses(Token&& token = {})
    {
        return run<std::vector<lens_record>>(std::forward<Token>(token), [&] { return list_lenses_task(); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<std::vector<lens_record>> Token = default_token>
    auto list_lenses(diagnostics& diag, Token&& token = {})
    {
        return run<std::vector<lens_record>>(std::forward<Token>(token), diag, [&] { return list_lenses_task(); });
    }
    /// One page of the lenses (lens/metadata with `p`'s shard_index and max_items_per_shard;
    /// see lens/page.hpp). An index past the end is an empty page.
    template <completion_token_for<std::vector<lens_record>> Token = default_token>
    auto list_lenses(page p, Token&& token = {})
    {
        return run<std::vector<lens_record>>(std::forward<Token>(token), [&] { return list_lenses_task(p); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<std::vector<lens_record>> Token = default_token>
    auto list_lenses(page p, diagnostics& diag, Token&& token = {})
    {
        return run<std::vector<lens_record>>(std::forward<Token>(token), diag, [&] { return list_lenses_task(p); });
    }
    /// The lens `lens_id` (lens/metadata filtered by it); errc::not_found when absent.
    template <completion_token_for<lens_record> Token = default_token>
    auto get_lens(std::string lens_id, Token&& token = {})
    {
        return run<lens_record>(std::forward<Token>(token), [&] { return get_lens_task(std::move(lens_id)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<lens_record> Token = default_token>
    auto get_lens(std::string lens_id, diagnostics& diag, Token&& token = {})
    {
        return run<lens_record>(std::forward<Token>(token), diag, [&] { return get_lens_task(std::move(lens_id)); });
    }
    /// POST lens/register: `{"lens_config": {"lens_name": name, "lens_config": lens_config}}`.
    template <completion_token_for<lens_record> Token = default_token>
    auto register_lens(std::string lens_name, boost::json::object lens_config, Token&& token = {})
    {
        return run<lens_record>(std::forward<Token>(token),
                                [&] { return register_lens_task(std::move(lens_name), std::move(lens_config)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<lens_record> Token = default_token>
    auto register_lens(std::string lens_name, boost::json::object lens_config, diagnostics& diag, Token&& token = {})
    {
        return run<lens_record>(std::forward<Token>(token), diag,
                                [&] { return register_lens_task(std::move(lens_name), std::move(lens_config)); });
    }
    /// POST lens/clone: a copy of `lens_id`.
    template <completion_token_for<lens_record> Token = default_token>
    auto clone_lens(std::string lens_id, Token&& token = {})
    {
        return run<lens_record>(std::forward<Token>(token), [&] { return clone_lens_task(std::move(lens_id)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<lens_record> Token = default_token>
    auto clone_lens(std::string lens_id, diagnostics& diag, Token&& token = {})
    {
        return run<lens_record>(std::forward<Token>(token), diag, [&] { return clone_lens_task(std::move(lens_id)); });
    }
    /// POST lens/modify with `fields` merged beside `lens_id`.
    template <completion_token_for<lens_record> Token = default_token>
    auto modify_lens(std::string lens_id, boost::json::object fields, Token&& token = {})
    {
        return run<lens_record>(std::forward<Token>(token),
                                [&] { return modify_lens_task(std::move(lens_id), std::move(fields)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<lens_record> Token = default_token>
    auto modify_lens(std::string lens_id, boost::json::object fields, diagnostics& diag, Token&& token = {})
    {
        return run<lens_record>(std::forward<Token>(token), diag,
                                [&] { return modify_lens_task(std::move(lens_id), std::move(fields)); });
    }
    /// POST lens/delete.
    template <completion_token_for<void> Token = default_token>
    auto delete_lens(std::string lens_id, Token&& token = {})
    {
        return run<void>(std::forward<Token>(token), [&] { return delete_lens_task(std::move(lens_id)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<void> Token = default_token>
    auto delete_lens(std::string lens_id, diagnostics& diag, Token&& token = {})
    {
        return run<void>(std::forward<Token>(token), diag, [&] { return delete_lens_task(std::move(lens_id)); });
    }
    // ---- sessions ----------------------------------------------------------
    /// GET lens/sessions/info: the service description, raw.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto sessions_info(Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), [&] { return sessions_info_task(); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto sessions_info(diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag, [&] { return sessions_info_task(); });
    }
    /// Every session of the account (lens/sessions/metadata).
    template <completion_token_for<std::vector<session_record>> Token = default_token>
    auto list_sessions(Token&& token = {})
    {
        return run<std::vector<session_record>>(std::forward<Token>(token), [&] { return list_sessions_task(); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<std::vector<session_record>> Token = default_token>
    auto list_sessions(diagnostics& diag, Token&& token = {})
    {
        return run<std::vector<session_record>>(std::forward<Token>(token), diag, [&] { return list_sessions_task(); });
    }
    /// One page of the sessions (lens/sessions/metadata with `p`'s shard_index and
    /// max_items_per_shard; see lens/page.hpp). An index past the end is an empty page.
    template <completion_token_for<std::vector<session_record>> Token = default_token>
    auto list_sessions(page p, Token&& token = {})
    {
        return run<std::vector<session_record>>(std::forward<Token>(token), [&] { return list_sessions_task(p); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<std::vector<session_record>> Token = default_token>
    auto list_sessions(page p, diagnostics& diag, Token&& token = {})
    {
        return run<std::vector<session_record>>(std::forward<Token>(token), diag,
                                                [&] { return list_sessions_task(p); });
    }
    /// The session `session_id` (lens/sessions/metadata filtered by it); errc::not_found when absent.
    template <completion_token_for<session_record> Token = default_token>
    auto get_session(std::string session_id, Token&& token = {})
    {
        return run<session_record>(std::forward<Token>(token), [&] { return get_session_task(std::move(session_id)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<session_record> Token = default_token>
    auto get_session(std::string session_id, diagnostics& diag, Token&& token = {})
    {
        return run<session_record>(std::forward<Token>(token), diag,
                                   [&] { return get_session_task(std::move(session_id)); });
    }
    /// POST lens/sessions/create: a new session of `lens_id`.
    template <completion_token_for<session_record> Token = default_token>
    auto create_session(std::string lens_id, Token&& token = {})
    {
        return run<session_record>(std::forward<Token>(token), [&] { return create_session_task(std::move(lens_id)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<session_record> Token = default_token>
    auto create_session(std::string lens_id, diagnostics& diag, Token&& token = {})
    {
        return run<session_record>(std::forward<Token>(token), diag,
                                   [&] { return create_session_task(std::move(lens_id)); });
    }
    /// POST lens/sessions/destroy (idempotent: retried like a read).
    template <completion_token_for<session_record> Token = default_token>
    auto destroy_session(std::string session_id, Token&& token = {})
    {
        return run<session_record>(std::forward<Token>(token),
                                   [&] { return destroy_session_task(std::move(session_id)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<session_record> Token = default_token>
    auto destroy_session(std::string session_id, diagnostics& diag, Token&& token = {})
    {
        return run<session_record>(std::forward<Token>(token), diag,
                                   [&] { return destroy_session_task(std::move(session_id)); });
    }
    /// POST lens/sessions/events/process: the reply the WebSocket would give, raw (scrubbed).
    template <completion_token_for<boost::json::value> Token = default_token>
    auto process_event(std::string session_id, std::string type, boost::json::value event_data, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), [&] {
            return process_event_task(std::move(session_id), std::move(type), std::move(event_data));
        });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto process_event(std::string session_id, std::string type, boost::json::value event_data, diagnostics& diag,
                       Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag, [&] {
            return process_event_task(std::move(session_id), std::move(type), std::move(event_data));
        });
    }
    // ---- files -------------------------------------------------------------
    /// Multipart upload of a local file, streamed from disk a chunk at a time (the file is
    /// never held in memory; see lens/transfer.hpp), with default `transfer_options`. The
    /// content type comes from the extension (png, jpg/jpeg, mp4, csv, json/jsonl/txt);
    /// others are rejected before sending, like a file that cannot be opened
    /// (errc::invalid_argument). Retried only when surely unprocessed (a failed connect, a 429).
    template <completion_token_for<file_record> Token = default_token>
    auto upload_file(std::filesystem::path path, Token&& token = {})
    {
        return run<file_record>(std::forward<Token>(token), [&] { return upload_file_task(std::move(path)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<file_record> Token = default_token>
    auto upload_file(std::filesystem::path path, diagnostics& diag, Token&& token = {})
    {
        return run<file_record>(std::forward<Token>(token), diag, [&] { return upload_file_task(std::move(path)); });
    }
    /// \overload
    /// With `opts`: the stall timeout, progress reports (of the file's bytes) and chunk size.
    template <completion_token_for<file_record> Token = default_token>
    auto upload_file(std::filesystem::path path, const transfer_options& opts, Token&& token = {})
    {
        return run<file_record>(std::forward<Token>(token), [&] { return upload_file_task(std::move(path), opts); });
    }
    /// \overload
    /// With `opts`, filling `diag` on failure.
    template <completion_token_for<file_record> Token = default_token>
    auto upload_file(std::filesystem::path path, const transfer_options& opts, diagnostics& diag, Token&& token = {})
    {
        return run<file_record>(std::forward<Token>(token), diag,
                                [&] { return upload_file_task(std::move(path), opts); });
    }
    /// Multipart upload of in-memory contents under `file_name`.
    template <completion_token_for<file_record> Token = default_token>
    auto upload_file(std::string file_name, std::string contents, Token&& token = {})
    {
        return run<file_record>(std::forward<Token>(token),
                                [&] { return upload_file_task(std::move(file_name), std::move(contents)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<file_record> Token = default_token>
    auto upload_file(std::string file_name, std::string contents, diagnostics& diag, Token&& token = {})
    {
        return run<file_record>(std::forward<Token>(token), diag,
                                [&] { return upload_file_task(std::move(file_name), std::move(contents)); });
    }
    /// POST files/base64: the same multipart with the content base64-encoded.
    template <completion_token_for<file_record> Token = default_token>
    auto upload_file_base64(std::string file_name, std::string contents, Token&& token = {})
    {
        return run<file_record>(std::forward<Token>(token),
                                [&] { return upload_file_base64_task(std::move(file_name), std::move(contents)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<file_record> Token = default_token>
    auto upload_file_base64(std::string file_name, std::string contents, diagnostics& diag, Token&& token = {})
    {
        return run<file_record>(std::forward<Token>(token), diag,
                                [&] { return upload_file_base64_task(std::move(file_name), std::move(contents)); });
    }
    /// GET files/info: the service description, raw.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto files_info(Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), [&] { return files_info_task(); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<boost::json::value> Token = default_token>
    auto files_info(diagnostics& diag, Token&& token = {})
    {
        return run<boost::json::value>(std::forward<Token>(token), diag, [&] { return files_info_task(); });
    }
    /// Every file of the account (files/metadata).
    template <completion_token_for<std::vector<file_record>> Token = default_token>
    auto list_files(Token&& token = {})
    {
        return run<std::vector<file_record>>(std::forward<Token>(token), [&] { return list_files_task(); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<std::vector<file_record>> Token = default_token>
    auto list_files(diagnostics& diag, Token&& token = {})
    {
        return run<std::vector<file_record>>(std::forward<Token>(token), diag, [&] { return list_files_task(); });
    }
    /// The file `file_id` (files/metadata/{id}).
    template <completion_token_for<file_record> Token = default_token>
    auto get_file(std::string file_id, Token&& token = {})
    {
        return run<file_record>(std::forward<Token>(token), [&] { return get_file_task(std::move(file_id)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<file_record> Token = default_token>
    auto get_file(std::string file_id, diagnostics& diag, Token&& token = {})
    {
        return run<file_record>(std::forward<Token>(token), diag, [&] { return get_file_task(std::move(file_id)); });
    }
    /// GET files/download/{id}: the contents, in memory (at most config::max_body_size
    /// bytes, within config::timeout); for large files see download_file_to.
    template <completion_token_for<std::string> Token = default_token>
    auto download_file(std::string file_id, Token&& token = {})
    {
        return run<std::string>(std::forward<Token>(token), [&] { return download_file_task(std::move(file_id)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<std::string> Token = default_token>
    auto download_file(std::string file_id, diagnostics& diag, Token&& token = {})
    {
        return run<std::string>(std::forward<Token>(token), diag,
                                [&] { return download_file_task(std::move(file_id)); });
    }
    /// GET files/download/{id} streamed into the file `path` (see lens/transfer.hpp): written
    /// a chunk at a time to `path` + ".part", renamed over `path` on success and removed on
    /// failure or cancellation; no size limit. Completes with the number of bytes written.
    /// A failed attempt that may be retried (a lost connection, a stall, a 5xx) starts the
    /// file over. Local file errors carry the OS's error code.
    template <completion_token_for<std::uint64_t> Token = default_token>
    auto download_file_to(std::string file_id, std::filesystem::path path, const transfer_options& opts,
                          Token&& token = {})
    {
        return run<std::uint64_t>(std::forward<Token>(token),
                                  [&] { return download_file_to_task(std::move(file_id), std::move(path), opts); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<std::uint64_t> Token = default_token>
    auto download_file_to(std::string file_id, std::filesystem::path path, const transfer_options& opts,
                          diagnostics& diag, Token&& token = {})
    {
        return run<std::uint64_t>(std::forward<Token>(token), diag,
                                  [&] { return download_file_to_task(std::move(file_id), std::move(path), opts); });
    }
    /// \overload
    /// With default `transfer_options` (an overload, not a default argument: g++ 12).
    template <completion_token_for<std::uint64_t> Token = default_token>
    auto download_file_to(std::string file_id, std::filesystem::path path, Token&& token = {})
    {
        return run<std::uint64_t>(std::forward<Token>(token),
                                  [&] { return download_file_to_task(std::move(file_id), std::move(path)); });
    }
    /// \overload
    /// With default `transfer_options`, filling `diag` on failure.
    template <completion_token_for<std::uint64_t> Token = default_token>
    auto download_file_to(std::string file_id, std::filesystem::path path, diagnostics& diag, Token&& token = {})
    {
        return run<std::uint64_t>(std::forward<Token>(token), diag,
                                  [&] { return download_file_to_task(std::move(file_id), std::move(path)); });
    }
    /// GET files/download/{id} handed to `sink` a chunk at a time (see lens/transfer.hpp);
    /// no size limit: the sink decides (by throwing). Completes with the number of bytes
    /// delivered. Retried only while the sink has received nothing.
    template <completion_token_for<std::uint64_t> Token = default_token>
    auto download_file_to_sink(std::string file_id, transfer_sink sink, const transfer_options& opts,
                               Token&& token = {})
    {
        return run<std::uint64_t>(std::forward<Token>(token), [&] {
            return download_file_to_sink_task(std::move(file_id), std::move(sink), opts);
        });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<std::uint64_t> Token = default_token>
    auto download_file_to_sink(std::string file_id, transfer_sink sink, const transfer_options& opts,
                               diagnostics& diag, Token&& token = {})
    {
        return run<std::uint64_t>(std::forward<Token>(token), diag, [&] {
            return download_file_to_sink_task(std::move(file_id), std::move(sink), opts);
        });
    }
    /// DELETE files/delete/{id}.
    template <completion_token_for<void> Token = default_token>
    auto delete_file(std::string file_id, Token&& token = {})
    {
        return run<void>(std::forward<Token>(token), [&] { return delete_file_task(std::move(file_id)); });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<void> Token = default_token>
    auto delete_file(std::string file_id, diagnostics& diag, Token&& token = {})
    {
        return run<void>(std::forward<Token>(token), diag, [&] { return delete_file_task(std::move(file_id)); });
    }

    struct impl;

private:
    // The coroutines behind the operations above (src/client.cpp).
    task<session> open_session_task(const session_record& record, const session_options& opts) const;
    task<session> open_session_task(const session_record& record) const;
    task<boost::json::value> lens_info_task();
    task<std::vector<lens_record>> list_lenses_task();
    task<std::vector<lens_record>> list_lenses_task(page p);
    task<lens_record> get_lens_task(std::string&& lens_id);
    task<lens_record> register_lens_task(std::string&& lens_name, boost::json::object&& lens_config);
    task<lens_record> clone_lens_task(std::string&& lens_id);
    task<lens_record> modify_lens_task(std::string&& lens_id, boost::json::object&& fields);
    task<void> delete_lens_task(std::string&& lens_id);
    task<boost::json::value> sessions_info_task();
    task<std::vector<session_record>> list_sessions_task();
    task<std::vector<session_record>> list_sessions_task(page p);
    task<session_record> get_session_task(std::string&& session_id);
    task<session_record> create_session_task(std::string&& lens_id);
    task<session_record> destroy_session_task(std::string&& session_id);
    task<boost::json::value> process_event_task(std::string&& session_id, std::string&& type,
                                                boost::json::value&& event_data);
    task<file_record> upload_file_task(std::filesystem::path&& path);
    task<file_record> upload_file_task(std::filesystem::path&& path, const transfer_options& opts);
    task<file_record> upload_file_task(std::string&& file_name, std::string&& contents);
    task<file_record> upload_file_base64_task(std::string&& file_name, std::string&& contents);
    task<boost::json::value> files_info_task();
    task<std::vector<file_record>> list_files_task();
    task<file_record> get_file_task(std::string&& file_id);
    task<std::string> download_file_task(std::string&& file_id);
    task<std::uint64_t> download_file_to_task(std::string&& file_id, std::filesystem::path&& path,
                                              const transfer_options& opts);
    task<std::uint64_t> download_file_to_task(std::string&& file_id, std::filesystem::path&& path);
    task<std::uint64_t> download_file_to_sink_task(std::string&& file_id, transfer_sink&& sink,
                                                   const transfer_options& opts);
    task<void> delete_file_task(std::string&& file_id);

    /// The executor the token path spawns on; empty for a moved-from client.
    boost::asio::any_io_executor token_executor() const noexcept;
    template <class T, class Token, class Make>
    auto run(Token&& token, Make&& make) const
    {
        return detail::async_run<T>(
            std::forward<Token>(token), [this] { return token_executor(); }, std::forward<Make>(make));
    }
    template <class T, class Token, class Make>
    auto run(Token&& token, diagnostics& diag, Make&& make) const
    {
        return detail::async_run<T>(
            std::forward<Token>(token), diag, [this] { return token_executor(); }, std::forward<Make>(make));
    }

    /// The moved-from check: a clear error naming `operation`, never a null dereference.
    impl& checked(const char* operation) const;
    std::shared_ptr<impl> impl_;
};

/// The MIME type the Lens API expects for a file name, or empty when the
/// extension is not one it accepts.
std::string_view content_type_for(std::string_view file_name) noexcept;

} // namespace lens
