// Custom lenses, end to end through the lens client API, as the official SDK's examples use
// them (docs/protocol.md §6): register a lens from a configuration, create a session,
// validate, read its SSE results (or feed it with session.update), session.get and
// session.modify, destroy, delete. And `lens::with_lens` / `lens::scoped_lens`, which
// delete the lens on every exit path, composed with `lens::with_session`.
#include "integration/fixture.hpp"

#include "emulator/sse_feed.hpp"

#include <lens/event_stream.hpp>
#include <lens/events.hpp>
#include <lens/input_stream.hpp>
#include <lens/scoped_lens.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace emu = lens::emulator;
using lens::task;
using lens::test::contains;
using lens::test::fixture;
using namespace std::chrono_literals;

// ---- configurations in the style of the SDK's examples (built outside coroutines: g++ 12)

/// lens_sensor_logs: no input stream, fed with session.update, results on SSE.
json::object sensor_logs_config()
{
    return json::parse(R"({
        "model_parameters": {
            "model_version": "Newton::c2_4_7b_251215a172f6d7",
            "instruction": "Describe the machine's state from its sensor logs.",
            "focus": "temperature spikes",
            "max_new_tokens": 256,
            "sensor_buffer_size": 5,
            "input_buffer_step_size": 5
        },
        "model_pipeline": [{"processor_name": "lens_sensor_logs_processor"}],
        "output_streams": [{"stream_type": "server_sent_events_writer"}]
    })").as_object();
}

/// A time-series lens reading an uploaded CSV file, started with the session.
json::object csv_config(const std::string& file_id)
{
    json::object c = json::parse(R"({
        "model_parameters": {"model_version": "Newton::c2_4_7b_251215a172f6d7", "focus": "machine health"},
        "model_pipeline": [{"processor_name": "lens_timeseries_state_processor"}],
        "input_streams": [{"stream_type": "csv_file_reader", "stream_config": {"file_id": ""}}],
        "output_streams": [{"stream_type": "server_sent_events_writer"}]
    })").as_object();
    c["input_streams"].as_array()[0].as_object()["stream_config"].as_object()["file_id"] = file_id;
    return c;
}

/// lens_rtsp_camera: a camera lens reading an RTSP stream (`rtsp_url` may be empty: invalid).
json::object rtsp_config(const std::string& url)
{
    json::object c = json::parse(R"({
        "model_parameters": {"model_version": "Newton::c2_4_7b_251215a172f6d7",
                             "instruction": "Describe what the camera sees.", "temporal_focus": 5},
        "model_pipeline": [{"processor_name": "lens_camera_processor"}],
        "input_streams": [{"stream_type": "rtsp_video_reader",
                           "stream_config": {"rtsp_url": "", "target_image_size": [360, 640],
                                             "target_frame_rate_hz": 0.2}}],
        "output_streams": [{"stream_type": "server_sent_events_writer"}]
    })").as_object();
    c["input_streams"].as_array()[0].as_object()["stream_config"].as_object()["rtsp_url"] = url;
    return c;
}

/// A pipeline the emulator does not know.
json::object unknown_processor_config()
{
    return json::parse(R"({
        "model_parameters": {"model_version": "Newton::c2_4_7b_251215a172f6d7"},
        "model_pipeline": [{"processor_name": "lens_quantum_flux_processor"}],
        "output_streams": [{"stream_type": "server_sent_events_writer"}]
    })").as_object();
}

json::value reading(int n)
{
    json::object o;
    o["timestamp"] = 1000 + n;
    o["temperature"] = 20.5 + n;
    o["sensor"] = "bearing-" + std::to_string(n % 3);
    return o;
}

json::object focus(std::string_view f)
{
    json::object o;
    o["focus"] = f;
    return o;
}

std::string csv_rows(int rows)
{
    std::string csv = "timestamp,a1,a2\n";
    for (int i = 0; i < rows; ++i)
        csv += std::to_string(1000 + i) + "," + std::to_string(i % 7) + ".5," + std::to_string(i * 3 % 11) + "\n";
    return csv;
}

