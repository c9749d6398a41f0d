// Decoding of SSE payloads into typed session events: every kind, tolerance of
// odd content, and the non-JSON policy.
#include <lens/events.hpp>

#include "detail/event_decoding.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>

#include <cstdint>
#include <limits>
#include <vector>

using lens::decode_event;
using lens::event_kind;
using lens::session_event;

TEST_CASE("events: envelope events")
{
    auto start = decode_event("", R"({"type":"sse.stream.start","session_id":"lsn-1","reader_id":"r-9"})");
    REQUIRE(start.kind() == event_kind::stream_start);
    CHECK(start.get_if<lens::stream_start>()->session_id == "lsn-1");
    CHECK(start.get_if<lens::stream_start>()->reader_id == "r-9");
    CHECK(start.type == "sse.stream.start");
    CHECK(start.id.empty());

    auto hb = decode_event("7", R"({"type":"sse.stream.heartbeat","session_id":"lsn-1",
        "session_status":"LensSessionStatus.SESSION_STATUS_RUNNING","num_messages":"12","num_bytes":3456,
        "message_timeout":3.0})");
    REQUIRE(hb.kind() == event_kind::heartbeat);
    auto* h = hb.get_if<lens::heartbeat>();
    CHECK(h->session_status == "LensSessionStatus.SESSION_STATUS_RUNNING");
    CHECK(h->num_messages == 12); // a number sent as a string
    CHECK(h->num_bytes == 3456);
    CHECK(h->message_timeout == 3);
    CHECK(hb.id == "7");

    auto end = decode_event("9", R"({"type":"sse.stream.end"})");
    CHECK(end.kind() == event_kind::stream_end);
    CHECK(end.get_if<lens::stream_end>()->session_id.empty());
}

TEST_CASE("events: lens events")
{
    auto r = decode_event("1", R"({"type":"inference.result","event_data":{"response":["HEALTHY",
        {"HEALTHY":0.95,"BROKEN":0.05}],"query_id":"q1","query_metadata":{"window":2}}})");
    REQUIRE(r.kind() == event_kind::inference_result);
    auto* res = r.get_if<lens::inference_result>();
    CHECK(res->label() == "HEALTHY");
    CHECK(res->score("HEALTHY") == doctest::Approx(0.95));
    CHECK(res->score("BROKEN") == doctest::Approx(0.05));
    CHECK_FALSE(res->score("OTHER"));
    CHECK(res->query_id == "q1");
    CHECK(r.event_data().at("query_metadata").at("window") == 2);
    CHECK(res->texts() == std::vector<std::string>{"HEALTHY"});

    // Escaped member names are unescaped by the parser into a buffer of its own: each is
    // kept, and the last of a name wins as in a tree.
    auto escaped = decode_event("1", R"({"type":"inference.result","event_data":{"response":["A",)"
                                     R"({"\u0041":0.5,"\u0042\u0042":"x\n","\u0041":0.25,"C":1}]}})");
    CHECK(escaped.get_if<lens::inference_result>()->score("A") == 0.25);
    CHECK_FALSE(escaped.get_if<lens::inference_result>()->score("BB"));
    CHECK(escaped.get_if<lens::inference_result>()->score("C") == 1);

    auto texts = decode_event("2", R"({"type":"inference.result","event_data":{"response":["a cat","a dog"]}})");
    CHECK(texts.get_if<lens::inference_result>()->texts() == std::vector<std::string>{"a cat", "a dog"});

    auto err = decode_event("3", R"({"type":"inference.error","event_data":{"error_messages":["x",{"code":1}]}})");
    CHECK(err.get_if<lens::inference_error>()->error_messages == std::vector<std::string>{"x", R"({"code":1})"});

    auto log = decode_event("4", R"({"type":"log.warning","event_data":{"message":"careful"}})");
    CHECK(log.get_if<lens::log_message>()->level == "warning");
    CHECK(log.get_if<lens::log_message>()->message == "careful");
    auto log2 = decode_event("4", R"({"type":"log.info","event_data":"plain text"})");
    CHECK(log2.get_if<lens::log_message>()->message == "plain text");

    auto frame = decode_event("5", R"({"type":"frame.processed","event_data":{"frame_index":4,"timestamp":0.4}})");
    CHECK(frame.get_if<lens::frame_processed>()->frame_index == 4u);
    CHECK(frame.get_if<lens::frame_processed>()->timestamp == doctest::Approx(0.4));

    auto e1 = decode_event("6", R"({"type":"error","message":"Unknown session id: lsn-1"})");
    CHECK(e1.get_if<lens::error_event>()->message == "Unknown session id: lsn-1");
    auto e2 = decode_event("6", R"({"type":"error","event_data":{"error_messages":["a","b"]}})");
    CHECK(e2.get_if<lens::error_event>()->message == "a; b");
}

