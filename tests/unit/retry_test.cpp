// Unit tests of the retry decision and what it stands on: the HTTP status table, the
// retryable and surely-unprocessed predicates, saturating time arithmetic, the pure backoff
// schedule and the redactor that keeps the API key out of server data. Every time is a
// scripted time point; no clock is read.
#include <lens/backoff.hpp>
#include <lens/detail/deadline.hpp>
#include <lens/error.hpp>
#include <lens/retry.hpp>

#include "detail/redactor.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "unit/support.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;
using time_point = std::chrono::steady_clock::time_point;
using seconds_d = std::chrono::duration<double>;

namespace {

using lens::test::exact_backoff;
using lens::test::occurrences;
using lens::test::dismantle;


const time_point t0 = time_point{} + 1h;
constexpr time_point never = time_point::max();
constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();
constexpr double infinity = std::numeric_limits<double>::infinity();

// Time points and durations compared as counts, so that a failure prints numbers.
long long ticks(time_point t)
{
    return t.time_since_epoch().count();
}

// The policy of the decision table: 100 ms doubling to 10 s, half jitter, hints up to 60 s.
lens::backoff_policy table_policy()
{
    lens::backoff_policy p;
    p.initial = 100ms;
    p.max = 10s;
    p.multiplier = 2.0;
    p.jitter = 0.5;
    p.max_server_delay = 60s;
    return p;
}

} // namespace

