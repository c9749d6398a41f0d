// lens::runtime: tasks spread over several threads, each pinned to one, against the
// emulator running on a thread of its own; graceful and forced shutdown, signals,
// failures. Built and run under ThreadSanitizer by `scripts/test.sh tsan`.
//
// No doctest assertion runs on a runtime thread: tasks count what they see in atomics
// (or under a mutex) and the test thread checks the counts after join.
#include "integration/threaded_emulator.hpp"

#include <lens/event_stream.hpp>
#include <lens/runtime.hpp>
#include <lens/scoped_lens.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace emu = lens::emulator;
using namespace asio::experimental::awaitable_operators;
using lens::task;
using lens::test::threaded_emulator;
using lens::test::watchdog;
using namespace std::chrono_literals;

const std::string query_lens(emu::builtin::query);
const std::string mailbox_lens(emu::builtin::mailbox);

lens::runtime_options threads(std::size_t n, std::chrono::milliseconds shutdown_timeout = 10s)
{
    lens::runtime_options o;
    o.threads = n;
    o.shutdown_timeout = shutdown_timeout;
    return o;
}

/// Built outside coroutines (g++ 12).
lens::query_request question(const std::string& focus)
{
    return lens::query_request::image_qa(focus, "image-bytes-" + focus);
}

boost::json::object sensor_lens_config()
{
    return boost::json::parse(R"({
        "model_parameters": {"model_version": "Newton::c2_4_7b_251215a172f6d7", "focus": "temperature"},
        "model_pipeline": [{"processor_name": "lens_sensor_logs_processor"}],
        "output_streams": [{"stream_type": "server_sent_events_writer"}]
    })")
        .as_object();
}

/// True when `running_in_this_thread()` holds for thread `i`'s executor and no other's.
bool on_thread(lens::runtime& rt, std::size_t i)
{
    for (std::size_t j = 0; j < rt.size(); ++j) {
        const auto executor = rt.executor(j); // a copy: target() points into it
        auto* ex = executor.target<asio::io_context::executor_type>();
        if (!ex || ex->running_in_this_thread() != (i == j))
            return false;
    }
    return true;
}

/// Polls `done()` from the test thread (the emulator and the runtime work on theirs).
template <class Pred>
bool eventually(Pred done, std::chrono::milliseconds limit = 10s)
{
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > until)
            return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

/// A client on a scratch context of the test thread, to look at the emulator's state.
template <class T, class F>
T look(const lens::config& cfg, F f)
{
    asio::io_context ctx;
    lens::client c(ctx.get_executor(), cfg);
    T result{};
    std::exception_ptr failure;
    asio::co_spawn(
        ctx, [&]() -> task<void> { result = co_await f(c); }, [&](std::exception_ptr e) { failure = e; });
    ctx.run();
    if (failure)
        std::rethrow_exception(failure);
    return result;
}

std::size_t lens_count(const lens::config& cfg)
{
    return look<std::size_t>(cfg, [](lens::client& c) -> task<std::size_t> {
        auto lenses = co_await c.list_lenses();
        co_return lenses.size();
    });
}

std::size_t running_sessions(const lens::config& cfg)
{
    return look<std::size_t>(cfg, [](lens::client& c) -> task<std::size_t> {
        auto sessions = co_await c.list_sessions();
        std::size_t running = 0;
        for (auto& s : sessions)
            if (s.status == lens::session_status::running || s.status == lens::session_status::registered)
                ++running;
        co_return running;
    });
}

} // namespace

