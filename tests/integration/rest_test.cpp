// Integration tests of the REST client against the in-process emulator, over
// loopback on ephemeral ports, http and https. Every failure case checks the
// condition, that the message names the operation, and what the server saw
// (request counts). No sleeps and no wall-clock assertions: the timing rules are
// unit-tested on scripted time (tests/unit/retry_test.cpp).
#include "integration/fixture.hpp"

#include <lens/client.hpp>
#include <lens/event_stream.hpp>
#include <lens/records.hpp>
#include <lens/session.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <vector>

#include <unistd.h>

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace emu = lens::emulator;
using lens::errc;
using lens::task;
using lens::test::contains;
using lens::test::expect_error;
using lens::test::fixture;
using namespace std::chrono_literals;

// ---- helpers (plain functions: g++ 12 rejects braced lists inside coroutines) ----

/// A scratch directory removed with everything in it at scope exit.
struct temp_dir {
    std::filesystem::path path;
    temp_dir()
    {
        static std::atomic<unsigned> counter{0};
        path = std::filesystem::temp_directory_path() /
               ("lens-rest-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
        std::filesystem::create_directories(path);
    }
    ~temp_dir()
    {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::filesystem::path write(const std::string& name, const std::string& contents) const
    {
        auto p = path / name;
        std::ofstream out(p, std::ios::binary);
        out << contents;
        return p;
    }
};

/// Every byte value, twice: NULs, CR/LF, 0xFF, a boundary-looking line.
std::string binary_bytes()
{
    std::string s;
    for (int round = 0; round < 2; ++round)
        for (int b = 0; b < 256; ++b)
            s.push_back(static_cast<char>(b));
    s += "\r\n--lens-boundary\r\n";
    return s;
}

std::string sample_csv()
{
    std::string csv = "timestamp,a,b\n";
    for (int i = 0; i < 25; ++i)
        csv += std::to_string(i) + "," + std::to_string(i % 7) + "," + std::to_string(i % 3) + "\n";
    return csv;
}

json::object sample_lens_config()
{
    json::object c;
    c["model_pipeline"] = json::array{json::object{{"processor_name", "lens_echo_processor"}}};
    c["model_parameters"] = json::object{{"model_version", "Newton::test"}};
    c["input_streams"] = json::array{json::object{{"stream_type", "data.json"}}};
    c["output_streams"] = json::array{json::object{{"stream_type", "server_sent_events_writer"}}};
    return c;
}

json::object rename_fields(const std::string& name)
{
    json::object o;
    o["lens_name"] = name;
    return o;
}

json::value client_id_data(const std::string& id)
{
    return json::object{{"client_id", id}};
}

std::string serialized(const auto& record) { return json::serialize(json::value_from(record)); }

std::set<std::string> lens_ids(const std::vector<lens::lens_record>& v)
{
    std::set<std::string> out;
    for (auto& l : v)
        out.insert(l.lens_id);
    return out;
}

std::set<std::string> builtin_ids()
{
    return {std::string(emu::builtin::activity_monitor), std::string(emu::builtin::mailbox),
            std::string(emu::builtin::query)};
}

/// The endpoint with its host replaced ("127.0.0.1" → `host`).
std::string with_host(std::string endpoint, const std::string& host)
{
    auto at = endpoint.find("127.0.0.1");
    REQUIRE(at != std::string::npos);
    endpoint.replace(at, 9, host);
    return endpoint;
}

/// A loopback port nobody listens on: bound, then closed.
unsigned short closed_port(asio::io_context& ctx)
{
    asio::ip::tcp::acceptor a(ctx, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    auto port = a.local_endpoint().port();
    a.close();
    return port;
}

/// The key must never appear in an error message.
void check_no_secret(const lens::error& e, const std::string& key)
{
    CHECK_MESSAGE(!contains(e.what(), key), "the API key leaked into: " << e.what());
}

// ---- a counting TCP proxy, to observe connection reuse ------------------------------

/// Forwards loopback TCP connections to `target_port` and counts them.
class counting_proxy : public std::enable_shared_from_this<counting_proxy> {
public:
    counting_proxy(asio::io_context& ctx, unsigned short target_port)
        : ctx_(ctx), acceptor_(ctx, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
          target_(asio::ip::make_address("127.0.0.1"), target_port)
    {
    }
    unsigned short port() const { return acceptor_.local_endpoint().port(); }
    std::size_t accepted() const { return accepted_; }

    void start()
    {
        asio::co_spawn(ctx_, accept_loop(shared_from_this()), asio::detached);
    }
    void stop()
    {
        boost::system::error_code ec;
        acceptor_.close(ec);
        for (auto& w : sockets_)
            if (auto s = w.lock())
                s->close(ec);
        sockets_.clear();
    }

private:
    using socket_ptr = std::shared_ptr<asio::ip::tcp::socket>;

    static task<void> accept_loop(std::shared_ptr<counting_proxy> self)
    {
        for (;;) {
            boost::system::error_code ec;
            auto in = std::make_shared<asio::ip::tcp::socket>(self->ctx_);
            co_await self->acceptor_.async_accept(*in, asio::redirect_error(asio::use_awaitable, ec));
            if (ec)
                co_return;
            ++self->accepted_;
            auto out = std::make_shared<asio::ip::tcp::socket>(self->ctx_);
            co_await out->async_connect(self->target_, asio::redirect_error(asio::use_awaitable, ec));
            if (ec)
                continue;
            self->sockets_.push_back(in);
            self->sockets_.push_back(out);
            asio::co_spawn(self->ctx_, pipe(in, out), asio::detached);
            asio::co_spawn(self->ctx_, pipe(out, in), asio::detached);
        }
    }

    static task<void> pipe(socket_ptr from, socket_ptr to)
    {
        char buf[16384];
        for (;;) {
            boost::system::error_code ec;
            auto n = co_await from->async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
            if (ec)
                break;
            co_await asio::async_write(*to, asio::buffer(buf, n), asio::redirect_error(asio::use_awaitable, ec));
            if (ec)
                break;
        }
        boost::system::error_code ignored;
        to->shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    }

    asio::io_context& ctx_;
    asio::ip::tcp::acceptor acceptor_;
    asio::ip::tcp::endpoint target_;
    std::size_t accepted_ = 0;
    std::vector<std::weak_ptr<asio::ip::tcp::socket>> sockets_;
};

/// Stops the proxy when the test coroutine ends, however it ends (else its acceptor keeps
/// the context running until the watchdog fires).
struct proxy_stopper {
    explicit proxy_stopper(std::shared_ptr<counting_proxy> p) : proxy(std::move(p)) {}
    ~proxy_stopper() { proxy->stop(); }
    std::shared_ptr<counting_proxy> proxy;
};

// ---- the happy path, run over http and https --------------------------------------------

task<void> lenses_walk(fixture& f, lens::client& c)
{
    auto info = co_await c.lens_info();
    CHECK(info.is_object());

    auto all = co_await c.list_lenses();
    CHECK(all.size() == 3);
    CHECK(lens_ids(all) == builtin_ids());
    for (auto& l : all) {
        CHECK(!l.lens_name.empty());
        CHECK(l.raw.contains("lens_config"));
    }

    auto mailbox = co_await c.get_lens(std::string(emu::builtin::mailbox));
    CHECK(mailbox.lens_id == emu::builtin::mailbox);
    CHECK(!mailbox.lens_name.empty());

    // register: the config travels doubly nested and comes back as sent.
    const json::object config = sample_lens_config();
    auto registered = co_await c.register_lens("integration lens", config);
    CHECK(registered.lens_id.starts_with("lns-"));
    CHECK(registered.lens_name == "integration lens");
    REQUIRE(registered.raw.contains("lens_config"));
    CHECK(registered.raw.at("lens_config") == json::value(config));
    CHECK((co_await c.list_lenses()).size() == 4);

    auto fetched = co_await c.get_lens(registered.lens_id);
    CHECK(fetched.raw.at("lens_config") == json::value(config));

    auto clone = co_await c.clone_lens(registered.lens_id);
    CHECK(clone.lens_id.starts_with("lns-"));
    CHECK(clone.lens_id != registered.lens_id);
    CHECK(clone.raw.at("lens_config") == json::value(config));

    auto renamed = co_await c.modify_lens(clone.lens_id, rename_fields("renamed clone"));
    CHECK(renamed.lens_id == clone.lens_id);
    CHECK(renamed.lens_name == "renamed clone");
    CHECK((co_await c.get_lens(clone.lens_id)).lens_name == "renamed clone");

    // Built-ins refuse modification with {"is_valid": false, ...} and a 400.
    auto refused = co_await expect_error(errc::http_error, [&] {
        return c.modify_lens(std::string(emu::builtin::query), rename_fields("mine now"));
    });
    CHECK(refused.http_status() == 400);
    CHECK(contains(refused.what(), "lens/modify"));
    CHECK(contains(refused.what(), "cannot be modified"));

    co_await c.delete_lens(clone.lens_id);
    co_await c.delete_lens(registered.lens_id);
    CHECK(lens_ids(co_await c.list_lenses()) == builtin_ids());
    auto gone = co_await expect_error(errc::not_found, [&] { return c.get_lens(clone.lens_id); });
    CHECK(contains(gone.what(), "lens/metadata"));
    (void)f;
}

task<void> sessions_walk(fixture& f, lens::client& c)
{
    const std::string key = f.server.api_key();
    auto info = co_await c.sessions_info();
    CHECK(info.is_object());

    auto created = co_await c.create_session(std::string(emu::builtin::mailbox));
    CHECK(created.session_id.starts_with("lsn-"));
    CHECK(created.lens_id == emu::builtin::mailbox);
    CHECK(created.status == lens::session_status::registered);
    CHECK(created.status_raw == "LensSessionStatus.SESSION_STATUS_REGISTERED");
    CHECK((created.session_endpoint.starts_with("ws://") || created.session_endpoint.starts_with("wss://")));
    CHECK(contains(created.session_endpoint, created.session_id));
    CHECK(f.stats().live_sessions == 1);

    auto got = co_await c.get_session(created.session_id);
    CHECK(got.session_id == created.session_id);
    CHECK(got.status == lens::session_status::running);
    CHECK(got.status_raw == "SESSION_STATUS_RUNNING");
    CHECK(!got.lens_name.empty());
    CHECK(got.registration_timestamp.has_value());
    CHECK(!got.raw.contains("api_key"));
    CHECK(!contains(serialized(got), "api_key"));
    CHECK(!contains(serialized(got), key));

    auto listed = co_await c.list_sessions();
    bool found = false;
    for (auto& s : listed) {
        CHECK(!s.raw.contains("api_key"));
        CHECK(!contains(serialized(s), key));
        found = found || s.session_id == created.session_id;
    }
    CHECK(found);

    // events/process: the WebSocket's reply over REST, scrubbed too.
    auto status = co_await c.process_event(created.session_id, "session.status", nullptr);
    CHECK(status.is_object());
    CHECK(!contains(json::serialize(status), "api_key"));
    CHECK(!contains(json::serialize(status), key));
    auto validated = co_await c.process_event(created.session_id, "session.validate", nullptr);
    CHECK(json::serialize(validated).find("\"is_valid\":true") != std::string::npos);
    auto read = co_await c.process_event(created.session_id, "session.read", client_id_data("it"));
    CHECK(json::serialize(read).find("session started") != std::string::npos);

    auto destroyed = co_await c.destroy_session(created.session_id);
    CHECK(destroyed.session_id == created.session_id);
    CHECK(destroyed.status == lens::session_status::stale);
    CHECK(!contains(serialized(destroyed), key));
    CHECK(f.stats().live_sessions == 0);
    auto after = co_await c.get_session(created.session_id);
    CHECK(after.status == lens::session_status::stale);
    // Destroy is idempotent.
    CHECK((co_await c.destroy_session(created.session_id)).status == lens::session_status::stale);
}

task<void> files_walk(fixture& f, lens::client& c)
{
    temp_dir dir;
    const std::string csv = sample_csv();
    const std::string bytes = binary_bytes();
    const std::string jsonl = "{\"a\": 1}\n{\"a\": 2}\n";
    auto csv_path = dir.write("sensor_data.csv", csv);

    auto from_disk = co_await c.upload_file(csv_path);
    CHECK(from_disk.file_id == "sensor_data.csv");
    CHECK(!from_disk.file_uid.empty());

    auto from_memory = co_await c.upload_file(std::string("frame.png"), bytes);
    CHECK(from_memory.file_id == "frame.png");
    // A path given as the in-memory name is reduced to its basename.
    auto named_by_path = co_await c.upload_file(std::string("some/dir/records.jsonl"), jsonl);
    CHECK(named_by_path.file_id == "records.jsonl");

    auto b64 = co_await c.upload_file_base64(std::string("encoded.jpg"), bytes);
    CHECK(b64.file_id == "encoded.jpg");

    auto listed = co_await c.list_files();
    std::set<std::string> ids;
    for (auto& r : listed)
        ids.insert(r.file_id);
    CHECK(ids.size() == 4);
    CHECK(ids.count("sensor_data.csv") == 1);
    CHECK(ids.count("encoded.jpg") == 1);

    auto meta = co_await c.get_file("frame.png");
    CHECK(meta.file_id == "frame.png");
    REQUIRE(meta.file_size.has_value());
    CHECK(*meta.file_size == bytes.size());
    auto info = co_await c.files_info();
    CHECK(info.is_object());

    CHECK(co_await c.download_file("sensor_data.csv") == csv);
    CHECK(co_await c.download_file("frame.png") == bytes);
    CHECK(co_await c.download_file("records.jsonl") == jsonl);
    CHECK(co_await c.download_file("encoded.jpg") == bytes); // decoded by the server

    co_await c.delete_file("frame.png");
    CHECK((co_await c.list_files()).size() == 3);
    auto missing = co_await expect_error(errc::not_found, [&] { return c.get_file("frame.png"); });
    CHECK(contains(missing.what(), "files/metadata"));
    auto missing_download = co_await expect_error(errc::not_found, [&] { return c.download_file("frame.png"); });
    CHECK(contains(missing_download.what(), "files/download"));
    auto missing_delete = co_await expect_error(errc::not_found, [&] { return c.delete_file("frame.png"); });
    CHECK(contains(missing_delete.what(), "files/delete"));

    // Unknown extensions are rejected before anything is sent.
    const auto requests = f.stats().http_requests;
    auto gif = dir.write("animation.gif", "GIF89a");
    auto e1 = co_await expect_error(errc::invalid_argument, [&] { return c.upload_file(gif); });
    CHECK(contains(e1.what(), "files/upload"));
    CHECK(contains(e1.what(), "animation.gif"));
    auto e2 = co_await expect_error(errc::invalid_argument,
                                    [&] { return c.upload_file(std::string("tool.exe"), std::string("MZ")); });
    CHECK(contains(e2.what(), "files/upload"));
    auto e3 = co_await expect_error(errc::invalid_argument, [&] {
        return c.upload_file_base64(std::string("noextension"), std::string("x"));
    });
    CHECK(contains(e3.what(), "files/upload-base64"));
    // A missing file with an accepted extension fails locally too.
    auto e4 = co_await expect_error(errc::invalid_argument, [&] { return c.upload_file(dir.path / "absent.csv"); });
    CHECK(contains(e4.what(), "absent.csv"));
    CHECK(f.stats().http_requests == requests);
}

task<void> happy_path(fixture& f)
{
    auto c = f.make_client();
    co_await lenses_walk(f, c);
    co_await sessions_walk(f, c);
    co_await files_walk(f, c);
}

} // namespace

TEST_CASE("rest: lenses, sessions, events and files over http")
{
    fixture f;
    CHECK(f.cfg.endpoint.starts_with("http://127.0.0.1:"));
    f.run([&] { return happy_path(f); });
}

TEST_CASE("rest: lenses, sessions, events and files over https")
{
    fixture f(lens::test::tls_options());
    CHECK(f.cfg.endpoint.starts_with("https://127.0.0.1:"));
    REQUIRE(!f.cfg.ca_file.empty());
    f.run([&] { return happy_path(f); });
}

TEST_CASE("rest: https with a host name the certificate names (localhost)")
{
    fixture f(lens::test::tls_options());
    f.cfg.endpoint = with_host(f.server.endpoint(), "localhost");
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        CHECK((co_await c.list_lenses()).size() == 3);
    });
}

TEST_CASE("rest: after the first TLS handshake with a host, the client's other connections resume its session")
{
    fixture f(lens::test::tls_options());
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        CHECK((co_await c.list_lenses()).size() == 3); // the full handshake; its reply brings the ticket
        CHECK(c.stats().tls_handshakes == 1);
        CHECK(c.stats().tls_resumed == 0);
        auto record = co_await c.create_session(std::string(lens::emulator::builtin::mailbox));
        std::vector<lens::session> channels;
        for (int i = 0; i < 3; ++i)
            channels.push_back(co_await c.open_session(record)); // three wss connections
        co_await channels.back().status();
        auto stream = c.events(record.session_id);
        co_await stream.connect(); // and an SSE one
        const auto s = c.stats();
        CHECK(s.tls_handshakes == 5);
        CHECK(s.tls_resumed == 4);
        co_await c.destroy_session(record.session_id);
    });
}

