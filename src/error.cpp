// error.cpp — the lens error category, server diagnostics and the exception's message.
#include <lens/error.hpp>

#include <boost/json/serializer.hpp>

#include <algorithm>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>

namespace lens {

namespace {

class lens_category final : public boost::system::error_category {
public:
    // A fixed id makes codes compare equal across shared-library boundaries.
    constexpr lens_category() noexcept : error_category(0x6c656e73'2d657272ull) {}

    const char* name() const noexcept override { return "lens"; }

    std::string message(int ev) const override { return describe(ev); }

    char const* message(int ev, char* buffer, std::size_t len) const noexcept override
    {
        // Every message is a literal, so the buffer is never needed.
        (void)buffer;
        (void)len;
        return describe(ev);
    }

private:
    static const char* describe(int ev) noexcept
    {
        switch (static_cast<errc>(ev)) {
        case errc::timeout: return "the operation timed out";
        case errc::connection_failed: return "could not connect to the server";
        case errc::connection_lost: return "the connection was lost";
        case errc::unauthorized: return "the server refused the credentials";
        case errc::not_found: return "not found";
        case errc::rate_limited: return "rate limited by the server";
        case errc::server_error: return "the server failed";
        case errc::http_error: return "the server replied with an error status";
        case errc::api_error: return "the server reported a failure";
        case errc::invalid_response: return "the server's reply is not what the protocol expects";
        case errc::body_too_large: return "the reply body is too large";
        case errc::invalid_argument: return "invalid argument";
        case errc::query_timed_out: return "the server timed out answering the query";
        case errc::session_gone: return "the session no longer exists";
        case errc::protocol_error: return "protocol error";
        case errc::limit_exceeded: return "a size limit was exceeded";
        case errc::not_event_stream: return "the reply is not an event stream";
        case errc::closed: return "closed while the operation was pending";
        case errc::certificate_rejected: return "the server's certificate failed verification";
        }
        return "unknown lens error";
    }
};

constexpr lens_category the_category;

constexpr std::string_view ellipsis = "...";

// The longest prefix of `s` of at most `n` bytes that does not end inside a UTF-8 sequence.
std::string_view utf8_prefix(std::string_view s, std::size_t n) noexcept
{
    if (s.size() <= n)
        return s;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)  // s[n] continues a character
        --n;
    return s.substr(0, n);
}

// `s` in at most `limit` (> ellipsis.size()) bytes: whole, or cut and marked with the ellipsis.
void append_cut(std::string& out, std::string_view s, std::size_t limit)
{
    if (s.size() <= limit) {
        out += s;
        return;
    }
    out += utf8_prefix(s, limit - ellipsis.size());
    out += ellipsis;
}

std::string cut(std::string_view s)
{
    std::string out;
    append_cut(out, s, max_server_error_field);
    return out;
}

// The JSON text of `v`, cut like a string: the serializer is incremental, so a huge or deeply
// nested value costs only the bytes kept, never a full serialisation.
std::string json_text(const boost::json::value& v)
{
    boost::json::serializer sr;
    sr.reset(&v);
    char buf[max_server_error_field + 1];  // one byte more tells "exactly the bound" from "over it"
    std::size_t n = 0;
    while (!sr.done() && n < sizeof buf)
        n += sr.read(buf + n, sizeof buf - n).size();
    return cut({buf, n});
}

// Server strings are usually strings; anything else is kept as its JSON text
// rather than dropped, so no diagnostic is lost to an unexpected type.
std::string text_of(const boost::json::value* v)
{
    if (!v || v->is_null())
        return {};
    if (const auto* s = v->if_string())
        return cut(*s);
    return json_text(*v);
}

server_error from_item(const boost::json::value& item)
{
    server_error e;
    if (const auto* o = item.if_object()) {
        e.code = text_of(o->if_contains("code"));
        e.message = text_of(o->if_contains("message"));
        if (e.message.empty())  // FastAPI's validation items: {"loc", "msg", "type"}
            e.message = text_of(o->if_contains("msg"));
        if (e.code.empty())
            e.code = text_of(o->if_contains("type"));
        e.suggestion = text_of(o->if_contains("suggestion"));
        e.error_uid = text_of(o->if_contains("error_uid"));
        if (e.message.empty() && e.code.empty() && !o->empty())
            e.message = json_text(item);  // unknown shape: keep it readable
    } else {
        e.message = text_of(&item);
    }
    return e;
}

std::size_t saturating_add(std::size_t a, std::size_t b) noexcept
{
    return b > static_cast<std::size_t>(-1) - a ? static_cast<std::size_t>(-1) : a + b;
}

// Gathers the diagnostics of one body within the bounds of lens/error.hpp: every step is
// O(1) expected (hashing a bounded key), and at most max_examined_server_errors items of
// each array are read.
class diagnostics {
public:
    // Adds the diagnostics of `v`, which may be one item or an array of them.
    void collect(const boost::json::value* v)
    {
        if (!v || v->is_null())
            return;
        const auto* a = v->if_array();
        if (!a) {
            add(*v);
            return;
        }
        const std::size_t examined = std::min(a->size(), max_examined_server_errors);
        for (std::size_t i = 0; i < examined; ++i)
            add((*a)[i]);
        unexamined_ = saturating_add(unexamined_, a->size() - examined);
    }

