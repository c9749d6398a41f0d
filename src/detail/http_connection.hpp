// One HTTP/1.1 connection over TCP or TLS, with deadlines.
//
// Internal to lens: the REST client pools these for keep-alive reuse, the SSE
// consumer uses one per stream. Every operation takes an absolute deadline and
// applies it through beast::tcp_stream's timer, which closes the socket on
// expiry (the only safe way to time out a Beast operation); a connection that
// timed out or failed is never reused.
#pragma once

#include "detail/origin.hpp"
#include "detail/tls_stream.hpp"

#include <lens/config.hpp>
#include <lens/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <memory>
#include <string_view>
#include <variant>

namespace lens::detail {

using clock = std::chrono::steady_clock;
using http_request = boost::beast::http::request<boost::beast::http::string_body>;
using http_response = boost::beast::http::response<boost::beast::http::string_body>;
/// The header of a request whose body the caller writes itself (`write_chunk`).
using streamed_request = boost::beast::http::request<boost::beast::http::empty_body>;
/// The parser a streamed reply is read with: header first, then the body a chunk at a time.
using header_parser = boost::beast::http::response_parser<boost::beast::http::empty_body>;
using chunk_parser = boost::beast::http::response_parser<boost::beast::http::buffer_body>;
using string_parser = boost::beast::http::response_parser<boost::beast::http::string_body>;

/// A TLS client context per `config`: peer verification on (system trust store plus
/// `config::ca_file`), TLS 1.2 minimum. Shared by all connections of a client.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const config& cfg);

/// Where a failure happened: before anything was sent (safe to retry any call), or after.
enum class failure_stage { connect, exchange };

/// The error of a transport failure, with the stage recorded in `lens::error::operation`-style detail.
class transport_error : public lens::error {
public:
    transport_error(failure_stage stage, boost::system::error_code ec, std::string operation,
                    std::string detail)
        : lens::error(ec, std::move(operation), std::move(detail)), stage_(stage) {}
    failure_stage stage() const noexcept { return stage_; }
private:
    failure_stage stage_;
};

class http_connection {
public:
    using tcp_stream = boost::beast::tcp_stream;
    /// lens's own TLS stream (detail/tls_stream.hpp): no buffer held while idle.
    using tls_stream = detail::tls_stream<boost::beast::tcp_stream>;

    /// Resolves, connects and (for https) handshakes with SNI and host name verification,
    /// all before `deadline`. Throws `transport_error` (stage connect) naming `operation`.
    static boost::asio::awaitable<std::unique_ptr<http_connection>>
    connect(const origin& where, boost::asio::ssl::context* tls, clock::time_point deadline,
            std::string_view operation);

    /// Writes `req` and reads the whole response (at most `body_limit` body bytes).
    /// Throws `transport_error`; `errc::timeout` when the deadline passes.
    boost::asio::awaitable<http_response>
    round_trip(http_request& req, clock::time_point deadline, std::size_t body_limit,
               std::string_view operation);

    /// Writes `req` only (for streaming replies read by the caller through `stream()`).
    boost::asio::awaitable<void> write(http_request& req, clock::time_point deadline,
                                       std::string_view operation);

    // ---- streamed transfers (lens/transfer.hpp): every operation below must finish
    // within `stall`, counted from its start; a stall throws transport_error errc::timeout.

    /// Writes the header of `req` (its Content-Length set by the caller).
    boost::asio::awaitable<void> write_header(streamed_request& req, std::chrono::milliseconds stall,
                                              std::string_view operation);
    /// Writes `bytes` of the body.
    boost::asio::awaitable<void> write_chunk(boost::asio::const_buffer bytes, std::chrono::milliseconds stall,
                                             std::string_view operation);
    /// Reads a reply's header into `parser`.
    boost::asio::awaitable<void> read_header(header_parser& parser, std::chrono::milliseconds stall,
                                             std::string_view operation);
    /// Reads what remains of a reply (its body, at most the parser's body limit).
    boost::asio::awaitable<void> read_rest(string_parser& parser, std::chrono::milliseconds stall,
                                           std::string_view operation);
    /// Reads some of a reply's body into the buffer `parser.get().body()` points at.
    boost::asio::awaitable<void> read_some(chunk_parser& parser, std::chrono::milliseconds stall,
                                           std::string_view operation);

    /// True if the peer has not closed an idle keep-alive connection (non-blocking peek).
    bool still_open();

    /// The underlying stream, for callers that read streaming bodies.
    std::variant<tcp_stream, tls_stream>& stream() noexcept { return stream_; }
    tcp_stream& tcp() noexcept;
    boost::beast::flat_buffer& buffer() noexcept { return buffer_; }
    const origin& where() const noexcept { return where_; }
    /// Closes the socket (a TLS close_notify is not waited for).
    void close() noexcept;

    http_connection(std::variant<tcp_stream, tls_stream> s, origin where)
        : stream_(std::move(s)), where_(std::move(where)) {}

private:
    std::variant<tcp_stream, tls_stream> stream_;
    origin where_;
    boost::beast::flat_buffer buffer_;
};

/// Maps an Asio/Beast/SSL error of a transport operation to a lens condition:
/// timeouts to errc::timeout, everything else to `fallback`; the original message
/// goes into the detail text.
boost::system::error_code classify_transport_error(boost::system::error_code ec, errc fallback);

} // namespace lens::detail
