// The bad-input table (docs/bad_input.md): each way a server can send lens something
// broken — bytes that are not UTF-8, JSON of the wrong shape, a reply cut short, a
// reply trickled a byte at a time, silence, a certificate for another name, statuses
// 403 and 408, absurd delay hints, a caller outrunning the server — against each face
// it applies to (REST, the WebSocket control channel, the SSE stream), with the one
// outcome lens promises. Faults the emulator can make come from its knobs; the rest
// from `raw_peer`, a TCP server on loopback that sends exactly the bytes a test says.
//
// Deadlines are small (hundreds of milliseconds) so each case stays well under 2 s; the
// few elapsed-time checks are generous upper bounds proving a deadline fired, never
// lower bounds.
#include "integration/fixture.hpp"

#include <lens/client.hpp>
#include <lens/event_stream.hpp>
#include <lens/events.hpp>
#include <lens/session.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/detail/hybi13.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json/serialize.hpp>

#include <functional>
#include <memory>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
namespace emu = lens::emulator;
using lens::errc;
using lens::task;
using lens::test::contains;
using lens::test::expect_error;
using lens::test::fixture;
using namespace std::chrono_literals;

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

/// What `raw_peer` does on one connection, after reading the request head.
struct script {
    /// Complete a real WebSocket upgrade (Beast) before anything else; `prefix` and
    /// `bytes` then go out raw on the upgraded connection (hand-made frames). The peer
    /// never reads a frame, so it never answers a ping.
    bool upgrade = false;
    /// Wait for the client's first bytes after the upgrade (its request frame) first.
    bool await_request = false;
    std::string prefix; ///< sent at once
    std::string bytes;  ///< sent after `prefix`: at once, or a byte at a time when `trickle` is set
    std::chrono::milliseconds trickle{0}; ///< the gap between two bytes of `bytes` (0: no trickle)
    bool hold_open = false; ///< afterwards keep the connection open and silent until the client closes it
};

/// A TCP server on loopback that answers connection `i` (from 0) with `on_connection(i)`:
/// exactly those bytes, at that pace, then a close (or silence). It records each request
/// head. Everything runs on the test's one thread.
class raw_peer {
public:
    std::function<script(std::size_t connection)> on_connection;
    std::size_t connections = 0;        ///< TCP connections accepted
    std::vector<std::string> heads;     ///< request heads (method, target, headers), in order
    std::map<std::size_t, std::string> drained; ///< what the client sent while a connection was held open

    explicit raw_peer(asio::any_io_executor ex)
        : acceptor_(ex, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0))
    {
    }

    void start() { asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached); }

    unsigned short port() const { return acceptor_.local_endpoint().port(); }
    std::string http_endpoint() const { return "http://127.0.0.1:" + std::to_string(port()) + "/v0.5"; }
    std::string ws_url() const { return "ws://127.0.0.1:" + std::to_string(port()) + "/ws"; }

    /// Stops accepting and closes every connection, so the io_context runs dry.
    void stop()
    {
        stopped_ = true;
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        for (auto& weak : live_)
            if (auto s = weak.lock())
                s->socket().close(ignored);
    }

