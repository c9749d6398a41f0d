// Fuzz target: the WebSocket reply classification and matching
// (include/lens/detail/reply_matcher.hpp, src/frame_fields.cpp), driven the way
// lens::session's dispatch drives it (src/session.cpp: gather the frame's fields, classify, match the oldest
// pending request of the reply's type, error frames take the oldest of any type,
// abandoned requests keep their place, a lost connection drains by request_fate).
//
// Input: a program of operations — submit, write, abandon, server frames (built ones,
// and raw JSON text), connection losses — checked against an independent model (plain
// vectors in write order, classification transcribed from docs/protocol.md §3):
// - every request completes exactly once, by the end at the latest;
// - a reply goes to the oldest written, pending request of its type; an error frame to
//   the oldest of any type; a frame that answers nothing goes to the inbox;
// - an abandoned request's reply is consumed, never delivered;
// - after a loss, idempotent requests are resent first, in their original order;
// - where the streaming pass over a frame's text decides (src/detail/frame_fields.hpp),
//   its fields equal the tree's, and the text has no escape and no `api_key` member (so
//   the session may hand it on unscrubbed).
#include <lens/detail/reply_matcher.hpp>

#include "detail/frame_fields.hpp"

#include "detail/channel_fsm.hpp"
#include "fuzz_check.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cctype>
#include <deque>
#include <list>
#include <string>
#include <vector>

namespace {

namespace json = boost::json;
using lens::detail::frame_class;

const char* const request_types[] = {"session.status", "session.validate", "model.query", "session.read",
                                     "session.heartbeat"};

struct request : lens::detail::matcher_entry {
    int id = 0;
    bool idempotent = false;
    bool abandoned = false;
    bool written = false;
    int completions = 0; // delivered, failed or dropped: must end at exactly 1
    bool delivered = false;
};

/// The classification, transcribed from docs/protocol.md §3 (independently of the code).
struct expected_class {
    frame_class::kind_type kind = frame_class::unsolicited;
    std::string type;
};

expected_class model_classify(const json::value& v)
{
    const auto* o = v.if_object();
    if (!o)
        return {};
    const auto it = o->find("type");
    if (it == o->end())
        return o->find("session_id") != o->end() ? expected_class{frame_class::reply, "session.status"}
                                                 : expected_class{};
    if (!it->value().is_string())
        return {};
    const std::string t(it->value().get_string());
    const std::string suffix = ".response";
    if (t.size() > suffix.size() && t.compare(t.size() - suffix.size(), suffix.size(), suffix) == 0)
        return {frame_class::reply, t.substr(0, t.size() - suffix.size())};
    if (t == "error")
        return {frame_class::error, {}};
    return {};
}

bool same_fields(const lens::detail::frame_fields& a, const lens::detail::frame_fields& b)
{
    return a.is_object == b.is_object && a.has_type == b.has_type && a.type == b.type &&
           a.has_session_id == b.has_session_id && a.has_message == b.has_message &&
           a.message_is_string == b.message_is_string && a.message == b.message &&
           a.has_event_data == b.has_event_data && a.is_valid == b.is_valid && a.error_messages == b.error_messages;
}

/// A member named `api_key` (any case) at any depth.
bool has_secret_member(const json::value& v)
{
    if (const auto* o = v.if_object()) {
        for (const auto& m : *o) {
            std::string name(m.key());
            for (auto& c : name)
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (name == "api_key" || has_secret_member(m.value()))
                return true;
        }
    } else if (const auto* a = v.if_array()) {
        for (const auto& e : *a)
            if (has_secret_member(e))
                return true;
    }
    return false;
}

/// `text` with every `y` written as an escape: `y` stands only inside strings of a
/// serialized frame (never in true, false, null or a number), and "type" spells it.
std::string escaped(const std::string& text)
{
    std::string out;
    for (char c : text) {
        if (c == 'y')
            out += "\\u0079";
        else
            out += c;
    }
    return out;
}

struct harness {
    std::list<request> all;                   // stable addresses
    std::deque<request*> to_send;             // not written yet, in send order
    lens::detail::reply_matcher<request> awaiting;
    std::vector<request*> written;            // the model: written, pending, in write order
    std::size_t inbox = 0;

    void complete(request& r, bool deliver)
    {
        ++r.completions;
        FUZZ_REQUIRE(r.completions == 1);
        if (deliver) {
            FUZZ_REQUIRE(!r.abandoned);
            r.delivered = true;
        }
    }

    void forget_written(request& r)
    {
        const auto it = std::find(written.begin(), written.end(), &r);
        FUZZ_REQUIRE(it != written.end());
        written.erase(it);
    }

    void dispatch(const std::string& text)
    {
        boost::system::error_code ec;
        const json::value frame = json::parse(text, ec);
        lens::detail::frame_fields fast;
        const bool decided = lens::detail::gather_streaming(text, fast);
        if (ec) {
            FUZZ_REQUIRE(!decided);
            ++inbox; // not JSON: to the inbox as text
            return;
        }
        lens::detail::frame_fields slow;
        lens::detail::gather_from_tree(frame, slow);
        if (decided) {
            FUZZ_REQUIRE(same_fields(fast, slow));
            FUZZ_REQUIRE(text.find('\\') == std::string::npos);
            FUZZ_REQUIRE(!has_secret_member(frame));
        }
        const frame_class cls = lens::detail::classify_frame(decided ? fast : slow);
        const expected_class want = model_classify(frame);
        FUZZ_REQUIRE(cls.kind == want.kind);
        if (cls.kind == frame_class::reply)
            FUZZ_REQUIRE(cls.request_type == want.type);

        request* model = nullptr; // what the model says the frame answers
        if (want.kind == frame_class::reply) {
            const auto it = std::find_if(written.begin(), written.end(),
                                         [&](request* r) { return r->request_type == want.type; });
            model = it == written.end() ? nullptr : *it;
        } else if (want.kind == frame_class::error) {
            model = written.empty() ? nullptr : written.front();
        }

        request* got = nullptr;
        if (cls.kind == frame_class::reply)
            got = awaiting.match(cls.request_type);
        else if (cls.kind == frame_class::error)
            got = awaiting.oldest();
        FUZZ_REQUIRE(got == model);
        if (!got) {
            ++inbox;
            return;
        }
        forget_written(*got);
        complete(*got, !got->abandoned); // an abandoned request's reply is consumed and dropped
        FUZZ_REQUIRE(awaiting.size() == written.size());
    }