// ---- bad input ----------------------------------------------------------------------------

TEST_CASE("rest: a wrong API key is unauthorized, named, final, and never printed")
{
    fixture f;
    const std::string wrong = "wrong-key-0123456789-SECRET";
    f.cfg.api_key = wrong;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::unauthorized, [&] { return c.list_sessions(); });
        CHECK(e.http_status() == 401);
        CHECK(contains(e.what(), "401"));
        CHECK(contains(e.what(), "sessions/metadata"));
        REQUIRE(!e.server_errors().empty());
        check_no_secret(e, wrong);
        check_no_secret(e, f.server.api_key());
        CHECK(f.stats().http_requests == 1); // 4xx is final: no retry

        auto e2 = co_await expect_error(errc::unauthorized,
                                        [&] { return c.create_session(std::string(emu::builtin::mailbox)); });
        CHECK(contains(e2.what(), "sessions/create: 401"));
        check_no_secret(e2, wrong);
        CHECK(f.stats().live_sessions == 0);

        // No key at all is refused the same way.
        auto keyless = f.cfg;
        keyless.api_key.clear();
        auto c2 = f.make_client(keyless);
        auto e3 = co_await expect_error(errc::unauthorized, [&] { return c2.list_lenses(); });
        CHECK(contains(e3.what(), "lens/metadata"));
    });
}

