// Decoding of SSE payloads into typed session events (see lens/events.hpp and
// detail/event_decoding.hpp for the two decoders).
#include <lens/events.hpp>

#include "detail/event_decoding.hpp"
#include "detail/redactor.hpp"
#include "detail/sax_handler.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace lens {

namespace json = boost::json;

namespace {

/// What the typed events read from a payload, gathered by either decoder.
struct fields {
    bool is_object = false;               ///< the payload is a JSON object
    std::optional<std::string> type;      ///< `type`, when a string
    std::string session_id, reader_id, session_status, message;
    std::optional<std::uint64_t> num_messages, num_bytes, message_timeout;
    std::vector<std::string> error_messages;       ///< the top level's
    bool has_data = false;                         ///< `event_data` is an object
    bool data_has_message = false;                 ///< ... with a `message` member
    /// A log message taken from an `event_data` that is neither null nor an object with
    /// a `message`: its text when a string, else its JSON rendering (nullopt: the
    /// streaming decoder could not render it; a log event then needs the tree).
    std::optional<std::string> event_data_text;
    bool event_data_unrendered = false;
    std::string query_id, data_message;
    std::vector<std::string> data_error_messages;
    std::optional<std::uint64_t> frame_index;
    std::optional<double> timestamp;
    inference_result::packed_parts parts; ///< `event_data.response`'s texts and scores
    bool label_first = false;
};

// ---- the records of inference_result::packed_parts ------------------------------------

using parts_type = inference_result::packed_parts;
constexpr std::size_t record_head = 1 + sizeof(std::size_t);

void append_record(parts_type& parts, char tag, std::string_view bytes, double number = 0)
{
    const std::size_t size = bytes.size();
    const std::size_t at = parts.size();
    parts.resize(at + record_head + bytes.size() + (tag == 'T' ? 0 : sizeof number));
    char* p = parts.data() + at;
    *p = tag;
    std::memcpy(p + 1, &size, sizeof size);
    std::memcpy(p + record_head, bytes.data(), bytes.size());
    if (tag != 'T')
        std::memcpy(p + record_head + bytes.size(), &number, sizeof number);
}

/// Calls `f(tag, bytes, record)` for each record, `record` its first byte; stops when `f`
/// returns true.
template <class F>
void for_each_record(const parts_type& parts, F&& f)
{
    for (std::size_t at = 0; at < parts.size();) {
        const char tag = parts[at];
        std::size_t size;
        std::memcpy(&size, parts.data() + at + 1, sizeof size);
        if (f(tag, std::string_view(parts.data() + at + record_head, size), at))
            return;
        at += record_head + size + (tag == 'T' ? 0 : sizeof(double));
    }
}

double number_of(const parts_type& parts, std::size_t record, std::size_t key_size)
{
    double d;
    std::memcpy(&d, parts.data() + record + record_head + key_size, sizeof d);
    return d;
}

void add_member(parts_type& parts, std::string_view key, std::optional<double> value)
{
    append_record(parts, value ? 'S' : 'N', key, value.value_or(0));
}

/// Sets member `key`: a later member of the same name replaces an earlier one, as in a
/// parsed tree (in place: the record's size does not change).
void set_member(parts_type& parts, std::string_view key, std::optional<double> value)
{
    bool found = false;
    for_each_record(parts, [&](char tag, std::string_view k, std::size_t at) {
        if (tag == 'T' || k != key)
            return false;
        parts[at] = value ? 'S' : 'N';
        const double d = value.value_or(0);
        std::memcpy(parts.data() + at + record_head + k.size(), &d, sizeof d);
        return found = true;
    });
    if (!found)
        add_member(parts, key, value);
}

} // namespace

// ---- the event, from the fields -----------------------------------------------------

inference_result detail::event_decoding::make_result(std::string query_id, inference_result::packed_parts parts,
                                                     bool label_first)
{
    inference_result r;
    r.query_id = std::move(query_id);
    r.parts_ = std::move(parts);
    r.label_first_ = label_first;
    return r;
}

