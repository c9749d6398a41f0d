// The write-coalescing layer under Beast's WebSocket stream (src/detail/coalescing_stream.hpp):
// bytes appended in place or a corked burst leave in one write, frames arrive intact and in order,
// the byte bound makes writers wait, a failed write fails every waiter, closing mid-flush is
// safe, and during an upgrade reads stop at the end of the HTTP header block.
// Real sockets on 127.0.0.1; every run is bounded by a watchdog (run_for).
#include <doctest/doctest.h>

#include "detail/coalescing_stream.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using lens::detail::coalescing_stream;

constexpr auto watchdog = std::chrono::seconds(20);

/// A tcp_stream that counts the writes (system calls) made on it.
struct counting_stream : beast::tcp_stream {
    using beast::tcp_stream::tcp_stream;
    std::size_t* writes = nullptr;
    template <class Buffers, class Token>
    auto async_write_some(const Buffers& b, Token&& token)
    {
        ++*writes;
        return beast::tcp_stream::async_write_some(b, std::forward<Token>(token));
    }
};

template <class Handler>
void async_teardown(beast::role_type role, counting_stream& s, Handler&& h)
{
    beast::async_teardown(role, static_cast<beast::tcp_stream&>(s), std::forward<Handler>(h));
}

/// A connected pair of sockets on loopback.
std::pair<tcp::socket, tcp::socket> socket_pair(asio::io_context& ctx)
{
    tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket client(ctx), server(ctx);
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
    client.set_option(tcp::no_delay(true));
    return {std::move(client), std::move(server)};
}

/// A WebSocket client over the layer and the server side it talks to, handshaken.
struct ws_pair {
    std::size_t socket_writes = 0;
    websocket::stream<coalescing_stream<counting_stream>> client;
    websocket::stream<tcp::socket> server;

    ws_pair(asio::io_context& ctx, std::pair<tcp::socket, tcp::socket> sockets)
        : client(std::move(sockets.first)), server(std::move(sockets.second))
    {
        client.next_layer().next_layer().writes = &socket_writes;
        bool accepted = false, handshaken = false;
        server.async_accept([&](error_code ec) { accepted = !ec; });
        client.async_handshake("127.0.0.1", "/", [&](error_code ec) { handshaken = !ec; });
        ctx.run_for(watchdog);
        ctx.restart();
        REQUIRE(accepted);
        REQUIRE(handshaken);
        client.text(true);
        socket_writes = 0;
    }
};

std::string frame_text(int i) { return "{\"type\":\"session.validate\",\"n\":" + std::to_string(i) + "}"; }

/// Writes `texts` one after another (each after the previous completes, as the session
/// does), then calls `done`.
struct sequential_writer {
    explicit sequential_writer(websocket::stream<coalescing_stream<counting_stream>>& s) : ws(s) {}
    websocket::stream<coalescing_stream<counting_stream>>& ws;
    std::vector<std::string> texts;
    std::function<void(error_code)> done;
    std::size_t next = 0;
    std::vector<std::size_t> buffered_after; ///< what the layer held after each write completed

    void run()
    {
        if (next == texts.size()) {
            done({});
            return;
        }
        ws.async_write(asio::buffer(texts[next]), [this](error_code ec, std::size_t) {
            buffered_after.push_back(ws.next_layer().buffered());
            if (ec) {
                done(ec);
                return;
            }
            ++next;
            run();
        });
    }
};

/// Reads `n` messages on the server side into `out`.
void read_messages(websocket::stream<tcp::socket>& ws, std::size_t n, std::vector<std::string>& out,
                   beast::flat_buffer& buf)
{
    if (out.size() == n)
        return;
    ws.async_read(buf, [&ws, n, &out, &buf](error_code ec, std::size_t) {
        if (ec)
            return;
        out.push_back(beast::buffers_to_string(buf.data()));
        buf.consume(buf.size());
        read_messages(ws, n, out, buf);
    });
}

/// `texts` written one after another by the client, and the server reading them all.
struct delivery {
    delivery(ws_pair& p, std::vector<std::string> texts) : writer(p.client)
    {
        writer.texts = std::move(texts);
        read_messages(p.server, writer.texts.size(), received, buf);
    }
    sequential_writer writer;
    std::vector<std::string> received;
    beast::flat_buffer buf;
};

std::vector<std::string> numbered_frames(int n)
{
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i)
        out.push_back(frame_text(i));
    return out;
}

} // namespace