bool is_envelope(const lens::session_event& e) { return e.type.starts_with("sse.stream."); }

/// The next `n` lens events (envelope events skipped); fails the test when they do not all
/// arrive within `limit`.
task<std::vector<lens::session_event>> lens_events(lens::event_stream& events, std::size_t n,
                                                   std::chrono::milliseconds limit)
{
    using namespace asio::experimental::awaitable_operators;
    std::vector<lens::session_event> out;
    asio::steady_timer deadline(co_await asio::this_coro::executor, limit);
    while (out.size() < n) {
        auto got = co_await (events.next() || deadline.async_wait(asio::use_awaitable));
        if (got.index() == 1) {
            FAIL("only " << out.size() << " of " << n << " lens events arrived in time");
            break;
        }
        auto& ev = std::get<0>(got);
        if (!ev) {
            FAIL("the stream ended after " << out.size() << " of " << n << " lens events");
            break;
        }
        if (!is_envelope(*ev))
            out.push_back(std::move(*ev));
    }
    co_return out;
}
/// \overload with 5 s.
task<std::vector<lens::session_event>> lens_events(lens::event_stream& events, std::size_t n)
{
    return lens_events(events, n, 5000ms);
}

/// True when the lens no longer exists: get_lens is not_found and list_lenses omits it.
task<bool> lens_gone(lens::client& c, const std::string& id)
{
    bool not_found = false;
    try {
        co_await c.get_lens(id);
    } catch (const lens::error& e) {
        not_found = e.code() == lens::make_error_code(lens::errc::not_found);
    }
    auto all = co_await c.list_lenses();
    const bool listed = std::any_of(all.begin(), all.end(), [&](const lens::lens_record& l) { return l.lens_id == id; });
    co_return not_found && !listed;
}

lens::emulator::options fast_results()
{
    auto o = lens::test::emulator_options();
    o.sse.result_interval = 1ms;
    return o;
}

} // namespace

TEST_CASE("custom lens: a registered csv lens starts its input stream and writes results to SSE")
{
    fixture f(fast_results());
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        const std::string csv = csv_rows(25);
        auto file = co_await c.upload_file("vibration.csv", csv);
        auto lens = co_await c.register_lens("csv health", csv_config(file.file_id));
        CHECK(lens.lens_id.starts_with("lns-"));
        CHECK(lens.lens_name == "csv health");

        auto record = co_await c.create_session(lens.lens_id);
        auto channel = co_await c.open_session(record);
        auto check = co_await channel.validate();
        CHECK(check.is_valid);
        CHECK(check.error_messages.empty());

        // The configured stream started with the session: the activity monitor's events.
        const auto expected = emu::detail::activity_monitor_csv_events(file.file_id, csv, 10);
        REQUIRE(expected.size() == 4); // log.info + 3 windows
        auto events = c.events(record.session_id);
        auto got = co_await lens_events(events, expected.size());
        REQUIRE(got.size() == expected.size());
        for (std::size_t i = 0; i < got.size(); ++i)
            CHECK(got[i].raw() == json::value(expected[i]));
        CHECK(got[0].kind() == lens::event_kind::log);
        const auto* result = got[1].get_if<lens::inference_result>();
        REQUIRE(result);
        CHECK((result->label() == "HEALTHY" || result->label() == "BROKEN"));
        CHECK(got[1].event_data().at("query_metadata").at("stream_type") == "csv_file_reader");

        auto status = co_await c.get_session(record.session_id);
        CHECK(status.num_inputs == 1);

        // The SDK's ending: destroy the session, delete the lens.
        co_await c.destroy_session(record.session_id);
        auto end = co_await events.next();
        while (end && end->kind() != lens::event_kind::stream_end)
            end = co_await events.next();
        CHECK(end.has_value());
        co_await c.delete_lens(lens.lens_id);
        CHECK(co_await lens_gone(c, lens.lens_id));
    });
}