namespace {

/// Makes `ev` (a default event) the one `f` describes, but its id; false when that needs a
/// rendering the streaming decoder could not make (see fields::event_data_text).
bool make_event(std::string_view data, fields&& f, session_event& ev)
{
    ev.data.assign(data);
    if (!f.is_object || !f.type) {
        ev.body = unknown_event{};
        return true;
    }
    ev.type = std::move(*f.type);
    const std::string_view type = ev.type;
    if (type == "sse.stream.start") {
        ev.body = stream_start{std::move(f.session_id), std::move(f.reader_id)};
    } else if (type == "sse.stream.heartbeat") {
        ev.body = heartbeat{std::move(f.session_id), std::move(f.session_status), f.num_messages.value_or(0),
                            f.num_bytes.value_or(0), f.message_timeout.value_or(0)};
    } else if (type == "sse.stream.end") {
        ev.body = stream_end{std::move(f.session_id)};
    } else if (type == "inference.result") {
        ev.body = detail::event_decoding::make_result(std::move(f.query_id), std::move(f.parts), f.label_first);
    } else if (type == "inference.error") {
        ev.body = inference_error{f.has_data ? std::move(f.data_error_messages) : std::move(f.error_messages)};
    } else if (type.starts_with("log.")) {
        log_message m;
        m.level = std::string(type.substr(4));
        if (f.has_data && f.data_has_message)
            m.message = std::move(f.data_message);
        else if (f.event_data_text)
            m.message = std::move(*f.event_data_text);
        else if (f.event_data_unrendered || f.has_data)
            return false;
        else
            m.message = std::move(f.message);
        ev.body = std::move(m);
    } else if (type == "frame.processed") {
        ev.body = frame_processed{f.frame_index, f.timestamp};
    } else if (type == "error") {
        error_event e{std::move(f.message)};
        if (e.message.empty() && f.has_data) {
            e.message = std::move(f.data_message);
            if (e.message.empty()) {
                for (auto& m : f.data_error_messages) {
                    if (!e.message.empty())
                        e.message += "; ";
                    e.message += m;
                }
            }
        }
        ev.body = std::move(e);
    } else {
        ev.body = unknown_event{};
    }
    return true;
}

// ---- the streaming decoder ----------------------------------------------------------

/// A handler of json::basic_parser that fills `fields` and gives up (see
/// detail/event_decoding.hpp) by failing the parse.
class field_gatherer : public detail::sax_handler_base {
public:
    fields f;

    bool on_document_end(json::error_code&) { return true; }

    bool on_object_begin(json::error_code& ec)
    {
        if (depth_ == 0) {
            f.is_object = true;
            return push(in::top);
        }
        const slot at = take_slot();
        switch (at) {
        case slot::event_data: f.has_data = true; return push(in::data);
        case slot::response_element:
            if (!scores_taken_) {
                scores_taken_ = true;
                return push(in::scores);
            }
            return push(in::other);
        case slot::score: return set_score(std::nullopt, ec) && push(in::other);
        default: return renders(at) ? give_up(ec) : push(in::other);
        }
    }
    bool on_object_end(std::size_t, json::error_code&) { return pop(); }

    bool on_array_begin(json::error_code& ec)
    {
        if (depth_ == 0)
            return push(in::other);
        const slot at = take_slot();
        switch (at) {
        case slot::top_errors: return push(in::top_errors);
        case slot::data_errors: return push(in::data_errors);
        case slot::response: elements_ = 0; return push(in::response);
        case slot::event_data: f.event_data_unrendered = true; return push(in::other);
        case slot::score: return set_score(std::nullopt, ec) && push(in::other);
        default: return renders(at) ? give_up(ec) : push(in::other);
        }
    }
    bool on_array_end(std::size_t, json::error_code&) { return pop(); }

