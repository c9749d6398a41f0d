// The fields of a WebSocket frame, gathered by a streaming pass or from a tree (see
// detail/frame_fields.hpp), and the classification of a frame by them.
#include "detail/frame_fields.hpp"

#include "detail/redactor.hpp"
#include "detail/sax_handler.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <array>
#include <cstdint>
#include <cstring>

namespace lens::detail {

namespace json = boost::json;

namespace {

/// A handler of json::basic_parser that fills `frame_fields` and gives up (see
/// detail/frame_fields.hpp) by failing the parse.
class field_gatherer : public sax_handler_base {
public:
    frame_fields* f = nullptr;

    bool on_document_end(json::error_code& ec) { return f->is_object || give_up(ec); } // else unsolicited: the tree tells
    // A key or string in pieces (an escape, or text split across writes, which one
    // write_some of the whole text is not): the tree decides.
    bool on_key_part(json::string_view, std::size_t, json::error_code& ec) { return give_up(ec); }
    bool on_string_part(json::string_view, std::size_t, json::error_code& ec) { return give_up(ec); }

    bool on_object_begin(json::error_code& ec)
    {
        if (depth_ == 0) {
            f->is_object = true;
            return push(in::top);
        }
        const slot at = take_slot();
        if (at == slot::event_data) {
            f->has_event_data = true;
            return push(in::data);
        }
        return expects_other(at) ? give_up(ec) : push(in::other);
    }
    bool on_object_end(std::size_t, json::error_code&) { return pop(); }

    bool on_array_begin(json::error_code& ec)
    {
        if (depth_ == 0)
            return give_up(ec); // not an object (see on_document_end)
        const slot at = take_slot();
        if (at == slot::error_messages)
            return push(in::errors);
        f->has_event_data |= at == slot::event_data;
        return expects_other(at) ? give_up(ec) : push(in::other);
    }
    bool on_array_end(std::size_t, json::error_code&) { return pop(); }

    bool on_key(json::string_view s, std::size_t, json::error_code& ec)
    {
        const std::string_view key(s.data(), s.size());
        // The tree decides frames with an `api_key` member, so that a decided frame shows
        // its scrubbing caller it has none.
        if (!inside_input(key) || redactor::is_secret_member(key))
            return give_up(ec);
        switch (container()) {
        case in::top: key_ = top_slot(key); break;
        case in::data: key_ = data_slot(key); break;
        default: key_ = slot::none; break;
        }
        if (key_ == slot::none)
            return true;
        // A tracked member named twice: the tree (where the last one wins) decides.
        const auto bit = std::uint32_t{1} << static_cast<unsigned>(key_);
        if (seen_ & bit)
            return give_up(ec);
        seen_ |= bit;
        f->has_type |= key_ == slot::type;
        f->has_session_id |= key_ == slot::session_id;
        f->has_message |= key_ == slot::message;
        return true;
    }

    bool on_string(json::string_view s, std::size_t, json::error_code& ec)
    {
        const std::string_view text(s.data(), s.size());
        if (!inside_input(text))
            return give_up(ec);
        switch (take_slot()) {
        case slot::type: f->type = text; return true;
        case slot::message:
            f->message_is_string = true;
            f->message = text;
            return true;
        case slot::error_message: f->error_messages.emplace_back(text); return true;
        case slot::event_data: f->has_event_data = true; return true;
        case slot::is_valid: case slot::error_messages: return give_up(ec);
        default: return true;
        }
    }

    bool on_int64(std::int64_t, json::string_view, json::error_code& ec) { return scalar(ec); }
    bool on_uint64(std::uint64_t, json::string_view, json::error_code& ec) { return scalar(ec); }
    bool on_double(double, json::string_view, json::error_code& ec) { return scalar(ec); }

    bool on_bool(bool b, json::error_code& ec)
    {
        const slot at = take_slot();
        if (at == slot::is_valid) {
            f->is_valid = b;
            return true;
        }
        f->has_event_data |= at == slot::event_data;
        return expects_other(at) ? give_up(ec) : true;
    }

    bool on_null(json::error_code& ec)
    {
        // A null `event_data` is an absent one; a null where text or a boolean was
        // expected is rendered or ignored by the tree's rules.
        const slot at = take_slot();
        return at != slot::event_data && expects_other(at) ? give_up(ec) : true;
    }

private:
    /// The containers whose members or elements matter.
    enum class in : std::uint8_t { other, top, data, errors };
    /// What a value is, by where it stands. The members come first: their bits in seen_
    /// catch a member named twice.
    enum class slot : std::uint8_t {
        type, session_id, message, event_data, is_valid, error_messages, error_message, none,
    };

