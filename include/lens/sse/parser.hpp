/// \file
/// lens/sse/parser.hpp — the WHATWG event-stream parser, sans-I/O.
///
/// Bytes in, in any split; events out. No sockets, no timers, no threads.
/// The framing the Lens API's SSE consumer uses (docs/protocol.md §4.2).
/// Implements HTML Living Standard §9.2.6 "Interpreting an event stream":
///
///  - the stream is UTF-8: one leading BOM is stripped (also when split across
///    feeds; a second BOM is content), invalid bytes become U+FFFD following the
///    WHATWG UTF-8 decoder (one U+FFFD per maximal invalid subpart), decoded
///    incrementally so that a sequence split across feeds decodes as if whole;
///  - lines end in CRLF, LF or CR; a CR ending one feed and an LF starting the
///    next are one line end;
///  - a line starting with `:` is a comment; `name: value` drops one leading
///    space from the value; a line without a colon is a field with an empty
///    value; unknown fields are ignored;
///  - `data` lines are joined with LF (the final LF removed), `event` sets the
///    type (default `message`), `id` sets the last event id unless it contains
///    U+0000, `retry` sets the reconnection time only when it is a non-empty run
///    of ASCII digits (values too large for the clock saturate);
///  - a blank line dispatches: the last event id is updated even when nothing
///    is dispatched (empty data buffer), and the data and type buffers reset;
///  - what is unfinished at the end of a stream (a partial line, an event
///    without its blank line) is discarded by `finish()`.
///
/// Deviation, by design: the spec gives every new stream an empty "last event
/// ID buffer". Here the last event id survives `finish()` so that a resumed
/// stream (sent `Last-Event-ID`) that does not repeat an `id` field keeps
/// reporting the id it resumed from; an `id` seen in a discarded, unfinished
/// event is forgotten with it.
///
/// Cost: every input byte is examined once (the scanner never goes back, see
/// `bytes_examined()`), decoded text is appended straight into the event's
/// data buffer, and buffers are reused from event to event: parsing allocates
/// only when a buffer must grow or the handler takes an event's strings.
#pragma once

#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace lens::sse {

/// One dispatched event.
struct event {
    /// The `event` field, `message` when the event had none.
    std::string type;
    /// The `data` lines joined with LF.
    std::string data;
    /// The stream's last event id at dispatch: the `id` of this event or of an
    /// earlier one (ids persist), empty when none was ever set.
    std::string last_event_id;

    friend bool operator==(const event&, const event&) = default;
};

/// Bounds on what one peer can make the parser buffer. Exceeding one ends the
/// stream with `lens::errc::limit_exceeded`. Sizes count decoded UTF-8 bytes.
struct limits {
    /// The longest line, line end excluded (comment and `data` lines included).
    std::size_t max_line = std::size_t(16) << 20;
    /// The largest data buffer of one event (its `data` values and their LFs).
    std::size_t max_event = std::size_t(16) << 20;
};

namespace detail {
/// A non-owning, non-allocating reference to a callable taking `event&&`.
class event_sink {
public:
    template <class F>
    explicit event_sink(F& f) noexcept
        : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f))))
        , call_([](void* o, event&& ev) { (*static_cast<F*>(o))(std::move(ev)); })
    {
    }
    void operator()(event&& ev) const { call_(object_, std::move(ev)); }

private:
    void* object_;
    void (*call_)(void*, event&&);
};
} // namespace detail

/// The incremental event-stream parser. One object per logical stream (it may
/// span reconnections: call `finish()` at each end of a connection's body).
class parser {
public:
    /// A parser at the start of a stream, enforcing `lim`.
    explicit parser(limits lim = {});

    /// Parses `bytes`, calling `handler(event&&)` for each event dispatched, in
    /// order. The handler may take the event by value (its strings are moved
    /// out) or by reference (no allocation: the parser keeps reusing them).
    ///
    /// On a limit violation `ec` is set to `lens::errc::limit_exceeded`, the
    /// events dispatched before it have been delivered, and the parser refuses
    /// further input with the same error until `finish()` or `reset()`.
    /// If the handler throws, the exception propagates, the bytes after the
    /// dispatching line are not consumed, and the stream should be finished.
    template <class Handler>
    void feed(std::string_view bytes, Handler&& handler, boost::system::error_code& ec)
    {
        ec = feed_impl(bytes, detail::event_sink(handler));
    }

