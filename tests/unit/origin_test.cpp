// Unit tests of URL parsing (detail/origin.hpp) and the session endpoint rule: what goes
// into the Host header and the request line, and where the API key may be sent.
#include "detail/origin.hpp"

#include <lens/error.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using lens::detail::origin;
using lens::detail::parse_origin;

namespace {

/// The code parse_origin throws for `url`, or none.
boost::system::error_code refusal(std::string_view url)
{
    try {
        (void)parse_origin(url, "test");
        return {};
    } catch (const lens::error& e) {
        return e.code();
    }
}

boost::system::error_code session_refusal(std::string_view url, const origin& rest,
                                          const std::vector<std::string>& allowed = {})
{
    try {
        (void)lens::detail::session_origin(url, rest, allowed, "session.open");
        return {};
    } catch (const lens::error& e) {
        return e.code();
    }
}

} // namespace

TEST_CASE("origin: scheme, host, port, base path and query")
{
    const origin a = parse_origin("https://api.example.com/v0.5/", "test");
    CHECK(a.tls);
    CHECK(a.host == "api.example.com");
    CHECK(a.port == "443");
    CHECK(a.base_path == "/v0.5");
    CHECK(a.host_header() == "api.example.com");
    CHECK(a.target("lens/sessions") == "/v0.5/lens/sessions");

    const origin b = parse_origin("ws://[::1]:8080/s?x=1", "test");
    CHECK_FALSE(b.tls);
    CHECK(b.host == "::1");
    CHECK(b.host_header() == "[::1]:8080");
    CHECK(b.query == "x=1");

    CHECK(refusal("ftp://example.com/") == lens::errc::invalid_argument);
    CHECK(refusal("http:///path") == lens::errc::invalid_argument);
    CHECK(refusal("not a url") == lens::errc::invalid_argument);
}

// Found writing fuzz/origin.cpp (its seed corpus/origin/encoded breaks the target's "safe
// on the wire" invariant): the base path was percent-decoded, so a server's
// `session_endpoint` ending in "%0d%0aX:%20y" put CR LF into the WebSocket upgrade's
// request line (a header injected into the request that carries the key), and "%3F" or
// "%2F" changed the request's meaning. The request target is the path as written.
TEST_CASE("origin: the base path is sent as written, percent escapes included")
{
    const origin o = parse_origin("wss://api.example.com/v0.5/a%20b%0d%0aX:%20y%2F%3F/", "test");
    CHECK(o.base_path == "/v0.5/a%20b%0d%0aX:%20y%2F%3F");
    CHECK(o.target("x") == "/v0.5/a%20b%0d%0aX:%20y%2F%3F/x");
}

// Found with the previous one: a host name is percent-decoded too ("ex%61mple.com" is
// "example.com"), and decoded to CR LF, a space or a delimiter it went into the Host
// header and the resolver. Such a name is refused.
TEST_CASE("origin: a host that decodes to a control character, a space or a delimiter is refused")
{
    CHECK(parse_origin("http://ex%61mple.com/", "test").host == "example.com");
    for (const char* url : {"http://a%0d%0aX:%20y/", "http://a%20b/", "http://a%00b/", "http://a%2Fb/",
                            "http://a%40b/", "http://a%3Fb/", "http://a%23b/", "http://a%7fb/"}) {
        CAPTURE(url);
        CHECK(refusal(url) == lens::errc::invalid_argument);
    }
}

// Found by fuzz/origin.cpp (corpus/origin/regression-port-not-a-number): Boost.URL 1.81
// parses "wss://api.u1:archetypeai.app/" with the port "archetypeai.app"; and "http://h:/"
// gave an empty port, "99999" or "0" a port no socket has.
TEST_CASE("origin: a port outside 1-65535 is refused")
{
    CHECK(parse_origin("http://h:65535/", "test").port == "65535");
    CHECK(parse_origin("http://h:1/", "test").port == "1");
    CHECK(parse_origin("http://h:08080/", "test").port == "8080");
    for (const char* url : {"wss://api.u1:archetypeai.app/v0.5", "http://h:/", "http://h:0/", "http://h:65536/", "http://h:99999999999999999999999/"}) {
        CAPTURE(url);
        CHECK(refusal(url) == lens::errc::invalid_argument);
    }
}

TEST_CASE("origin: the session endpoint rule - the REST host or a listed one, never a downgrade")
{
    const origin https = parse_origin("https://api.example.com/v0.5", "test");
    const origin http = parse_origin("http://127.0.0.1:8080/v0.5", "test");
    CHECK_FALSE(session_refusal("wss://api.example.com/v0.5/lens/sessions/lsn-1", https));
    CHECK_FALSE(session_refusal("wss://API.Example.COM:8443/x", https)); // case-insensitive; any port
    CHECK(session_refusal("ws://api.example.com/v0.5/lens/sessions/lsn-1", https) == lens::errc::invalid_argument);
    CHECK(session_refusal("wss://evil.example/x", https) == lens::errc::invalid_argument);
    CHECK(session_refusal("wss://api.example.com.evil.example/x", https) == lens::errc::invalid_argument);
    CHECK_FALSE(session_refusal("wss://sessions.example.com/x", https, {"Sessions.Example.com"}));
    CHECK(session_refusal("ws://sessions.example.com/x", https, {"sessions.example.com"}) ==
          lens::errc::invalid_argument);
    CHECK_FALSE(session_refusal("ws://127.0.0.1:9000/x", http));
    CHECK_FALSE(session_refusal("wss://127.0.0.1/x", http)); // an upgrade is fine
    CHECK(session_refusal("not a url", http) == lens::errc::invalid_argument);
}
