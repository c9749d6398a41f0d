// deadlines_and_reconnects — bound every wait, and survive a flaky network.
//
// Shows:
//   1. config::timeout, the deadline of a whole REST call (retries included), and
//      config::retry: 503s and dropped connections are retried with backoff, unseen;
//   2. a per-request deadline on the WebSocket (call_options::timeout) and a deadline
//      of your own composed with `||` and a timer; either way only that request gives
//      up, its late reply is dropped, and the session goes on;
//   3. a dropped WebSocket: lens reconnects with backoff; idempotent requests in flight
//      (status, validate, read) are resent; others fail with errc::connection_lost and
//      the caller decides, e.g. with lens::is_retryable.
// Under the emulator, its fault knobs play the slow server and the bad network; against
// the real API the same code simply succeeds (or shows what your network does).
//
// Run:  build/bin/example_deadlines_and_reconnects   (in-process emulator with faults)
//       ARCHETYPE_API_KEY=... build/bin/example_deadlines_and_reconnects --real --lens lns-...
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/retry.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <iostream>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

namespace {

boost::json::value reading(int n)
{
    boost::json::object o;
    o["sample"] = n;
    return o;
}

/// A non-idempotent request retried by the caller while the failure is transient.
lens::task<boost::json::value> update_with_retry(lens::session& channel, int n)
{
    for (int attempt = 1;; ++attempt) {
        try {
            co_return co_await channel.update(reading(n));
        } catch (const lens::error& e) {
            std::cout << "  update attempt " << attempt << ": " << e.what() << '\n';
            if (!lens::is_retryable(e.code()) || attempt == 3)
                throw;
        }
    }
}

} // namespace

lens::task<void> deadlines_and_reconnects(example::environment& env)
{
    // 1. REST: a deadline for the whole call, and retries inside it.
    lens::config cfg = env.config();
    cfg.timeout = 2s;                        // list, create, destroy... each within 2 s, retries included
    cfg.retry.max_attempts = 4;              // the first attempt and up to 3 retries
    cfg.retry.backoff.initial = 20ms;        // then 40 ms, 80 ms (jittered), or Retry-After when longer
    lens::client client(co_await asio::this_coro::executor, cfg);

    if (env.emulated())
        env.emulator().knobs().rest.fail_next = 2; // the next two requests get 503
    auto lenses = co_await client.list_lenses();
    std::cout << "1. listed " << lenses.size() << " lenses through two 503s\n";

    if (env.emulated()) {
        env.emulator().knobs().rest.delay = 500ms; // a slow server...
        lens::config impatient = cfg;
        impatient.timeout = 100ms;                 // ...and a caller that will not wait for it
        lens::client hurried(co_await asio::this_coro::executor, impatient);
        try {
            co_await hurried.list_lenses();
            example::expect(false, "a call slower than its deadline fails");
        } catch (const lens::error& e) {
            std::cout << "   with a 100 ms deadline: " << e.what() << '\n';
            example::expect(e.code() == lens::errc::timeout, "errc::timeout");
        }
        env.emulator().knobs().rest.delay = 0ms;
    }

    co_await lens::with_session(client, env.lens(lens::emulator::builtin::query),
                                [&](const lens::session_record& record) -> lens::task<void> {
        lens::session_options options;
        options.request_timeout = 5s;           // default deadline of each request
        options.reconnect.initial = 50ms;       // reconnect spacing after a drop
        options.reconnect.max_attempts = 5;     // then the session gives up with the last error
        lens::session channel = co_await client.open_session(record, options);

        // 2a. A per-request deadline. (Under the emulator, this focus is never answered.)
        lens::call_options quick;
        quick.timeout = 200ms;
        auto slow = lens::query_request::image_qa(env.emulated() ? "emulator:timeout" : "Describe every detail.",
                                                  example::sample_png());
        try {
            co_await channel.query(slow, quick);
            std::cout << "2a. the query was answered within 200 ms\n";
            example::expect(!env.emulated(), "the emulator never answers this query");
        } catch (const lens::error& e) {
            std::cout << "2a. " << e.what() << '\n';
            example::expect(e.code() == lens::errc::timeout, "errc::timeout");
        }

        // 2b. A deadline of our own: whichever finishes first wins, the other is cancelled.
        asio::steady_timer budget(co_await asio::this_coro::executor, 200ms);
        auto raced = co_await (channel.query(slow) || budget.async_wait(asio::use_awaitable));
        std::cout << "2b. " << (raced.index() == 0 ? "answered first" : "the budget ran out first") << '\n';
        if (env.emulated())
            example::expect(raced.index() == 1, "the timer wins");
        example::expect((co_await channel.validate()).is_valid, "the session is unaffected");

        // 3. A bad network: from now on each connection dies at its second request (the
        //    current one, which has carried several, at the next).
        if (env.emulated())
            env.emulator().knobs().ws.drop_after_frames = 2;
        const auto before = channel.stats().connects;
        co_await channel.status();                          // lost in flight: resent on a new connection
        lens::session_record s = co_await channel.status(); // the same again
        std::cout << "3. status after a drop: " << lens::to_string(s.status) << " (connections: "
                  << channel.stats().connects << ")\n";
        co_await update_with_retry(channel, 1); // may fail with connection_lost; retried by us
        if (env.emulated()) {
            env.emulator().knobs().ws.drop_after_frames = 0;
            example::expect(channel.stats().connects >= before + 2, "the session reconnected by itself");
        }
        example::expect(s.status == lens::session_status::running, "an idempotent request survived the drop");
    });
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, deadlines_and_reconnects);
}
