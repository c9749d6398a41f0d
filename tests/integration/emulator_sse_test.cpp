// The emulator's SSE surface, read by a raw Beast client and lens::sse::parser
// (no lens::event_stream), so that the server is checked on its own.
#include "integration/sse_support.hpp"

#include "emulator/sse_feed.hpp"

#include <lens/client.hpp>
#include <lens/emulator.hpp>

#include <doctest/doctest.h>

// `f.consume(id, {.stop = ...})`: a designated initializer names only the options a test
// changes, the others keep their defaults on purpose; g++ 12 warns about each omitted one.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace {

using namespace lens::test;
namespace json = boost::json;

struct fixture {
    asio::io_context ctx;
    lens::emulator::server emu{ctx.get_executor(), lens::test::emulator_options()};
    lens::client client{ctx.get_executor(), emulator_config(emu)};

    fixture()
    {
        emu.knobs().sse.result_interval = 1ms;
        emu.knobs().sse.heartbeat_interval = 10s;
        emu.start();
    }

    template <class T>
    T go(asio::awaitable<T> work)
    {
        return run(ctx, std::move(work));
    }

    std::string session(std::string file_id, std::string csv)
    {
        return go(start_activity_session(client, std::move(file_id), std::move(csv)));
    }

    capture consume(std::string id, consume_options o = {})
    {
        return go(lens::test::consume(emu.port(), std::move(id), std::move(o)));
    }

    void destroy(const std::string& id) { go(client.destroy_session(id)); }
};

json::object payload(const lens::sse::event& e) { return json::parse(e.data).as_object(); }

/// Stop once `n` events with an id (lens events) were seen.
std::function<bool(const capture&)> after_lens_events(std::size_t n)
{
    return [n](const capture& c) {
        std::size_t k = 0;
        std::string last;
        for (auto& e : c.events)
            if (e.last_event_id != last) {
                ++k;
                last = e.last_event_id;
            }
        return k >= n;
    };
}

/// The lens events of a capture: (id, payload text), envelope events left out.
std::vector<std::pair<std::string, std::string>> lens_events(const capture& c)
{
    std::vector<std::pair<std::string, std::string>> out;
    for (auto& e : c.events) {
        const auto type = payload(e).at("type").as_string();
        if (!type.starts_with("sse.stream."))
            out.emplace_back(e.last_event_id, e.data);
    }
    return out;
}

} // namespace

TEST_CASE("emulator sse: head, start, csv results with ids, replay, end")
{
    fixture f;
    f.emu.knobs().sse.csv_window_rows = 10;
    const std::string csv = make_csv(25);
    const auto id = f.session("sensors.csv", csv);
    const auto expected = lens::emulator::detail::activity_monitor_csv_events("sensors.csv", csv, 10);
    REQUIRE(expected.size() == 4); // log.info + 3 windows

    auto first = f.consume(id, {.stop = after_lens_events(4)});
    CHECK(first.status == 200);
    CHECK(first.content_type == "text/event-stream");
    CHECK(first.cache_control == "no-cache");
    REQUIRE(first.events.size() == 5);
    auto start = payload(first.events[0]);
    CHECK(start.at("type") == "sse.stream.start");
    CHECK(start.at("session_id").as_string() == id);
    CHECK(start.at("reader_id").is_string());
    CHECK(first.events[0].last_event_id.empty());
    for (std::size_t i = 0; i < 4; ++i) {
        CHECK(first.events[i + 1].last_event_id == std::to_string(i + 1));
        CHECK(payload(first.events[i + 1]) == expected[i]);
    }
    CHECK(payload(first.events[1]).at("type") == "log.info");
    auto result = payload(first.events[2]).at("event_data").as_object();
    CHECK(result.at("response").as_array().size() == 2);
    CHECK(result.at("query_metadata").at("rows") == json::array{0, 9});

    // resume after id 2; the session is destroyed: the rest, then sse.stream.end and a proper end
    f.destroy(id);
    auto resumed = f.consume(id, {.last_event_id = "2"});
    CHECK(resumed.types() ==
          std::vector<std::string>{"sse.stream.start", "inference.result", "inference.result", "sse.stream.end"});
    CHECK(resumed.events[1].last_event_id == "3");
    CHECK(resumed.events[3].last_event_id == "4");
    CHECK(resumed.complete);
    CHECK_FALSE(resumed.discarded);

    // a new consumer of the destroyed session: everything, then the end
    auto late = f.consume(id);
    CHECK(late.types().size() == 6);
    CHECK(late.types().back() == "sse.stream.end");
    // a different reader each connection
    CHECK(payload(late.events[0]).at("reader_id") != start.at("reader_id"));
    CHECK(f.emu.statistics().sse_connections == 3);
}

