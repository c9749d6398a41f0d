// The SSE parser against the WHATWG "event stream interpretation" text.
//
// Every vector is fed in every chunking — whole, 1, 2 and 3 bytes at a time,
// and 50 seeded random splits (empty feeds included) — and must give the same
// events, last event id and retry in each. A differential test compares the
// parser with a deliberately naive transcription of the specification on
// random streams built from the tokens that matter.
#include <lens/error.hpp>
#include <lens/sse/parser.hpp>

#include <doctest/doctest.h>

#include "unit/sse_reference.hpp"

#include <functional>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using lens::sse::event;
using lens::sse::parser;
using namespace std::string_literals;

namespace {

using lens::test::escaped;
using result = lens::test::sse_result;

event ev(std::string data, std::string id = {}, std::string type = "message")
{
    return event{std::move(type), std::move(data), std::move(id)};
}

/// Parses one whole stream, feeding chunks of the sizes `next` returns.
result parse(std::string_view in, const std::function<std::size_t(std::size_t)>& next,
             lens::sse::limits lim = {})
{
    parser p(lim);
    result r;
    std::size_t pos = 0;
    while (pos < in.size()) {
        const std::size_t n = std::min(next(pos), in.size() - pos);
        boost::system::error_code ec;
        p.feed(in.substr(pos, n), [&](event&& e) { r.events.push_back(std::move(e)); }, ec);
        REQUIRE_FALSE(ec);
        pos += n;
    }
    r.discarded = p.finish();
    r.last_event_id = p.last_event_id();
    r.retry = p.retry();
    CHECK(p.bytes_examined() <= in.size());
    return r;
}

struct chunking {
    std::string name;
    std::function<std::size_t(std::size_t)> next;
};

std::vector<chunking> all_chunkings(std::size_t size)
{
    std::vector<chunking> out;
    out.push_back({"whole", [](std::size_t) { return std::size_t(-1); }});
    for (std::size_t k : {1, 2, 3})
        out.push_back({"chunks of " + std::to_string(k), [k](std::size_t) { return k; }});
    for (unsigned seed = 1; seed <= 50; ++seed) {
        auto rng = std::make_shared<std::mt19937>(seed);
        const std::size_t max_chunk = std::max<std::size_t>(2, size / 3);
        out.push_back({"random split, seed " + std::to_string(seed), [rng, max_chunk](std::size_t) {
                           // one feed in ten is empty
                           if ((*rng)() % 10 == 0)
                               return std::size_t(0);
                           return std::size_t(1 + (*rng)() % max_chunk);
                       }});
    }
    return out;
}

/// The same outcome in every chunking.
void check_result(std::string_view in, const result& expected)
{
    for (const auto& c : all_chunkings(in.size())) {
        INFO("input: \"", escaped(in), "\", ", c.name);
        const result got = parse(in, c.next);
        CHECK(got == expected);
    }
}

void check_stream(std::string_view in, std::vector<event> events, std::string last_id = {},
                  std::optional<std::chrono::milliseconds> retry = {}, bool discarded = false)
{
    check_result(in, result{std::move(events), std::move(last_id), retry, discarded});
}

const std::string fffd = "\xEF\xBF\xBD";

} // namespace

// ---- the examples of the specification ------------------------------------

TEST_CASE("sse parser: the stock example joins data lines with LF")
{
    check_stream("data: YHOO\ndata: +2\ndata: 10\n\n", {ev("YHOO\n+2\n10")});
}

TEST_CASE("sse parser: comment, ids and the leading space")
{
    // "The following stream contains four blocks..."
    check_stream(": test stream\n"
                 "\n"
                 "data: first event\n"
                 "id: 1\n"
                 "\n"
                 "data:second event\n"
                 "id\n"
                 "\n"
                 "data:  third event\n"
                 "\n",
                 {ev("first event", "1"), ev("second event", ""), ev(" third event", "")}, "");
}

TEST_CASE("sse parser: empty data, a lone newline, and an unterminated block")
{
    // "The following stream fires two events"; the last block is discarded.
    check_stream("data\n"
                 "\n"
                 "data\n"
                 "data\n"
                 "\n"
                 "data:",
                 {ev(""), ev("\n")}, "", {}, true);
}

