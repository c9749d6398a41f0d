// lens's TLS client stream (src/detail/tls_stream.hpp) against an Asio ssl::stream
// server on 127.0.0.1, with a certificate from the emulator's generator: round trips,
// 1 MiB each way with a read and a write in flight together, a KeyUpdate answered in
// the middle of writes, the two ways a peer can close (close_notify: eof, a bare TCP
// close: stream_truncated), a socket closed under a pending read, a plain TCP server,
// and a host name the certificate does not name. Every run is bounded (run_for).
#include <doctest/doctest.h>

#include "detail/tls_stream.hpp"
#include "emulator/state.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <openssl/ssl.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using client_stream = lens::detail::tls_stream<beast::tcp_stream>;
using server_stream = ssl::stream<tcp::socket>;
using namespace std::chrono_literals;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

/// A CA and a certificate for localhost/127.0.0.1, made once for the whole file.
const lens::emulator::detail::generated_certificates& certificates()
{
    static const auto certs = lens::emulator::detail::generate_certificates("localhost");
    return certs;
}

ssl::context server_context()
{
    ssl::context ctx(ssl::context::tls_server);
    ctx.use_certificate_chain(asio::buffer(certificates().server_cert_pem));
    ctx.use_private_key(asio::buffer(certificates().server_key_pem), ssl::context::pem);
    return ctx;
}

ssl::context client_context()
{
    ssl::context ctx(ssl::context::tls_client);
    ctx.add_certificate_authority(asio::buffer(certificates().ca_pem));
    ctx.set_verify_mode(ssl::verify_peer);
    return ctx;
}

/// Echoes whatever arrives until the client goes away.
asio::awaitable<void> echo(server_stream& s)
{
    std::vector<char> buf(32 * 1024);
    for (;;) {
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), nothrow);
        if (ec)
            co_return;
        auto [wec, w] = co_await asio::async_write(s, asio::buffer(buf.data(), n), nothrow);
        if (wec)
            co_return;
    }
}

std::string pattern(std::size_t n)
{
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    return s;
}

/// A listener on 127.0.0.1 and a context to run both ends on; `serve` is given each
/// accepted socket. `run` runs everything for at most `watchdog`.
struct harness {
    asio::io_context ctx;
    tcp::acceptor acceptor{ctx, tcp::endpoint(asio::ip::address_v4::loopback(), 0)};
    ssl::context server_tls = server_context();
    ssl::context client_tls = client_context();

    void serve(std::function<asio::awaitable<void>(tcp::socket)> body)
    {
        asio::co_spawn(ctx, [this, body]() -> asio::awaitable<void> {
            auto [ec, socket] = co_await acceptor.async_accept(nothrow);
            if (!ec)
                co_await body(std::move(socket));
        }, asio::detached);
    }

    /// A TLS server that echoes what it receives.
    void serve_echo()
    {
        serve([this](tcp::socket socket) -> asio::awaitable<void> {
            server_stream s(std::move(socket), server_tls);
            auto [ec] = co_await s.async_handshake(ssl::stream_base::server, nothrow);
            if (!ec)
                co_await echo(s);
        });
    }

    /// A connected client stream (not yet handshaken), verifying the name `host`.
    asio::awaitable<client_stream> connect(std::string host = "localhost")
    {
        beast::tcp_stream tcp(ctx);
        co_await tcp.async_connect(acceptor.local_endpoint(), asio::use_awaitable);
        client_stream s(std::move(tcp), client_tls);
        s.set_verify_callback(ssl::host_name_verification(host));
        co_return s;
    }

    void run(std::function<asio::awaitable<void>()> body, std::chrono::seconds watchdog = 20s)
    {
        bool done = false;
        std::exception_ptr failure;
        asio::co_spawn(ctx, body, [&](std::exception_ptr e) {
            failure = e;
            done = true;
        });
        ctx.run_for(watchdog);
        REQUIRE_MESSAGE(done, "the test did not finish (a hang)");
        if (failure)
            std::rethrow_exception(failure);
    }
};

} // namespace