TEST_CASE("emulator sse: heartbeats count up and carry no id")
{
    fixture f;
    f.emu.knobs().sse.heartbeat_interval = 5ms;
    const auto id = f.session("", "");
    auto c = f.consume(id, {.stop = [](const capture& c) { return c.events.size() >= 4; }});
    REQUIRE(c.events.size() >= 4);
    for (std::size_t i = 1; i < 4; ++i) {
        auto hb = payload(c.events[i]);
        CHECK(hb.at("type") == "sse.stream.heartbeat");
        CHECK(hb.at("session_id").as_string() == id);
        CHECK(hb.at("message_timeout").to_number<int>() == static_cast<int>(i));
        CHECK(hb.at("num_messages").to_number<int>() == 0);
        CHECK(hb.contains("session_status"));
        CHECK(hb.contains("num_bytes"));
        CHECK(c.events[i].last_event_id.empty());
    }
}

TEST_CASE("emulator sse: events logged before any consumer are delivered - live ones follow")
{
    fixture f;
    f.emu.knobs().sse.csv_window_rows = 5;
    f.emu.knobs().sse.result_interval = 2ms;
    const auto id = f.session("a.csv", make_csv(50)); // 1 + 10 events
    auto c = f.consume(id, {.stop = after_lens_events(11)});
    const auto got = lens_events(c);
    REQUIRE(got.size() == 11);
    for (std::size_t i = 0; i < got.size(); ++i)
        CHECK(got[i].first == std::to_string(i + 1));
}

TEST_CASE("emulator sse: line ends, chunks, BOM and comments do not change the events")
{
    fixture f;
    f.emu.knobs().sse.csv_window_rows = 4;
    const std::string csv = make_csv(12);
    const auto id = f.session("k.csv", csv);
    f.consume(id, {.stop = after_lens_events(4)});
    f.destroy(id); // the log is final: every consumer gets the same stream and an end
    const auto plain = f.consume(id);
    REQUIRE(plain.complete);
    REQUIRE(lens_events(plain).size() == 4);

    struct variant {
        const char* name;
        std::function<void(lens::emulator::sse_knobs&)> set;
        std::function<bool(const std::string&)> raw_check;
    };
    const variant variants[] = {
        {"crlf", [](auto& k) { k.line_end = lens::emulator::sse_knobs::line_ending::crlf; },
         [](const std::string& raw) { return raw.find("\r\n\r\n") != std::string::npos; }},
        {"cr", [](auto& k) { k.line_end = lens::emulator::sse_knobs::line_ending::cr; },
         [](const std::string& raw) { return raw.find('\n') == std::string::npos && raw.find("\r\r") != std::string::npos; }},
        {"chunks of 3", [](auto& k) { k.chunk_size = 3; }, [](const std::string&) { return true; }},
        {"chunks of 1, CR", [](auto& k) { k.chunk_size = 1; k.line_end = lens::emulator::sse_knobs::line_ending::cr; },
         [](const std::string&) { return true; }},
        {"bom", [](auto& k) { k.bom = true; }, [](const std::string& raw) { return raw.starts_with("\xEF\xBB\xBF"); }},
        {"comments", [](auto& k) { k.comments = true; },
         [](const std::string& raw) { return raw.starts_with(": "); }},
    };
    for (const auto& v : variants) {
        INFO(v.name);
        f.emu.knobs().sse = lens::emulator::sse_knobs{};
        v.set(f.emu.knobs().sse);
        const auto c = f.consume(id);
        CHECK(c.complete);
        CHECK(v.raw_check(c.raw_body));
        CHECK(lens_events(c) == lens_events(plain));
        CHECK(c.types().front() == "sse.stream.start");
        CHECK(c.types().back() == "sse.stream.end");
    }
}

TEST_CASE("emulator sse: cut_after_events cuts inside the next event - resuming loses nothing")
{
    fixture f;
    f.emu.knobs().sse.csv_window_rows = 2;
    const auto id = f.session("cut.csv", make_csv(20)); // 1 + 10 events
    f.consume(id, {.stop = after_lens_events(11)});
    f.destroy(id);
    f.emu.knobs().sse.cut_after_events = 3;
    std::vector<std::pair<std::string, std::string>> all;
    std::string last;
    for (int connection = 0;; ++connection) {
        REQUIRE(connection < 10);
        auto c = f.consume(id, {.last_event_id = last});
        auto got = lens_events(c);
        all.insert(all.end(), got.begin(), got.end());
        if (c.complete) {
            CHECK(c.types().back() == "sse.stream.end");
            break;
        }
        // cut: three events, then half of the fourth, discarded by the parser
        CHECK(got.size() == 3);
        CHECK(c.discarded);
        CHECK_FALSE(c.complete);
        last = c.last_event_id;
    }
    REQUIRE(all.size() == 11);
    for (std::size_t i = 0; i < all.size(); ++i)
        CHECK(all[i].first == std::to_string(i + 1));
}