TEST_SUITE("retry")
{
    TEST_CASE("status_condition maps every status class")
    {
        using lens::errc;
        struct row {
            unsigned status;
            boost::system::error_code condition;  // default: none (a 2xx)
            bool retryable;
        };
        const row rows[] = {
            {200, {}, false},
            {204, {}, false},
            {299, {}, false},
            {100, errc::http_error, false},
            {301, errc::http_error, false},
            {400, errc::http_error, false},
            {401, errc::unauthorized, false},
            {403, errc::unauthorized, false},
            {404, errc::not_found, false},
            {408, errc::timeout, true},
            {409, errc::http_error, false},
            {429, errc::rate_limited, true},
            {500, errc::server_error, true},
            {503, errc::server_error, true},
            {599, errc::server_error, true},
            {600, errc::http_error, false},
        };
        for (const auto& r : rows) {
            CAPTURE(r.status);
            const auto ec = lens::status_condition(r.status);
            CHECK(ec == r.condition);
            CHECK(static_cast<bool>(ec) == static_cast<bool>(r.condition));
            if (ec)
                CHECK(ec.category() == lens::error_category());
            CHECK(lens::is_retryable(ec) == r.retryable);
            // Only a 429 says the server refused the request before acting on it.
            CHECK(lens::is_surely_unprocessed(ec) == (r.status == 429));
        }
    }

    TEST_CASE("is_retryable and is_surely_unprocessed over lens and transport codes")
    {
        using lens::errc;
        namespace ae = boost::asio::error;
        struct row {
            boost::system::error_code code;
            bool retryable;
            bool unprocessed;
        };
        const row rows[] = {
            {errc::timeout, true, false},
            {errc::connection_failed, true, true},
            {errc::connection_lost, true, false},
            {errc::rate_limited, true, true},
            {errc::server_error, true, false},
            {errc::unauthorized, false, false},
            {errc::not_found, false, false},
            {errc::http_error, false, false},
            {errc::api_error, false, false},
            {errc::invalid_response, false, false},
            {errc::body_too_large, false, false},
            {errc::invalid_argument, false, false},
            {errc::query_timed_out, false, false},
            {errc::session_gone, false, false},
            {errc::protocol_error, false, false},
            {errc::limit_exceeded, false, false},
            {errc::not_event_stream, false, false},
            {errc::closed, false, false},
            {errc::certificate_rejected, false, false},
            {ae::connection_refused, true, false},
            {ae::connection_reset, true, false},
            {ae::connection_aborted, true, false},
            {ae::eof, true, false},
            {ae::timed_out, true, false},
            {ae::network_unreachable, true, false},
            {ae::host_unreachable, true, false},
            {ae::broken_pipe, true, false},
            {boost::beast::error::timeout, true, false},
            {boost::asio::ssl::error::stream_truncated, true, false},
            {ae::operation_aborted, false, false},
            {ae::access_denied, false, false},
            // The value of errc::timeout in another category is not a timeout.
            {{static_cast<int>(errc::timeout), boost::system::system_category()}, false, false},
            {{}, false, false},
        };
        for (const auto& r : rows) {
            CAPTURE(r.code.message());
            CHECK(lens::is_retryable(r.code) == r.retryable);
            CHECK(lens::is_surely_unprocessed(r.code) == r.unprocessed);
        }
    }

    TEST_CASE("clamp_server_delay keeps a hint within zero and max_server_delay")
    {
        struct row {
            ms ceiling;
            ms hint;
            ms want;
        };
        const row rows[] = {
            {60s, 5s, 5s},
            {60s, 0ms, 0ms},
            {60s, 60s, 60s},
            {60s, 60001ms, 60s},
            {60s, ms::max(), 60s},
            {60s, -1ms, 0ms},
            {60s, ms::min(), 0ms},
            {0ms, 5s, 0ms},
            {-5s, 5s, 0ms},  // a negative ceiling honours no hint
            {ms::max(), ms::max(), ms::max()},
        };
        for (const auto& r : rows) {
            CAPTURE(r.ceiling.count());
            CAPTURE(r.hint.count());
            lens::backoff_policy p;
            p.max_server_delay = r.ceiling;
            CHECK(lens::clamp_server_delay(p, r.hint).count() == r.want.count());
        }
    }

    TEST_CASE("parse_retry_after reads delta-seconds and saturates")
    {
        struct row {
            const char* text;
            std::optional<ms> want;
        };
        const row rows[] = {
            {"120", 120s},
            {"0", 0ms},
            {" 7\t", 7s},
            {"", std::nullopt},
            {"  ", std::nullopt},
            {"1.5", std::nullopt},
            {"-1", std::nullopt},
            {"+1", std::nullopt},
            {"1 2", std::nullopt},
            {"Wed, 21 Oct 2015 07:28:00 GMT", std::nullopt},
            {"9223372036854775", ms(9'223'372'036'854'775'000)},  // the most seconds that fit
            {"9223372036854776", ms::max()},
            {"99999999999999999999", ms::max()},
        };
        for (const auto& r : rows) {
            CAPTURE(r.text);
            const auto got = lens::parse_retry_after(r.text);
            REQUIRE(got.has_value() == r.want.has_value());
            if (got)
                CHECK(got->count() == r.want->count());
        }
    }

    TEST_CASE("decide_retry over codes, idempotency, attempts, hints, deadlines and jitter")
    {
        using lens::errc;
        // One failed attempt and what must follow: retry `wait` after `now`, or (no `wait`)
        // give up with the failure's own code.
        struct row {
            const char* what;
            boost::system::error_code code;
            bool sent = false;
            bool idempotent = true;
            unsigned made = 1;  // attempts made, the failed one included
            unsigned max_attempts = 0;
            std::optional<ms> hint{};
            time_point now = t0;
            time_point deadline = t0 + 1h;
            double u = 0;
            std::optional<ms> wait{};
        };
        constexpr unsigned most = std::numeric_limits<unsigned>::max();
        const row rows[] = {
            // Transient failures wait the schedule's delay.
            {.what = "5xx", .code = errc::server_error, .wait = 100ms},
            {.what = "timeout", .code = errc::timeout, .wait = 100ms},
            {.what = "connection lost", .code = errc::connection_lost, .wait = 100ms},
            {.what = "connection failed", .code = errc::connection_failed, .wait = 100ms},
            {.what = "429", .code = errc::rate_limited, .wait = 100ms},
            {.what = "raw reset", .code = boost::asio::error::connection_reset, .wait = 100ms},
            // Final failures give up at once, whatever else holds.
            {.what = "401", .code = errc::unauthorized},
            {.what = "404", .code = errc::not_found},
            {.what = "other 4xx", .code = errc::http_error},
            {.what = "2xx failure", .code = errc::api_error},
            {.what = "html page", .code = errc::invalid_response},
            {.what = "too large", .code = errc::body_too_large},
            {.what = "bad certificate", .code = errc::certificate_rejected},
            {.what = "closed", .code = errc::closed},
            {.what = "query timed out", .code = errc::query_timed_out},
            {.what = "aborted", .code = boost::asio::error::operation_aborted},
            // A request that changes state and may have reached the server.
            {.what = "sent POST 5xx", .code = errc::server_error, .sent = true, .idempotent = false},
            {.what = "sent POST timeout", .code = errc::timeout, .sent = true, .idempotent = false},
            {.what = "sent POST lost", .code = errc::connection_lost, .sent = true, .idempotent = false},
            {.what = "sent POST 429", .code = errc::rate_limited, .sent = true, .idempotent = false, .wait = 100ms},
            {.what = "sent POST connect failed", .code = errc::connection_failed, .sent = true, .idempotent = false,
             .wait = 100ms},
            {.what = "unsent POST 5xx", .code = errc::server_error, .idempotent = false, .wait = 100ms},
            {.what = "unsent POST lost", .code = errc::connection_lost, .idempotent = false, .wait = 100ms},
            {.what = "sent GET 5xx", .code = errc::server_error, .sent = true, .wait = 100ms},
            // The schedule: attempt n waits delay(n - 1), capped at 10 s.
            {.what = "no attempt yet", .code = errc::server_error, .made = 0, .wait = 100ms},
            {.what = "second", .code = errc::server_error, .made = 2, .wait = 200ms},
            {.what = "third", .code = errc::server_error, .made = 3, .wait = 400ms},
            {.what = "capped", .code = errc::server_error, .made = 8, .wait = 10s},
            {.what = "last unsigned", .code = errc::server_error, .made = most, .wait = 10s},
            // max_attempts counts the first attempt; 0 is unlimited.
            {.what = "2 of 3", .code = errc::server_error, .made = 2, .max_attempts = 3, .wait = 200ms},
            {.what = "3 of 3", .code = errc::server_error, .made = 3, .max_attempts = 3},
            {.what = "4 of 3", .code = errc::server_error, .made = 4, .max_attempts = 3},
            {.what = "1 of 1", .code = errc::rate_limited, .made = 1, .max_attempts = 1},
            {.what = "1000 of unlimited", .code = errc::server_error, .made = 1000, .max_attempts = 0, .wait = 10s},
            // A server hint wins when longer, clamped to max_server_delay.
            {.what = "hint 5 s", .code = errc::rate_limited, .hint = 5s, .wait = 5s},
            {.what = "hint shorter", .code = errc::rate_limited, .hint = 50ms, .wait = 100ms},
            {.what = "hint 0", .code = errc::rate_limited, .hint = 0ms, .wait = 100ms},
            {.what = "hint negative", .code = errc::rate_limited, .hint = -1s, .wait = 100ms},
            {.what = "hint most negative", .code = errc::rate_limited, .hint = ms::min(), .wait = 100ms},
            {.what = "hint at ceiling", .code = errc::rate_limited, .hint = 60s, .wait = 60s},
            {.what = "hint over ceiling", .code = errc::rate_limited, .hint = 61s, .wait = 60s},
            {.what = "hint max", .code = errc::rate_limited, .hint = ms::max(), .wait = 60s},
            {.what = "hint max, no deadline", .code = errc::rate_limited, .hint = ms::max(), .deadline = never,
             .wait = 60s},
            {.what = "hint on a 5xx", .code = errc::server_error, .made = 3, .hint = 2s, .wait = 2s},
            // A retry at or after the deadline gives up with the failure's own code.
            {.what = "at the deadline", .code = errc::server_error, .deadline = t0 + 100ms},
            {.what = "just before it", .code = errc::server_error, .deadline = t0 + 101ms, .wait = 100ms},
            {.what = "now is the deadline", .code = errc::server_error, .deadline = t0},
            {.what = "deadline passed", .code = errc::server_error, .deadline = t0 - 1s},
            {.what = "hint past the deadline", .code = errc::rate_limited, .hint = 60s, .deadline = t0 + 30s},
            {.what = "timeout near the deadline", .code = errc::timeout, .deadline = t0 + 50ms},
            {.what = "no deadline", .code = errc::server_error, .deadline = never, .wait = 100ms},
            {.what = "no deadline, capped", .code = errc::server_error, .made = most, .deadline = never, .wait = 10s},
            {.what = "from the epoch", .code = errc::server_error, .now = time_point{}, .deadline = never,
             .wait = 100ms},
            // The jitter sample scales the delay by 1 - 0.5 u, u clamped to [0, 1).
            {.what = "u 0.75", .code = errc::server_error, .u = 0.75, .wait = 62ms},  // 62.5
            {.what = "u 0.75, third", .code = errc::server_error, .made = 3, .u = 0.75, .wait = 250ms},
            {.what = "u 7", .code = errc::server_error, .u = 7.0, .wait = 50ms},
            {.what = "u -1", .code = errc::server_error, .u = -1.0, .wait = 100ms},
            {.what = "u NaN", .code = errc::server_error, .u = not_a_number, .wait = 100ms},
            {.what = "jittered, hint longer", .code = errc::rate_limited, .hint = 80ms, .u = 0.75, .wait = 80ms},
        };
        const auto policy = table_policy();
        for (const auto& r : rows) {
            CAPTURE(r.what);
            const auto d = lens::decide_retry(policy, r.max_attempts, {r.code, r.sent, r.hint}, r.idempotent, r.made,
                                              r.now, r.deadline, r.u);
            if (r.wait) {
                CHECK(d.retry);
                CHECK_FALSE(d.code);
                CHECK(ticks(d.at) - ticks(r.now) == std::chrono::nanoseconds(*r.wait).count());
            } else {
                CHECK_FALSE(d.retry);
                CHECK(d.code == r.code);
            }
        }
    }

    TEST_CASE("an absurd Retry-After is clamped without overflow")
    {
        const auto policy = table_policy();
        const auto hint = lens::parse_retry_after("99999999999999999999");
        REQUIRE(hint == ms::max());
        for (time_point deadline : {t0 + 1h, never}) {
            const auto d = lens::decide_retry(policy, 0, {lens::errc::rate_limited, true, hint}, false, 1, t0,
                                              deadline, 0.3);
            CHECK(d.retry);
            CHECK(ticks(d.at) == ticks(t0 + 60s));
        }
    }

    TEST_CASE("a delay too long for the clock saturates and gives up")
    {
        // A cap of milliseconds::max() is ~292 million years: now + delay overflows steady_clock's
        // nanoseconds. The retry time saturates at time_point::max(), which is never before
        // any deadline, so the decision is to give up - not to retry in the past.
        auto p = exact_backoff(ms::max(), ms::max());
        p.max_server_delay = ms::max();
        for (time_point now : {time_point{}, t0, never - 1h}) {
            const auto d = lens::decide_retry(p, 0, {lens::errc::server_error, false, std::nullopt}, true, 1, now,
                                              never, 0);
            CHECK_FALSE(d.retry);
            CHECK(d.code == lens::errc::server_error);
        }
        const auto hinted = lens::decide_retry(p, 0, {lens::errc::rate_limited, false, ms::max()}, true, 1, t0,
                                               never, 0);
        CHECK_FALSE(hinted.retry);
        CHECK(hinted.code == lens::errc::rate_limited);
    }
}

