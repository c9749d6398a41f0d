#include "detail/origin.hpp"

#include <lens/error.hpp>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <algorithm>
#include <cctype>

namespace lens::detail {

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

// A host name as it goes to the resolver, SNI and the Host header: percent-decoded (a
// reg-name may be written "ex%61mple.com"), so it must not have decoded to anything that
// ends or splits a header or changes what the URL means when written back.
bool is_host_name(std::string_view host) noexcept
{
    return std::none_of(host.begin(), host.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c <= 0x20 || c == 0x7f || std::string_view("/\\?#@[]:%").find(ch) != std::string_view::npos;
    });
}

// The port as a canonical number 1-65535, or empty when it is not one.
std::string port_number(std::string_view text)
{
    if (text.empty() || text.size() > 16 ||
        !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return {};
    unsigned long n = 0;
    for (char c : text)
        n = n * 10 + static_cast<unsigned long>(c - '0'); // at most 16 digits: no overflow
    if (n == 0 || n > 65535)
        return {};
    return std::to_string(n);
}

} // namespace

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
    if (u.host_type() != boost::urls::host_type::ipv6 && !is_host_name(o.host))
        throw_error(errc::invalid_argument, std::string(operation),
                    "URL has an invalid host name (a control character, space or delimiter once decoded): " +
                        std::string(url));
    if (u.has_port()) {
        o.port = port_number(u.port());
        if (o.port.empty())
            throw_error(errc::invalid_argument, std::string(operation),
                        "URL has an invalid port (expected 1 to 65535): " + std::string(url));
    } else {
        o.port = o.tls ? "443" : "80";
    }
    // As written: the base path goes into request lines, where its escapes must stay
    // escapes (decoded, "%0d%0a" would end the line and "%3F" start a query).
    o.base_path = u.encoded_path();
    while (!o.base_path.empty() && o.base_path.back() == '/')
        o.base_path.pop_back();
    if (u.has_query())
        o.query = u.encoded_query();
    return o;
}

origin session_origin(std::string_view url, const origin& rest, const std::vector<std::string>& allowed_hosts,
                      std::string_view operation)
{
    origin o = parse_origin(url, operation);
    const bool same_host = iequals(o.host, rest.host);
    const bool listed = std::any_of(allowed_hosts.begin(), allowed_hosts.end(),
                                    [&](const std::string& h) { return iequals(h, o.host); });
    if (!same_host && !listed)
        throw lens::error(errc::invalid_argument, std::string(operation),
                          "the session endpoint's host '" + o.host + "' is not the REST endpoint's ('" + rest.host +
                              "'); the API key is not sent there (list it in config::session_hosts to allow it)");
    if (rest.tls && !o.tls)
        throw lens::error(errc::invalid_argument, std::string(operation),
                          "the session endpoint is not wss while the REST endpoint is https; the API key is "
                          "not sent in plain text");
    return o;
}

} // namespace lens::detail
