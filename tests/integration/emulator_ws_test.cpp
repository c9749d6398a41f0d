// The emulator's WebSocket control channel, seen through a raw Beast client.
//
// (GCC 12 miscompiles braced initializer lists in a full-expression that also
// has a co_await, so request frames are built in statements of their own.)
#include "integration/emulator_test_support.hpp"

#include <openssl/evp.h>

#include <chrono>

using namespace emu_test;
using namespace std::chrono_literals;
namespace emulator = lens::emulator;

namespace {

std::string base64(std::string_view bytes)
{
    std::string out(4 * ((bytes.size() + 2) / 3), '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::string query_frame(std::string_view template_name, std::string_view focus, std::string_view image)
{
    json::object data;
    data["model_version"] = "Newton::c2_4_7b_251215a172f6d7";
    data["template_name"] = template_name;
    data["instruction"] = "Answer the question.";
    data["focus"] = focus;
    data["max_new_tokens"] = 512;
    json::object img;
    img["type"] = "base64_img";
    img["base64_img"] = base64(image);
    json::array items;
    items.push_back(std::move(img));
    data["data"] = std::move(items);
    data["sensor_metadata"] = json::object{};
    return event("model.query", data);
}

json::object obj(std::string_view text)
{
    return json::parse(text).as_object();
}

} // namespace

TEST_SUITE("emulator websocket") {

TEST_CASE("upgrade: bearer header or subprotocol auth - refusals carry HTTP statuses")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        http_client c(srv, ex);
        std::string id = co_await c.create_session(emulator::builtin::mailbox);

        ws_client a(ex);
        REQUIRE(!co_await a.connect(srv, id));
        co_await a.send(event("session.status"));
        auto record = co_await a.read_json();
        CHECK(!record.as_object().contains("type"));
        CHECK(record.at("session_id").as_string() == id);
        CHECK(record.at("session_status") == "3");
        CHECK(record.at("api_key").as_string() == srv.api_key());
        CHECK(record.at("num_active_connections") == 1);

        ws_client b(ex);
        REQUIRE(!co_await b.connect(srv, id, ws_client::auth::subprotocol));
        CHECK(b.handshake_response()[http::field::sec_websocket_protocol] == "event-protocol-v1");
        co_await b.send(event("session.validate"));
        auto v = co_await b.read_json();
        CHECK(v.at("type") == "session.validate.response");
        CHECK(v.at("event_data").at("is_valid") == true);

        ws_client bad(ex);
        CHECK(co_await bad.connect(srv, id, ws_client::auth::header, lens::test::test_key("wrong-key")) == websocket::error::upgrade_declined);
        CHECK(bad.handshake_response().result_int() == 401);
        CHECK(bad.handshake_response().body().find(lens::test::test_key("wrong-key")) == std::string::npos);

        ws_client none(ex);
        CHECK(co_await none.connect(srv, id, ws_client::auth::none) == websocket::error::upgrade_declined);
        CHECK(none.handshake_response().result_int() == 401);

        ws_client unknown(ex);
        CHECK(co_await unknown.connect(srv, "lsn-unknown") == websocket::error::upgrade_declined);
        CHECK(unknown.handshake_response().result_int() == 404);

        CHECK(srv.statistics().ws_upgrades == 5);
        CHECK(srv.statistics().ws_frames_received == 2);
        CHECK(srv.statistics().http_requests == 1); // upgrades are not REST requests
    });
}

TEST_CASE("control events: validate, heartbeat, unknown types, invalid JSON, text requests")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        http_client c(srv, ex);
        std::string id = co_await c.create_session(emulator::builtin::query);
        ws_client w(ex);
        REQUIRE(!co_await w.connect(srv, id));

        co_await w.send(event("session.heartbeat"));
        auto hb = co_await w.read_json();
        CHECK(hb.at("type") == "session.heartbeat.response");
        CHECK(hb.at("event_data").is_null());

        co_await w.send(event("no.such.event"));
        auto unknown = co_await w.read_json();
        CHECK(unknown.at("type") == "error");
        CHECK(unknown.at("message") == "Unknown event type: no.such.event");

        co_await w.send("{oops");
        auto invalid = co_await w.read_json();
        CHECK(invalid.at("type") == "error");
        CHECK(invalid.at("message").is_string());

        co_await w.send(event("session.validate"), true); // a text frame is accepted too
        CHECK((co_await w.read_json()).at("type") == "session.validate.response");

        // The query lens has no mailbox.
        co_await w.send(event("session.read", obj(R"({"client_id":"x"})")));
        auto read = co_await w.read_json();
        CHECK(read.at("type") == "session.read.response");
        CHECK(read.at("event_data").is_null());
    });
}

