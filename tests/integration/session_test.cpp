// The WebSocket control channel against the in-process emulator.
#include <doctest/doctest.h>

#include <lens/client.hpp>
#include <lens/emulator.hpp>
#include <lens/session.hpp>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using lens::errc;
using lens::task;

namespace {

/// One io_context running the emulator and the test coroutine; a watchdog fails
/// the test instead of letting it hang.
struct ws_harness {
    asio::io_context ctx;
    lens::emulator::server emu;
    lens::config cfg;
    std::vector<std::string> messages; ///< every error text seen, checked for the key

    explicit ws_harness(lens::emulator::options o = {}) : emu(ctx.get_executor(), std::move(o))
    {
        emu.start();
        cfg.endpoint = emu.endpoint();
        cfg.api_key = emu.api_key();
        cfg.ca_file = emu.ca_file();
        cfg.timeout = 5s;
    }

    template <class F>
    void run(F body)
    {
        std::exception_ptr failure;
        bool finished = false;
        asio::steady_timer watchdog(ctx, 30s);
        watchdog.async_wait([&](boost::system::error_code ec) {
            if (!ec) {
                failure = std::make_exception_ptr(std::runtime_error("watchdog: the test hung"));
                ctx.stop();
            }
        });
        asio::co_spawn(ctx, body(), [&](std::exception_ptr e) {
            failure = e;
            finished = true;
            watchdog.cancel();
            emu.stop();
        });
        ctx.run();
        if (failure)
            std::rethrow_exception(failure);
        REQUIRE(finished);
        for (auto& m : messages)
            CHECK(m.find(cfg.api_key) == std::string::npos);
    }

    task<lens::session_record> create(std::string_view lens_id)
    {
        lens::client c(ctx.get_executor(), cfg);
        co_return co_await c.create_session(std::string(lens_id));
    }

    /// What a failed operation threw.
    struct caught {
        boost::system::error_code code;
        std::string what;
    };

    /// Awaits `op` and returns the lens::error it must throw.
    template <class Awaitable>
    task<caught> failure_of(Awaitable op)
    {
        try {
            co_await std::move(op);
        } catch (const lens::error& e) {
            messages.push_back(e.what());
            co_return caught{e.code(), e.what()};
        }
        FAIL("expected a lens::error");
        co_return caught{};
    }

    /// Waits (bounded) until `pred()` holds; time passes through the emulator knobs under test.
    task<bool> eventually(std::function<bool()> pred, std::chrono::milliseconds limit = 3s)
    {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        asio::steady_timer t(ctx);
        while (!pred() && std::chrono::steady_clock::now() < deadline) {
            t.expires_after(5ms);
            co_await t.async_wait(asio::use_awaitable);
        }
        co_return pred();
    }
};

lens::call_options within(std::chrono::milliseconds t)
{
    lens::call_options o;
    o.timeout = t;
    return o;
}

json::object number_payload(int i)
{
    json::object o;
    o["n"] = i;
    return o;
}

json::object file_config(std::size_t n)
{
    json::object o;
    o["file_id"] = std::string(n, 'j');
    return o;
}

std::string image_for(int i) { return "image-bytes-" + std::to_string(i * 7919); }

} // namespace