private:
    task<void> accept_loop()
    {
        for (;;) {
            auto [ec, socket] = co_await acceptor_.async_accept(nothrow);
            if (ec || stopped_)
                co_return;
            auto s = std::make_shared<beast::tcp_stream>(std::move(socket));
            live_.push_back(s);
            asio::co_spawn(acceptor_.get_executor(), serve(s, connections++), asio::detached);
        }
    }

    task<void> serve(std::shared_ptr<beast::tcp_stream> s, std::size_t index)
    {
        beast::flat_buffer buf;
        http::request<http::string_body> req;
        auto [rec, rn] = co_await http::async_read(*s, buf, req, nothrow);
        if (rec)
            co_return;
        std::ostringstream head;
        head << req.base();
        heads.push_back(head.str());
        const script sc = on_connection(index);

        // The upgraded stream, when there is one, must outlive the silence below.
        std::optional<websocket::stream<beast::tcp_stream&>> ws;
        if (sc.upgrade) {
            ws.emplace(*s);
            auto [aec] = co_await ws->async_accept(req, nothrow);
            if (aec)
                co_return;
            if (sc.await_request) {
                char one[1];
                auto [xec, xn] = co_await s->socket().async_receive(asio::buffer(one), asio::socket_base::message_peek,
                                                                   nothrow);
                if (xec)
                    co_return;
            }
        }
        if (!co_await send(*s, sc.prefix))
            co_return;
        if (sc.trickle.count() == 0) {
            if (!co_await send(*s, sc.bytes))
                co_return;
        } else {
            asio::steady_timer gap(s->get_executor());
            for (char c : sc.bytes) {
                gap.expires_after(sc.trickle);
                co_await gap.async_wait(nothrow);
                if (stopped_ || !co_await send(*s, std::string(1, c)))
                    co_return;
            }
        }
        if (sc.hold_open) {
            // Silent: wait until the client closes the connection (or stop() does). The
            // bytes the client sends (frames, pings) are drained unanswered.
            char sink[4096];
            for (;;) {
                auto [ec, n] = co_await s->socket().async_receive(asio::buffer(sink), nothrow);
                if (ec)
                    co_return;
                drained[index].append(sink, n);
            }
        }
        boost::system::error_code ignored;
        s->socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
        s->socket().close(ignored);
    }

    static task<bool> send(beast::tcp_stream& s, const std::string& bytes)
    {
        if (bytes.empty())
            co_return true;
        auto [ec, n] = co_await asio::async_write(s.socket(), asio::buffer(bytes), nothrow);
        co_return !ec;
    }

    asio::ip::tcp::acceptor acceptor_;
    std::vector<std::weak_ptr<beast::tcp_stream>> live_;
    bool stopped_ = false;
};

/// Runs `body` on the fixture (watchdog included) and stops `peer` however it ends.
template <class F>
void run_with(fixture& f, raw_peer& peer, F body)
{
    f.run([&]() -> task<void> {
        std::exception_ptr failure;
        try {
            co_await body();
        } catch (...) {
            failure = std::current_exception();
        }
        peer.stop();
        if (failure)
            std::rethrow_exception(failure);
    });
}

/// An unmasked server-to-client WebSocket frame (RFC 6455 §5.2) of `payload`, FIN set.
/// `announced` overrides the length in the header (a frame cut short).
std::string ws_frame(std::string_view payload, std::uint8_t opcode = 0x1, std::optional<std::size_t> announced = {})
{
    const std::size_t len = announced.value_or(payload.size());
    std::string f;
    f.push_back(static_cast<char>(0x80 | opcode));
    if (len < 126) {
        f.push_back(static_cast<char>(len));
    } else {
        f.push_back(static_cast<char>(126));
        f.push_back(static_cast<char>((len >> 8) & 0xFF));
        f.push_back(static_cast<char>(len & 0xFF));
    }
    f.append(payload);
    return f;
}

std::string json_reply(unsigned status, std::string_view reason, std::string body, std::string extra = {})
{
    return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra +
           "\r\n" + body;
}

/// The head of a close-delimited event stream.
const std::string sse_head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                             "Connection: close\r\n\r\n";
const std::string sse_chunked_head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n";
const std::string end_event = "data: {\"type\":\"sse.stream.end\"}\n\n";

std::string log_event(int id, std::string_view message)
{
    return "id: " + std::to_string(id) + "\ndata: {\"type\":\"log.info\",\"event_data\":{\"message\":\"" +
           std::string(message) + "\"}}\n\n";
}

std::string hex(std::size_t n)
{
    std::ostringstream o;
    o << std::hex << n;
    return o.str();
}

/// A config for a server at `endpoint` with the fixture's key and retry pacing, no CA.
lens::config config_at(const fixture& f, std::string endpoint)
{
    auto c = f.cfg;
    c.endpoint = std::move(endpoint);
    c.ca_file.clear();
    return c;
}

/// The endpoint with its host replaced ("127.0.0.1" → `host`).
std::string with_host(std::string endpoint, const std::string& host)
{
    auto at = endpoint.find("127.0.0.1");
    REQUIRE(at != std::string::npos);
    endpoint.replace(at, 9, host);
    return endpoint;
}

lens::session_options quick_session()
{
    lens::session_options so;
    so.connect_timeout = 2s;
    so.reconnect.initial = 5ms;
    so.reconnect.max = 20ms;
    so.reconnect.jitter = 0;
    return so;
}