TEST_CASE("sse parser: `data:test` and `data: test` are identical")
{
    check_stream("data:test\n\ndata: test\n\n", {ev("test"), ev("test")});
}

TEST_CASE("sse parser: event types, default message, reset after dispatch")
{
    check_stream("event: add\ndata: 73857293\n\n"
                 "event: remove\ndata: 2153\n\n"
                 "event: add\ndata: 113411\n\n"
                 "data: plain\n\n",
                 {ev("73857293", "", "add"), ev("2153", "", "remove"), ev("113411", "", "add"),
                  ev("plain")});
    // A type without data is not dispatched and does not leak into the next event.
    check_stream("event: foo\n\ndata: x\n\n", {ev("x")});
    // `event` with an empty value means the default.
    check_stream("event\ndata: x\n\nevent:\ndata: y\n\n", {ev("x"), ev("y")});
}

// ---- fields ----------------------------------------------------------------

TEST_CASE("sse parser: field parsing")
{
    // a colon in the value is kept; only one space is dropped; a tab is not a space
    check_stream("data: a:b\n\n", {ev("a:b")});
    check_stream("data:\ta\n\n", {ev("\ta")});
    // the field name is everything before the first colon: `data ` is unknown
    check_stream("data : x\n\n", {});
    // names are case-sensitive; unknown fields are ignored
    check_stream("Data: x\nfoo: bar\nfoo\ndata: y\n\n", {ev("y")});
    // comments anywhere, with or without text
    check_stream(":\n: hi\ndata: a\n:comment\ndata: b\n\n", {ev("a\nb")});
    // NUL in data is data
    check_stream("data: a\0b\n\n"s, {ev("a\0b"s)});
}

TEST_CASE("sse parser: last event id persists, updates at blank lines, ignores NUL")
{
    check_stream("id: 7\ndata: a\n\ndata: b\n\n", {ev("a", "7"), ev("b", "7")}, "7");
    // an id-only block updates the last event id without dispatching
    check_stream("id: 9\n\n", {}, "9");
    // the id is that of the buffer at dispatch time, wherever the field stood in the block
    check_stream("data: a\nid: 3\n\n", {ev("a", "3")}, "3");
    // an id containing NUL is ignored
    check_stream("id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n"s, {ev("a", "1"), ev("b", "1")}, "1");
    // an empty id resets
    check_stream("id: 1\ndata: a\n\nid:\ndata: b\n\n", {ev("a", "1"), ev("b", "")}, "");
    // an id in an unfinished event is not the last event id
    check_stream("id: 1\ndata: a\n\nid: 2\ndata: b\n", {ev("a", "1")}, "1", {}, true);
}

TEST_CASE("sse parser: retry only when all ASCII digits")
{
    check_stream("retry: 1000\n", {}, "", 1000ms);
    check_stream("retry:0\n\n", {}, "", 0ms);
    check_stream("retry: 1000\nretry: 10x\n", {}, "", 1000ms);
    check_stream("retry:  5\n", {}, ""); // " 5": not digits
    check_stream("retry: -5\nretry: 5.0\nretry: +5\nretry\nretry:\n", {});
    check_stream("retry: 123\nretry: \xD9\xA3\n", {}, "", 123ms); // Arabic-Indic digit is not ASCII
    // applied when the field is read, even in an event that never completes
    check_stream("data: x\nretry: 42\n", {}, "", 42ms, true);
    // too large for the clock: saturates
    check_stream("retry: 99999999999999999999999999\n", {}, "",
                 std::chrono::milliseconds(std::chrono::milliseconds::max()));
}

// ---- line ends ---------------------------------------------------------------

TEST_CASE("sse parser: CR, CRLF, LF and mixtures")
{
    check_stream("data: a\rdata: b\r\r", {ev("a\nb")});
    check_stream("data: a\r\ndata: b\r\n\r\n", {ev("a\nb")});
    check_stream("data: a\r\ndata: b\rdata: c\n\r\n", {ev("a\nb\nc")});
    // LF then CR is two line ends: a blank line
    check_stream("data: x\n\rdata: y\n\n", {ev("x"), ev("y")});
    // CR CR LF: a line end, then a CRLF blank line
    check_stream("data: x\r\r\n", {ev("x")});
    // CR LF LF: one CRLF then a blank line
    check_stream("data: x\r\n\n", {ev("x")});
    // a CR line end with no text after it yet: the event is complete only with the blank line
    check_stream("data: x\r", {}, "", {}, true);
}

