// Internal interfaces between the emulator's server, HTTP connections, REST
// routes and WebSocket sessions.
#pragma once

#include "emulator/state.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <unordered_set>

namespace lens::emulator::detail {

using request = boost::beast::http::request<boost::beast::http::string_body>;
using response = boost::beast::http::response<boost::beast::http::string_body>;

/// Serves one accepted connection (TLS when the server has a context) until it ends.
void serve_connection(std::shared_ptr<server::impl> srv, boost::asio::ip::tcp::socket socket);

/// A request target under `/v0.5/`: its decoded path segments after the version
/// and its query parameters (last one wins).
struct api_target {
    std::vector<std::string> segments;
    std::map<std::string, std::string, std::less<>> query;

    bool is(std::initializer_list<std::string_view> path) const
    {
        return std::equal(segments.begin(), segments.end(), path.begin(), path.end());
    }
};
/// nullopt when the target is malformed or outside `/v0.5/`.
std::optional<api_target> parse_target(std::string_view target);

// ---- REST (rest.cpp) -------------------------------------------------------

struct rest_outcome {
    /// A reply, sent after `delay`.
    rest_outcome(response r, std::chrono::milliseconds delay = {}) : res(std::move(r)), delay(delay) {}

    response res;
    std::chrono::milliseconds delay{0}; ///< wait this long before replying (a lens's thinking time)
    /// The body, when it is a spooled file: `res` is then the header only (its
    /// Content-Length set), and the connection streams the file after it.
    std::shared_ptr<const disk_file> body_file;
};

/// Answers one authorized REST request (fault knobs were applied by the caller). `spooled`
/// holds the request's body when the connection spooled it to disk (`req.body()` is then empty).
rest_outcome handle_rest(server::impl& srv, const request& req, std::shared_ptr<disk_file> spooled = nullptr);

/// A JSON reply that keeps the request's keep-alive choice.
response json_response(const request& req, unsigned status, const boost::json::value& body);
/// True when the request carries `Authorization: Bearer <the key>`.
bool has_valid_bearer(const server::impl& srv, const request& req);
/// The 401 reply of the real API: `{"errors":[{code, message, suggestion, error_uid}]}`.
response unauthorized_response(const request& req);

// ---- WebSocket (websocket.cpp) ---------------------------------------------

/// Completes the upgrade `req` (already authorized, session known) on `stream` and
/// serves the session's control channel until either side closes.
/// `Stream` is `beast::tcp_stream` or `beast::ssl_stream<beast::tcp_stream>`.
template <class Stream>
void start_websocket(std::shared_ptr<server::impl> srv, Stream stream, request req,
                     std::shared_ptr<session_state> session, bool select_event_protocol);

// ---- cancellable waits -------------------------------------------------------

/// The timers a connection is waiting on, so that closing the connection (or
/// stopping the server) wakes every delayed reply at once instead of leaving
/// the io_context running until the longest knob delay expires.
class wait_set {
public:
    /// Waits `d`; returns false when the set was closed meanwhile (or before).
    boost::asio::awaitable<bool> wait(boost::asio::any_io_executor ex, std::chrono::milliseconds d);
    /// Calls `fn` after `d` unless the set is closed first. `fn` must keep alive
    /// whatever owns this set (it is destroyed without being called on close).
    void after(boost::asio::any_io_executor ex, std::chrono::milliseconds d, std::function<void()> fn);
    void close();
    bool closed() const noexcept { return closed_; }

private:
    std::unordered_set<boost::asio::steady_timer*> timers_;
    bool closed_ = false;
};

} // namespace lens::emulator::detail
