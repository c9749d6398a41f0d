// The REST client against hostile or broken servers (issue "Hardening"): each case
// reproduces one way a server could turn lens against its user and checks that it
// no longer can. Faults come from emulator knobs; nothing asserts wall-clock time.
#include "integration/fixture.hpp"

#include <lens/client.hpp>
#include <lens/detail/deadline.hpp>
#include <lens/event_stream.hpp>
#include <lens/retry.hpp>
#include <lens/session.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <memory>
#include <string>

namespace {

namespace asio = boost::asio;
namespace emu = lens::emulator;
using lens::errc;
using lens::task;
using lens::test::contains;
using lens::test::expect_error;
using lens::test::fixture;
using namespace std::chrono_literals;

/// Everything a caller can read of an error, for secret checks.
std::string everything_in(const lens::error& e)
{
    std::string all = e.what();
    all += '\n' + e.operation();
    for (const auto& d : e.server_errors())
        all += '\n' + d.code + '\n' + d.message + '\n' + d.suggestion + '\n' + d.error_uid;
    return all;
}

/// A 401 body quoting the key the way FastAPI apps do, and an errors list that
/// carries it under `api_key` and under an arbitrary name.
std::string leaking_bodies_detail(const std::string& key) { return R"({"detail": "invalid token )" + key + R"("})"; }

std::string leaking_bodies_errors(const std::string& key)
{
    return R"({"errors": [{"api_key": ")" + key + R"(", "code": "E1", "message": "bad key"},)"
           R"( {"code": "E2", "message": "token=)" + key + R"(", "extra": {"where": ")" + key + R"("}}]})";
}

/// `[{},{},...]` of about `bytes` bytes: 3 bytes per object, at least 16 once parsed.
std::string many_empty_objects(std::size_t bytes)
{
    std::string body = "[";
    while (body.size() + 4 < bytes)
        body += "{},";
    body += "{}]";
    return body;
}

/// 80,000 distinct error strings.
std::string many_distinct_errors(std::size_t n)
{
    std::string body = R"({"errors": [)";
    for (std::size_t i = 0; i < n; ++i) {
        if (i)
            body += ',';
        body += "\"error number " + std::to_string(i) + "\"";
    }
    body += "]}";
    return body;
}

} // namespace

TEST_CASE("hardening rest: the key a 401 body quotes never reaches the caller")
{
    fixture f;
    f.knobs().rest.fail_status = 401;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        const std::string key = f.cfg.api_key;

        f.knobs().rest.fail_next = 1;
        f.knobs().rest.fail_body = leaking_bodies_detail(key);
        auto e1 = co_await expect_error(errc::unauthorized, [&] { return c.list_lenses(); });
        CHECK(contains(e1.what(), "invalid token [redacted]"));
        CHECK(!contains(everything_in(e1), key));

        f.knobs().rest.fail_next = 1;
        f.knobs().rest.fail_body = leaking_bodies_errors(key);
        auto e2 = co_await expect_error(errc::unauthorized, [&] { return c.list_sessions(); });
        CHECK(contains(e2.what(), "bad key"));
        CHECK(!contains(everything_in(e2), key));

        // A body that is not JSON is quoted (an excerpt), redacted too.
        f.knobs().rest.fail_next = 1;
        f.knobs().rest.fail_body = "<html>bad token " + key + "</html>";
        auto e3 = co_await expect_error(errc::unauthorized, [&] { return c.lens_info(); });
        CHECK(contains(e3.what(), "[redacted]"));
        CHECK(!contains(everything_in(e3), key));
    });
}

TEST_CASE("hardening rest: records and raw replies are redacted at any depth")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        const std::string key = f.cfg.api_key;
        f.knobs().rest.body_next = R"({"info": {"nested": [{"note": "key is )" + key + R"("}], ")" + key +
                                   R"(": 1, "API_KEY": "x"}})";
        auto info = co_await c.lens_info();
        const std::string text = boost::json::serialize(info);
        CHECK(!contains(text, key));
        CHECK(!contains(text, "API_KEY"));
        CHECK(contains(text, "key is [redacted]"));
    });
}

