// The session's own WebSocket framing (src/detail/frame_reader.hpp, client_frames.hpp):
// server frames parsed from bytes however they are split, every protocol rule RFC 6455
// sets for a client's reader checked with Beast's error codes, and the client's frames
// masked so that Beast's server side reads them back exactly.
#include <doctest/doctest.h>

#include "detail/client_frames.hpp"
#include "detail/frame_reader.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/error.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using lens::detail::frame_reader;
using kind = frame_reader::kind;
namespace websocket = boost::beast::websocket;

/// An unmasked server frame: `first` is the first byte (FIN, RSV, opcode).
std::string server_frame(unsigned char first, const std::string& payload, bool masked = false)
{
    std::string f(1, static_cast<char>(first));
    const std::size_t n = payload.size();
    const unsigned char m = masked ? 0x80 : 0;
    if (n < 126) {
        f.push_back(static_cast<char>(m | n));
    } else if (n <= 0xffff) {
        f.push_back(static_cast<char>(m | 126));
        f.push_back(static_cast<char>(n >> 8));
        f.push_back(static_cast<char>(n & 0xff));
    } else {
        f.push_back(static_cast<char>(m | 127));
        for (int shift = 56; shift >= 0; shift -= 8)
            f.push_back(static_cast<char>((static_cast<std::uint64_t>(n) >> shift) & 0xff));
    }
    if (masked)
        f.append(4, '\0'); // a zero key: the payload reads as itself
    return f + payload;
}

std::string binary(const std::string& p) { return server_frame(0x82, p); }
std::string text(const std::string& p) { return server_frame(0x81, p); }

/// What a reader makes of `bytes` fed `step` bytes at a time (as reads would bring
/// them): the messages, and "ping:", "pong:", "close:<code>:", "error:<message>" entries.
std::vector<std::string> read_all(const std::string& bytes, std::size_t step, std::size_t max = 1 << 20)
{
    frame_reader r(max);
    std::vector<std::string> seen;
    std::string buffer;
    std::size_t fed = 0;
    for (;;) {
        const auto f = r.next(buffer);
        if (f.what == kind::need_more) {
            if (fed == bytes.size())
                return seen;
            const auto n = std::min(step, bytes.size() - fed);
            buffer.append(bytes, fed, n);
            fed += n;
            continue;
        }
        switch (f.what) {
        case kind::message: seen.push_back(std::string(f.text ? "text:" : "") + std::string(f.payload)); break;
        case kind::ping: seen.push_back("ping:" + std::string(f.payload)); break;
        case kind::pong: seen.push_back("pong:" + std::string(f.payload)); break;
        case kind::close:
            seen.push_back("close:" + std::to_string(f.close_code) + ":" + std::string(f.payload));
            break;
        case kind::failed: seen.push_back("error:" + f.error.message()); return seen;
        default: break;
        }
        buffer.erase(0, f.consumed);
    }
}

std::string error_text(websocket::error e) { return "error:" + boost::system::error_code(e).message(); }

} // namespace

TEST_CASE("websocket frames: a burst of frames is read whole, in order, however the reads split it")
{
    const std::string big(70000, 'x'); // a 64-bit length
    const std::string mid(300, 'y');   // a 16-bit length
    const std::string bytes = binary("{\"a\":1}") + text("ok") + binary(mid) + binary(big) + binary("");
    const std::vector<std::string> expected = {"{\"a\":1}", "text:ok", mid, big, ""};
    for (std::size_t step : {1u, 2u, 3u, 7u, 100u, 1u << 20})
        CHECK(read_all(bytes, step) == expected);
}

TEST_CASE("websocket frames: fragments make one message, control frames may come between them")
{
    const std::string bytes = server_frame(0x01, "hel") + server_frame(0x89, "p") + server_frame(0x00, "lo ") +
                              server_frame(0x8a, "") + server_frame(0x80, "world") + binary("next");
    CHECK(read_all(bytes, 1) == std::vector<std::string>{"ping:p", "pong:", "text:hello world", "next"});
    CHECK(read_all(bytes, 1000) == std::vector<std::string>{"ping:p", "pong:", "text:hello world", "next"});
}

TEST_CASE("websocket frames: a close frame gives its code and reason, or 1005 when empty")
{
    CHECK(read_all(server_frame(0x88, std::string("\x03\xe8", 2) + "bye"), 1) ==
          std::vector<std::string>{"close:1000:bye"});
    CHECK(read_all(server_frame(0x88, ""), 1) == std::vector<std::string>{"close:1005:"});
    CHECK(read_all(server_frame(0x88, std::string("\x0f\xa0", 2)), 5) == std::vector<std::string>{"close:4000:"});
}

