// custom_lens — register your own lens, run a session of it, and leave nothing behind:
// the official SDK's main pattern (its lens_sensor_logs example), as a user would write it.
//
// Shows: a lens configuration in the SDK's JSON form (`lens_name`, `lens_config` with
// `model_parameters`, `model_pipeline`, `output_streams: [{stream_type:
// server_sent_events_writer}]`, no input stream), registered with lens::with_lens; a
// session of it with lens::with_session; session.validate; client.events connected
// before the first reading; session.update feeding sensor readings while a second
// coroutine consumes the typed lens::inference_result events (joined with `&&`);
// session.modify of the focus through session.call, then session.get to show it, and the
// next result using it. When the scopes end, the session is destroyed and then the lens
// deleted — also on an exception or the watchdog's cancellation — and get_lens on the old
// id answers errc::not_found.
//
// Options:
//   --config FILE   the lens configuration, a JSON file `{"lens_name": ..., "lens_config": {...}}`
//                   (default: the sensor-logs configuration below)
//   --readings N    sensor readings to send before the focus changes (default 10)
//   --results N     results to wait for (default: one per reading under the emulator, which
//                   answers every update; 1 against the real API, whose lens buffers readings)
//
// Run:  build/bin/example_custom_lens   (in-process emulator)
//       build/bin/example_custom_lens --config my_lens.json
//       ARCHETYPE_API_KEY=... build/bin/example_custom_lens --real [--config my_lens.json]
// Against the real API this registers (and then deletes) a lens in your organisation.
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/event_stream.hpp>
#include <lens/events.hpp>
#include <lens/scoped_lens.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

namespace {

namespace json = boost::json;
using namespace boost::asio::experimental::awaitable_operators;

/// The SDK's sensor-logs lens: no input stream (readings arrive with session.update),
/// results on the SSE consumer. Built outside the coroutine (g++ 12 and initializer lists).
json::object default_configuration()
{
    return json::parse(R"json({
        "lens_name": "pump sensor logs (lens-cpp example)",
        "lens_config": {
            "model_parameters": {
                "model_version": "Newton::c2_4_7b_251215a172f6d7",
                "instruction": "Describe the pump's state from its sensor logs.",
                "focus": "vibration spikes",
                "max_new_tokens": 256,
                "sensor_buffer_size": 5,
                "input_buffer_step_size": 5
            },
            "model_pipeline": [{"processor_name": "lens_sensor_logs_processor"}],
            "output_streams": [{"stream_type": "server_sent_events_writer"}]
        }
    })json").as_object();
}

/// `--config FILE`: the same shape, read from a JSON file. A file that is not such a
/// configuration is a usage error (exit status 2), not a failed expectation.
json::object load_configuration(const std::string& path)
{
    using usage_error = example::environment::usage_error;
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw usage_error("--config: cannot open " + path);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    boost::system::error_code ec;
    json::value parsed = json::parse(text, ec);
    if (ec)
        throw usage_error("--config: " + path + " is not JSON: " + ec.message());
    const json::object* o = parsed.if_object();
    if (!o || !o->contains("lens_name") || !o->at("lens_name").is_string() || !o->contains("lens_config") ||
        !o->at("lens_config").is_object())
        throw usage_error("--config: " + path + " needs a string \"lens_name\" and an object \"lens_config\"");
    return *o;
}

/// One line of the pump's sensor log.
json::value reading(int n)
{
    json::object o;
    o["sensor_id"] = "pump-7";
    o["timestamp"] = 1700000000 + n;
    o["vibration_mm_s"] = std::round(20 * (1 + std::sin(n))) / 10.0;
    o["temperature_c"] = 40 + n % 3;
    return o;
}

/// `{"focus": f}`: the parameters session.modify changes.
json::object focus(const std::string& f)
{
    json::object o;
    o["focus"] = f;
    return o;
}

/// `reply.event_data.focus` as text, or "(none)".
std::string focus_of(const json::value& reply)
{
    const auto* data = reply.as_object().if_contains("event_data");
    if (!data || !data->is_object())
        return "(none)";
    const auto* f = data->as_object().if_contains("focus");
    return f && f->is_string() ? std::string(f->as_string()) : "(none)";
}

int int_option(const example::environment& env, std::string_view name, int fallback)
{
    auto v = env.option(name);
    if (!v)
        return fallback;
    try {
        return std::stoi(*v);
    } catch (const std::exception&) {
        throw example::environment::usage_error("--" + std::string(name) + " takes a number");
    }
}

/// What the consumer saw.
struct tally {
    int results = 0;
    int with_focus = 0; ///< results whose text starts with "FOCUS: " (the emulator's form)
};

/// Reads lens events until `wanted` inference results arrived (or the stream ended),
/// printing each; counts the results that name `expected_focus`.
lens::task<void> consume(lens::event_stream& events, int wanted, const std::string& expected_focus, tally& seen)
{
    while (seen.results < wanted) {
        std::optional<lens::session_event> ev = co_await events.next();
        if (!ev)
            break; // sse.stream.end: the server closed the stream for good
        if (auto* r = ev->get_if<lens::inference_result>()) {
            ++seen.results;
            const auto& texts = r->texts();
            std::string text = texts.empty() ? "(no text)" : texts.front();
            if (texts.empty()) { // a response of another shape: show it as JSON
                const json::value data = ev->event_data();
                if (const auto* response = data.is_object() ? data.get_object().if_contains("response") : nullptr)
                    text = json::serialize(*response);
            }
            std::cout << "  result " << ev->id << ": " << text << '\n';
            if (text.starts_with(expected_focus + ": "))
                ++seen.with_focus;
        } else if (auto* log = ev->get_if<lens::log_message>()) {
            std::cout << "  log." << log->level << ": " << log->message << '\n';
        } else if (auto* failure = ev->get_if<lens::inference_error>()) {
            for (const auto& m : failure->error_messages)
                std::cout << "  inference.error: " << m << '\n';
        } else if (ev->kind() == lens::event_kind::unknown) {
            std::cout << "  " << ev->type << '\n'; // e.g. session.modify.result
        }
    }
}

