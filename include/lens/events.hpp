/// \file
/// lens/events.hpp — the typed events of a session's SSE consumer (docs/protocol.md §4.4, §4.5).
///
/// Every `data` payload of the stream becomes one `session_event`: the fields
/// every event has (`id`, `type`, `data`) plus `body`, a std::variant holding the
/// typed view of its kind:
///
///     while (auto ev = co_await stream.next()) {
///         if (auto* r = ev->get_if<lens::inference_result>())
///             use(r->label(), r->score("HEALTHY"), ev->event_data().at("query_metadata"));
///         else if (ev->kind() == lens::event_kind::heartbeat)
///             ;
///         std::cout << ev->id << ' ' << ev->type << ' ' << ev->data << '\n';
///     }
///
/// Decoding is tolerant: a missing or oddly typed field leaves its default and
/// the event keeps its kind; `data` always has the whole payload. Types nobody
/// knows arrive as `unknown_event` with their type and text.
///
/// The typed fields come from one pass of a streaming (SAX) parser over the text;
/// the JSON tree is built only when the caller asks for it (raw(), event_data()).
///
/// Non-JSON data (the documented policy): a `data` payload that does not parse
/// as JSON is delivered as a `malformed_event` — `type` empty, raw() a JSON
/// string holding the data text, `body` the text and the parse error — and the
/// stream goes on. A payload that is JSON but not an object with a string
/// `type` is an `unknown_event` with an empty `type`.
#pragma once

#include <boost/container/small_vector.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace lens {

namespace detail {
struct event_decoding; // src/events.cpp: the decoders that fill the private members
} // namespace detail

/// `sse.stream.start`: the first event of each connection.
struct stream_start {
    std::string session_id;       ///< the session whose stream this is
    std::string reader_id;        ///< the server's id of this consumer connection

    friend bool operator==(const stream_start&, const stream_start&) = default;
};

/// `sse.stream.heartbeat`: liveness; `message_timeout` counts up.
struct heartbeat {
    std::string session_id;       ///< the session whose stream this is
    std::string session_status;   ///< as sent (see lens::parse_session_status)
    std::uint64_t num_messages = 0;    ///< the server's count of messages in the stream
    std::uint64_t num_bytes = 0;       ///< the server's count of bytes in the stream
    std::uint64_t message_timeout = 0; ///< increments with each heartbeat; not a duration

    friend bool operator==(const heartbeat&, const heartbeat&) = default;
};

/// `sse.stream.end`: the server closes the stream for good; it is the last event.
struct stream_end {
    std::string session_id;       ///< the session whose stream ended

    friend bool operator==(const stream_end&, const stream_end&) = default;
};

/// `inference.result`: `event_data: {response, query_id, query_metadata}`.
///
/// The typed parts of `response` are decoded with the event; the trees
/// (`response`, `query_metadata`) are in session_event::event_data(), parsed when
/// asked for. A stream decodes hundreds of thousands of these a second, and building
/// the trees cost more than everything else lens does per event.
struct inference_result {
    std::string query_id;                ///< the server's id of the inference

    /// The first element of `response` when it is a string (a classification's label),
    /// or `response` itself when it is a string.
    std::optional<std::string> label() const;
    /// The score of `label` in the first object inside `response`, when present and a number.
    std::optional<double> score(std::string_view label) const;
    /// Every string element of `response`, in order (`response` itself when it is a string).
    std::vector<std::string> texts() const;

    friend bool operator==(const inference_result&, const inference_result&) = default;

    /// `response`'s strings and the members of its first object, as records one after
    /// another: a tag ('T' a text, 'S' a member with a number, 'N' a member without), the
    /// length (a std::size_t), the bytes, and for a member the 8 bytes of its number. One
    /// buffer, inline up to 80 bytes (a classification's label and two scores), because a
    /// vector of texts and one of scores were two allocations per event and a tenth of a
    /// stream's decoding cost (benchmarks/sse_events.cpp).
    using packed_parts = boost::container::small_vector<char, 80>;

private:
    friend struct detail::event_decoding;
    packed_parts parts_;
    bool label_first_ = false; ///< the first record is `response`'s first element (or `response`)
};