TEST_CASE("custom lens: a sensor logs lens without input stream is fed with session.update")
{
    fixture f(fast_results());
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        co_await lens::with_lens(c, "sensor logs", sensor_logs_config(), [&](const lens::lens_record& l) {
            return lens::with_session(c, l.lens_id, [&](const lens::session_record& s) -> task<void> {
                auto channel = co_await c.open_session(s);
                CHECK((co_await channel.validate()).is_valid);
                auto events = c.events(s.session_id);
                co_await events.connect();

                // Ten readings, as the SDK's example sends, then ten results on SSE.
                for (int n = 0; n < 10; ++n) {
                    auto ack = co_await channel.update(reading(n));
                    CHECK(ack.at("event_data").at("is_valid") == true);
                }
                auto results = co_await lens_events(events, 10);
                REQUIRE(results.size() == 10);
                for (int n = 0; n < 10; ++n) {
                    CHECK(results[n].raw() ==
                          json::value(emu::detail::sensor_update_event(n, reading(n), "temperature spikes")));
                    const auto* r = results[n].get_if<lens::inference_result>();
                    REQUIRE(r);
                    REQUIRE(r->texts().size() == 1);
                    CHECK(r->texts()[0].starts_with("temperature spikes: "));
                    CHECK(results[n].event_data().at("query_metadata").at("data") == reading(n));
                }

                // session.get answers the model parameters; session.modify changes them.
                auto got = co_await channel.call("session.get", json::object());
                CHECK(got.at("type") == "session.get.response");
                CHECK(got.at("event_data").at("focus") == "temperature spikes");
                CHECK(got.at("event_data").at("sensor_buffer_size") == 5);
                auto modified = co_await channel.call("session.modify", focus("trucks"));
                CHECK(modified.at("type") == "session.modify.response");
                CHECK(modified.at("event_data").at("is_valid") == true);
                CHECK(modified.at("event_data").at("model_parameters").at("focus") == "trucks");
                auto again = co_await channel.call("session.get", json::object());
                CHECK(again.at("event_data").at("focus") == "trucks");
                CHECK(again.at("event_data").at("instruction") ==
                      "Describe the machine's state from its sensor logs.");

                // The stream reports the modification, and later results use the new focus.
                co_await channel.update(reading(10));
                auto after = co_await lens_events(events, 2);
                REQUIRE(after.size() == 2);
                CHECK(after[0].type == "session.modify.result");
                CHECK(after[0].raw().at("event_data").at("model_parameters").at("focus") == "trucks");
                const auto* r = after[1].get_if<lens::inference_result>();
                REQUIRE(r);
                CHECK(r->texts().at(0).starts_with("trucks: "));

                // Over REST (the SDK's lens_sensor_logs_rest): the same replies.
                auto rest_get = co_await c.process_event(s.session_id, "session.get", json::object());
                CHECK(rest_get.at("event_data").at("focus") == "trucks");
                auto rest_update = co_await c.process_event(s.session_id, "session.update", json::parse(R"({"type":"data.json","event_data":{"x":1}})"));
                CHECK(rest_update.at("event_data").at("is_valid") == true);
                auto via_rest = co_await lens_events(events, 1);
                REQUIRE(via_rest.size() == 1);
                CHECK(via_rest[0].raw().at("event_data").at("query_metadata").at("update_index") == 11);
                auto record = co_await c.get_session(s.session_id);
                CHECK(record.num_updates == 12);
                CHECK(record.num_outputs == 12);
            });
        });
        CHECK(f.stats().live_sessions == 0);
    });
}