TEST_SUITE("deadline")
{
    using lens::detail::deadline_after;

    TEST_CASE("deadline_after saturates at time_point::max() for huge durations")
    {
        for (time_point now : {time_point{}, t0, never - 1h}) {
            CAPTURE(ticks(now));
            CHECK(ticks(deadline_after(now, ms::max())) == ticks(never));
            CHECK(ticks(deadline_after(now, std::chrono::hours::max())) == ticks(never));
            CHECK(ticks(deadline_after(now, std::chrono::seconds::max())) == ticks(never));
            CHECK(ticks(deadline_after(now, never - now)) == ticks(never));  // exactly the room left
            CHECK(ticks(deadline_after(now, seconds_d(1e30))) == ticks(never));
            CHECK(ticks(deadline_after(now, seconds_d(infinity))) == ticks(never));
        }
        CHECK(ticks(deadline_after(never, 1ns)) == ticks(never));
        CHECK(ticks(deadline_after(t0, never - t0)) == ticks(never));
    }

    TEST_CASE("deadline_after is now for zero, negative and NaN durations")
    {
        for (time_point now : {time_point{}, t0, never}) {
            CAPTURE(ticks(now));
            CHECK(ticks(deadline_after(now, 0ms)) == ticks(now));
            CHECK(ticks(deadline_after(now, -1s)) == ticks(now));
            CHECK(ticks(deadline_after(now, ms::min())) == ticks(now));
            CHECK(ticks(deadline_after(now, std::chrono::hours::min())) == ticks(now));
            CHECK(ticks(deadline_after(now, seconds_d(not_a_number))) == ticks(now));
            CHECK(ticks(deadline_after(now, seconds_d(-infinity))) == ticks(now));
            CHECK(ticks(deadline_after(now, seconds_d(-1e30))) == ticks(now));
        }
    }

    TEST_CASE("deadline_after is exact for ordinary durations")
    {
        CHECK(ticks(deadline_after(t0, 1ns)) == ticks(t0 + 1ns));
        CHECK(ticks(deadline_after(t0, 1500ms)) == ticks(t0 + 1500ms));
        CHECK(ticks(deadline_after(t0, 24h)) == ticks(t0 + 24h));
        CHECK(ticks(deadline_after(t0, seconds_d(2.5))) == ticks(t0 + 2500ms));
        CHECK(ticks(deadline_after(time_point{}, 1h)) == ticks(t0));
        // Well inside the clock's range, however close to its end.
        CHECK(ticks(deadline_after(t0, (never - t0) - 2s)) == ticks(never - 2s));
        CHECK(ticks(deadline_after(never - 1h, 30min)) == ticks(never - 30min));
    }

    TEST_CASE("saturating_ms converts any duration to whole milliseconds")
    {
        using lens::detail::saturating_ms;
        CHECK(saturating_ms(ms::max()).count() == ms::max().count());
        CHECK(saturating_ms(std::chrono::hours::max()).count() == ms::max().count());
        CHECK(saturating_ms(std::chrono::seconds::max()).count() == ms::max().count());
        CHECK(saturating_ms(seconds_d(1e30)).count() == ms::max().count());
        CHECK(saturating_ms(seconds_d(infinity)).count() == ms::max().count());
        // Just below 2^63 ms, where a double-to-integer conversion could overflow.
        const auto edge = saturating_ms(std::chrono::duration<double, std::milli>(std::nextafter(0x1p63, 0.0)));
        CHECK(edge.count() >= (ms::max() - 2s).count());

        CHECK(saturating_ms(0ms).count() == 0);
        CHECK(saturating_ms(-1s).count() == 0);
        CHECK(saturating_ms(ms::min()).count() == 0);
        CHECK(saturating_ms(std::chrono::hours::min()).count() == 0);
        CHECK(saturating_ms(seconds_d(not_a_number)).count() == 0);
        CHECK(saturating_ms(seconds_d(-infinity)).count() == 0);

        CHECK(saturating_ms(5s).count() == 5000);
        CHECK(saturating_ms(1h).count() == 3'600'000);
        CHECK(saturating_ms(seconds_d(1.2345)).count() == 1234);  // rounded down
        CHECK(saturating_ms(1999us).count() == 1);
        CHECK(saturating_ms(std::chrono::nanoseconds::max()).count() == 9'223'372'036'854);
    }

    TEST_CASE("saturating_add adds non-negative milliseconds without overflow")
    {
        using lens::detail::saturating_add;
        struct row {
            ms a, b, want;
        };
        const row rows[] = {
            {1s, 2s, 3s},
            {0ms, 0ms, 0ms},
            {ms::max(), 1ms, ms::max()},
            {1ms, ms::max(), ms::max()},
            {ms::max() - 1ms, 1ms, ms::max()},
            {ms::max() - 2ms, 1ms, ms::max() - 1ms},
            {ms::max(), ms::max(), ms::max()},
            {-5s, 3s, 3s},  // negatives count as zero
            {3s, -5s, 3s},
            {ms::min(), ms::min(), 0ms},
            {ms::min(), ms::max(), ms::max()},
        };
        for (const auto& r : rows) {
            CAPTURE(r.a.count());
            CAPTURE(r.b.count());
            CHECK(saturating_add(r.a, r.b).count() == r.want.count());
        }
    }
}