TEST_CASE("session: every typed operation against the mailbox lens")
{
    ws_harness h;
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        auto s = co_await lens::session::open(h.cfg, record);
        CHECK(s.is_connected());

        auto status = co_await s.status();
        CHECK(status.session_id == record.session_id);
        CHECK(status.status == lens::session_status::running);
        CHECK_FALSE(status.raw.contains("api_key"));
        CHECK(json::serialize(json::value_from(status)).find(h.cfg.api_key) == std::string::npos);

        auto v = co_await s.validate();
        CHECK(v.is_valid);
        co_await s.heartbeat();

        // The mailbox: a cursor per client id; a new id replays from the start.
        auto first = co_await s.read("reader-a");
        const auto initial = first.messages.size();
        CHECK(initial >= 1);
        CHECK(first.client_id == "reader-a");
        for (int i = 0; i < 3; ++i)
            co_await s.update(number_payload(i));
        auto next = co_await s.read("reader-a");
        REQUIRE(next.messages.size() == 3);
        CHECK(next.messages[2].data.as_object().at("n").as_int64() == 2);
        auto empty = co_await s.read("reader-a");
        CHECK(empty.messages.empty()); // event_data null: nothing pending
        auto replay = co_await s.read("reader-b");
        CHECK(replay.messages.size() == initial + 3);
        CHECK(s.client_id().size() == 8); // random per session object
        auto own = co_await s.read();
        CHECK(own.messages.size() == initial + 3);

        // Braced temporaries straight into the awaited call: g++ 12 destroys braced
        // aggregate temporaries twice here, so these types are not aggregates.
        lens::client rest(h.ctx.get_executor(), h.cfg);
        auto file = co_await rest.upload_file(std::string(40, 'f') + ".csv", "t,a\n1,2\n");
        auto set = co_await s.set_input_stream(lens::csv_stream{file.file_id});
        CHECK(set.as_object().at("type") == "input_stream.set.response");
        auto missing = co_await h.failure_of(s.set_input_stream(lens::raw_stream{"jsonl_file_reader", file_config(40)}));
        CHECK(missing.code == errc::api_error);
        CHECK(missing.what.find("File not found") != std::string::npos);
        auto pushed = co_await s.update(number_payload(64));
        CHECK(pushed.is_object());
        auto called = co_await s.call(std::string("session.") + "validate", json::value(nullptr));
        CHECK(called.as_object().at("type") == "session.validate.response");

        auto raw = co_await s.call("session.validate");
        CHECK(raw.as_object().at("type") == "session.validate.response");

        co_await s.destroy();
        auto gone = co_await h.failure_of(s.status());
        CHECK(gone.code == errc::session_gone);
        lens::client c(h.ctx.get_executor(), h.cfg);
        CHECK((co_await c.get_session(record.session_id)).status == lens::session_status::stale);
        // The session is gone: a new channel is refused for good, not retried.
        auto refused = co_await h.failure_of(lens::session::open(h.cfg, record));
        CHECK(refused.code == errc::session_gone);
    });
}

TEST_CASE("session: 1000 concurrent mixed requests, each gets its own reply")
{
    lens::emulator::options o;
    o.ws.query_latency = 2ms; // queries complete after the status/validate replies sent later
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::query);
        auto s = co_await lens::session::open(h.cfg, record);
        int checked = 0;
        auto one = [&](int i) -> task<void> {
            switch (i % 3) {
            case 0: {
                const auto focus = "question " + std::to_string(i);
                auto q = i % 2 ? lens::query_request::image_qa(focus, image_for(i))
                               : lens::query_request::bbox("Input: [car" + std::to_string(i) + ",person]", image_for(i));
                auto answer = co_await s.query(q);
                CHECK(answer == lens::emulator::expected_query_answer(q.template_name, q.focus, image_for(i)));
                break;
            }
            case 1: {
                auto st = co_await s.status();
                CHECK(st.session_id == record.session_id);
                break;
            }
            default: {
                auto v = co_await s.validate();
                CHECK(v.is_valid);
            }
            }
            ++checked;
        };
        std::vector<task<void>> all;
        auto ex = co_await asio::this_coro::executor;
        std::vector<std::future<void>> done;
        for (int i = 0; i < 1000; ++i)
            done.push_back(asio::co_spawn(ex, one(i), asio::use_future));
        CHECK(co_await h.eventually([&] { return checked == 1000; }, 20s));
        for (auto& f : done)
            f.get(); // rethrows a failed request
        CHECK(s.stats().replies_matched == 1000);
        CHECK(s.stats().pending == 0);
    });
}

TEST_CASE("session: a timed-out request leaves its neighbours intact and its late reply is dropped")
{
    lens::emulator::options o;
    o.ws.query_timeout_after = 150ms;
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::query);
        auto s = co_await lens::session::open(h.cfg, record);
        auto ex = co_await asio::this_coro::executor;
        // A: never answered in time by the model; B: queued behind it; C: another type.
        auto a = asio::co_spawn(ex, h.failure_of(s.query(lens::query_request::image_qa("emulator:timeout", "x"), within(30ms))),
                                asio::use_awaitable);
        auto b = asio::co_spawn(ex, s.query(lens::query_request::image_qa("b", "bytes-b"), within(3s)), asio::use_awaitable);
        auto c = asio::co_spawn(ex, s.status(), asio::use_awaitable);
        auto [timeout, answer, status] = co_await (std::move(a) && std::move(b) && std::move(c));
        CHECK(timeout.code == errc::timeout);
        CHECK(timeout.what.find("model.query") != std::string::npos);
        CHECK(answer == lens::emulator::expected_query_answer("image_qa_template_task", "b", "bytes-b"));
        CHECK(status.session_id == record.session_id);
        CHECK(s.stats().late_replies_dropped == 1);
        // The connection carried on.
        CHECK((co_await s.validate()).is_valid);
        CHECK(s.stats().connects == 1);
    });
}