TEST_CASE("tls_stream: handshake, small round trips, then 1 MiB echoed with a read and a write in flight together")
{
    harness h;
    h.serve_echo();
    h.run([&]() -> asio::awaitable<void> {
        auto s = co_await h.connect();
        auto [hec] = co_await s.async_handshake(ssl::stream_base::client, nothrow);
        REQUIRE_MESSAGE(!hec, hec.message());
        CHECK(SSL_is_init_finished(s.native_handle()));
        CHECK(&beast::get_lowest_layer(s) == &s.next_layer());

        for (std::string msg : {std::string("hello"), std::string(1, 'x'), pattern(20000)}) {
            co_await asio::async_write(s, asio::buffer(msg), asio::use_awaitable);
            std::string back(msg.size(), '\0');
            co_await asio::async_read(s, asio::buffer(back), asio::use_awaitable);
            CHECK(back == msg);
        }

        // The echo server writes back while the client is still writing: without a read
        // in flight at the same time the socket buffers would fill and both would stall.
        const std::string big = pattern(1024 * 1024);
        std::string back(big.size(), '\0');
        bool wrote = false;
        error_code wec;
        asio::co_spawn(h.ctx, [&]() -> asio::awaitable<void> {
            // A gathered write (two buffers) goes through the linearizing path too.
            std::array<asio::const_buffer, 2> parts{asio::buffer(big.data(), 3), asio::buffer(big.data() + 3, big.size() - 3)};
            auto [ec, n] = co_await asio::async_write(s, parts, nothrow);
            wec = ec;
            wrote = n == big.size();
        }, asio::detached);
        auto [rec, n] = co_await asio::async_read(s, asio::buffer(back), nothrow);
        CHECK_MESSAGE(!rec, rec.message());
        CHECK(n == big.size());
        CHECK(back == big);
        CHECK(!wec);
        CHECK(wrote);

        // The point of the stream: once idle it keeps at most a small output buffer.
        CHECK(s.buffered() <= 1024);
        co_await asio::async_write(s, asio::buffer("ping", 4), asio::use_awaitable);
        char reply[4];
        co_await asio::async_read(s, asio::buffer(reply), asio::use_awaitable);
        CHECK(s.buffered() <= 1024);
        beast::get_lowest_layer(s).close();
    });
}

TEST_CASE("tls_stream: a TLS 1.3 KeyUpdate the peer requests is answered while writes are in flight")
{
    harness h;
    h.serve([&](tcp::socket socket) -> asio::awaitable<void> {
        server_stream s(std::move(socket), h.server_tls);
        auto [ec] = co_await s.async_handshake(ssl::stream_base::server, nothrow);
        if (ec)
            co_return;
        std::vector<char> buf(64 * 1024);
        std::size_t total = 0;
        int updates = 0;
        for (;;) {
            auto [rec, n] = co_await s.async_read_some(asio::buffer(buf), nothrow);
            if (rec)
                co_return;
            total += n;
            // Every 128 KiB: ask the client to update its keys too (it must answer
            // with a KeyUpdate of its own, from its reading side, amid its writes).
            if (total / (128 * 1024) > static_cast<std::size_t>(updates)) {
                ++updates;
                SSL_key_update(s.native_handle(), SSL_KEY_UPDATE_REQUESTED);
            }
            auto [wec, w] = co_await asio::async_write(s, asio::buffer(buf.data(), n), nothrow);
            if (wec)
                co_return;
        }
    });
    h.run([&]() -> asio::awaitable<void> {
        auto s = co_await h.connect();
        co_await s.async_handshake(ssl::stream_base::client, asio::use_awaitable);
        REQUIRE(SSL_version(s.native_handle()) == TLS1_3_VERSION);
        const std::string big = pattern(1024 * 1024);
        std::string back(big.size(), '\0');
        error_code wec;
        asio::co_spawn(h.ctx, [&]() -> asio::awaitable<void> {
            // Small writes: many write operations for the reader's output to slot between.
            for (std::size_t at = 0; at < big.size() && !wec; at += 4096) {
                auto [ec, n] = co_await asio::async_write(s, asio::buffer(big.data() + at, 4096), nothrow);
                wec = ec;
            }
        }, asio::detached);
        auto [rec, n] = co_await asio::async_read(s, asio::buffer(back), nothrow);
        CHECK_MESSAGE(!rec, rec.message());
        CHECK(back == big);
        CHECK(!wec);
        // The client's keys moved on, and the server still reads it: one more round trip.
        co_await asio::async_write(s, asio::buffer("ping", 4), asio::use_awaitable);
        char reply[4];
        co_await asio::async_read(s, asio::buffer(reply), asio::use_awaitable);
        CHECK(std::string(reply, 4) == "ping");
        beast::get_lowest_layer(s).close();
    });
}