TEST_CASE("events: the trees are parsed from the text on demand and events are values")
{
    const char* data = R"({"type":"inference.result","event_data":{"response":["OK",{"OK":0.5}],)"
                       R"("query_id":"q","query_metadata":{"window":3}}})";
    auto original = decode_event("1", data);
    CHECK(original.data == data);
    CHECK(original.raw() == boost::json::parse(data));
    CHECK(original.event_data().at("query_metadata").at("window") == 3);
    CHECK(original.event_data().at("response").at(0) == "OK");

    session_event copy = original;
    CHECK(copy == original);
    session_event moved = std::move(copy);
    CHECK(moved == original);
    const auto* r = moved.get_if<lens::inference_result>();
    REQUIRE(r);
    CHECK(r->label() == "OK");
    CHECK(r->score("OK") == doctest::Approx(0.5));
    CHECK(moved.raw().at("event_data").at("query_id") == "q");

    // the events differ by any field
    auto other_id = decode_event("2", data);
    CHECK(other_id != original);
    auto other_score = decode_event("1", R"({"type":"inference.result","event_data":{"response":["OK",{"OK":0.6}],)"
                                         R"("query_id":"q","query_metadata":{"window":3}}})");
    CHECK(other_score != original);

    // no event_data: null; an empty event: null raw
    CHECK(decode_event("6", R"({"type":"inference.result"})").event_data().is_null());
    CHECK(decode_event("7", R"({"type":"frame.processed","event_data":5})").event_data() == 5);
    CHECK(session_event{}.raw().is_null());
    CHECK(session_event{}.event_data().is_null());
}

namespace {

/// Payloads of every kind and shape servers send: the streaming decoder decides these.
const std::vector<std::string>& server_shapes()
{
    static const std::vector<std::string> corpus = {
        R"({"type":"sse.stream.start","session_id":"lsn-1","reader_id":"r-9"})",
        R"({"type":"sse.stream.heartbeat","session_id":"lsn-1","session_status":"RUNNING","num_messages":12,"num_bytes":3456,"message_timeout":3})",
        R"({"type":"sse.stream.end","session_id":"lsn-1"})",
        R"({"type":"inference.result","event_data":{"response":["HEALTHY",{"HEALTHY":0.95,"BROKEN":0.05}],"query_id":"qry-9e3779b97f4a7c15","query_metadata":{"window":2,"rows":[1,1],"file_id":"a.csv"}}})",
        R"({"event_data":{"query_metadata":{"window":2},"query_id":"q","response":["a cat","a dog"]},"type":"inference.result"})",
        R"({"type":"inference.result","event_data":{"response":"just text"}})",
        R"({"type":"inference.result","event_data":{"response":[1,"late label",{"A":1,"B":-2,"C":"x","D":null,"A":3},{"E":1}]}})",
        R"({"type":"inference.result","event_data":{"response":{"HEALTHY":1}}})",
        R"({"type":"inference.result","event_data":{"response":[[["deep"]],{"s":{"t":[1,{"u":2}]}}],"query_id":null}})",
        R"({"type":"inference.result","event_data":null})",
        R"({"type":"inference.error","event_data":{"error_messages":["x","y"]}})",
        R"({"type":"inference.error","error_messages":["top"]})",
        R"({"type":"inference.error","error_messages":"one"})",
        R"({"type":"log.warning","event_data":{"message":"careful"}})",
        R"({"type":"log.info","event_data":"plain text"})",
        R"({"type":"log.info","message":"top"})",
        R"({"type":"log.debug","event_data":{"message":null}})",
        R"({"type":"frame.processed","event_data":{"frame_index":4,"timestamp":0.4}})",
        R"({"type":"frame.processed","event_data":{"frame_index":4,"timestamp":-7}})",
        R"({"type":"error","message":"Unknown session id: lsn-1"})",
        R"({"type":"error","event_data":{"error_messages":["a","b"]}})",
        R"({"type":"error","event_data":{"message":"m"}})",
        R"({"type":"inference.start","event_data":{"n":1}})",
        R"({"t\u0079pe":"sse.stream.start","session_id":"lsn-\u0031"})",
        R"({"type":"inference.result","event_data":{"response":["A",{"\u0041":0.5,"\u0042\u0042":"x\n","C":{"\u0044":1},"\u0041":0.25}]}})",
        R"({"type":"log.info","event_data":{"message":"tab\there \"quoted\" \u00e9"}})",
        R"({"type":"sse.stream.heartbeat","num_messages":null,"num_bytes":true,"message_timeout":{}})",
        R"({"type":7})", R"({"no_type":1})", "[1,2]", "42", "null", R"("text")",
    };
    return corpus;
}