TEST_CASE("websocket frames: protocol violations fail with Beast's error codes")
{
    struct bad {
        std::string bytes;
        websocket::error expected;
    };
    const std::vector<bad> cases = {
        {server_frame(0xc2, "x"), websocket::error::bad_reserved_bits},       // RSV1 without an extension
        {server_frame(0x83, "x"), websocket::error::bad_opcode},              // reserved data opcode
        {server_frame(0x8b, ""), websocket::error::bad_opcode},               // reserved control opcode
        {server_frame(0x82, "x", true), websocket::error::bad_masked_frame},  // a server must not mask
        {server_frame(0x09, ""), websocket::error::bad_control_fragment},     // a ping without FIN
        {server_frame(0x89, std::string(126, 'p')), websocket::error::bad_control_size},
        {server_frame(0x80, "x"), websocket::error::bad_continuation},        // nothing to continue
        {server_frame(0x02, "a") + binary("b"), websocket::error::bad_data_frame},
        {std::string("\x82\x7e\x00\x05", 4) + "hello", websocket::error::bad_size}, // 16 bits for 5
        {std::string("\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x05", 10) + "hello", websocket::error::bad_size},
        {std::string("\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 10), websocket::error::bad_size}, // top bit
        {text("\xc3\x28"), websocket::error::bad_frame_payload},              // not UTF-8
        {server_frame(0x01, "\xc3") + server_frame(0x80, "\x28"), websocket::error::bad_frame_payload},
        {server_frame(0x88, "x"), websocket::error::bad_close_size},
        {server_frame(0x88, std::string("\x03\xed", 2)), websocket::error::bad_close_code}, // 1005 is never sent
        {server_frame(0x88, std::string("\x03\xe8\xc3\x28", 4)), websocket::error::bad_close_payload},
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
        CAPTURE(i);
        const auto seen = read_all(cases[i].bytes, 1);
        REQUIRE(!seen.empty());
        CHECK(seen.back() == error_text(cases[i].expected));
    }
}

TEST_CASE("websocket frames: a message over the limit fails on its header, before its payload arrives")
{
    frame_reader r(1000);
    // Only the header of a 2000-byte frame: refused at once.
    const auto f = r.next(std::string("\x82\x7e\x07\xd0", 4));
    CHECK(f.what == kind::failed);
    CHECK(f.error == websocket::error::message_too_big);
    // Fragments count together: 600 + 600 is over 1000.
    const auto seen = read_all(server_frame(0x02, std::string(600, 'a')) + server_frame(0x80, std::string(600, 'b')),
                               4096, 1000);
    CHECK(seen == std::vector<std::string>{error_text(websocket::error::message_too_big)});
    // Exactly the limit passes.
    CHECK(read_all(binary(std::string(1000, 'c')), 4096, 1000) == std::vector<std::string>{std::string(1000, 'c')});
}

TEST_CASE("websocket frames: missing() says how much of the current frame is still to come")
{
    frame_reader r(1 << 20);
    const std::string whole = binary(std::string(300, 'z')); // 4-byte header + 300
    CHECK(r.missing("") == 2);
    CHECK(r.missing(whole.substr(0, 1)) == 1);
    CHECK(r.missing(whole.substr(0, 4)) == 300);
    CHECK(r.missing(whole.substr(0, 104)) == 200);
    CHECK(r.missing(whole) == 1);
}

TEST_CASE("websocket frames: a failed reader stays failed, reset() starts over")
{
    frame_reader r(100);
    CHECK(r.next(server_frame(0x83, "")).what == kind::failed);
    CHECK(r.next(binary("fine")).what == kind::failed);
    r.reset();
    const std::string fine = binary("fine");
    const auto f = r.next(fine); // the payload points into the input
    CHECK(f.what == kind::message);
    CHECK(f.payload == "fine");
}

TEST_CASE("websocket frames: the client's frames are masked with fresh keys and decode to their payload")
{
    using lens::detail::client_frame_size;
    using lens::detail::encode_client_frame;
    using lens::detail::ws_opcode;
    std::vector<std::string> keys;
    for (std::size_t n : {0u, 1u, 7u, 8u, 125u, 126u, 65535u, 65536u, 100000u}) {
        CAPTURE(n);
        std::string payload(n, '\0');
        for (std::size_t i = 0; i < n; ++i)
            payload[i] = static_cast<char>(i * 31 + 7);
        std::string wire(client_frame_size(n), '\0');
        encode_client_frame(wire.data(), ws_opcode::binary, payload);
        const auto* p = reinterpret_cast<const unsigned char*>(wire.data());
        CHECK(p[0] == 0x82);
        REQUIRE((p[1] & 0x80) != 0); // masked
        const std::size_t len7 = p[1] & 0x7f;
        std::size_t header = 2, length = len7;
        if (len7 == 126) {
            header = 4;
            length = (std::size_t(p[2]) << 8) | p[3];
        } else if (len7 == 127) {
            header = 10;
            length = 0;
            for (int i = 0; i < 8; ++i)
                length = (length << 8) | p[2 + i];
        }
        CHECK(length == n);
        CHECK(header + 4 + n == wire.size());
        const unsigned char* key = p + header;
        keys.emplace_back(reinterpret_cast<const char*>(key), 4);
        std::string decoded(n, '\0');
        for (std::size_t i = 0; i < n; ++i)
            decoded[i] = static_cast<char>(p[header + 4 + i] ^ key[i & 3]);
        CHECK(decoded == payload);
    }
    // Nine frames, nine keys: no two alike (2^-32 odds of a false failure per pair).
    std::sort(keys.begin(), keys.end());
    CHECK(std::adjacent_find(keys.begin(), keys.end()) == keys.end());

    // The close frame echoes the code; 1005 ("none") sends an empty close.
    const std::string close = lens::detail::client_close_frame(1007);
    REQUIRE(close.size() == 8);
    const auto* c = reinterpret_cast<const unsigned char*>(close.data());
    CHECK(c[0] == 0x88);
    CHECK(c[1] == 0x82);
    CHECK(((c[6] ^ c[2]) << 8 | (c[7] ^ c[3])) == 1007);
    CHECK(lens::detail::client_close_frame(1005).size() == 6);
}
