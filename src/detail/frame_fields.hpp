// What lens reads of a WebSocket frame from the server, gathered without building a tree.
//
// The multiplexer needs a few top-level members of every frame: `type`, `session_id`,
// `message` and whether `event_data` is there decide where the frame goes
// (classify_frame) and whether a reply is a failure (reply_failure). A validation reads
// two members of `event_data`. A tree costs several allocations and most of a small
// reply's decoding time, so both come from `frame_fields`, gathered one of two ways:
// - gather_streaming: one pass of Boost.JSON's SAX parser over the text. It decides
//   the shapes servers send and gives up on anything else: text that is not one JSON
//   object, a `type` or `message` that is not a string, a tracked member named twice,
//   a validation field of another type, a string the parser had to copy, and a member
//   named `api_key` at any depth (which a redactor removes: so, in a text without an
//   escape and without the key, a decided frame needs no scrubbing);
// - gather_from_tree: the same fields looked up in a parsed tree, which decides every
//   frame (a non-string `message` is rendered as JSON).
// Both fill the same record, and one function of it classifies, so the rules of
// docs/protocol.md §3 are written once.
#pragma once

#include <boost/json/fwd.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lens::detail {

/// What a frame received from the server is.
struct frame_class {
    enum kind_type {
        reply,        ///< answers the oldest pending request of type `request_type`
        error,        ///< `{"type": "error", ...}`: answers the oldest pending request of any type
        unsolicited,  ///< answers nothing: goes to the session's inbox
    } kind = unsolicited;
    std::string_view request_type; ///< for replies: "session.validate" for "session.validate.response"
};

/// The members of a frame lens reads. The views point into the text gathered from (or
/// the tree, or `rendered`): valid while those are.
struct frame_fields {
    bool is_object = false;
    bool has_type = false;               ///< `type` is a member, of any JSON type
    std::optional<std::string_view> type; ///< `type`, when a string
    bool has_session_id = false;         ///< `session_id` is a member
    bool has_message = false;            ///< `message` is a member
    bool message_is_string = false;
    std::string_view message;            ///< `message`: a string's text, else the value as JSON
    bool has_event_data = false;         ///< `event_data` is a member and not null
    std::optional<bool> is_valid;        ///< `event_data.is_valid`, when a boolean
    std::vector<std::string> error_messages; ///< `event_data.error_messages` (non-strings as JSON)
    std::string rendered;                ///< the storage of a rendered `message`
};

/// A reply as a session hands it to its request's result: the text, scrubbed of
/// secrets, and the validation fields read while the frame was routed (so a validation
/// takes no second pass over the text).
struct reply {
    std::string text;
    std::optional<bool> is_valid; ///< `event_data.is_valid`, when a boolean
    std::vector<std::string> error_messages;
};

/// Fills `out` (default-constructed) from the JSON `text`, or gives up and returns false
/// (`out` unspecified). Where it decides, every key and string of `text` is a piece of it
/// (no escape) and no member is named `api_key`.
bool gather_streaming(std::string_view text, frame_fields& out);
/// The fields of a parsed frame, any JSON value.
void gather_from_tree(const boost::json::value& frame, frame_fields& out);

/// Where a frame goes, by its fields:
/// - `{"type": "T.response", ...}` is a reply to a request of type T;
/// - an object without `type` that carries `session_id` is the bare record
///   `session.status` replies with;
/// - `{"type": "error", ...}` is an error of the oldest pending request;
/// - anything else (other types, non-objects) is unsolicited.
/// `request_type` views what `f.type` does.
frame_class classify_frame(const frame_fields& f) noexcept;

/// The error text of a reply that reports a failure: an envelope (`type`) carrying
/// `message` without `event_data`. Null for any other reply.
std::optional<std::string_view> reply_failure(const frame_fields& f) noexcept;

} // namespace lens::detail