    void lose_connection()
    {
        std::vector<request*> resend;
        std::vector<request*> order = written; // the model's drain order
        std::size_t i = 0;
        awaiting.drain([&](request& r) {
            FUZZ_REQUIRE(i < order.size() && order[i] == &r);
            ++i;
            r.written = false;
            switch (lens::detail::channel_fsm::fate_after_loss(true, r.abandoned, r.idempotent)) {
            case lens::detail::request_fate::drop:
                FUZZ_REQUIRE(r.abandoned);
                complete(r, false);
                break;
            case lens::detail::request_fate::resend_first:
                FUZZ_REQUIRE(r.idempotent && !r.abandoned);
                resend.push_back(&r);
                break;
            case lens::detail::request_fate::fail:
                FUZZ_REQUIRE(!r.idempotent && !r.abandoned);
                complete(r, false);
                break;
            case lens::detail::request_fate::keep_queued:
                FUZZ_REQUIRE(false); // only for requests never written
            }
        });
        FUZZ_REQUIRE(i == order.size());
        written.clear();
        FUZZ_REQUIRE(awaiting.empty());
        for (auto it = resend.rbegin(); it != resend.rend(); ++it)
            to_send.push_front(*it);
    }
};

json::value built_frame(FuzzedDataProvider& in, harness& h)
{
    const std::string type = in.ConsumeBool() ? std::string(request_types[in.ConsumeIntegralInRange<int>(0, 4)])
                                              : in.ConsumeRandomLengthString(24);
    json::object o;
    switch (in.ConsumeIntegralInRange<int>(0, 6)) {
    case 0: o["type"] = type + ".response"; o["event_data"] = nullptr; break;
    case 1: o["type"] = type + ".response"; o["message"] = "Response timed out for query"; break;
    case 2: o["session_id"] = "lsn-1"; o["session_status"] = "3"; break; // session.status's bare record
    case 3: o["type"] = "error"; o["message"] = "Unknown session id: lsn-1"; break;
    case 4: o["type"] = type; break; // an event, or anything else
    case 5: o["type"] = in.ConsumeIntegral<int>(); break;
    default: return json::array{1, 2, 3};
    }
    if (in.ConsumeBool()) { // a validation's fields, and maybe a member a redactor removes
        json::object data;
        data["is_valid"] = in.ConsumeBool();
        data["error_messages"] = json::array{json::string(in.ConsumeRandomLengthString(8))};
        if (in.ConsumeBool())
            data[in.ConsumeBool() ? "api_key" : "Api_KEY"] = "k";
        o["event_data"] = std::move(data);
    }
    (void)h;
    return o;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    FuzzedDataProvider in(data, size);
    harness h;
    int next_id = 0;
    for (int step = 0; step < 256 && in.remaining_bytes() > 0; ++step) {
        switch (in.ConsumeIntegralInRange<int>(0, 6)) {
        case 0: { // submit
            request& r = h.all.emplace_back();
            r.id = next_id++;
            r.request_type = request_types[in.ConsumeIntegralInRange<int>(0, 4)];
            r.idempotent = in.ConsumeBool();
            h.to_send.push_back(&r);
            break;
        }
        case 1: { // write the next queued request (abandoned ones are retired unwritten)
            if (h.to_send.empty())
                break;
            request& r = *h.to_send.front();
            h.to_send.pop_front();
            if (r.abandoned) {
                h.complete(r, false);
                break;
            }
            r.written = true;
            h.awaiting.expect(r);
            h.written.push_back(&r);
            break;
        }
        case 2: { // the caller of some request gives up (timeout, cancellation)
            if (h.all.empty())
                break;
            auto it = h.all.begin();
            std::advance(it, in.ConsumeIntegralInRange<std::size_t>(0, h.all.size() - 1));
            if (it->completions == 0)
                it->abandoned = true;
            break;
        }
        case 3: // a frame built from the protocol's shapes
            h.dispatch(json::serialize(built_frame(in, h)));
            break;
        case 4: // any text the server might send
            h.dispatch(in.ConsumeRandomLengthString(128));
            break;
        case 5:
            h.lose_connection();
            break;
        default: // the same frame, its strings escaped (they decode the same)
            // (a built type may not be UTF-8, which no parsed frame holds: then it is not JSON)
            h.dispatch(escaped(json::serialize(built_frame(in, h))));
            break;
        }
    }
    // Teardown: whatever is left fails (or is dropped) — exactly once.
    h.awaiting.drain([&](request& r) { h.complete(r, false); });
    h.written.clear();
    for (request* r : h.to_send)
        if (r->completions == 0)
            h.complete(*r, false);
    for (const request& r : h.all) {
        FUZZ_REQUIRE(r.completions == 1);
        FUZZ_REQUIRE(!(r.delivered && r.abandoned));
    }
    return 0;
}