lens::call_options within(std::chrono::milliseconds t)
{
    lens::call_options o;
    o.timeout = t;
    return o;
}

lens::event_stream_options quick_stream()
{
    lens::event_stream_options o;
    o.reconnect = lens::backoff_policy{1ms, 5ms, 2.0, 0.5, std::chrono::seconds(30), 0};
    return o;
}

/// Every event of `s` until it ends.
task<std::vector<lens::session_event>> drain(lens::event_stream& s)
{
    std::vector<lens::session_event> out;
    while (auto ev = co_await s.next())
        out.push_back(std::move(*ev));
    co_return out;
}

std::chrono::milliseconds since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
}

/// True when `text` holds a byte that is not printable ASCII (a raw byte echoed).
bool has_raw_bytes(std::string_view text)
{
    for (unsigned char c : text)
        if (c >= 0x80 || (c < 0x20 && c != '\n'))
            return true;
    return false;
}

} // namespace

// ==== REST ======================================================================================

TEST_CASE("bad input: REST - invalid UTF-8 inside a JSON reply is invalid_response, not retried, no raw bytes echoed")
{
    fixture f;
    f.watchdog = 10s;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        // Boost.JSON refuses invalid UTF-8 in strings (RFC 8259 §8.1): the body is "not
        // JSON", and its excerpt in the message is printable ASCII only.
        f.knobs().rest.body_next = "[{\"lens_id\": \"lns-\xC3\x28\xFF\"}]";
        auto e = co_await expect_error(errc::invalid_response, [&] { return c.list_lenses(); });
        CHECK(contains(e.what(), "lens/metadata"));
        CHECK(contains(e.what(), "non-JSON"));
        CHECK_FALSE(has_raw_bytes(e.what()));
        CHECK(f.stats().http_requests == 1);
        // Valid UTF-8 passes untouched, and the client is still usable.
        f.knobs().rest.body_next = "[{\"lens_id\": \"lns-caf\xC3\xA9\"}]";
        auto lenses = co_await c.list_lenses();
        REQUIRE(lenses.size() == 1);
        CHECK(lenses[0].lens_id == "lns-caf\xC3\xA9");
    });
}

TEST_CASE("bad input: REST - JSON of the wrong shape is invalid_response naming what was expected")
{
    fixture f;
    f.watchdog = 10s;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        f.knobs().rest.body_next = R"({"lenses": 3})"; // a list was expected
        auto e1 = co_await expect_error(errc::invalid_response, [&] { return c.list_lenses(); });
        CHECK(contains(e1.what(), "lens/metadata"));
        CHECK(contains(e1.what(), "expected a list"));
        f.knobs().rest.body_next = "[1, 2]"; // an object was expected
        auto e2 = co_await expect_error(errc::invalid_response, [&] { return c.get_session("lsn-1"); });
        CHECK(contains(e2.what(), "sessions/metadata"));
        CHECK(contains(e2.what(), "expected a JSON object"));
        f.knobs().rest.body_next = "[\"a\", 7]"; // records that are not objects
        auto e3 = co_await expect_error(errc::invalid_response, [&] { return c.list_sessions(); });
        CHECK(contains(e3.what(), "sessions/metadata"));
        CHECK(f.stats().http_requests == 3); // none retried
        CHECK((co_await c.list_lenses()).size() == 3);
    });
}

TEST_CASE("bad input: REST - a reply shorter than its Content-Length is connection_lost, retried for a GET only")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t) {
        script s;
        s.bytes = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"lens_id\":";
        return s; // then close: 88 bytes never come
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto c = f.make_client(config_at(f, peer.http_endpoint()));
        auto e = co_await expect_error(errc::connection_lost, [&] { return c.list_lenses(); });
        CHECK(contains(e.what(), "lens/metadata"));
        CHECK(peer.connections == f.cfg.retry.max_attempts);
        // A create may have been processed: not resent.
        auto e2 = co_await expect_error(errc::connection_lost, [&] { return c.create_session("lns-1"); });
        CHECK(contains(e2.what(), "sessions/create"));
        CHECK(peer.connections == f.cfg.retry.max_attempts + 1);
    });
}

