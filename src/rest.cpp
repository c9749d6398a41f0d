#include "detail/rest.hpp"

#include "detail/bounded_json.hpp"

#include <lens/retry.hpp>

#include <boost/beast/http/field.hpp>
#include <boost/json/parse.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/pchars.hpp>

namespace lens::detail {

namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

/// The memory a reply's parsed tree may take, per byte of the largest reply accepted.
constexpr std::size_t parse_budget_factor = 8;

std::optional<json::value> parse_json(std::string_view body, const endpoint& ep, std::string_view operation)
{
    boost::system::error_code ec;
    auto v = parse_bounded(body, parse_budget_factor * ep.settings().max_reply_size, ec);
    if (ec == errc::body_too_large)
        throw lens::error(errc::body_too_large, std::string(operation),
                          "the parsed reply needs more than " +
                              std::to_string(parse_budget_factor * ep.settings().max_reply_size) + " bytes");
    if (ec)
        return std::nullopt;
    ep.secrets().scrub(v);
    return v;
}

/// A short printable excerpt of a body that is not JSON, for the error message.
std::string describe_non_json(const http_response& resp, const endpoint& ep)
{
    std::string what = "non-JSON reply";
    const auto type = resp[http::field::content_type];
    if (!type.empty())
        what += " (" + ep.secrets().scrubbed(type.substr(0, 100)) + ")";
    // Redacted before it is cut: an excerpt ending inside the key would keep part of it.
    std::string excerpt;
    for (char c : ep.secrets().scrubbed(std::string_view(resp.body()).substr(0, 60 + ep.settings().api_key.size())).substr(0, 60))
        excerpt += (c >= 0x20 && c < 0x7f) ? c : ' ';
    if (!excerpt.empty())
        what += ": " + excerpt + (resp.body().size() > 60 ? "..." : "");
    return what;
}

} // namespace

lens::error status_error(const http_response& resp, std::string_view operation, const endpoint& ep)
{
    const unsigned status = resp.result_int();
    std::vector<server_error> diagnostics;
    std::string detail;
    std::optional<json::value> body;
    try {
        body = parse_json(resp.body(), ep, operation);
    } catch (const lens::error&) {
        detail = "an error body too large to read";
    }
    if (body)
        diagnostics = parse_server_errors(*body);
    else if (detail.empty() && !resp.body().empty())
        detail = describe_non_json(resp, ep);
    return lens::error(status_condition(status), std::string(operation), std::move(detail), status,
                       std::move(diagnostics));
}

json::value success_body(const http_response& resp, std::string_view operation, const endpoint& ep)
{
    auto body = parse_json(resp.body(), ep, operation);
    if (!body)
        throw lens::error(errc::invalid_response, std::string(operation), describe_non_json(resp, ep),
                          resp.result_int());
    if (body_reports_failure(*body))
        throw lens::error(errc::api_error, std::string(operation), {}, resp.result_int(),
                          parse_server_errors(*body));
    return std::move(*body);
}

std::string encode_segment(std::string_view segment)
{
    return boost::urls::encode(segment, boost::urls::pchars);
}

} // namespace lens::detail