TEST_CASE("sse parser: a CR ending one feed and an LF starting the next are one line end")
{
    parser p;
    std::vector<event> got;
    auto sink = [&](event&& e) { got.push_back(std::move(e)); };
    p.feed("data: a\r", sink);
    p.feed("\ndata: b\r", sink);
    p.feed("\n", sink);
    CHECK(got.empty()); // were the LFs blank lines, "a" would have been dispatched
    p.feed("\r", sink);
    p.feed("\n", sink);
    REQUIRE(got.size() == 1);
    CHECK(got[0] == ev("a\nb"));
    CHECK_FALSE(p.finish());
}

// ---- UTF-8 -----------------------------------------------------------------

TEST_CASE("sse parser: one leading BOM is stripped")
{
    check_stream("\xEF\xBB\xBF" "data: x\n\n", {ev("x")});
    // a second BOM is content: the field name becomes "\uFEFFdata", unknown
    check_stream("\xEF\xBB\xBF\xEF\xBB\xBF" "data: x\n\n", {});
    // a BOM anywhere else is content
    check_stream("data: \xEF\xBB\xBFx\n\n", {ev("\xEF\xBB\xBFx")});
    // an incomplete BOM is an invalid sequence, not a BOM
    check_stream("\xEF\xBB" "data: x\n\ndata: y\n\n", {ev("y")});
    check_stream("\xEF" "\n" "data: y\n\n", {ev("y")});
    // a stream that is only a BOM
    check_stream("\xEF\xBB\xBF", {});
}

TEST_CASE("sse parser: valid UTF-8 passes, invalid bytes become U+FFFD")
{
    check_stream("data: \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\n\n", {ev("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80")});
    check_stream("data: \xFF\n\n", {ev(fffd)});
    check_stream("data: a\xC3\n\n", {ev("a" + fffd)});       // truncated by the line end
    check_stream("data: \xE2\x82\n\n", {ev(fffd)});          // one U+FFFD per maximal subpart
    check_stream("data: \xE2\x82x\n\n", {ev(fffd + "x")});
    check_stream("data: \xC0\xAF\n\n", {ev(fffd + fffd)});   // overlong
    check_stream("data: \xE0\x80\xAF\n\n", {ev(fffd + fffd + fffd)});
    check_stream("data: \xED\xA0\x80\n\n", {ev(fffd + fffd + fffd)}); // surrogate
    check_stream("data: \xF4\x90\x80\x80\n\n", {ev(fffd + fffd + fffd + fffd)}); // above U+10FFFF
    check_stream("data: \xF0\x9F\x98\n\n", {ev(fffd)});
    check_stream("data: \x80\xBF\n\n", {ev(fffd + fffd)});  // lone continuation bytes
    check_stream("data: \xF5\xFE\n\n", {ev(fffd + fffd)});
    check_stream("data: \xC3\xC3\xA9\n\n", {ev(fffd + "\xC3\xA9")});
    // a broken field name is just an unknown field
    check_stream("dat\xFF" "a: x\n\n", {});
    // invalid bytes in an id
    check_stream("id: \xFF\ndata: x\n\n", {ev("x", fffd)}, fffd);
    // a truncated sequence at the end of the stream is discarded with the unfinished line
    check_stream("data: x\n\ndata: \xE2\x82", {ev("x")}, "", {}, true);
}

// ---- end of stream and reconnection -----------------------------------------

TEST_CASE("sse parser: an unfinished event is discarded")
{
    check_stream("data: a\n", {}, "", {}, true);
    check_stream("data: a\n\ndata: b", {ev("a")}, "", {}, true);
    check_stream("data: a\n\nevent: x\n", {ev("a")}, "", {}, true);
    check_stream("data: a\n\n", {ev("a")}, "", {}, false);
    check_stream("", {}, "", {}, false);
}