TEST_CASE("bad input: REST - a chunked reply cut inside a chunk is connection_lost")
{
    fixture f;
    f.watchdog = 10s;
    f.cfg.retry.max_attempts = 2;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t) {
        script s;
        s.bytes = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "40\r\n[{\"lens_id\": \"lns-";
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto c = f.make_client(config_at(f, peer.http_endpoint()));
        auto e = co_await expect_error(errc::connection_lost, [&] { return c.list_lenses(); });
        CHECK(contains(e.what(), "lens/metadata"));
        CHECK(peer.connections == 2);
    });
}

TEST_CASE("bad input: REST - a reply trickled a byte at a time meets the call's deadline")
{
    fixture f;
    f.watchdog = 10s;
    f.cfg.timeout = 300ms;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t) {
        script s; // about 4 s at this pace; the deadline is 300 ms for the whole call
        s.bytes = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]";
        s.trickle = 50ms;
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto c = f.make_client(config_at(f, peer.http_endpoint()));
        const auto t0 = std::chrono::steady_clock::now();
        auto e = co_await expect_error(errc::timeout, [&] { return c.list_lenses(); });
        CHECK(since(t0) < 1500ms);
        CHECK(contains(e.what(), "lens/metadata"));
        CHECK(peer.connections == 1); // no time was left for a retry
    });
}

TEST_CASE("bad input: REST - 403 is unauthorized and final, 408 is timeout and retried for a GET only")
{
    fixture f;
    f.watchdog = 10s;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        f.knobs().rest.fail_status = 403;
        f.knobs().rest.fail_next = 1000;
        auto e403 = co_await expect_error(errc::unauthorized, [&] { return c.list_lenses(); });
        CHECK(e403.http_status() == 403);
        CHECK(contains(e403.what(), "lens/metadata: 403"));
        CHECK(f.stats().http_requests == 1);

        f.knobs().rest.fail_status = 408;
        auto e408 = co_await expect_error(errc::timeout, [&] { return c.list_lenses(); });
        CHECK(e408.http_status() == 408);
        CHECK(contains(e408.what(), "lens/metadata: 408"));
        CHECK(f.stats().http_requests == 1 + f.cfg.retry.max_attempts);
        auto create = co_await expect_error(errc::timeout,
                                            [&] { return c.create_session(std::string(emu::builtin::mailbox)); });
        CHECK(create.http_status() == 408);
        CHECK(f.stats().http_requests == 2 + f.cfg.retry.max_attempts);
        f.knobs().rest.fail_next = 0;
        CHECK((co_await c.list_lenses()).size() == 3);
    });
}

// ==== WebSocket ================================================================================

TEST_CASE("bad input: WebSocket - a text frame of invalid UTF-8 fails the connection - connection_lost, then a reconnect")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t i) {
        script s;
        s.upgrade = true;
        s.hold_open = true;
        if (i <= 1) { // answers the request with a text frame that is not UTF-8 (RFC 6455 §8.1)
            s.await_request = true;
            s.bytes = ws_frame("{\"type\":\"x.response\",\"m\":\"\xC3\x28\"}");
            s.hold_open = i == 0; // 0 ignores the client's close (1007), 1 ends the connection
        }
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto so = quick_session();
        so.dead_peer_timeout = 30s; // not what ends the connection: the client does, at once
        auto s = co_await lens::session::open(config_at(f, peer.http_endpoint()), peer.ws_url(), so);
        auto e = co_await expect_error(errc::connection_lost, [&] { return s.call("x", json::object(), within(5s)); });
        CHECK(contains(e.what(), "x: connection lost"));
        CHECK(contains(e.what(), "not valid utf8"));
        CHECK(co_await lens::test::eventually([&] { return s.stats().connects == 2; }));
        // The client failed the connection with a close frame of code 1007 (masked, RFC
        // 6455 §5.3), after its request frame, and did not wait for the peer's answer.
        const std::string& sent = peer.drained[0];
        REQUIRE(sent.size() >= 8);
        const std::string close = sent.substr(sent.size() - 8);
        CHECK(static_cast<unsigned char>(close[0]) == 0x88);
        CHECK(static_cast<unsigned char>(close[1]) == 0x82);
        const int code = ((static_cast<unsigned char>(close[6]) ^ static_cast<unsigned char>(close[2])) << 8) |
                         (static_cast<unsigned char>(close[7]) ^ static_cast<unsigned char>(close[3]));
        CHECK(code == 1007);
        // A peer that ends the connection itself: the same.
        auto e2 = co_await expect_error(errc::connection_lost, [&] { return s.call("x", json::object(), within(5s)); });
        CHECK(contains(e2.what(), "x: connection lost"));
        CHECK(s.stats().dead_peer_disconnects == 0);
        CHECK(co_await lens::test::eventually([&] { return s.stats().connects == 3; }));
        CHECK(peer.connections == 3);
    });
}

