// A deliberately naive transcription of WHATWG HTML "Interpreting an event stream"
// (§9.2.6), the reference the SSE parser is compared with: by the unit tests
// (tests/unit/sse_parser_test.cpp) on random token streams, and by the fuzzer
// (fuzz/sse_parser.cpp) on any bytes in any chunking. It decodes everything first,
// then walks whole lines: nothing incremental, nothing clever, no limits.
#pragma once

#include <lens/sse/parser.hpp>

#include <chrono>
#include <cstdio>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace lens::test {

using lens::sse::event;

/// `s` with every byte outside printable ASCII (and the backslash) as `\xHH`.
inline std::string escaped(std::string_view s)
{
    std::string out;
    for (unsigned char c : s) {
        if (c >= 0x20 && c < 0x7F && c != '\\') {
            out += static_cast<char>(c);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02X", c);
            out += buf;
        }
    }
    return out;
}

/// What a whole stream gives: its events, and the parser's state at its end.
struct sse_result {
    std::vector<event> events;
    std::string last_event_id;
    std::optional<std::chrono::milliseconds> retry;
    bool discarded = false;
    friend bool operator==(const sse_result&, const sse_result&) = default;
};

inline std::ostream& operator<<(std::ostream& os, const sse_result& r)
{
    os << "{events: [";
    for (const auto& e : r.events)
        os << "{" << escaped(e.type) << ", \"" << escaped(e.data) << "\", id \"" << escaped(e.last_event_id)
           << "\"} ";
    os << "], last id \"" << escaped(r.last_event_id) << "\", retry "
       << (r.retry ? std::to_string(r.retry->count()) : "none") << ", discarded " << r.discarded << "}";
    return os;
}

/// U+FFFD in UTF-8.
inline const std::string fffd = "\xEF\xBF\xBD";

/// The stream's text: BOM sniffing, then the WHATWG UTF-8 decoder in replacement mode
/// over the whole input (a sequence cut by the end of the input is one U+FFFD).
inline std::string sse_decode(std::string_view bytes)
{
    // UTF-8 decode: BOM sniff, then the WHATWG UTF-8 decoder in replacement mode.
    if (bytes.substr(0, 3) == "\xEF\xBB\xBF")
        bytes.remove_prefix(3);
    std::string text;
    unsigned needed = 0, seen = 0, lower = 0x80, upper = 0xBF;
    std::string seq;
    for (std::size_t i = 0; i < bytes.size();) {
        const unsigned b = static_cast<unsigned char>(bytes[i]);
        if (needed == 0) {
            ++i;
            if (b <= 0x7F) {
                text += static_cast<char>(b);
            } else if (b >= 0xC2 && b <= 0xDF) {
                needed = 1;
                seq = std::string(1, static_cast<char>(b));
            } else if (b >= 0xE0 && b <= 0xEF) {
                if (b == 0xE0) lower = 0xA0;
                if (b == 0xED) upper = 0x9F;
                needed = 2;
                seq = std::string(1, static_cast<char>(b));
            } else if (b >= 0xF0 && b <= 0xF4) {
                if (b == 0xF0) lower = 0x90;
                if (b == 0xF4) upper = 0x8F;
                needed = 3;
                seq = std::string(1, static_cast<char>(b));
            } else {
                text += fffd;
            }
            continue;
        }
        if (b < lower || b > upper) {
            needed = seen = 0;
            lower = 0x80;
            upper = 0xBF;
            text += fffd; // and the byte is read again
            continue;
        }
        ++i;
        lower = 0x80;
        upper = 0xBF;
        seq += static_cast<char>(b);
        if (++seen == needed) {
            text += seq;
            needed = seen = 0;
        }
    }
    if (needed != 0)
        text += fffd;
    return text;
}

/// The spec, as literally as possible: decode everything, then walk the lines.
inline sse_result sse_reference(std::string_view bytes)
{
    const std::string text = sse_decode(bytes);
    sse_result r;
    std::string data, type, id_buffer;
    std::size_t pos = 0;
    for (;;) {
        const std::size_t eol = text.find_first_of("\r\n", pos);
        if (eol == std::string::npos)
            break; // the rest is unfinished: discarded
        const std::string line = text.substr(pos, eol - pos);
        pos = eol + 1;
        if (text[eol] == '\r' && pos < text.size() && text[pos] == '\n')
            ++pos;
        if (line.empty()) {
            r.last_event_id = id_buffer;
            if (data.empty()) {
                type.clear();
                continue;
            }
            if (data.back() == '\n')
                data.pop_back();
            r.events.push_back(event{type.empty() ? "message" : type, data, r.last_event_id});
            data.clear();
            type.clear();
            continue;
        }
        if (line[0] == ':')
            continue;
        std::string name = line, value;
        if (const auto colon = line.find(':'); colon != std::string::npos) {
            name = line.substr(0, colon);
            value = line.substr(colon + 1);
            if (!value.empty() && value[0] == ' ')
                value.erase(0, 1);
        }
        if (name == "event") {
            type = value;
        } else if (name == "data") {
            data += value;
            data += '\n';
        } else if (name == "id") {
            if (value.find('\0') == std::string::npos)
                id_buffer = value;
        } else if (name == "retry") {
            if (!value.empty() && value.find_first_not_of("0123456789") == std::string::npos) {
                // Too large for the clock: saturates (the parser's documented choice).
                using rep = std::chrono::milliseconds::rep;
                rep v = 0;
                for (char c : value)
                    v = v > (std::numeric_limits<rep>::max() - (c - '0')) / 10 ? std::numeric_limits<rep>::max()
                                                                               : v * 10 + (c - '0');
                r.retry = std::chrono::milliseconds(v);
            }
        }
    }
    // Something is discarded when text remains after the last line end, or the
    // last complete line was not a dispatching blank line with nothing pending.
    r.discarded = pos < text.size() || !data.empty() || !type.empty() || id_buffer != r.last_event_id;
    return r;
}

} // namespace lens::test