TEST_CASE("mailbox lens: session.update results, independent session.read cursors")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        http_client c(srv, ex);
        std::string id = co_await c.create_session(emulator::builtin::mailbox);
        ws_client w(ex);
        REQUIRE(!co_await w.connect(srv, id));

        co_await w.send(event("session.read", obj(R"({"client_id":"one"})")));
        auto first = co_await w.read_json();
        REQUIRE(first.at("event_data").at("messages").as_array().size() == 1);
        CHECK(first.at("event_data").at("messages").at(0).at("type") == "log.info");
        CHECK(first.at("event_data").at("client_id") == "one");

        for (int i = 0; i < 2; ++i) {
            json::object inner;
            inner["n"] = i;
            json::object update;
            update["type"] = "data.json";
            update["event_data"] = inner;
            co_await w.send(event("session.update", update));
            auto ack = co_await w.read_json();
            CHECK(ack.at("type") == "session.update.response");
            CHECK(ack.at("event_data").at("is_valid") == true);
        }
        co_await w.send(event("session.read", obj(R"({"client_id":"one"})")));
        auto more = co_await w.read_json();
        auto& messages = more.at("event_data").at("messages").as_array();
        REQUIRE(messages.size() == 2);
        for (int i = 0; i < 2; ++i) {
            CHECK(messages[i].at("type") == "inference.result");
            CHECK(messages[i].at("data").at("n") == i);
            CHECK(messages[i].at("timestamp").is_double());
        }
        co_await w.send(event("session.read", obj(R"({"client_id":"one"})")));
        CHECK((co_await w.read_json()).at("event_data").is_null());

        // A new client id replays from the start.
        co_await w.send(event("session.read", obj(R"({"client_id":"two"})")));
        CHECK((co_await w.read_json()).at("event_data").at("messages").as_array().size() == 3);

        // input_stream.set writes a log line too.
        co_await c.upload("rows.csv", "a,b\n1,2\n");
        co_await w.send(event("input_stream.set",
                              obj(R"({"stream_type":"csv_file_reader","stream_config":{"file_id":"rows.csv"}})")));
        CHECK((co_await w.read_json()).at("event_data").at("is_valid") == true);
        co_await w.send(event("session.read", obj(R"({"client_id":"one"})")));
        auto log = co_await w.read_json();
        CHECK(log.at("event_data").at("messages").at(0).at("type") == "log.info");
    });
}

TEST_CASE("input_stream.set validates file ids and stream configs")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        http_client c(srv, ex);
        std::string id = co_await c.create_session(emulator::builtin::activity_monitor);
        ws_client w(ex);
        REQUIRE(!co_await w.connect(srv, id));

        co_await w.send(event("input_stream.set",
                              obj(R"({"stream_type":"csv_file_reader","stream_config":{"file_id":"missing.csv"}})")));
        auto missing = co_await w.read_json();
        CHECK(missing.at("type") == "input_stream.set.response");
        CHECK(missing.at("event_data").at("is_valid") == false);
        CHECK(missing.at("event_data").at("error_messages").at(0).is_string());

        co_await w.send(event("input_stream.set", obj(R"({"stream_type":"rtsp_video_streamer","stream_config":{}})")));
        CHECK((co_await w.read_json()).at("event_data").at("is_valid") == false);

        co_await c.upload("clip.mp4", "not really a video");
        co_await w.send(event("input_stream.set",
                              obj(R"({"stream_type":"video_file_reader","stream_config":{"file_id":"clip.mp4"}})")));
        CHECK((co_await w.read_json()).at("event_data").at("is_valid") == true);
    });
}

