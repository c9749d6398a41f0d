// Fuzz target: URL parsing (src/origin.cpp, detail/origin.hpp) and the session endpoint
// rule (detail::session_origin, which lens::session applies to the server's
// `session_endpoint` before sending it the API key).
//
// Input: the session URL, then (read from the end) which REST endpoint and how many listed
// hosts (corpus files: the URL and three bytes, e.g. "\0\0\1" for the default endpoint).
//
// Invariants, for any URL:
// - parse_origin either throws lens::error(invalid_argument) or returns an origin whose
//   host is non-empty, whose port is a TCP port number, TLS exactly for https and wss,
//   and whose host, Host header and base path hold nothing that could end or split the
//   request line or a header (no control character, no space);
// - session_origin never accepts a host other than the REST endpoint's or a listed one
//   (compared without regard to case), nor plain ws when the REST endpoint is https;
//   and it refuses exactly what parse_origin refuses, plus those.
#include "detail/origin.hpp"

#include <lens/error.hpp>

#include "fuzz_check.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <optional>
#include <cctype>
#include <string>
#include <vector>

namespace {

bool iequals(std::string_view a, std::string_view b)
{
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

/// Safe in a request line or header value: no control character, no space.
bool wire_safe(std::string_view s)
{
    return std::none_of(s.begin(), s.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c <= 0x20 || c == 0x7f;
    });
}

std::optional<lens::detail::origin> parse(std::string_view url)
{
    try {
        lens::detail::origin o = lens::detail::parse_origin(url, "fuzz");
        FUZZ_REQUIRE(!o.host.empty());
        FUZZ_REQUIRE(wire_safe(o.host) && wire_safe(o.host_header()) && wire_safe(o.base_path));
        FUZZ_REQUIRE(wire_safe(o.target("x")) && wire_safe(o.query));
        FUZZ_REQUIRE(o.base_path.empty() || o.base_path.back() != '/');
        FUZZ_REQUIRE(!o.port.empty() && o.port.size() <= 5 &&
                     std::all_of(o.port.begin(), o.port.end(), [](char c) { return c >= '0' && c <= '9'; }));
        FUZZ_REQUIRE(std::stoul(o.port) <= 65535);
        const std::string scheme(url.substr(0, url.find(':')));
        FUZZ_REQUIRE(o.tls == (iequals(scheme, "https") || iequals(scheme, "wss")));
        FUZZ_REQUIRE(o.tls || iequals(scheme, "http") || iequals(scheme, "ws"));
        return o;
    } catch (const lens::error& e) {
        FUZZ_REQUIRE(e.code() == lens::errc::invalid_argument);
        return std::nullopt;
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    FuzzedDataProvider in(data, size);
    static const char* const rests[] = {"https://api.u1.archetypeai.app/v0.5", "http://127.0.0.1:8080/v0.5/",
                                        "https://[::1]:8443", "http://Localhost"};
    const std::string rest_url =
        in.ConsumeBool() ? std::string(rests[in.ConsumeIntegralInRange<int>(0, 3)]) : in.ConsumeRandomLengthString(64);
    std::vector<std::string> allowed;
    for (int n = in.ConsumeIntegralInRange<int>(0, 2); n > 0; --n)
        allowed.push_back(in.ConsumeRandomLengthString(16));
    const std::string url = in.ConsumeRemainingBytesAsString();

    const auto rest = parse(rest_url);
    const auto plain = parse(url);
    if (!rest)
        return 0;
    try {
        const lens::detail::origin o = lens::detail::session_origin(url, *rest, allowed, "session.open");
        FUZZ_REQUIRE(plain.has_value());
        FUZZ_REQUIRE(o.host == plain->host && o.port == plain->port && o.tls == plain->tls &&
                     o.base_path == plain->base_path);
        FUZZ_REQUIRE(iequals(o.host, rest->host) ||
                     std::any_of(allowed.begin(), allowed.end(), [&](const std::string& h) { return iequals(h, o.host); }));
        FUZZ_REQUIRE(!rest->tls || o.tls);
    } catch (const lens::error& e) {
        FUZZ_REQUIRE(e.code() == lens::errc::invalid_argument);
        if (plain)
            FUZZ_REQUIRE(!(iequals(plain->host, rest->host) ||
                           std::any_of(allowed.begin(), allowed.end(),
                                       [&](const std::string& h) { return iequals(h, plain->host); })) ||
                         (rest->tls && !plain->tls));
    }
    return 0;
}
