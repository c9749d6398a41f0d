// Unit tests of the control channel's state machine on scripted time: no sockets,
// no sleeps, no clock. Every time is `t0 + offset`.
#include "detail/channel_fsm.hpp"

#include <lens/error.hpp>
#include <lens/retry.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using lens::errc;
using lens::detail::channel_fsm;
using lens::detail::channel_timing;
using lens::detail::request_fate;
using act = channel_fsm::action;
using ms = std::chrono::milliseconds;

namespace {

const channel_fsm::time_point t0 = std::chrono::steady_clock::time_point{} + 1h;

/// Timing with the features under test only (the others off) and an exact backoff.
channel_timing timing(ms dead_peer = 0ms, ms heartbeat = 0ms)
{
    channel_timing t;
    t.connect_timeout = 1000ms;
    t.dead_peer_timeout = dead_peer;
    t.heartbeat_idle = heartbeat;
    t.reconnect.initial = 100ms;
    t.reconnect.max = 1600ms;
    t.reconnect.multiplier = 2;
    t.reconnect.jitter = 0;
    t.reconnect.reset_after = 10s;
    t.reconnect.max_attempts = 0;
    return t;
}

/// A channel connected at `at`.
channel_fsm connected_at(channel_timing t, channel_fsm::time_point at)
{
    channel_fsm f(t);
    f.start(at);
    REQUIRE(f.resume(at).kind == act::connect);
    REQUIRE(f.on_connected(at));
    return f;
}

/// The action at `now`, which must be the only one due then (the next call waits).
act::kind_type only(channel_fsm& f, channel_fsm::time_point now)
{
    const auto a = f.resume(now);
    if (a.kind != act::wait_until)
        CHECK(f.resume(now).kind == act::wait_until);
    return a.kind;
}

/// When the channel will next wake up, given nothing happens before.
channel_fsm::time_point wakeup(channel_fsm& f, channel_fsm::time_point now)
{
    const auto a = f.resume(now);
    REQUIRE(a.kind == act::wait_until);
    return a.until;
}

/// Reconnect delays: the connection is lost right after each connect, `n` times.
std::vector<ms> delays_of_short_connections(channel_fsm& f, channel_fsm::time_point& now, int n)
{
    std::vector<ms> out;
    for (int i = 0; i < n; ++i) {
        f.on_connection_lost(now, "closed by the server");
        const auto at = wakeup(f, now);
        out.push_back(std::chrono::duration_cast<ms>(at - now));
        now = at;
        REQUIRE(f.resume(now).kind == act::connect);
        REQUIRE(f.on_connected(now));
    }
    return out;
}

} // namespace