TEST_CASE("rest: unknown ids are not_found")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e1 = co_await expect_error(errc::not_found, [&] { return c.get_session("lsn-does-not-exist"); });
        CHECK(e1.http_status() == 404);
        CHECK(contains(e1.what(), "sessions/metadata: 404"));
        CHECK(contains(e1.what(), "lsn-does-not-exist"));
        auto e2 = co_await expect_error(errc::not_found, [&] { return c.destroy_session("lsn-does-not-exist"); });
        CHECK(contains(e2.what(), "sessions/destroy"));
        auto e3 = co_await expect_error(errc::not_found,
                                        [&] { return c.process_event("lsn-does-not-exist", "session.status", nullptr); });
        CHECK(contains(e3.what(), "sessions/events/process"));
        auto e4 = co_await expect_error(errc::not_found, [&] { return c.create_session("lns-no-such-lens"); });
        CHECK(contains(e4.what(), "sessions/create"));
        auto e5 = co_await expect_error(errc::not_found, [&] { return c.get_lens("lns-no-such-lens"); });
        CHECK(contains(e5.what(), "lens/metadata"));
        CHECK(f.stats().http_requests == 5); // none retried
    });
}

TEST_CASE("rest: the session cap answers 200 with errors: api_error")
{
    emu::options o;
    o.max_sessions = 2;
    fixture f(o);
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        const std::string lens_id(emu::builtin::mailbox);
        auto s1 = co_await c.create_session(lens_id);
        auto s2 = co_await c.create_session(lens_id);
        const auto before = f.stats().http_requests;
        auto e = co_await expect_error(errc::api_error, [&] { return c.create_session(lens_id); });
        CHECK(e.http_status() == 200);
        CHECK(contains(e.what(), "sessions/create"));
        CHECK(contains(e.what(), "Failed to allocate lens runner"));
        REQUIRE(e.server_errors().size() == 1);
        CHECK(contains(e.server_errors()[0].message, "Failed to allocate lens runner"));
        CHECK(f.stats().http_requests == before + 1); // not retried
        CHECK(f.stats().live_sessions == 2);
        // Destroying one frees a runner.
        co_await c.destroy_session(s1.session_id);
        auto s3 = co_await c.create_session(lens_id);
        CHECK(s3.session_id != s2.session_id);
    });
}