TEST_CASE("runtime: spawn places tasks round robin, each on its own thread with that thread's client")
{
    threaded_emulator emu;
    lens::runtime rt(emu.cfg, threads(4));
    watchdog dog(30s, [&] { rt.shutdown(); });
    REQUIRE(rt.size() == 4);
    CHECK(!rt.current_thread());

    constexpr std::size_t count = 12;
    std::mutex m;
    std::vector<std::size_t> placed(count, 99);
    std::atomic<int> misplaced{0};
    for (std::size_t n = 0; n < count; ++n)
        rt.spawn([&, n](lens::client& c) -> task<void> {
            const auto here = rt.current_thread();
            const auto id = std::this_thread::get_id();
            auto ex = co_await asio::this_coro::executor;
            if (!here || !on_thread(rt, *here) || &c.configuration() != &rt.client(*here).configuration() ||
                c.get_executor() != rt.executor(*here) ||
                ex != rt.executor(*here))
                ++misplaced;
            auto lenses = co_await c.list_lenses(); // real I/O; the task resumes on its thread
            if (lenses.size() != 3 || std::this_thread::get_id() != id || rt.current_thread() != here)
                ++misplaced;
            std::lock_guard lock(m);
            placed[n] = here.value_or(99);
        });
    std::atomic<int> on_two{0};
    rt.spawn(2, [&](lens::client&) -> task<void> {
        if (on_thread(rt, 2))
            ++on_two;
        co_return;
    });
    rt.wait();
    dog.dismiss();
    CHECK(!dog.fired());
    for (std::size_t n = 0; n < count; ++n)
        CHECK_MESSAGE(placed[n] == n % 4, "task " << n << " ran on thread " << placed[n]);
    CHECK(misplaced == 0);
    CHECK(on_two == 1);
    const auto s = rt.stats();
    CHECK(s.threads == 4);
    CHECK(s.spawned == count + 1);
    CHECK(s.completed == count + 1);
    CHECK(s.failed == 0);
    CHECK(s.running == 0);
    // After join the clients may be read from here: each thread's client made its own calls.
    for (std::size_t i = 0; i < 4; ++i)
        CHECK(rt.client(i).stats().calls == 3);
}

TEST_CASE("runtime: four threads run many sessions at once, several requests in flight on each")
{
    threaded_emulator emu;
    lens::runtime rt(emu.cfg, threads(4));
    watchdog dog(60s, [&] { rt.shutdown(); });

    constexpr int sessions = 24;
    std::atomic<int> valid{0}, answered{0}, read{0};
    for (int n = 0; n < sessions; ++n)
        rt.spawn([&, n](lens::client& c) -> task<void> {
            co_await lens::with_session(c, query_lens, [&](const lens::session_record& s) -> task<void> {
                lens::session channel = co_await c.open_session(s);
                auto [status, validation] = co_await (channel.status() && channel.validate());
                if (validation.is_valid && status.session_id == s.session_id)
                    ++valid;
                const auto q1 = question("first " + std::to_string(n));
                const auto q2 = question("second " + std::to_string(n));
                auto [a, b] = co_await (channel.query(q1) && channel.query(q2));
                if (a.is_string() && b.is_string() && a != b)
                    ++answered;
                auto [r, ok] = co_await (channel.read() && channel.status());
                if (ok.session_id == s.session_id)
                    ++read;
            });
        });
    rt.wait();
    dog.dismiss();
    CHECK(!dog.fired());
    CHECK(valid == sessions);
    CHECK(answered == sessions);
    CHECK(read == sessions);
    CHECK(rt.stats().completed == sessions);
    CHECK(emu.stats().live_sessions == 0);
    for (std::size_t i = 0; i < 4; ++i)
        CHECK(rt.client(i).stats().calls == 2 * sessions / 4); // create and destroy of its 6 sessions
}