TEST_CASE("sse parser: finish() ends one stream - the last id and retry carry over")
{
    parser p;
    std::vector<event> got;
    auto sink = [&](event&& e) { got.push_back(std::move(e)); };
    p.feed("\xEF\xBB\xBF" "retry: 250\nid: 4\ndata: a\n\nid: 5\ndata: cut in ha", sink);
    CHECK(p.mid_event());
    CHECK(p.finish());
    CHECK(p.last_event_id() == "4");
    CHECK(p.retry() == 250ms);
    // the next stream: its BOM is stripped again, a leading LF is a line end of its own
    p.feed("\xEF\xBB\xBF", sink);
    p.feed("\ndata: b\n\n", sink);
    REQUIRE(got.size() == 2);
    CHECK(got[0] == ev("a", "4"));
    CHECK(got[1] == ev("b", "4"));
    // a CR at the end of a stream does not swallow the next stream's LF
    p.feed("data: c\r", sink);
    CHECK(p.finish());
    p.feed("\n", sink); // a blank line: nothing to dispatch
    p.feed("data: d\n\n", sink);
    REQUIRE(got.size() == 3);
    CHECK(got[2] == ev("d", "4"));
    p.reset();
    CHECK(p.last_event_id().empty());
    CHECK_FALSE(p.retry());
}

TEST_CASE("sse parser: the handler may take the event or only look at it")
{
    parser p;
    std::vector<event> kept;
    std::size_t seen = 0;
    for (int i = 0; i < 3; ++i) {
        p.feed("id: " + std::to_string(i) + "\nevent: t\ndata: payload\n\n",
               [&](event e) { kept.push_back(std::move(e)); });
        p.feed("data: other\n\n", [&](const event& e) {
            ++seen;
            CHECK(e.data == "other");
            CHECK(e.type == "message");
        });
    }
    CHECK(seen == 3);
    REQUIRE(kept.size() == 3);
    CHECK(kept[2] == ev("payload", "2", "t"));
}

TEST_CASE("sse parser: a throwing handler leaves the parser usable")
{
    parser p;
    CHECK_THROWS_AS(p.feed("data: a\n\ndata: lost\n\n", [](const event&) { throw std::runtime_error("x"); }),
                    std::runtime_error);
    p.finish();
    std::vector<event> got;
    p.feed("data: b\n\n", [&](event&& e) { got.push_back(std::move(e)); });
    REQUIRE(got.size() == 1);
    CHECK(got[0] == ev("b"));
}

// ---- limits ----------------------------------------------------------------

TEST_CASE("sse parser: line and event limits end in limit_exceeded")
{
    const lens::sse::limits lim{16, 24};
    auto run = [&](std::string_view in, std::size_t chunk, std::vector<event>& got) {
        parser p(lim);
        boost::system::error_code ec;
        for (std::size_t pos = 0; pos < in.size() && !ec; pos += chunk)
            p.feed(in.substr(pos, chunk), [&](event&& e) { got.push_back(std::move(e)); }, ec);
        return ec;
    };
    for (std::size_t chunk : {std::size_t(1), std::size_t(3), std::size_t(1000)}) {
        INFO("chunk ", chunk);
        std::vector<event> got;
        // 16 bytes is allowed, 17 is not
        CHECK_FALSE(run("data: 0123456789\n\n", chunk, got));
        CHECK(run("data: 0123456789a\n\n", chunk, got) == lens::errc::limit_exceeded);
        // comments and field names count too
        CHECK(run(": 0123456789abcdef\n", chunk, got) == lens::errc::limit_exceeded);
        CHECK(run("0123456789abcdefg\n", chunk, got) == lens::errc::limit_exceeded);
        // the event: 3 × (7 + LF) = 24 fits, a fourth line does not
        got.clear();
        CHECK_FALSE(run("data: 1234567\ndata: 1234567\ndata: 1234567\n\n", chunk, got));
        REQUIRE(got.size() == 1);
        got.clear();
        CHECK(run("data: ok\n\ndata: 1234567\ndata: 1234567\ndata: 1234567\ndata\n\n", chunk, got) ==
              lens::errc::limit_exceeded);
        // events before the violation were delivered
        REQUIRE(got.size() == 1);
        CHECK(got[0].data == "ok");
    }
}

