// lens demo: everything the library does, against an in-process emulator.
#include "cli/demo.hpp"
#include "cli/run.hpp"

#include <lens/client.hpp>
#include <lens/emulator.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/json/serialize.hpp>

#include <iostream>

namespace lens::cli {

namespace json = boost::json;

namespace {

void say(std::string_view what) { std::cout << "==> " << what << '\n' << std::flush; }
void show(const json::value& v) { std::cout << "    " << json::serialize(v) << '\n' << std::flush; }

task<void> walk_through(lens::client& c)
{
    say("lenses available on the emulator (GET lens/metadata)");
    for (auto& l : co_await c.list_lenses())
        show(json::object{{"lens_id", l.lens_id}, {"lens_name", l.lens_name}});

    say("create a session of the activity monitor lens (POST lens/sessions/create)");
    auto session = co_await c.create_session(std::string(lens::emulator::builtin::activity_monitor));
    show(json::value_from(session));

    say("its metadata (GET lens/sessions/metadata?session_id=...) — status normalised, api_key removed");
    auto meta = co_await c.get_session(session.session_id);
    show(json::object{{"session_id", meta.session_id},
                      {"status", to_string(meta.status)},
                      {"status_raw", meta.status_raw},
                      {"has_api_key", meta.raw.contains("api_key")}});

    say("upload a CSV (POST files, multipart)");
    std::string csv = "timestamp,a,b\n";
    for (int i = 0; i < 40; ++i)
        csv += std::to_string(i) + "," + std::to_string(i % 7) + "," + std::to_string(i % 3) + "\n";
    auto file = co_await c.upload_file("demo_sensor.csv", csv);
    show(json::value_from(file));

    say("destroy the session (POST lens/sessions/destroy)");
    auto gone = co_await c.destroy_session(session.session_id);
    show(json::object{{"session_id", gone.session_id}, {"status", to_string(gone.status)},
                      {"status_raw", gone.status_raw}});
}

} // namespace

int run_demo(const globals& g, bool tls)
{
    boost::asio::io_context ctx;
    lens::emulator::options opts;
    opts.tls = tls;
    lens::emulator::server emulator(ctx.get_executor(), opts);
    emulator.start();
    say("emulator listening at " + emulator.endpoint());

    auto cfg = g.make_config();
    cfg.endpoint = emulator.endpoint();
    cfg.api_key = emulator.api_key();
    if (tls)
        cfg.ca_file = emulator.ca_file();
    lens::client c(ctx.get_executor(), cfg);
    run_blocking(ctx, [&]() -> task<void> {
        co_await walk_through(c);
        emulator.stop();
    }());
    say("done");
    return 0;
}

} // namespace lens::cli
