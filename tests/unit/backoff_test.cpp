// Unit tests of the backoff schedule: exact values, jitter bounds, cap, limit, reset.
#include <lens/backoff.hpp>

#include "unit/support.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <limits>
#include <vector>

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;

namespace {

using lens::test::exact_backoff;


lens::backoff::random_source constant(double u)
{
    return [u] { return u; };
}

} // namespace

TEST_SUITE("backoff")
{
    TEST_CASE("exact exponential schedule with jitter 0, capped at max")
    {
        lens::backoff b(exact_backoff(100ms, 1000ms), constant(0.7));
        std::vector<ms> got;
        for (int i = 0; i < 7; ++i)
            got.push_back(*b.next_delay());
        CHECK(got == std::vector<ms>{100ms, 200ms, 400ms, 800ms, 1000ms, 1000ms, 1000ms});
        CHECK(b.attempts() == 7);
    }

    TEST_CASE("fractional multiplier rounds down to whole milliseconds")
    {
        lens::backoff b(exact_backoff(200ms, 10s, 1.5));
        CHECK(*b.next_delay() == 200ms);
        CHECK(*b.next_delay() == 300ms);
        CHECK(*b.next_delay() == 450ms);
        CHECK(*b.next_delay() == 675ms);
        CHECK(*b.next_delay() == 1012ms);  // 1012.5
    }

    TEST_CASE("jitter bounds with u = 0 and u = 0.999")
    {
        auto p = exact_backoff(1000ms, 60s);
        p.jitter = 0.5;

        lens::backoff low(p, constant(0.0));  // u = 0: the full delay
        CHECK(*low.next_delay() == 1000ms);
        CHECK(*low.next_delay() == 2000ms);
        CHECK(*low.next_delay() == 4000ms);

        // u -> 1: close to delay * (1 - jitter), never below it.
        lens::backoff high(p, constant(0.999));
        for (ms full : {1000ms, 2000ms, 4000ms, 8000ms}) {
            auto d = *high.next_delay();
            CAPTURE(d.count());
            CHECK(d >= full / 2);
            CHECK(d <= full / 2 + full / 1000);  // 0.5005 * full, rounded down
        }

        lens::backoff exact_fraction(p, constant(0.75));  // 1 - 0.5 * 0.75 = 0.625 exactly
        CHECK(*exact_fraction.next_delay() == 625ms);
        CHECK(*exact_fraction.next_delay() == 1250ms);

        p.jitter = 1.0;  // full jitter reaches (almost) zero
        lens::backoff full(p, constant(0.999));
        CHECK(*full.next_delay() == 1ms);
    }

    TEST_CASE("jitter stays within [delay * (1 - jitter), delay] with the default source")
    {
        auto p = exact_backoff(1000ms, 1000ms);
        p.jitter = 0.3;
        lens::backoff b(p);
        for (int i = 0; i < 1000; ++i) {
            auto d = *b.next_delay();
            CHECK(d >= 700ms);
            CHECK(d <= 1000ms);
        }
    }

    TEST_CASE("a misbehaving random source or jitter is clamped")
    {
        auto p = exact_backoff(1000ms, 10s);
        p.jitter = 0.5;
        CHECK(*lens::backoff(p, constant(-3.0)).next_delay() == 1000ms);
        CHECK(*lens::backoff(p, constant(7.0)).next_delay() == 500ms);
        p.jitter = 5.0;  // clamped to 1
        CHECK(*lens::backoff(p, constant(0.5)).next_delay() == 500ms);
        p.jitter = -1.0;  // clamped to 0
        CHECK(*lens::backoff(p, constant(0.5)).next_delay() == 1000ms);
    }

    TEST_CASE("max_attempts delays are handed out, then nullopt")
    {
        auto p = exact_backoff(10ms, 1s);
        p.max_attempts = 3;
        lens::backoff b(p);
        CHECK(b.next_delay() == 10ms);
        CHECK(b.next_delay() == 20ms);
        CHECK(b.next_delay() == 40ms);
        CHECK_FALSE(b.next_delay().has_value());
        CHECK_FALSE(b.next_delay().has_value());
        CHECK(b.attempts() == 3);
        b.reset();
        CHECK(b.attempts() == 0);
        CHECK(b.next_delay() == 10ms);
    }

    TEST_CASE("max_attempts 0 is unlimited")
    {
        lens::backoff b(exact_backoff(1ms, 5ms));
        for (int i = 0; i < 10000; ++i)
            REQUIRE(b.next_delay().has_value());
    }

    TEST_CASE("a stable connection resets the schedule")
    {
        auto p = exact_backoff(100ms, 10s);
        p.reset_after = 30s;
        lens::backoff b(p);
        lens::backoff::clock::time_point t0{};
        b.next_delay();
        b.next_delay();
        b.next_delay();
        REQUIRE(b.attempts() == 3);

        b.connected(t0);
        b.disconnected(t0 + 30s);  // exactly reset_after counts as stable
        CHECK(b.attempts() == 0);
        CHECK(*b.next_delay() == 100ms);
    }

    TEST_CASE("an unstable connection keeps backing off")
    {
        auto p = exact_backoff(100ms, 10s);
        p.reset_after = 30s;
        lens::backoff b(p);
        lens::backoff::clock::time_point t0{};
        b.next_delay();
        b.next_delay();

        b.connected(t0);
        b.disconnected(t0 + 29s);
        CHECK(b.attempts() == 2);
        CHECK(*b.next_delay() == 400ms);

        // A disconnect without a recorded connect changes nothing,
        // and a connect is forgotten once its disconnect was seen.
        b.disconnected(t0 + 1h);
        CHECK(b.attempts() == 3);
        CHECK(*b.next_delay() == 800ms);
    }

    TEST_CASE("no overflow at attempt 200 and beyond")
    {
        lens::backoff b(exact_backoff(200ms, 30s));
        for (int i = 0; i < 200; ++i)
            b.next_delay();
        REQUIRE(b.attempts() == 200);
        CHECK(*b.next_delay() == 30s);

        auto p = exact_backoff(1ms, 5s, 1e300);  // multiplier^n overflows to infinity at n = 2
        lens::backoff huge(p);
        CHECK(*huge.next_delay() == 1ms);
        CHECK(*huge.next_delay() == 5s);
        CHECK(*huge.next_delay() == 5s);

        // The largest representable cap survives the trip through floating point.
        lens::backoff widest(exact_backoff(1ms, ms::max()));
        for (int i = 0; i < 300; ++i) {
            auto d = *widest.next_delay();
            REQUIRE(d > 0ms);
        }
        CHECK(*widest.next_delay() == ms::max());
    }

    TEST_CASE("initial above max is capped - a NaN multiplier means max after the first")
    {
        CHECK(*lens::backoff(exact_backoff(10s, 1s)).next_delay() == 1s);
        lens::backoff nan(exact_backoff(1ms, 1s, std::numeric_limits<double>::quiet_NaN()));
        CHECK(*nan.next_delay() == 1ms);  // multiplier^0 is 1, even for NaN
        CHECK(*nan.next_delay() == 1s);
    }
}