TEST_CASE("bad input: WebSocket - frames sent in the same write as the 101 response are not lost")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [&](std::size_t) {
        // The upgrade answered by hand, with two frames right behind it in one write:
        // Beast reads the response; the frames must still reach the session's reader.
        const std::string& head = peer.heads.back();
        const auto at = head.find("Sec-WebSocket-Key: ") + 19;
        const std::string key = head.substr(at, head.find("\r\n", at) - at);
        websocket::detail::sec_ws_accept_type accept;
        websocket::detail::make_sec_ws_accept(accept, key);
        script s;
        s.prefix = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: " + std::string(accept.data(), accept.size()) + "\r\n\r\n" +
                   ws_frame("{\"type\":\"hello\",\"n\":1}") + ws_frame("{\"type\":\"hello\",\"n\":2}");
        s.hold_open = true;
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto s = co_await lens::session::open(config_at(f, peer.http_endpoint()), peer.ws_url(), quick_session());
        for (int n = 1; n <= 2; ++n) {
            auto v = co_await s.receive(5s);
            REQUIRE(v.has_value());
            CHECK(v->at("n").as_int64() == n);
        }
        CHECK(s.stats().connects == 1);
    });
}

TEST_CASE("bad input: WebSocket - a frame cut short by a close is connection_lost")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t i) {
        script s;
        s.upgrade = true;
        if (i == 0) { // announces 1000 bytes, sends 20, closes
            s.await_request = true;
            s.bytes = ws_frame("{\"type\":\"x.response\",", 0x1, 1000);
        } else {
            s.hold_open = true;
        }
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto s = co_await lens::session::open(config_at(f, peer.http_endpoint()), peer.ws_url(), quick_session());
        auto e = co_await expect_error(errc::connection_lost, [&] { return s.call("x", json::object(), within(2s)); });
        CHECK(contains(e.what(), "x"));
        CHECK(co_await lens::test::eventually([&] { return s.stats().connects == 2; }));
    });
}

TEST_CASE("bad input: WebSocket - a reply of the wrong shape is invalid_response - a malformed frame goes to the inbox")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t) {
        script s;
        s.upgrade = true;
        s.await_request = true;
        s.hold_open = true;
        // Not JSON (kept for receive() as a string), then the status reply with an array
        // where the record's object belongs.
        s.bytes = ws_frame("{not json") + ws_frame("{\"type\":\"model.query.response\",\"event_data\":[1,2]}");
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto s = co_await lens::session::open(config_at(f, peer.http_endpoint()), peer.ws_url(), quick_session());
        auto e = co_await expect_error(errc::invalid_response, [&] {
            return s.query(lens::query_request::image_qa("what is this", "image-bytes"), within(2s));
        });
        CHECK(contains(e.what(), "model.query"));
        CHECK(contains(e.what(), "no event_data.result"));
        auto junk = s.try_receive();
        REQUIRE(junk);
        CHECK(junk->is_string());
        CHECK(s.stats().connects == 1); // a bad reply costs its request, not the connection
    });
}

TEST_CASE("bad input: WebSocket - an upgrade response trickled a byte at a time meets connect_timeout")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t) {
        script s;
        s.bytes = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        s.trickle = 50ms;
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto so = quick_session();
        so.connect_timeout = 300ms;
        const auto t0 = std::chrono::steady_clock::now();
        const auto cfg = config_at(f, peer.http_endpoint());
        const auto url = peer.ws_url(); // open() keeps references: they must outlive the await
        auto e = co_await expect_error(errc::timeout, [&] { return lens::session::open(cfg, url, so); });
        CHECK(since(t0) < 1500ms);
        CHECK(contains(e.what(), "session.open"));
    });
}

