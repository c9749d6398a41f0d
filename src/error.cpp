// error.cpp — the lens error category, server diagnostics and the exception's message.
#include <lens/error.hpp>

#include <boost/json/serialize.hpp>

#include <string>
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

// Server strings are usually strings; anything else is kept as its JSON text
// rather than dropped, so no diagnostic is lost to an unexpected type.
std::string text_of(const boost::json::value* v)
{
    if (!v || v->is_null())
        return {};
    if (const auto* s = v->if_string())
        return std::string(*s);
    return boost::json::serialize(*v);
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
            e.message = boost::json::serialize(item);  // unknown shape: keep it readable
    } else {
        e.message = text_of(&item);
    }
    return e;
}

// Appends the diagnostics of `v`, which may be one item or an array of them.
void collect(const boost::json::value* v, std::vector<server_error>& out)
{
    if (!v || v->is_null())
        return;
    auto add = [&](const boost::json::value& item) {
        server_error e = from_item(item);
        if (e.message.empty() && e.code.empty())
            return;
        // The same text under two keys ("detail" and "message") is one diagnostic.
        for (const auto& seen : out)
            if (seen.message == e.message && seen.code == e.code)
                return;
        out.push_back(std::move(e));
    };
    if (const auto* a = v->if_array()) {
        for (const auto& item : *a)
            add(item);
    } else {
        add(*v);
    }
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

    std::string said;  // the server's diagnostics, joined
    for (const auto& e : server_errors) {
        const std::string& text = e.message.empty() ? e.code : e.message;
        if (text.empty())
            continue;
        if (!said.empty())
            said += "; ";
        said += text;
    }

    if (!detail.empty()) {
        m += detail;
        if (!said.empty())
            m += ": " + said;
    } else if (!said.empty()) {
        m += said;
    } else {
        m += ec.message();
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
    std::vector<server_error> out;
    const auto* o = body.if_object();
    if (!o)
        return out;
    collect(o->if_contains("errors"), out);
    collect(o->if_contains("detail"), out);
    // `error_messages` comes with `is_valid: false`, and alone in `inference.error`;
    // beside `is_valid: true` it is not a failure.
    if (!is_true(o->if_contains("is_valid")))
        collect(o->if_contains("error_messages"), out);
    collect(o->if_contains("message"), out);
    return out;
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
    , server_errors_(std::move(server_errors))
{
    what_ = format_message(ec, operation_, detail, http_status_, server_errors_);
}

void throw_error(boost::system::error_code ec, std::string operation, std::string detail)
{
    throw error(ec, std::move(operation), std::move(detail));
}

} // namespace lens