TEST_CASE("runtime: shutdown cancels the tasks in flight, destroys every session and deletes every lens")
{
    auto opts = lens::test::emulator_options();
    opts.ws.query_latency = 60s; // every query stays in flight until the shutdown
    threaded_emulator emu(opts);
    const std::size_t builtin_lenses = lens_count(emu.cfg);
    lens::runtime rt(emu.cfg, threads(4, 10s));
    watchdog dog(60s, [&] { rt.shutdown(); });
    rt.start();

    constexpr int queries = 8, streams = 4;
    std::atomic<int> unwound{0};
    class on_unwind { // counts the bodies that unwound (not a braced aggregate: g++ 12)
    public:
        explicit on_unwind(std::atomic<int>& n) : n_(n) {}
        ~on_unwind() { ++n_; }

    private:
        std::atomic<int>& n_;
    };
    for (int n = 0; n < queries; ++n)
        rt.spawn([&, n](lens::client& c) -> task<void> {
            co_await lens::with_lens(
                c, "runtime test " + std::to_string(n), sensor_lens_config(), [&](const lens::lens_record&) {
                    return lens::with_session(c, query_lens, [&](const lens::session_record& s) -> task<void> {
                        on_unwind guard(unwound);
                        lens::session channel = co_await c.open_session(s);
                        co_await channel.query(question("never answered"));
                    });
                });
        });
    for (int n = 0; n < streams; ++n)
        rt.spawn([&](lens::client& c) -> task<void> {
            co_await lens::with_session(c, mailbox_lens, [&](const lens::session_record& s) -> task<void> {
                on_unwind guard(unwound);
                lens::event_stream events = c.events(s.session_id);
                while (auto ev = co_await events.next())
                    ;
            });
        });
    // Every query written and every stream connected: all of them are in flight.
    REQUIRE(eventually([&] {
        auto s = emu.stats();
        return s.ws_frames_received >= queries && s.sse_connections >= streams;
    }));
    CHECK(emu.stats().live_sessions == queries + streams);
    CHECK(lens_count(emu.cfg) == builtin_lenses + queries);

    const auto began = std::chrono::steady_clock::now();
    rt.shutdown();
    CHECK(rt.stopping());
    CHECK_NOTHROW(rt.join()); // cancellation is not a failure
    const auto took = std::chrono::steady_clock::now() - began;
    dog.dismiss();
    CHECK(!dog.fired());
    CHECK(took < 10s);
    MESSAGE("graceful shutdown of " << queries + streams << " tasks in flight took "
                                    << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");

    const auto s = rt.stats();
    CHECK(s.cancelled == queries + streams);
    CHECK(s.failed == 0);
    CHECK(s.completed == 0);
    CHECK(s.running == 0);
    CHECK(!s.forced_stop);
    CHECK(unwound == queries + streams);
    CHECK(emu.stats().live_sessions == 0);
    CHECK(running_sessions(emu.cfg) == 0);
    CHECK(lens_count(emu.cfg) == builtin_lenses);
}

TEST_CASE("runtime: the first failure of a task is rethrown by wait, and the other tasks complete")
{
    threaded_emulator emu;
    SUBCASE("wait rethrows the first failure")
    {
        lens::runtime rt(emu.cfg, threads(3));
        watchdog dog(30s, [&] { rt.shutdown(); });
        for (int n = 0; n < 6; ++n)
            rt.spawn([n](lens::client& c) -> task<void> {
                co_await c.list_lenses();
                if (n == 4)
                    throw std::runtime_error("task 4 failed");
            });
        CHECK_THROWS_WITH_AS(rt.wait(), "task 4 failed", std::runtime_error);
        CHECK_NOTHROW(rt.join()); // reported once
        dog.dismiss();
        CHECK(!dog.fired());
        const auto s = rt.stats();
        CHECK(s.failed == 1);
        CHECK(s.completed == 5);
        CHECK(s.cancelled == 0);
    }
    SUBCASE("a lens::error is a failure, an operation_aborted without shutdown too")
    {
        lens::runtime rt(emu.cfg, threads(2));
        watchdog dog(30s, [&] { rt.shutdown(); });
        rt.spawn([](lens::client& c) -> task<void> { co_await c.get_session("lsn-nope"); });
        try {
            rt.wait();
            FAIL("expected the task's lens::error");
        } catch (const lens::error& e) {
            CHECK(e.code() == lens::make_error_code(lens::errc::not_found));
        }
        dog.dismiss();
        CHECK(rt.stats().failed == 1);
    }
    SUBCASE("with on_failure, every failure goes to it and wait does not throw")
    {
        std::mutex m;
        std::vector<std::string> reported;
        auto o = threads(2);
        o.on_failure = [&](std::exception_ptr e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& x) {
                std::lock_guard lock(m);
                reported.push_back(x.what());
            }
        };
        lens::runtime rt(emu.cfg, o);
        watchdog dog(30s, [&] { rt.shutdown(); });
        for (int n = 0; n < 4; ++n)
            rt.spawn([n](lens::client& c) -> task<void> {
                co_await c.list_lenses();
                if (n % 2)
                    throw std::runtime_error("odd task " + std::to_string(n));
            });
        CHECK_NOTHROW(rt.wait());
        dog.dismiss();
        std::sort(reported.begin(), reported.end());
        REQUIRE(reported.size() == 2);
        CHECK(reported[0] == "odd task 1");
        CHECK(reported[1] == "odd task 3");
        CHECK(rt.stats().completed == 2);
    }
}