/// Odd shapes and non-JSON: the streaming decoder leaves these to the tree.
const std::vector<std::string>& odd_shapes()
{
    static const std::vector<std::string> corpus = {
        R"({"type":"sse.stream.heartbeat","num_messages":"12","num_bytes":3456,"message_timeout":3.0})",
        R"({"type":"sse.stream.heartbeat","num_messages":-4,"session_id":12})",
        R"({"type":"sse.stream.heartbeat","num_messages":1e38,"num_bytes":18446744073709551616.0})",
        R"({"type":"sse.stream.start","session_id":{"a":1},"reader_id":true})",
        R"({"type":"inference.error","event_data":{"error_messages":["x",{"code":1},null,2]}})",
        R"({"type":"inference.error","event_data":{"error_messages":{"code":1}}})",
        R"({"type":"log.info","event_data":{"level":3}})",
        R"({"type":"log.info","event_data":[1,2]})",
        R"({"type":"log.info","event_data":12})",
        R"({"type":"frame.processed","event_data":{"frame_index":3.5e300,"timestamp":"0.5"}})",
        R"({"type":"frame.processed","event_data":{"frame_index":"7"}})",
        R"({"type":"inference.result","event_data":{"query_id":5}})",
        R"({"type":"sse.stream.start","type":"sse.stream.end"})",
        R"({"type":"inference.result","event_data":{"query_id":"a"},"event_data":{"query_id":"b"}})",
        R"({"type":"error","message":1.5})",
        R"({"type":"sse.stream.start","session_id":"s","API_Key":"k"})",
        R"({"type":"inference.result","event_data":{"query_metadata":{"deep":{"api_key":1}}}})",
        "not json", "", "{\"type\":", "data: {}", R"({"type":"x"} trailing)", "{\"type\":\"\xff\"}",
    };
    return corpus;
}

} // namespace

// The streaming decoder builds no tree and gives up on anything odd; where it decides, it
// must decide as the tree decoder does, and it must decide the shapes servers send (else
// the fast path is silently gone).
TEST_CASE("events: the streaming decoder agrees with the tree decoder")
{
    using lens::detail::event_decoding;
    for (const auto* corpus : {&server_shapes(), &odd_shapes()}) {
        const bool decides = corpus == &server_shapes();
        for (const auto& data : *corpus) {
            INFO(data);
            const session_event tree = event_decoding::from_tree("id-1", data);
            std::string id = "id-1";
            session_event fast;
            const bool decided = event_decoding::streaming(id, data, fast);
            CHECK(decided == decides);
            if (decided)
                CHECK(fast == tree);
            else
                CHECK(id == "id-1"); // not moved from when it gives up
            CHECK(decode_event("id-1", data) == tree);
        }
    }
}

TEST_CASE("events: unknown types, odd shapes and non-JSON data never throw")
{
    auto u = decode_event("1", R"({"type":"inference.start","event_data":{"n":1}})");
    CHECK(u.kind() == event_kind::unknown);
    CHECK(u.type == "inference.start");
    CHECK(u.raw().at("event_data").at("n") == 1);

    // known types with missing or mistyped fields keep their kind
    auto r = decode_event("2", R"({"type":"inference.result","event_data":null})");
    CHECK(r.kind() == event_kind::inference_result);
    CHECK_FALSE(r.get_if<lens::inference_result>()->label());
    auto hb = decode_event("2", R"({"type":"sse.stream.heartbeat","num_messages":-4,"session_id":12})");
    CHECK(hb.get_if<lens::heartbeat>()->num_messages == 0);
    CHECK(hb.get_if<lens::heartbeat>()->session_id == "12");

    for (auto data : {"[1,2]", "42", "null", R"({"no_type":1})", R"({"type":7})"}) {
        INFO(data);
        auto e = decode_event("3", data);
        CHECK(e.kind() == event_kind::unknown);
        CHECK(e.type.empty());
    }

    for (auto data : {"not json", "", "{\"type\":", "data: {}"}) {
        INFO(data);
        auto e = decode_event("4", data);
        REQUIRE(e.kind() == event_kind::malformed);
        CHECK(e.get_if<lens::malformed_event>()->data == data);
        CHECK_FALSE(e.get_if<lens::malformed_event>()->error.empty());
        CHECK(e.raw() == data);
        CHECK(e.data == data);
        CHECK(e.type.empty());
    }
    CHECK(lens::to_string(event_kind::frame_processed) == "frame_processed");
}

// Found by fuzz/events.cpp: a count too large for its type was converted from double
// with undefined behaviour (UBSan: "1e+38 is outside the range of representable values").
// Counts saturate, like the records' counters (lens/records.hpp).
TEST_CASE("events: counts beyond 2^64 saturate instead of overflowing")
{
    auto hb = decode_event("", R"({"type":"sse.stream.heartbeat","num_messages":1e38,"num_bytes":18446744073709551616.0,
        "message_timeout":1.8446744073709552e19})");
    auto* h = hb.get_if<lens::heartbeat>();
    REQUIRE(h);
    CHECK(h->num_messages == std::numeric_limits<std::uint64_t>::max());
    CHECK(h->num_bytes == std::numeric_limits<std::uint64_t>::max());
    CHECK(h->message_timeout == std::numeric_limits<std::uint64_t>::max());

    auto frame = decode_event("", R"({"type":"frame.processed","event_data":{"frame_index":3.5e300}})");
    REQUIRE(frame.get_if<lens::frame_processed>());
    CHECK(frame.get_if<lens::frame_processed>()->frame_index == std::numeric_limits<std::uint64_t>::max());
    // The largest double below 2^64 is still exact.
    auto exact = decode_event("", R"({"type":"sse.stream.heartbeat","num_messages":18446744073709549568.0})");
    CHECK(exact.get_if<lens::heartbeat>()->num_messages == 18446744073709549568ull);
}
