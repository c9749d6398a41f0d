// The fields of WebSocket frames (src/detail/frame_fields.hpp): the streaming pass
// decides the shapes servers send, leaves everything else to the tree, and where it
// decides it agrees with the tree.
#include <doctest/doctest.h>

#include "detail/frame_fields.hpp"

#include <boost/json/parse.hpp>

#include <optional>
#include <string>
#include <vector>

using lens::detail::frame_class;
using lens::detail::frame_fields;

namespace {

/// What a test compares of two gatherings (the views by their text, not their address).
struct seen {
    bool is_object, has_type;
    std::optional<std::string> type;
    bool has_session_id, has_message, message_is_string;
    std::string message;
    bool has_event_data;
    std::optional<bool> is_valid;
    std::vector<std::string> error_messages;
    frame_class::kind_type kind;
    std::string request_type;
    std::optional<std::string> failure;
    bool operator==(const seen&) const = default;
};

seen seen_of(const frame_fields& f)
{
    const auto cls = lens::detail::classify_frame(f);
    const auto failure = lens::detail::reply_failure(f);
    return {f.is_object,
            f.has_type,
            f.type ? std::optional<std::string>(*f.type) : std::nullopt,
            f.has_session_id,
            f.has_message,
            f.message_is_string,
            std::string(f.message),
            f.has_event_data,
            f.is_valid,
            f.error_messages,
            cls.kind,
            std::string(cls.request_type),
            failure ? std::optional<std::string>(*failure) : std::nullopt};
}

seen from_tree(std::string_view text)
{
    const boost::json::value tree = boost::json::parse(text); // the fields view into it
    frame_fields f;
    lens::detail::gather_from_tree(tree, f);
    return seen_of(f);
}

/// Frames servers send: the streaming pass must decide each.
const std::vector<std::string>& server_shapes()
{
    static const std::vector<std::string> shapes = {
        R"({"type":"session.validate.response","event_data":{"is_valid":true,"error_messages":[]}})",
        R"({"type":"session.validate.response","event_data":{"is_valid":false,"error_messages":["no lens","bad input"]}})",
        R"({"type":"input_stream.set.response","event_data":{"is_valid":false,"error_messages":["stream_type"]}})",
        R"({"session_id":"lsn-1","session_status":"LensSessionStatus.SESSION_STATUS_RUNNING","lens_id":"lns-1"})",
        R"({"type":"error","message":"Unknown session id: lsn-1"})",
        R"({"type":"model.query.response","message":"Response timed out for query"})",
        R"({"type":"model.query.response","message":"Response timed out for query","event_data":null})",
        R"({"type":"model.query.response","event_data":{"result":{"response":["a cat"],"query_metadata":{"n":1}}}})",
        R"({"type":"session.read.response","event_data":{"client_id":"c1","messages":[{"type":"x","data":{"a":[1,2.5,-3,true,null]}}]}})",
        R"({"type":"session.read.response","event_data":null})",
        R"({"type":"session.destroy.response","event_data":{"session_id":"lsn-1","session_status":"4"}})",
        R"({"type":"session.heartbeat.response","event_data":{}})",
        R"({"type":"inference.result","event_data":{"response":"x"}})",
        R"({"type":"note"})",
        R"({"type":"session.validate.response","event_data":"text"})",
        R"({"type":"session.validate.response","event_data":[1,2]})",
        R"({"type":"session.validate.response","event_data":7})",
        R"({"type":"x.response","message":"failed","event_data":{"is_valid":true}})",
        R"({"type":"error","message":"bad","extra":{"api":{"key":1}},"deep":[[[[[[1]]]]]]})",
        R"({"type":"x.response","event_data":{"inner":{"is_valid":false,"error_messages":[1]}}})",
        R"({"session_id":null})",
        R"({"no_type":1})",
        R"({})",
        " {\"type\" : \"a.response\" ,\n \"event_data\" : { \"is_valid\" : true } } ",
        R"({"type":"session.validate.response","event_data":{"is_valid":true,"is_valid_too":false,"error_messages_x":3}})",
    };
    return shapes;
}

/// Frames the streaming pass must leave to the tree.
const std::vector<std::string>& odd_shapes()
{
    static const std::vector<std::string> shapes = {
        R"({"type":"x.response","event_data":{"api_key":"k"}})",
        R"({"type":"x.response","event_data":{"list":[{"API_KEY":"k"}]}})",
        R"({"Api_Key":1,"type":"error","message":"m"})",
        R"({"type":"a\u002eresponse"})",                    // an escape
        R"({"type":"error","message":"tab\there"})",
        R"({"t\u0079pe":"x.response"})",
        R"({"type":7})",                                    // a type that is not text
        R"({"type":null,"session_id":"s"})",
        R"({"type":"error","message":{"code":3}})",         // a message that is not text
        R"({"type":"x.response","message":null})",
        R"({"type":"x.response","message":["a"]})",
        R"({"type":"a.response","type":"b.response"})",      // a member named twice
        R"({"type":"error","message":"a","message":"b"})",
        R"({"event_data":null,"event_data":{"is_valid":true},"type":"a.response"})",
        R"({"type":"a.response","event_data":{"is_valid":true,"is_valid":false}})",
        R"({"type":"a.response","event_data":{"is_valid":"yes"}})", // validation fields of another type
        R"({"type":"a.response","event_data":{"is_valid":null}})",
        R"({"type":"a.response","event_data":{"error_messages":"one"}})",
        R"({"type":"a.response","event_data":{"error_messages":[1,{"a":2},null,["x"]]}})",
        R"({"type":"a.response","event_data":{"error_messages":{}}})",
        R"([{"type":"a.response"}])",                       // not an object
        R"("a.response")",
        R"(42)",
        R"(null)",
    };
    return shapes;
}

} // namespace

