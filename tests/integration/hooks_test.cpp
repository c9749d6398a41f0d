// The logging hook (config::log) and the REST counters (client::stats) against the
// emulator and against small scripted peers (a WebSocket server that closes with a
// reason or floods the inbox, an HTTP server that serves canned SSE replies): each
// event reaches the sink once, with its fields; the API key never does; nothing is
// called below the minimum level.
#include "integration/fixture.hpp"

#include <lens/client.hpp>
#include <lens/event_stream.hpp>
#include <lens/logger.hpp>
#include <lens/session.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using lens::errc;
using lens::log_level;
using lens::task;
using lens::test::fixture;
using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

/// A record as the sink saw it, copied (the record's views die with the call).
struct seen {
    log_level level{};
    std::string event, source, operation, target, reason, last_event_id, message;
    boost::system::error_code code;
    unsigned http_status = 0;
    std::optional<ms> delay, server_delay;
    unsigned attempt = 0;
    std::size_t count = 0;

    /// Every text of the record, for secret checks.
    std::string all_text() const
    {
        return event + '\n' + source + '\n' + operation + '\n' + target + '\n' + reason + '\n' + last_event_id +
               '\n' + message;
    }
};

/// A sink that keeps every record; shared so that copies of the logger feed one list.
struct recorder {
    std::shared_ptr<std::vector<seen>> records = std::make_shared<std::vector<seen>>();

    lens::logger logger(log_level min_level = log_level::debug) const
    {
        return lens::logger(
            [records = records](const lens::log_record& r) {
                seen s;
                s.level = r.level;
                s.event = r.event;
                s.source = r.source;
                s.operation = r.operation;
                s.target = r.target;
                s.reason = r.reason;
                s.last_event_id = r.last_event_id;
                s.message = r.message;
                s.code = r.code;
                s.http_status = r.http_status;
                s.delay = r.delay;
                s.server_delay = r.server_delay;
                s.attempt = r.attempt;
                s.count = r.count;
                records->push_back(std::move(s));
            },
            min_level);
    }

    std::vector<seen> of(std::string_view event, std::string_view source = {}) const
    {
        std::vector<seen> out;
        for (auto& r : *records)
            if (r.event == event && (source.empty() || r.source == source))
                out.push_back(r);
        return out;
    }

    /// The events of `source`, in order.
    std::vector<std::string> sequence(std::string_view source) const
    {
        std::vector<std::string> out;
        for (auto& r : *records)
            if (r.source == source)
                out.push_back(r.event);
        return out;
    }

    /// No record holds `key`; at least `min_redacted` hold the mask instead.
    void check_never_holds(const std::string& key, std::size_t min_redacted) const
    {
        std::size_t redacted = 0;
        for (auto& r : *records) {
            INFO(r.message);
            CHECK(r.all_text().find(key) == std::string::npos);
            if (r.all_text().find("[redacted]") != std::string::npos)
                ++redacted;
        }
        CHECK(redacted >= min_redacted);
    }
};

lens::call_options within(ms t)
{
    lens::call_options o;
    o.timeout = t;
    return o;
}

lens::session_options quick_reconnect()
{
    lens::session_options so;
    so.reconnect.initial = 5ms;
    so.reconnect.max = 20ms;
    so.reconnect.jitter = 0;
    return so;
}

/// Yields until `done()` or `limit` passes; returns `done()`.
task<bool> eventually(std::function<bool()> done, ms limit = 5000ms)
{
    return lens::test::eventually(std::move(done), limit);
}

// ---- scripted peers ------------------------------------------------------------------

/// A WebSocket server on loopback: connection `i` answers each request frame with
/// `answer(type, i)`; a frame "close:REASON" closes the connection with that reason.
class ws_peer {
public:
    using stream = websocket::stream<beast::tcp_stream>;
    std::function<std::vector<std::string>(const std::string& request, int connection)> answer;
    int connections = 0;

    explicit ws_peer(asio::any_io_executor ex)
        : acceptor_(ex, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0))
    {
        asio::co_spawn(ex, accept_loop(), asio::detached);
    }

    std::string url() const { return "ws://127.0.0.1:" + std::to_string(port()) + "/ws"; }
    std::string http_endpoint() const { return "http://127.0.0.1:" + std::to_string(port()); }

    void stop()
    {
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        for (auto& weak : live_)
            if (auto s = weak.lock())
                beast::get_lowest_layer(*s).socket().close(ignored);
    }