    bool on_key_part(json::string_view s, std::size_t, json::error_code&)
    {
        part_.append(s.data(), s.size());
        return true;
    }
    bool on_key(json::string_view s, std::size_t, json::error_code& ec)
    {
        const std::string_view key = whole(s);
        // The tree decides events with an `api_key` member, so that a decided event shows
        // its scrubbing caller (detail/stream_fsm.hpp) it has none.
        if (detail::redactor::is_secret_member(key))
            return give_up(ec);
        key_ = slot::none;
        switch (container()) {
        case in::top: key_ = top_slot(key); break;
        case in::data: key_ = data_slot(key); break;
        case in::scores:
            key_ = slot::score;
            // A view into the text stays valid through the parse; a name the parser
            // unescaped into a buffer of its own (or part_) is copied.
            score_key_ = inside_input(key) ? key
                           : std::string_view(score_key_copy_.assign(key));
            break;
        default: break;
        }
        part_.clear();
        if (key_ != slot::none && key_ != slot::score) { // a tracked member named twice: the tree decides
            const auto bit = std::uint32_t{1} << static_cast<unsigned>(key_);
            if (seen_ & bit)
                return give_up(ec);
            seen_ |= bit;
        }
        f.data_has_message |= key_ == slot::data_message; // whatever its value (null: empty text)
        return true;
    }

    bool on_string_part(json::string_view s, std::size_t, json::error_code&)
    {
        part_.append(s.data(), s.size());
        return true;
    }
    bool on_string(json::string_view s, std::size_t, json::error_code& ec)
    {
        const std::string_view text = whole(s);
        const slot at = take_slot();
        bool ok = true;
        if (std::string* field = text_field(at))
            field->assign(text);
        else switch (at) {
        case slot::type: f.type.emplace(text); break;
        case slot::top_errors: case slot::top_error: f.error_messages.emplace_back(text); break;
        case slot::data_errors: case slot::data_error: f.data_error_messages.emplace_back(text); break;
        case slot::event_data: f.event_data_text.emplace(text); break;
        case slot::response: case slot::response_element:
            f.label_first |= at == slot::response || elements_ == 1; // `response` itself, or its first element
            append_record(f.parts, 'T', text);
            break;
        case slot::score: ok = set_score(std::nullopt, ec); break;
        case slot::none: break;
        default: ok = give_up(ec); break; // a count or a time given as text
        }
        part_.clear();
        return ok;
    }

    bool on_int64(std::int64_t n, json::string_view, json::error_code& ec)
    {
        return number(n >= 0 ? std::optional<std::uint64_t>(n) : std::nullopt, static_cast<double>(n), ec);
    }
    bool on_uint64(std::uint64_t n, json::string_view, json::error_code& ec)
    {
        return number(n, static_cast<double>(n), ec);
    }
    bool on_double(double d, json::string_view, json::error_code& ec) { return number(std::nullopt, d, ec); }

    bool on_bool(bool, json::error_code& ec)
    {
        const slot at = take_slot();
        if (at == slot::score)
            return set_score(std::nullopt, ec);
        if (at == slot::event_data)
            f.event_data_unrendered = true;
        return renders(at) ? give_up(ec) : true; // not a number, not text: absent
    }

    bool on_null(json::error_code& ec)
    {
        const slot at = take_slot();
        if (std::string* field = text_field(at)) {
            field->clear(); // null text is empty text
            return true;
        }
        if (at == slot::score)
            return set_score(std::nullopt, ec);
        // An element of an error list is rendered as "null"; anything else null is absent.
        return at == slot::top_error || at == slot::data_error ? give_up(ec) : true;
    }

private:
    /// The containers whose members or elements matter.
    enum class in : std::uint8_t { other, top, data, response, scores, top_errors, data_errors };
    /// What a value is, by where it stands. The members of the top object and of
    /// `event_data` come first: their bits in seen_ catch a member named twice.
    enum class slot : std::uint8_t {
        type, session_id, reader_id, session_status, message, num_messages, num_bytes, message_timeout,
        top_errors, event_data, query_id, response, frame_index, timestamp, data_message, data_errors,
        top_error, data_error, response_element, score, none,
    };
    static_assert(static_cast<unsigned>(slot::data_errors) < 32);

