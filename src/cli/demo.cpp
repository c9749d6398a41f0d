// lens demo: everything the library does, against an in-process emulator.
#include "cli/demo.hpp"
#include "cli/run.hpp"

#include <lens/client.hpp>
#include <lens/emulator.hpp>
#include <lens/event_stream.hpp>
#include <lens/session.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/json/serialize.hpp>

#include <iostream>

namespace lens::cli {

namespace json = boost::json;

namespace {

void say(std::string_view what) { std::cout << "==> " << what << '\n' << std::flush; }
void show(const json::value& v) { std::cout << "    " << json::serialize(v) << '\n' << std::flush; }

/// Built outside the coroutine: g++ 12 rejects braced initializer lists in coroutine bodies.
json::object demo_reading()
{
    json::object o;
    o["sensor"] = "demo";
    o["value"] = 42;
    return o;
}

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

    say("subscribe to its events (GET lens/sessions/consumer/...), then set the CSV as input over the WebSocket");
    auto events = c.events(session.session_id); // shares the client's endpoint
    co_await events.connect(); // attach before input_stream.set, as the API advises
    auto channel = co_await c.open_session(session);
    show(co_await channel.set_input_stream(lens::csv_stream(file.file_id)));
    int results = 0;
    while (results < 3) {
        auto ev = co_await events.next();
        if (!ev)
            break;
        show(json::object{{"id", ev->id}, {"type", ev->type}});
        if (ev->type == "inference.result")
            ++results;
    }
    events.close();
    channel.close();

    say("destroy the session (POST lens/sessions/destroy)");
    auto gone = co_await c.destroy_session(session.session_id);
    show(json::object{{"session_id", gone.session_id}, {"status", to_string(gone.status)},
                      {"status_raw", gone.status_raw}});

    say("a query lens session: model.query over the WebSocket (image QA, then bounding boxes)");
    auto qs = co_await c.create_session(std::string(lens::emulator::builtin::query));
    {
        auto s = co_await c.open_session(qs);
        auto question = lens::query_request::image_qa("What is in the picture?", "\x89PNG demo image bytes");
        auto boxes = lens::query_request::bbox("Input: [person,car]", "\x89PNG demo image bytes");
        auto answer = co_await s.query(question);
        show(answer);
        show(co_await s.query(boxes));
        co_await s.destroy();
    }

    say("a mailbox lens session: push data with session.update, drain it with session.read");
    auto ms = co_await c.create_session(std::string(lens::emulator::builtin::mailbox));
    {
        auto s = co_await c.open_session(ms);
        const json::value reading = demo_reading();
        co_await s.update(reading);
        auto mail = co_await s.read();
        show(mail.raw());
        co_await s.destroy();
    }
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
