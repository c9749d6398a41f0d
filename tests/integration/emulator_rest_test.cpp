// The emulator's REST surface, seen through a raw Beast HTTP client.
#include "integration/emulator_test_support.hpp"

#include <array>
#include <chrono>
#include <thread>

using namespace emu_test;
using namespace std::chrono_literals;
namespace emulator = lens::emulator;

TEST_SUITE("emulator rest") {

TEST_CASE("every request needs the bearer key - the 401 body has the errors shape and no key")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        http_client c(srv, co_await asio::this_coro::executor);
        auto res = co_await c.request(http::verb::get, "lens/info", {}, {}, false);
        CHECK(res.result_int() == 401);
        auto body = json::parse(res.body());
        auto& e = body.at("errors").at(0);
        CHECK(e.at("code") == "unauthorized");
        CHECK(e.at("message") == "Invalid or missing API key");
        CHECK(e.at("suggestion").is_string());
        CHECK(e.at("error_uid").as_string().size() == 32);

        http::request<http::string_body> req{http::verb::get, "/v0.5/lens/info", 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::authorization, "Bearer " + lens::test::test_key("wrong-secret-key"));
        res = co_await c.send(req);
        CHECK(res.result_int() == 401);
        CHECK(res.body().find(lens::test::test_key("wrong-secret-key")) == std::string::npos);

        // The same keep-alive connection still serves authorized requests.
        res = co_await c.request(http::verb::get, "lens/info");
        CHECK(res.result_int() == 200);
        CHECK(json::parse(res.body()).at("num_lenses") == 3);
    });
}

TEST_CASE("lens metadata lists the built-in lenses with realistic records")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        http_client c(srv, co_await asio::this_coro::executor);
        auto all = co_await c.get_json("lens/metadata?shard_index=-1&max_items_per_shard=-1");
        REQUIRE(all.as_array().size() == 3);
        CHECK(all.at(0).at("lens_id").as_string() == emulator::builtin::activity_monitor);
        CHECK(all.at(0).at("lens_config").at("output_streams").at(0).at("stream_type") == "server_sent_events_writer");
        CHECK(all.at(0).at("lens_config").at("model_pipeline").at(0).at("processor_name").is_string());
        CHECK(all.at(1).at("lens_id").as_string() == emulator::builtin::mailbox);
        CHECK(all.at(2).at("lens_id").as_string() == emulator::builtin::query);

        auto one = co_await c.get_json("lens/metadata?shard_index=-1&max_items_per_shard=-1&lens_id=lns-emu-query");
        REQUIRE(one.as_array().size() == 1);
        CHECK(one.at(0).at("lens_id") == "lns-emu-query");

        auto shard = co_await c.get_json("lens/metadata?shard_index=1&max_items_per_shard=2");
        REQUIRE(shard.as_array().size() == 1);
        CHECK(shard.at(0).at("lens_id") == "lns-emu-query");
    });
}

TEST_CASE("register, clone, modify and delete a lens")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        http_client c(srv, co_await asio::this_coro::executor);
        json::object config{{"model_pipeline", json::array{}}, {"model_parameters", json::object{}},
                            {"input_streams", json::array{}}, {"output_streams", json::array{}}};
        json::object reg_body{{"lens_config", json::object{{"lens_name", "mine"}, {"lens_config", config}}}};
        auto reg = co_await c.post_json("lens/register", reg_body);
        std::string id(reg.at("lens_id").as_string());
        CHECK(id.starts_with("lns-"));
        CHECK(reg.at("lens_name") == "mine");
        CHECK(reg.at("lens_config") == config);

        json::object by_id{{"lens_id", id}};
        auto clone = co_await c.post_json("lens/clone", by_id);
        CHECK(clone.at("lens_id") != reg.at("lens_id"));
        json::object rename{{"lens_id", id}, {"lens_name", "renamed"}};
        auto mod = co_await c.post_json("lens/modify", rename);
        CHECK(mod.at("lens_name") == "renamed");
        auto del = co_await c.post_json("lens/delete", by_id);
        CHECK(del.at("is_valid") == true);

        auto res = co_await c.request(http::verb::post, "lens/delete", R"({"lens_id":"lns-emu-query"})");
        CHECK(res.result_int() == 400);
        CHECK(json::parse(res.body()).at("is_valid") == false);
        res = co_await c.request(http::verb::get, "lens/metadata?lens_id=" + id);
        CHECK(res.result_int() == 404);
        // The register call's double nesting is required.
        res = co_await c.request(http::verb::post, "lens/register", R"({"lens_name":"flat"})");
        CHECK(res.result_int() == 422);
        CHECK(json::parse(res.body()).at("detail").is_string());
    });
}