TEST_CASE("bad input: WebSocket - an upgrade response cut short is a failed attempt, retried within connect_timeout")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t) {
        script s;
        s.bytes = "HTTP/1.1 101 Switching Protocols\r\nUpgr"; // then close
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto so = quick_session();
        so.connect_timeout = 300ms;
        const auto cfg = config_at(f, peer.http_endpoint());
        const auto url = peer.ws_url();
        auto e = co_await expect_error([&] { return lens::session::open(cfg, url, so); });
        // open() gives up when connect_timeout passes, quoting the last attempt's failure.
        CHECK(e.code() == lens::make_error_code(errc::timeout));
        CHECK(contains(e.what(), "session.open"));
        CHECK(peer.connections >= 2); // retried, on the reconnect schedule
    });
}

TEST_CASE("bad input: WebSocket - silence after the upgrade - the request times out, the dead peer is dropped")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t) {
        script s; // upgrades, then never reads a frame or answers a ping
        s.upgrade = true;
        s.hold_open = true;
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto so = quick_session();
        so.dead_peer_timeout = 400ms;
        auto s = co_await lens::session::open(config_at(f, peer.http_endpoint()), peer.ws_url(), so);
        auto e = co_await expect_error(errc::timeout, [&] { return s.call("x", json::object(), within(100ms)); });
        CHECK(contains(e.what(), "x"));
        CHECK(contains(e.what(), "100 ms"));
        // Half the dead-peer period later a ping goes out; unanswered, the connection is
        // dropped at the full period and the session reconnects.
        CHECK(co_await lens::test::eventually([&] { return s.stats().dead_peer_disconnects == 1; }, 2s));
        CHECK(co_await lens::test::eventually([&] { return s.stats().connects == 2; }, 2s));
    });
}

TEST_CASE("bad input: WebSocket - refused upgrades - 403 is unauthorized at once, 408 is retried")
{
    fixture f;
    f.watchdog = 10s;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto record = co_await c.create_session(std::string(emu::builtin::mailbox));
        f.knobs().ws.refuse_upgrade_status = 403;
        const auto upgrades = f.stats().ws_upgrades;
        const auto so = quick_session(); // open() keeps references: they must outlive the await
        auto e403 = co_await expect_error(errc::unauthorized, [&] { return lens::session::open(f.cfg, record, so); });
        CHECK(contains(e403.what(), "403"));
        CHECK(f.stats().ws_upgrades == upgrades + 1);

        f.knobs().ws.refuse_upgrade_status = 408;
        f.knobs().ws.refuse_next_upgrades = 2;
        auto s = co_await lens::session::open(f.cfg, record, so);
        CHECK(s.stats().connect_failures == 2);
        CHECK((co_await s.validate()).is_valid);
    });
}

TEST_CASE("bad input: WebSocket - a 429 upgrade with an absurd Retry-After is clamped to max_server_delay")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t i) {
        script s;
        if (i == 0) {
            s.bytes = json_reply(429, "Too Many Requests", "{}", "Retry-After: 99999999999999999999\r\n");
        } else {
            s.upgrade = true;
            s.hold_open = true;
        }
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto so = quick_session();
        so.reconnect.max_server_delay = 20ms;
        so.connect_timeout = 5s;
        const auto t0 = std::chrono::steady_clock::now();
        auto s = co_await lens::session::open(config_at(f, peer.http_endpoint()), peer.ws_url(), so);
        CHECK(since(t0) < 1500ms);
        CHECK(s.stats().connect_failures == 1);
        CHECK(peer.connections == 2);
    });
}