TEST_SUITE("backoff")
{
    TEST_CASE("backoff_policy::delay is the schedule next_delay hands out")
    {
        auto jittered = exact_backoff(1000ms, 60s);
        jittered.jitter = 0.5;
        auto full_jitter = jittered;
        full_jitter.jitter = 1.0;
        auto over_jitter = jittered;
        over_jitter.jitter = 5.0;
        struct row {
            const char* what;
            lens::backoff_policy policy;
            double u;
        };
        const row rows[] = {
            {"exact", exact_backoff(100ms, 1000ms), 0.7},
            {"fractional multiplier", exact_backoff(200ms, 10s, 1.5), 0.0},
            {"jitter, u 0", jittered, 0.0},
            {"jitter, u 0.75", jittered, 0.75},
            {"jitter, u 0.999", jittered, 0.999},
            {"jitter, u -3", jittered, -3.0},
            {"jitter, u 7", jittered, 7.0},
            {"jitter, u NaN", jittered, not_a_number},
            {"full jitter", full_jitter, 0.999},
            {"jitter over 1", over_jitter, 0.5},
            {"widest cap", exact_backoff(1ms, ms::max()), 0.0},
            {"huge multiplier", exact_backoff(1ms, 5s, 1e300), 0.0},
            {"NaN multiplier", exact_backoff(1ms, 1s, not_a_number), 0.0},
            {"initial over max", exact_backoff(10s, 1s), 0.0},
        };
        for (const auto& r : rows) {
            CAPTURE(r.what);
            const double u = r.u;
            lens::backoff b(r.policy, [u] { return u; });
            for (unsigned attempt = 0; attempt < 300; ++attempt) {
                CAPTURE(attempt);
                const auto handed_out = b.next_delay();
                REQUIRE(handed_out.has_value());
                REQUIRE(handed_out->count() == r.policy.delay(attempt, u).count());
            }
        }
    }

    TEST_CASE("backoff_policy::delay values, clamping and limits")
    {
        const auto p = exact_backoff(100ms, 1000ms);
        const long long want[] = {100, 200, 400, 800, 1000, 1000, 1000};
        for (unsigned n = 0; n < std::size(want); ++n) {
            CAPTURE(n);
            CHECK(p.delay(n, 0.0).count() == want[n]);
        }
        CHECK(p.delay(std::numeric_limits<unsigned>::max(), 0.0).count() == 1000);
        CHECK(p.delay(3, 0.9).count() == 800);  // jitter 0 ignores u

        auto j = exact_backoff(1000ms, 60s);
        j.jitter = 0.5;
        CHECK(j.delay(0, 0.75).count() == 625);
        CHECK(j.delay(1, 0.75).count() == 1250);
        CHECK(j.delay(0, 7.0).count() == 500);   // u clamped below 1
        CHECK(j.delay(0, -3.0).count() == 1000); // and at 0
        // max_attempts bounds next_delay, not the pure schedule.
        j.max_attempts = 1;
        CHECK(j.delay(5, 0.0).count() == 32'000);
    }
}

TEST_SUITE("redactor")
{
    using lens::detail::redactor;

    TEST_CASE("every occurrence of the key in a string is replaced")
    {
        const redactor secrets("sk-SECRET");
        struct row {
            std::string_view in, out;
        };
        const row rows[] = {
            {"", ""},
            {"nothing here", "nothing here"},
            {"sk-SECRET", "[redacted]"},
            {"Bearer sk-SECRET.", "Bearer [redacted]."},
            {"sk-SECRETsk-SECRET and sk-SECRET", "[redacted][redacted] and [redacted]"},
            {"sk-SECRE", "sk-SECRE"},    // a prefix is not the key
            {"SK-SECRET", "SK-SECRET"},  // keys are case-sensitive
        };
        for (const auto& r : rows) {
            CAPTURE(r.in);
            CHECK(secrets.scrubbed(r.in) == r.out);
            std::string s(r.in);
            secrets.scrub(s);
            CHECK(s == r.out);
            CHECK(secrets.leaks(r.in) == (r.in != r.out));
            CHECK_FALSE(secrets.leaks(s));
        }
        // Occurrences are taken left to right without overlap.
        const redactor aa("aa");
        CHECK(aa.scrubbed("aaa") == "[redacted]a");
        CHECK(aa.scrubbed("aaaa") == "[redacted][redacted]");
    }

    TEST_CASE("the key is found wherever it stands - at either end, after a near miss, in a copy of the redactor")
    {
        // The search tests the key's first and last bytes sixteen places at a time, then
        // compares in full: these are texts where a near miss stands before or around an
        // occurrence, and where an occurrence overlaps another.
        const redactor secrets("abcab");
        const std::string_view found[] = {
            "abcab", "abcab...", "...abcab", "abcabcab", "ababcab", "aabcab", "abcaabcab", "bcab abcab",
        };
        const std::string_view missed[] = {"", "abca", "bcab", "abcaB", "abc ab", "ab cab abca"};
        const redactor copy = secrets; // copies share the key
        for (auto text : found) {
            CAPTURE(text);
            CHECK(secrets.leaks(text));
            CHECK(copy.leaks(text));
            CHECK_FALSE(secrets.leaks(secrets.scrubbed(text)));
        }
        for (auto text : missed) {
            CAPTURE(text);
            CHECK_FALSE(secrets.leaks(text));
            CHECK(secrets.scrubbed(text) == text);
        }
        // Every position of the key in a longer text, checked against a plain search.
        const std::string key = "sk-9fJ2kLq0ZxV7";
        const redactor long_key(key);
        for (std::size_t at = 0; at <= 64; ++at) {
            std::string text(64, 'k');
            text.insert(at, key);
            CAPTURE(at);
            CHECK(long_key.leaks(text));
            text.erase(at + key.size() - 1, 1); // one letter short
            CHECK(long_key.leaks(text) == (text.find(key) != std::string::npos));
        }
    }

    TEST_CASE("the key is removed from strings and member names at any depth, in order")
    {
        const redactor secrets("sk-SECRET");
        auto v = boost::json::parse(R"({"a": "x sk-SECRET y", "sk-SECRET": 1, "mid sk-SECRET": 2,
            "list": ["sk-SECRET", {"deep": ["sk-SECRET!", 3]}, null], "b": 2, "z": "kept"})");
        secrets.scrub(v);
        CHECK(boost::json::serialize(v) ==
              R"({"a":"x [redacted] y","[redacted]":1,"mid [redacted]":2,)"
              R"("list":["[redacted]",{"deep":["[redacted]!",3]},null],"b":2,"z":"kept"})");

        // Scalars and arrays at the top level too.
        boost::json::value s = "sk-SECRET";
        secrets.scrub(s);
        CHECK(s == "[redacted]");
        auto a = boost::json::parse(R"([["sk-SECRET"], 1, true])");
        secrets.scrub(a);
        CHECK(boost::json::serialize(a) == R"([["[redacted]"],1,true])");
    }

    TEST_CASE("api_key members are removed in any case and at any depth")
    {
        const redactor secrets("sk-SECRET");
        auto v = boost::json::parse(R"({"id": "lsn-1", "api_key": "sk-SECRET", "API_KEY": "x",
            "Api_Key": {"k": 1}, "api_keys": "kept", "x_api_key": "kept",
            "nested": {"aPi_KeY": 1, "z": [{"api_key": 2}]}, "last": true})");
        secrets.scrub(v);
        CHECK(boost::json::serialize(v) ==
              R"({"id":"lsn-1","api_keys":"kept","x_api_key":"kept","nested":{"z":[{}]},"last":true})");
    }

    TEST_CASE("an api_key member is noticed wherever it stands in the text, in any case, up to the last byte")
    {
        // may_hide_secret looks for "_k" sixteen places at a time, then for the letters
        // around it: padding moves the name through every place of a block.
        const redactor secrets("sk-SECRET");
        for (std::size_t pad = 0; pad <= 40; ++pad) {
            CAPTURE(pad);
            const std::string text = "{\"p\":\"" + std::string(pad, '_') + "\",\"API_Key\":\"v\"}";
            CHECK(redactor::may_hide_secret(text));
            auto v = boost::json::parse(text);
            secrets.scrub(v, text);
            CHECK(boost::json::serialize(v) == "{\"p\":\"" + std::string(pad, '_') + "\"}");
            const std::string filler(pad, 'k');
            CHECK(redactor::may_hide_secret(filler + "api_key"));
            CHECK(redactor::may_hide_secret("api_KEY" + filler));
            CHECK_FALSE(redactor::may_hide_secret(filler + "api_ke"));   // cut short at the end
            CHECK_FALSE(redactor::may_hide_secret("pi_key" + filler));   // cut short at the start
            CHECK_FALSE(redactor::may_hide_secret(filler + "apikey_k" + filler));
        }
    }

    TEST_CASE("escaped keys are scrubbed once parsed")
    {
        // JSON escapes cannot hide the key: scrubbing runs on the decoded tree.
        const redactor secrets("sk-SECRET");
        auto v = boost::json::parse(R"({"\u0073k-SECRET": "\u0073k-\u0053ECRET", "\u0061pi_key": "anything",
            "t": ["token=sk\u002dSECRET"]})");
        secrets.scrub(v);
        const auto text = boost::json::serialize(v);
        CHECK(text == R"({"[redacted]":"[redacted]","t":["token=[redacted]"]})");
        CHECK_FALSE(secrets.leaks(text));
    }

    TEST_CASE("an empty key changes nothing but api_key members still go")
    {
        for (const redactor& none : {redactor(), redactor("")}) {
            CHECK(none.scrubbed("anything") == "anything");
            CHECK(none.scrubbed("") == "");
            CHECK_FALSE(none.leaks("anything"));
            CHECK_FALSE(none.leaks(""));
            auto v = boost::json::parse(R"({"a": "anything", "": "", "API_key": "k", "list": ["x", {"api_key": 1}]})");
            none.scrub(v);
            CHECK(boost::json::serialize(v) == R"({"a":"anything","":"","list":["x",{}]})");
        }
    }

    TEST_CASE("10000 levels of nesting are scrubbed without recursion")
    {
        // Alternating objects and arrays: each object level has a member named after the key,
        // an api_key member and a string holding the key; each array level holds the key once.
        const redactor secrets("sk-SECRET");
        constexpr std::size_t depth = 10'000;
        boost::json::value v = "sk-SECRET at the bottom";
        for (std::size_t i = 0; i < depth; ++i) {
            if (i % 2 == 0) {
                boost::json::object o;
                o["sk-SECRET"] = std::move(v);
                o["api_key"] = "sk-SECRET";
                o["after"] = "sk-SECRET";
                v = std::move(o);
            } else {
                boost::json::array a;
                a.emplace_back(std::move(v));
                a.emplace_back("sk-SECRET");
                v = std::move(a);
            }
        }

        secrets.scrub(v);

        const auto text = boost::json::serialize(v);  // the serializer does not recurse
        CHECK_FALSE(secrets.leaks(text));
        CHECK(occurrences(text, "api_key") == 0);
        CHECK(occurrences(text, "[redacted]") == depth / 2 * 2 + depth / 2 + 1);
        // Member order survives renaming and removal at every level.
        const boost::json::value* level = &v;
        std::size_t objects = 0;
        std::size_t arrays = 0;
        for (;;) {
            if (const auto* o = level->if_object()) {
                REQUIRE(o->size() == 2);
                CHECK(o->begin()->key() == "[redacted]");
                CHECK((o->begin() + 1)->key() == "after");
                level = &o->begin()->value();
                ++objects;
            } else if (const auto* a = level->if_array()) {
                REQUIRE(a->size() == 2);
                CHECK(a->back() == "[redacted]");
                level = &a->front();
                ++arrays;
            } else {
                break;
            }
        }
        CHECK(objects == depth / 2);
        CHECK(arrays == depth / 2);
        CHECK(*level == "[redacted] at the bottom");
        dismantle(v);
    }
}

