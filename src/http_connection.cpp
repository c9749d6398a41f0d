#include "detail/http_connection.hpp"
#include "detail/tls_resumption.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include <openssl/ssl.h>
#include <sys/socket.h>

namespace lens::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

std::shared_ptr<asio::ssl::context> make_tls_context(const config& cfg)
{
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1);
    if (cfg.verify_peer) {
        ctx->set_verify_mode(asio::ssl::verify_peer);
        boost::system::error_code ec;
        ctx->set_default_verify_paths(ec); // system trust store; absence is not fatal with ca_file
        if (!cfg.ca_file.empty()) {
            ctx->load_verify_file(cfg.ca_file, ec);
            if (ec)
                throw_error(errc::invalid_argument, "tls setup",
                            "cannot load CA file '" + cfg.ca_file + "': " + ec.message());
        }
    } else {
        ctx->set_verify_mode(asio::ssl::verify_none);
    }
    enable_tls_resumption(ctx->native_handle());
    return ctx;
}

boost::system::error_code classify_transport_error(boost::system::error_code ec, errc fallback)
{
    if (ec == beast::error::timeout || ec == asio::error::timed_out)
        return errc::timeout;
    if (ec == http::error::body_limit || ec == http::error::buffer_overflow ||
        ec == http::error::header_limit)
        return errc::body_too_large;
    return fallback;
}

namespace {

[[noreturn]] void fail(failure_stage stage, boost::system::error_code ec, errc fallback,
                       std::string_view operation, std::string what)
{
    const auto code = classify_transport_error(ec, fallback);
    what += ": ";
    what += code == errc::timeout ? std::string("deadline expired") : ec.message();
    throw transport_error(stage, code, std::string(operation), std::move(what));
}

std::string describe(const origin& where) { return where.host + ":" + where.port; }

} // namespace

http_connection::tcp_stream& http_connection::tcp() noexcept
{
    if (auto* tls = std::get_if<tls_stream>(&stream_))
        return tls->next_layer();
    return std::get<tcp_stream>(stream_);
}

void http_connection::close() noexcept
{
    boost::system::error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().socket().close(ignored);
}

bool http_connection::still_open()
{
    auto& sock = tcp().socket();
    if (!sock.is_open())
        return false;
    char byte;
    const auto n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    // 0: orderly close; > 0: unsolicited bytes (a 408, a TLS alert): either way not reusable.
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

asio::awaitable<std::unique_ptr<http_connection>>
http_connection::connect(const origin& where, asio::ssl::context* tls, clock::time_point deadline,
                         std::string_view operation)
{
    using namespace asio::experimental::awaitable_operators;
    auto ex = co_await asio::this_coro::executor;

    // Resolution is not a stream operation, so racing it against a timer is safe.
    tcp::resolver resolver(ex);
    asio::steady_timer timer(ex, deadline);
    auto resolved = co_await (resolver.async_resolve(where.host, where.port, nothrow) ||
                              timer.async_wait(nothrow));
    if (resolved.index() == 1)
        fail(failure_stage::connect, beast::error::timeout, errc::connection_failed, operation,
             "resolve " + where.host);
    auto [rec, endpoints] = std::get<0>(resolved);
    if (rec)
        fail(failure_stage::connect, rec, errc::connection_failed, operation, "resolve " + where.host);

    tcp_stream socket(ex);
    socket.expires_at(deadline);
    auto [cec, ep] = co_await socket.async_connect(endpoints, nothrow);
    if (cec)
        fail(failure_stage::connect, cec, errc::connection_failed, operation, "connect " + describe(where));
    socket.socket().set_option(tcp::no_delay(true));

    if (!where.tls)
        co_return std::make_unique<http_connection>(std::move(socket), where);

    if (!tls)
        fail(failure_stage::connect, asio::error::invalid_argument, errc::connection_failed, operation,
             "https needs a TLS context");
    tls_stream stream(std::move(socket), *tls);
    boost::system::error_code ignored;
    if (tls->native_handle() && SSL_CTX_get_verify_mode(tls->native_handle()) != SSL_VERIFY_NONE)
        stream.set_verify_callback(asio::ssl::host_name_verification(where.host), ignored);
    // SNI carries host names only, never IP literals (RFC 6066 §3).
    boost::system::error_code addr_ec;
    asio::ip::make_address(where.host, addr_ec);
    if (addr_ec && !SSL_set_tlsext_host_name(stream.native_handle(), where.host.c_str()))
        fail(failure_stage::connect, asio::error::invalid_argument, errc::connection_failed, operation,
             "TLS SNI for " + where.host);
    prepare_tls_resumption(stream.native_handle(), where.host + ":" + where.port);
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::client, nothrow);
    if (hec) {
        std::string what = "TLS handshake with " + describe(where);
        const long verify = SSL_get_verify_result(stream.native_handle());
        if (verify != X509_V_OK)
            what += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) + ")";
        fail(failure_stage::connect, hec, verify != X509_V_OK ? errc::certificate_rejected : errc::connection_failed,
             operation, std::move(what));
    }
    count_tls_handshake(stream.native_handle());
    co_return std::make_unique<http_connection>(std::move(stream), where);
}