TEST_CASE("sse parser: after a limit error input is refused until finish()")
{
    parser p(lens::sse::limits{8, 8});
    std::vector<event> got;
    auto sink = [&](event&& e) { got.push_back(std::move(e)); };
    boost::system::error_code ec;
    p.feed("data: far too long\n\n", sink, ec);
    CHECK(ec == lens::errc::limit_exceeded);
    p.feed("data: x\n\n", sink, ec);
    CHECK(ec == lens::errc::limit_exceeded);
    CHECK(got.empty());
    p.finish();
    p.feed("data: x\n\n", sink, ec);
    CHECK_FALSE(ec);
    CHECK(got.size() == 1);
    // the throwing overload
    try {
        p.feed("data: far too long\n\n", sink);
        FAIL("no exception");
    } catch (const lens::error& e) {
        CHECK(e.code() == lens::errc::limit_exceeded);
        CHECK(e.operation() == "sse parse");
        CHECK(std::string(e.what()).find("max_line") != std::string::npos);
    }
}

// ---- linearity --------------------------------------------------------------

TEST_CASE("sse parser: a 64 MiB single-line event in 4 KiB feeds is linear")
{
    constexpr std::size_t size = std::size_t(64) << 20;
    parser p(lens::sse::limits{size + 16, size + 16});
    std::string chunk(4096, 'x');
    std::size_t events = 0, data_size = 0;
    auto sink = [&](const event& e) {
        ++events;
        data_size = e.data.size();
    };
    std::uint64_t fed = 0;
    auto feed = [&](std::string_view s) {
        p.feed(s, sink);
        fed += s.size();
        // never more examined than fed, at any point: nothing is rescanned
        REQUIRE(p.bytes_examined() == fed);
    };
    feed("data: ");
    for (std::size_t n = 0; n < size; n += chunk.size())
        feed(chunk);
    CHECK(events == 0);
    feed("\n\n");
    CHECK(events == 1);
    CHECK(data_size == size);
}

TEST_CASE("sse parser: non-ASCII text split everywhere is examined once")
{
    std::string line = "data: ";
    for (int i = 0; i < 20000; ++i)
        line += "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xFF";
    line += "\n\n";
    parser p(lens::sse::limits{1 << 20, 1 << 20});
    std::size_t events = 0;
    for (std::size_t pos = 0; pos < line.size(); pos += 7)
        p.feed(std::string_view(line).substr(pos, 7), [&](const event&) { ++events; });
    CHECK(events == 1);
    CHECK(p.bytes_examined() == line.size());
}

// ---- differential test against a naive transcription of the spec -----------
// (the transcription, lens::test::sse_reference, is shared with fuzz/sse_parser.cpp)

TEST_CASE("sse parser: agrees with a literal transcription of the spec on random streams")
{
    const std::vector<std::string> tokens = {
        "data", "data", "data:", "data: ", "event", "event:", "id", "id:", "retry:", "retry", ":",
        " ", "  ", "x", "yz", "12", "0", "\n", "\n", "\r", "\r\n", "\n\n", "\xEF\xBB\xBF", "\xEF",
        "\xBB", "\xBF", "\xC3", "\xA9", "\xE2\x82\xAC", "\xF0\x9F", "\x98\x80", "\xFF", "\x80",
        "\xED\xA0\x80", std::string(1, '\0'), "\t", "dat", "a"};
    std::mt19937 rng(20240601);
    for (int round = 0; round < 400; ++round) {
        std::string in;
        const int n = static_cast<int>(rng() % 40);
        for (int i = 0; i < n; ++i)
            in += tokens[rng() % tokens.size()];
        const result expected = lens::test::sse_reference(in);
        // whole, bytes, and a few random splits (all chunkings on every tenth round)
        const auto chunkings = all_chunkings(in.size());
        const std::size_t count = round % 10 == 0 ? chunkings.size() : 6;
        for (std::size_t c = 0; c < count; ++c) {
            INFO("round ", round, ", input \"", escaped(in), "\", ", chunkings[c].name);
            CHECK(parse(in, chunkings[c].next) == expected);
        }
    }
}