TEST_CASE("rest: a 429 storm ends in rate_limited after exactly max_attempts requests")
{
    fixture f;
    f.knobs().rest.fail_next = 1000;
    f.knobs().rest.fail_status = 429;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::rate_limited, [&] { return c.list_sessions(); });
        CHECK(e.http_status() == 429);
        CHECK(contains(e.what(), "sessions/metadata: 429"));
        CHECK(f.stats().http_requests == f.cfg.retry.max_attempts);

        // A create is retried on 429 too (the server refused it unprocessed).
        auto e2 = co_await expect_error(errc::rate_limited,
                                        [&] { return c.create_session(std::string(emu::builtin::mailbox)); });
        CHECK(contains(e2.what(), "sessions/create"));
        CHECK(f.stats().http_requests == 2 * f.cfg.retry.max_attempts);

        // max_attempts = 1: no retry at all.
        auto once = f.cfg;
        once.retry.max_attempts = 1;
        auto c1 = f.make_client(once);
        co_await expect_error(errc::rate_limited, [&] { return c1.lens_info(); });
        CHECK(f.stats().http_requests == 2 * f.cfg.retry.max_attempts + 1);
    });
}

TEST_CASE("rest: 429 then success: Retry-After is honoured")
{
    fixture f;
    f.knobs().rest.fail_next = 1;
    f.knobs().rest.fail_status = 429;
    f.knobs().rest.retry_after_seconds = 1;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto lenses = co_await c.list_lenses();
        CHECK(lenses.size() == 3);
        CHECK(f.stats().http_requests == 2);
    });
}