    std::vector<server_error> take() &&
    {
        if (!kept_.empty())
            kept_.back().omitted_after = saturating_add(dropped_.size(), unexamined_);
        return std::move(kept_);
    }

private:
    void add(const boost::json::value& item)
    {
        server_error e = from_item(item);
        if (e.message.empty() && e.code.empty())
            return;
        // The same text under two keys ("detail" and "message") is one diagnostic.
        std::string id = identity(e);
        if (seen_.contains(id))
            return;
        if (kept_.size() < max_server_errors) {
            seen_.insert(std::move(id));
            kept_.push_back(std::move(e));
        } else {
            // Only counted, so a hash is enough: a collision merely undercounts.
            dropped_.insert(std::hash<std::string>{}(id));
        }
    }

    // Code and message, unambiguously: the length prefix keeps ("ab", "c") apart from ("a", "bc").
    static std::string identity(const server_error& e)
    {
        std::string id = std::to_string(e.code.size());
        id += ':';
        id += e.code;
        id += e.message;
        return id;
    }

    std::vector<server_error> kept_;
    std::unordered_set<std::string> seen_;    // identities of kept_
    std::unordered_set<std::size_t> dropped_; // identities of distinct diagnostics past the cap
    std::size_t unexamined_ = 0;
};

// Holds a caller-built list to the bounds parse_server_errors keeps.
std::vector<server_error> bounded(std::vector<server_error> errors)
{
    if (errors.size() > max_server_errors) {
        std::size_t dropped = 0;
        for (auto it = errors.begin() + max_server_errors; it != errors.end(); ++it)
            dropped = saturating_add(dropped, saturating_add(1, it->omitted_after));
        errors.resize(max_server_errors);
        errors.back().omitted_after = saturating_add(errors.back().omitted_after, dropped);
    }
    for (auto& e : errors)
        for (std::string* field : {&e.code, &e.message, &e.suggestion, &e.error_uid})
            if (field->size() > max_server_error_field)
                *field = cut(*field);
    return errors;
}

bool is_false(const boost::json::value* v) noexcept
{
    return v && v->is_bool() && !v->get_bool();
}

bool is_true(const boost::json::value* v) noexcept
{
    return v && v->is_bool() && v->get_bool();
}

bool non_empty(const boost::json::value* v) noexcept
{
    if (!v)
        return false;
    switch (v->kind()) {
    case boost::json::kind::null: return false;
    case boost::json::kind::array: return !v->get_array().empty();
    case boost::json::kind::object: return !v->get_object().empty();
    case boost::json::kind::string: return !v->get_string().empty();
    default: return true;
    }
}

// Lower-case reason phrases (RFC 9110) of the statuses the API is known to use.
const char* reason_word(unsigned status) noexcept
{
    switch (status) {
    case 200: return "ok";
    case 201: return "created";
    case 202: return "accepted";
    case 204: return "no content";
    case 400: return "bad request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 408: return "request timeout";
    case 409: return "conflict";
    case 410: return "gone";
    case 413: return "content too large";
    case 415: return "unsupported media type";
    case 416: return "range not satisfiable";
    case 422: return "unprocessable content";
    case 429: return "too many requests";
    case 500: return "internal server error";
    case 501: return "not implemented";
    case 502: return "bad gateway";
    case 503: return "service unavailable";
    case 504: return "gateway timeout";
    default: return nullptr;
    }
}

std::string format_message(const boost::system::error_code& ec, const std::string& operation,
                           const std::string& detail, unsigned http_status,
                           const std::vector<server_error>& server_errors)
{
    // Everything but the note " (N more)" fits in `limit`; the note fits in what is left.
    constexpr std::string_view widest_note = " (18446744073709551615 more)";
    const std::size_t limit = operation.size() + max_error_message - widest_note.size();

    std::string m = operation;
    m += ": ";
    if (http_status != 0) {
        m += std::to_string(http_status);
        if (const char* word = reason_word(http_status)) {
            m += ' ';
            m += word;
        }
        m += ": ";
    }
    append_cut(m, detail, limit - m.size());

    // The server's diagnostics, joined, as many whole ones as fit; the first that does not
    // ends the list, so what is shown is always a prefix in the server's order.
    std::size_t shown = 0;
    std::size_t omitted = 0;
    bool full = false;
    for (const auto& e : server_errors) {
        omitted = saturating_add(omitted, e.omitted_after);
        const std::string& text = e.message.empty() ? e.code : e.message;
        if (text.empty())
            continue;
        const std::string_view separator = shown > 0 ? "; " : detail.empty() ? "" : ": ";
        full = full || m.size() + separator.size() + text.size() > limit;
        if (full) {
            omitted = saturating_add(omitted, 1);
            continue;
        }
        m += separator;
        m += text;
        ++shown;
    }

    if (detail.empty() && shown == 0)
        m += ec.message();
    if (omitted > 0) {
        m += " (";
        m += std::to_string(omitted);
        m += " more)";
    }
    return m;
}

} // namespace

const boost::system::error_category& error_category() noexcept
{
    return the_category;
}

std::vector<server_error> parse_server_errors(const boost::json::value& body)
{
    const auto* o = body.if_object();
    if (!o)
        return {};
    diagnostics out;
    out.collect(o->if_contains("errors"));
    out.collect(o->if_contains("detail"));
    // `error_messages` comes with `is_valid: false`, and alone in `inference.error`;
    // beside `is_valid: true` it is not a failure.
    if (!is_true(o->if_contains("is_valid")))
        out.collect(o->if_contains("error_messages"));
    out.collect(o->if_contains("message"));
    return std::move(out).take();
}

bool body_reports_failure(const boost::json::value& body)
{
    const auto* o = body.if_object();
    if (!o)
        return false;
    return non_empty(o->if_contains("errors")) || is_false(o->if_contains("is_valid"));
}

error::error(boost::system::error_code ec, std::string operation, std::string detail,
             unsigned http_status, std::vector<server_error> server_errors)
    : boost::system::system_error(ec)
    , operation_(std::move(operation))
    , http_status_(http_status)
    , server_errors_(bounded(std::move(server_errors)))
{
    what_ = format_message(ec, operation_, detail, http_status_, server_errors_);
}

void throw_error(boost::system::error_code ec, std::string operation, std::string detail)
{
    throw error(ec, std::move(operation), std::move(detail));
}

} // namespace lens