TEST_CASE("coalescing stream: a corked burst of frames leaves in one write, intact and in order")
{
    asio::io_context ctx;
    ws_pair p(ctx, socket_pair(ctx));
    constexpr int n = 200;
    delivery d(p, numbered_frames(n));
    auto& w = d.writer;
    auto& received = d.received;

    bool written = false, flushed = false;
    std::size_t writes_before_flush = 0;
    const auto issued_before = p.client.next_layer().writes_issued(); // the handshake's
    p.client.next_layer().cork();
    w.done = [&](error_code ec) {
        written = !ec;
        writes_before_flush = p.socket_writes;
        p.client.next_layer().async_flush([&](error_code fec) { flushed = !fec; });
    };
    w.run();
    ctx.run_for(watchdog);

    REQUIRE(written);
    CHECK(flushed);
    CHECK(writes_before_flush == 0);  // every frame was accepted without touching the socket
    CHECK(p.socket_writes <= 2);      // one write for the whole burst (a short write may need a second)
    CHECK(p.client.next_layer().writes_issued() - issued_before == 1);
    CHECK(p.client.next_layer().buffered() == 0);
    REQUIRE(received.size() == std::size_t(n));
    for (int i = 0; i < n; ++i)
        CHECK(received[i] == frame_text(i));
}

TEST_CASE("coalescing stream: uncorked lone writes go straight to the socket")
{
    asio::io_context ctx;
    ws_pair p(ctx, socket_pair(ctx));
    constexpr int n = 10;
    delivery d(p, numbered_frames(n));
    auto& w = d.writer;
    auto& received = d.received;
    bool written = false;
    w.done = [&](error_code ec) { written = !ec; };
    w.run();
    ctx.run_for(watchdog);
    REQUIRE(written);
    CHECK(p.socket_writes == std::size_t(n)); // one per frame: nothing held back, nothing copied
    for (auto b : w.buffered_after)
        CHECK(b == 0);
    CHECK(received.size() == std::size_t(n));
}

TEST_CASE("coalescing stream: past the byte bound a writer waits for the write in flight")
{
    asio::io_context ctx;
    ws_pair p(ctx, socket_pair(ctx));
    constexpr std::size_t bound = 1000;
    constexpr int n = 40;
    p.client.next_layer().max_buffered(bound);
    std::vector<std::string> texts;
    for (int i = 0; i < n; ++i)
        texts.emplace_back(300, char('a' + i % 26));
    delivery d(p, std::move(texts));
    auto& w = d.writer;
    auto& received = d.received;
    bool written = false, flushed = false;
    const auto issued_before = p.client.next_layer().writes_issued();
    p.client.next_layer().cork();
    w.done = [&](error_code ec) {
        written = !ec;
        p.client.next_layer().async_flush([&](error_code fec) { flushed = !fec; });
    };
    w.run();
    ctx.run_for(watchdog);
    REQUIRE(written);
    CHECK(flushed);
    for (auto b : w.buffered_after)
        CHECK(b <= bound);
    // 40 frames of ~306 bytes in buffers of at most 1000: at least 12 writes, far fewer than 40.
    const auto issued = p.client.next_layer().writes_issued() - issued_before;
    CHECK(issued >= 12);
    CHECK(issued <= 21);
    REQUIRE(received.size() == std::size_t(n));
    for (int i = 0; i < n; ++i)
        CHECK(received[i] == std::string(300, char('a' + i % 26)));
}

TEST_CASE("coalescing stream: a failed write fails every waiting writer and every later write")
{
    asio::io_context ctx;
    auto sockets = socket_pair(ctx);
    coalescing_stream<beast::tcp_stream> s(std::move(sockets.first));
    s.max_buffered(100);
    s.cork();
    const std::string big(150, 'x');
    std::vector<error_code> results(5, asio::error::would_block);
    // The first fits the empty buffer; the second starts its write and takes the other
    // buffer; the rest wait, and that write fails: the socket is closed under the layer.
    s.next_layer().socket().close();
    for (std::size_t i = 0; i < results.size(); ++i)
        s.async_write_some(asio::buffer(big), [&results, i](error_code ec, std::size_t) { results[i] = ec; });
    error_code flush_result = asio::error::would_block, later = asio::error::would_block;
    ctx.run_for(watchdog);
    ctx.restart();
    CHECK(!results[0]); // accepted before the failure (the flush reports it)
    CHECK(!results[1]);
    for (std::size_t i = 2; i < results.size(); ++i)
        CHECK(results[i] == asio::error::bad_descriptor);
    s.async_flush([&](error_code ec) { flush_result = ec; });
    s.async_write_some(asio::buffer(big), [&](error_code ec, std::size_t) { later = ec; });
    ctx.run_for(watchdog);
    CHECK(flush_result == asio::error::bad_descriptor);
    CHECK(later == asio::error::bad_descriptor);
}

