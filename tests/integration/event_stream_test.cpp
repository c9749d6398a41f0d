// lens::event_stream against the emulator (typed events, cuts, stalls, replay)
// and against a tiny scripted HTTP server (each status class, framing, headers).
#include "integration/sse_support.hpp"

#include "emulator/sse_feed.hpp"

#include <lens/client.hpp>
#include <lens/emulator.hpp>
#include <lens/event_stream.hpp>

#include <doctest/doctest.h>

#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/serialize.hpp>

#include <set>

namespace {

using namespace lens::test;
using namespace boost::asio::experimental::awaitable_operators;
namespace json = boost::json;

lens::event_stream_options fast_options()
{
    lens::event_stream_options o;
    o.reconnect = lens::backoff_policy{1ms, 5ms, 2.0, 0.5, std::chrono::seconds(30), 0};
    return o;
}

struct fixture {
    asio::io_context ctx;
    lens::emulator::server emu{ctx.get_executor(), lens::test::emulator_options()};
    lens::client client{ctx.get_executor(), emulator_config(emu)};

    fixture()
    {
        emu.knobs().sse.result_interval = 1ms;
        emu.knobs().sse.heartbeat_interval = 10s;
        emu.start();
    }

    template <class T>
    T go(asio::awaitable<T> work)
    {
        return run(ctx, std::move(work));
    }

    lens::event_stream stream(const std::string& id, lens::event_stream_options o = fast_options())
    {
        return lens::event_stream(ctx.get_executor(), emulator_config(emu), id, std::move(o));
    }
};

/// Everything a stream delivered, until it ended. `on_event` runs after each event
/// (e.g. to destroy the session once enough arrived).
asio::awaitable<std::vector<lens::session_event>>
collect(lens::event_stream& s, std::function<asio::awaitable<void>(const std::vector<lens::session_event>&)> on_event)
{
    std::vector<lens::session_event> out;
    while (auto ev = co_await s.next()) {
        out.push_back(std::move(*ev));
        if (on_event)
            co_await on_event(out);
    }
    co_return out;
}

std::size_t count_lens_events(const std::vector<lens::session_event>& evs)
{
    return std::count_if(evs.begin(), evs.end(), [](auto& e) { return !e.type.starts_with("sse.stream."); });
}

/// Destroys the session once `n` lens events were delivered.
std::function<asio::awaitable<void>(const std::vector<lens::session_event>&)>
destroy_after(lens::client& c, std::string id, std::size_t n)
{
    auto done = std::make_shared<bool>(false);
    return [&c, id, n, done](const std::vector<lens::session_event>& evs) -> asio::awaitable<void> {
        if (!*done && count_lens_events(evs) >= n) {
            *done = true;
            co_await c.destroy_session(id);
        }
    };
}

/// Every lens event exactly once, ids 1..n in order, payloads as expected.
void check_exactly_once(const std::vector<lens::session_event>& evs, const std::vector<json::object>& expected)
{
    std::vector<const lens::session_event*> lens_evs;
    for (auto& e : evs)
        if (!e.type.starts_with("sse.stream."))
            lens_evs.push_back(&e);
    REQUIRE(lens_evs.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        INFO("event ", i);
        CHECK(lens_evs[i]->id == std::to_string(i + 1));
        CHECK(lens_evs[i]->raw() == expected[i]);
    }
}

} // namespace

TEST_CASE("event_stream: typed events from the emulator, ending after sse.stream.end")
{
    fixture f;
    f.emu.knobs().sse.csv_window_rows = 10;
    f.emu.knobs().sse.heartbeat_interval = 2ms;
    const std::string csv = make_csv(30);
    // connect the consumer first, then set the input (docs/protocol.md §4.6)
    const auto id = f.go(start_activity_session(f.client, "", ""));
    auto s = f.stream(id);
    f.go(s.connect());
    CHECK(s.statistics().connections == 1);
    f.go(f.client.upload_file("m.csv", csv));
    f.go(f.client.process_event(id, "input_stream.set", input_stream_config("csv_file_reader", "m.csv")));
    auto evs = f.go(collect(s, destroy_after(f.client, id, 4)));

    REQUIRE(evs.size() >= 6);
    CHECK(evs.front().kind() == lens::event_kind::stream_start);
    CHECK(evs.front().get_if<lens::stream_start>()->session_id == id);
    CHECK_FALSE(evs.front().get_if<lens::stream_start>()->reader_id.empty());
    CHECK(evs.back().kind() == lens::event_kind::stream_end);
    CHECK(s.ended());
    check_exactly_once(evs, lens::emulator::detail::activity_monitor_csv_events("m.csv", csv, 10));

    std::size_t heartbeats = 0, results = 0;
    for (auto& e : evs) {
        if (auto* h = e.get_if<lens::heartbeat>()) {
            ++heartbeats;
            CHECK(h->session_id == id);
            CHECK(h->message_timeout >= 1);
        }
        if (auto* r = e.get_if<lens::inference_result>()) {
            ++results;
            REQUIRE(r->label());
            CHECK((*r->label() == "HEALTHY" || *r->label() == "BROKEN"));
            CHECK(r->score("HEALTHY"));
            CHECK(r->query_id.starts_with("qry-"));
            CHECK(e.event_data().at("query_metadata").as_object().contains("rows"));
        }
        if (auto* l = e.get_if<lens::log_message>()) {
            CHECK(l->level == "info");
            CHECK(l->message.find("m.csv") != std::string::npos);
        }
    }
    CHECK(results == 3);
    (void)heartbeats; // they arrive at their own pace
    CHECK(s.last_event_id() == "4");
    // after the end: nullopt again, nothing more
    CHECK_FALSE(f.go(s.next()));
}

