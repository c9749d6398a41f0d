// video_input — upload a video, make it a session's input, follow frames and results.
//
// Shows: uploading an .mp4 (from disk or from memory), lens::video_stream(file_id),
// and the events a video lens sends on SSE: `frame.processed` (lens::frame_processed,
// with frame_index and timestamp) and `inference.result` (lens::inference_result whose
// texts() are the descriptions).
//
// Run:  build/bin/example_video_input   (in-process emulator, stand-in video bytes)
//       ARCHETYPE_API_KEY=... build/bin/example_video_input --real --lens lns-... --file clip.mp4 [--results N]
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/event_stream.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <iostream>

lens::task<void> video_input(example::environment& env)
{
    lens::client client = env.make_client();

    lens::file_record file;
    if (auto path = env.option("file"))
        file = co_await client.upload_file(std::filesystem::path(*path));
    else if (env.emulated())
        file = co_await client.upload_file("conveyor.mp4", std::string(3 * 4096, '\x42')); // 3 emulated frames
    else
        throw example::environment::usage_error("--file PATH.mp4 is required with --real");
    std::cout << "uploaded " << file.file_id << '\n';
    const int wanted = env.option("results") ? std::stoi(*env.option("results")) : 3;

    co_await lens::with_session(client, env.lens(lens::emulator::builtin::activity_monitor),
                                [&](const lens::session_record& record) -> lens::task<void> {
        lens::event_stream events = client.events(record.session_id);
        co_await events.connect();
        lens::session channel = co_await client.open_session(record);
        co_await channel.set_input_stream(lens::video_stream(file.file_id));

        int frames = 0, results = 0;
        while (results < wanted) {
            auto ev = co_await events.next();
            if (!ev)
                break;
            if (auto* f = ev->get_if<lens::frame_processed>()) {
                ++frames;
                std::cout << "frame " << f->frame_index.value_or(0) << " at " << f->timestamp.value_or(0) << " s\n";
            } else if (auto* r = ev->get_if<lens::inference_result>()) {
                ++results;
                for (const auto& text : r->texts())
                    std::cout << "  " << text << '\n';
            }
        }
        std::cout << frames << " frames, " << results << " results\n";
        example::expect(results == wanted, "a description for each frame");
        if (env.emulated())
            example::expect(frames == results, "the emulator reports each frame before its result");
    });
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, video_input);
}
