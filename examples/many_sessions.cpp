// many_sessions — many sessions driven concurrently from one thread.
//
// Shows: one lens::client shared by every session (client.open_session: one TLS context
// and one key for all of them), one coroutine per session started with co_spawn and
// awaited together (a ranged parallel group), several requests in flight per session
// (`&&`), a time budget per query (`||` with a timer), and a coroutine running beside
// them all on the same thread. No threads, no locks.
//
// Run:  build/bin/example_many_sessions [--sessions N]   (in-process emulator; N = 20)
//       ARCHETYPE_API_KEY=... build/bin/example_many_sessions --real --lens lns-... --sessions 3
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <iostream>
#include <vector>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

namespace {

struct tally {
    int valid = 0;
    int answered = 0;
    int over_budget = 0;
};

/// One session's life: create, connect, status and validate at once, a query within a
/// budget, destroy.
lens::task<void> drive(lens::client client, std::string lens_id, int n, tally& t)
{
    co_await lens::with_session(client, lens_id, [&](const lens::session_record& record) -> lens::task<void> {
        lens::session channel = co_await client.open_session(record);
        auto [status, validation] = co_await (channel.status() && channel.validate());
        if (validation.is_valid && status.status == lens::session_status::running)
            ++t.valid;

        asio::steady_timer budget(co_await asio::this_coro::executor, 5s);
        auto question = lens::query_request::image_qa("What is on camera " + std::to_string(n) + "?",
                                                      example::sample_png());
        auto outcome = co_await (channel.query(question) || budget.async_wait(asio::use_awaitable));
        if (outcome.index() == 0) {
            ++t.answered;
            if (n < 3)
                std::cout << "session " << n << " (" << record.session_id << "): "
                          << boost::json::serialize(std::get<0>(outcome)) << '\n';
        } else {
            ++t.over_budget;
        }
    });
}

/// Runs beside the sessions on the same thread, until cancelled.
lens::task<void> ticker(int& ticks)
{
    asio::steady_timer t(co_await asio::this_coro::executor);
    for (;;) {
        t.expires_after(1ms);
        co_await t.async_wait(asio::use_awaitable);
        ++ticks;
    }
}

/// Every session at once; completes when all have, with the first failure rethrown.
lens::task<void> drive_all(lens::client client, std::string lens_id, int count, tally& t)
{
    auto executor = co_await asio::this_coro::executor;
    using operation = decltype(asio::co_spawn(executor, drive(client, lens_id, 0, t), asio::deferred));
    std::vector<operation> sessions;
    for (int n = 0; n < count; ++n)
        sessions.push_back(asio::co_spawn(executor, drive(client, lens_id, n, t), asio::deferred));
    auto [order, failures] = co_await asio::experimental::make_parallel_group(std::move(sessions))
                                 .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
    (void)order;
    for (auto& failure : failures)
        if (failure)
            std::rethrow_exception(failure);
}

} // namespace

lens::task<void> many_sessions(example::environment& env)
{
    lens::client client = env.make_client();
    const int count = env.option("sessions") ? std::stoi(*env.option("sessions")) : 20;
    const std::string lens_id = env.lens(lens::emulator::builtin::query);

    tally t;
    int ticks = 0;
    const auto start = std::chrono::steady_clock::now();
    co_await (drive_all(client, lens_id, count, t) || ticker(ticks)); // the ticker stops when all are done
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);

    std::cout << count << " sessions in " << ms.count() << " ms on one thread: " << t.valid << " valid, "
              << t.answered << " answered, " << t.over_budget << " over budget; the ticker ran " << ticks
              << " times alongside\n";
    example::expect(t.valid == count, "every session running and valid");
    example::expect(t.answered + t.over_budget == count, "every query answered or over budget");
    if (env.emulated())
        example::expect(t.answered == count && env.emulator().statistics().live_sessions == 0,
                        "every query answered, every session destroyed");
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, many_sessions);
}