TEST_CASE("bad input: WebSocket - TLS with an unknown CA or a host name the certificate does not name is certificate_rejected, not retried")
{
    fixture f(lens::test::tls_options());
    f.watchdog = 10s;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto record = co_await c.create_session(std::string(emu::builtin::mailbox));
        auto so = quick_session();
        so.reconnect.max_attempts = 0; // unlimited: the rejection must stop it anyway

        auto untrusted = f.cfg;
        untrusted.ca_file.clear();
        auto connections = f.stats().tcp_connections;
        auto e1 = co_await expect_error(errc::certificate_rejected,
                                        [&] { return lens::session::open(untrusted, record, so); });
        CHECK(contains(e1.what(), "session.open"));
        CHECK(f.stats().tcp_connections == connections + 1);

        // "127.1" reaches 127.0.0.1, but the certificate names only localhost and 127.0.0.1.
        auto other_name = f.cfg;
        other_name.endpoint = with_host(f.cfg.endpoint, "127.1");
        auto renamed = record;
        renamed.session_endpoint = with_host(record.session_endpoint, "127.1");
        connections = f.stats().tcp_connections;
        auto e2 = co_await expect_error(errc::certificate_rejected,
                                        [&] { return lens::session::open(other_name, renamed, so); });
        CHECK(contains(e2.what(), "session.open"));
        CHECK(f.stats().tcp_connections == connections + 1);
    });
}

TEST_CASE("bad input: WebSocket - max_pending bounds the requests a session holds - the next is limit_exceeded, not sent")
{
    auto o = lens::test::emulator_options();
    o.ws.reply_delay = 500ms; // long enough that no reply frees a place before the 9th request
    fixture f(o);
    f.watchdog = 10s;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto record = co_await c.create_session(std::string(emu::builtin::mailbox));
        auto so = quick_session();
        so.max_pending = 8;
        so.heartbeat_idle = 0ms;
        auto s = co_await lens::session::open(f.cfg, record, so);
        auto ex = co_await asio::this_coro::executor;
        const auto frames = f.stats().ws_frames_received;
        int answered = 0;
        for (int i = 0; i < 8; ++i)
            asio::co_spawn(ex, s.validate(within(5s)), [&](std::exception_ptr e, lens::validation v) {
                answered += (!e && v.is_valid) ? 1 : 0;
            });
        CHECK(co_await lens::test::eventually([&] { return s.stats().pending == 8; }));
        auto e = co_await expect_error(errc::limit_exceeded, [&] { return s.validate(); });
        CHECK(contains(e.what(), "session.validate"));
        CHECK(contains(e.what(), "max_pending (8"));
        CHECK(s.stats().pending == 8);
        // Replies free the places: the session takes requests again.
        CHECK(co_await lens::test::eventually([&] { return answered == 8; }, 5s));
        CHECK(s.stats().pending == 0);
        CHECK((co_await s.validate()).is_valid);
        CHECK(f.stats().ws_frames_received == frames + 9); // the refused one was never sent
    });
}

// ==== SSE ======================================================================================

TEST_CASE("bad input: SSE - invalid UTF-8 in event data is decoded with U+FFFD and the event delivered")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t) {
        script s;
        s.bytes = sse_head + log_event(1, "a\xFF" "b\xC3\x28" "c") + end_event;
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        lens::event_stream s(f.ctx.get_executor(), config_at(f, peer.http_endpoint()), "lsn-1", quick_stream());
        auto evs = co_await drain(s);
        REQUIRE(evs.size() == 2);
        auto* log = evs[0].get_if<lens::log_message>();
        REQUIRE(log);
        // The WHATWG decoder the SSE standard prescribes: one U+FFFD per maximal invalid subpart.
        CHECK(log->message == "a\xEF\xBF\xBD" "b\xEF\xBF\xBD(c");
        CHECK(evs[0].id == "1");
        CHECK(evs[1].kind() == lens::event_kind::stream_end);
        CHECK(s.statistics().malformed == 0);
    });
}

TEST_CASE("bad input: SSE - a chunked stream cut inside a chunk resumes with Last-Event-ID, nothing repeated")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t i) {
        script s;
        if (i == 0) {
            const std::string data = log_event(1, "one") + log_event(2, "two");
            const std::string chunk = data.substr(0, data.size() - 10);
            // The chunk announces all of `data`; the connection closes 10 bytes short.
            s.bytes = sse_chunked_head + hex(data.size()) + "\r\n" + chunk;
        } else {
            s.bytes = sse_head + log_event(2, "two") + end_event;
        }
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        lens::event_stream s(f.ctx.get_executor(), config_at(f, peer.http_endpoint()), "lsn-1", quick_stream());
        auto evs = co_await drain(s);
        REQUIRE(evs.size() == 3);
        CHECK(evs[0].id == "1");
        CHECK(evs[1].id == "2");
        CHECK(evs[1].get_if<lens::log_message>()->message == "two");
        CHECK(evs[2].kind() == lens::event_kind::stream_end);
        REQUIRE(peer.heads.size() == 2);
        CHECK(contains(peer.heads[1], "Last-Event-ID: 1\r\n"));
        CHECK(s.statistics().half_events_discarded == 1);
    });
}