TEST_CASE("session: per-operation cancellation composes with ||")
{
    lens::emulator::options o;
    o.ws.reply_delay = 60ms;
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        auto s = co_await lens::session::open(h.cfg, record);
        asio::steady_timer timer(co_await asio::this_coro::executor, 5ms);
        auto winner = co_await (s.validate() || timer.async_wait(asio::use_awaitable));
        CHECK(winner.index() == 1); // the timer won; validate was cancelled
        // The cancelled request keeps its place: the next validate gets its own reply.
        auto v = co_await s.validate();
        CHECK(v.is_valid);
        CHECK(s.stats().late_replies_dropped == 1);
        CHECK(s.stats().connects == 1);
    });
}

TEST_CASE("session: the model's timeout reply and error frames become errors of their request")
{
    lens::emulator::options o;
    o.ws.query_timeout_after = 10ms;
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::query);
        auto s = co_await lens::session::open(h.cfg, record);
        auto e = co_await h.failure_of(s.query(lens::query_request::image_qa("emulator:timeout", "x")));
        CHECK(e.code == errc::query_timed_out);
        CHECK(e.what.find("Response timed out for query") != std::string::npos);

        h.emu.knobs().ws.error_frame_next = 1;
        auto err = co_await h.failure_of(s.status());
        CHECK(err.code == errc::api_error);
        CHECK(err.what.find("session.status") != std::string::npos);
        CHECK((co_await s.status()).session_id == record.session_id);

        // A malformed frame answers nothing: it goes to the inbox, the reply still arrives.
        h.emu.knobs().ws.malformed_next = 1;
        CHECK((co_await s.validate()).is_valid);
        auto junk = s.try_receive();
        REQUIRE(junk);
        CHECK(junk->is_string());
    });
}

TEST_CASE("session: reconnects after a drop - idempotent requests are resent, others fail")
{
    lens::emulator::options o;
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        lens::session_options so;
        so.reconnect.initial = 5ms;
        so.reconnect.jitter = 0;
        auto s = co_await lens::session::open(h.cfg, record, so);
        h.emu.knobs().ws.drop_after_frames = 3;
        for (int i = 0; i < 12; ++i) {
            auto st = co_await s.status(within(3s));
            CHECK(st.session_id == record.session_id);
        }
        CHECK(s.stats().connects >= 4);

        // A non-idempotent request caught by a drop fails with connection_lost.
        int lost = 0, ok = 0;
        for (int i = 0; i < 6; ++i) {
            try {
                co_await s.update(number_payload(i), within(3s));
                ++ok;
            } catch (const lens::error& e) {
                h.messages.push_back(e.what());
                CHECK(e.code() == errc::connection_lost);
                ++lost;
            }
        }
        CHECK(lost >= 1);
        CHECK(ok >= 1);
    });
}

TEST_CASE("session: a silent peer is detected within dead_peer_timeout and the session reconnects")
{
    ws_harness h;
    h.run([&]() -> task<void> {
        using std::chrono::steady_clock;
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        lens::session_options so;
        // Generous enough that a loaded CI machine (sanitizers) answers a ping within half of it.
        so.dead_peer_timeout = 600ms;
        so.reconnect.initial = 5ms;
        so.reconnect.jitter = 0;
        auto s = co_await lens::session::open(h.cfg, record, so);

        // The peer swallows the request and goes quiet with the TCP connection open:
        // only the unanswered ping reveals it. The idempotent request is resent.
        h.emu.knobs().ws.silent_after_frames = 1;
        auto t0 = steady_clock::now();
        auto v = co_await s.validate(within(5s));
        auto took = steady_clock::now() - t0;
        CHECK(v.is_valid);
        CHECK(s.stats().dead_peer_disconnects == 1);
        CHECK(s.stats().connects == 2);
        CHECK(took >= 600ms);
        CHECK(took < 3s); // detected at 600 ms, far from the 5 s request deadline

        // A request that is not idempotent fails with connection_lost at detection time.
        h.emu.knobs().ws.silent_after_frames = 1;
        t0 = steady_clock::now();
        auto lost = co_await h.failure_of(s.update(number_payload(1), within(5s)));
        took = steady_clock::now() - t0;
        CHECK(lost.code == errc::connection_lost);
        CHECK(took < 3s);
        CHECK(s.stats().dead_peer_disconnects == 2);
        CHECK(co_await h.eventually([&] { return s.stats().connects == 3; })); // reconnected after backoff

        // A live peer that is merely idle answers the pings: three answered pings (each
        // after half a dead-peer period of silence) cost no connection.
        const auto pongs = s.stats().pongs_received;
        CHECK(co_await h.eventually([&] { return s.stats().pongs_received >= pongs + 3; }, 5s));
        CHECK(s.stats().dead_peer_disconnects == 2);
        CHECK(s.stats().connects == 3);
        CHECK((co_await s.validate(within(1s))).is_valid);
    });
}