TEST_CASE("custom lens: an rtsp camera lens gives frames - one without a URL is reported, not run")
{
    fixture f(fast_results());
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        const std::string url = "rtsp://127.0.0.1:8554/loading-dock";
        co_await lens::with_lens(c, "camera", rtsp_config(url), [&](const lens::lens_record& l) {
            return lens::with_session(c, l.lens_id, [&](const lens::session_record& s) -> task<void> {
                CHECK((co_await c.process_event(s.session_id, "session.validate", nullptr))
                          .at("event_data").at("is_valid") == true);
                auto events = c.events(s.session_id);
                auto got = co_await lens_events(events, 5);
                REQUIRE(got.size() == 5);
                CHECK(got[0].kind() == lens::event_kind::log);
                CHECK(got[1].kind() == lens::event_kind::frame_processed);
                CHECK(got[2].kind() == lens::event_kind::inference_result);
                CHECK(got[2].raw().at("event_data").at("query_metadata").at("file_id") == json::value(url));
            });
        });

        co_await lens::with_lens(c, "camera without url", rtsp_config(""), [&](const lens::lens_record& l) {
            return lens::with_session(c, l.lens_id, [&](const lens::session_record& s) -> task<void> {
                auto channel = co_await c.open_session(s);
                auto check = co_await channel.validate();
                CHECK_FALSE(check.is_valid);
                REQUIRE(check.error_messages.size() == 1);
                CHECK(contains(check.error_messages[0], "rtsp_url"));
                auto events = c.events(s.session_id);
                auto got = co_await lens_events(events, 1);
                REQUIRE(got.size() == 1);
                CHECK(got[0].kind() == lens::event_kind::inference_error);
                // Nothing else: the destroy ends the stream right after the error.
                co_await channel.destroy();
                auto rest = co_await events.next();
                while (rest && is_envelope(*rest) && rest->kind() != lens::event_kind::stream_end)
                    rest = co_await events.next();
                REQUIRE(rest.has_value());
                CHECK(rest->kind() == lens::event_kind::stream_end);
            });
        });
    });
}

TEST_CASE("custom lens: a clone keeps the behaviour of its configuration")
{
    fixture f(fast_results());
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        co_await lens::with_lens(c, "sensor logs", sensor_logs_config(), [&](const lens::lens_record& l) -> task<void> {
            lens::scoped_lens clone(c, co_await c.clone_lens(l.lens_id));
            CHECK(clone.id() != l.lens_id);
            co_await lens::with_session(c, clone.id(), [&](const lens::session_record& s) -> task<void> {
                auto channel = co_await c.open_session(s);
                co_await channel.update(reading(3));
                auto events = c.events(s.session_id);
                auto got = co_await lens_events(events, 1);
                REQUIRE(got.size() == 1);
                CHECK(got[0].raw() == json::value(emu::detail::sensor_update_event(0, reading(3), "temperature spikes")));
            });
            co_await clone.destroy();
            CHECK(co_await lens_gone(c, clone.id()));
        });

        // A clone of the built-in activity monitor is an activity monitor too.
        auto am = co_await c.clone_lens(std::string(emu::builtin::activity_monitor));
        lens::scoped_lens owned(c, am);
        const std::string csv = csv_rows(10);
        auto file = co_await c.upload_file("clone.csv", csv);
        co_await lens::with_session(c, owned.id(), [&](const lens::session_record& s) -> task<void> {
            auto channel = co_await c.open_session(s);
            CHECK((co_await channel.validate()).is_valid); // its declared stream types start nothing
            co_await channel.set_input_stream(lens::csv_stream(file.file_id));
            auto events = c.events(s.session_id);
            auto got = co_await lens_events(events, 2);
            const auto expected = emu::detail::activity_monitor_csv_events(file.file_id, csv, 10);
            REQUIRE(got.size() == 2);
            CHECK(got[0].raw() == json::value(expected[0]));
            CHECK(got[1].raw() == json::value(expected[1]));
        });
        co_await owned.destroy();
        CHECK(co_await lens_gone(c, am.lens_id));
    });
}