TEST_CASE("emulator sse: stall keeps the connection open and silent - heartbeats resume after it")
{
    fixture f;
    f.emu.knobs().sse.heartbeat_interval = 5ms;
    f.emu.knobs().sse.stall = true;
    const auto id = f.session("", "");
    auto stalled = f.consume(id, {.read_timeout = 100ms});
    CHECK(stalled.status == 200); // the head is written
    CHECK(stalled.timed_out);
    CHECK(stalled.raw_body.empty());

    // a consumer that connects during a stall gets its stream once the stall ends
    asio::co_spawn(f.ctx, [&]() -> asio::awaitable<void> {
        asio::steady_timer t(co_await asio::this_coro::executor);
        t.expires_after(30ms);
        co_await t.async_wait(asio::use_awaitable);
        f.emu.knobs().sse.stall = false;
    }, asio::detached);
    auto c = f.consume(id, {.stop = [](const capture& c) { return c.events.size() >= 3; }});
    auto types = c.types();
    REQUIRE(types.size() >= 3);
    types.resize(3);
    CHECK(types == std::vector<std::string>{"sse.stream.start", "sse.stream.heartbeat", "sse.stream.heartbeat"});
}

TEST_CASE("emulator sse: a missing file is an inference.error - video gives frames")
{
    fixture f;
    const auto id = f.session("", "");
    try {
        f.go(f.client.process_event(id, "input_stream.set", input_stream_config("csv_file_reader", "nope.csv")));
    } catch (const lens::error&) {
        // the reply reports the missing file; the SSE stream reports it too
    }
    auto c = f.consume(id, {.stop = after_lens_events(1)});
    REQUIRE(c.events.size() == 2);
    auto err = payload(c.events[1]);
    CHECK(err.at("type") == "inference.error");
    CHECK(err.at("event_data").at("error_messages").as_array().size() == 1);

    const std::string video(10000, 'v');
    f.go(f.client.upload_file("clip.mp4", video));
    f.go(f.client.process_event(id, "input_stream.set", input_stream_config("video_file_reader", "clip.mp4")));
    const auto expected = lens::emulator::detail::activity_monitor_video_events("clip.mp4", video);
    REQUIRE(expected.size() == 7); // log + 3 × (frame, result)
    auto v = f.consume(id, {.last_event_id = "1", .stop = after_lens_events(7)});
    const auto got = lens_events(v);
    REQUIRE(got.size() == 7);
    for (std::size_t i = 0; i < 7; ++i) {
        CHECK(got[i].first == std::to_string(i + 2));
        CHECK(json::parse(got[i].second) == expected[i]);
    }
}

TEST_CASE("emulator sse: refusals")
{
    fixture f;
    auto no_key = f.consume("lsn-whatever", {.api_key = ""});
    CHECK(no_key.status == 401);
    auto bad_key = f.consume("lsn-whatever", {.api_key = lens::test::test_key("wrong")});
    CHECK(bad_key.status == 401);
    auto unknown = f.consume("lsn-unknown");
    CHECK(unknown.status == 404);
}

TEST_CASE("emulator sse: a rejected input_stream.set starts nothing - the running input carries on")
{
    fixture f;
    f.emu.knobs().sse.csv_window_rows = 10;
    const std::string csv = make_csv(30);
    const auto id = f.session("rows.csv", csv); // log.info + 3 windows, one per millisecond
    const auto expected = lens::emulator::detail::activity_monitor_csv_events("rows.csv", csv, 10);
    REQUIRE(expected.size() == 4);

    // RTSP without a URL: rejected. Before the fix the feed started a simulated camera anyway
    // (and replaced the CSV input), so frames appeared on the stream.
    json::object rtsp;
    rtsp["stream_type"] = "rtsp_video_streamer";
    rtsp["stream_config"] = json::object{};
    json::value reply;
    try {
        reply = f.go(f.client.process_event(id, "input_stream.set", rtsp));
    } catch (const lens::error&) {
        // a client may report the rejection as an error; the stream is what is checked here
    }
    if (reply.is_object())
        CHECK(reply.at("event_data").at("is_valid") == false);

    // Every CSV result arrives (the rejection did not stop the running input), the rejection
    // is reported once as an inference.error, and no frame of a camera ever appears.
    auto c = f.consume(id, {.stop = after_lens_events(5)});
    const auto got = lens_events(c);
    REQUIRE(got.size() == 5);
    std::size_t csv_seen = 0, errors = 0;
    for (auto& [event_id, text] : got) {
        auto p = json::parse(text).as_object();
        const auto type = p.at("type").as_string();
        CHECK(type != "frame.processed");
        if (type == "inference.error") {
            ++errors;
            CHECK(p.at("event_data").at("error_messages").at(0).as_string().find("rtsp_url") != json::string::npos);
        } else if (csv_seen < expected.size()) {
            CHECK(p == expected[csv_seen]);
            ++csv_seen;
        }
    }
    CHECK(errors == 1);
    CHECK(csv_seen == 4);
}