TEST_CASE("session: over wss, keepalive pings answered through TLS")
{
    lens::emulator::options o;
    o.tls = true;
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        CHECK(record.session_endpoint.starts_with("wss://127.0.0.1:"));
        lens::session_options so;
        so.dead_peer_timeout = 600ms;
        auto s = co_await lens::session::open(h.cfg, record, so);
        CHECK((co_await s.status()).session_id == record.session_id);
        CHECK((co_await s.validate()).is_valid);
        // Silence: three pings go out and are answered through TLS, nothing reconnects.
        CHECK(co_await h.eventually([&] { return s.stats().pongs_received >= 3; }, 5s));
        CHECK(s.stats().dead_peer_disconnects == 0);
        CHECK(s.stats().connects == 1);
        co_await s.update(number_payload(7));
        auto mail = co_await s.read("tls-reader");
        REQUIRE_FALSE(mail.messages.empty());
        CHECK(mail.messages.back().data.as_object().at("n").as_int64() == 7);

        // A wrong CA: the certificate is rejected and open() reports it, key-free.
        auto untrusted = h.cfg;
        untrusted.ca_file.clear();
        lens::session_options quick;
        quick.connect_timeout = 2s;
        quick.reconnect.max_attempts = 0; // unlimited: the rejection must stop it anyway
        auto refused = co_await h.failure_of(lens::session::open(untrusted, record, quick));
        CHECK(refused.code == errc::certificate_rejected);
        CHECK(refused.what.find("session.open") != std::string::npos);
        CHECK(refused.what.find("certificate") != std::string::npos);
    });
}

TEST_CASE("session: refused upgrades - 401 and 404 stop at once, 503 is retried")
{
    ws_harness h;
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        auto bad = h.cfg;
        bad.api_key = "not-the-key";
        auto e401 = co_await h.failure_of(lens::session::open(bad, record));
        CHECK(e401.code == errc::unauthorized);
        CHECK(e401.what.find("not-the-key") == std::string::npos);

        auto unknown = record;
        unknown.session_endpoint = record.session_endpoint.substr(0, record.session_endpoint.rfind('/')) + "/lsn-nope";
        auto e404 = co_await h.failure_of(lens::session::open(h.cfg, unknown));
        CHECK(e404.code == errc::session_gone);

        h.emu.knobs().ws.refuse_upgrade_status = 503;
        h.emu.knobs().ws.refuse_next_upgrades = 2;
        lens::session_options so;
        so.reconnect.initial = 5ms;
        auto s = co_await lens::session::open(h.cfg, record, so);
        CHECK(s.stats().connect_failures == 2);
        CHECK((co_await s.validate()).is_valid);
    });
}

TEST_CASE("session: a server that accepts and closes at once gets spaced attempts, not a storm")
{
    ws_harness h;
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        h.emu.knobs().ws.accept_then_close_next = 4;
        lens::session_options so;
        so.reconnect.initial = 20ms;
        so.reconnect.multiplier = 2;
        so.reconnect.jitter = 0;
        so.connect_timeout = 5s;
        const auto start = std::chrono::steady_clock::now();
        auto s = co_await lens::session::open(h.cfg, record, so);
        auto v = co_await s.validate();
        const auto elapsed = std::chrono::steady_clock::now() - start;
        CHECK(v.is_valid);
        CHECK(s.stats().connects == 5);
        // 20 + 40 + 80 + 160 ms of backoff at least: a short-lived connection does not reset it.
        CHECK(elapsed >= 300ms);
    });
}

TEST_CASE("session: subprotocol authentication, idle heartbeats, several sessions on one thread")
{
    ws_harness h;
    h.run([&]() -> task<void> {
        lens::session_options so;
        so.subprotocol_auth = true;
        so.heartbeat_idle = 20ms;
        std::vector<lens::session> sessions;
        for (int i = 0; i < 5; ++i)
            sessions.push_back(co_await lens::session::open(h.cfg, co_await h.create(lens::emulator::builtin::mailbox), so));
        // Drive all five at once from this one thread.
        auto ex = co_await asio::this_coro::executor;
        std::vector<std::future<lens::validation>> results;
        for (auto& s : sessions)
            results.push_back(asio::co_spawn(ex, s.validate(), asio::use_future));
        CHECK(co_await h.eventually([&] {
            for (auto& s : sessions)
                if (s.stats().heartbeats_sent < 2) return false;
            return true;
        }));
        for (auto& r : results)
            CHECK(r.get().is_valid);
        for (auto& s : sessions)
            CHECK(s.stats().late_replies_dropped == s.stats().heartbeats_sent - (s.stats().pending ? 1 : 0));
    });
}