TEST_CASE("hardening rest: 80000 distinct server errors give a bounded message at once")
{
    fixture f;
    f.knobs().rest.fail_next = 1;
    f.knobs().rest.fail_status = 400;
    f.knobs().rest.fail_body = many_distinct_errors(80000);
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(errc::http_error, [&] { return c.list_lenses(); });
        CHECK(e.server_errors().size() <= 64);
        CHECK(std::string_view(e.what()).size() <= 16 * 1024);
        CHECK(contains(e.what(), "error number 0"));
        CHECK(f.stats().http_requests == 1);
    });
}

TEST_CASE("hardening rest: a reply whose parsed form would explode is body_too_large")
{
    fixture f;
    f.cfg.max_reply_size = 1 << 20;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        // 1 MiB of `{},`: within max_reply_size, but ~350,000 objects need more than the
        // 8 MiB parse budget.
        f.knobs().rest.body_next = many_empty_objects(1 << 20);
        auto e = co_await expect_error(errc::body_too_large, [&] { return c.list_lenses(); });
        CHECK(contains(e.what(), "lens/metadata"));
        CHECK(contains(e.what(), "parsed reply"));
        // A body over max_reply_size is refused before parsing.
        f.knobs().rest.body_next = many_empty_objects(2 << 20);
        co_await expect_error(errc::body_too_large, [&] { return c.list_lenses(); });
        // The client stays usable.
        CHECK((co_await c.list_lenses()).size() == 3);
    });
}

TEST_CASE("hardening rest: Retry-After is clamped to max_server_delay")
{
    fixture f;
    f.cfg.timeout = 2s;
    f.knobs().rest.fail_status = 429;
    f.run([&]() -> task<void> {
        // 136 years: honoured as given, the retry would fall after the deadline and the
        // call would give up after one request. Clamped to 20 ms, it is retried.
        auto cfg = f.cfg;
        cfg.retry.backoff.max_server_delay = 20ms;
        auto c = f.make_client(cfg);
        f.knobs().rest.fail_next = 1;
        f.knobs().rest.retry_after_seconds = 4294967295u;
        CHECK((co_await c.list_lenses()).size() == 3);
        CHECK(f.stats().http_requests == 2);

        // With the default ceiling (60 s) and a 2 s deadline the same hint gives up at
        // once instead of sleeping past the deadline.
        auto c2 = f.make_client();
        f.knobs().rest.fail_next = 1;
        auto e = co_await expect_error(errc::rate_limited, [&] { return c2.list_lenses(); });
        CHECK(f.stats().http_requests == 3);
        CHECK(e.http_status() == 429);
    });
}

TEST_CASE("hardening rest: header values with control characters are refused before anything is sent")
{
    fixture f;
    auto bad_key = f.cfg;
    bad_key.api_key = f.cfg.api_key + "\r\nX-Injected: yes";
    try {
        auto c = f.make_client(bad_key);
        FAIL("a key with CR LF was accepted");
    } catch (const lens::error& e) {
        CHECK(e.code() == lens::make_error_code(errc::invalid_argument));
        CHECK(contains(e.what(), "API key"));
        CHECK(!contains(e.what(), f.cfg.api_key));
    }
    auto bad_agent = f.cfg;
    bad_agent.user_agent = "lens\nX-Injected: yes";
    CHECK_THROWS_AS(f.make_client(bad_agent), lens::error);
    CHECK(f.stats().tcp_connections == 0);
}

TEST_CASE("hardening rest: a huge timeout saturates instead of wrapping into the past")
{
    fixture f;
    f.cfg.timeout = std::chrono::milliseconds::max();
    f.cfg.connect_timeout = std::chrono::milliseconds::max();
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        CHECK((co_await c.list_lenses()).size() == 3);
    });
    const auto now = std::chrono::steady_clock::now();
    CHECK(lens::detail::deadline_after(now, std::chrono::milliseconds::max()) ==
          std::chrono::steady_clock::time_point::max());
}

