/// \file
/// lens/config.hpp — where to connect, with which key, and how patiently.
#pragma once

#include <lens/backoff.hpp>
#include <lens/logger.hpp>
#include <lens/version.hpp>

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace lens {

/// Retries of REST calls on 429, 5xx and connection failures.
struct retry_policy {
    /// Total attempts including the first; 1 disables retries.
    unsigned max_attempts = 4;
    /// The spacing between attempts (exponential with jitter). `Retry-After` wins when longer.
    backoff_policy backoff{std::chrono::milliseconds(200), std::chrono::seconds(5), 2.0, 0.5};
};

/// What every connection of a client shares: the endpoint, the key, deadlines, retries,
/// TLS trust and byte limits.
struct config {
    /// Not an aggregate on purpose: g++ 12 destroys a braced aggregate temporary twice
    /// in a co_await expression. Start from a named value and set members.
    config() = default;

    /// Base URL including the version prefix; paths are appended to it.
    std::string endpoint = "https://api.u1.archetypeai.app/v0.5";
    /// The API key. A secret: lens never prints it, logs it, or puts it in an error.
    std::string api_key;
    /// Deadline of one whole call, retries and backoff included. Not of the streamed file
    /// transfers: their `transfer_options::stall_timeout` bounds each stall instead.
    std::chrono::milliseconds timeout = std::chrono::seconds(30);
    /// Deadline of establishing one connection (TCP + TLS) within the call's deadline.
    std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);
    /// Retries of REST calls (and of an event stream's first connection).
    retry_policy retry;
    /// Verify the server certificate (system trust store, host name). Leave on.
    bool verify_peer = true;
    /// A PEM file of extra certificate authorities to trust (the emulator's CA in TLS mode).
    std::string ca_file;
    /// Largest JSON reply body accepted from a REST call. Its parsed form may use at
    /// most 8 times as many bytes (errc::body_too_large beyond), so no reply can make
    /// lens allocate without bound (`[{},{},...]` is 3 bytes per object).
    std::size_t max_reply_size = 8 * 1024 * 1024;
    /// Largest file `download_file` accepts (in memory); `download_file_to` and
    /// `download_file_to_sink` stream files of any size.
    std::size_t max_body_size = 64 * 1024 * 1024;
    /// Hosts other than the endpoint's own whose `session_endpoint` may receive the API
    /// key. By default a session's control channel is opened only on the REST
    /// endpoint's host (and over wss when the endpoint is https); any other
    /// `session_endpoint` is refused with errc::invalid_argument, nothing sent.
    std::vector<std::string> session_hosts;
    /// Idle keep-alive connections kept per client.
    std::size_t max_idle_connections = 8;
    /// Sent as `User-Agent` with every request and upgrade; the default names this version of lens.
    std::string user_agent = "lens-cpp/" LENS_VERSION_STRING " (+https://github.com/archetypeai)";
    /// The logging hook of the client and of every session and event stream made from
    /// this configuration (see lens/logger.hpp). Off by default; free when off.
    logger log;

    /// Defaults overridden by `ARCHETYPE_API_ENDPOINT` and `ARCHETYPE_API_KEY` when set.
    static config from_environment();
};

} // namespace lens