TEST_CASE("runtime: a runtime never started, shut down twice, or left running is destroyed cleanly")
{
    threaded_emulator emu;
    std::atomic<bool> ran{false};
    {
        lens::runtime rt(emu.cfg, threads(2)); // never started: its queued task never runs
        rt.spawn([&](lens::client&) -> task<void> {
            ran = true;
            co_return;
        });
        CHECK(rt.stats().running == 1);
    }
    CHECK(!ran);
    {
        lens::runtime rt(emu.cfg, threads(2));
        rt.start();
        rt.start(); // once
        rt.shutdown();
        rt.shutdown();
        CHECK_NOTHROW(rt.join());
        CHECK_NOTHROW(rt.join());
        CHECK(!rt.stats().forced_stop);
    }
    {
        lens::runtime rt(emu.cfg, threads(2));
        rt.shutdown(); // before start: the runtime is over
        CHECK_THROWS_AS(rt.start(), lens::error);
        CHECK_NOTHROW(rt.join());
        CHECK_NOTHROW(rt.wait());
    }
    {
        lens::runtime rt(emu.cfg, threads(3));
        rt.start();
        rt.spawn([](lens::client& c) -> task<void> { co_await c.list_lenses(); });
    } // the destructor shuts down and joins
    {
        lens::runtime rt(emu.cfg); // hardware_concurrency() threads, at least one
        CHECK(rt.size() >= 1);
    }
}

TEST_CASE("runtime: spawn after shutdown is refused, and so are waits from the runtime's own threads")
{
    threaded_emulator emu;
    lens::runtime rt(emu.cfg, threads(2));
    watchdog dog(30s, [&] { rt.shutdown(); });
    rt.start();

    CHECK_THROWS_AS(rt.spawn(2, [](lens::client&) -> task<void> { co_return; }), lens::error);
    std::atomic<int> refused_join{0};
    rt.spawn([&](lens::client&) -> task<void> {
        try {
            rt.join();
        } catch (const lens::error& e) {
            if (e.code() == lens::make_error_code(lens::errc::invalid_argument))
                ++refused_join;
        }
        co_return;
    });
    REQUIRE(eventually([&] { return rt.stats().completed == 1; }));
    CHECK(refused_join == 1);

    rt.shutdown();
    try {
        rt.spawn([](lens::client&) -> task<void> { co_return; });
        FAIL("spawn after shutdown was accepted");
    } catch (const lens::error& e) {
        CHECK(e.code() == lens::make_error_code(lens::errc::closed));
        CHECK(lens::test::contains(e.what(), "shut"));
        CHECK(lens::test::contains(e.what(), "runtime.spawn"));
    }
    rt.join();
    dog.dismiss();
    const auto s = rt.stats();
    CHECK(s.refused == 1);
    CHECK(s.spawned == 1);
}

