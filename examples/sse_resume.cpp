// sse_resume — consume a session's SSE stream without losing or repeating an event.
//
// Shows: lens::event_stream as an async generator (`while (auto ev = co_await s.next())`),
// automatic resumption: when the connection drops, lens reconnects on a backoff schedule
// and sends `Last-Event-ID`, so every event arrives once (an event cut in half is
// discarded and resent); and resuming by hand across restarts: save last_event_id(),
// and give it back in event_stream_options::last_event_id later.
// Under the emulator the connection is cut every 3 events (a fault knob) to show it.
//
// Run:  build/bin/example_sse_resume   (in-process emulator, a flaky network)
//       ARCHETYPE_API_KEY=... build/bin/example_sse_resume --real --lens lns-... --file readings.csv --events N
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/event_stream.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <iostream>
#include <set>

using namespace std::chrono_literals;

namespace {

std::string sensor_csv(int rows)
{
    std::string csv = "timestamp,value\n";
    for (int i = 0; i < rows; ++i)
        csv += std::to_string(i) + "," + std::to_string(i * i % 17) + "\n";
    return csv;
}

lens::event_stream_options quick_resume(std::string last_event_id)
{
    lens::event_stream_options o;
    o.last_event_id = std::move(last_event_id); // empty: from the start
    o.reconnect.initial = 20ms;                 // the first retry soon, then doubling up to
    o.reconnect.max = 500ms;                    // half a second
    return o;
}

bool is_lens_event(const lens::session_event& ev) { return !ev.type.starts_with("sse.stream."); }

} // namespace

lens::task<void> sse_resume(example::environment& env)
{
    lens::client client = env.make_client();
    if (env.emulated()) {
        env.emulator().knobs().sse.csv_window_rows = 1;  // one result per row: 12 results
        env.emulator().knobs().sse.result_interval = 5ms;
        env.emulator().knobs().sse.cut_after_events = 3; // drop every connection after 3 events
    }
    lens::file_record file;
    if (auto path = env.option("file")) // g++ 12: no co_await in both arms of ?:
        file = co_await client.upload_file(std::filesystem::path(*path));
    else
        file = co_await client.upload_file("resume.csv", sensor_csv(12));
    const std::size_t total = std::stoul(env.option_or("events", "13")); // the emulator: a log line + 12 results

    co_await lens::with_session(client, env.lens(lens::emulator::builtin::activity_monitor),
                                [&](const lens::session_record& record) -> lens::task<void> {
        std::set<std::string> seen;
        std::string saved;

        // First run: read half of the events, then stop (a program that exits).
        {
            lens::event_stream stream = client.events(record.session_id, quick_resume(""));
            co_await stream.connect();
            lens::session channel = co_await client.open_session(record);
            co_await channel.set_input_stream(lens::csv_stream(file.file_id));
            while (seen.size() < total / 2) {
                auto ev = co_await stream.next();
                if (!ev)
                    break;
                if (!is_lens_event(*ev))
                    continue;
                std::cout << "run 1: event " << ev->id << " " << ev->type << '\n';
                example::expect(seen.insert(ev->id).second, "no event twice");
            }
            saved = stream.last_event_id(); // what a program would persist
            const auto st = stream.statistics();
            std::cout << "run 1 stops after event " << saved << " (" << st.reconnects << " automatic reconnects, "
                      << st.half_events_discarded << " half events discarded)\n";
            if (env.emulated())
                example::expect(st.reconnects >= 1, "the stream resumed by itself after a cut");
        }

        // Second run: resume after the saved id.
        lens::event_stream stream = client.events(record.session_id, quick_resume(saved));
        while (seen.size() < total) {
            auto ev = co_await stream.next();
            if (!ev)
                break;
            if (!is_lens_event(*ev))
                continue;
            std::cout << "run 2: event " << ev->id << " " << ev->type << '\n';
            example::expect(seen.insert(ev->id).second, "no event twice, across the restart too");
        }
        std::cout << seen.size() << " events, each once; run 2 reconnected " << stream.statistics().reconnects
                  << " time(s)\n";
        example::expect(seen.size() == total, "every event arrived");
        if (env.emulated())
            for (std::size_t i = 1; i <= total; ++i)
                example::expect(seen.count(std::to_string(i)) == 1, "ids 1..N without a gap");
    });
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, sse_resume);
}
