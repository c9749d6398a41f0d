// Where a URL points: scheme, host, port and the base path requests are appended to.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lens::detail {

struct origin {
    bool tls = false;          ///< https or wss
    std::string host;          ///< without brackets for IPv6
    std::string port;          ///< always set (defaulted from the scheme)
    std::string base_path;     ///< "/v0.5" — no trailing slash
    std::string query;         ///< raw query of the URL, if any (WebSocket URLs)

    /// The value of the Host header: host, plus ":port" unless it is the scheme's default.
    std::string host_header() const;
    /// base_path + "/" + path (path given without a leading slash).
    std::string target(std::string_view path) const;
};

/// Parses an http, https, ws or wss URL with Boost.URL. Throws `lens::error`
/// (errc::invalid_argument) naming `operation` when the URL is unusable.
origin parse_origin(std::string_view url, std::string_view operation);

/// The session endpoint rule (see detail/endpoint.hpp): the origin of a control channel at
/// `url` (a `session_endpoint` the server sent), accepted only on the REST origin's host
/// or a host of `allowed_hosts` (`config::session_hosts`; compared without regard to case),
/// and only over TLS when `rest` is. Throws `lens::error` (errc::invalid_argument) naming
/// `operation` otherwise: the API key is never sent anywhere else.
origin session_origin(std::string_view url, const origin& rest, const std::vector<std::string>& allowed_hosts,
                      std::string_view operation);

} // namespace lens::detail