TEST_CASE("custom lens: an unknown processor is reported by validate and on the stream")
{
    fixture f(fast_results());
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        co_await lens::with_lens(c, "mystery", unknown_processor_config(), [&](const lens::lens_record& l) {
            return lens::with_session(c, l.lens_id, [&](const lens::session_record& s) -> task<void> {
                auto channel = co_await c.open_session(s);
                auto check = co_await channel.validate();
                CHECK_FALSE(check.is_valid);
                REQUIRE(check.error_messages.size() == 1);
                CHECK(contains(check.error_messages[0], "lens_quantum_flux_processor"));
                CHECK(contains(check.error_messages[0], "does not emulate"));

                // Accepted and acknowledged, but nothing is produced.
                auto ack = co_await channel.update(reading(1));
                CHECK(ack.at("event_data").at("is_valid") == true);
                auto events = c.events(s.session_id);
                auto got = co_await lens_events(events, 1);
                REQUIRE(got.size() == 1);
                const auto* warning = got[0].get_if<lens::log_message>();
                REQUIRE(warning);
                CHECK(warning->level == "warning");
                CHECK(contains(warning->message, "lens_quantum_flux_processor"));
                auto record = co_await c.get_session(s.session_id);
                CHECK(record.num_outputs == 0);

                // session.get and session.modify are answered all the same.
                auto got_params = co_await channel.call("session.get", json::object());
                CHECK(got_params.at("event_data").at("model_version") == "Newton::c2_4_7b_251215a172f6d7");
            });
        });
    });
}

TEST_CASE("custom lens: the built-in lenses answer session.get and session.modify")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        co_await lens::with_session(c, std::string(emu::builtin::mailbox), [&](const lens::session_record& s) -> task<void> {
            auto got = co_await c.process_event(s.session_id, "session.get", json::object());
            CHECK(got.at("event_data").at("model_version") == "Newton::emulator");
            auto bad = co_await c.process_event(s.session_id, "session.modify", json::value("not parameters"));
            CHECK(bad.at("event_data").at("is_valid") == false);
            // The wrapped form is understood too.
            auto wrapped = co_await c.process_event(s.session_id, "session.modify",
                                                    json::parse(R"({"model_parameters":{"focus":"boxes"}})"));
            CHECK(wrapped.at("event_data").at("model_parameters").at("focus") == "boxes");
            auto again = co_await c.process_event(s.session_id, "session.get", json::object());
            CHECK(again.at("event_data").at("focus") == "boxes");
        });
        // The lens itself is unchanged: a new session starts from its parameters.
        co_await lens::with_session(c, std::string(emu::builtin::mailbox), [&](const lens::session_record& s) -> task<void> {
            auto got = co_await c.process_event(s.session_id, "session.get", json::object());
            CHECK_FALSE(got.at("event_data").as_object().contains("focus"));
        });
    });
}

// ---- ownership ---------------------------------------------------------------------

TEST_CASE("scoped lens: with_lens deletes the lens after a normal return")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        std::string seen;
        int value = co_await lens::with_lens(c, "owned", sensor_logs_config(), [&](const lens::lens_record& l) -> task<int> {
            seen = l.lens_id;
            CHECK(l.lens_name == "owned");
            auto found = co_await c.get_lens(l.lens_id);
            CHECK(found.lens_id == l.lens_id);
            co_return 7;
        });
        CHECK(value == 7);
        REQUIRE(!seen.empty());
        CHECK(co_await lens_gone(c, seen));
    });
}

TEST_CASE("scoped lens: with_lens deletes the lens when the body throws, and rethrows")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        std::string seen;
        bool caught = false;
        try {
            co_await lens::with_lens(c, "owned", sensor_logs_config(), [&](const lens::lens_record& l) -> task<void> {
                seen = l.lens_id;
                throw std::runtime_error("body failed");
                co_return;
            });
        } catch (const std::runtime_error& e) {
            caught = std::string(e.what()) == "body failed";
        }
        CHECK(caught);
        REQUIRE(!seen.empty());
        CHECK(co_await lens_gone(c, seen));

        // Composed with with_session: a failure inside destroys the session, then deletes the lens.
        std::string lens_id, session_id;
        auto e = co_await lens::test::expect_error(lens::errc::not_found, [&] {
            return lens::with_lens(c, "owned", sensor_logs_config(), [&](const lens::lens_record& l) {
                lens_id = l.lens_id;
                return lens::with_session(c, l.lens_id, [&](const lens::session_record& s) -> task<void> {
                    session_id = s.session_id;
                    co_await c.get_session("lsn-missing");
                });
            });
        });
        CHECK(contains(e.what(), "sessions/metadata"));
        REQUIRE(!session_id.empty());
        CHECK(f.stats().live_sessions == 0);
        CHECK((co_await c.get_session(session_id)).status == lens::session_status::stale);
        CHECK(co_await lens_gone(c, lens_id));
    });
}