TEST_CASE("rest: a Retry-After beyond the deadline fails at once, not after the deadline")
{
    fixture f;
    f.knobs().rest.fail_next = 1000;
    f.knobs().rest.fail_status = 429;
    f.knobs().rest.retry_after_seconds = 30;
    f.cfg.timeout = 2s;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::rate_limited, [&] { return c.list_lenses(); });
        CHECK(contains(e.what(), "lens/metadata"));
        CHECK(f.stats().http_requests == 1);
    });
}

TEST_CASE("rest: a 503 once on a GET is retried and succeeds")
{
    fixture f;
    f.knobs().rest.fail_next = 1;
    f.knobs().rest.fail_status = 503;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto lenses = co_await c.list_lenses();
        CHECK(lenses.size() == 3);
        CHECK(f.stats().http_requests == 2);
    });
}

TEST_CASE("rest: a 503 on sessions/create is not retried")
{
    fixture f;
    f.knobs().rest.fail_next = 1;
    f.knobs().rest.fail_status = 503;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::server_error,
                                       [&] { return c.create_session(std::string(emu::builtin::mailbox)); });
        CHECK(e.http_status() == 503);
        CHECK(contains(e.what(), "sessions/create: 503"));
        CHECK(f.stats().http_requests == 1);
        CHECK(f.stats().live_sessions == 0);
        // A 5xx storm on a GET ends in server_error after max_attempts.
        f.knobs().rest.fail_next = 1000;
        auto e2 = co_await expect_error(errc::server_error, [&] { return c.list_sessions(); });
        CHECK(contains(e2.what(), "sessions/metadata"));
        CHECK(f.stats().http_requests == 1 + f.cfg.retry.max_attempts);
    });
}