asio::awaitable<void> http_connection::write(http_request& req, clock::time_point deadline,
                                             std::string_view operation)
{
    tcp().expires_at(deadline);
    auto [ec, n] = co_await std::visit(
        [&](auto& s) { return http::async_write(s, req, nothrow); }, stream_);
    if (ec)
        fail(failure_stage::exchange, ec, errc::connection_lost, operation,
             "send to " + describe(where_));
}

asio::awaitable<http_response>
http_connection::round_trip(http_request& req, clock::time_point deadline, std::size_t body_limit,
                            std::string_view operation)
{
    co_await write(req, deadline, operation);
    http::response_parser<http::string_body> parser;
    parser.body_limit(body_limit);
    if (req.method() == http::verb::head)
        parser.skip(true);
    auto [ec, n] = co_await std::visit(
        [&](auto& s) { return http::async_read(s, buffer_, parser, nothrow); }, stream_);
    if (ec) {
        if (ec == http::error::body_limit)
            throw transport_error(failure_stage::exchange, errc::body_too_large, std::string(operation),
                                  "reply body over the limit of " + std::to_string(body_limit) + " bytes");
        fail(failure_stage::exchange, ec, errc::connection_lost, operation, "reply from " + describe(where_));
    }
    tcp().expires_never();
    co_return parser.release();
}

// ---- streamed transfers ------------------------------------------------------------

namespace {

/// One step of a streamed transfer: `op` started on whichever stream `c` holds, given
/// `stall` to finish (the socket's expiry cancels it then); its error.
template <class Op>
asio::awaitable<boost::system::error_code> stall_bounded(http_connection& c, std::chrono::milliseconds stall, Op op)
{
    c.tcp().expires_after(stall);
    auto [ec, n] = co_await std::visit(op, c.stream());
    co_return ec;
}

} // namespace

asio::awaitable<void> http_connection::write_header(streamed_request& req, std::chrono::milliseconds stall,
                                                    std::string_view operation)
{
    http::request_serializer<http::empty_body> sr(req);
    if (auto ec = co_await stall_bounded(*this, stall, [&](auto& s) { return http::async_write_header(s, sr, nothrow); }))
        fail(failure_stage::exchange, ec, errc::connection_lost, operation, "send to " + describe(where_));
}

asio::awaitable<void> http_connection::write_chunk(asio::const_buffer bytes, std::chrono::milliseconds stall,
                                                   std::string_view operation)
{
    if (auto ec = co_await stall_bounded(*this, stall, [&](auto& s) { return asio::async_write(s, bytes, nothrow); }))
        fail(failure_stage::exchange, ec, errc::connection_lost, operation, "send to " + describe(where_));
}

asio::awaitable<void> http_connection::read_header(header_parser& parser, std::chrono::milliseconds stall,
                                                   std::string_view operation)
{
    if (auto ec = co_await stall_bounded(
            *this, stall, [&](auto& s) { return http::async_read_header(s, buffer_, parser, nothrow); }))
        fail(failure_stage::exchange, ec, errc::connection_lost, operation, "reply from " + describe(where_));
}

asio::awaitable<void> http_connection::read_rest(string_parser& parser, std::chrono::milliseconds stall,
                                                 std::string_view operation)
{
    auto ec = co_await stall_bounded(*this, stall,
                                     [&](auto& s) { return http::async_read(s, buffer_, parser, nothrow); });
    if (ec == http::error::body_limit)
        throw transport_error(failure_stage::exchange, errc::body_too_large, std::string(operation),
                              "reply body over the limit");
    if (ec)
        fail(failure_stage::exchange, ec, errc::connection_lost, operation, "reply from " + describe(where_));
    tcp().expires_never();
}

asio::awaitable<void> http_connection::read_some(chunk_parser& parser, std::chrono::milliseconds stall,
                                                 std::string_view operation)
{
    auto ec = co_await stall_bounded(*this, stall,
                                     [&](auto& s) { return http::async_read_some(s, buffer_, parser, nothrow); });
    if (ec && ec != http::error::need_buffer) // need_buffer: the chunk buffer is full, the caller empties it
        fail(failure_stage::exchange, ec, errc::connection_lost, operation, "reply from " + describe(where_));
    if (parser.is_done())
        tcp().expires_never();
}

} // namespace lens::detail
