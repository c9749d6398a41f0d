#include "detail/rest.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/json/parse.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/pchars.hpp>

namespace lens::detail {

namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

errc condition_for_status(unsigned status)
{
    if (status == 401 || status == 403) return errc::unauthorized;
    if (status == 404) return errc::not_found;
    if (status == 429) return errc::rate_limited;
    if (status >= 500) return errc::server_error;
    return errc::http_error;
}

std::optional<json::value> parse_json(std::string_view body)
{
    boost::system::error_code ec;
    auto v = json::parse(body, ec);
    if (ec)
        return std::nullopt;
    return v;
}

/// A short printable excerpt of a body that is not JSON, for the error message.
std::string describe_non_json(const http_response& resp)
{
    std::string what = "non-JSON reply";
    const auto type = resp[http::field::content_type];
    if (!type.empty())
        what += " (" + std::string(type) + ")";
    std::string excerpt;
    for (char c : std::string_view(resp.body()).substr(0, 60))
        excerpt += (c >= 0x20 && c < 0x7f) ? c : ' ';
    if (!excerpt.empty())
        what += ": " + excerpt + (resp.body().size() > 60 ? "..." : "");
    return what;
}

} // namespace

lens::error status_error(const http_response& resp, std::string_view operation)
{
    const unsigned status = resp.result_int();
    auto body = parse_json(resp.body());
    std::vector<server_error> diagnostics;
    std::string detail;
    if (body)
        diagnostics = parse_server_errors(*body);
    else if (!resp.body().empty())
        detail = describe_non_json(resp);
    return lens::error(condition_for_status(status), std::string(operation), std::move(detail), status,
                       std::move(diagnostics));
}

json::value success_body(const http_response& resp, std::string_view operation)
{
    auto body = parse_json(resp.body());
    if (!body)
        throw lens::error(errc::invalid_response, std::string(operation), describe_non_json(resp),
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