    /// As above, throwing `lens::error` (operation "sse parse") on error.
    template <class Handler>
    void feed(std::string_view bytes, Handler&& handler)
    {
        if (auto ec = feed_impl(bytes, detail::event_sink(handler)))
            throw_limit(ec);
    }

    /// The end of one stream (connection). Discards what is unfinished — a
    /// partial line, an event not yet dispatched, a partial UTF-8 sequence —
    /// and prepares for the next stream: its leading BOM is stripped again.
    /// Keeps `last_event_id()` and `retry()`. Returns true when something was
    /// discarded.
    bool finish();

    /// Back to the state of a new parser (last event id and retry forgotten).
    void reset();

    /// The last event id string: set at every blank line from the `id` fields
    /// seen so far. What to send as `Last-Event-ID` when reconnecting.
    const std::string& last_event_id() const noexcept { return last_event_id_; }

    /// Sets the last event id as if an event with that id had been dispatched:
    /// for resuming from a stored id. Meant for the start of a stream.
    void set_last_event_id(std::string_view id);

    /// The reconnection time from the last valid `retry` field, if any.
    std::optional<std::chrono::milliseconds> retry() const noexcept { return retry_; }

    /// True when the parser is in the middle of a line or an event.
    bool mid_event() const noexcept;

    /// Instrumentation: input bytes examined by the scanner since construction
    /// (or `reset()`). Equals the bytes fed — no byte is looked at twice.
    std::uint64_t bytes_examined() const noexcept { return examined_; }

    /// The limits it enforces.
    const limits& get_limits() const noexcept { return limits_; }

private:
    enum class line_state : std::uint8_t {
        start,      // nothing on this line yet
        comment,    // a `:` line: its text is dropped
        name,       // collecting the field name
        data_first, // after `data:` — a leading space is still to be dropped
        data,       // appending to the data buffer
        value_first,// after `event:`, `id:` or `retry:` — leading space pending
        value,      // collecting that value
        ignore,     // after `unknown:` — the value is dropped
    };
    enum class field : std::uint8_t { none, event, id, retry };

    boost::system::error_code feed_impl(std::string_view bytes, detail::event_sink sink);
    [[noreturn]] void throw_limit(boost::system::error_code ec) const;

    // the decoded-text side
    bool text(const char* s, std::size_t n);
    bool fail(const char* what) noexcept;
    bool line_end(detail::event_sink& sink);
    void dispatch(detail::event_sink& sink);
    void set_field(field f, std::string_view value);
    void clear_stream_state();

    // the byte side
    bool run(const unsigned char* p, const unsigned char* end, detail::event_sink& sink);

    limits limits_;

    // the event being built; `current_.data` is the data buffer
    event current_;
    std::string type_;         // event type buffer
    std::string id_buffer_;    // last event ID buffer
    std::string last_event_id_;
    std::optional<std::chrono::milliseconds> retry_;

    // the line being read
    std::string name_;         // field name
    std::string value_;        // value of event / id / retry
    std::size_t line_length_ = 0;
    line_state state_ = line_state::start;
    field field_ = field::none;

    // the byte stream
    bool skip_lf_ = false;          // the previous feed ended in CR
    std::uint8_t bom_matched_ = 0;  // leading BOM bytes matched so far
    bool bom_done_ = false;         // the leading BOM was stripped or is known absent
    // the WHATWG UTF-8 decoder state
    std::uint8_t utf8_needed_ = 0;
    std::uint8_t utf8_seen_ = 0;
    std::uint8_t utf8_lower_ = 0x80;
    std::uint8_t utf8_upper_ = 0xBF;
    unsigned char utf8_bytes_[4] = {};

    boost::system::error_code failed_;
    const char* failed_what_ = "";
    std::uint64_t examined_ = 0;
};

} // namespace lens::sse