TEST_CASE("rest: every Nth request failing is absorbed by retries")
{
    fixture f;
    f.knobs().rest.fail_every_nth = 3;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        for (int i = 0; i < 6; ++i)
            CHECK((co_await c.list_lenses()).size() == 3);
        CHECK(f.stats().http_requests == 8); // requests 3 and 6 failed and were repeated
    });
}

TEST_CASE("rest: a dropped connection on a GET is retried and succeeds")
{
    fixture f;
    f.knobs().rest.drop_next = 1;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto sessions = co_await c.list_sessions();
        CHECK(sessions.empty());
        CHECK(f.stats().http_requests == 2);
    });
}

TEST_CASE("rest: a dropped connection on sessions/create is connection_lost, not retried")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        // Warm the pool first: the drop then hits a reused keep-alive connection.
        CHECK((co_await c.list_lenses()).size() == 3);
        f.knobs().rest.drop_next = 1;
        auto e = co_await expect_error(errc::connection_lost,
                                       [&] { return c.create_session(std::string(emu::builtin::mailbox)); });
        CHECK(contains(e.what(), "sessions/create"));
        CHECK(f.stats().http_requests == 2);
        CHECK(f.stats().live_sessions == 0);
        // The client recovers with a fresh connection.
        auto s = co_await c.create_session(std::string(emu::builtin::mailbox));
        CHECK(s.session_id.starts_with("lsn-"));
    });
}

TEST_CASE("rest: an unreachable endpoint is connection_failed, quickly")
{
    fixture f;
    const auto port = closed_port(f.ctx);
    f.cfg.endpoint = "http://127.0.0.1:" + std::to_string(port) + "/v0.5";
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::connection_failed, [&] { return c.list_lenses(); });
        CHECK(contains(e.what(), "lens/metadata"));
        CHECK(contains(e.what(), std::to_string(port)));
        // A create may be retried here: the request surely never left.
        auto e2 = co_await expect_error(errc::connection_failed,
                                        [&] { return c.create_session(std::string(emu::builtin::mailbox)); });
        CHECK(contains(e2.what(), "sessions/create"));
        CHECK(f.stats().http_requests == 0);
    });
}

TEST_CASE("rest: an HTML error page is a server_error that says so")
{
    fixture f;
    f.knobs().rest.html_next = 1000;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::server_error, [&] { return c.list_sessions(); });
        CHECK(e.http_status() == 502);
        CHECK(contains(e.what(), "sessions/metadata: 502"));
        CHECK(contains(e.what(), "non-JSON"));
        CHECK(contains(e.what(), "text/html"));
        CHECK(f.stats().http_requests == f.cfg.retry.max_attempts);

        auto e2 = co_await expect_error(errc::server_error,
                                        [&] { return c.create_session(std::string(emu::builtin::mailbox)); });
        CHECK(contains(e2.what(), "sessions/create: 502"));
        CHECK(contains(e2.what(), "text/html"));
        CHECK(f.stats().http_requests == f.cfg.retry.max_attempts + 1);
    });
}