TEST_CASE("runtime: a task that ignores the cancellation is stopped hard after shutdown_timeout")
{
    threaded_emulator emu;
    lens::runtime rt(emu.cfg, threads(2, 300ms));
    watchdog dog(30s, [&] { rt.shutdown(); });
    std::atomic<bool> waiting{false};
    rt.spawn([&](lens::client& c) -> task<void> {
        // Deaf to cancellation: only the forced stop ends it (its frame is destroyed with the runtime).
        co_await asio::this_coro::reset_cancellation_state([](asio::cancellation_type) {
            return asio::cancellation_type::none;
        });
        asio::steady_timer t(c.get_executor(), 60s);
        waiting = true;
        co_await t.async_wait(asio::use_awaitable);
    });
    rt.spawn([](lens::client& c) -> task<void> { co_await c.list_lenses(); });
    rt.start();
    REQUIRE(eventually([&] { return waiting.load() && rt.stats().completed == 1; }));
    const auto began = std::chrono::steady_clock::now();
    rt.shutdown();
    rt.join();
    const auto took = std::chrono::steady_clock::now() - began;
    dog.dismiss();
    CHECK(!dog.fired());
    CHECK(took >= 300ms);
    CHECK(took < 5s);
    const auto s = rt.stats();
    CHECK(s.forced_stop);
    CHECK(s.running == 1); // abandoned
    CHECK(s.completed == 1);
}

TEST_CASE("runtime: SIGINT shuts the runtime down gracefully")
{
    auto opts = lens::test::emulator_options();
    opts.ws.query_latency = 60s;
    threaded_emulator emu(opts);
    lens::runtime rt(emu.cfg, threads(2, 10s));
    watchdog dog(60s, [&] { rt.shutdown(); });
    rt.shutdown_on_signals();
    rt.start();
    CHECK_THROWS_AS(rt.shutdown_on_signals(), lens::error); // after start: refused
    for (int n = 0; n < 4; ++n)
        rt.spawn([](lens::client& c) -> task<void> {
            co_await lens::with_session(c, query_lens, [&](const lens::session_record& s) -> task<void> {
                lens::session channel = co_await c.open_session(s);
                co_await channel.query(question("never answered"));
            });
        });
    REQUIRE(eventually([&] { return emu.stats().ws_frames_received >= 4; }));
    CHECK(!rt.stopping());
    std::raise(SIGINT);
    CHECK(eventually([&] { return rt.stopping(); }));
    CHECK_NOTHROW(rt.join());
    dog.dismiss();
    CHECK(!dog.fired());
    const auto s = rt.stats();
    CHECK(s.cancelled == 4);
    CHECK(s.failed == 0);
    CHECK(!s.forced_stop);
    CHECK(emu.stats().live_sessions == 0);
}

