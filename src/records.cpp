// records.cpp — tolerant decoding of the Lens API's records.
#include <lens/records.hpp>

#include <lens/error.hpp>

#include "detail/redactor.hpp"

#include <boost/json/serialize.hpp>

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <vector>

namespace lens {

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept
{
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

bool istarts_with(std::string_view s, std::string_view prefix) noexcept
{
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view s) noexcept
{
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
        s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
        s.remove_suffix(1);
    return s;
}

// A string field; numbers are accepted as their text, anything else reads as absent.
std::string get_string(const boost::json::object& o, std::string_view key)
{
    const auto* v = o.if_contains(key);
    if (!v)
        return {};
    if (const auto* s = v->if_string())
        return std::string(*s);
    if (v->is_number())
        return boost::json::serialize(*v);
    return {};
}

// A number field; a numeric string ("86400", " 3.5") is accepted too.
std::optional<double> get_number(const boost::json::object& o, std::string_view key)
{
    const auto* v = o.if_contains(key);
    if (!v)
        return std::nullopt;
    switch (v->kind()) {
    case boost::json::kind::int64: return static_cast<double>(v->get_int64());
    case boost::json::kind::uint64: return static_cast<double>(v->get_uint64());
    case boost::json::kind::double_: return v->get_double();
    case boost::json::kind::string: {
        auto s = trim(std::string_view(v->get_string()));
        double d = 0;
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
        if (ec == std::errc() && end == s.data() + s.size() && !s.empty() && std::isfinite(d))
            return d;
        return std::nullopt;
    }
    default: return std::nullopt;
    }
}

// A count: negative, fractional or absurd values saturate instead of wrapping.
std::optional<std::uint64_t> get_count(const boost::json::object& o, std::string_view key)
{
    const auto* v = o.if_contains(key);
    if (!v)
        return std::nullopt;
    if (v->is_uint64())
        return v->get_uint64();
    if (v->is_int64())
        return v->get_int64() < 0 ? 0 : static_cast<std::uint64_t>(v->get_int64());
    auto d = get_number(o, key);
    if (!d)
        return std::nullopt;
    if (*d <= 0)
        return 0;
    // 2^64 as a double; anything at or above it is the maximum.
    if (*d >= 18446744073709551616.0)
        return std::numeric_limits<std::uint64_t>::max();
    return static_cast<std::uint64_t>(*d);
}

const char* kind_name(boost::json::kind k) noexcept
{
    switch (k) {
    case boost::json::kind::null: return "null";
    case boost::json::kind::bool_: return "a boolean";
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
    case boost::json::kind::double_: return "a number";
    case boost::json::kind::string: return "a string";
    case boost::json::kind::array: return "an array";
    case boost::json::kind::object: return "an object";
    }
    return "an unknown value";
}

// The record's object, copied and scrubbed; anything else is not a record.
boost::json::object record_object(const boost::json::value& v, const char* operation)
{
    const auto* o = v.if_object();
    if (!o)
        throw error(errc::invalid_response, operation,
                    std::string("expected a JSON object, got ") + kind_name(v.kind()));
    boost::json::object raw = *o;
    scrub_secrets(raw);
    return raw;
}

void emit(boost::json::value& v, const boost::json::object& raw)
{
    boost::json::object copy(raw, v.storage());
    scrub_secrets(copy);
    v = std::move(copy);
}

} // namespace

session_status parse_session_status(std::string_view raw) noexcept
{
    std::string_view s = trim(raw);
    // "LensSessionStatus.SESSION_STATUS_RUNNING": the enum's name comes first.
    if (auto dot = s.rfind('.'); dot != std::string_view::npos)
        s.remove_prefix(dot + 1);
    if (istarts_with(s, "SESSION_STATUS_"))
        s.remove_prefix(15);

    if (!s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos) {
        // Observed on the wire; no other number is documented anywhere public.
        if (s == "3")
            return session_status::running;
        if (s == "6")
            return session_status::failed;
        return session_status::unknown;
    }
    if (iequals(s, "REGISTERED"))
        return session_status::registered;
    if (iequals(s, "RUNNING"))
        return session_status::running;
    if (iequals(s, "FAILED"))
        return session_status::failed;
    if (iequals(s, "STALE"))
        return session_status::stale;
    return session_status::unknown;
}

std::string_view to_string(session_status s) noexcept
{
    switch (s) {
    case session_status::unknown: return "unknown";
    case session_status::registered: return "registered";
    case session_status::running: return "running";
    case session_status::failed: return "failed";
    case session_status::stale: return "stale";
    }
    return "unknown";
}

void scrub_secrets(boost::json::object& o)
{
    boost::json::value wrapper(std::move(o));
    scrub_secrets(wrapper);
    o = std::move(wrapper.get_object());
}

void scrub_secrets(boost::json::value& root)
{
    detail::redactor{}.scrub(root); // one walk for every redaction (detail/redactor.hpp)
}

session_record tag_invoke(boost::json::value_to_tag<session_record>, const boost::json::value& v)
{
    session_record r;
    r.raw = record_object(v, "decode session record");
    const auto& o = r.raw;
    r.session_id = get_string(o, "session_id");
    r.lens_id = get_string(o, "lens_id");
    r.lens_name = get_string(o, "lens_name");
    r.session_endpoint = get_string(o, "session_endpoint");
    r.status_raw = get_string(o, "session_status");
    r.status = parse_session_status(r.status_raw);
    r.session_ttl_sec = get_number(o, "session_ttl_sec");
    r.registration_timestamp = get_number(o, "registration_timestamp");
    r.session_start_timestamp = get_number(o, "session_start_timestamp");
    r.last_event_timestamp = get_number(o, "last_event_timestamp");
    r.session_destroyed_timestamp = get_number(o, "session_destroyed_timestamp");
    r.num_active_connections = get_count(o, "num_active_connections").value_or(0);
    r.num_updates = get_count(o, "num_updates").value_or(0);
    r.num_inputs = get_count(o, "num_inputs").value_or(0);
    r.num_outputs = get_count(o, "num_outputs").value_or(0);
    r.num_events = get_count(o, "num_events").value_or(0);
    return r;
}

lens_record tag_invoke(boost::json::value_to_tag<lens_record>, const boost::json::value& v)
{
    lens_record r;
    r.raw = record_object(v, "decode lens record");
    r.lens_id = get_string(r.raw, "lens_id");
    r.lens_name = get_string(r.raw, "lens_name");
    return r;
}

file_record tag_invoke(boost::json::value_to_tag<file_record>, const boost::json::value& v)
{
    file_record r;
    r.raw = record_object(v, "decode file record");
    r.file_id = get_string(r.raw, "file_id");
    if (r.file_id.empty())
        r.file_id = get_string(r.raw, "file_name");
    r.file_uid = get_string(r.raw, "file_uid");
    r.file_size = get_count(r.raw, "file_size");
    return r;
}

void tag_invoke(boost::json::value_from_tag, boost::json::value& v, const session_record& r)
{
    emit(v, r.raw);
}

void tag_invoke(boost::json::value_from_tag, boost::json::value& v, const lens_record& r)
{
    emit(v, r.raw);
}

void tag_invoke(boost::json::value_from_tag, boost::json::value& v, const file_record& r)
{
    emit(v, r.raw);
}

} // namespace lens