/// Sends `count` readings starting at `first`, one after the other (updates are not
/// idempotent: lens never resends one after a connection loss).
lens::task<void> feed(lens::session& channel, int first, int count)
{
    for (int n = first; n < first + count; ++n) {
        json::value ack = co_await channel.update(reading(n));
        if (n == 0)
            std::cout << "  first reading acknowledged: " << json::serialize(ack) << '\n';
    }
    std::cout << "  " << count << " reading(s) sent\n";
}

} // namespace

lens::task<void> custom_lens(example::environment& env)
{
    lens::client client = env.make_client();

    json::object configuration;
    if (auto path = env.option("config"))
        configuration = load_configuration(*path);
    else
        configuration = default_configuration();
    const std::string lens_name(configuration.at("lens_name").as_string());
    json::object lens_config = configuration.at("lens_config").as_object();

    const int readings = int_option(env, "readings", 10);
    const int wanted = int_option(env, "results", env.emulated() ? readings : 1);
    example::expect(readings > 0 && wanted >= 0, "--readings above 0 and --results not negative");

    // with_lens deletes the lens and with_session destroys the session on every exit path;
    // the body returns the lens id so that we can check afterwards that it is gone.
    const std::string lens_id = co_await lens::with_lens(client, lens_name, std::move(lens_config),
                                                         [&](const lens::lens_record& l) -> lens::task<std::string> {
        std::cout << "registered " << l.lens_id << " (" << l.lens_name << ")\n";
        co_await lens::with_session(client, l.lens_id, [&](const lens::session_record& record) -> lens::task<void> {
            std::cout << "session " << record.session_id << '\n';
            lens::session channel = co_await client.open_session(record);

            lens::validation check = co_await channel.validate();
            for (const auto& m : check.error_messages)
                std::cout << "validate: " << m << '\n';
            example::expect(check.is_valid, "session.validate accepts the lens configuration");

            // session.get: the model parameters the session started with.
            json::value params = co_await channel.call("session.get", json::object());
            const std::string initial_focus = focus_of(params);
            std::cout << "focus: " << initial_focus << '\n';

            // Subscribe before the first reading, so that no result is missed.
            lens::event_stream events = client.events(record.session_id);
            co_await events.connect();

            // Feed and consume at once: two coroutines on this one thread.
            std::cout << "feeding " << readings << " reading(s), waiting for " << wanted << " result(s)\n";
            tally before;
            co_await (feed(channel, 0, readings) && consume(events, wanted, initial_focus, before));
            std::cout << before.results << " result(s)\n";
            example::expect(before.results == wanted, "a result for every reading");
            if (env.emulated())
                example::expect(before.with_focus == wanted, "the results follow the lens's focus");

            // session.modify: change the session's focus (the lens itself keeps its own).
            const std::string new_focus = "bearing wear";
            json::value modified = co_await channel.call("session.modify", focus(new_focus));
            std::cout << "session.modify: " << json::serialize(modified.at("event_data")) << '\n';
            json::value now = co_await channel.call("session.get", json::object());
            std::cout << "focus now: " << focus_of(now) << '\n';
            example::expect(focus_of(now) == new_focus, "session.get shows the modified focus");

            // The next results use it.
            if (wanted > 0) {
                tally after;
                co_await (feed(channel, readings, env.emulated() ? 1 : readings) &&
                          consume(events, 1, new_focus, after));
                example::expect(after.results == 1, "a result after the modification");
                if (env.emulated())
                    example::expect(after.with_focus == 1, "the result after session.modify uses the new focus");
            }

            lens::session_record status = co_await client.get_session(record.session_id);
            std::cout << "the session counted " << status.num_updates << " update(s), " << status.num_outputs
                      << " output(s)\n";
        });
        std::cout << "session destroyed\n";
        co_return l.lens_id;
    });
    std::cout << "lens deleted\n";

    // After the scopes: the lens is gone.
    bool gone = false;
    try {
        co_await client.get_lens(lens_id);
    } catch (const lens::error& e) {
        gone = e.code() == lens::make_error_code(lens::errc::not_found);
        std::cout << "get_lens " << lens_id << ": " << e.code().message() << '\n';
    }
    if (env.emulated()) {
        example::expect(gone, "get_lens of the deleted lens answers errc::not_found");
        example::expect(env.emulator().statistics().live_sessions == 0, "no session left on the emulator");
    }
}

int main(int argc, char** argv)
{
    // The real lens may take its time over a buffer of readings: a longer watchdog there.
    bool real = false;
    for (int i = 1; i < argc; ++i)
        real = real || std::strcmp(argv[i], "--real") == 0;
    return example::run(argc, argv, custom_lens, std::chrono::seconds(real ? 180 : 30));
}
