// endpoint.cpp — the shared connection settings of a client (see detail/endpoint.hpp).
#include "detail/endpoint.hpp"

#include "detail/http_connection.hpp"

#include <lens/error.hpp>

#include <boost/beast/http/field.hpp>

namespace lens::detail {

namespace http = boost::beast::http;

endpoint::endpoint(config cfg)
    : cfg_(std::move(cfg)), rest_(parse_origin(cfg_.endpoint, "client")), secrets_(cfg_.api_key)
{
    check_header_value("the API key", cfg_.api_key, "client");
    check_header_value("the user agent", cfg_.user_agent, "client");
    for (const auto& h : cfg_.session_hosts)
        check_header_value("a session host", h, "client");
    if (rest_.tls)
        (void)tls(); // a bad CA file is reported here, at construction, not at the first call
}

boost::asio::ssl::context& endpoint::tls() const
{
    std::call_once(tls_once_, [this] { tls_ = make_tls_context(cfg_); });
    return *tls_;
}

void endpoint::check_header_value(std::string_view what, std::string_view value, std::string_view operation)
{
    for (unsigned char c : value)
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            throw lens::error(errc::invalid_argument, std::string(operation),
                              std::string(what) + " contains a control character (CR, LF or another); "
                                                  "nothing was sent");
}

void endpoint::set_checked(http::fields& f, std::string_view name, std::string_view value,
                           std::string_view operation)
{
    check_header_value(name, value, operation);
    f.set(name, value);
}

void endpoint::set_common_headers(http::fields& f, const origin& where, auth how) const
{
    // Values checked at construction; the origin's host comes from a parsed URL.
    f.set(http::field::host, where.host_header());
    f.set(http::field::user_agent, cfg_.user_agent);
    if (how == auth::websocket_subprotocol)
        f.set(http::field::sec_websocket_protocol,
              "authenticationauthorization.bearer." + cfg_.api_key + ", event-protocol-v1");
    else
        f.set(http::field::authorization, "Bearer " + cfg_.api_key);
}

origin endpoint::session_origin(std::string_view url, std::string_view operation) const
{
    return detail::session_origin(url, rest_, cfg_.session_hosts, operation);
}

void endpoint::log(const log_record& r) const
{
    if (!logs(r.level))
        return;
    const std::string operation = secrets_.scrubbed(r.operation);
    const std::string target = secrets_.scrubbed(r.target);
    const std::string last_event_id = secrets_.scrubbed(r.last_event_id);
    const std::string reason = secrets_.scrubbed(r.reason);
    log_record out = r;
    out.operation = operation;
    out.target = target;
    out.last_event_id = last_event_id;
    out.reason = reason;
    // Rendered from the scrubbed texts, and scrubbed once more: a key could only appear
    // across two of them, but the check is cheap and this is the last line of defence.
    const std::string message = secrets_.scrubbed(format(out));
    out.message = message;
    cfg_.log.write(out);
}

} // namespace lens::detail