private:
    unsigned short port() const { return acceptor_.local_endpoint().port(); }

    task<void> accept_loop()
    {
        for (;;) {
            auto [ec, socket] = co_await acceptor_.async_accept(nothrow);
            if (ec)
                co_return;
            auto ws = std::make_shared<stream>(std::move(socket));
            live_.push_back(ws);
            asio::co_spawn(acceptor_.get_executor(), serve(ws, connections++), asio::detached);
        }
    }

    task<void> serve(std::shared_ptr<stream> ws, int index)
    {
        auto [aec] = co_await ws->async_accept(nothrow);
        if (aec)
            co_return;
        ws->text(true);
        beast::flat_buffer buf;
        for (;;) {
            buf.clear();
            auto [ec, n] = co_await ws->async_read(buf, nothrow);
            if (ec)
                co_return;
            for (auto& frame : answer(beast::buffers_to_string(buf.data()), index)) {
                if (frame.starts_with("close:")) {
                    websocket::close_reason reason(websocket::close_code::policy_error, frame.substr(6));
                    co_await ws->async_close(reason, nothrow);
                    co_return;
                }
                auto [wec, wn] = co_await ws->async_write(asio::buffer(frame), nothrow);
                if (wec)
                    co_return;
            }
        }
    }

    asio::ip::tcp::acceptor acceptor_;
    std::vector<std::weak_ptr<stream>> live_;
};

/// An HTTP server on loopback answering connection N with `replies[N]` (the last
/// repeats), then closing it.
class http_peer {
public:
    http_peer(asio::any_io_executor ex, std::vector<std::string> replies)
        : acceptor_(ex, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), replies_(std::move(replies))
    {
        asio::co_spawn(ex, serve(), asio::detached);
    }

    std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/v0.5"; }
    void stop()
    {
        boost::system::error_code ignored;
        acceptor_.close(ignored);
    }

private:
    task<void> serve()
    {
        for (std::size_t n = 0;; ++n) {
            auto [ec, sock] = co_await acceptor_.async_accept(nothrow);
            if (ec)
                co_return;
            std::string head;
            auto [rec, k] = co_await asio::async_read_until(sock, asio::dynamic_buffer(head), "\r\n\r\n", nothrow);
            if (rec)
                continue; // the client went away before sending its head
            const std::string& answer = replies_[std::min(n, replies_.size() - 1)];
            co_await asio::async_write(sock, asio::buffer(answer), nothrow);
            boost::system::error_code ignored;
            sock.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
        }
    }

    asio::ip::tcp::acceptor acceptor_;
    std::vector<std::string> replies_;
};

/// A close-delimited event stream.
std::string stream_reply(const std::string& body)
{
    return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n" +
           body;
}

std::string log_event(const std::string& id, const std::string& text)
{
    return "id: " + id + "\ndata: {\"type\":\"log.info\",\"event_data\":{\"message\":\"" + text + "\"}}\n\n";
}

const std::string end_event = "data: {\"type\":\"sse.stream.end\"}\n\n";

std::string type_of(const std::string& request)
{
    const auto at = request.find("\"type\":\"");
    if (at == std::string::npos)
        return {};
    const auto from = at + 8;
    return request.substr(from, request.find('"', from) - from);
}

std::string reply_to(const std::string& request)
{
    return "{\"type\":\"" + type_of(request) + ".response\",\"event_data\":{\"is_valid\":true}}";
}

std::vector<std::string> frames(std::string a) { return std::vector<std::string>{std::move(a)}; }

/// The event names `names...` as a vector (a braced list in an ordinary function: g++ 12).
template <class... Names>
std::vector<std::string> seq(Names... names)
{
    return std::vector<std::string>{std::string(names)...};
}

lens::event_stream_options fast_stream()
{
    lens::event_stream_options o;
    o.reconnect = lens::backoff_policy{1ms, 5ms, 2.0, 0, std::chrono::seconds(30), 0};
    return o;
}

std::vector<std::string> two_streams()
{
    return std::vector<std::string>{stream_reply(log_event("1", "a")), stream_reply(log_event("2", "b") + end_event)};
}

/// The key as an event id, then a refusal quoting it, then the end.
std::vector<std::string> hostile_streams(const std::string& key)
{
    const std::string body = R"({"detail":"invalid token )" + key + R"("})";
    return std::vector<std::string>{
        stream_reply(log_event(key, "a")),
        "HTTP/1.1 503 X\r\nContent-Type: application/json\r\nRetry-After: 0\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body,
        stream_reply(end_event)};
}

} // namespace