TEST_CASE("bad input: SSE - a reply head trickled a byte at a time meets config timeout on each attempt")
{
    fixture f;
    f.watchdog = 10s;
    f.cfg.timeout = 300ms;
    f.cfg.retry.max_attempts = 2;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t) {
        script s;
        s.bytes = sse_head + end_event;
        s.trickle = 50ms;
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        lens::event_stream s(f.ctx.get_executor(), config_at(f, peer.http_endpoint()), "lsn-1", quick_stream());
        const auto t0 = std::chrono::steady_clock::now();
        auto e = co_await expect_error(errc::timeout, [&] { return s.next(); });
        CHECK(since(t0) < 1800ms);
        CHECK(e.operation() == "events");
        CHECK(s.statistics().attempts == 2);
        CHECK(s.statistics().connections == 0);
    });
}

TEST_CASE("bad input: SSE - a body trickled a byte at a time is slow, not dead - every event arrives")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t) {
        script s;
        s.prefix = sse_head;
        s.bytes = "id: 1\ndata: {}\n\n" + end_event; // 49 bytes, 10 ms apart
        s.trickle = 10ms;
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto o = quick_stream();
        o.idle_timeout = 200ms; // bytes keep coming: never idle
        lens::event_stream s(f.ctx.get_executor(), config_at(f, peer.http_endpoint()), "lsn-1", o);
        auto evs = co_await drain(s);
        REQUIRE(evs.size() == 2);
        CHECK(evs[0].id == "1");
        CHECK(evs[1].kind() == lens::event_kind::stream_end);
        CHECK(s.statistics().idle_timeouts == 0);
        CHECK(peer.connections == 1);
    });
}

TEST_CASE("bad input: SSE - silence after the reply head - the idle watchdog reconnects with Last-Event-ID")
{
    fixture f;
    f.watchdog = 10s;
    raw_peer peer(f.ctx.get_executor());
    peer.on_connection = [](std::size_t i) {
        script s;
        if (i == 0) {
            s.bytes = sse_head + log_event(1, "before the silence");
            s.hold_open = true;
        } else {
            s.bytes = sse_head + log_event(2, "after") + end_event;
        }
        return s;
    };
    peer.start();
    run_with(f, peer, [&]() -> task<void> {
        auto o = quick_stream();
        o.idle_timeout = 150ms;
        lens::event_stream s(f.ctx.get_executor(), config_at(f, peer.http_endpoint()), "lsn-1", o);
        auto evs = co_await drain(s);
        REQUIRE(evs.size() == 3);
        CHECK(evs[1].id == "2");
        CHECK(s.statistics().idle_timeouts == 1);
        REQUIRE(peer.heads.size() == 2);
        CHECK(contains(peer.heads[1], "Last-Event-ID: 1\r\n"));
    });
}

TEST_CASE("bad input: SSE - TLS with an unknown CA or a host name the certificate does not name is certificate_rejected, not retried")
{
    fixture f(lens::test::tls_options());
    f.watchdog = 10s;
    f.run([&]() -> task<void> {
        auto untrusted = f.cfg;
        untrusted.ca_file.clear();
        lens::event_stream s1(f.ctx.get_executor(), untrusted, "lsn-1", quick_stream());
        auto e1 = co_await expect_error(errc::certificate_rejected, [&] { return s1.next(); });
        CHECK(e1.operation() == "events");
        CHECK(contains(e1.what(), "certificate"));
        CHECK(s1.statistics().attempts == 1);

        auto other_name = f.cfg;
        other_name.endpoint = with_host(f.cfg.endpoint, "127.1");
        lens::event_stream s2(f.ctx.get_executor(), other_name, "lsn-1", quick_stream());
        auto e2 = co_await expect_error(errc::certificate_rejected, [&] { return s2.next(); });
        CHECK(e2.operation() == "events");
        CHECK(s2.statistics().attempts == 1);
        CHECK(f.stats().sse_connections == 0);
    });
}