TEST_CASE("model.query: deterministic answers - replies of one type keep request order")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        http_client c(srv, ex);
        std::string id = co_await c.create_session(emulator::builtin::query);
        ws_client w(ex);
        REQUIRE(!co_await w.connect(srv, id));

        const std::string image = "\x89PNG\r\n\x1a\n fake image bytes";
        co_await w.send(query_frame("image_qa_template_task", "What is shown?", image));
        auto qa = co_await w.read_json();
        CHECK(qa.at("type") == "model.query.response");
        CHECK(qa.at("event_data").at("result") ==
              emulator::expected_query_answer("image_qa_template_task", "What is shown?", image));
        CHECK(qa.at("event_data").at("result").as_string().starts_with("What is shown?"));

        const std::string focus = "Find things. Input: [person, car, dog]";
        co_await w.send(query_frame("image_bbox_template_task", focus, image));
        auto bbox = co_await w.read_json();
        auto expected = emulator::expected_query_answer("image_bbox_template_task", focus, image);
        CHECK(bbox.at("event_data").at("result") == expected);
        auto& boxes = expected.as_array();
        CHECK(boxes.size() >= 1);
        CHECK(boxes.size() <= 3);
        for (auto& b : boxes) {
            auto label = b.at("label").as_string();
            CHECK((label == "person" || label == "car" || label == "dog"));
            CHECK(b.at("box").as_array().size() == 4);
        }

        // A slow first query, then a fast one: the fast one waits its turn.
        srv.knobs().ws.query_latency = 150ms;
        co_await w.send(query_frame("image_qa_template_task", "first", image));
        co_await pause(30ms); // knobs apply when the emulator reads the frame
        srv.knobs().ws.query_latency = 0ms;
        co_await w.send(query_frame("image_qa_template_task", "second", image));
        // ...but a reply of another type overtakes both.
        co_await w.send(event("session.validate"));
        CHECK((co_await w.read_json()).at("type") == "session.validate.response");
        CHECK((co_await w.read_json()).at("event_data").at("result").as_string().starts_with("first"));
        CHECK((co_await w.read_json()).at("event_data").at("result").as_string().starts_with("second"));
    });
}

TEST_CASE("model.query timeouts: the emulator:timeout focus, and lenses that cannot answer")
{
    auto opts = lens::test::emulator_options();
    opts.ws.query_timeout_after = 200ms;
    run_with_emulator(opts, [](emulator::server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        http_client c(srv, ex);
        for (auto lens : {emulator::builtin::query, emulator::builtin::mailbox}) {
            std::string id = co_await c.create_session(lens);
            ws_client w(ex);
            REQUIRE(!co_await w.connect(srv, id));
            auto start = std::chrono::steady_clock::now();
            std::string focus = lens == emulator::builtin::query ? "emulator:timeout" : "anything";
            co_await w.send(query_frame("image_qa_template_task", focus, "img"));
            co_await w.send(event("session.status"));
            // The status overtakes the query that is timing out.
            CHECK((co_await w.read_json()).at("session_status") == "3");
            auto timeout = co_await w.read_json();
            CHECK(timeout.at("type") == "model.query.response");
            CHECK(timeout.at("message") == "Response timed out for query");
            CHECK(!timeout.as_object().contains("event_data"));
            CHECK(std::chrono::steady_clock::now() - start >= 200ms);
        }
    });
}

TEST_CASE("session.destroy over the WebSocket")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        http_client c(srv, ex);
        std::string id = co_await c.create_session(emulator::builtin::mailbox);
        ws_client w(ex);
        REQUIRE(!co_await w.connect(srv, id));
        co_await w.send(event("session.destroy"));
        auto ack = co_await w.read_json();
        CHECK(ack.at("type") == "session.destroy.response");
        CHECK(ack.at("event_data").at("is_valid") == true);
        CHECK(srv.statistics().live_sessions == 0);

        // The connection stays; the session answers only its status.
        co_await w.send(event("session.status"));
        CHECK((co_await w.read_json()).at("session_status") == "LensSessionStatus.SESSION_STATUS_STALE");
        co_await w.send(event("session.validate"));
        auto gone = co_await w.read_json();
        CHECK(gone.at("type") == "error");
        CHECK(gone.at("message").as_string() == "Unknown session id: " + id);

        ws_client again(ex);
        CHECK(co_await again.connect(srv, id) == websocket::error::upgrade_declined);
        CHECK(again.handshake_response().result_int() == 404);
        auto records = co_await c.get_json("lens/sessions/metadata?session_id=" + id);
        CHECK(records.at(0).at("session_status") == "LensSessionStatus.SESSION_STATUS_STALE");
    });
}

