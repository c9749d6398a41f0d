#include "detail/origin.hpp"

#include <lens/error.hpp>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace lens::detail {

std::string origin::host_header() const
{
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    const bool default_port = (tls && port == "443") || (!tls && port == "80");
    if (!default_port)
        h += ":" + port;
    return h;
}

std::string origin::target(std::string_view path) const
{
    std::string t = base_path;
    t += '/';
    t += path;
    return t;
}

origin parse_origin(std::string_view url, std::string_view operation)
{
    auto parsed = boost::urls::parse_uri(url);
    if (!parsed)
        throw_error(errc::invalid_argument, std::string(operation),
                    "not a valid URL: " + std::string(url));
    const boost::urls::url_view u = *parsed;
    origin o;
    const auto scheme = u.scheme();
    if (scheme == "https" || scheme == "wss")
        o.tls = true;
    else if (scheme != "http" && scheme != "ws")
        throw_error(errc::invalid_argument, std::string(operation),
                    "unsupported URL scheme '" + std::string(scheme) + "' (expected http, https, ws or wss)");
    if (u.host_type() == boost::urls::host_type::ipv6)
        o.host = u.host_address(); // the address without brackets
    else
        o.host = u.host();
    if (o.host.empty())
        throw_error(errc::invalid_argument, std::string(operation), "URL has no host: " + std::string(url));
    o.port = u.has_port() ? std::string(u.port()) : (o.tls ? "443" : "80");
    o.base_path = u.path();
    while (!o.base_path.empty() && o.base_path.back() == '/')
        o.base_path.pop_back();
    if (u.has_query())
        o.query = u.encoded_query();
    return o;
}

} // namespace lens::detail
