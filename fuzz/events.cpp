// Fuzz target: decoding of SSE payloads into typed session events (lens/events.hpp,
// src/events.cpp).
//
// Invariants, for any payload (the whole input):
// - decode_event never throws and never has undefined behaviour (UBSan: numbers of any
//   size or sign in any field);
// - a payload that is not JSON is a malformed_event holding the text, raw() the same
//   text as a JSON string, `type` empty;
// - JSON: `data` is the payload, raw() its value; `type` is its string `type` (else empty and the
//   kind unknown), and the kind follows the table of docs/protocol.md §4;
// - the typed views (label, score, texts) never throw;
// - the streaming decoder, where it decides, gives the tree decoder's event.
#include <lens/events.hpp>

#include "detail/event_decoding.hpp"
#include "fuzz_check.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <string>

namespace {

lens::event_kind expected_kind(std::string_view type)
{
    using k = lens::event_kind;
    if (type == "sse.stream.start") return k::stream_start;
    if (type == "sse.stream.heartbeat") return k::heartbeat;
    if (type == "sse.stream.end") return k::stream_end;
    if (type == "inference.result") return k::inference_result;
    if (type == "inference.error") return k::inference_error;
    if (type.substr(0, 4) == "log.") return k::log;
    if (type == "frame.processed") return k::frame_processed;
    if (type == "error") return k::error;
    return k::unknown;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    // The whole input is the payload (so corpus files are plain JSON); the id is only copied.
    const std::string payload(reinterpret_cast<const char*>(data), size);
    const std::string id = "id-" + std::to_string(size);

    lens::session_event ev;
    try {
        ev = lens::decode_event(id, payload);
    } catch (...) {
        FUZZ_REQUIRE(!"decode_event threw");
    }
    FUZZ_REQUIRE(ev.id == id);
    // The streaming decoder, where it decides, decides as the tree decoder does.
    std::string moved_id = id;
    lens::session_event fast;
    if (lens::detail::event_decoding::streaming(moved_id, payload, fast))
        FUZZ_REQUIRE(fast == lens::detail::event_decoding::from_tree(id, payload));
    FUZZ_REQUIRE(!lens::to_string(ev.kind()).empty());

    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(payload, ec);
    if (ec) {
        FUZZ_REQUIRE(ev.kind() == lens::event_kind::malformed);
        FUZZ_REQUIRE(ev.type.empty());
        const boost::json::value raw = ev.raw();
        FUZZ_REQUIRE(raw.is_string() && raw.get_string() == payload);
        FUZZ_REQUIRE(ev.get_if<lens::malformed_event>()->data == payload);
        return 0;
    }
    FUZZ_REQUIRE(ev.data == payload);
    FUZZ_REQUIRE(boost::json::serialize(ev.raw()) == boost::json::serialize(v)); // (NaN != NaN)
    const auto* o = v.if_object();
    const boost::json::value* type = o ? o->if_contains("type") : nullptr;
    if (!type || !type->is_string()) {
        FUZZ_REQUIRE(ev.kind() == lens::event_kind::unknown && ev.type.empty());
        return 0;
    }
    FUZZ_REQUIRE(ev.type == type->get_string());
    FUZZ_REQUIRE(ev.kind() == expected_kind(ev.type));

    if (const auto* r = ev.get_if<lens::inference_result>()) {
        const auto label = r->label();
        (void)r->score(label ? *label : std::string("x"));
        (void)r->texts();
    } else if (const auto* h = ev.get_if<lens::heartbeat>()) {
        // A non-negative integer count is read exactly.
        const auto* n = o->if_contains("num_messages");
        if (n && n->is_uint64())
            FUZZ_REQUIRE(h->num_messages == n->get_uint64());
        if (n && n->is_int64() && n->get_int64() >= 0)
            FUZZ_REQUIRE(h->num_messages == static_cast<std::uint64_t>(n->get_int64()));
    } else if (const auto* l = ev.get_if<lens::log_message>()) {
        FUZZ_REQUIRE(l->level == ev.type.substr(4));
    }
    return 0;
}
