// `lens::with_session` and `lens::scoped_session` destroy their session on every
// exit path: normal return, exception, cancellation, and (for scoped_session) being
// dropped without destroy(). Checked against the emulator's own bookkeeping.
#include "integration/fixture.hpp"

#include <lens/scoped_session.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>

#include <optional>
#include <stdexcept>

namespace {

namespace asio = boost::asio;
namespace emu = lens::emulator;
using lens::task;
using lens::test::contains;
using lens::test::fixture;
using namespace std::chrono_literals;

const std::string mailbox(emu::builtin::mailbox);

/// The status the emulator reports for `id` (through a fresh REST call).
task<lens::session_status> status_of(lens::client& c, const std::string& id)
{
    auto r = co_await c.get_session(id);
    co_return r.status;
}

} // namespace

TEST_CASE("scoped session: with_session destroys the session after a normal return")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        std::string seen;
        int value = co_await lens::with_session(c, mailbox, [&](const lens::session_record& s) -> task<int> {
            seen = s.session_id;
            CHECK(f.stats().live_sessions == 1);
            CHECK(co_await status_of(c, s.session_id) == lens::session_status::running);
            co_return 42;
        });
        CHECK(value == 42);
        REQUIRE(!seen.empty());
        CHECK(f.stats().live_sessions == 0);
        CHECK(co_await status_of(c, seen) == lens::session_status::stale);

        // A body returning void works the same way.
        std::string seen2;
        co_await lens::with_session(c, mailbox, [&](const lens::session_record& s) -> task<void> {
            seen2 = s.session_id;
            co_return;
        });
        CHECK(f.stats().live_sessions == 0);
        CHECK(co_await status_of(c, seen2) == lens::session_status::stale);
    });
}

TEST_CASE("scoped session: with_session destroys the session when the body throws, and rethrows")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        std::string seen;
        bool caught = false;
        try {
            co_await lens::with_session(c, mailbox, [&](const lens::session_record& s) -> task<void> {
                seen = s.session_id;
                throw std::runtime_error("body failed");
                co_return;
            });
        } catch (const std::runtime_error& e) {
            caught = std::string(e.what()) == "body failed";
        }
        CHECK(caught);
        REQUIRE(!seen.empty());
        CHECK(f.stats().live_sessions == 0);
        CHECK(co_await status_of(c, seen) == lens::session_status::stale);

        // A lens::error from inside the body (a failed call) comes out unchanged.
        auto e = co_await lens::test::expect_error(lens::errc::not_found, [&] {
            return lens::with_session(c, mailbox, [&](const lens::session_record&) -> task<void> {
                co_await c.get_session("lsn-missing");
            });
        });
        CHECK(contains(e.what(), "sessions/metadata"));
        CHECK(f.stats().live_sessions == 0);
    });
}

TEST_CASE("scoped session: with_session destroys the session when the caller is cancelled")
{
    using namespace boost::asio::experimental::awaitable_operators;
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        std::string seen;
        bool body_finished = false;
        asio::steady_timer short_timer(f.ctx, 100ms);
        auto body = [&](const lens::session_record& s) -> task<void> {
            seen = s.session_id;
            asio::steady_timer long_wait(co_await asio::this_coro::executor, 20s);
            co_await long_wait.async_wait(asio::use_awaitable); // cancelled: throws operation_aborted
            body_finished = true;
        };
        auto winner = co_await (lens::with_session(c, mailbox, body) || short_timer.async_wait(asio::use_awaitable));
        CHECK(winner.index() == 1);
        CHECK(!body_finished);
        REQUIRE(!seen.empty());
        // `||` completes only once both sides are done: the destroy already happened.
        CHECK(f.stats().live_sessions == 0);
        CHECK(co_await status_of(c, seen) == lens::session_status::stale);
    });
}

TEST_CASE("scoped session: cancelled while the destroy itself is slow still destroys")
{
    using namespace boost::asio::experimental::awaitable_operators;
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        std::string seen;
        asio::steady_timer short_timer(f.ctx, 50ms);
        auto body = [&](const lens::session_record& s) -> task<void> {
            seen = s.session_id;
            f.knobs().rest.delay = 200ms; // the destroy call will run after the cancellation
            asio::steady_timer long_wait(co_await asio::this_coro::executor, 20s);
            co_await long_wait.async_wait(asio::use_awaitable);
        };
        auto winner = co_await (lens::with_session(c, mailbox, body) || short_timer.async_wait(asio::use_awaitable));
        CHECK(winner.index() == 1);
        f.knobs().rest.delay = 0ms;
        REQUIRE(!seen.empty());
        CHECK(f.stats().live_sessions == 0);
    });
}