TEST_CASE("tls_stream: the peer's close_notify ends a read with eof, a bare TCP close with stream_truncated")
{
    SUBCASE("close_notify")
    {
        harness h;
        h.serve([&](tcp::socket socket) -> asio::awaitable<void> {
            auto s = std::make_shared<server_stream>(std::move(socket), h.server_tls);
            auto [ec] = co_await s->async_handshake(ssl::stream_base::server, nothrow);
            if (!ec)
                co_await s->async_shutdown(nothrow); // sends close_notify, waits for the client's
        });
        h.run([&]() -> asio::awaitable<void> {
            auto s = co_await h.connect();
            co_await s.async_handshake(ssl::stream_base::client, asio::use_awaitable);
            char byte;
            auto [ec, n] = co_await s.async_read_some(asio::buffer(&byte, 1), nothrow);
            CHECK(ec == asio::error::eof);
            CHECK(n == 0);
            // Our close_notify answers the server's: the shutdown completes.
            auto [sec] = co_await s.async_shutdown(nothrow);
            CHECK_MESSAGE((!sec || sec == asio::error::eof), sec.message());
        });
    }
    SUBCASE("TCP close")
    {
        harness h;
        h.serve([&](tcp::socket socket) -> asio::awaitable<void> {
            server_stream s(std::move(socket), h.server_tls);
            co_await s.async_handshake(ssl::stream_base::server, nothrow);
            s.lowest_layer().close();
        });
        h.run([&]() -> asio::awaitable<void> {
            auto s = co_await h.connect();
            co_await s.async_handshake(ssl::stream_base::client, asio::use_awaitable);
            char byte;
            auto [ec, n] = co_await s.async_read_some(asio::buffer(&byte, 1), nothrow);
            CHECK_MESSAGE(ec == ssl::error::stream_truncated, ec.message());
        });
    }
}

TEST_CASE("tls_stream: closing the socket completes a pending read and a waiting write with errors")
{
    harness h;
    std::shared_ptr<server_stream> keep; // the server holds the connection, never reads
    h.serve([&](tcp::socket socket) -> asio::awaitable<void> {
        keep = std::make_shared<server_stream>(std::move(socket), h.server_tls);
        co_await keep->async_handshake(ssl::stream_base::server, nothrow);
    });
    h.run([&]() -> asio::awaitable<void> {
        auto s = co_await h.connect();
        co_await s.async_handshake(ssl::stream_base::client, asio::use_awaitable);
        // A writer that fills the socket buffers (the server never reads) and a reader
        // with nothing to read: both pending when the socket closes.
        bool write_done = false;
        error_code wec;
        const std::string big = pattern(16 * 1024 * 1024);
        asio::co_spawn(h.ctx, [&]() -> asio::awaitable<void> {
            auto [ec, n] = co_await asio::async_write(s, asio::buffer(big), nothrow);
            wec = ec;
            write_done = true;
        }, asio::detached);
        asio::steady_timer t(h.ctx);
        t.expires_after(200ms);
        t.async_wait([&](error_code) { beast::get_lowest_layer(s).close(); });
        char byte;
        auto [ec, n] = co_await s.async_read_some(asio::buffer(&byte, 1), nothrow);
        CHECK(ec);
        CHECK(ec != ssl::error::stream_truncated); // closed here, not by the peer
        while (!write_done) {
            t.expires_after(10ms);
            co_await t.async_wait(nothrow);
        }
        CHECK(wec);
    });
}