/// `inference.error`: `event_data: {error_messages: [...]}`.
struct inference_error {
    std::vector<std::string> error_messages;   ///< the server's texts, in order

    friend bool operator==(const inference_error&, const inference_error&) = default;
};

/// A `log.*` event (`log.info`, `log.warning`...).
struct log_message {
    std::string level;     ///< "info" for `log.info`
    std::string message;   ///< `event_data.message`, or the event data as JSON text when it has none

    friend bool operator==(const log_message&, const log_message&) = default;
};

/// `frame.processed`; the whole `event_data` is session_event::event_data().
struct frame_processed {
    std::optional<std::uint64_t> frame_index;  ///< `event_data.frame_index`, when a number
    std::optional<double> timestamp;           ///< `event_data.timestamp`, when a number

    friend bool operator==(const frame_processed&, const frame_processed&) = default;
};

/// `error`: the server reports a failure in the stream; the stream goes on.
struct error_event {
    std::string message;   ///< `message`, `event_data.message` or the error messages joined by "; "

    friend bool operator==(const error_event&, const error_event&) = default;
};

/// Any other type (`session.modify.result`, `inference.start`...); see session_event::data.
struct unknown_event {
    friend bool operator==(const unknown_event&, const unknown_event&) = default;
};

/// A `data` payload that is not JSON.
struct malformed_event {
    std::string data;      ///< the payload text
    std::string error;     ///< why it did not parse

    friend bool operator==(const malformed_event&, const malformed_event&) = default;
};

/// The index of each alternative of `session_event::body`, in order.
enum class event_kind {
    stream_start,
    heartbeat,
    stream_end,
    inference_result,
    inference_error,
    log,
    frame_processed,
    error,
    unknown,
    malformed,
};

/// One event of a session's SSE consumer: the common fields and a typed `body`.
///
/// The payload stays as text (`data`); its JSON tree is built only when asked for
/// (raw(), event_data()), so a consumer that reads the typed fields never pays for it.
struct session_event {
    /// The stream's last event id when this event was dispatched (EventSource's
    /// `lastEventId`): the event's own `id`, or for events without one (the
    /// envelope events) the id of the latest event before it.
    std::string id;
    /// The payload's `type` as sent ("" for malformed data or a payload without one).
    std::string type;
    /// The payload's text, scrubbed of the API key (for malformed data, the text as received).
    std::string data;
    /// The typed view of the payload, chosen by `type`.
    std::variant<stream_start, heartbeat, stream_end, inference_result, inference_error, log_message,
                 frame_processed, error_event, unknown_event, malformed_event>
        body;

    /// Which alternative `body` holds.
    event_kind kind() const noexcept { return static_cast<event_kind>(body.index()); }

    /// `body` as a `T`, or null when it holds another kind.
    template <class T>
    const T* get_if() const noexcept { return std::get_if<T>(&body); }
    /// \overload
    template <class T>
    T* get_if() noexcept { return std::get_if<T>(&body); }

    /// The whole payload, parsed from `data` on each call (keep the result to use it
    /// twice); for malformed data a JSON string of its text; null for an empty event.
    boost::json::value raw() const;
    /// The payload's `event_data` (`response` and `query_metadata` of an inference
    /// result, the fields of `frame.processed`...), parsed on each call; null when it
    /// has none.
    boost::json::value event_data() const;

    friend bool operator==(const session_event&, const session_event&) = default;
};

/// Decodes one SSE `data` payload. Never throws for odd content (see the policy above).
session_event decode_event(std::string id, std::string_view data);

/// "stream_start", "heartbeat", ... (the enumerator's name).
std::string_view to_string(event_kind k) noexcept;

} // namespace lens
