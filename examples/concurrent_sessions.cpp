// Several sessions driven concurrently from one thread, a control loop beside
// another coroutine, and timeouts composed with ||. Runs against an in-process
// emulator; point `cfg` at the real API to use it for real.
#include <lens/client.hpp>
#include <lens/emulator.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include <iostream>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

namespace {

/// One session's control loop: validate, a few status polls, a query with a local timeout.
lens::task<void> drive(lens::client rest, int n)
{
    co_await lens::with_session(rest, std::string(lens::emulator::builtin::query),
                                [&](const lens::session_record& rec) -> lens::task<void> {
        auto s = co_await rest.open_session(rec); // shares the client's endpoint (one TLS context)
        auto [status, validation] = co_await (s.status() && s.validate());
        std::cout << "session " << n << ": " << status.session_id << " " << lens::to_string(status.status)
                  << (validation.is_valid ? " valid" : " invalid") << '\n';

        asio::steady_timer budget(co_await asio::this_coro::executor, 2s);
        auto q = lens::query_request::image_qa("How many people?", "image-" + std::to_string(n));
        auto outcome = co_await (s.query(q) || budget.async_wait(asio::use_awaitable));
        if (outcome.index() == 0)
            std::cout << "session " << n << " answer: " << boost::json::serialize(std::get<0>(outcome)) << '\n';
        else
            std::cout << "session " << n << ": no answer within the budget\n";
    });
}

/// Runs beside the control loops on the same thread.
lens::task<void> ticker(int* ticks)
{
    asio::steady_timer t(co_await asio::this_coro::executor);
    for (;;) {
        t.expires_after(1ms);
        co_await t.async_wait(asio::use_awaitable);
        ++*ticks;
    }
}

} // namespace

int main()
{
    asio::io_context ctx;
    lens::emulator::server emulator(ctx.get_executor());
    emulator.start();
    lens::config cfg;
    cfg.endpoint = emulator.endpoint();
    cfg.api_key = emulator.api_key();
    lens::client rest(ctx.get_executor(), cfg);

    int ticks = 0;
    asio::co_spawn(ctx, [&]() -> lens::task<void> {
        auto all = drive(rest, 0) && drive(rest, 1) && drive(rest, 2) && drive(rest, 3);
        co_await (std::move(all) || ticker(&ticks)); // the ticker stops when every session is done
        emulator.stop();
    }, [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
    });
    ctx.run();
    std::cout << "ticker ran " << ticks << " times alongside\n";
}
