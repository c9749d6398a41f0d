// csv_input — upload a CSV file, make it a session's input, read the results on SSE.
//
// Shows: client.upload_file (multipart POST files; `file_id` is what stream configs
// take), client.events(session_id) connected BEFORE `input_stream.set` (so no result
// is missed), session.set_input_stream(lens::csv_stream(file_id)), and the typed SSE
// events: lens::inference_result with label() and score(), log messages, heartbeats.
//
// Run:  build/bin/example_csv_input   (in-process emulator, a generated CSV)
//       ARCHETYPE_API_KEY=... build/bin/example_csv_input --real --lens lns-... --file readings.csv [--results N]
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/event_stream.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <iostream>

namespace {

/// A small accelerometer log: a header line and `rows` readings.
std::string vibration_csv(int rows)
{
    std::string csv = "timestamp,x,y,z\n";
    for (int i = 0; i < rows; ++i)
        csv += std::to_string(i * 10) + "," + std::to_string(i % 7) + "," + std::to_string((i * 3) % 5) + ",9.8\n";
    return csv;
}

} // namespace

lens::task<void> csv_input(example::environment& env)
{
    lens::client client = env.make_client();

    lens::file_record file;
    if (auto path = env.option("file"))
        file = co_await client.upload_file(std::filesystem::path(*path));
    else if (env.emulated())
        file = co_await client.upload_file("vibration.csv", vibration_csv(40)); // 4 windows of 10 rows
    else
        throw example::environment::usage_error("--file PATH.csv is required with --real");
    std::cout << "uploaded " << file.file_id << '\n';

    // The emulator's activity monitor reports one result per 10 rows.
    const int wanted = env.option("results") ? std::stoi(*env.option("results")) : env.emulated() ? 4 : 3;

    co_await lens::with_session(client, env.lens(lens::emulator::builtin::activity_monitor),
                                [&](const lens::session_record& record) -> lens::task<void> {
        lens::event_stream events = client.events(record.session_id);
        co_await events.connect(); // subscribe first, then start the input
        lens::session channel = co_await client.open_session(record);
        co_await channel.set_input_stream(lens::csv_stream(file.file_id));

        int results = 0;
        while (results < wanted) {
            std::optional<lens::session_event> ev = co_await events.next();
            if (!ev)
                break; // sse.stream.end: the server closed the stream for good
            if (auto* r = ev->get_if<lens::inference_result>()) {
                ++results;
                const std::string label = r->label().value_or("?");
                std::cout << "result " << ev->id << ": " << label;
                if (auto score = r->score(label))
                    std::cout << " (" << *score << ")";
                std::cout << '\n';
            } else if (auto* log = ev->get_if<lens::log_message>()) {
                std::cout << "log." << log->level << ": " << log->message << '\n';
            } else if (auto* failure = ev->get_if<lens::inference_error>()) {
                for (const auto& m : failure->error_messages)
                    std::cout << "inference.error: " << m << '\n';
            }
        }
        example::expect(results == wanted, "a result for every window of the CSV");
    });
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, csv_input);
}