TEST_CASE("runtime: clients, sessions and streams created, moved, cancelled and destroyed with requests in flight")
{
    threaded_emulator emu;
    lens::runtime rt(emu.cfg, threads(4));
    watchdog dog(60s, [&] { rt.shutdown(); });

    constexpr int tasks = 8;
    std::atomic<int> finished{0}, anomalies{0};
    std::mutex m;
    std::vector<std::string> notes;
    auto note = [&](std::string what) {
        ++anomalies;
        std::lock_guard lock(m);
        notes.push_back(std::move(what));
    };
    for (int n = 0; n < tasks; ++n)
        rt.spawn([&, n](lens::client& c) -> task<void> {
            auto ex = co_await asio::this_coro::executor;
            // A client copy, moved while its call is in flight; the moved-from one is closed.
            lens::client mine = c;
            int callbacks = 0;
            mine.list_lenses([&](boost::system::error_code ec, std::vector<lens::lens_record>) {
                ++callbacks;
                if (ec)
                    note("list_lenses on a moved client: " + ec.message());
            });
            lens::client moved = std::move(mine);
            auto closed = co_await lens::test::expect_error(lens::errc::closed, [&] { return mine.list_lenses(); });
            // A client of its own, destroyed with a call in flight: the call completes.
            {
                auto own = std::make_unique<lens::client>(ex, c.configuration());
                own->list_sessions([&](boost::system::error_code ec, std::vector<lens::session_record>) {
                    ++callbacks;
                    if (ec)
                        note("list_sessions on a destroyed client: " + ec.message());
                });
            }
            auto record = co_await moved.create_session(query_lens);
            lens::scoped_session owner(moved, record);
            {
                lens::session s = co_await moved.open_session(record);
                // Requests in flight while the session object moves.
                s.status([&](boost::system::error_code ec, lens::session_record) {
                    ++callbacks;
                    if (ec)
                        note("status across a move: " + ec.message());
                });
                s.validate([&](boost::system::error_code ec, lens::validation) {
                    ++callbacks;
                    if (ec)
                        note("validate across a move: " + ec.message());
                });
                lens::session t = std::move(s);
                auto answer = co_await t.query(question("moved " + std::to_string(n)));
                if (!answer.is_string())
                    note("query after a move: not a string");
                // A query cut short by a timer: cancelled alone, the session carries on.
                asio::steady_timer budget(ex, 20ms);
                auto cut = co_await (t.query(question("emulator:timeout")) || budget.async_wait(asio::use_awaitable));
                if (cut.index() != 1)
                    note("the never-answered query completed");
                co_await t.heartbeat();
                // Destroyed with a request in flight: the request fails with errc::closed.
                t.query(question("emulator:timeout"), [&](boost::system::error_code ec, boost::json::value) {
                    ++callbacks;
                    if (ec != lens::make_error_code(lens::errc::closed))
                        note("query of a destroyed session: " + ec.message());
                });
            }
            // An event stream: moved, its next() cancelled by a timer, destroyed with a next() in flight.
            {
                lens::event_stream first = moved.events(record.session_id);
                co_await first.connect();
                lens::event_stream es = std::move(first);
                // Whatever the stream sends at first is taken; then a next() with nothing
                // to take is cut short by the timer, and the stream carries on.
                bool cut_short = false;
                for (int i = 0; i < 10 && !cut_short; ++i) {
                    asio::steady_timer budget(ex, 20ms);
                    auto r = co_await (es.next() || budget.async_wait(asio::use_awaitable));
                    cut_short = r.index() == 1;
                }
                if (!cut_short)
                    note("every next() took an event");
                es.next([&](boost::system::error_code, std::optional<lens::session_event>) { ++callbacks; });
            }
            const bool all = co_await lens::test::eventually([&] { return callbacks == 6; });
            if (!all)
                note("callbacks: " + std::to_string(callbacks) + " of 6");
            co_await owner.destroy();
            (void)closed;
            ++finished;
        });
    rt.wait();
    dog.dismiss();
    CHECK(!dog.fired());
    CHECK(finished == tasks);
    CHECK(anomalies == 0);
    for (auto& n : notes)
        MESSAGE(n);
    CHECK(emu.stats().live_sessions == 0);
}

TEST_CASE("runtime: a shutdown while sessions are being created destroys them too")
{
    auto opts = lens::test::emulator_options();
    opts.rest.delay = 300ms; // the session exists on the server while its create reply is delayed
    threaded_emulator emu(opts);
    lens::runtime rt(emu.cfg, threads(2, 10s));
    watchdog dog(60s, [&] { rt.shutdown(); });
    rt.start();
    constexpr int sessions = 4;
    std::atomic<int> bodies{0};
    for (int n = 0; n < sessions; ++n)
        rt.spawn([&](lens::client& c) -> task<void> {
            co_await lens::with_session(c, mailbox_lens, [&](const lens::session_record&) -> task<void> {
                ++bodies;
                co_return;
            });
        });
    REQUIRE(eventually([&] { return emu.stats().live_sessions == sessions; }));
    rt.shutdown(); // every create is still waiting for its reply
    CHECK_NOTHROW(rt.join());
    dog.dismiss();
    CHECK(!dog.fired());
    const auto s = rt.stats();
    CHECK(s.cancelled == sessions);
    CHECK(!s.forced_stop);
    CHECK(bodies == 0); // cancelled before the body
    CHECK(emu.stats().live_sessions == 0);
}