// ---- REST -------------------------------------------------------------------------

TEST_CASE("hooks: a REST 429 with Retry-After then success - one retry record with the status and the delay")
{
    fixture f;
    recorder rec;
    f.cfg.log = rec.logger();
    f.cfg.retry.backoff.max_server_delay = 50ms; // the 1 s hint is clamped: no test sleeps a second
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        f.knobs().rest.fail_next = 1;
        f.knobs().rest.fail_status = 429;
        f.knobs().rest.retry_after_seconds = 1;
        CHECK((co_await c.list_lenses()).size() == 3);

        const auto retries = rec.of("retry");
        REQUIRE(retries.size() == 1);
        const auto& r = retries.front();
        CHECK(r.level == log_level::warning);
        CHECK(r.source == "rest");
        CHECK(r.operation == "lens/metadata");
        CHECK(r.http_status == 429);
        CHECK(r.code == errc::rate_limited);
        CHECK(r.attempt == 1);
        CHECK(r.delay == ms(50));
        CHECK(r.message.find("lens warning retry lens/metadata: HTTP 429") == 0);
        // The server's own hint, before clamping, at debug level.
        const auto limited = rec.of("rate_limited");
        REQUIRE(limited.size() == 1);
        CHECK(limited.front().level == log_level::debug);
        CHECK(limited.front().server_delay == ms(1000));
        CHECK(rec.of("give_up").empty());

        const auto st = c.stats();
        CHECK(st.calls == 1);
        CHECK(st.succeeded == 1);
        CHECK(st.failed == 0);
        CHECK(st.attempts == 2);
        CHECK(st.retries == 1);
        CHECK(st.rate_limited == 1);
        CHECK(st.server_errors == 0);
        CHECK(st.bytes_received > 0);
        CHECK(st.connections_opened >= 1);
    });
}

TEST_CASE("hooks: REST counters by outcome - 5xx retried then given up, a dropped connection, a 404")
{
    fixture f;
    recorder rec;
    f.cfg.log = rec.logger(log_level::info);
    f.cfg.retry.max_attempts = 2;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        f.knobs().rest.fail_next = 2;
        f.knobs().rest.fail_status = 503;
        co_await lens::test::expect_error(errc::server_error, [&] { return c.list_lenses(); });
        f.knobs().rest.drop_next = 1;
        CHECK((co_await c.list_lenses()).size() == 3);
        co_await lens::test::expect_error(errc::not_found, [&] { return c.get_session("lsn-nope"); });

        const auto st = c.stats();
        CHECK(st.calls == 3);
        CHECK(st.succeeded == 1);
        CHECK(st.failed == 2);
        CHECK(st.server_errors == 2);
        CHECK(st.connections_lost == 1);
        CHECK(st.http_errors == 1);
        CHECK(st.retries == 2);
        CHECK(st.attempts == 5); // 2 + 2 + 1

        // Two retries (503, the drop), one give_up; a final 404 is the caller's to report.
        CHECK(rec.of("retry").size() == 2);
        const auto gave_up = rec.of("give_up");
        REQUIRE(gave_up.size() == 1);
        CHECK(gave_up.front().level == log_level::error);
        CHECK(gave_up.front().http_status == 503);
        CHECK(gave_up.front().attempt == 2);
        CHECK(rec.of("rate_limited").empty()); // debug: below the minimum level
        CHECK(rec.of("connect").empty());      // REST connections are debug records
    });
}

// ---- sessions ------------------------------------------------------------------------

TEST_CASE("hooks: a session whose connection drops logs reconnect with a reason and a delay, then connect")
{
    fixture f;
    recorder rec;
    f.cfg.log = rec.logger(log_level::info);
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto record = co_await c.create_session(std::string(lens::emulator::builtin::mailbox));
        auto s = co_await c.open_session(record, quick_reconnect());
        CHECK(rec.sequence("session") == seq("connect"));

        // The second request frame of the connection drops it; the idempotent validate is
        // resent on the next connection.
        f.knobs().ws.drop_after_frames = 2;
        CHECK((co_await s.validate(within(3s))).is_valid);
        CHECK((co_await s.validate(within(3s))).is_valid);
        f.knobs().ws.drop_after_frames = 0;
        CHECK(s.stats().connects == 2);
        CHECK(rec.sequence("session") == seq("connect", "reconnect", "connect"));
        const auto r = rec.of("reconnect").at(0);
        CHECK(r.level == log_level::warning);
        CHECK(r.code == errc::connection_lost);
        CHECK_FALSE(r.reason.empty());
        REQUIRE(r.delay);
        CHECK(*r.delay == 5ms); // the first failure: reconnect.initial, no jitter
        CHECK(r.attempt == 1);
        CHECK(r.target.find("/lens/sessions/" + record.session_id) != std::string::npos);
        CHECK(rec.of("connect").at(1).reason == "reconnected");

        s.close();
        const auto stops = rec.of("disconnect");
        REQUIRE(stops.size() == 1);
        CHECK(stops.front().level == log_level::info);
        CHECK(stops.front().code == errc::closed);
    });
}

