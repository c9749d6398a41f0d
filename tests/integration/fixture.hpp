// tests/integration/fixture.hpp — the harness every integration test uses.
//
// A `lens::test::fixture` owns one io_context, one in-process emulator bound to
// an ephemeral loopback port (http, or https when `options.tls` is set) and a
// `lens::config` pointing at it with test-friendly settings (5 s call deadline,
// 10 ms initial retry backoff). A test builds a fixture, optionally adjusts
// `f.cfg` or `f.server.knobs()`, and hands `run` a coroutine factory:
//
//     TEST_CASE("rest: something") {
//         lens::test::fixture f;                          // or fixture(opts)
//         f.run([&]() -> lens::task<void> {
//             auto c = f.make_client();
//             auto lenses = co_await c.list_lenses();
//             CHECK(lenses.size() == 3);
//             auto e = co_await lens::test::expect_error(lens::errc::not_found,
//                                                        [&] { return c.get_session("lsn-nope"); });
//             CHECK(lens::test::contains(e.what(), "sessions/metadata"));
//         });
//     }
//
// `run` co_spawns the coroutine, stops the emulator when it finishes (so the
// context runs out of work), runs the context on the calling thread, and
// rethrows whatever the coroutine threw (doctest assertion failures included).
// A watchdog (30 s by default) fails the test and stops the context if the
// coroutine never finishes, so no test can hang the suite.
//
// Everything — client, emulator, test body — runs on this one thread, so the
// emulator's knobs and statistics may be read and changed freely from the body.
//
// g++ 12: braced initializer lists (`json::object{{"a", 1}}`, `std::vector<int>{1, 2}`)
// and string-literal arrays inside coroutine bodies can fail to compile ("array used
// as initializer"); build such values in ordinary functions outside the coroutine.
#pragma once

#include "integration/secret.hpp"

#include <lens/client.hpp>
#include <lens/config.hpp>
#include <lens/emulator.hpp>
#include <lens/error.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace lens::test {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

/// The config the fixture gives its clients, for a server at `endpoint`.
inline lens::config test_config(std::string endpoint, std::string api_key, std::string ca_file = {})
{
    lens::config cfg;
    cfg.endpoint = std::move(endpoint);
    cfg.api_key = std::move(api_key);
    cfg.ca_file = std::move(ca_file);
    cfg.timeout = 5s;
    cfg.connect_timeout = 2s;
    cfg.retry.max_attempts = 4;
    cfg.retry.backoff.initial = 10ms;
    cfg.retry.backoff.max = 100ms;
    cfg.retry.backoff.multiplier = 2.0;
    cfg.retry.backoff.jitter = 0.5;
    if (canary_mode()) // every log record reaches the output the canary scans
        cfg.log = lens::logger([](const lens::log_record& r) { std::cerr << "[log] " << r.message << '\n'; },
                               lens::log_level::debug);
    return cfg;
}

/// Emulator options for https.
inline lens::emulator::options tls_options()
{
    auto o = lens::test::emulator_options();
    o.tls = true;
    return o;
}

struct fixture {
    boost::asio::io_context ctx;
    lens::emulator::server server;
    /// What `make_client()` uses: endpoint, key and (in TLS mode) CA of the emulator.
    lens::config cfg;
    /// How long `run` lets the test coroutine take before failing the test.
    std::chrono::steady_clock::duration watchdog = 30s;

    explicit fixture(lens::emulator::options opts = emulator_options())
        : server(ctx.get_executor(), std::move(opts)),
          cfg(test_config(server.endpoint(), server.api_key(), server.ca_file()))
    {
        server.start();
    }

    fixture(const fixture&) = delete;
    fixture& operator=(const fixture&) = delete;

    /// A client of the emulator on this fixture's context, with `cfg` (or a variant of it).
    lens::client make_client() { return lens::client(ctx.get_executor(), cfg); }
    lens::client make_client(lens::config c) { return lens::client(ctx.get_executor(), std::move(c)); }

    /// The emulator's knobs, live.
    lens::emulator::options& knobs() { return server.knobs(); }
    lens::emulator::stats stats() const { return server.statistics(); }

    /// Runs `make()` — a callable returning `lens::task<void>` — to completion on this
    /// fixture's context. Stops the emulator afterwards; rethrows the coroutine's exception.
    template <class F>
    void run(F&& make)
    {
        std::exception_ptr failure;
        bool finished = false;
        bool timed_out = false;
        boost::asio::steady_timer dog(ctx, watchdog);
        dog.async_wait([&](boost::system::error_code ec) {
            if (ec)
                return;
            timed_out = true;
            ctx.stop();
        });
        boost::asio::co_spawn(ctx, std::forward<F>(make)(), [&](std::exception_ptr e) {
            finished = true;
            failure = e;
            dog.cancel();
            server.stop();
        });
        ctx.restart();
        ctx.run();
        if (timed_out || !finished) {
            server.stop();
            FAIL("watchdog: the test coroutine did not finish within "
                 << std::chrono::duration_cast<std::chrono::milliseconds>(watchdog).count() << " ms");
        }
        if (failure)
            std::rethrow_exception(failure);
    }
};

/// True when `haystack` contains `needle`.
inline bool contains(std::string_view haystack, std::string_view needle)
{
    return haystack.find(needle) != std::string_view::npos;
}

/// Awaits `make()` (a callable returning any awaitable) and returns the `lens::error`
/// it throws; fails the test when it completes normally. Other exceptions propagate
/// (and fail the test with their message).
template <class F>
lens::task<lens::error> expect_error(F make)
{
    try {
        co_await make();
    } catch (const lens::error& e) {
        if (canary_mode()) // every error text reaches the output the canary scans
            std::cerr << "[error] " << e.what() << '\n';
        co_return e;
    }
    FAIL("expected a lens::error, but the operation succeeded");
    throw std::logic_error("unreachable");
}

/// As above, and checks the error's code is `expected` (reporting the message when not).
template <class F>
lens::task<lens::error> expect_error(lens::errc expected, F make)
{
    lens::error e = co_await expect_error(std::move(make));
    CHECK_MESSAGE(e.code() == lens::make_error_code(expected),
                  "expected " << lens::make_error_code(expected).message() << ", got "
                              << e.code().message() << ": " << e.what());
    co_return e;
}

/// Yields to the context until `done()` is true or `limit` passes (no sleeping: each
/// round lets every ready handler, I/O included, run). Returns `done()`.
template <class Pred>
lens::task<bool> eventually(Pred done, std::chrono::steady_clock::duration limit = 5s)
{
    const auto until = steady::now() + limit;
    while (!done() && steady::now() < until)
        co_await boost::asio::post(co_await boost::asio::this_coro::executor, boost::asio::use_awaitable);
    co_return done();
}

} // namespace lens::test