TEST_CASE("event_stream: every event exactly once across ten forced cuts")
{
    struct variant {
        const char* name;
        std::function<void(lens::emulator::sse_knobs&)> set;
    };
    const variant variants[] = {
        {"plain", [](auto&) {}},
        {"cr, chunks of 7, comments", [](auto& k) {
             k.line_end = lens::emulator::sse_knobs::line_ending::cr;
             k.chunk_size = 7;
             k.comments = true;
         }},
        {"crlf, chunks of 1, bom", [](auto& k) {
             k.line_end = lens::emulator::sse_knobs::line_ending::crlf;
             k.chunk_size = 1;
             k.bom = true;
         }},
    };
    for (const auto& v : variants) {
        INFO(v.name);
        fixture f;
        f.emu.knobs().sse.csv_window_rows = 1;
        v.set(f.emu.knobs().sse);
        f.emu.knobs().sse.cut_after_events = 3;
        const std::string csv = make_csv(32); // log.info + 32 results = 33 events: 10 cuts
        const auto id = f.go(start_activity_session(f.client, "cut.csv", csv));
        auto s = f.stream(id);
        auto evs = f.go(collect(s, destroy_after(f.client, id, 33)));
        check_exactly_once(evs, lens::emulator::detail::activity_monitor_csv_events("cut.csv", csv, 1));
        CHECK(evs.back().kind() == lens::event_kind::stream_end);
        const auto st = s.statistics();
        CHECK(st.reconnects >= 10);
        CHECK(st.half_events_discarded >= 10);
        CHECK(st.events_delivered == evs.size());
    }
}

TEST_CASE("event_stream: resumes after a given Last-Event-ID")
{
    fixture f;
    f.emu.knobs().sse.csv_window_rows = 5;
    const std::string csv = make_csv(20); // 5 events
    const auto id = f.go(start_activity_session(f.client, "r.csv", csv));
    {
        auto s = f.stream(id);
        auto evs = f.go(collect(s, [&](const std::vector<lens::session_event>& evs) -> asio::awaitable<void> {
            if (count_lens_events(evs) == 5)
                s.close();
            co_return;
        }));
        CHECK(count_lens_events(evs) == 5);
        CHECK(s.last_event_id() == "5");
    }
    f.go(f.client.destroy_session(id));
    auto o = fast_options();
    o.last_event_id = "3";
    auto s = f.stream(id, o);
    auto evs = f.go(collect(s, {}));
    REQUIRE(evs.size() == 4); // start, 4, 5, end
    CHECK(evs[0].id == "3");  // envelope events report the id they follow
    CHECK(evs[1].id == "4");
    CHECK(evs[2].id == "5");
    CHECK(evs[3].kind() == lens::event_kind::stream_end);
}

TEST_CASE("event_stream: the idle watchdog reconnects a stalled stream, losing nothing")
{
    fixture f;
    f.emu.knobs().sse.heartbeat_interval = 10ms;
    f.emu.knobs().sse.csv_window_rows = 1;
    f.emu.knobs().sse.result_interval = 2ms;
    const std::string csv = make_csv(40);
    const auto id = f.go(start_activity_session(f.client, "", ""));
    auto o = fast_options();
    o.idle_timeout = 60ms;
    auto s = f.stream(id, o);
    f.go(s.connect());
    f.go(f.client.upload_file("s.csv", csv));
    f.go(f.client.process_event(id, "input_stream.set", input_stream_config("csv_file_reader", "s.csv")));

    auto evs = f.go([&]() -> asio::awaitable<std::vector<lens::session_event>> {
        std::vector<lens::session_event> out;
        asio::steady_timer t(co_await asio::this_coro::executor);
        bool destroyed = false;
        for (;;) {
            // next() composed with a timer: the timer wakes us to steer the emulator
            t.expires_after(5ms);
            auto r = co_await (s.next() || t.async_wait(asio::use_awaitable));
            if (r.index() == 0) {
                auto ev = std::get<0>(std::move(r));
                if (!ev)
                    break;
                out.push_back(std::move(*ev));
            }
            const std::size_t n = count_lens_events(out);
            if (n == 5 && s.statistics().idle_timeouts == 0)
                f.emu.knobs().sse.stall = true; // silence: no events, no heartbeats
            if (f.emu.knobs().sse.stall && s.statistics().idle_timeouts >= 2)
                f.emu.knobs().sse.stall = false;
            if (n == 41 && !destroyed) {
                destroyed = true;
                co_await f.client.destroy_session(id);
            }
        }
        co_return out;
    }());
    check_exactly_once(evs, lens::emulator::detail::activity_monitor_csv_events("s.csv", csv, 1));
    const auto st = s.statistics();
    CHECK(st.idle_timeouts >= 2);
    CHECK(st.reconnects >= 2);
}