TEST_CASE("session lifecycle, status spellings and the session cap")
{
    auto opts = lens::test::emulator_options();
    opts.max_sessions = 2;
    run_with_emulator(opts, [](emulator::server& srv) -> asio::awaitable<void> {
        http_client c(srv, co_await asio::this_coro::executor);
        json::object mailbox{{"lens_id", emulator::builtin::mailbox}};
        auto a = co_await c.post_json("lens/sessions/create", mailbox);
        CHECK(a.at("session_status") == "LensSessionStatus.SESSION_STATUS_REGISTERED");
        std::string id(a.at("session_id").as_string());
        CHECK(id.starts_with("lsn-"));
        CHECK(a.at("session_endpoint").as_string() ==
              "ws://127.0.0.1:" + std::to_string(srv.port()) + "/v0.5/lens/sessions/" + id);
        co_await c.create_session(emulator::builtin::query);
        CHECK(srv.statistics().live_sessions == 2);

        // Over the cap: an HTTP 200 that is a failure.
        json::object query{{"lens_id", emulator::builtin::query}};
        auto full = co_await c.post_json("lens/sessions/create", query);
        CHECK(full.at("errors").at(0) == "Failed to allocate lens runner - try stopping an older session!");

        auto records = co_await c.get_json("lens/sessions/metadata?shard_index=-1&max_items_per_shard=-1&session_id=" + id);
        REQUIRE(records.as_array().size() == 1);
        auto& r = records.at(0).as_object();
        CHECK(r.at("session_status") == "SESSION_STATUS_RUNNING");
        CHECK(r.at("api_key").as_string() == srv.api_key());
        CHECK(r.at("session_ttl_sec") == 86400);
        CHECK(r.at("session_destroyed_timestamp").is_null());
        CHECK(r.at("registration_timestamp").is_double());
        static constexpr std::array fields{"lens_id", "lens_name", "session_endpoint", "last_event_timestamp", "last_update_timestamp",
                           "session_start_timestamp", "num_active_connections", "num_updates", "num_inputs",
                           "num_outputs", "num_events", "input_data_stream_id", "output_data_stream_id", "lens_config"};
        for (auto field : fields)
            CHECK_MESSAGE(r.contains(field), field);

        json::object session{{"session_id", id}};
        auto gone = co_await c.post_json("lens/sessions/destroy", session);
        CHECK(gone.at("session_status") == "LensSessionStatus.SESSION_STATUS_STALE");
        CHECK(gone.at("session_destroyed_timestamp").is_double());
        auto again = co_await c.post_json("lens/sessions/destroy", session);
        CHECK(again.at("session_status") == "LensSessionStatus.SESSION_STATUS_STALE");
        CHECK(srv.statistics().live_sessions == 1);

        // Capacity is back.
        co_await c.create_session(emulator::builtin::query);
        auto info = co_await c.get_json("lens/sessions/info");
        CHECK(info.at("num_active_sessions") == 2);
    });
}

