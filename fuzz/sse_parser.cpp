// Fuzz target: the SSE parser (include/lens/sse/parser.hpp) against the literal
// transcription of the WHATWG algorithm (tests/unit/sse_reference.hpp).
//
// Invariants, for any bytes:
// - fed whole, or in any chunking (split points and empty feeds chosen by the input,
//   handler taking events by value or by reference), the parser gives exactly the
//   reference's events, last event id, retry and "something was discarded";
// - every byte fed is examined, none twice;
// - with small limits, the stream fails with limit_exceeded exactly when a line or an
//   event's data is over them, and the events delivered before are the reference's first.
//
// Input: the stream; its last bytes also choose the chunking and the limits (read
// from the end by FuzzedDataProvider, so a corpus file is a readable stream).
#include <lens/error.hpp>
#include <lens/sse/parser.hpp>

#include "fuzz_check.hpp"
#include "unit/sse_reference.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <string>
#include <vector>

namespace {

using lens::test::sse_result;

/// Parses `in` in chunks chosen by `seed` (0: whole), with `lim`; `ec` gets the first error.
sse_result parse(std::string_view in, std::uint64_t seed, lens::sse::limits lim, bool by_value,
                 boost::system::error_code& ec)
{
    lens::sse::parser p(lim);
    sse_result r;
    lens::fuzz::choices pick(seed);
    const std::uint64_t widest = 1 + pick.below(64);
    std::size_t pos = 0;
    ec = {};
    while (pos < in.size()) {
        std::size_t n = in.size() - pos;
        if (seed != 0)
            n = std::min<std::size_t>(n, pick.below(widest + 1)); // 0: an empty feed
        if (by_value)
            p.feed(in.substr(pos, n), [&](lens::sse::event e) { r.events.push_back(std::move(e)); }, ec);
        else
            p.feed(in.substr(pos, n), [&](const lens::sse::event& e) { r.events.push_back(e); }, ec);
        if (ec) {
            FUZZ_REQUIRE(ec == lens::errc::limit_exceeded);
            // Refused until finish(), with the same error.
            boost::system::error_code again;
            p.feed("data: x\n\n", [](lens::sse::event&&) {}, again);
            FUZZ_REQUIRE(again == ec);
            break;
        }
        pos += n;
    }
    if (!ec) {
        FUZZ_REQUIRE(p.bytes_examined() <= in.size());
        // Only an undecided leading BOM prefix is left unexamined.
        if (in.size() >= 3)
            FUZZ_REQUIRE(p.bytes_examined() == in.size());
    }
    r.discarded = p.finish();
    FUZZ_REQUIRE(!p.mid_event());
    r.last_event_id = p.last_event_id();
    r.retry = p.retry();
    return r;
}

/// The largest line and data buffer the stream needs, from the decoded text: `strict`
/// over complete lines, `loose` with the unfinished last line too (whose last U+FFFD
/// may stand for a sequence the parser never completes, hence two bounds).
struct needs {
    std::size_t line_strict = 0, line_loose = 0, event_strict = 0, event_loose = 0;
};

needs needs_of(std::string_view bytes)
{
    const std::string text = lens::test::sse_decode(bytes);
    needs n;
    std::size_t data = 0; // the current event's data buffer, LFs included
    std::size_t pos = 0;
    for (;;) {
        const std::size_t eol = text.find_first_of("\r\n", pos);
        const bool complete = eol != std::string::npos;
        const std::string_view line = std::string_view(text).substr(pos, complete ? eol - pos : std::string::npos);
        std::size_t value_size = 0;
        bool data_line = false;
        if (!line.empty() && line[0] != ':') {
            const std::size_t colon = line.find(':');
            data_line = line.substr(0, colon) == "data";
            if (colon != std::string_view::npos) {
                std::string_view value = line.substr(colon + 1);
                if (!value.empty() && value[0] == ' ')
                    value.remove_prefix(1);
                value_size = value.size();
            }
        }
        if (!complete) {
            n.line_loose = std::max(n.line_loose, line.size());
            if (data_line && value_size != 0)
                n.event_loose = std::max(n.event_loose, data + value_size + 1);
            break;
        }
        n.line_strict = std::max(n.line_strict, line.size());
        if (line.empty())
            data = 0;
        else if (data_line)
            data += value_size + 1;
        n.event_strict = std::max(n.event_strict, data);
        pos = eol + 1;
        if (text[eol] == '\r' && pos < text.size() && text[pos] == '\n')
            ++pos;
    }
    n.line_loose = std::max(n.line_loose, n.line_strict);
    n.event_loose = std::max(n.event_loose, n.event_strict);
    return n;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    FuzzedDataProvider in(data, size);
    const auto seed = in.ConsumeIntegral<std::uint32_t>() | 1u; // never 0: always chunked
    const auto line_limit = in.ConsumeIntegralInRange<std::size_t>(0, 80);
    const auto event_limit = in.ConsumeIntegralInRange<std::size_t>(0, 80);
    const std::string stream = in.ConsumeRemainingBytesAsString();

    const sse_result expected = lens::test::sse_reference(stream);
    boost::system::error_code ec;

    // Whole and chunked, with the default (large) limits: exactly the reference.
    FUZZ_REQUIRE(parse(stream, 0, {}, true, ec) == expected);
    FUZZ_REQUIRE(!ec);
    FUZZ_REQUIRE(parse(stream, seed, {}, false, ec) == expected);
    FUZZ_REQUIRE(!ec);

    // Small limits: an error exactly when a limit is exceeded.
    lens::sse::limits small;
    small.max_line = line_limit;
    small.max_event = event_limit;
    const needs n = needs_of(stream);
    const sse_result got = parse(stream, seed + 1, small, true, ec);
    if (n.line_strict > line_limit || n.event_strict > event_limit)
        FUZZ_REQUIRE(ec);
    if (n.line_loose <= line_limit && n.event_loose <= event_limit)
        FUZZ_REQUIRE(!ec);
    if (ec) {
        FUZZ_REQUIRE(got.events.size() <= expected.events.size());
        FUZZ_REQUIRE(std::equal(got.events.begin(), got.events.end(), expected.events.begin()));
        for (const auto& e : got.events)
            FUZZ_REQUIRE(e.data.size() < event_limit); // data + its final LF fitted
    } else {
        FUZZ_REQUIRE(got == expected);
    }
    return 0;
}