TEST_CASE("hooks: a silent peer logs dead_peer, then reconnect and connect")
{
    fixture f;
    recorder rec;
    f.cfg.log = rec.logger(log_level::info);
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto record = co_await c.create_session(std::string(lens::emulator::builtin::mailbox));
        auto so = quick_reconnect();
        so.dead_peer_timeout = 600ms;
        auto s = co_await c.open_session(record, so);
        f.knobs().ws.silent_after_frames = 1;
        CHECK((co_await s.validate(within(20s))).is_valid);
        CHECK(s.stats().dead_peer_disconnects == 1);
        CHECK(rec.sequence("session") == seq("connect", "dead_peer", "reconnect", "connect"));
        const auto d = rec.of("dead_peer").at(0);
        CHECK(d.level == log_level::warning);
        CHECK(d.reason.find("dead peer") != std::string::npos);
        CHECK(rec.of("reconnect").at(0).reason.find("dead peer") != std::string::npos);
    });
}

TEST_CASE("hooks: inbox overflow is logged once per overflow with the count dropped")
{
    fixture f;
    recorder rec;
    f.cfg.log = rec.logger(log_level::info);
    ws_peer peer(f.ctx.get_executor());
    peer.answer = [](const std::string& request, int) {
        std::vector<std::string> out;
        if (type_of(request) == "push")
            for (int i = 0; i < 5; ++i)
                out.push_back("{\"type\":\"note\",\"event_data\":{\"n\":" + std::to_string(i) + "}}");
        out.push_back(reply_to(request));
        return out;
    };
    f.run([&]() -> task<void> {
        auto cfg = f.cfg;
        cfg.endpoint = peer.http_endpoint();
        auto so = quick_reconnect();
        so.inbox_capacity = 2;
        auto s = co_await lens::session::open(cfg, peer.url(), so);
        co_await s.call("push");
        CHECK(s.stats().inbox_dropped == 3);
        auto overflows = rec.of("inbox_overflow");
        REQUIRE(overflows.size() == 1);
        CHECK(overflows.front().count == 1); // at the first drop
        CHECK(overflows.front().level == log_level::warning);
        // Drained empty, the next overflow is a new one.
        while (s.try_receive()) {
        }
        co_await s.call("push");
        CHECK(s.stats().inbox_dropped == 6);
        overflows = rec.of("inbox_overflow");
        REQUIRE(overflows.size() == 2);
        CHECK(overflows.back().count == 4);
        s.close();
        peer.stop();
    });
}

// ---- event streams ---------------------------------------------------------------------

TEST_CASE("hooks: an SSE stream that drops logs reconnect, then stream_resume with the last event id")
{
    fixture f;
    recorder rec;
    http_peer server(f.ctx.get_executor(),
                     two_streams());
    f.run([&]() -> task<void> {
        auto cfg = f.cfg;
        cfg.endpoint = server.endpoint();
        cfg.log = rec.logger(log_level::info);
        const auto o = fast_stream();
        lens::client c(f.ctx.get_executor(), cfg);
        auto stream = c.events("lsn-1", o);
        int events = 0;
        while (auto ev = co_await stream.next())
            ++events;
        CHECK(events == 3);
        CHECK(co_await eventually([&] { return !rec.of("disconnect").empty(); }));
        CHECK(rec.sequence("events") ==
              seq("connect", "reconnect", "stream_resume", "disconnect"));
        const auto r = rec.of("reconnect").at(0);
        CHECK(r.code == errc::connection_lost);
        CHECK(r.delay == ms(1));
        CHECK(r.last_event_id == "1");
        CHECK(r.target == "lsn-1");
        const auto resumed = rec.of("stream_resume").at(0);
        CHECK(resumed.level == log_level::info);
        CHECK(resumed.last_event_id == "1");
        CHECK(resumed.message == "lens info stream_resume [lsn-1]: Last-Event-ID 1");
        CHECK(rec.of("disconnect").at(0).level == log_level::info);
        server.stop();
    });
}