TEST_CASE("error bodies: 404 detail, malformed JSON, unknown routes")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        http_client c(srv, co_await asio::this_coro::executor);
        auto res = co_await c.request(http::verb::post, "lens/sessions/create", R"({"lens_id":"lns-nope"})");
        CHECK(res.result_int() == 404);
        CHECK(json::parse(res.body()).at("detail") == "Lens not found: lns-nope");

        res = co_await c.request(http::verb::post, "lens/sessions/destroy", R"({"session_id":"lsn-nope"})");
        CHECK(res.result_int() == 404);
        CHECK(json::parse(res.body()).at("detail").is_string());

        res = co_await c.request(http::verb::post, "lens/sessions/create", R"({"lens_id": )");
        CHECK(res.result_int() == 400);
        CHECK(json::parse(res.body()).at("detail").is_string());

        res = co_await c.request(http::verb::get, "files/metadata/nothing.csv");
        CHECK(res.result_int() == 404);
        res = co_await c.request(http::verb::get, "no/such/route");
        CHECK(res.result_int() == 404);
        res = co_await c.request(http::verb::get, "lens/sessions/create");
        CHECK(res.result_int() == 405);
        CHECK(res[http::field::content_type] == "application/json");
    });
}

TEST_CASE("events/process gives the WebSocket's replies")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        http_client c(srv, co_await asio::this_coro::executor);
        std::string id = co_await c.create_session(emulator::builtin::mailbox);
        auto event = [&](std::string type, json::value data) {
            return json::object{{"session_id", id}, {"event", json::object{{"type", type}, {"event_data", data}}}};
        };
        json::object update = event("session.update", json::object{{"type", "data.json"}, {"event_data", json::object{{"x", 1}}}});
        auto upd = co_await c.post_json("lens/sessions/events/process", update);
        CHECK(upd.at("type") == "session.update.response");
        json::object read_c1 = event("session.read", json::object{{"client_id", "c1"}});
        auto read = co_await c.post_json("lens/sessions/events/process", read_c1);
        CHECK(read.at("type") == "session.read.response");
        auto& messages = read.at("event_data").at("messages").as_array();
        REQUIRE(messages.size() == 2);
        CHECK(messages[0].at("type") == "log.info");
        CHECK(messages[1].at("type") == "inference.result");
        json::value x1 = json::parse(R"({"x":1})");
        CHECK(messages[1].at("data") == x1);
        auto none = co_await c.post_json("lens/sessions/events/process", read_c1);
        CHECK(none.at("event_data").is_null());
        json::object status_event = event("session.status", nullptr);
        auto status = co_await c.post_json("lens/sessions/events/process", status_event);
        CHECK(status.at("session_status") == "3");
        CHECK(!status.as_object().contains("type"));
        json::object unknown_event = event("no.such", nullptr);
        auto unknown = co_await c.post_json("lens/sessions/events/process", unknown_event);
        CHECK(unknown.at("type") == "error");
        CHECK(unknown.at("message") == "Unknown event type: no.such");
    });
}

TEST_CASE("file upload (multipart and base64), metadata, download, delete")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        http_client c(srv, co_await asio::this_coro::executor);
        std::string csv = "t,x\r\n0,1\r\n1,2\r\n--not-a-boundary\r\n";
        auto res = co_await c.upload("data.csv", csv);
        REQUIRE(res.result_int() == 200);
        auto up = json::parse(res.body());
        CHECK(up.at("is_valid") == true);
        CHECK(up.at("file_id") == "data.csv");
        CHECK(up.at("file_uid").as_string().size() == 36);

        res = co_await c.upload("dir/pic.png", "aGVsbG8gd29y\r\nbGQ=", "files/base64");
        REQUIRE(res.result_int() == 200);
        CHECK(json::parse(res.body()).at("file_id") == "pic.png");

        res = co_await c.upload("evil.exe", "MZ");
        CHECK(res.result_int() == 400);
        auto rejected = json::parse(res.body());
        CHECK(rejected.at("is_valid") == false);
        CHECK(rejected.at("error_messages").at(0).is_string());
        res = co_await c.upload("bad.png", "***", "files/base64");
        CHECK(res.result_int() == 400);

        auto list = co_await c.get_json("files/metadata");
        CHECK(list.as_array().size() == 2);
        auto one = co_await c.get_json("files/metadata/data.csv");
        CHECK(one.at("num_bytes") == csv.size());
        auto info = co_await c.get_json("files/info");
        CHECK(info.at("num_files") == 2);

        res = co_await c.request(http::verb::get, "files/download/data.csv");
        CHECK(res.result_int() == 200);
        CHECK(res.body() == csv);
        res = co_await c.request(http::verb::get, "files/download/pic.png");
        CHECK(res.body() == "hello world");
        CHECK(res[http::field::content_type] == "image/png");

        res = co_await c.request(http::verb::delete_, "files/delete/data.csv");
        CHECK(res.result_int() == 200);
        res = co_await c.request(http::verb::get, "files/download/data.csv");
        CHECK(res.result_int() == 404);
    });
}

