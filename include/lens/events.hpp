/// \file
/// lens/events.hpp — the typed events of a session's SSE consumer (docs/protocol.md §4.4, §4.5).
///
/// Every `data` payload of the stream becomes one `session_event`: the fields
/// every event has (`id`, `type`, `raw`) plus `body`, a std::variant holding the
/// typed view of its kind:
///
///     while (auto ev = co_await stream.next()) {
///         if (auto* r = ev->get_if<lens::inference_result>())
///             use(r->label(), r->response());
///         else if (ev->kind() == lens::event_kind::heartbeat)
///             ;
///         std::cout << ev->id << ' ' << ev->type << ' ' << boost::json::serialize(ev->raw);
///     }
///
/// Decoding is tolerant: a missing or oddly typed field leaves its default and
/// the event keeps its kind; `raw` always has the whole payload. Types nobody
/// knows arrive as `unknown_event` with their type and raw JSON.
///
/// Non-JSON data (the documented policy): a `data` payload that does not parse
/// as JSON is delivered as a `malformed_event` — `type` empty, `raw` a JSON
/// string holding the data text, `body` the text and the parse error — and the
/// stream goes on. A payload that is JSON but not an object with a string
/// `type` is an `unknown_event` with an empty `type`.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace lens {

namespace detail {
/// The trees an absent field views: a null value and an empty object, never modified.
const boost::json::value& no_value() noexcept;
const boost::json::object& no_object() noexcept;
} // namespace detail

/// `sse.stream.start`: the first event of each connection.
struct stream_start {
    std::string session_id;       ///< the session whose stream this is
    std::string reader_id;        ///< the server's id of this consumer connection
};

/// `sse.stream.heartbeat`: liveness; `message_timeout` counts up.
struct heartbeat {
    std::string session_id;       ///< the session whose stream this is
    std::string session_status;   ///< as sent (see lens::parse_session_status)
    std::uint64_t num_messages = 0;    ///< the server's count of messages in the stream
    std::uint64_t num_bytes = 0;       ///< the server's count of bytes in the stream
    std::uint64_t message_timeout = 0; ///< increments with each heartbeat; not a duration
};

/// `sse.stream.end`: the server closes the stream for good; it is the last event.
struct stream_end {
    std::string session_id;       ///< the session whose stream ended
};

/// `inference.result`: `event_data: {response, query_id, query_metadata}`.
///
/// `response()` and `query_metadata()` are views into the event's `raw` (see
/// session_event), not copies: a stream decodes hundreds of thousands of these a
/// second, and copying the two trees cost more than parsing them.
struct inference_result {
    /// E.g. `["HEALTHY", {"HEALTHY": 0.95, "BROKEN": 0.05}]` or a list of texts; null when absent.
    const boost::json::value& response() const noexcept { return *response_; }
    std::string query_id;                ///< the server's id of the inference
    /// `event_data.query_metadata` as sent (its shape depends on the lens); empty when absent.
    const boost::json::object& query_metadata() const noexcept { return *query_metadata_; }

    /// The first element of `response` when it is a string (a classification's label).
    std::optional<std::string> label() const;
    /// The score of `label` in the first object inside `response`, when present and a number.
    std::optional<double> score(std::string_view label) const;
    /// Every string element of `response`, in order.
    std::vector<std::string> texts() const;

private:
    friend struct session_event;
    const boost::json::value* response_ = &detail::no_value();
    const boost::json::object* query_metadata_ = &detail::no_object();
};

/// `inference.error`: `event_data: {error_messages: [...]}`.
struct inference_error {
    std::vector<std::string> error_messages;   ///< the server's texts, in order
};

/// A `log.*` event (`log.info`, `log.warning`...).
struct log_message {
    std::string level;     ///< "info" for `log.info`
    std::string message;   ///< `event_data.message`, or the event data as JSON text when it has none
};

/// `frame.processed`.
struct frame_processed {
    std::optional<std::uint64_t> frame_index;  ///< `event_data.frame_index`, when a number
    std::optional<double> timestamp;           ///< `event_data.timestamp`, when a number
    /// The whole `event_data`, a view into the event's `raw`; empty when absent.
    const boost::json::object& event_data() const noexcept { return *event_data_; }

private:
    friend struct session_event;
    const boost::json::object* event_data_ = &detail::no_object();
};

/// `error`: the server reports a failure in the stream; the stream goes on.
struct error_event {
    std::string message;   ///< `message`, `event_data.message` or the error messages joined by "; "
};

/// Any other type (`session.modify.result`, `inference.start`...); see `raw`.
struct unknown_event {};

/// A `data` payload that is not JSON.
struct malformed_event {
    std::string data;      ///< the payload text
    std::string error;     ///< why it did not parse
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
/// The JSON trees of `body` (inference_result::response() and query_metadata(),
/// frame_processed::event_data()) are views into `raw`'s `event_data`. They follow
/// the event through copies and moves; assigning to `raw` or changing its
/// `event_data` leaves them dangling (copy the tree first if you edit `raw`).
struct session_event {
    /// The stream's last event id when this event was dispatched (EventSource's
    /// `lastEventId`): the event's own `id`, or for events without one (the
    /// envelope events) the id of the latest event before it.
    std::string id;
    /// The payload's `type` as sent ("" for malformed data or a payload without one).
    std::string type;
    /// The whole payload; for malformed data, a JSON string of its text.
    boost::json::value raw;
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

    /// An empty event (no kind of its own: `body` holds a default stream_start).
    session_event() = default;
    /// Copies; the copy's views point into its own `raw`.
    session_event(const session_event& other);
    /// Copies; the views point into this event's new `raw`.
    session_event& operator=(const session_event& other);
    /// Moves. The views stay valid: a moved JSON value hands over its heap storage,
    /// where the trees they point to live.
    session_event(session_event&&) = default;
    /// Moves, and points the views again: an assigned `raw` copies when the two trees
    /// use different memory resources.
    session_event& operator=(session_event&& other);
    /// Destroys the event and its trees.
    ~session_event() = default;

private:
    friend session_event decode_event(std::string id, std::string_view data);
    /// Points the views of `body` into `raw`.
    void bind_views() noexcept;
    /// The same, given `raw`'s `event_data` object (null when it has none).
    void bind_views(const boost::json::object* event_data) noexcept;
};

/// Decodes one SSE `data` payload. Never throws for odd content (see the policy above).
session_event decode_event(std::string id, std::string_view data);

/// "stream_start", "heartbeat", ... (the enumerator's name).
std::string_view to_string(event_kind k) noexcept;

} // namespace lens