    static slot top_slot(std::string_view k) noexcept
    {
        switch (k.size()) {
        case 4: return is(k, "type") ? slot::type : slot::none;
        case 7: return is(k, "message") ? slot::message : slot::none;
        case 9: return is(k, "reader_id") ? slot::reader_id : is(k, "num_bytes") ? slot::num_bytes : slot::none;
        case 10: return is(k, "event_data") ? slot::event_data : is(k, "session_id") ? slot::session_id : slot::none;
        case 12: return is(k, "num_messages") ? slot::num_messages : slot::none;
        case 14:
            return is(k, "session_status") ? slot::session_status
                 : is(k, "error_messages") ? slot::top_errors
                                         : slot::none;
        case 15: return is(k, "message_timeout") ? slot::message_timeout : slot::none;
        default: return slot::none;
        }
    }
    static slot data_slot(std::string_view k) noexcept
    {
        switch (k.size()) {
        case 7: return is(k, "message") ? slot::data_message : slot::none;
        case 8: return is(k, "response") ? slot::response : is(k, "query_id") ? slot::query_id : slot::none;
        case 9: return is(k, "timestamp") ? slot::timestamp : slot::none;
        case 11: return is(k, "frame_index") ? slot::frame_index : slot::none;
        case 14: return is(k, "error_messages") ? slot::data_errors : slot::none;
        default: return slot::none;
        }
    }

    in container() const noexcept { return depth_ < stack_.size() ? stack_[depth_] : in::other; }

    /// The slot of the value that starts now, by its key in an object or by its array;
    /// counts the elements of `response`.
    slot take_slot() noexcept
    {
        switch (container()) {
        case in::top: case in::data: case in::scores: return key_;
        case in::response: ++elements_; return slot::response_element;
        case in::top_errors: return slot::top_error;
        case in::data_errors: return slot::data_error;
        default: return slot::none;
        }
    }

    /// The text field a slot fills (string: the text, null: empty), or null.
    std::string* text_field(slot at) noexcept
    {
        switch (at) {
        case slot::session_id: return &f.session_id;
        case slot::reader_id: return &f.reader_id;
        case slot::session_status: return &f.session_status;
        case slot::message: return &f.message;
        case slot::query_id: return &f.query_id;
        case slot::data_message: return &f.data_message;
        default: return nullptr;
        }
    }
    /// The count field a slot fills, or null.
    std::optional<std::uint64_t>* count_field(slot at) noexcept
    {
        switch (at) {
        case slot::num_messages: return &f.num_messages;
        case slot::num_bytes: return &f.num_bytes;
        case slot::message_timeout: return &f.message_timeout;
        case slot::frame_index: return &f.frame_index;
        default: return nullptr;
        }
    }
    /// A slot that expects text or a list of texts: any other value there is rendered
    /// as JSON text by the tree decoder.
    bool renders(slot at) noexcept
    {
        return text_field(at) || at == slot::top_errors || at == slot::data_errors || at == slot::top_error ||
               at == slot::data_error;
    }

    bool push(in c) noexcept
    {
        ++depth_;
        if (depth_ < stack_.size())
            stack_[depth_] = container_of(c);
        key_ = slot::none;
        return true;
    }
    /// Containers inside an ignored one are ignored.
    in container_of(in c) const noexcept { return depth_ > 1 && stack_[depth_ - 1] == in::other ? in::other : c; }
    bool pop() noexcept
    {
        --depth_;
        key_ = slot::none; // the next member's key sets it again
        return true;
    }

    /// A number; `count` is its value when it is a non-negative integer.
    bool number(std::optional<std::uint64_t> count, double value, json::error_code& ec)
    {
        const slot at = take_slot();
        if (auto* field = count_field(at)) {
            if (!count) // negative or a fraction: the tree's rules (saturation, truncation) decide
                return give_up(ec);
            *field = count;
            return true;
        }
        switch (at) {
        case slot::timestamp: f.timestamp = value; return true;
        case slot::score: return set_score(value, ec);
        case slot::event_data: f.event_data_unrendered = true; return true;
        default: return renders(at) ? give_up(ec) : true;
        }
    }

    bool set_score(std::optional<double> value, json::error_code& ec)
    {
        // A member named twice replaces the first, found by a scan of the records: past a
        // few dozen members the tree (whose object has an index) decides.
        constexpr std::size_t scan_limit = 32;
        if (++members_ > scan_limit)
            return give_up(ec);
        set_member(f.parts, score_key_, value);
        return true;
    }

    /// The whole key or string whose last piece is `s`.
    std::string_view whole(json::string_view s)
    {
        if (part_.empty())
            return {s.data(), s.size()};
        part_.append(s.data(), s.size());
        return part_;
    }

