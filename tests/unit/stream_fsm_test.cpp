// Unit tests of the event stream's sans-I/O core (src/detail/stream_fsm.hpp): every
// timing rule on scripted time (`steady_clock::time_point{} + offsets`), no sockets,
// no sleeps, no wall clock.
#include "detail/stream_fsm.hpp"

#include <random>

#include <lens/error.hpp>

#include <doctest/doctest.h>

#include <boost/json/serialize.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;
using fsm_type = lens::detail::stream_fsm;
using step = fsm_type::step;
using timer_step = fsm_type::timer_step;
using time_point = std::chrono::steady_clock::time_point;

namespace {

constexpr time_point never = time_point::max();

/// Scripted time: `at(5s)` is five seconds after the test's origin.
time_point at(std::chrono::nanoseconds d) { return time_point{} + d; }

/// Exact delays (no jitter): 100 ms, 200 ms, 400 ms ... capped at 10 s; hints up to 60 s.
lens::event_stream_options options()
{
    lens::event_stream_options o;
    o.reconnect.initial = 100ms;
    o.reconnect.max = 10s;
    o.reconnect.multiplier = 2.0;
    o.reconnect.jitter = 0;
    o.reconnect.reset_after = 30s;
    o.reconnect.max_attempts = 0;
    o.reconnect.max_server_delay = 60s;
    o.idle_timeout = 30s;
    return o;
}

lens::config settings()
{
    lens::config c;
    c.timeout = 5s;
    c.connect_timeout = 2s;
    c.retry.max_attempts = 4;
    return c;
}

const std::string secret = "sk-live-0123456789";

fsm_type make(const lens::event_stream_options& o = options(), const lens::config& c = settings())
{
    return fsm_type(o, c, lens::detail::redactor(secret), [] { return 0.5; });
}

/// One SSE event: `id` (none when empty) and a JSON payload of `type`.
std::string event(const std::string& id, const std::string& type = "log.info", const std::string& extra = "")
{
    std::string s;
    if (!id.empty())
        s += "id: " + id + "\n";
    s += "data: {\"type\":\"" + type + "\"" + extra + "}\n\n";
    return s;
}

const std::string end_event = "data: {\"type\":\"sse.stream.end\"}\n\n";

/// From idle or a finished delay to an accepted connection at `t`.
void connect_at(fsm_type& f, time_point t)
{
    const step s = f.current_phase() == fsm_type::phase::idle ? f.start(t) : f.resume(t);
    REQUIRE(s == step::connect);
    REQUIRE(f.accepted("text/event-stream; charset=utf-8", t) == step::read);
}

/// Every string a consumer can reach in `ev`.
std::string all_text(const lens::session_event& ev)
{
    std::string s = ev.id + "\n" + ev.type + "\n" + ev.data + "\n" + boost::json::serialize(ev.raw()) + "\n";
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

/// From a finished delay to a new attempt: resumes at the wake-up time and returns it.
time_point reconnect(fsm_type& f)
{
    const time_point t = f.wake_at();
    REQUIRE(t != never);
    REQUIRE(f.resume(t) == step::connect);
    return t;
}

std::vector<lens::session_event> take_all(fsm_type& f)
{
    std::vector<lens::session_event> out;
    while (auto ev = f.take())
        out.push_back(std::move(*ev));
    return out;
}

} // namespace

TEST_CASE("stream_fsm: the first request sends the user's Last-Event-ID - a reconnection the last id received")
{
    auto o = options();
    o.last_event_id = "7";
    auto f = make(o);
    CHECK(f.delivered_id() == "7");
    REQUIRE(f.start(at(0s)) == step::connect);
    CHECK(f.last_event_id() == "7");
    CHECK(f.connect_deadline() == at(2s));
    CHECK(f.head_deadline() == at(5s));
    REQUIRE(f.accepted("text/event-stream", at(10ms)) == step::read);
    CHECK(f.received(event("8") + event("9"), at(20ms)) == step::read);
    CHECK(f.connection_ended({}, "the stream ended without sse.stream.end", at(30ms)) == step::wait);
    CHECK(f.wake_at() == at(130ms));
    CHECK(f.on_timer(at(130ms) - 1ns) == timer_step::none);
    CHECK(f.resume(at(130ms) - 1ns) == step::wait);
    CHECK(f.on_timer(at(130ms)) == timer_step::wake_reader);
    REQUIRE(f.resume(at(130ms)) == step::connect);
    CHECK(f.last_event_id() == "9");
    const auto evs = take_all(f);
    REQUIRE(evs.size() == 2);
    CHECK(evs[0].id == "8");
    CHECK(f.delivered_id() == "9");
    const auto st = f.statistics();
    CHECK(st.attempts == 2);
    CHECK(st.connections == 1);
    CHECK(st.events_delivered == 2);
}

TEST_CASE("stream_fsm: retry: hints are clamped to max_server_delay - no overflow storm, no stall")
{
    for (const std::string hint : {"99999999999999999999", "1000000000000", "9223372036854775807",
                                   "9223372036854775808"}) {
        INFO("retry: ", hint);
        auto f = make();
        connect_at(f, at(0s));
        REQUIRE(f.received("retry: " + hint + "\n" + event("1"), at(1ms)) == step::read);
        REQUIRE(f.connection_ended({}, "cut", at(2ms)) == step::wait);
        // Before: the saturated value reached the timer (undefined behaviour; in practice an
        // immediate reconnection) or stalled the stream for 31 years.
        CHECK(f.wake_at() == at(2ms) + 60s);
        CHECK(f.on_timer(at(2ms) + 60s - 1ns) == timer_step::none);
        CHECK(f.on_timer(at(2ms) + 60s) == timer_step::wake_reader);
    }
    // A hint below the schedule does not shorten it: `retry: 0` cannot make a storm.
    auto f = make();
    connect_at(f, at(0s));
    REQUIRE(f.received("retry: 0\n" + event("1"), at(1ms)) == step::read);
    REQUIRE(f.connection_ended({}, "cut", at(2ms)) == step::wait);
    CHECK(f.wake_at() == at(102ms));
    // A hint above the schedule is honoured, and persists across connections.
    connect_at(f, at(102ms));
    REQUIRE(f.received("retry: 1500\n", at(103ms)) == step::read);
    REQUIRE(f.connection_ended({}, "cut", at(104ms)) == step::wait);
    CHECK(f.wake_at() == at(1604ms));
    REQUIRE(f.resume(at(1604ms)) == step::connect);
    REQUIRE(f.connect_failed(lens::errc::connection_failed, "refused", at(1605ms)) == step::wait);
    CHECK(f.wake_at() == at(3105ms));
}

TEST_CASE("stream_fsm: Retry-After is clamped to max_server_delay and honoured when longer")
{
    auto f = make();
    REQUIRE(f.start(at(0s)) == step::connect);
    REQUIRE(f.refused(503, "99999999999999999999999", "", at(1ms)) == step::wait);
    CHECK(f.wake_at() == at(1ms) + 60s);
    const auto t = reconnect(f);
    REQUIRE(f.refused(429, "2", "", t) == step::wait);
    CHECK(f.wake_at() == t + 2s);
    const auto t2 = reconnect(f);
    // the HTTP-date form falls back to the schedule (attempt 3: 400 ms)
    REQUIRE(f.refused(503, "Wed, 21 Oct 2015 07:28:00 GMT", "", t2) == step::wait);
    CHECK(f.wake_at() == t2 + 400ms);
    CHECK(f.statistics().retried_statuses == 3);
}

TEST_CASE("stream_fsm: a reconnection is noted for the driver's log only when the logger is on")
{
    // Off (the default): nothing is kept.
    auto off = make();
    connect_at(off, at(0s));
    REQUIRE(off.connection_ended({}, "cut", at(1ms)) == step::wait);
    CHECK_FALSE(off.take_reconnect_note());

    auto cfg = settings();
    cfg.log = lens::logger([](const lens::log_record&) {}, lens::log_level::warning);
    auto f = make(options(), cfg);
    connect_at(f, at(0s));
    REQUIRE(f.received("retry: 99999999\n" + event("7"), at(1ms)) == step::read);
    REQUIRE(f.connection_ended(lens::errc::connection_lost, "the stream broke: " + secret, at(2ms)) == step::wait);
    auto note = f.take_reconnect_note();
    REQUIRE(note);
    CHECK(note->code == lens::errc::connection_lost);
    CHECK(note->attempt == 1);
    CHECK(note->delay == 60s);                   // the hint, clamped
    CHECK(note->server_delay == ms(99999999));   // the hint, as received
    CHECK(note->reason.find("the stream broke: [redacted]") != std::string::npos);
    CHECK(note->reason.find(secret) == std::string::npos);
    CHECK(f.last_event_id() == "7");             // what the next attempt sends
    CHECK_FALSE(f.take_reconnect_note());        // reported once

    // A refusal: its status and Retry-After.
    REQUIRE(f.resume(at(2ms) + 60s) == step::connect);
    REQUIRE(f.refused(429, "90", R"({"detail":"slow down"})", at(3ms) + 60s) == step::wait);
    note = f.take_reconnect_note();
    REQUIRE(note);
    CHECK(note->http_status == 429);
    CHECK(note->code == lens::errc::rate_limited);
    CHECK(note->server_delay == ms(99999999)); // the longer of retry: and Retry-After
    CHECK(note->attempt == 2);
}

TEST_CASE("stream_fsm: a server that sends one event and closes meets a growing schedule - no storm")
{
    // Before: every new event id reset the schedule, so this server got a connection
    // every initial delay (4 a second with the defaults) for ever.
    auto f = make();
    time_point t = at(0s);
    std::vector<ms> delays;
    for (int n = 1; n <= 10; ++n) {
        connect_at(f, t);
        REQUIRE(f.received(event(std::to_string(n)), t + 1ms) == step::read);
        REQUIRE(f.connection_ended({}, "closed", t + 2ms) == step::wait);
        delays.push_back(std::chrono::duration_cast<ms>(f.wake_at() - (t + 2ms)));
        t = f.wake_at();
    }
    CHECK(delays == std::vector<ms>{100ms, 200ms, 400ms, 800ms, 1600ms, 3200ms, 6400ms, 10s, 10s, 10s});
    CHECK(f.statistics().events_received == 10);
    CHECK(f.statistics().connections == 10);
}

TEST_CASE("stream_fsm: the schedule starts over only after a connection stayed up reset_after")
{
    auto f = make();
    connect_at(f, at(0s));
    REQUIRE(f.connection_ended({}, "closed", at(1ms)) == step::wait);
    CHECK(f.wake_at() == at(101ms)); // attempt 1 of the run
    connect_at(f, at(101ms));
    // up for one millisecond less than reset_after: the schedule goes on
    REQUIRE(f.connection_ended({}, "closed", at(101ms) + 30s - 1ms) == step::wait);
    CHECK(f.wake_at() == at(101ms) + 30s - 1ms + 200ms);
    const auto t = f.wake_at();
    connect_at(f, t);
    // up for exactly reset_after: the schedule starts over
    REQUIRE(f.connection_ended({}, "closed", t + 30s) == step::wait);
    CHECK(f.wake_at() == t + 30s + 100ms);
}

TEST_CASE("stream_fsm: the idle watchdog drops a read pending for idle_timeout - exact boundaries")
{
    auto f = make();
    connect_at(f, at(0s));
    CHECK(f.wake_at() == at(30s));
    CHECK(f.on_timer(at(30s) - 1ns) == timer_step::none);
    // bytes (a heartbeat) restart the period
    REQUIRE(f.received(": heartbeat\n", at(10s)) == step::read);
    CHECK(f.wake_at() == at(40s));
    CHECK(f.on_timer(at(30s)) == timer_step::none); // the first expiry, now stale
    CHECK(f.on_timer(at(40s) - 1ns) == timer_step::none);
    CHECK(f.on_timer(at(40s)) == timer_step::drop_connection);
    CHECK(f.wake_at() == never);                            // asked once
    CHECK(f.on_timer(at(41s)) == timer_step::none);
    REQUIRE(f.connection_ended(lens::errc::connection_lost, "operation aborted", at(40s)) == step::wait);
    const auto st = f.statistics();
    CHECK(st.idle_timeouts == 1);
    CHECK(f.wake_at() == at(40s) + 100ms);
    // idle_timeout 0 disables the watchdog
    auto o = options();
    o.idle_timeout = 0ms;
    auto g = make(o);
    connect_at(g, at(0s));
    CHECK(g.wake_at() == never);
    CHECK(g.on_timer(at(24h)) == timer_step::none);
}

TEST_CASE("stream_fsm: a reader paused for backpressure is never idle")
{
    auto o = options();
    o.queue_capacity = 4;
    auto f = make(o);
    connect_at(f, at(0s));
    REQUIRE(f.received(event("1") + event("2") + event("3") + event("4") + event("5"), at(1s)) == step::wait);
    CHECK(f.statistics().reader_pauses == 1);
    CHECK(f.wake_at() == never);
    CHECK(f.on_timer(at(1s) + 30s) == timer_step::none);
    CHECK(f.on_timer(at(2h)) == timer_step::none);
    // One slice held all five (the queue is checked between slices).
    REQUIRE(f.statistics().queued == 5);
    REQUIRE(f.take());
    REQUIRE(f.take());
    CHECK_FALSE(f.reader_may_continue()); // 3 still queued: over half the capacity
    REQUIRE(f.take());
    CHECK(f.reader_may_continue()); // 2 of 4: the reader goes on
    REQUIRE(f.resume(at(2h)) == step::read);
    CHECK(f.wake_at() == at(2h) + 30s); // the watchdog counts from the new read
    CHECK(f.on_timer(at(2h) + 30s) == timer_step::drop_connection);
}

TEST_CASE("stream_fsm: backpressure by events - the queue never exceeds queue_capacity with one-byte slices")
{
    auto o = options();
    o.queue_capacity = 4;
    o.parse_slice = 1;
    auto f = make(o);
    connect_at(f, at(0s));
    std::string bytes;
    for (int i = 1; i <= 10; ++i)
        bytes += event(std::to_string(i));
    step s = f.received(bytes, at(1ms));
    std::vector<std::string> ids;
    while (s == step::wait) {
        CHECK(f.statistics().queued == 4);
        // The reader waits until the consumer has taken half the queue, not one event.
        auto ev = f.take();
        REQUIRE(ev);
        ids.push_back(ev->id);
        CHECK_FALSE(f.reader_may_continue());
        ev = f.take();
        REQUIRE(ev);
        ids.push_back(ev->id);
        REQUIRE(f.reader_may_continue());
        s = f.resume(at(2ms));
    }
    CHECK(s == step::read); // every byte parsed: the next read
    for (auto& ev : take_all(f))
        ids.push_back(ev.id);
    REQUIRE(ids.size() == 10);
    for (int i = 0; i < 10; ++i)
        CHECK(ids[i] == std::to_string(i + 1));
    CHECK(f.statistics().max_queued == 4);
}

TEST_CASE("stream_fsm: queued texts stay whole and in order while the consumer takes some and the reader adds more")
{
    // The queue keeps its events' texts one after another in one buffer, drops the taken
    // front as it goes, and decodes an event that may end the stream (here: an escape) on
    // arrival, holding no text for it. Every event must come out as it went in.
    auto o = options();
    o.queue_capacity = 6;
    auto f = make(o);
    connect_at(f, at(0s));
    auto payload = [](int i) {
        std::string message = "message " + std::to_string(i) + std::string(static_cast<std::size_t>(i % 7) * 13, 'x');
        return event(std::to_string(i), "log.info", ",\"event_data\":{\"message\":\"" + message + "\"}");
    };
    auto message_of = [](int i) {
        return "message " + std::to_string(i) + std::string(static_cast<std::size_t>(i % 7) * 13, 'x');
    };
    constexpr int total = 40;
    int sent = 0, next_expected = 1;
    std::mt19937 pick(7);
    step s = step::read;
    while (next_expected <= total) {
        if (s == step::read && sent < total) { // the driver reads only when told to
            std::string bytes;
            for (int k = 0; k < 3 && sent < total; ++k) {
                ++sent;
                bytes += sent % 9 == 0 ? event(std::to_string(sent), "log.info",
                                               ",\"event_data\":{\"message\":\"" + message_of(sent) + "\\u0021\"}")
                                       : payload(sent);
            }
            s = f.received(bytes, at(1ms));
        }
        for (int n = static_cast<int>(pick() % 3); n >= 0; --n) {
            auto ev = f.take();
            if (!ev)
                break;
            REQUIRE(ev->id == std::to_string(next_expected));
            const auto* m = ev->get_if<lens::log_message>();
            REQUIRE(m);
            CHECK(m->message == message_of(next_expected) + (next_expected % 9 == 0 ? "!" : ""));
            ++next_expected;
        }
        if (s == step::wait && f.reader_may_continue())
            s = f.resume(at(2ms));
    }
    CHECK(f.statistics().events_delivered == total);
}

TEST_CASE("stream_fsm: backpressure by bytes - queue_max_bytes bounds the queue whatever the count")
{
    auto o = options();
    o.queue_capacity = 1000;
    o.queue_max_bytes = 1000;
    o.parse_slice = 64;
    auto f = make(o);
    connect_at(f, at(0s));
    const std::string pad(300, 'x');
    std::string bytes;
    for (int i = 1; i <= 20; ++i)
        bytes += event(std::to_string(i), "log.info", ",\"event_data\":{\"message\":\"" + pad + "\"}");
    const std::size_t one_event = 2 + std::string("{\"type\":\"log.info\",\"event_data\":{\"message\":\"\"}}").size() +
                                  pad.size();
    step s = f.received(bytes, at(1ms));
    std::size_t delivered = 0;
    while (s == step::wait) {
        CHECK(f.statistics().queued < 20);
        while (f.take())
            ++delivered;
        s = f.resume(at(2ms));
    }
    delivered += take_all(f).size();
    CHECK(delivered == 20);
    // At most queue_max_bytes - 1 plus the events completed in one 64-byte slice (one here).
    CHECK(f.statistics().max_queued_bytes <= o.queue_max_bytes - 1 + one_event);
    CHECK(f.statistics().max_queued_bytes >= o.queue_max_bytes);
    CHECK(f.statistics().reader_pauses == 1); // one pause of the socket: the kept bytes refilled the queue
}

TEST_CASE("stream_fsm: 401, 403, 404 and other refusals are final - their diagnostics are scrubbed")
{
    struct expectation {
        unsigned status;
        lens::errc code;
    };
    for (auto [status, code] :
         {expectation{401, lens::errc::unauthorized}, expectation{403, lens::errc::unauthorized},
          expectation{404, lens::errc::not_found}, expectation{400, lens::errc::http_error},
          expectation{410, lens::errc::http_error}, expectation{204, lens::errc::http_error},
          expectation{302, lens::errc::http_error}}) {
        INFO("status ", status);
        auto f = make();
        REQUIRE(f.start(at(0s)) == step::connect);
        const std::string body = R"({"errors":[{"code":"E1","message":"invalid token sk-live-0123456789"}],)"
                                 R"("api_key":"sk-live-0123456789"})";
        REQUIRE(f.refused(status, "1", body, at(1ms)) == step::stop);
        REQUIRE(f.failure());
        CHECK(f.failure()->code == code);
        CHECK(f.failure()->http_status == status);
        REQUIRE(f.failure()->said.size() == 1);
        CHECK(f.failure()->said[0].message == "invalid token [redacted]");
        CHECK(f.failure()->detail.find(secret) == std::string::npos);
        CHECK(f.statistics().attempts == 1);
        CHECK(f.wake_at() == never);
    }
}

TEST_CASE("stream_fsm: 408, 429 and 5xx are retried on the schedule")
{
    for (unsigned status : {408u, 429u, 500u, 502u, 503u, 504u, 599u}) {
        INFO("status ", status);
        auto f = make();
        REQUIRE(f.start(at(0s)) == step::connect);
        REQUIRE(f.refused(status, "", "", at(1ms)) == step::wait);
        CHECK(f.wake_at() == at(101ms));
        CHECK(f.statistics().retried_statuses == 1);
        REQUIRE(f.resume(at(101ms)) == step::connect);
    }
}

TEST_CASE("stream_fsm: max_attempts - config::retry before the first connection, reconnect after it")
{
    SUBCASE("before the first connection")
    {
        auto c = settings();
        c.retry.max_attempts = 3;
        auto f = make(options(), c);
        REQUIRE(f.start(at(0s)) == step::connect);
        REQUIRE(f.connect_failed(lens::errc::connection_failed, "refused", at(0s)) == step::wait);
        auto t = reconnect(f);
        REQUIRE(f.refused(502, "", "", t) == step::wait);
        t = reconnect(f);
        REQUIRE(f.refused(502, "", "", t) == step::stop);
        REQUIRE(f.failure());
        CHECK(f.failure()->code == lens::errc::server_error);
        CHECK(f.failure()->http_status == 502);
        CHECK(f.failure()->detail.find("gave up after 3 attempts") != std::string::npos);
        CHECK(f.statistics().attempts == 3);
    }
    SUBCASE("after it: attempts in a row without a stable connection")
    {
        auto o = options();
        o.reconnect.max_attempts = 3;
        auto f = make(o);
        connect_at(f, at(0s));
        REQUIRE(f.connection_ended({}, "closed", at(1ms)) == step::wait); // attempt 1 dropped
        auto t = reconnect(f);
        REQUIRE(f.connect_failed(lens::errc::timeout, "connect", t) == step::wait);
        t = reconnect(f);
        REQUIRE(f.connect_failed(lens::errc::connection_failed, "connect", t) == step::stop);
        CHECK(f.failure()->code == lens::errc::connection_failed);
    }
    SUBCASE("0: never give up")
    {
        auto f = make();
        connect_at(f, at(0s));
        REQUIRE(f.connection_ended({}, "closed", at(1ms)) == step::wait);
        time_point t{};
        for (int i = 0; i < 200; ++i) {
            t = reconnect(f);
            REQUIRE(f.connect_failed(lens::errc::connection_failed, "refused", t) == step::wait);
        }
        CHECK(f.wake_at() == t + 10s); // the cap, for ever
        CHECK(f.statistics().attempts == 201);
    }
    SUBCASE("a rejected certificate is never retried")
    {
        auto f = make();
        REQUIRE(f.start(at(0s)) == step::connect);
        REQUIRE(f.connect_failed(lens::errc::certificate_rejected, "handshake", at(1ms)) == step::stop);
        CHECK(f.failure()->code == lens::errc::certificate_rejected);
    }
}

TEST_CASE("stream_fsm: sse.stream.end stops the stream without reconnecting - nothing after it is queued")
{
    auto f = make();
    connect_at(f, at(0s));
    REQUIRE(f.received(event("1") + end_event + event("2"), at(1ms)) == step::stop);
    CHECK(f.ended());
    CHECK(f.wake_at() == never);
    const auto evs = take_all(f);
    REQUIRE(evs.size() == 2);
    CHECK(evs[1].kind() == lens::event_kind::stream_end);
    CHECK(f.statistics().attempts == 1);
}

TEST_CASE("stream_fsm: an sse.stream.end spelled with escapes stops the stream too")
{
    // Events wait in the queue as text and are decoded when taken; the end is recognised
    // on arrival, whatever the spelling of its type.
    auto f = make();
    connect_at(f, at(0s));
    REQUIRE(f.received(event("1") + "data: {\"type\":\"sse.stream\\u002eend\"}\n\n" + event("2"), at(1ms)) ==
            step::stop);
    CHECK(f.ended());
    const auto evs = take_all(f);
    REQUIRE(evs.size() == 2);
    CHECK(evs[1].kind() == lens::event_kind::stream_end);
    CHECK(evs[1].id == "1");
}

TEST_CASE("stream_fsm: sse.stream.end is recognised wherever its type stands in the payload")
{
    // The end is looked for by its ".", "d" sixteen places at a time: padding moves it
    // through every place of a block and across the blocks' boundaries.
    for (std::size_t pad = 0; pad <= 40; ++pad) {
        CAPTURE(pad);
        auto f = make();
        connect_at(f, at(0s));
        const std::string end = "data: {\"p\":\"" + std::string(pad, 's') + "\",\"type\":\"sse.stream.end\"}\n\n";
        REQUIRE(f.received(event("1") + end + event("2"), at(1ms)) == step::stop);
        CHECK(f.ended());
        const auto evs = take_all(f);
        REQUIRE(evs.size() == 2);
        CHECK(evs[1].kind() == lens::event_kind::stream_end);
    }
}

TEST_CASE("stream_fsm: queued events are decoded as they are taken - malformed ones are counted on delivery")
{
    auto f = make();
    connect_at(f, at(0s));
    REQUIRE(f.received("id: 1\ndata: not json\n\n" + event("2", "inference.result",
                                                               ",\"event_data\":{\"response\":[\"OK\"]}"),
                       at(1ms)) == step::read);
    CHECK(f.statistics().queued == 2);
    CHECK(f.statistics().malformed == 0);
    auto first = f.take();
    REQUIRE(first);
    CHECK(first->kind() == lens::event_kind::malformed);
    CHECK(f.statistics().malformed == 1);
    auto second = f.take();
    REQUIRE(second);
    REQUIRE(second->get_if<lens::inference_result>());
    CHECK(second->get_if<lens::inference_result>()->label() == "OK");
    CHECK(f.delivered_id() == "2");
}

TEST_CASE("stream_fsm: an oversized event fails with limit_exceeded")
{
    auto o = options();
    o.limits = lens::sse::limits{1024, 1024};
    auto f = make(o);
    connect_at(f, at(0s));
    REQUIRE(f.received(event("1") + "data: " + std::string(5000, 'x') + "\n\n", at(1ms)) == step::stop);
    REQUIRE(f.failure());
    CHECK(f.failure()->code == lens::errc::limit_exceeded);
    CHECK(take_all(f).size() == 1); // what came before it is still delivered
}

TEST_CASE("stream_fsm: the end of a connection counts after the bytes kept by backpressure")
{
    auto o = options();
    o.queue_capacity = 1;
    o.parse_slice = 1;
    auto f = make(o);
    connect_at(f, at(0s));
    REQUIRE(f.received(event("1") + event("2") + event("3") + "id: 4\ndata: {\"type\":\"x\"", at(1ms)) ==
            step::wait);
    REQUIRE(f.connection_ended({}, "closed", at(2ms)) == step::wait); // not yet: bytes are kept
    CHECK(f.wake_at() == never);
    std::vector<std::string> ids;
    step s = step::wait;
    while (s == step::wait && f.current_phase() == fsm_type::phase::streaming) {
        auto ev = f.take();
        REQUIRE(ev);
        ids.push_back(ev->id);
        s = f.resume(at(3ms));
    }
    for (auto& ev : take_all(f))
        ids.push_back(ev.id);
    CHECK(ids == std::vector<std::string>{"1", "2", "3"});
    CHECK(f.current_phase() == fsm_type::phase::waiting);
    CHECK(f.statistics().half_events_discarded == 1);
    reconnect(f);
    CHECK(f.last_event_id() == "3"); // the half event's id is forgotten with it
}

TEST_CASE("stream_fsm: the API key is scrubbed from ids, raw JSON, typed fields and malformed text")
{
    auto f = make();
    connect_at(f, at(0s));
    const std::string bytes =
        "id: " + secret + "\n"
        "data: {\"type\":\"log.info\",\"event_data\":{\"message\":\"key " + secret + "\"}}\n\n"
        "data: {\"type\":\"log.info\",\"event_data\":{\"API_KEY\":\"x\",\"deep\":[{\"any\":\"\\u0073k-live-0123456789\"}]}}\n\n"
        "data: {\"type\":\"error\",\"message\":\"\\u0073k-live-0123456789 is wrong\"}\n\n"
        "data: {\"type\":\"inference.result\",\"event_data\":{\"response\":[\"" + secret + "\"],\"query_id\":\"" + secret + "\"}}\n\n"
        "data: {\"type\":\"" + secret + "\",\"sk-live-0123456789\":1}\n\n"
        "data: not json at all " + secret + "\n\n"
        "data: {\"type\":\"sse.stream.start\",\"session_id\":\"\\u0073k-live-0123456789\",\"api_key\":\"" + secret + "\"}\n\n";
    REQUIRE(f.received(bytes, at(1ms)) == step::read);
    const auto evs = take_all(f);
    REQUIRE(evs.size() == 7);
    for (const auto& ev : evs) {
        const std::string text = all_text(ev);
        INFO(text);
        CHECK(text.find(secret) == std::string::npos);
        CHECK(text.find("0123456789") == std::string::npos);
    }
    CHECK(evs[0].id == "[redacted]");
    CHECK(evs[0].get_if<lens::log_message>()->message == "key [redacted]");
    CHECK_FALSE(evs[1].raw().at("event_data").as_object().contains("API_KEY"));
    CHECK(evs[2].get_if<lens::error_event>()->message == "[redacted] is wrong");
    CHECK(evs[4].type == "[redacted]");
    REQUIRE(evs[5].kind() == lens::event_kind::malformed);
    CHECK(evs[5].get_if<lens::malformed_event>()->data == "not json at all [redacted]");
    CHECK_FALSE(evs[6].raw().as_object().contains("api_key"));
    CHECK(f.delivered_id() == "[redacted]");
}

TEST_CASE("stream_fsm: a server id with a control character fails the stream at the next reconnection")
{
    auto f = make();
    connect_at(f, at(0s));
    REQUIRE(f.received(std::string("id: 1\x01") + "2\n" + "data: {\"type\":\"x\"}\n\n", at(1ms)) == step::read);
    REQUIRE(f.connection_ended({}, "closed", at(2ms)) == step::wait);
    REQUIRE(f.resume(f.wake_at()) == step::stop);
    REQUIRE(f.failure());
    CHECK(f.failure()->code == lens::errc::protocol_error);
    CHECK(f.statistics().attempts == 1); // nothing was sent
}

TEST_CASE("stream_fsm: a 200 that is not text/event-stream fails - the content type is scrubbed")
{
    auto f = make();
    REQUIRE(f.start(at(0s)) == step::connect);
    REQUIRE(f.accepted("application/json; x=" + secret, at(1ms)) == step::stop);
    CHECK(f.failure()->code == lens::errc::not_event_stream);
    CHECK(f.failure()->detail.find(secret) == std::string::npos);
    CHECK(f.failure()->detail.find("application/json") != std::string::npos);
}

TEST_CASE("stream_fsm: close() stops the reader and the timer - queued events stay takeable")
{
    auto f = make();
    connect_at(f, at(0s));
    REQUIRE(f.received(event("1"), at(1ms)) == step::read);
    f.close();
    CHECK(f.closed());
    CHECK(f.wake_at() == never);
    CHECK(f.on_timer(at(1h)) == timer_step::none);
    CHECK(f.received(event("2"), at(2ms)) == step::stop);
    CHECK(f.connection_ended({}, "closed", at(2ms)) == step::stop);
    CHECK(f.resume(at(3ms)) == step::stop);
    CHECK(take_all(f).size() == 1);
    CHECK_FALSE(f.failure());
}

TEST_CASE("stream_fsm: deadlines saturate for absurd timeouts")
{
    auto c = settings();
    c.timeout = ms::max();
    c.connect_timeout = ms::max();
    auto o = options();
    o.idle_timeout = ms::max();
    o.reconnect.reset_after = ms::max();
    auto f = make(o, c);
    REQUIRE(f.start(at(1s)) == step::connect);
    CHECK(f.head_deadline() == never);
    CHECK(f.connect_deadline() == never);
    REQUIRE(f.accepted("text/event-stream", at(1s)) == step::read);
    CHECK(f.wake_at() == never);
    CHECK(f.on_timer(at(1000h)) == timer_step::none);
    REQUIRE(f.connection_ended({}, "closed", at(1000h)) == step::wait); // never stable: no reset, no overflow
    CHECK(f.wake_at() == at(1000h) + 100ms);
}