TEST_CASE("event_stream: next() raced against a timer loses and repeats nothing")
{
    fixture f;
    f.emu.knobs().sse.csv_window_rows = 1;
    f.emu.knobs().sse.result_interval = 0ms;
    f.emu.knobs().sse.chunk_size = 50; // many small reads: many wake-ups
    const std::string csv = make_csv(300);
    const auto id = f.go(start_activity_session(f.client, "race.csv", csv));
    auto o = fast_options();
    o.queue_capacity = 4;
    auto s = f.stream(id, o);
    std::size_t timer_wins = 0;
    auto evs = f.go([&]() -> asio::awaitable<std::vector<lens::session_event>> {
        std::vector<lens::session_event> out;
        asio::steady_timer t(co_await asio::this_coro::executor);
        bool destroyed = false;
        for (;;) {
            t.expires_after(0ms); // ready at once: races every next()
            auto r = co_await (s.next() || t.async_wait(asio::use_awaitable));
            if (r.index() == 1) {
                ++timer_wins;
                continue;
            }
            auto ev = std::get<0>(std::move(r));
            if (!ev)
                break;
            out.push_back(std::move(*ev));
            if (!destroyed && count_lens_events(out) == 301) {
                destroyed = true;
                co_await f.client.destroy_session(id);
            }
        }
        co_return out;
    }());
    check_exactly_once(evs, lens::emulator::detail::activity_monitor_csv_events("race.csv", csv, 1));
    CHECK(timer_wins > 0);
    CHECK(s.statistics().events_delivered == evs.size());
}

TEST_CASE("event_stream: a slow consumer stops the reader - buffering stays bounded")
{
    fixture f;
    f.emu.knobs().sse.csv_window_rows = 1;
    f.emu.knobs().sse.result_interval = 0ms;
    const std::string csv = make_csv(2000);
    const auto id = f.go(start_activity_session(f.client, "slow.csv", csv));
    auto o = fast_options();
    o.queue_capacity = 8;
    o.parse_slice = 512;
    auto s = f.stream(id, o);
    auto first = f.go(s.next()); // starts the reader
    REQUIRE(first);
    // Let the emulator produce everything while nobody calls next(): drive the
    // context until the reader has paused on a full queue and stays paused.
    f.go([&]() -> asio::awaitable<void> {
        asio::steady_timer t(co_await asio::this_coro::executor);
        while (s.statistics().reader_pauses == 0) {
            t.expires_after(1ms);
            co_await t.async_wait(asio::use_awaitable);
        }
        t.expires_after(50ms); // the emulator keeps producing meanwhile
        co_await t.async_wait(asio::use_awaitable);
    }());
    auto st = s.statistics();
    // 512-byte slices hold at most two ~330-byte events
    CHECK(st.queued <= o.queue_capacity + 2);
    CHECK(st.max_queued <= o.queue_capacity + 2);
    const auto bytes_while_paused = st.bytes_received;
    // read so far: the events taken and queued, plus at most one unparsed socket read;
    // the rest waits in the kernel's buffers and the emulator
    CHECK(bytes_while_paused <= o.read_buffer_size + 16 * 400);
    MESSAGE("paused with ", st.queued, " events queued (max ", st.max_queued, ", ", st.max_queued_bytes,
            " bytes); ", bytes_while_paused, " body bytes read of ~", 2001 * 330);

    auto evs = f.go(collect(s, destroy_after(f.client, id, 2000)));
    evs.insert(evs.begin(), std::move(*first));
    check_exactly_once(evs, lens::emulator::detail::activity_monitor_csv_events("slow.csv", csv, 1));
    st = s.statistics();
    CHECK(st.max_queued <= o.queue_capacity + 2);
    CHECK(st.reader_pauses > 0);
}

TEST_CASE("event_stream: refusals from the emulator fail at once, without the key")
{
    fixture f;
    auto cfg = emulator_config(f.emu);
    cfg.api_key = lens::test::test_key("sk-never-print-me-7f3a");
    lens::event_stream bad_key(f.ctx.get_executor(), cfg, "lsn-x", fast_options());
    try {
        f.go(bad_key.next());
        FAIL("no error");
    } catch (const lens::error& e) {
        CHECK(e.code() == lens::errc::unauthorized);
        CHECK(e.http_status() == 401);
        CHECK(std::string(e.what()).find("sk-never") == std::string::npos);
    }
    CHECK(bad_key.statistics().attempts == 1);

    auto unknown = f.stream("lsn-unknown");
    try {
        f.go(unknown.next());
        FAIL("no error");
    } catch (const lens::error& e) {
        CHECK(e.code() == lens::errc::not_found);
        CHECK(std::string(e.what()).find(lens::test::test_key()) == std::string::npos);
    }
}

// ---- a scripted HTTP server for each status class ---------------------------------

namespace {

/// Answers connection N (0-based) with `reply(N)`, then closes it; records every request
/// head. One connection at a time, on loopback, on an ephemeral port.
struct scripted_server {
    using reply_for = std::function<std::string(std::size_t)>;

    asio::ip::tcp::acceptor acceptor;
    reply_for reply;
    std::vector<std::string> requests; ///< request heads, in order

    /// `replies[N]` for connection N; the last one repeats.
    scripted_server(asio::io_context& ctx, std::vector<std::string> replies)
        : scripted_server(ctx, [r = std::move(replies)](std::size_t n) { return r[std::min(n, r.size() - 1)]; })
    {
    }

    scripted_server(asio::io_context& ctx, reply_for f)
        : acceptor(ctx, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), reply(std::move(f))
    {
        asio::co_spawn(ctx, serve(), asio::detached);
    }

