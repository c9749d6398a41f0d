// rtsp_input — point a session at a live RTSP camera and watch what it sees.
//
// Shows: lens::rtsp_stream with a target image size and frame rate (`input_stream.set`
// with `rtsp_video_streamer`), reading a bounded number of results from a stream that
// never ends by itself, and a reply with `is_valid: false` surfacing as errc::api_error
// (an RTSP stream without a URL).
//
// Run:  build/bin/example_rtsp_input   (in-process emulator: a simulated camera)
//       ARCHETYPE_API_KEY=... build/bin/example_rtsp_input --real --lens lns-... --rtsp rtsp://camera.local/stream [--results N]
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/event_stream.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <iostream>

lens::task<void> rtsp_input(example::environment& env)
{
    lens::client client = env.make_client();
    const std::string url = env.option_or("rtsp", "rtsp://127.0.0.1:8554/loading-dock");
    const int wanted = env.option("results") ? std::stoi(*env.option("results")) : 5;

    co_await lens::with_session(client, env.lens(lens::emulator::builtin::activity_monitor),
                                [&](const lens::session_record& record) -> lens::task<void> {
        lens::event_stream events = client.events(record.session_id);
        co_await events.connect();
        lens::session channel = co_await client.open_session(record);

        // A stream config the server rejects is an error naming the event and the reason.
        try {
            co_await channel.set_input_stream(lens::rtsp_stream(""));
            example::expect(false, "an RTSP stream without a URL is refused");
        } catch (const lens::error& e) {
            std::cout << "refused: " << e.what() << '\n';
            example::expect(e.code() == lens::errc::api_error, "errc::api_error for is_valid: false");
        }

        lens::rtsp_stream camera(url);
        camera.height = 480;
        camera.width = 640;
        camera.frame_rate_hz = 2.0;
        co_await channel.set_input_stream(camera);
        std::cout << "watching " << url << " at 640x480, 2 frames/s\n";

        // A camera never ends: take what we need, then leave (the session is destroyed).
        int results = 0;
        while (results < wanted) {
            auto ev = co_await events.next();
            if (!ev)
                break;
            if (auto* r = ev->get_if<lens::inference_result>()) {
                ++results;
                std::cout << "[" << ev->id << "] " << (r->texts().empty() ? "(no text)" : r->texts().front()) << '\n';
            }
        }
        example::expect(results == wanted, "results from the camera");
    });
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, rtsp_input);
}
