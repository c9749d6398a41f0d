// Fuzz target: the session's WebSocket frame reader (src/detail/frame_reader.hpp).
//
// Input: the first byte picks max_message (so the size bound is hit often), the second
// seeds how the rest is split into reads; the rest is what a server sent. Checked:
// - no crash, no read outside the input (ASan), no UB;
// - every call consumes at most what it was given, and only a complete frame's bytes;
// - a message is at most max_message bytes; a control payload at most 125;
// - once failed, the reader stays failed;
// - the split does not matter: the same bytes read whole and read in random pieces give
//   the same sequence of results (kinds, payloads, codes, errors).
#include "detail/frame_reader.hpp"
#include "fuzz_check.hpp"

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace {

using lens::detail::frame_reader;
using kind = frame_reader::kind;

struct seen {
    kind what;
    std::string payload;
    bool text;
    std::uint16_t code;
    int error;
    bool operator==(const seen&) const = default;
};

/// Feeds `bytes` in pieces whose sizes come from `pick` (0: all at once).
std::vector<seen> run(std::string_view bytes, std::size_t max_message, lens::fuzz::choices* pick)
{
    frame_reader r(max_message);
    std::vector<seen> out;
    std::string buffer;
    std::size_t fed = 0;
    bool failed = false;
    for (int guard = 0; guard < 1 << 20; ++guard) {
        const auto f = r.next(buffer);
        FUZZ_REQUIRE(f.consumed <= buffer.size());
        if (failed)
            FUZZ_REQUIRE(f.what == kind::failed);
        if (f.what == kind::need_more) {
            FUZZ_REQUIRE(f.consumed == 0);
            if (fed == bytes.size())
                return out;
            const std::size_t left = bytes.size() - fed;
            const std::size_t n = pick ? 1 + pick->below(std::min<std::size_t>(left, 64)) : left;
            buffer.append(bytes.substr(fed, n));
            fed += n;
            continue;
        }
        if (f.what == kind::failed) {
            out.push_back({f.what, {}, false, 0, f.error.value()});
            if (failed)
                return out;
            failed = true; // once more: it must fail again (checked above)
            continue;
        }
        FUZZ_REQUIRE(f.consumed > 0);
        if (f.what == kind::message)
            FUZZ_REQUIRE(f.payload.size() <= max_message);
        if (f.what == kind::ping || f.what == kind::pong || f.what == kind::close)
            FUZZ_REQUIRE(f.payload.size() <= 125);
        out.push_back({f.what, std::string(f.payload), f.text, f.close_code, 0});
        buffer.erase(0, f.consumed);
    }
    FUZZ_REQUIRE(false); // every call makes progress: the loop cannot spin
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 2)
        return 0;
    const std::size_t max_message = static_cast<std::size_t>(data[0]) * 4;
    lens::fuzz::choices pick(data[1]);
    const std::string_view bytes(reinterpret_cast<const char*>(data + 2), size - 2);
    const auto whole = run(bytes, max_message, nullptr);
    const auto pieces = run(bytes, max_message, &pick);
    FUZZ_REQUIRE(whole == pieces);
    return 0;
}