// ---- secrets and the cost of being off -------------------------------------------------

TEST_CASE("hooks: the API key never reaches the sink - error bodies, close reasons, refusals, event ids")
{
    fixture f;
    recorder rec;
    const std::string key = f.cfg.api_key;
    f.cfg.log = rec.logger(log_level::debug);

    // A WebSocket peer that closes its first connection with the key in the reason.
    ws_peer peer(f.ctx.get_executor());
    peer.answer = [key](const std::string& request, int connection) {
        if (connection == 0)
            return frames("close:bye " + key);
        return frames(reply_to(request));
    };
    // An SSE server whose event id is the key, then a refusal quoting it, then the end.
    http_peer sse(f.ctx.get_executor(), hostile_streams(key));
    f.run([&]() -> task<void> {
        // REST: a 503 whose body quotes the key, retried.
        auto c = f.make_client();
        f.knobs().rest.fail_next = 1;
        f.knobs().rest.fail_status = 503;
        f.knobs().rest.fail_body = R"({"detail":"invalid token )" + key + R"("})";
        CHECK((co_await c.list_lenses()).size() == 3);
        REQUIRE(rec.of("retry").size() == 1);
        CHECK(rec.of("retry").front().reason.find("invalid token [redacted]") != std::string::npos);

        // Session: the close reason quoting the key.
        auto cfg = f.cfg;
        cfg.endpoint = peer.http_endpoint();
        auto s = co_await lens::session::open(cfg, peer.url(), quick_reconnect());
        auto lost = co_await lens::test::expect_error(errc::connection_lost, [&] { return s.call("leak"); });
        CHECK(std::string(lost.what()).find(key) == std::string::npos);
        REQUIRE(co_await eventually([&] { return rec.of("connect", "session").size() == 2; }));
        CHECK(rec.of("reconnect", "session").at(0).reason.find("bye [redacted]") != std::string::npos);
        s.close();
        peer.stop();

        // Events: the key as an event id (sent back as Last-Event-ID, logged redacted), and a
        // refusal quoting it.
        auto scfg = f.cfg;
        scfg.endpoint = sse.endpoint();
        const auto o = fast_stream();
        lens::event_stream stream(f.ctx.get_executor(), scfg, "lsn-1", o);
        while (co_await stream.next()) {
        }
        CHECK(co_await eventually([&] { return !rec.of("stream_resume").empty(); }));
        CHECK(rec.of("stream_resume").at(0).last_event_id == "[redacted]");
        const auto reconnects = rec.of("reconnect", "events");
        REQUIRE(reconnects.size() == 2);
        CHECK(reconnects.at(1).http_status == 503);
        CHECK(reconnects.at(1).reason.find("invalid token [redacted]") != std::string::npos);
        sse.stop();
    });
    rec.check_never_holds(key, 5);
}

TEST_CASE("hooks: below the minimum level the sink is never called, and the counters count without a logger")
{
    fixture f;
    int calls = 0;
    f.cfg.log = lens::logger([&](const lens::log_record&) { ++calls; }, log_level::error);
    f.run([&]() -> task<void> {
        // A retried 429 (warning), a dropped session connection (warning) and its
        // connects (info): nothing reaches an error-level sink.
        auto c = f.make_client();
        f.knobs().rest.fail_next = 1;
        f.knobs().rest.fail_status = 429;
        CHECK((co_await c.list_lenses()).size() == 3);
        auto record = co_await c.create_session(std::string(lens::emulator::builtin::mailbox));
        auto s = co_await c.open_session(record, quick_reconnect());
        f.knobs().ws.drop_after_frames = 1;
        co_await lens::test::expect_error(errc::connection_lost, [&] { return s.update(nullptr, within(3s)); });
        f.knobs().ws.drop_after_frames = 0;
        CHECK((co_await s.validate(within(3s))).is_valid);
        CHECK(s.stats().connects == 2);
        s.close(); // closed by the user: info
        CHECK(calls == 0);

        // Without a logger (the default) the same work is counted all the same.
        lens::config quiet = f.cfg;
        quiet.log = lens::logger();
        auto q = f.make_client(quiet);
        f.knobs().rest.fail_next = 1;
        CHECK((co_await q.list_lenses()).size() == 3);
        CHECK(q.stats().rate_limited == 1);
        CHECK(q.stats().retries == 1);
        CHECK(calls == 0);
    });
}