TEST_CASE("REST fault knobs")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        http_client c(srv, co_await asio::this_coro::executor);
        auto& k = srv.knobs().rest;

        k.fail_next = 2;
        k.fail_status = 503;
        k.retry_after_seconds = 7;
        for (int i = 0; i < 2; ++i) {
            auto res = co_await c.request(http::verb::get, "lens/info");
            CHECK(res.result_int() == 503);
            CHECK(res[http::field::retry_after] == "7");
            CHECK(json::parse(res.body()).at("detail") == "injected fault");
        }
        CHECK((co_await c.request(http::verb::get, "lens/info")).result_int() == 200);
        // Injected failures happen before any state change: no session was created.
        k.fail_next = 1;
        k.retry_after_seconds = 0;
        auto res = co_await c.request(http::verb::post, "lens/sessions/create", R"({"lens_id":"lns-emu-query"})");
        CHECK(res.result_int() == 503);
        CHECK(res.count(http::field::retry_after) == 0);
        CHECK(srv.statistics().live_sessions == 0);

        // Every third request, counting every REST request since start.
        k.fail_every_nth = 3;
        int failures = 0;
        for (int i = 0; i < 6; ++i)
            failures += (co_await c.request(http::verb::get, "lens/info")).result_int() == 503;
        CHECK(failures == 2);
        k.fail_every_nth = 0;

        k.html_next = 1;
        res = co_await c.request(http::verb::get, "lens/info");
        CHECK(res.result_int() == 502);
        CHECK(res[http::field::content_type] == "text/html");

        k.garbage_next = 1;
        res = co_await c.request(http::verb::get, "lens/info");
        CHECK(res.result_int() == 200);
        CHECK(res[http::field::content_type] == "application/json");
        boost::system::error_code ec;
        json::parse(res.body(), ec);
        CHECK(ec);

        k.oversize_body = 100000;
        res = co_await c.request(http::verb::get, "lens/info");
        CHECK(res.result_int() == 200);
        CHECK(res.body().size() == 100000);
        json::parse(res.body(), ec);
        CHECK(!ec);
        CHECK(k.oversize_body == 0);

        // A dropped request: the connection closes without a reply.
        k.drop_next = 1;
        bool dropped = false;
        try {
            co_await c.request(http::verb::get, "lens/info");
        } catch (const boost::system::system_error&) {
            dropped = true;
        }
        CHECK(dropped);
        c.stream().close();
        CHECK((co_await c.request(http::verb::get, "lens/info")).result_int() == 200);

        k.delay = 120ms;
        auto start = std::chrono::steady_clock::now();
        CHECK((co_await c.request(http::verb::get, "lens/info")).result_int() == 200);
        CHECK(std::chrono::steady_clock::now() - start >= 120ms);
        k.delay = 0ms;

        CHECK(srv.statistics().http_requests == 16);
    });
}