TEST_SUITE("channel fsm")
{
    TEST_CASE("channel fsm: the first attempt is due at start and aborted at exactly connect_timeout")
    {
        channel_fsm f(timing());
        CHECK(f.resume(t0).kind == act::wait_until); // idle until started
        f.start(t0);
        CHECK(only(f, t0) == act::connect);
        CHECK(f.current() == channel_fsm::phase::connecting);
        CHECK(f.attempt_deadline() == t0 + 1000ms);
        CHECK(wakeup(f, t0 + 999ms) == t0 + 1000ms);
        CHECK(only(f, t0 + 1000ms) == act::abort_connect);
        // The torn-down attempt reports whatever its socket said: the cause is the deadline,
        // and the open deadline has passed too.
        f.on_connect_failed(t0 + 1001ms, lens::make_error_code(errc::connection_failed), "Operation canceled");
        CHECK(f.resume(t0 + 1001ms).kind == act::stop);
        CHECK(f.stop_code() == errc::timeout);
        CHECK(f.stop_detail().find("not connected within 1000 ms") != std::string::npos);
        CHECK(f.stop_detail().find("connect attempt timed out") != std::string::npos);
        CHECK(f.resume(t0 + 2s).kind == act::wait_until); // announced once
    }

    TEST_CASE("channel fsm: a reconnect attempt has its own connect_timeout and is retried after it")
    {
        auto f = connected_at(timing(), t0);
        f.on_connection_lost(t0 + 1s, "eof");
        CHECK(wakeup(f, t0 + 1s) == t0 + 1s + 100ms);
        CHECK(only(f, t0 + 1s + 100ms) == act::connect);
        CHECK(f.attempt_deadline() == t0 + 2s + 100ms);
        CHECK(only(f, t0 + 2s + 100ms) == act::abort_connect);
        // A success that races the abort is the timed-out failure.
        CHECK_FALSE(f.on_connected(t0 + 2s + 101ms));
        CHECK(f.current() == channel_fsm::phase::backing_off);
        CHECK(f.last_failure() == "connect attempt timed out");
        CHECK(wakeup(f, t0 + 2s + 101ms) == t0 + 2s + 301ms); // second failure: 200 ms
    }

    TEST_CASE("channel fsm: ping at exactly half the dead-peer timeout, drop at exactly the limit")
    {
        auto f = connected_at(timing(20s), t0);
        CHECK(wakeup(f, t0) == t0 + 10s);
        CHECK(wakeup(f, t0 + 10s - 1ns) == t0 + 10s);
        CHECK(only(f, t0 + 10s) == act::send_ping);
        CHECK(wakeup(f, t0 + 10s) == t0 + 20s); // one ping per silence
        CHECK(wakeup(f, t0 + 20s - 1ns) == t0 + 20s);
        CHECK(f.resume(t0 + 20s).kind == act::drop_dead_peer);
        CHECK(f.current() == channel_fsm::phase::backing_off);
        CHECK(f.last_failure().find("dead peer") != std::string::npos);
        CHECK(wakeup(f, t0 + 20s) == t0 + 20s + 100ms);
        // What the driver logs as dead_peer and reconnect.
        CHECK(f.last_failure_code() == errc::connection_lost);
        CHECK(f.retry_at() == t0 + 20s + 100ms);
    }

    TEST_CASE("channel fsm: anything received, a pong included, postpones the drop")
    {
        auto f = connected_at(timing(20s), t0);
        CHECK(only(f, t0 + 10s) == act::send_ping);
        f.on_received(t0 + 10s + 3ms); // the pong
        CHECK(wakeup(f, t0 + 20s) == t0 + 20s + 3ms); // the next ping, half a period after the pong
        CHECK(only(f, t0 + 20s + 3ms) == act::send_ping);
        f.on_received(t0 + 25s); // a data frame
        CHECK(wakeup(f, t0 + 30s + 3ms) == t0 + 35s);
        CHECK(only(f, t0 + 35s) == act::send_ping);
        CHECK(f.resume(t0 + 45s).kind == act::drop_dead_peer);
    }

    TEST_CASE("channel fsm: heartbeat only after heartbeat_idle without a request")
    {
        auto f = connected_at(timing(0ms, 30s), t0);
        CHECK(wakeup(f, t0) == t0 + 30s);
        CHECK(wakeup(f, t0 + 30s - 1ns) == t0 + 30s);
        CHECK(only(f, t0 + 30s) == act::send_heartbeat);
        // Written a little later, it counts as the last send.
        f.on_write_started(t0 + 30s + 1ms, true);
        f.on_write_finished(t0 + 30s + 2ms, true);
        CHECK(wakeup(f, t0 + 30s + 2ms) == t0 + 60s + 2ms);
        // Pings and received frames are not requests: they do not postpone it.
        f.on_write_started(t0 + 40s, false);
        f.on_write_finished(t0 + 40s, false);
        f.on_received(t0 + 41s);
        CHECK(only(f, t0 + 60s + 2ms) == act::send_heartbeat);
    }

    TEST_CASE("channel fsm: no heartbeat while requests are being sent")
    {
        auto f = connected_at(timing(0ms, 30s), t0);
        auto now = t0;
        for (int i = 0; i < 10; ++i) { // a request every 20 s: never 30 s idle
            now += 20s;
            CHECK(f.resume(now).kind == act::wait_until);
            f.on_write_started(now, true);
            f.on_write_finished(now, true);
        }
        // A write stuck behind a full send buffer for longer than the idle period: still
        // nothing, since the request is being sent (a heartbeat would only queue behind it).
        f.on_write_started(now + 1s, true);
        CHECK(wakeup(f, now + 2min) == channel_fsm::time_point::max());
        f.on_write_finished(now + 2min, true);
        CHECK(wakeup(f, now + 2min) == now + 2min + 30s);
    }

    TEST_CASE("channel fsm: ping and heartbeat share the one wake-up, earliest first")
    {
        auto f = connected_at(timing(20s, 15s), t0);
        CHECK(wakeup(f, t0) == t0 + 10s);
        CHECK(only(f, t0 + 10s) == act::send_ping);
        f.on_received(t0 + 10s);
        CHECK(wakeup(f, t0 + 10s) == t0 + 15s);
        CHECK(only(f, t0 + 15s) == act::send_heartbeat);
        CHECK(wakeup(f, t0 + 15s) == t0 + 20s);
    }

    TEST_CASE("channel fsm: reconnect delays follow the policy - failed attempts back off exponentially to the cap")
    {
        auto f = connected_at(timing(), t0);
        auto now = t0 + 1s;
        f.on_connection_lost(now, "eof");
        std::vector<ms> got;
        for (int i = 0; i < 7; ++i) {
            const auto at = wakeup(f, now);
            got.push_back(std::chrono::duration_cast<ms>(at - now));
            now = at;
            REQUIRE(f.resume(now).kind == act::connect);
            f.on_connect_failed(now + 1ms, lens::make_error_code(errc::connection_failed), "connection refused");
            now += 1ms;
        }
        CHECK(got == std::vector<ms>{100ms, 200ms, 400ms, 800ms, 1600ms, 1600ms, 1600ms});
        CHECK(f.failures() == 8);
    }

    TEST_CASE("channel fsm: a server that accepts then closes at once gets growing delays, never a storm")
    {
        auto f = connected_at(timing(), t0);
        auto now = t0;
        const auto got = delays_of_short_connections(f, now, 6);
        CHECK(got == std::vector<ms>{100ms, 200ms, 400ms, 800ms, 1600ms, 1600ms});
    }

    TEST_CASE("channel fsm: a connection that stayed up reset_after resets the backoff")
    {
        auto f = connected_at(timing(), t0);
        auto now = t0;
        delays_of_short_connections(f, now, 3); // 100, 200, 400: the next would be 800
        // Up for just under reset_after: the run of failures goes on.
        f.on_connection_lost(now + 10s - 1ms, "eof");
        CHECK(wakeup(f, now + 10s - 1ms) == now + 10s - 1ms + 800ms);
        now = now + 10s - 1ms + 800ms;
        REQUIRE(f.resume(now).kind == act::connect);
        REQUIRE(f.on_connected(now));
        // Up for exactly reset_after: the loss starts a new run.
        f.on_connection_lost(now + 10s, "eof");
        CHECK(f.failures() == 1);
        CHECK(wakeup(f, now + 10s) == now + 10s + 100ms);
    }

    TEST_CASE("channel fsm: max_attempts gives up with the last failure's code")
    {
        auto t = timing();
        t.reconnect.max_attempts = 3;
        channel_fsm f(t);
        f.start(t0);
        REQUIRE(f.resume(t0).kind == act::connect);
        f.on_connect_failed(t0 + 1ms, lens::make_error_code(errc::connection_failed), "refused");
        CHECK(wakeup(f, t0 + 1ms) == t0 + 101ms);
        REQUIRE(f.resume(t0 + 101ms).kind == act::connect);
        f.on_connect_failed(t0 + 102ms, lens::make_error_code(errc::connection_failed), "refused");
        CHECK(wakeup(f, t0 + 102ms) == t0 + 302ms);
        REQUIRE(f.resume(t0 + 302ms).kind == act::connect);
        f.on_connect_failed(t0 + 303ms, lens::make_error_code(errc::server_error), "503 service unavailable");
        CHECK(f.resume(t0 + 303ms).kind == act::stop);
        CHECK(f.stop_code() == errc::server_error);
        CHECK(f.stop_detail().find("gave up after 3 failed attempts") != std::string::npos);
        CHECK(f.stop_detail().find("503 service unavailable") != std::string::npos);
    }

    TEST_CASE("channel fsm: max_attempts 0 is unlimited")
    {
        auto f = connected_at(timing(), t0);
        auto now = t0 + 1s;
        f.on_connection_lost(now, "eof");
        for (int i = 0; i < 1000; ++i) {
            now = wakeup(f, now);
            REQUIRE(f.resume(now).kind == act::connect);
            f.on_connect_failed(now, lens::make_error_code(errc::connection_failed), "refused");
        }
        CHECK(f.current() == channel_fsm::phase::backing_off);
    }

    TEST_CASE("channel fsm: unauthorized, not_found and certificate_rejected stop at once")
    {
        const unsigned statuses[] = {401, 403, 404};
        for (unsigned status : statuses) {
            auto f = connected_at(timing(), t0);
            f.on_connection_lost(t0 + 1s, "eof");
            REQUIRE(f.resume(t0 + 1s + 100ms).kind == act::connect);
            f.on_connect_failed(t0 + 1s + 101ms, lens::status_condition(status), "upgrade refused");
            CHECK(f.resume(t0 + 1s + 101ms).kind == act::stop);
            CHECK(f.stop_code() == (status == 404 ? errc::not_found : errc::unauthorized));
            CHECK(f.stop_detail() == "upgrade refused");
        }
        auto f = connected_at(timing(), t0);
        f.on_connection_lost(t0 + 1s, "eof");
        REQUIRE(f.resume(t0 + 2s).kind == act::connect);
        f.on_connect_failed(t0 + 2s, lens::make_error_code(errc::certificate_rejected), "untrusted issuer");
        CHECK(f.resume(t0 + 2s).kind == act::stop);
        CHECK(f.stop_code() == errc::certificate_rejected);
    }

    TEST_CASE("channel fsm: a 503 upgrade is retried - Retry-After honoured within the clamp")
    {
        channel_fsm f(timing());
        f.start(t0);
        REQUIRE(f.resume(t0).kind == act::connect);
        f.on_connect_failed(t0, lens::status_condition(503), "upgrade refused");
        CHECK(wakeup(f, t0) == t0 + 100ms);
        REQUIRE(f.resume(t0 + 100ms).kind == act::connect);
        // A longer server hint wins over the schedule...
        f.on_connect_failed(t0 + 100ms, lens::status_condition(429), "upgrade refused", 500ms);
        CHECK(wakeup(f, t0 + 100ms) == t0 + 600ms);
        REQUIRE(f.resume(t0 + 600ms).kind == act::connect);
        REQUIRE(f.on_connected(t0 + 650ms));
        // ...but is clamped to max_server_delay, and a year-long one does not overflow.
        f.on_connection_lost(t0 + 1s, "eof");
        REQUIRE(f.resume(t0 + 1s + 400ms).kind == act::connect);
        f.on_connect_failed(t0 + 1s + 400ms, lens::status_condition(503), "upgrade refused", ms::max());
        CHECK(wakeup(f, t0 + 1s + 400ms) == t0 + 1s + 400ms + 60s);
    }

    TEST_CASE("channel fsm: the reconnect it decided is reported - reason, code and when, for the driver's log")
    {
        auto f = connected_at(timing(), t0);
        f.on_connection_lost(t0 + 1s, "closed by the server (code 1008: bye)");
        CHECK(f.current() == channel_fsm::phase::backing_off);
        CHECK(f.last_failure() == "closed by the server (code 1008: bye)");
        CHECK(f.last_failure_code() == errc::connection_lost);
        CHECK(f.failures() == 1);
        CHECK(f.retry_at() == t0 + 1s + 100ms);
        REQUIRE(f.resume(t0 + 1s + 100ms).kind == act::connect);
        // A refused upgrade with a longer Retry-After: the clamped delay is what counts.
        f.on_connect_failed(t0 + 1s + 100ms, lens::status_condition(429), "upgrade refused", 100s);
        CHECK(f.last_failure_code() == errc::rate_limited);
        CHECK(f.failures() == 2);
        CHECK(f.retry_at() == t0 + 1s + 100ms + 60s);
    }

    TEST_CASE("channel fsm: a sent destroy stops reconnecting")
    {
        auto f = connected_at(timing(), t0);
        f.on_destroy_sent();
        f.on_connection_lost(t0 + 1s, "eof");
        CHECK(f.resume(t0 + 1s).kind == act::stop);
        CHECK(f.stop_code() == errc::session_gone);
        CHECK(f.resume(t0 + 1h).kind == act::wait_until);
    }

    TEST_CASE("channel fsm: requests after a loss - abandoned dropped, idempotent resent, others fail")
    {
        using F = request_fate;
        // (written, abandoned, idempotent)
        CHECK(channel_fsm::fate_after_loss(true, true, true) == F::drop);
        CHECK(channel_fsm::fate_after_loss(true, true, false) == F::drop);
        CHECK(channel_fsm::fate_after_loss(false, true, false) == F::drop);
        CHECK(channel_fsm::fate_after_loss(true, false, true) == F::resend_first);
        CHECK(channel_fsm::fate_after_loss(true, false, false) == F::fail);
        CHECK(channel_fsm::fate_after_loss(false, false, false) == F::keep_queued);
        CHECK(channel_fsm::fate_after_loss(false, false, true) == F::keep_queued);
    }

    TEST_CASE("channel fsm: open gives up early when the next attempt cannot start before its deadline")
    {
        auto t = timing();
        t.connect_timeout = 250ms;
        channel_fsm f(t);
        f.start(t0);
        REQUIRE(f.resume(t0).kind == act::connect);
        f.on_connect_failed(t0 + 1ms, lens::make_error_code(errc::connection_failed), "connection refused");
        REQUIRE(f.resume(t0 + 101ms).kind == act::connect);
        CHECK(f.attempt_deadline() == t0 + 250ms); // the open deadline bounds the attempt
        f.on_connect_failed(t0 + 102ms, lens::make_error_code(errc::connection_failed), "connection refused");
        // 200 ms more would pass the deadline: stop now, quoting the last attempt.
        CHECK(f.resume(t0 + 102ms).kind == act::stop);
        CHECK(f.stop_code() == errc::timeout);
        CHECK(f.stop_detail() == "not connected within 250 ms (last attempt: connection refused)");
    }

    TEST_CASE("channel fsm: huge settings saturate instead of overflowing into the past")
    {
        auto t = timing(ms::max(), ms::max());
        t.connect_timeout = ms::max();
        t.reconnect.initial = ms::max();
        t.reconnect.max = ms::max();
        t.reconnect.reset_after = ms::max();
        channel_fsm f(t);
        f.start(t0);
        REQUIRE(f.resume(t0).kind == act::connect);
        CHECK(f.attempt_deadline() == channel_fsm::time_point::max());
        CHECK(wakeup(f, t0 + 1000h) == channel_fsm::time_point::max());
        REQUIRE(f.on_connected(t0 + 1s));
        // Neither ping, drop nor heartbeat is ever due, however long the silence.
        CHECK(f.resume(t0 + 100000h).kind == act::wait_until);
        f.on_connection_lost(t0 + 2s, "eof");
        CHECK(f.current() == channel_fsm::phase::backing_off);
        CHECK(wakeup(f, t0 + 2s) == channel_fsm::time_point::max());
    }

    TEST_CASE("channel fsm: stop wins over later events and is announced once")
    {
        auto f = connected_at(timing(20s, 30s), t0);
        f.stop(lens::make_error_code(errc::closed), "session closed");
        f.stop(lens::make_error_code(errc::session_gone), "later reason");
        CHECK(f.resume(t0).kind == act::stop);
        CHECK(f.stop_code() == errc::closed);
        CHECK(f.stop_detail() == "session closed");
        f.on_connection_lost(t0 + 1s, "eof");
        f.on_connect_failed(t0 + 1s, lens::make_error_code(errc::connection_failed), "refused");
        CHECK_FALSE(f.on_connected(t0 + 1s));
        CHECK(f.resume(t0 + 1h).kind == act::wait_until);
        CHECK(f.stopped());
    }

    TEST_CASE("channel fsm: the jitter sample shortens delays within the policy")
    {
        auto t = timing();
        t.reconnect.jitter = 0.5;
        channel_fsm f(t, [] { return 0.5; });
        f.start(t0);
        REQUIRE(f.resume(t0).kind == act::connect);
        f.on_connect_failed(t0, lens::make_error_code(errc::connection_failed), "refused");
        CHECK(wakeup(f, t0) == t0 + 75ms); // 100 * (1 - 0.5 * 0.5)
    }
}