TEST_CASE("coalescing stream: closing mid-flush completes everything and releases the owner")
{
    asio::io_context ctx;
    auto sockets = socket_pair(ctx);
    struct owner {
        explicit owner(tcp::socket s) : stream(std::move(s)) {}
        coalescing_stream<beast::tcp_stream> stream;
    };
    auto o = std::make_shared<owner>(std::move(sockets.first));
    std::weak_ptr<owner> watch = o;
    o->stream.keep_alive_with(o);
    o->stream.max_buffered(32 << 20);
    o->stream.cork();
    // More than the socket buffers hold while the peer reads nothing: the flush stays in flight.
    const std::string chunk(1 << 20, 'y');
    int accepted = 0;
    for (int i = 0; i < 24; ++i)
        o->stream.async_write_some(asio::buffer(chunk), [&](error_code ec, std::size_t) { accepted += !ec; });
    error_code flush_result = asio::error::would_block;
    o->stream.async_flush([&](error_code ec) { flush_result = ec; });
    ctx.poll();
    CHECK(o->stream.writing());
    o->stream.next_layer().socket().close(); // the session's close_live
    o.reset();                               // ...and it lets go of the connection
    CHECK(!watch.expired());                 // the flush in flight keeps it
    ctx.run_for(watchdog);
    CHECK(accepted == 24);
    CHECK(flush_result == asio::error::operation_aborted);
    CHECK(watch.expired());
}

TEST_CASE("coalescing stream: bytes appended in place leave in one write with the flush")
{
    asio::io_context ctx;
    auto sockets = socket_pair(ctx);
    std::size_t writes = 0;
    coalescing_stream<counting_stream> s(std::move(sockets.first));
    s.next_layer().writes = &writes;
    for (int i = 0; i < 50; ++i) {
        const std::string piece = "piece " + std::to_string(i) + ";";
        std::memcpy(s.append(piece.size()), piece.data(), piece.size());
    }
    const auto expected = s.buffered();
    CHECK(writes == 0); // nothing leaves before the flush
    bool flushed = false;
    s.async_flush([&](error_code ec) { flushed = !ec; });
    std::string got(expected, '\0');
    asio::async_read(sockets.second, asio::buffer(got), [](error_code, std::size_t) {});
    ctx.run_for(watchdog);
    CHECK(flushed);
    CHECK(writes <= 2); // one write (a short write may need a second)
    CHECK(got.substr(0, 9) == "piece 0;p");
    CHECK(got.substr(got.size() - 9) == "piece 49;");
}

/// A layer reading an upgrade's response (`stop_reads_at_header_end`), and its peer.
struct upgrading_layer {
    asio::io_context ctx;
    std::pair<tcp::socket, tcp::socket> sockets = socket_pair(ctx);
    coalescing_stream<beast::tcp_stream> s{std::move(sockets.first)};
    tcp::socket& peer = sockets.second;

    upgrading_layer() { s.stop_reads_at_header_end(); }
};

TEST_CASE("coalescing stream: during an upgrade, a read stops at the end of the header block")
{
    upgrading_layer u;
    // The response and the first frames in one write, split by the reads below anywhere.
    const std::string head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
    const std::string after = "\x81\x02hi\x81\x03you";
    asio::async_write(u.peer, asio::buffer(head + after), [](error_code, std::size_t) {});
    std::string first, rest;
    char buf[7]; // small reads: the "\r\n\r\n" falls across two of them
    std::function<void()> read = [&] {
        u.s.async_read_some(asio::buffer(buf), [&](error_code ec, std::size_t n) {
            REQUIRE(!ec);
            (first.size() < head.size() ? first : rest).append(buf, n);
            if (rest.size() < after.size())
                read();
        });
    };
    read();
    u.ctx.run_for(watchdog);
    CHECK(first == head); // no read went past the header block
    CHECK(rest == after); // what followed came next, in order
    CHECK(u.s.held() == 0);
}

TEST_CASE("coalescing stream: an untimed read gives the bytes held from the header scan first - then the socket's")
{
    upgrading_layer u;
    const std::string head = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
    const std::string after = "\x81\x02hi";
    const std::string later = "\x81\x03you";
    asio::write(u.peer, asio::buffer(head + after));
    std::vector<std::string> reads;
    char buf[256];
    std::function<void()> untimed_read = [&] {
        u.s.async_read_some_untimed(asio::buffer(buf), [&](error_code ec, std::size_t n) {
            REQUIRE(!ec);
            reads.emplace_back(buf, n);
            if (reads.size() == 2) // the held bytes are taken: now the socket's
                asio::write(u.peer, asio::buffer(later));
            if (reads.size() < 3)
                untimed_read();
        });
    };
    u.s.async_read_some(asio::buffer(buf), [&](error_code ec, std::size_t n) {
        REQUIRE(!ec);
        reads.emplace_back(buf, n);
        untimed_read();
    });
    u.ctx.run_for(watchdog);
    REQUIRE(reads.size() == 3);
    CHECK(reads[0] == head);
    CHECK(reads[1] == after); // held, not skipped by going to the socket
    CHECK(reads[2] == later);
    CHECK(u.s.held() == 0);
}