TEST_CASE("frame fields: the streaming pass agrees with the tree")
{
    for (const auto* corpus : {&server_shapes(), &odd_shapes()}) {
        const bool decides = corpus == &server_shapes();
        for (const auto& text : *corpus) {
            INFO(text);
            frame_fields fast;
            const bool decided = lens::detail::gather_streaming(text, fast);
            CHECK(decided == decides);
            if (decided)
                CHECK(seen_of(fast) == from_tree(text));
        }
    }
}

TEST_CASE("frame fields: the streaming pass gives up on text that is not one JSON value")
{
    for (const std::string text :
         {"", "{", "not json", R"({"type":"a.response"} x)", R"({"type":"a.response"}{})", "{\"type\":\"\xff\"}"}) {
        INFO(text);
        frame_fields f;
        CHECK_FALSE(lens::detail::gather_streaming(text, f));
    }
}

TEST_CASE("frame fields: what the routing reads")
{
    frame_fields f;
    REQUIRE(lens::detail::gather_streaming(
        R"({"type":"session.validate.response","event_data":{"is_valid":false,"error_messages":["a","b"]}})", f));
    auto cls = lens::detail::classify_frame(f);
    CHECK(cls.kind == frame_class::reply);
    CHECK(cls.request_type == "session.validate");
    CHECK(f.is_valid == false);
    CHECK(f.error_messages == std::vector<std::string>{"a", "b"});
    CHECK_FALSE(lens::detail::reply_failure(f));
    // An absent or non-boolean is_valid is no answer at all (input_stream.set refuses only on false).
    CHECK_FALSE(from_tree(R"({"type":"a.response","event_data":{}})").is_valid);
    CHECK_FALSE(from_tree(R"({"type":"a.response","event_data":{"is_valid":"no"}})").is_valid);

    // A failure: an envelope with `message` and no `event_data`; the tree renders a
    // message that is not text.
    const auto timed_out = from_tree(R"({"type":"model.query.response","message":"Response timed out for query"})");
    CHECK(timed_out.failure == "Response timed out for query");
    CHECK(from_tree(R"({"type":"x.response","message":{"code":3}})").failure == R"({"code":3})");
    CHECK(from_tree(R"({"type":"x.response","message":null,"event_data":null})").failure == "null");
    CHECK_FALSE(from_tree(R"({"type":"x.response","message":"m","event_data":{}})").failure);
    CHECK_FALSE(from_tree(R"({"message":"m","session_id":"s"})").failure); // the bare record is no envelope

    // Error frames go to the oldest request; a non-text message is not its text.
    const auto err = from_tree(R"({"type":"error","message":42})");
    CHECK(err.kind == frame_class::error);
    CHECK_FALSE(err.message_is_string);
    // The tree renders error messages that are not text.
    CHECK(from_tree(R"({"type":"a.response","event_data":{"error_messages":[1,{"a":2},"t"]}})").error_messages ==
          std::vector<std::string>{"1", R"({"a":2})", "t"});
}