    std::string endpoint() const
    {
        return "http://127.0.0.1:" + std::to_string(acceptor.local_endpoint().port()) + "/v0.5";
    }

    asio::awaitable<void> serve()
    {
        for (std::size_t n = 0;; ++n) {
            auto [ec, sock] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
            if (ec)
                co_return;
            std::string head;
            auto [rec, k] = co_await asio::async_read_until(sock, asio::dynamic_buffer(head), "\r\n\r\n",
                                                              asio::as_tuple(asio::use_awaitable));
            requests.push_back(head.substr(0, k));
            const std::string answer = reply(n);
            co_await asio::async_write(sock, asio::buffer(answer), asio::as_tuple(asio::use_awaitable));
            boost::system::error_code ignored;
            sock.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
        }
    }
};

std::string status_reply(unsigned status, std::string body = {}, std::string extra = {})
{
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

/// A close-delimited event stream (no Content-Length, not chunked).
std::string stream_reply(std::string body)
{
    return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
           "Connection: close\r\n\r\n" +
           body;
}

const std::string end_event = "data: {\"type\":\"sse.stream.end\"}\n\n";

struct raw_fixture {
    asio::io_context ctx;
    scripted_server server;
    lens::config cfg;

    explicit raw_fixture(std::vector<std::string> replies) : raw_fixture(scripted_server::reply_for(
                                                                   [r = std::move(replies)](std::size_t n) {
                                                                       return r[std::min(n, r.size() - 1)];
                                                                   }))
    {
    }

    explicit raw_fixture(scripted_server::reply_for reply) : server(ctx, std::move(reply))
    {
        cfg.endpoint = server.endpoint();
        cfg.api_key = lens::test::test_key("sk-secret-key-0042");
        cfg.timeout = 5s;
        cfg.retry.max_attempts = 6;
    }

    lens::event_stream stream(lens::event_stream_options o = fast_options())
    {
        return lens::event_stream(ctx.get_executor(), cfg, "lsn-1", std::move(o));
    }

    /// The error next() fails with.
    lens::error failure(lens::event_stream& s)
    {
        try {
            while (run(ctx, s.next())) {
            }
        } catch (const lens::error& e) {
            return e;
        }
        throw std::runtime_error("the stream did not fail");
    }
};

} // namespace

TEST_CASE("event_stream: 401, 403, 404 and other 4xx fail at once with a clear error")
{
    struct expectation {
        unsigned status;
        lens::errc code;
    };
    for (auto [status, code] : {expectation{401, lens::errc::unauthorized}, expectation{403, lens::errc::unauthorized},
                                expectation{404, lens::errc::not_found}, expectation{400, lens::errc::http_error},
                                expectation{410, lens::errc::http_error}}) {
        INFO("status ", status);
        raw_fixture f({status_reply(status, R"({"detail":"Unknown session id: lsn-1"})"), stream_reply(end_event)});
        auto s = f.stream();
        const auto e = f.failure(s);
        CHECK(e.code() == code);
        CHECK(e.http_status() == status);
        CHECK(e.operation() == "events");
        CHECK(std::string(e.what()).find("Unknown session id") != std::string::npos);
        CHECK(std::string(e.what()).find(f.cfg.api_key) == std::string::npos);
        CHECK(s.statistics().attempts == 1);
    }
}

TEST_CASE("event_stream: 408, 429 and 5xx are retried - the request carries the right headers")
{
    raw_fixture f({status_reply(503), status_reply(429, "", "Retry-After: 0\r\n"), status_reply(408),
                   status_reply(500),
                   stream_reply("retry: 1\nid: 1\ndata: {\"type\":\"inference.result\",\"event_data\":{}}\n\n" +
                                end_event)});
    auto s = f.stream();
    std::vector<lens::session_event> evs;
    while (auto ev = run(f.ctx, s.next()))
        evs.push_back(std::move(*ev));
    REQUIRE(evs.size() == 2);
    CHECK(evs[0].kind() == lens::event_kind::inference_result);
    CHECK(evs[1].kind() == lens::event_kind::stream_end);
    CHECK(s.statistics().retried_statuses == 4);
    CHECK(s.statistics().attempts == 5);
    const std::string& req = f.server.requests.back();
    CHECK(req.starts_with("GET /v0.5/lens/sessions/consumer/lsn-1 HTTP/1.1\r\n"));
    CHECK(req.find("Authorization: Bearer " + lens::test::test_key("sk-secret-key-0042") + "\r\n") != std::string::npos);
    CHECK(req.find("Accept: text/event-stream\r\n") != std::string::npos);
    CHECK(req.find("Cache-Control: no-cache\r\n") != std::string::npos);
    CHECK(req.find("User-Agent: " + f.cfg.user_agent + "\r\n") != std::string::npos);
    CHECK(req.find("Last-Event-ID") == std::string::npos);
}

TEST_CASE("event_stream: retries before the first connection are bounded - the error has no key")
{
    raw_fixture f({status_reply(502)});
    f.cfg.retry.max_attempts = 3;
    auto s = f.stream();
    const auto e = f.failure(s);
    CHECK(e.code() == lens::errc::server_error);
    CHECK(s.statistics().attempts == 3);
    CHECK(std::string(e.what()).find(f.cfg.api_key) == std::string::npos);
}

TEST_CASE("event_stream: a 200 that is not text/event-stream fails")
{
    raw_fixture f({status_reply(200, R"({"ok":true})")});
    auto s = f.stream();
    const auto e = f.failure(s);
    CHECK(e.code() == lens::errc::not_event_stream);
    CHECK(std::string(e.what()).find("application/json") != std::string::npos);
}

TEST_CASE("event_stream: close-delimited bodies, resumption with Last-Event-ID, half events, non-JSON data")
{
    raw_fixture f({
        stream_reply("id: 1\ndata: {\"type\":\"log.info\",\"event_data\":{\"message\":\"hi\"}}\n\n"
                     "id: 2\ndata: {\"type\":\"frame.pro"), // cut in half
        stream_reply("id: 2\ndata: {\"type\":\"frame.processed\",\"event_data\":{\"frame_index\":7}}\n\n"
                     "id: 3\ndata: not json at all\n\n"
                     "id: 4\ndata: [1,2]\n\n"
                     "id: 5\ndata: {\"type\":\"error\",\"message\":\"boom\"}\n\n"
                     "id: 6\ndata: {\"type\":\"inference.error\",\"event_data\":{\"error_messages\":[\"a\",\"b\"]}}\n\n"
                     "id: 7\ndata: {\"type\":\"session.modify.result\",\"x\":1}\n\n" +
                     end_event),
    });
    auto s = f.stream();
    std::vector<lens::session_event> evs;
    while (auto ev = run(f.ctx, s.next()))
        evs.push_back(std::move(*ev));
    REQUIRE(evs.size() == 8);
    CHECK(evs[0].get_if<lens::log_message>()->message == "hi");
    CHECK(evs[1].get_if<lens::frame_processed>()->frame_index == 7u);
    REQUIRE(evs[2].kind() == lens::event_kind::malformed);
    CHECK(evs[2].get_if<lens::malformed_event>()->data == "not json at all");
    CHECK(evs[2].raw() == "not json at all");
    CHECK(evs[2].type.empty());
    CHECK(evs[3].kind() == lens::event_kind::unknown);
    CHECK(evs[3].type.empty());
    CHECK(evs[4].get_if<lens::error_event>()->message == "boom");
    CHECK(evs[5].get_if<lens::inference_error>()->error_messages == std::vector<std::string>{"a", "b"});
    CHECK(evs[6].kind() == lens::event_kind::unknown);
    CHECK(evs[6].type == "session.modify.result");
    CHECK(evs[6].raw().at("x") == 1);
    CHECK(evs[7].kind() == lens::event_kind::stream_end);
    for (std::size_t i = 0; i < 7; ++i)
        CHECK(evs[i].id == std::to_string(i + 1));
    REQUIRE(f.server.requests.size() == 2);
    CHECK(f.server.requests[1].find("Last-Event-ID: 1\r\n") != std::string::npos);
    const auto st = s.statistics();
    CHECK(st.half_events_discarded == 1);
    CHECK(st.malformed == 1);
    CHECK(st.reconnects == 1);
}

TEST_CASE("event_stream: an oversized event fails with limit_exceeded")
{
    raw_fixture f({stream_reply("data: " + std::string(5000, 'x') + "\n\n")});
    auto o = fast_options();
    o.limits = lens::sse::limits{1024, 1024};
    auto s = f.stream(o);
    const auto e = f.failure(s);
    CHECK(e.code() == lens::errc::limit_exceeded);
}

TEST_CASE("event_stream: no body size limit")
{
    // 12 MiB of events in one response: past Beast's default body limit (8 MB) and config::max_body_size
    std::string body;
    const std::string ev = "data: {\"type\":\"log.info\",\"event_data\":{\"message\":\"" + std::string(4000, 'm') +
                           "\"}}\n\n";
    while (body.size() < (std::size_t(12) << 20))
        body += ev;
    const std::size_t n = body.size() / ev.size();
    raw_fixture f({stream_reply(body + end_event)});
    f.cfg.max_body_size = 1024;
    auto s = f.stream();
    std::size_t got = 0;
    while (auto e = run(f.ctx, s.next()))
        ++got;
    CHECK(got == n + 1);
    // A fast stream is read in large pieces: Beast's parser reads at most the free room of
    // the connection's buffer, which the reply head had left at 512 bytes (24,000 reads
    // of 512 bytes here, each a system call) until the stream made room for its reads.
    const auto st = s.statistics();
    REQUIRE(st.reads > 0);
    CHECK(st.bytes_received / st.reads > 4096);
}

TEST_CASE("event_stream: close() ends next() - a waiting next() returns nullopt")
{
    fixture f;
    const auto id = f.go(start_activity_session(f.client, "", ""));
    auto s = f.stream(id);
    f.go(s.connect());
    auto first = f.go(s.next());
    REQUIRE(first);
    CHECK(first->kind() == lens::event_kind::stream_start);
    auto r = f.go([&]() -> asio::awaitable<std::optional<lens::session_event>> {
        asio::steady_timer t(co_await asio::this_coro::executor);
        t.expires_after(5ms);
        t.async_wait([&](auto) { s.close(); });
        co_return co_await s.next();
    }());
    CHECK_FALSE(r);
}

// ---- hardening: server hints, pacing, secrets, header values, lifetimes, byte budgets -------

namespace {

/// Takes events from `s` until `window` has passed (a timer raced against next(), which
/// is safe), then closes the stream. Returns the number of events. The window only bounds
/// the observation; no test asserts how long anything took.
asio::awaitable<std::size_t> drain_for(lens::event_stream& s, std::chrono::milliseconds window)
{
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(window);
    std::size_t n = 0;
    for (;;) {
        auto r = co_await (s.next() || t.async_wait(asio::use_awaitable));
        if (r.index() == 1 || !std::get<0>(r))
            break;
        ++n;
    }
    s.close();
    co_return n;
}

/// Every event to the end.
std::vector<lens::session_event> drain(asio::io_context& ctx, lens::event_stream& s)
{
    std::vector<lens::session_event> out;
    while (auto ev = run(ctx, s.next()))
        out.push_back(std::move(*ev));
    return out;
}

/// Every string a consumer can reach in `ev`: id, type, raw JSON and the typed fields.
std::string all_text(const lens::session_event& ev)
{
    std::string s = ev.id + "\n" + ev.type + "\n" + ev.data + "\n" + json::serialize(ev.raw()) + "\n";
    std::visit(
        [&](const auto& b) {
            using T = std::decay_t<decltype(b)>;
            if constexpr (std::is_same_v<T, lens::stream_start>)
                s += b.session_id + b.reader_id;
            else if constexpr (std::is_same_v<T, lens::heartbeat>)
                s += b.session_id + b.session_status;
            else if constexpr (std::is_same_v<T, lens::stream_end>)
                s += b.session_id;
            else if constexpr (std::is_same_v<T, lens::inference_result>) {
                for (auto& t : b.texts())
                    s += t;
                s += b.query_id;
            } else if constexpr (std::is_same_v<T, lens::inference_error>)
                for (auto& m : b.error_messages)
                    s += m;
            else if constexpr (std::is_same_v<T, lens::log_message>)
                s += b.level + b.message;
            else if constexpr (std::is_same_v<T, lens::error_event>)
                s += b.message;
            else if constexpr (std::is_same_v<T, lens::malformed_event>)
                s += b.data + b.error;
        },
        ev.body);
    return s;
}

std::string one_event(std::size_t id)
{
    return "id: " + std::to_string(id) + "\ndata: {\"type\":\"log.info\",\"event_data\":{\"message\":\"m\"}}\n\n";
}

} // namespace

TEST_CASE("event_stream: a huge retry: hint from a server that closes after each event causes no storm")
{
    // Every connection: `retry:` past milliseconds::max, one event, close. Before, the
    // saturated value overflowed the timer (10,441 connections in 4 s); now it is clamped
    // to max_server_delay, so at most one reconnection fits in a window of 300 ms.
    raw_fixture f([](std::size_t n) { return stream_reply("retry: 99999999999999999999\n" + one_event(n + 1)); });
    auto o = fast_options();
    o.reconnect.max_server_delay = 200ms;
    auto s = f.stream(o);
    const std::size_t events = run(f.ctx, drain_for(s, 300ms));
    CHECK(events >= 1);
    CHECK(f.server.requests.size() >= 1);
    CHECK(f.server.requests.size() <= 2);
    if (f.server.requests.size() == 2)
        CHECK(f.server.requests[1].find("Last-Event-ID: 1\r\n") != std::string::npos);
}

TEST_CASE("event_stream: a retry: of 31 years is clamped - the stream resumes and ends")
{
    // Before, the stream slept for `retry: 1000000000000` ms (the watchdog would fail this).
    raw_fixture f({stream_reply("retry: 1000000000000\n" + one_event(1)),
                   stream_reply("retry: 99999999999999999999\n" + one_event(2)), stream_reply(end_event)});
    auto o = fast_options();
    o.reconnect.max_server_delay = 20ms;
    auto s = f.stream(o);
    const auto evs = drain(f.ctx, s);
    REQUIRE(evs.size() == 3);
    CHECK(evs[1].id == "2");
    CHECK(evs[2].kind() == lens::event_kind::stream_end);
    REQUIRE(f.server.requests.size() == 3);
    CHECK(f.server.requests[1].find("Last-Event-ID: 1\r\n") != std::string::npos);
    CHECK(f.server.requests[2].find("Last-Event-ID: 2\r\n") != std::string::npos);
}

TEST_CASE("event_stream: a Retry-After of decades is clamped - the stream connects")
{
    // Before, up to 9 digits were honoured: 999999999 s made the stream wait 31 years.
    raw_fixture f({status_reply(503, "", "Retry-After: 999999999\r\n"),
                   status_reply(429, "", "Retry-After: 9999999999999999999999999\r\n"),
                   stream_reply(one_event(1) + end_event)});
    auto o = fast_options();
    o.reconnect.max_server_delay = 20ms;
    auto s = f.stream(o);
    const auto evs = drain(f.ctx, s);
    REQUIRE(evs.size() == 2);
    CHECK(s.statistics().retried_statuses == 2);
    CHECK(s.statistics().attempts == 3);
}

TEST_CASE("event_stream: a server that sends one event and closes is reconnected on a growing schedule")
{
    // Before, every new event id reset the schedule: a connection every `initial` for ever
    // (about 15 in this window). Now only a connection that stayed up `reset_after` does:
    // delays of 20, 40, 80, 160 ms... leave room for at most 5 connections in 400 ms.
    raw_fixture f([](std::size_t n) { return stream_reply(one_event(n + 1)); });
    auto o = fast_options();
    o.reconnect.initial = 20ms;
    o.reconnect.max = 10s;
    o.reconnect.multiplier = 2.0;
    o.reconnect.jitter = 0;
    o.reconnect.reset_after = 30s;
    auto s = f.stream(o);
    const std::size_t events = run(f.ctx, drain_for(s, 400ms));
    MESSAGE(f.server.requests.size(), " connections, ", events, " events");
    CHECK(f.server.requests.size() >= 1);
    CHECK(f.server.requests.size() <= 5);
    CHECK(events <= f.server.requests.size());
    for (std::size_t i = 1; i < f.server.requests.size(); ++i)
        CHECK(f.server.requests[i].find("Last-Event-ID: " + std::to_string(i) + "\r\n") != std::string::npos);
}

TEST_CASE("event_stream: a hostile server's API key reaches neither events nor errors")
{
    const std::string key = lens::test::test_key("sk-secret-key-0042"); // raw_fixture's key
    const std::string escaped = "\\u0073k-secret-key-0042";
    const std::string body =
        "id: " + key + "\n"
        "data: {\"type\":\"log.info\",\"event_data\":{\"message\":\"your key is " + key + "\"}}\n\n"
        "id: 2\n"
        "data: {\"type\":\"inference.result\",\"event_data\":{\"response\":[\"" + key + "\",{\"" + key +
        "\":0.5}],\"query_id\":\"" + key + "\",\"query_metadata\":{\"whatever_name\":\"" + escaped +
        "\",\"api_key\":\"" + key + "\"}}}\n\n"
        "data: {\"type\":\"log.warning\",\"event_data\":{\"Api_Key\":\"x\",\"nested\":[{\"tok\":\"" + escaped +
        "\"}]}}\n\n"
        "data: not json, but the key: " + key + "\n\n"
        "event: " + key + "\n"
        "data: {\"type\":\"" + key + "\",\"api_key\":\"" + key + "\"}\n\n"
        "data: {\"type\":\"sse.stream.start\",\"session_id\":\"" + escaped + "\",\"reader_id\":\"" + key +
        "\"}\n\n"
        "data: {\"type\":\"error\",\"event_data\":{\"error_messages\":[\"" + escaped + "\",\"" + key + "\"]}}\n\n" +
        end_event;
    raw_fixture f({stream_reply(body)});
    auto s = f.stream();
    const auto evs = drain(f.ctx, s);
    REQUIRE(evs.size() == 8);
    for (const auto& ev : evs) {
        const std::string text = all_text(ev);
        INFO(text);
        CHECK(text.find(key) == std::string::npos);
    }
    CHECK(evs[0].id == "[redacted]");
    CHECK(evs[0].get_if<lens::log_message>()->message == "your key is [redacted]");
    CHECK(evs[3].kind() == lens::event_kind::malformed);
    CHECK_FALSE(evs[4].raw().as_object().contains("api_key"));
    CHECK(s.last_event_id().find(key) == std::string::npos);

    // A refusal quoting the key in every diagnostic field.
    raw_fixture g({status_reply(401, R"({"errors":[{"code":")" + key + R"(","message":"invalid token )" + key +
                                         R"(","suggestion":"not )" + escaped + R"(","error_uid":")" + key +
                                         R"("}],"detail":")" + key + R"(","api_key":")" + key + R"("})")});
    auto refused = g.stream();
    const auto e = g.failure(refused);
    CHECK(e.code() == lens::errc::unauthorized);
    CHECK(std::string(e.what()).find(key) == std::string::npos);
    CHECK(std::string(e.what()).find("invalid token [redacted]") != std::string::npos);
    for (const auto& said : e.server_errors()) {
        CHECK(said.code.find(key) == std::string::npos);
        CHECK(said.message.find(key) == std::string::npos);
        CHECK(said.suggestion.find(key) == std::string::npos);
        CHECK(said.error_uid.find(key) == std::string::npos);
    }
}