TEST_CASE("rest: a 200 with a body that is not JSON is invalid_response")
{
    fixture f;
    f.knobs().rest.garbage_next = 1;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::invalid_response,
                                       [&] { return c.create_session(std::string(emu::builtin::mailbox)); });
        CHECK(contains(e.what(), "sessions/create"));
        CHECK(contains(e.what(), "non-JSON"));
        CHECK(f.stats().http_requests == 1);
        // The connection and the client stay usable.
        CHECK((co_await c.list_lenses()).size() == 3);
    });
}

TEST_CASE("rest: a reply over max_reply_size is body_too_large")
{
    fixture f;
    f.cfg.max_reply_size = 4096;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        f.knobs().rest.oversize_body = 4000; // under the limit: fine
        auto fits = co_await c.lens_info();
        CHECK(fits.is_object());

        f.knobs().rest.oversize_body = 64 * 1024;
        auto e = co_await expect_error(errc::body_too_large, [&] { return c.lens_info(); });
        CHECK(contains(e.what(), "lens/info"));
        CHECK(contains(e.what(), "4096"));
        CHECK(f.stats().http_requests == 2); // not retried
        CHECK((co_await c.list_lenses()).size() == 3);
    });
}

TEST_CASE("rest: a server slower than the deadline is a timeout within the deadline")
{
    fixture f;
    f.cfg.timeout = 300ms;
    f.knobs().rest.delay = 10s;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::timeout, [&] { return c.list_lenses(); });
        CHECK(contains(e.what(), "lens/metadata"));

        auto e2 = co_await expect_error(errc::timeout,
                                        [&] { return c.create_session(std::string(emu::builtin::mailbox)); });
        CHECK(contains(e2.what(), "sessions/create"));
        CHECK(f.stats().http_requests == 2);
    });
}

TEST_CASE("rest: a call raced against a timer is cancelled and the client stays usable")
{
    using namespace boost::asio::experimental::awaitable_operators;
    fixture f;
    f.knobs().rest.delay = 10s;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        asio::steady_timer timer(f.ctx, 100ms);
        auto winner = co_await (c.list_lenses() || timer.async_wait(asio::use_awaitable));
        CHECK(winner.index() == 1);
        f.knobs().rest.delay = 0ms;
        CHECK((co_await c.list_lenses()).size() == 3);
    });
}

TEST_CASE("rest: TLS without the emulator's CA is certificate_rejected, naming the certificate, not retried")
{
    fixture f(lens::test::tls_options());
    f.cfg.ca_file.clear();
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::certificate_rejected, [&] { return c.list_lenses(); });
        CHECK(contains(e.what(), "lens/metadata"));
        CHECK(contains(e.what(), "certificate"));
        CHECK(f.stats().http_requests == 0);
        CHECK(f.stats().tcp_connections == 1); // a configuration problem: one attempt only
    });
}

TEST_CASE("rest: TLS with a host name the certificate does not name is certificate_rejected")
{
    fixture f(lens::test::tls_options());
    // glibc resolves "127.1" to 127.0.0.1, but the certificate names only localhost and 127.0.0.1.
    f.cfg.endpoint = with_host(f.server.endpoint(), "127.1");
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::certificate_rejected, [&] { return c.list_lenses(); });
        CHECK(contains(e.what(), "lens/metadata"));
        CHECK(contains(e.what(), "TLS"));
        CHECK(f.stats().http_requests == 0);
    });
}

TEST_CASE("rest: a server that never answers the TLS handshake times out within the deadline")
{
    fixture f;
    // Listening but never accepting: the kernel completes TCP, nobody ever speaks TLS.
    asio::ip::tcp::acceptor silent(f.ctx, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    f.cfg.endpoint = "https://127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/v0.5";
    f.cfg.timeout = 500ms;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::timeout, [&] { return c.list_lenses(); });
        CHECK(contains(e.what(), "lens/metadata"));
        CHECK(contains(e.what(), "TLS"));
    });
}

