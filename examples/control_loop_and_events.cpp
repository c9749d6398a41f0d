// control_loop_and_events — a control loop and an event consumer running together.
//
// Shows: two coroutines on one thread, joined with `&&`: one consumes the SSE stream
// (results as they come), the other drives the session over its WebSocket (starts the
// input, polls session.status on a timer, decides when to stop). They share plain
// state without locks because everything runs on the one thread; the control loop
// ends the consumer with stream.close(), which makes its next() return nullopt.
//
// Run:  build/bin/example_control_loop_and_events   (in-process emulator, a generated CSV)
//       ARCHETYPE_API_KEY=... build/bin/example_control_loop_and_events --real --lens lns-... --file readings.csv
//           [--results N]
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/event_stream.hpp>
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

/// What the two coroutines share (one thread: no locks).
struct shared_state {
    int results = 0;
    int broken = 0;
    std::string last_label;
};

std::string machine_csv(int rows)
{
    std::string csv = "timestamp,rpm,temperature\n";
    for (int i = 0; i < rows; ++i)
        csv += std::to_string(i) + "," + std::to_string(1400 + (i * 37) % 200) + "," + std::to_string(60 + i % 9) + "\n";
    return csv;
}

/// The consumer: every event until the stream ends or is closed.
lens::task<void> consume(lens::event_stream& events, shared_state& state)
{
    while (auto ev = co_await events.next()) {
        if (auto* r = ev->get_if<lens::inference_result>()) {
            ++state.results;
            state.last_label = r->label().value_or("?");
            if (state.last_label == "BROKEN")
                ++state.broken;
            std::cout << "  consumer: result " << ev->id << " " << state.last_label << '\n';
        }
    }
    std::cout << "  consumer: stream closed\n";
}

/// The control loop: start the input, watch the session, stop after `wanted` results.
lens::task<void> control(lens::session& channel, lens::event_stream& events, const std::string& file_id,
                         int wanted, shared_state& state)
{
    co_await channel.set_input_stream(lens::csv_stream(file_id));
    asio::steady_timer tick(co_await asio::this_coro::executor);
    for (int round = 1; state.results < wanted; ++round) {
        tick.expires_after(100ms);
        co_await tick.async_wait(asio::use_awaitable);
        lens::session_record now = co_await channel.status();
        std::cout << "control round " << round << ": " << lens::to_string(now.status) << ", " << state.results
                  << " results so far (" << state.broken << " BROKEN)\n";
        example::expect(now.status == lens::session_status::running, "the session stays running");
        example::expect(round < 100, "results within 10 s");
    }
    events.close(); // ends the consumer
}

} // namespace

lens::task<void> control_loop_and_events(example::environment& env)
{
    lens::client client = env.make_client();
    lens::file_record file;
    if (auto path = env.option("file"))
        file = co_await client.upload_file(std::filesystem::path(*path));
    else
        file = co_await client.upload_file("machine.csv", machine_csv(60)); // 6 windows of 10 rows
    const int wanted = env.option("results") ? std::stoi(*env.option("results")) : 6;
    if (env.emulated())
        env.emulator().knobs().sse.result_interval = 40ms;

    co_await lens::with_session(client, env.lens(lens::emulator::builtin::activity_monitor),
                                [&](const lens::session_record& record) -> lens::task<void> {
        lens::event_stream events = client.events(record.session_id);
        co_await events.connect();
        lens::session channel = co_await client.open_session(record);

        shared_state state;
        co_await (consume(events, state) && control(channel, events, file.file_id, wanted, state));
        std::cout << state.results << " results, last " << state.last_label << '\n';
        example::expect(state.results >= wanted, "the consumer saw what the control loop waited for");
    });
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, control_loop_and_events);
}