TEST_CASE("event_stream: a Last-Event-ID with CR or LF is refused before anything is sent")
{
    raw_fixture f({stream_reply(end_event)});
    for (const std::string bad : {"7\r\nX-Injected: yes", "7\nX-Injected: yes", "7\rX-Injected: yes", "7\x01"}) {
        auto o = fast_options();
        o.last_event_id = bad;
        try {
            auto s = f.stream(o);
            FAIL("the stream was created");
        } catch (const lens::error& e) {
            CHECK(e.code() == lens::errc::invalid_argument);
            CHECK(std::string(e.what()).find("Last-Event-ID") != std::string::npos);
        }
        // the same through the client
        lens::client c(f.ctx.get_executor(), f.cfg);
        try {
            auto s = c.events("lsn-1", o);
            FAIL("the stream was created");
        } catch (const lens::error& e) {
            CHECK(e.code() == lens::errc::invalid_argument);
        }
    }
    // The server saw nothing; a good id goes out alone on its line.
    auto o = fast_options();
    o.last_event_id = "7";
    auto s = f.stream(o);
    CHECK(drain(f.ctx, s).size() == 1);
    REQUIRE(f.server.requests.size() == 1);
    CHECK(f.server.requests[0].find("X-Injected") == std::string::npos);
    CHECK(f.server.requests[0].find("Last-Event-ID: 7\r\n") != std::string::npos);
}