TEST_CASE("stop() ends a request waiting on a long knob delay")
{
    run_with_emulator(lens::test::emulator_options(), [](emulator::server& srv) -> asio::awaitable<void> {
        srv.knobs().rest.delay = 60s;
        auto ex = co_await asio::this_coro::executor;
        auto c = std::make_shared<http_client>(srv, ex);
        // Fire a request that would wait a minute, then stop the server under it.
        asio::co_spawn(ex, [c]() -> asio::awaitable<void> {
            try {
                co_await c->request(http::verb::get, "lens/info");
            } catch (const boost::system::system_error&) {
            }
        }, asio::detached);
        co_await pause(50ms);
        auto start = std::chrono::steady_clock::now();
        srv.stop();
        co_await pause(10ms);
        CHECK(std::chrono::steady_clock::now() - start < 5s);
    });
}

TEST_CASE("an emulator on its own thread, stopped from another")
{
    asio::io_context ioc;
    auto srv = std::make_unique<emulator::server>(ioc.get_executor(), lens::test::emulator_options());
    srv->start();
    std::thread runner([&] { ioc.run(); });

    // A blocking client on this thread, left connected (keep-alive) when the server stops.
    asio::io_context client_io;
    beast::tcp_stream s(client_io);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), srv->port()));
    http::request<http::string_body> req{http::verb::get, "/v0.5/lens/info", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::authorization, "Bearer " + srv->api_key());
    http::write(s, req);
    beast::flat_buffer b;
    response res;
    http::read(s, b, res);
    CHECK(res.result_int() == 200);

    srv.reset(); // the destructor hands stop() to the emulator's thread
    runner.join(); // ...whose run() then returns
    boost::system::error_code ec;
    http::read(s, b, res, ec);
    CHECK(ec); // and the idle connection was closed
}

TEST_CASE("TLS: the generated CA verifies the server for 127.0.0.1 and localhost")
{
    auto opts = lens::test::emulator_options();
    opts.tls = true;
    run_with_emulator(opts, [](emulator::server& srv) -> asio::awaitable<void> {
        CHECK(srv.endpoint().starts_with("https://127.0.0.1:"));
        REQUIRE(!srv.ca_file().empty());
        static constexpr std::array<const char*, 2> hosts{"127.0.0.1", "localhost"};
        for (std::string host : hosts) {
            asio::ssl::context ctx(asio::ssl::context::tls_client);
            ctx.load_verify_file(srv.ca_file());
            ctx.set_verify_mode(asio::ssl::verify_peer);
            beast::ssl_stream<beast::tcp_stream> s(co_await asio::this_coro::executor, ctx);
            s.set_verify_callback(asio::ssl::host_name_verification(host));
            if (host == "localhost")
                SSL_set_tlsext_host_name(s.native_handle(), host.c_str());
            co_await beast::get_lowest_layer(s).async_connect(
                tcp::endpoint(asio::ip::make_address("127.0.0.1"), srv.port()), use_awaitable);
            co_await s.async_handshake(asio::ssl::stream_base::client, use_awaitable);
            http::request<http::string_body> req{http::verb::get, "/v0.5/lens/info", 11};
            req.set(http::field::host, host);
            req.set(http::field::authorization, "Bearer " + srv.api_key());
            co_await http::async_write(s, req, use_awaitable);
            beast::flat_buffer b;
            response res;
            co_await http::async_read(s, b, res, use_awaitable);
            CHECK(res.result_int() == 200);
        }

        // Without the CA the handshake fails verification.
        asio::ssl::context ctx(asio::ssl::context::tls_client);
        ctx.set_verify_mode(asio::ssl::verify_peer);
        beast::ssl_stream<beast::tcp_stream> s(co_await asio::this_coro::executor, ctx);
        co_await beast::get_lowest_layer(s).async_connect(
            tcp::endpoint(asio::ip::make_address("127.0.0.1"), srv.port()), use_awaitable);
        boost::system::error_code ec;
        co_await s.async_handshake(asio::ssl::stream_base::client, asio::redirect_error(use_awaitable, ec));
        CHECK(ec);
    });
}

} // TEST_SUITE