TEST_CASE("tls_stream: a handshake with a plain TCP server fails with an SSL error")
{
    harness h;
    h.serve([&](tcp::socket socket) -> asio::awaitable<void> {
        std::vector<char> buf(4096);
        co_await socket.async_read_some(asio::buffer(buf), nothrow); // the ClientHello
        const std::string reply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(reply), nothrow);
        socket.close();
    });
    h.run([&]() -> asio::awaitable<void> {
        auto s = co_await h.connect();
        auto [ec] = co_await s.async_handshake(ssl::stream_base::client, nothrow);
        REQUIRE(ec);
        CHECK(ec.category() == asio::error::get_ssl_category());
        MESSAGE("plain server: " << ec.message());
    });
}

TEST_CASE("tls_stream: a host name the certificate does not name fails verification")
{
    harness h;
    h.serve([&](tcp::socket socket) -> asio::awaitable<void> {
        server_stream s(std::move(socket), h.server_tls);
        co_await s.async_handshake(ssl::stream_base::server, nothrow);
    });
    h.run([&]() -> asio::awaitable<void> {
        auto s = co_await h.connect("wrong.example.com");
        auto [ec] = co_await s.async_handshake(ssl::stream_base::client, nothrow);
        REQUIRE(ec);
        CHECK(ec.category() == asio::error::get_ssl_category());
        CHECK(ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_CERTIFICATE_VERIFY_FAILED);
    });
}

TEST_CASE("tls_stream: zero-byte reads and writes complete at once, after the initiating call")
{
    harness h;
    h.serve_echo();
    h.run([&]() -> asio::awaitable<void> {
        auto s = co_await h.connect();
        co_await s.async_handshake(ssl::stream_base::client, asio::use_awaitable);
        bool called = false;
        s.async_read_some(asio::mutable_buffer(), [&](error_code ec, std::size_t n) {
            CHECK(!ec);
            CHECK(n == 0);
            called = true;
        });
        CHECK(!called); // posted, never inline
        auto [wec, wn] = co_await s.async_write_some(asio::const_buffer(), nothrow);
        CHECK(!wec);
        CHECK(wn == 0);
        CHECK(called);
        beast::get_lowest_layer(s).close();
    });
}

TEST_CASE("tls_stream: the next layer's timeout ends a read the peer never answers with beast's timeout")
{
    // http_connection's deadlines are beast::tcp_stream expiries: the stream's wait for
    // input must be one of the tcp_stream's own operations for them to apply.
    harness h;
    std::shared_ptr<server_stream> keep;
    h.serve([&](tcp::socket socket) -> asio::awaitable<void> {
        keep = std::make_shared<server_stream>(std::move(socket), h.server_tls);
        co_await keep->async_handshake(ssl::stream_base::server, nothrow);
    });
    h.run([&]() -> asio::awaitable<void> {
        auto s = co_await h.connect();
        s.next_layer().expires_after(5s);
        co_await s.async_handshake(ssl::stream_base::client, asio::use_awaitable);
        s.next_layer().expires_after(100ms);
        const auto started = std::chrono::steady_clock::now();
        char byte;
        auto [ec, n] = co_await s.async_read_some(asio::buffer(&byte, 1), nothrow);
        CHECK_MESSAGE(ec == beast::error::timeout, ec.message());
        CHECK(std::chrono::steady_clock::now() - started < 3s);
    });
}