TEST_CASE("event_stream: a moved-from stream fails clearly and does not crash")
{
    raw_fixture f({stream_reply(one_event(1) + end_event)});
    auto s = f.stream();
    auto t = std::move(s);
    // NOLINTBEGIN(bugprone-use-after-move): that is the point
    CHECK(s.session_id().empty());
    CHECK(s.last_event_id().empty());
    CHECK(s.statistics().attempts == 0);
    CHECK_FALSE(s.ended());
    s.close();
    CHECK_FALSE(run(f.ctx, s.next()));
    try {
        run(f.ctx, s.connect());
        FAIL("connect() on a moved-from stream succeeded");
    } catch (const lens::error& e) {
        CHECK(e.code() == lens::errc::closed);
    }
    // NOLINTEND(bugprone-use-after-move)
    CHECK(t.session_id() == "lsn-1");
    CHECK(drain(f.ctx, t).size() == 2);
    // Assigning over a running stream closes it.
    raw_fixture g({stream_reply(one_event(1) + end_event)});
    auto u = g.stream();
    run(g.ctx, u.connect());
    u = g.stream();
    CHECK(drain(g.ctx, u).size() == 2);
}

TEST_CASE("event_stream: destroying a stream while its reader runs is clean")
{
    SUBCASE("reading (a live emulator stream)")
    {
        fixture f;
        const auto id = f.go(start_activity_session(f.client, "", ""));
        {
            auto s = f.stream(id);
            f.go(s.connect());
            REQUIRE(f.go(s.next()));
            // the reader now waits in a read; next() is waiting too when the stream goes
            f.go([&]() -> asio::awaitable<void> {
                asio::steady_timer t(co_await asio::this_coro::executor);
                t.expires_after(5ms);
                co_await (s.next() || t.async_wait(asio::use_awaitable));
            }());
        }
        // the reader finishes on the context; the emulator sees the consumer go
        auto s2 = f.stream(id);
        f.go(s2.connect());
        CHECK(s2.statistics().connections == 1);
    }
    SUBCASE("paused on a full queue")
    {
        fixture f;
        f.emu.knobs().sse.csv_window_rows = 1;
        f.emu.knobs().sse.result_interval = 0ms;
        const auto id = f.go(start_activity_session(f.client, "p.csv", make_csv(200)));
        auto o = fast_options();
        o.queue_capacity = 2;
        std::optional<lens::event_stream> s(f.stream(id, o));
        REQUIRE(f.go(s->next()));
        f.go([&]() -> asio::awaitable<void> {
            asio::steady_timer t(co_await asio::this_coro::executor);
            while (s->statistics().reader_pauses == 0) {
                t.expires_after(1ms);
                co_await t.async_wait(asio::use_awaitable);
            }
        }());
        s.reset();
        f.go(f.client.destroy_session(id));
    }
    SUBCASE("waiting to reconnect, and connecting")
    {
        asio::io_context ctx;
        lens::config cfg;
        {
            // a port nobody listens on: refused at once, then a long delay
            asio::ip::tcp::acceptor a(ctx, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
            cfg.endpoint = "http://127.0.0.1:" + std::to_string(a.local_endpoint().port()) + "/v0.5";
        }
        cfg.api_key = "k";
        cfg.retry.max_attempts = 100;
        auto o = fast_options();
        o.reconnect.initial = 1h;
        o.reconnect.max = 1h;
        {
            lens::event_stream s(ctx.get_executor(), cfg, "lsn-1", o);
            asio::co_spawn(ctx, s.connect(), asio::detached);
            while (s.statistics().attempts == 0)
                ctx.run_one();
            ctx.poll(); // the refusal, if it is already there: then the hour's delay starts
        }
        // Nothing of the stream is left on the context: no timer of an hour, no reader, no
        // connect() (run_for is only a watchdog: run() returns as soon as the work is done).
        ctx.restart();
        ctx.run_for(30s);
        CHECK(ctx.stopped());
    }
}

TEST_CASE("event_stream: queue_max_bytes bounds the bytes buffered for a slow consumer")
{
    // 300 events of ~10 KB. Before, only the count was bounded (1000 here: ~3 MB queued).
    const std::string pad(10000, 'x');
    std::string body;
    for (std::size_t i = 1; i <= 300; ++i)
        body += "id: " + std::to_string(i) + "\ndata: {\"type\":\"log.info\",\"event_data\":{\"message\":\"" + pad +
                "\"}}\n\n";
    const std::size_t one_event_bytes = 3 + std::string("{\"type\":\"log.info\",\"event_data\":{\"message\":\"\"}}").size() +
                                        pad.size();
    raw_fixture f({stream_reply(body + end_event)});
    auto o = fast_options();
    o.queue_capacity = 1000;
    o.queue_max_bytes = 64 * 1024;
    auto s = f.stream(o);
    REQUIRE(run(f.ctx, s.next()));
    run(f.ctx, [&]() -> asio::awaitable<void> {
        asio::steady_timer t(co_await asio::this_coro::executor);
        while (s.statistics().reader_pauses == 0) {
            t.expires_after(1ms);
            co_await t.async_wait(asio::use_awaitable);
        }
    }());
    auto st = s.statistics();
    MESSAGE("paused with ", st.queued, " events (", st.max_queued_bytes, " bytes at most)");
    CHECK(st.max_queued_bytes <= o.queue_max_bytes + one_event_bytes);
    CHECK(st.queued < 10);
    const auto rest = drain(f.ctx, s);
    CHECK(rest.size() == 300); // 299 events and the end
    st = s.statistics();
    CHECK(st.max_queued_bytes <= o.queue_max_bytes + one_event_bytes);
    CHECK(st.events_delivered == 301);
}