TEST_CASE("WebSocket fault knobs")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        http_client c(srv, ex);
        std::string id = co_await c.create_session(emulator::builtin::mailbox);
        auto& k = srv.knobs().ws;

        {
            ws_client w(ex);
            REQUIRE(!co_await w.connect(srv, id));
            k.error_frame_next = 1;
            co_await w.send(event("session.validate"));
            auto err = co_await w.read_json();
            CHECK(err.at("type") == "error");
            CHECK(err.at("message") == "injected error");

            k.malformed_next = 1;
            co_await w.send(event("session.validate"));
            CHECK(co_await w.read_frame() == "{not json");
            CHECK((co_await w.read_json()).at("type") == "session.validate.response");

            k.reply_delay = 100ms;
            auto start = std::chrono::steady_clock::now();
            co_await w.send(event("session.validate"));
            CHECK((co_await w.read_json()).at("type") == "session.validate.response");
            CHECK(std::chrono::steady_clock::now() - start >= 100ms);
            k.reply_delay = 0ms;
        }
        {
            // The second frame is swallowed and the connection dropped.
            k.drop_after_frames = 2;
            ws_client w(ex);
            REQUIRE(!co_await w.connect(srv, id));
            co_await w.send(event("session.validate"));
            CHECK((co_await w.read_json()).at("type") == "session.validate.response");
            co_await w.send(event("session.validate"));
            CHECK(co_await w.read_error());
            k.drop_after_frames = 0;
        }
        {
            k.refuse_upgrade_status = 503;
            k.refuse_next_upgrades = 2;
            for (int i = 0; i < 2; ++i) {
                ws_client w(ex);
                CHECK(co_await w.connect(srv, id) == websocket::error::upgrade_declined);
                CHECK(w.handshake_response().result_int() == 503);
            }
            CHECK(k.refuse_upgrade_status == 0); // the count used up turns refusing off
            ws_client w(ex);
            CHECK(!co_await w.connect(srv, id));
        }
        {
            k.accept_then_close_next = 1;
            ws_client w(ex);
            REQUIRE(!co_await w.connect(srv, id));
            CHECK(co_await w.read_error());
            ws_client next(ex);
            REQUIRE(!co_await next.connect(srv, id));
            co_await next.send(event("session.heartbeat"));
            CHECK((co_await next.read_json()).at("type") == "session.heartbeat.response");
        }
    });
}

TEST_CASE("stop() closes WebSockets with replies still pending")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        http_client c(srv, ex);
        std::string id = co_await c.create_session(emulator::builtin::query);
        ws_client w(ex);
        REQUIRE(!co_await w.connect(srv, id));
        co_await w.send(query_frame("image_qa_template_task", "emulator:timeout", "x")); // a minute away
        co_await pause(20ms);
        auto start = std::chrono::steady_clock::now();
        srv.stop();
        CHECK(co_await w.read_error());
        CHECK(std::chrono::steady_clock::now() - start < 5s);
    });
}

TEST_CASE("wss: the control channel over TLS")
{
    auto opts = lens::test::emulator_options();
    opts.tls = true;
    run_with_emulator(opts, [](emulator::server& srv) -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        // Create the session over https.
        asio::ssl::context ctx(asio::ssl::context::tls_client);
        ctx.load_verify_file(srv.ca_file());
        ctx.set_verify_mode(asio::ssl::verify_peer);
        beast::ssl_stream<beast::tcp_stream> https(ex, ctx);
        https.set_verify_callback(asio::ssl::host_name_verification("127.0.0.1"));
        auto ep = tcp::endpoint(asio::ip::make_address("127.0.0.1"), srv.port());
        co_await beast::get_lowest_layer(https).async_connect(ep, use_awaitable);
        co_await https.async_handshake(asio::ssl::stream_base::client, use_awaitable);
        http::request<http::string_body> req{http::verb::post, "/v0.5/lens/sessions/create", 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::authorization, "Bearer " + srv.api_key());
        req.set(http::field::content_type, "application/json");
        req.body() = R"({"lens_id":"lns-emu-mailbox"})";
        req.prepare_payload();
        co_await http::async_write(https, req, use_awaitable);
        beast::flat_buffer b;
        response res;
        co_await http::async_read(https, b, res, use_awaitable);
        auto created = json::parse(res.body());
        std::string endpoint(created.at("session_endpoint").as_string());
        CHECK(endpoint.starts_with("wss://127.0.0.1:"));
        std::string id(created.at("session_id").as_string());

        websocket::stream<beast::ssl_stream<beast::tcp_stream>> wss(ex, ctx);
        wss.next_layer().set_verify_callback(asio::ssl::host_name_verification("127.0.0.1"));
        std::string key = srv.api_key();
        wss.set_option(websocket::stream_base::decorator(
            [key](websocket::request_type& r) { r.set(http::field::authorization, "Bearer " + key); }));
        co_await beast::get_lowest_layer(wss).async_connect(ep, use_awaitable);
        co_await wss.next_layer().async_handshake(asio::ssl::stream_base::client, use_awaitable);
        co_await wss.async_handshake("127.0.0.1", "/v0.5/lens/sessions/" + id, use_awaitable);
        wss.binary(true);
        std::string frame = event("session.status");
        co_await wss.async_write(asio::buffer(frame), use_awaitable);
        beast::flat_buffer in;
        co_await wss.async_read(in, use_awaitable);
        auto record = json::parse(beast::buffers_to_string(in.data()));
        CHECK(record.at("session_endpoint").as_string() == endpoint);
        co_await wss.async_close(websocket::close_code::normal, use_awaitable);
    });
}

} // TEST_SUITE
