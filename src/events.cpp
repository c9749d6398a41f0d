// Decoding of SSE payloads into typed session events (see lens/events.hpp).
#include <lens/events.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cmath>
#include <limits>

namespace lens {

namespace json = boost::json;

namespace {

const json::object* object_at(const json::object& o, std::string_view key)
{
    auto* v = o.if_contains(key);
    return v ? v->if_object() : nullptr;
}

std::string string_at(const json::object* o, std::string_view key)
{
    if (!o)
        return {};
    auto* v = o->if_contains(key);
    if (!v)
        return {};
    if (auto* s = v->if_string())
        return std::string(*s);
    if (v->is_null())
        return {};
    return json::serialize(*v); // a number or an object where text was expected: keep it readable
}

template <class T>
std::optional<T> number_at(const json::object* o, std::string_view key)
{
    if (!o)
        return std::nullopt;
    auto* v = o->if_contains(key);
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

} // namespace

namespace detail {

const json::value& no_value() noexcept
{
    static const json::value none;
    return none;
}

const json::object& no_object() noexcept
{
    static const json::object none;
    return none;
}

} // namespace detail

session_event::session_event(const session_event& other)
    : id(other.id)
    , type(other.type)
    , raw(other.raw)
    , body(other.body)
{
    bind_views();
}

session_event& session_event::operator=(const session_event& other)
{
    if (this != &other) {
        id = other.id;
        type = other.type;
        raw = other.raw;
        body = other.body;
        bind_views();
    }
    return *this;
}

session_event& session_event::operator=(session_event&& other)
{
    if (this != &other) {
        id = std::move(other.id);
        type = std::move(other.type);
        raw = std::move(other.raw);
        body = std::move(other.body);
        bind_views();
    }
    return *this;
}

void session_event::bind_views() noexcept
{
    const auto* o = raw.if_object();
    bind_views(o ? object_at(*o, "event_data") : nullptr);
}

void session_event::bind_views(const json::object* data_obj) noexcept
{
    if (auto* r = std::get_if<inference_result>(&body)) {
        const json::value* response = data_obj ? data_obj->if_contains("response") : nullptr;
        const json::object* metadata = data_obj ? object_at(*data_obj, "query_metadata") : nullptr;
        r->response_ = response ? response : &detail::no_value();
        r->query_metadata_ = metadata ? metadata : &detail::no_object();
    } else if (auto* f = std::get_if<frame_processed>(&body)) {
        f->event_data_ = data_obj ? data_obj : &detail::no_object();
    }
}

std::optional<std::string> inference_result::label() const
{
    const json::value& response = *response_;
    if (auto* a = response.if_array(); a && !a->empty() && a->front().is_string())
        return std::string(a->front().get_string());
    if (auto* s = response.if_string())
        return std::string(*s);
    return std::nullopt;
}

std::optional<double> inference_result::score(std::string_view which) const
{
    auto* a = response_->if_array();
    if (!a)
        return std::nullopt;
    for (auto& e : *a)
        if (auto* o = e.if_object()) {
            auto* v = o->if_contains(which);
            if (v && v->is_number())
                return v->to_number<double>();
            return std::nullopt;
        }
    return std::nullopt;
}

std::vector<std::string> inference_result::texts() const
{
    std::vector<std::string> out;
    const json::value& response = *response_;
    if (auto* a = response.if_array()) {
        for (auto& e : *a)
            if (e.is_string())
                out.emplace_back(e.get_string());
    } else if (auto* s = response.if_string()) {
        out.emplace_back(*s);
    }
    return out;
}

session_event decode_event(std::string id, std::string_view data)
{
    session_event ev;
    ev.id = std::move(id);
    json::error_code ec;
    ev.raw = json::parse(data, ec);
    if (ec) {
        ev.raw = json::string(data);
        ev.body = malformed_event{std::string(data), ec.message()};
        return ev;
    }
    const json::object* o = ev.raw.if_object();
    const json::value* type_value = o ? o->if_contains("type") : nullptr;
    if (!type_value || !type_value->is_string()) {
        ev.body = unknown_event{};
        return ev;
    }
    ev.type = std::string(type_value->get_string());
    const std::string_view type = ev.type;
    const json::object* data_obj = object_at(*o, "event_data");

    if (type == "sse.stream.start") {
        ev.body = stream_start{string_at(o, "session_id"), string_at(o, "reader_id")};
    } else if (type == "sse.stream.heartbeat") {
        heartbeat h;
        h.session_id = string_at(o, "session_id");
        h.session_status = string_at(o, "session_status");
        h.num_messages = number_at<std::uint64_t>(o, "num_messages").value_or(0);
        h.num_bytes = number_at<std::uint64_t>(o, "num_bytes").value_or(0);
        h.message_timeout = number_at<std::uint64_t>(o, "message_timeout").value_or(0);
        ev.body = std::move(h);
    } else if (type == "sse.stream.end") {
        ev.body = stream_end{string_at(o, "session_id")};
    } else if (type == "inference.result") {
        inference_result r;
        if (data_obj)
            r.query_id = string_at(data_obj, "query_id");
        ev.body = std::move(r);
        ev.bind_views(data_obj);
    } else if (type == "inference.error") {
        inference_error e;
        if (data_obj)
            e.error_messages = strings_of(data_obj->if_contains("error_messages"));
        else
            e.error_messages = strings_of(o->if_contains("error_messages"));
        ev.body = std::move(e);
    } else if (type.starts_with("log.")) {
        log_message m;
        m.level = std::string(type.substr(4));
        if (data_obj && data_obj->contains("message"))
            m.message = string_at(data_obj, "message");
        else if (auto* v = o->if_contains("event_data"); v && !v->is_null())
            m.message = v->is_string() ? std::string(v->get_string()) : json::serialize(*v);
        else
            m.message = string_at(o, "message");
        ev.body = std::move(m);
    } else if (type == "frame.processed") {
        frame_processed f;
        if (data_obj) {
            f.frame_index = number_at<std::uint64_t>(data_obj, "frame_index");
            f.timestamp = number_at<double>(data_obj, "timestamp");
        }
        ev.body = std::move(f);
        ev.bind_views(data_obj);
    } else if (type == "error") {
        error_event e;
        e.message = string_at(o, "message");
        if (e.message.empty() && data_obj) {
            e.message = string_at(data_obj, "message");
            if (e.message.empty()) {
                for (auto& m : strings_of(data_obj->if_contains("error_messages"))) {
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
    return ev;
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