    std::array<in, 8> stack_{};  ///< the open containers by depth (1: the top object); deeper ones are ignored
    std::size_t depth_ = 0;
    slot key_ = slot::none;      ///< the slot of the current member's value
    std::uint32_t seen_ = 0;     ///< the tracked members met so far (bit per slot)
    std::size_t elements_ = 0;   ///< the elements of `response` begun so far
    bool scores_taken_ = false;  ///< the first object inside `response` was met
    std::size_t members_ = 0;    ///< the members of that object so far
    std::string_view score_key_; ///< the name of the current member of that object
    std::string score_key_copy_; ///< ... when it is not a piece of `input`
    std::string part_;           ///< a key or string delivered in pieces
};

// ---- the tree decoder ----------------------------------------------------------------

std::string string_at(const json::object& o, std::string_view key)
{
    auto* v = o.if_contains(key);
    if (!v || v->is_null())
        return {};
    if (auto* s = v->if_string())
        return std::string(*s);
    return json::serialize(*v); // a number or an object where text was expected: keep it readable
}

template <class T>
std::optional<T> number_at(const json::object& o, std::string_view key)
{
    auto* v = o.if_contains(key);
    if (!v)
        return std::nullopt;
    json::error_code ec;
    if (v->is_number()) {
        T n = v->to_number<T>(ec);
        if (!ec)
            return n;
        if constexpr (std::is_integral_v<T>) {
            // A fraction is truncated; a count beyond the type saturates (converting it
            // would be undefined behaviour). NaN and negatives are not counts.
            if (auto* d = v->if_double(); d && *d >= 0) {
                const double beyond = std::ldexp(1.0, std::numeric_limits<T>::digits); // exact: 2^digits
                return *d >= beyond ? std::numeric_limits<T>::max() : static_cast<T>(*d);
            }
        }
        return std::nullopt;
    }
    if (auto* s = v->if_string()) { // numbers sent as strings
        auto parsed = json::parse(*s, ec);
        if (!ec && parsed.is_number()) {
            T n = parsed.to_number<T>(ec);
            if (!ec)
                return n;
        }
    }
    return std::nullopt;
}

std::vector<std::string> strings_of(const json::value* v)
{
    std::vector<std::string> out;
    if (!v)
        return out;
    if (auto* a = v->if_array()) {
        for (auto& e : *a)
            out.push_back(e.is_string() ? std::string(e.get_string()) : json::serialize(e));
    } else if (auto* s = v->if_string()) {
        out.emplace_back(*s);
    } else if (!v->is_null()) {
        out.push_back(json::serialize(*v));
    }
    return out;
}

/// The parts of `response` that inference_result keeps.
void gather_response(const json::value& response, fields& f)
{
    if (auto* s = response.if_string()) {
        append_record(f.parts, 'T', *s);
        f.label_first = true;
        return;
    }
    auto* a = response.if_array();
    if (!a)
        return;
    bool scores_taken = false;
    for (std::size_t i = 0; i < a->size(); ++i) {
        const json::value& e = (*a)[i];
        if (auto* s = e.if_string()) {
            append_record(f.parts, 'T', *s);
            f.label_first |= i == 0;
        } else if (auto* o = e.if_object(); o && !scores_taken) {
            scores_taken = true;
            for (auto& [k, v] : *o) // a parsed object's names are unique (the last of a name kept)
                add_member(f.parts, k, v.is_number() ? std::optional<double>(v.to_number<double>()) : std::nullopt);
        }
    }
}

fields gather_from_tree(const json::object& o)
{
    fields f;
    f.is_object = true;
    if (auto* t = o.if_contains("type"); t && t->is_string())
        f.type.emplace(t->get_string());
    f.session_id = string_at(o, "session_id");
    f.reader_id = string_at(o, "reader_id");
    f.session_status = string_at(o, "session_status");
    f.message = string_at(o, "message");
    f.num_messages = number_at<std::uint64_t>(o, "num_messages");
    f.num_bytes = number_at<std::uint64_t>(o, "num_bytes");
    f.message_timeout = number_at<std::uint64_t>(o, "message_timeout");
    f.error_messages = strings_of(o.if_contains("error_messages"));
    const json::value* data = o.if_contains("event_data");
    if (const json::object* d = data ? data->if_object() : nullptr) {
        f.has_data = true;
        f.data_has_message = d->contains("message");
        f.data_message = string_at(*d, "message");
        f.query_id = string_at(*d, "query_id");
        f.data_error_messages = strings_of(d->if_contains("error_messages"));
        f.frame_index = number_at<std::uint64_t>(*d, "frame_index");
        f.timestamp = number_at<double>(*d, "timestamp");
        if (auto* r = d->if_contains("response"))
            gather_response(*r, f);
    }
    if (data && !data->is_null() && !(f.has_data && f.data_has_message))
        f.event_data_text = data->is_string() ? std::string(data->get_string()) : json::serialize(*data);
    return f;
}

} // namespace

