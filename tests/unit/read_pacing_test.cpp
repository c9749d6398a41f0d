// Unit tests of the read pacing rule (detail/read_pacing.hpp): a session defers the read
// after its write only while another session of its context awaits replies too, and the
// per-context tally counts each session once, whatever order things end in.
#include "detail/read_pacing.hpp"

#include <boost/asio/io_context.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <optional>

using lens::detail::awaiting_tally;
using lens::detail::read_pacing;

TEST_CASE("read_pacing: a session alone with requests in flight reads at once - with company it waits a pass")
{
    auto tally = std::make_shared<awaiting_tally>(0);
    read_pacing a(tally), b(tally);
    CHECK_FALSE(a.defer_read()); // nothing awaited anywhere

    a.awaiting(true);
    CHECK_FALSE(a.defer_read()); // alone: the read starts right after the write
    CHECK_FALSE(b.defer_read()); // b awaits nothing: it has no write to follow

    b.awaiting(true);
    CHECK(a.defer_read());
    CHECK(b.defer_read());

    b.awaiting(false);
    CHECK_FALSE(a.defer_read());
    CHECK(tally->load() == 1);
}

TEST_CASE("read_pacing: a session counts once however often it says so - and leaves the tally when destroyed")
{
    auto tally = std::make_shared<awaiting_tally>(0);
    read_pacing a(tally);
    a.awaiting(true);
    a.awaiting(true);
    CHECK(tally->load() == 1);
    a.awaiting(false);
    a.awaiting(false);
    CHECK(tally->load() == 0); // no wrap below zero

    std::optional<read_pacing> b(std::in_place, tally);
    b->awaiting(true);
    a.awaiting(true);
    CHECK(a.defer_read());
    b.reset(); // a session destroyed with requests in flight
    CHECK(tally->load() == 1);
    CHECK_FALSE(a.defer_read());
}

TEST_CASE("read_pacing: each execution context has its own tally - and it outlives the context")
{
    std::shared_ptr<awaiting_tally> first, again, other;
    {
        boost::asio::io_context one, two;
        first = lens::detail::awaiting_tally_of(one.get_executor());
        again = lens::detail::awaiting_tally_of(one.get_executor());
        other = lens::detail::awaiting_tally_of(two.get_executor());
    }
    CHECK(first == again);
    CHECK(first != other);
    read_pacing late(first); // a session object kept past its io_context
    late.awaiting(true);
    CHECK(first->load() == 1);
}