TEST_SUITE("redactor")
{
    using lens::detail::redactor;

    // Found by fuzz/redaction.cpp: a key that the mask "[redacted]" can spell, alone or with
    // its neighbours, survived its own replacement ("e" -> "[redacted]" still holds "e").
    TEST_CASE("a key that the mask could spell never survives the mask")
    {
        struct row {
            std::string_view key, in;
        };
        const row rows[] = {
            {"e", "hello"},
            {"]]", "]]]"},
            {"d]x", "d]xx"},
            {"[redacted]", "a [redacted] b"},
            {"]*#~^%", "]*#~^%*#~^%"}, // holds every fallback character too
        };
        for (const auto& r : rows) {
            CAPTURE(r.key);
            const redactor secrets{std::string(r.key)};
            const std::string out = secrets.scrubbed(r.in);
            CHECK_FALSE(secrets.leaks(out));
            std::string s(r.in);
            secrets.scrub(s);
            CHECK(s == out);
            boost::json::value v = boost::json::object{{std::string(r.in), std::string(r.in)}};
            secrets.scrub(v);
            CHECK_FALSE(secrets.leaks(boost::json::serialize(v)));
        }
        // What is not the key is kept.
        CHECK(redactor("e").scrubbed("hello") == "h**********llo");
    }
}