TEST_CASE("scoped lens: with_lens deletes the lens when the caller is cancelled")
{
    using namespace boost::asio::experimental::awaitable_operators;
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        std::string lens_id, session_id;
        bool body_finished = false;
        asio::steady_timer short_timer(f.ctx, 100ms);
        auto body = [&](const lens::lens_record& l) {
            lens_id = l.lens_id;
            return lens::with_session(c, l.lens_id, [&](const lens::session_record& s) -> task<void> {
                session_id = s.session_id;
                asio::steady_timer long_wait(co_await asio::this_coro::executor, 20s);
                co_await long_wait.async_wait(asio::use_awaitable); // cancelled: throws operation_aborted
                body_finished = true;
            });
        };
        auto winner = co_await (lens::with_lens(c, "owned", sensor_logs_config(), body) ||
                                short_timer.async_wait(asio::use_awaitable));
        CHECK(winner.index() == 1);
        CHECK(!body_finished);
        REQUIRE(!lens_id.empty());
        REQUIRE(!session_id.empty());
        // `||` completes only once both sides are done: the destroy and the delete already happened.
        CHECK(f.stats().live_sessions == 0);
        CHECK(co_await lens_gone(c, lens_id));
    });
}

TEST_CASE("scoped lens: explicit destroy, idempotent, release, and a lens deleted behind its back")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto l = co_await lens::scoped_lens::register_lens(c, "explicit", sensor_logs_config());
        CHECK(l.id().starts_with("lns-"));
        CHECK(l.record().lens_name == "explicit");
        co_await l.destroy();
        CHECK(co_await lens_gone(c, l.id()));
        const auto requests = f.stats().http_requests;
        co_await l.destroy(); // a no-op
        CHECK(f.stats().http_requests == requests);

        // release(): the lens outlives its owner.
        std::string kept;
        {
            auto owned = co_await lens::scoped_lens::register_lens(c, "kept", sensor_logs_config());
            kept = owned.release().lens_id;
        }
        auto found = co_await c.get_lens(kept);
        CHECK(found.lens_id == kept);
        co_await c.delete_lens(kept);

        // Already deleted by someone else: destroy() still succeeds (the lens is gone).
        auto gone = co_await lens::scoped_lens::register_lens(c, "gone", sensor_logs_config());
        co_await c.delete_lens(gone.id());
        co_await gone.destroy();
        CHECK(co_await lens_gone(c, gone.id()));
    });
}

TEST_CASE("scoped lens: a scoped_lens dropped without destroy() is deleted in the background")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        std::string id;
        {
            auto l = co_await lens::scoped_lens::register_lens(c, "dropped", sensor_logs_config());
            id = l.id();
        }
        bool deleted = false;
        for (int i = 0; i < 50 && !deleted; ++i)
            deleted = co_await lens_gone(c, id);
        CHECK(deleted);

        // Moved-from owners do not delete twice; the moved-to one does.
        {
            auto a = co_await lens::scoped_lens::register_lens(c, "moved", sensor_logs_config());
            auto b = std::move(a);
            id = b.id();
        }
        deleted = false;
        for (int i = 0; i < 50 && !deleted; ++i)
            deleted = co_await lens_gone(c, id);
        CHECK(deleted);
    });
}
