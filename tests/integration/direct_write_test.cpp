// The coalescing layer's write on the spot (`write_now`, src/detail/coalescing_stream.hpp)
// over a real loopback TCP connection: a buffer the socket takes whole is written with no
// operation left in flight; one the socket cannot take (its send buffer is full because
// the peer does not read) leaves the rest to an async write that completes once the peer
// reads, with every byte in order; a broken connection fails the layer. Every run is
// bounded by the io_context's run_for (the watchdog): nothing polls or sleeps.
#include <doctest/doctest.h>

#include "detail/coalescing_stream.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using layer_type = lens::detail::coalescing_stream<beast::tcp_stream>;
using namespace std::chrono_literals;

static_assert(layer_type::direct, "a tcp_stream next layer is a plain socket");

/// A connected pair on 127.0.0.1: the layer's side and the peer's plain socket.
struct connected_pair {
    asio::io_context ctx;
    layer_type layer{ctx};
    tcp::socket peer{ctx};

    connected_pair()
    {
        tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        beast::get_lowest_layer(layer).socket().connect(acceptor.local_endpoint());
        acceptor.accept(peer);
    }
};

void put(layer_type& layer, std::string_view bytes)
{
    std::memcpy(layer.append(bytes.size()), bytes.data(), bytes.size());
}

std::string pattern(std::size_t n)
{
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    return s;
}

} // namespace

TEST_CASE("coalescing stream: write_now hands a buffer the socket takes to it at once - nothing in flight")
{
    connected_pair p;
    put(p.layer, "first ");
    put(p.layer, "second");
    error_code ec;
    CHECK(p.layer.write_now(ec));
    CHECK_FALSE(ec);
    CHECK_FALSE(p.layer.writing());
    CHECK(p.layer.buffered() == 0);
    CHECK(p.layer.writes_issued() == 1);
    std::string got(12, '\0');
    asio::read(p.peer, asio::buffer(got));
    CHECK(got == "first second");
    // Nothing buffered: true, and no system call counted.
    CHECK(p.layer.write_now(ec));
    CHECK(p.layer.writes_issued() == 1);
}

TEST_CASE("coalescing stream: write_now on a full socket leaves the rest to an async write - every byte arrives in order")
{
    connected_pair p;
    beast::get_lowest_layer(p.layer).socket().set_option(asio::socket_base::send_buffer_size(64 * 1024));
    beast::get_lowest_layer(p.layer).socket().set_option(tcp::no_delay(true));
    // Far more than the kernel's buffers hold while the peer does not read.
    const std::string sent = pattern(8 << 20);
    p.layer.max_buffered(sent.size());
    put(p.layer, sent);
    error_code ec;
    REQUIRE_FALSE(p.layer.write_now(ec));
    CHECK_FALSE(ec);
    CHECK(p.layer.writing()); // the rest is in flight

    bool flushed = false;
    error_code flush_ec = asio::error::would_block;
    p.layer.async_flush([&](error_code e) {
        flushed = true;
        flush_ec = e;
    });
    std::string got(sent.size(), '\0');
    error_code read_ec = asio::error::would_block;
    asio::async_read(p.peer, asio::buffer(got), [&](error_code e, std::size_t) { read_ec = e; });
    p.ctx.run_for(20s);
    REQUIRE(flushed);
    CHECK_FALSE(flush_ec);
    CHECK_FALSE(read_ec);
    CHECK(got == sent);
    CHECK_FALSE(p.layer.writing());
    // The layer is usable on the spot again.
    put(p.layer, "after");
    CHECK(p.layer.write_now(ec));
}

TEST_CASE("coalescing stream: write_now on a connection the peer reset fails the layer with the socket's error")
{
    connected_pair p;
    p.peer.set_option(asio::socket_base::linger(true, 0)); // close sends a reset
    p.peer.close();
    // The reset makes the layer's socket readable: wait for it (run_for is the watchdog)
    // rather than poll, and without reading, which would consume the socket's error.
    bool reset_arrived = false;
    beast::get_lowest_layer(p.layer).socket().async_wait(asio::socket_base::wait_read,
                                                         [&](error_code) { reset_arrived = true; });
    p.ctx.run_for(5s);
    REQUIRE(reset_arrived);
    error_code ec;
    put(p.layer, pattern(1024));
    REQUIRE_FALSE(p.layer.write_now(ec));
    REQUIRE(ec);
    CHECK((ec == asio::error::connection_reset || ec == asio::error::broken_pipe));
    // Failed for good: the next write reports the same error without touching the socket.
    error_code again;
    put(p.layer, "x");
    CHECK_FALSE(p.layer.write_now(again));
    CHECK(again == ec);
}
