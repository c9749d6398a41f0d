// REST plumbing shared by the client: call descriptions, reply interpretation.
#pragma once

#include "detail/endpoint.hpp"
#include "detail/http_connection.hpp"

#include <lens/error.hpp>
#include <lens/records.hpp>

#include <boost/beast/http/verb.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_to.hpp>

#include <string>
#include <string_view>

namespace lens::detail {

/// What to send, and how the call may be retried.
struct rest_call {
    boost::beast::http::verb method = boost::beast::http::verb::get;
    std::string path;          ///< relative to the base path, query included
    std::string body;
    std::string content_type;  ///< defaults to application/json for bodies
    std::string_view operation;
    /// Safe to repeat when the request may already have reached the server.
    bool idempotent = false;

    static rest_call get(std::string path, std::string_view op)
    {
        return {boost::beast::http::verb::get, std::move(path), {}, {}, op, true};
    }
    static rest_call post(std::string path, std::string body, std::string_view op)
    {
        return {boost::beast::http::verb::post, std::move(path), std::move(body), {}, op, false};
    }
};

/// The `lens::error` for a non-success reply: condition from the status (lens/retry.hpp's
/// table), the server's diagnostics from whatever body shape it sent, redacted.
lens::error status_error(const http_response& resp, std::string_view operation, const endpoint& ep);

/// The JSON body of a success reply, redacted; throws errc::invalid_response for a body
/// that is not JSON, errc::body_too_large when its parsed form exceeds the budget
/// (8 x config::max_reply_size), and errc::api_error for a 2xx carrying `errors` or
/// `is_valid: false`.
boost::json::value success_body(const http_response& resp, std::string_view operation, const endpoint& ep);

/// A path segment percent-encoded (ids come from users and servers).
std::string encode_segment(std::string_view segment);

/// `value_to<Record>` with failures reported as errc::invalid_response naming `operation`.
template <class Record>
Record decode(const boost::json::value& v, std::string_view operation)
{
    try {
        return boost::json::value_to<Record>(v);
    } catch (const lens::error& e) {
        // The decoder names itself ("decode session record: expected a JSON object..."):
        // the caller's operation goes in front, as for every other failure of the call.
        throw lens::error(e.code(), std::string(operation), e.what(), e.http_status(), e.server_errors());
    } catch (const std::exception& e) {
        throw lens::error(errc::invalid_response, std::string(operation),
                          std::string("unexpected record shape: ") + e.what());
    }
}

} // namespace lens::detail
