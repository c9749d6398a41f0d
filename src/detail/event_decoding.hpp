// The two decoders behind lens::decode_event (src/events.cpp), visible to the tests
// and the fuzz target, which check that they agree.
//
// - streaming: one pass of Boost.JSON's SAX parser gathers the fields the typed events
//   read and builds no tree. It decides the shapes servers send (each field with its
//   documented JSON type) and gives up on anything else: a field of another type, a
//   tracked member named twice, text that is not one JSON value, a log event whose
//   message must be rendered from its `event_data`, a member named `api_key` (which a
//   redactor removes: see decode_scrubbed in src/stream_fsm.cpp).
// - from_tree: json::parse, then the same fields looked up in the tree, every oddity
//   rendered (numbers given as text, objects where text was expected...).
// Both fill one `fields` record and one function turns it into the event, so the rules
// of docs/protocol.md §4 (which field each kind reads) are written once.
#pragma once

#include <lens/events.hpp>

#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lens::detail {

struct event_decoding {
    /// Decodes into `out` (a default event) and returns true; or gives up and returns
    /// false, `id` untouched and `out` unspecified. In place: an event's move costs a few
    /// hundred instructions.
    static bool streaming(std::string& id, std::string_view data, session_event& out);
    /// The event, decoded through a parsed tree: every payload, malformed ones included.
    static session_event from_tree(std::string id, std::string_view data);
    /// The same, given the tree already parsed from `data`.
    static session_event from_parsed(std::string id, std::string_view data, const boost::json::value& tree);
    /// The event of a `data` that did not parse, with the parser's error.
    static session_event malformed(std::string id, std::string_view data, const boost::system::error_code& ec);
    /// An inference_result with its private fields (the decoders' one way to set them).
    static inference_result make_result(std::string query_id, inference_result::packed_parts parts,
                                        bool label_first);
};

} // namespace lens::detail