TEST_CASE("rest: connect_timeout bounds each connection attempt within the call's deadline")
{
    fixture f;
    asio::ip::tcp::acceptor silent(f.ctx, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    f.cfg.endpoint = "https://127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/v0.5";
    f.cfg.timeout = 10s;
    f.cfg.connect_timeout = 200ms;
    f.cfg.retry.max_attempts = 3;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error([&] { return c.list_lenses(); });
        // Three attempts of 200 ms and two short backoffs, far from the 10 s deadline.
        CHECK((e.code() == lens::make_error_code(errc::timeout) ||
               e.code() == lens::make_error_code(errc::connection_failed)));
        CHECK(contains(e.what(), "lens/metadata"));
        CHECK(contains(e.what(), "TLS"));
    });
}

TEST_CASE("rest: a CA file that does not exist is rejected clearly")
{
    fixture f(lens::test::tls_options());
    f.cfg.ca_file = "/nonexistent/lens-ca.pem";
    bool threw = false;
    try {
        auto c = f.make_client();
    } catch (const lens::error& e) {
        threw = true;
        CHECK(e.code() == lens::make_error_code(errc::invalid_argument));
        CHECK(contains(e.what(), "/nonexistent/lens-ca.pem"));
    }
    CHECK(threw);
}

TEST_CASE("rest: https to a plain http server fails with connection_failed")
{
    fixture f;
    f.cfg.endpoint = "https://127.0.0.1:" + std::to_string(f.server.port()) + "/v0.5";
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::connection_failed, [&] { return c.list_lenses(); });
        CHECK(contains(e.what(), "lens/metadata"));
    });
}

namespace {

void keep_alive_case(lens::emulator::options opts)
{
    fixture f(opts);
    auto proxy = std::make_shared<counting_proxy>(f.ctx, f.server.port());
    proxy->start();
    // The proxy listens on 127.0.0.1 too, so the emulator's certificate still matches.
    f.cfg.endpoint = std::string(opts.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(proxy->port()) +
                     "/v0.5";
    f.run([&]() -> task<void> {
        proxy_stopper stop_at_exit(proxy);
        auto c = f.make_client();
        for (int i = 0; i < 5; ++i)
            CHECK((co_await c.list_lenses()).size() == 3);
        auto s = co_await c.create_session(std::string(emu::builtin::mailbox));
        co_await c.get_session(s.session_id);
        auto copy = c; // copies share the pool
        co_await copy.destroy_session(s.session_id);
        CHECK(f.stats().http_requests == 8);
        CHECK(proxy->accepted() == 1);

        // An error reply with keep-alive does not cost the connection either.
        f.knobs().rest.fail_next = 1;
        CHECK((co_await c.list_lenses()).size() == 3);
        CHECK(proxy->accepted() == 1);

        // A dropped connection is replaced, once.
        f.knobs().rest.drop_next = 1;
        CHECK((co_await c.list_lenses()).size() == 3);
        CHECK((co_await c.list_lenses()).size() == 3);
        CHECK(proxy->accepted() == 2);
    });
}

} // namespace

TEST_CASE("rest: sequential calls reuse one keep-alive connection (http)")
{
    keep_alive_case({});
}

TEST_CASE("rest: sequential calls reuse one keep-alive connection (https)")
{
    keep_alive_case(lens::test::tls_options());
}

TEST_CASE("rest: large and oddly named files round-trip byte for byte")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        std::string big = binary_bytes();
        while (big.size() < 8 * 1024 * 1024)
            big += big;
        auto up = co_await c.upload_file(std::string("big video.mp4"), big);
        CHECK(up.file_id == "big video.mp4");
        auto meta = co_await c.get_file("big video.mp4");
        CHECK(meta.file_size == big.size());
        CHECK(co_await c.download_file("big video.mp4") == big);
        auto b64 = co_await c.upload_file_base64(std::string("caf\xc3\xa9 #1?.txt"), big.substr(0, 100000));
        CHECK(b64.file_id == "caf\xc3\xa9 #1?.txt");
        CHECK(co_await c.download_file("caf\xc3\xa9 #1?.txt") == big.substr(0, 100000));
        co_await c.delete_file("caf\xc3\xa9 #1?.txt");
        CHECK((co_await c.list_files()).size() == 1);
    });
}

TEST_CASE("rest: a 429 storm with a Retry-After never outlives the call's deadline")
{
    fixture f;
    f.knobs().rest.fail_next = 1000;
    f.knobs().rest.fail_status = 429;
    f.knobs().rest.retry_after_seconds = 1;
    f.cfg.timeout = 2500ms;
    f.cfg.retry.max_attempts = 10;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::rate_limited, [&] { return c.list_sessions(); });
        CHECK(f.stats().http_requests == 3);
        CHECK(contains(e.what(), "429"));
    });
}
