// Unit tests of the logging hook (lens/logger.hpp): level filtering, the one-line
// rendering, and that a logger that is off calls nothing.
#include <lens/config.hpp>
#include <lens/error.hpp>
#include <lens/logger.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

lens::log_record record(lens::log_level level, std::string_view event = "retry")
{
    lens::log_record r;
    r.level = level;
    r.event = event;
    r.source = "rest";
    return r;
}

} // namespace

TEST_CASE("logger: off by default - enabled at no level, the sink never called")
{
    const lens::config cfg;
    for (auto l : {lens::log_level::debug, lens::log_level::info, lens::log_level::warning, lens::log_level::error})
        CHECK_FALSE(cfg.log.enabled(l));
    cfg.log.write(record(lens::log_level::error)); // nothing to call: no crash
    // An empty sink is off too, whatever the level asked for.
    const lens::logger empty(lens::logger::sink_type{}, lens::log_level::debug);
    CHECK_FALSE(empty.enabled(lens::log_level::error));
}

TEST_CASE("logger: records below the minimum level are filtered out")
{
    std::vector<std::string> seen;
    const lens::logger log([&](const lens::log_record& r) { seen.emplace_back(r.event); }, lens::log_level::warning);
    CHECK_FALSE(log.enabled(lens::log_level::debug));
    CHECK_FALSE(log.enabled(lens::log_level::info));
    CHECK(log.enabled(lens::log_level::warning));
    CHECK(log.enabled(lens::log_level::error));
    CHECK(log.min_level() == lens::log_level::warning);
    log.write(record(lens::log_level::debug, "rate_limited"));
    log.write(record(lens::log_level::info, "connect"));
    log.write(record(lens::log_level::warning, "retry"));
    log.write(record(lens::log_level::error, "give_up"));
    CHECK(seen == std::vector<std::string>{"retry", "give_up"});
}

TEST_CASE("logger: a sink that throws does not fail the operation that logs")
{
    int calls = 0;
    const lens::logger log([&](const lens::log_record&) {
        ++calls;
        throw std::runtime_error("sink failure");
    });
    CHECK_NOTHROW(log.write(record(lens::log_level::error)));
    CHECK(calls == 1);
}

TEST_CASE("logger: format renders one line with the fields that are set")
{
    auto r = record(lens::log_level::warning, "retry");
    r.operation = "sessions/create";
    r.http_status = 429;
    r.code = lens::make_error_code(lens::errc::rate_limited);
    r.attempt = 1;
    r.delay = 1000ms;
    r.server_delay = 1000ms;
    r.reason = "sessions/create: 429 slow\r\ndown";
    const auto line = lens::format(r);
    CHECK(line.rfind("lens warning retry sessions/create: HTTP 429, ", 0) == 0);
    CHECK(line.find(r.code.message()) != std::string::npos);
    CHECK(line.find("attempt 1, next in 1000 ms, server asked 1000 ms - sessions/create: 429 slow  down") !=
          std::string::npos);
    CHECK(line.find('\n') == std::string::npos);
    CHECK(line.find('\r') == std::string::npos);

    auto c = record(lens::log_level::info, "connect");
    c.source = "session";
    c.target = "127.0.0.1:8080/ws";
    CHECK(lens::format(c) == "lens info connect [127.0.0.1:8080/ws]");

    auto s = record(lens::log_level::info, "stream_resume");
    s.target = "lsn-1";
    s.last_event_id = "42";
    CHECK(lens::format(s) == "lens info stream_resume [lsn-1]: Last-Event-ID 42");

    auto o = record(lens::log_level::warning, "inbox_overflow");
    o.count = 3;
    CHECK(lens::format(o) == "lens warning inbox_overflow: 3 dropped");
    CHECK(lens::to_string(lens::log_level::debug) == "debug");
    CHECK(lens::to_string(lens::log_level::error) == "error");
}