bool detail::event_decoding::streaming(std::string& id, std::string_view data, session_event& out)
{
    json::basic_parser<field_gatherer> p(json::parse_options{});
    p.handler().input = data;
    json::error_code ec;
    const std::size_t used = p.write_some(false, data.data(), data.size(), ec);
    if (ec || used != data.size() || !make_event(data, std::move(p.handler().f), out))
        return false;
    out.id = std::move(id);
    return true;
}

session_event detail::event_decoding::from_tree(std::string id, std::string_view data)
{
    json::error_code ec;
    const json::value tree = json::parse(data, ec);
    return ec ? malformed(std::move(id), data, ec) : from_parsed(std::move(id), data, tree);
}

session_event detail::event_decoding::from_parsed(std::string id, std::string_view data, const json::value& tree)
{
    auto* o = tree.if_object();
    session_event ev;
    make_event(data, o ? gather_from_tree(*o) : fields{}, ev); // true: a tree renders every field
    ev.id = std::move(id);
    return ev;
}

session_event detail::event_decoding::malformed(std::string id, std::string_view data, const json::error_code& ec)
{
    session_event ev;
    ev.id = std::move(id);
    ev.data = std::string(data);
    ev.body = malformed_event{std::string(data), ec.message()};
    return ev;
}

session_event decode_event(std::string id, std::string_view data)
{
    session_event ev;
    if (!detail::event_decoding::streaming(id, data, ev)) // moves from `id` only when it decides
        ev = detail::event_decoding::from_tree(std::move(id), data);
    return ev;
}

json::value session_event::raw() const
{
    if (kind() == event_kind::malformed)
        return json::string(data);
    if (data.empty())
        return nullptr;
    json::error_code ec;
    json::value v = json::parse(data, ec);
    return ec ? json::value(json::string(data)) : v;
}

json::value session_event::event_data() const
{
    json::value v = raw();
    if (auto* o = v.if_object())
        if (auto* d = o->if_contains("event_data"))
            return std::move(*d);
    return nullptr;
}

std::optional<std::string> inference_result::label() const
{
    std::optional<std::string> out;
    if (label_first_)
        for_each_record(parts_, [&](char, std::string_view text, std::size_t) { return out.emplace(text), true; });
    return out;
}

std::optional<double> inference_result::score(std::string_view which) const
{
    std::optional<double> out;
    for_each_record(parts_, [&](char tag, std::string_view key, std::size_t at) {
        if (tag == 'T' || key != which)
            return false;
        if (tag == 'S')
            out = number_of(parts_, at, key.size());
        return true;
    });
    return out;
}

std::vector<std::string> inference_result::texts() const
{
    std::vector<std::string> out;
    for_each_record(parts_, [&](char tag, std::string_view text, std::size_t) {
        if (tag == 'T')
            out.emplace_back(text);
        return false;
    });
    return out;
}

std::string_view to_string(event_kind k) noexcept
{
    switch (k) {
    case event_kind::stream_start: return "stream_start";
    case event_kind::heartbeat: return "heartbeat";
    case event_kind::stream_end: return "stream_end";
    case event_kind::inference_result: return "inference_result";
    case event_kind::inference_error: return "inference_error";
    case event_kind::log: return "log";
    case event_kind::frame_processed: return "frame_processed";
    case event_kind::error: return "error";
    case event_kind::unknown: return "unknown";
    case event_kind::malformed: return "malformed";
    }
    return "unknown";
}

} // namespace lens