TEST_CASE("hardening rest: a call outlives the last client copy, and a moved-from client fails clearly")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto ex = co_await asio::this_coro::executor;
        // The temporary client is gone before the call starts running.
        std::size_t lenses = 0;
        std::exception_ptr failure;
        bool done = false;
        asio::co_spawn(ex, lens::client(ex, f.cfg).list_lenses(),
                       [&](std::exception_ptr e, std::vector<lens::lens_record> r) {
                           failure = e;
                           lenses = r.size();
                           done = true;
                       });
        CHECK(co_await lens::test::eventually([&] { return done; }));
        CHECK(!failure);
        CHECK(lenses == 3);

        auto c = f.make_client();
        auto moved = std::move(c);
        auto e = co_await expect_error(errc::closed, [&] { return c.list_lenses(); });
        CHECK(contains(e.what(), "lens/metadata"));
        CHECK(contains(e.what(), "moved from"));
        CHECK_THROWS_AS(c.configuration(), lens::error);
        CHECK((co_await moved.list_lenses()).size() == 3);
    });
}

TEST_CASE("hardening rest: the key goes only to the REST host, and not in plain text when REST is https")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto ex = co_await asio::this_coro::executor;
        // A listener on another loopback address stands for another host.
        asio::ip::tcp::acceptor other(ex, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.2"), 0));
        bool contacted = false;
        other.async_accept([&](boost::system::error_code ec, asio::ip::tcp::socket) { contacted = !ec; });

        auto c = f.make_client();
        auto rec = co_await c.create_session(std::string(emu::builtin::mailbox));
        lens::session_record elsewhere = rec;
        elsewhere.session_endpoint = "ws://127.0.0.2:" + std::to_string(other.local_endpoint().port()) + "/ws";
        auto e = co_await expect_error(errc::invalid_argument, [&] { return c.open_session(elsewhere); });
        CHECK(contains(e.what(), "127.0.0.2"));
        CHECK(contains(e.what(), "session_hosts"));
        // The legacy entry point applies the same rule.
        co_await expect_error(errc::invalid_argument, [&] { return lens::session::open(f.cfg, elsewhere); });

        // Listed explicitly, the host is allowed (the connection is attempted).
        auto trusting = f.cfg;
        trusting.session_hosts.push_back("127.0.0.2");
        lens::session_options quick;
        quick.connect_timeout = 300ms;
        auto c2 = f.make_client(trusting);
        try {
            co_await c2.open_session(elsewhere, quick); // nobody answers the upgrade
        } catch (const lens::error&) {
        }
        CHECK(co_await lens::test::eventually([&] { return contacted; }));
        other.close();

        // The session endpoint on the REST host works.
        auto s = co_await c.open_session(rec);
        CHECK(s.is_connected());
        co_await c.destroy_session(rec.session_id);
    });
}

TEST_CASE("hardening rest: https REST refuses a plain ws session endpoint")
{
    fixture f(lens::test::tls_options());
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto rec = co_await c.create_session(std::string(emu::builtin::mailbox));
        auto plain = rec;
        plain.session_endpoint = "ws" + rec.session_endpoint.substr(rec.session_endpoint.find(':'));
        const auto upgrades = f.stats().ws_upgrades;
        auto e = co_await expect_error(errc::invalid_argument, [&] { return c.open_session(plain); });
        CHECK(contains(e.what(), "wss"));
        CHECK(f.stats().ws_upgrades == upgrades);
        co_await c.destroy_session(rec.session_id);
    });
}

TEST_CASE("hardening rest: sessions and streams opened from a client work over wss")
{
    fixture f(lens::test::tls_options());
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto rec = co_await c.create_session(std::string(emu::builtin::mailbox));
        auto s1 = co_await c.open_session(rec);
        auto s2 = co_await c.open_session(rec);
        auto stream = c.events(rec.session_id);
        co_await stream.connect();
        CHECK(s1.is_connected());
        CHECK(s2.is_connected());
        CHECK((co_await s1.status()).session_id == rec.session_id);
        co_await c.destroy_session(rec.session_id);
    });
}