    static slot top_slot(std::string_view k) noexcept
    {
        switch (k.size()) {
        case 4: return is(k, "type") ? slot::type : slot::none;
        case 7: return is(k, "message") ? slot::message : slot::none;
        case 10: return is(k, "event_data") ? slot::event_data : is(k, "session_id") ? slot::session_id : slot::none;
        default: return slot::none;
        }
    }
    static slot data_slot(std::string_view k) noexcept
    {
        switch (k.size()) {
        case 8: return is(k, "is_valid") ? slot::is_valid : slot::none;
        case 14: return is(k, "error_messages") ? slot::error_messages : slot::none;
        default: return slot::none;
        }
    }

    /// True for a slot whose value must be text (or a boolean, or a list of texts):
    /// any other value there is decided by the tree.
    static bool expects_other(slot at) noexcept
    {
        return at == slot::type || at == slot::message || at == slot::is_valid || at == slot::error_messages ||
               at == slot::error_message;
    }

    bool scalar(json::error_code& ec)
    {
        const slot at = take_slot();
        f->has_event_data |= at == slot::event_data;
        return expects_other(at) ? give_up(ec) : true;
    }

    in container() const noexcept { return depth_ < stack_.size() ? stack_[depth_] : in::other; }

    /// The slot of the value that starts now, by its key or by its list.
    slot take_slot() noexcept
    {
        switch (container()) {
        case in::top: case in::data: return key_;
        case in::errors: return slot::error_message;
        default: return slot::none;
        }
    }

    bool push(in c) noexcept
    {
        ++depth_;
        if (depth_ < stack_.size()) // containers inside an ignored one are ignored
            stack_[depth_] = depth_ > 1 && stack_[depth_ - 1] == in::other ? in::other : c;
        key_ = slot::none;
        return true;
    }
    bool pop() noexcept
    {
        --depth_;
        key_ = slot::none;
        return true;
    }


    std::array<in, 4> stack_{}; ///< the open containers by depth (1: the frame); deeper ones are ignored
    std::size_t depth_ = 0;
    slot key_ = slot::none;     ///< the slot of the current member's value
    std::uint32_t seen_ = 0;    ///< the tracked members met so far (bit per slot)
};

} // namespace

bool gather_streaming(std::string_view text, frame_fields& out)
{
    json::basic_parser<field_gatherer> p(json::parse_options{});
    p.handler().f = &out;
    p.handler().input = text;
    json::error_code ec;
    const std::size_t used = p.write_some(false, text.data(), text.size(), ec);
    return !ec && used == text.size();
}

void gather_from_tree(const json::value& frame, frame_fields& out)
{
    const json::object* o = frame.if_object();
    if (!o)
        return;
    out.is_object = true;
    if (const json::value* t = o->if_contains("type")) {
        out.has_type = true;
        if (const json::string* s = t->if_string())
            out.type = std::string_view(*s);
    }
    out.has_session_id = o->contains("session_id");
    if (const json::value* m = o->if_contains("message")) {
        out.has_message = true;
        if (const json::string* s = m->if_string()) {
            out.message_is_string = true;
            out.message = *s;
        } else {
            out.rendered = json::serialize(*m);
            out.message = out.rendered;
        }
    }
    const json::value* data = o->if_contains("event_data");
    out.has_event_data = data && !data->is_null();
    if (const json::object* d = data ? data->if_object() : nullptr) {
        if (const json::value* v = d->if_contains("is_valid"); v && v->is_bool())
            out.is_valid = v->get_bool();
        if (const json::value* list = d->if_contains("error_messages"); list && list->is_array())
            for (const json::value& item : list->get_array())
                out.error_messages.push_back(item.is_string() ? std::string(item.get_string())
                                                              : json::serialize(item));
    }
}

frame_class classify_frame(const frame_fields& f) noexcept
{
    if (!f.is_object)
        return {};
    if (!f.has_type) {
        // session.status answers with the bare session record, no envelope.
        if (f.has_session_id)
            return {frame_class::reply, "session.status"};
        return {};
    }
    if (!f.type)
        return {};
    const std::string_view t = *f.type;
    constexpr std::string_view suffix = ".response";
    if (t.size() > suffix.size() && t.substr(t.size() - suffix.size()) == suffix)
        return {frame_class::reply, t.substr(0, t.size() - suffix.size())};
    if (t == "error")
        return {frame_class::error, {}};
    return {};
}

std::optional<std::string_view> reply_failure(const frame_fields& f) noexcept
{
    if (f.has_type && f.has_message && !f.has_event_data)
        return f.message;
    return std::nullopt;
}

} // namespace lens::detail