TEST_CASE("scoped session: a scoped_session in a cancelled coroutine is still destroyed")
{
    using namespace boost::asio::experimental::awaitable_operators;
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();

        // Unwound by the cancellation: the destructor's detached destroy does it.
        std::string id;
        auto unwound = [&]() -> task<void> {
            auto s = co_await lens::scoped_session::create(c, mailbox);
            id = s.id();
            asio::steady_timer long_wait(co_await asio::this_coro::executor, 20s);
            co_await long_wait.async_wait(asio::use_awaitable); // throws operation_aborted
            co_await s.destroy();                               // not reached
        };
        asio::steady_timer t1(f.ctx, 50ms);
        auto w1 = co_await (unwound() || t1.async_wait(asio::use_awaitable));
        CHECK(w1.index() == 1);
        REQUIRE(!id.empty());
        CHECK(co_await lens::test::eventually([&] { return f.stats().live_sessions == 0; }));

        // Catching the cancellation and destroying explicitly, as documented: done before `||` completes.
        std::string id2;
        auto explicit_destroy = [&]() -> task<void> {
            auto s = co_await lens::scoped_session::create(c, mailbox);
            id2 = s.id();
            asio::steady_timer long_wait(co_await asio::this_coro::executor, 20s);
            boost::system::error_code ec;
            co_await long_wait.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            co_await asio::this_coro::reset_cancellation_state();
            co_await s.destroy();
        };
        asio::steady_timer t2(f.ctx, 50ms);
        auto w2 = co_await (explicit_destroy() || t2.async_wait(asio::use_awaitable));
        CHECK(w2.index() == 1);
        REQUIRE(!id2.empty());
        CHECK(f.stats().live_sessions == 0);
        CHECK(co_await status_of(c, id2) == lens::session_status::stale);
    });
}

TEST_CASE("scoped session: explicit destroy, idempotent, and release")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto s = co_await lens::scoped_session::create(c, mailbox);
        CHECK(s.id().starts_with("lsn-"));
        CHECK(s.record().lens_id == mailbox);
        CHECK(f.stats().live_sessions == 1);
        co_await s.destroy();
        CHECK(f.stats().live_sessions == 0);
        const auto requests = f.stats().http_requests;
        co_await s.destroy(); // a no-op
        CHECK(f.stats().http_requests == requests);

        // release(): the session outlives its owner.
        std::string kept;
        {
            auto owned = co_await lens::scoped_session::create(c, mailbox);
            kept = owned.release().session_id;
        }
        // A round trip later nothing destroyed it (a detached destroy would be ahead of it).
        CHECK(co_await status_of(c, kept) == lens::session_status::running);
        CHECK(f.stats().live_sessions == 1);
        co_await c.destroy_session(kept);
    });
}

TEST_CASE("scoped session: a scoped_session dropped without destroy() is destroyed in the background")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        std::string id;
        {
            auto s = co_await lens::scoped_session::create(c, mailbox);
            id = s.id();
            CHECK(f.stats().live_sessions == 1);
        } // dropped here: the destroy is spawned on the client's executor
        // The detached destroy runs while this coroutine keeps yielding the context.
        CHECK(co_await lens::test::eventually([&] { return f.stats().live_sessions == 0; }));
        CHECK(co_await status_of(c, id) == lens::session_status::stale);

        // Moved-from owners do not destroy twice; the moved-to one does.
        {
            auto a = co_await lens::scoped_session::create(c, mailbox);
            auto b = std::move(a);
            id = b.id();
        }
        CHECK(co_await lens::test::eventually([&] { return f.stats().live_sessions == 0; }));
        CHECK(co_await status_of(c, id) == lens::session_status::stale);
    });
}

TEST_CASE("scoped session: a scoped_session dropped by an exception is destroyed")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        std::string id;
        bool caught = false;
        try {
            auto s = co_await lens::scoped_session::create(c, mailbox);
            id = s.id();
            co_await c.get_session("lsn-missing"); // throws not_found; `s` unwinds
        } catch (const lens::error& e) {
            caught = e.code() == lens::make_error_code(lens::errc::not_found);
        }
        CHECK(caught);
        REQUIRE(!id.empty());
        CHECK(co_await lens::test::eventually([&] { return f.stats().live_sessions == 0; }));
    });
}
