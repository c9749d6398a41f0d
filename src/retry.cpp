// retry.cpp — the one retry decision and the HTTP-status table (see lens/retry.hpp).
#include <lens/retry.hpp>

#include <lens/detail/deadline.hpp>

#include <algorithm>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>

namespace lens {

boost::system::error_code status_condition(unsigned status) noexcept
{
    if (status >= 200 && status < 300)
        return {};
    if (status == 401 || status == 403)
        return errc::unauthorized;
    if (status == 404)
        return errc::not_found;
    if (status == 408)
        return errc::timeout;
    if (status == 429)
        return errc::rate_limited;
    if (status >= 500 && status < 600)
        return errc::server_error;
    return errc::http_error;
}

bool is_retryable(const boost::system::error_code& ec) noexcept
{
    if (ec.category() == error_category()) {
        switch (static_cast<errc>(ec.value())) {
        case errc::timeout:
        case errc::connection_failed:
        case errc::connection_lost:
        case errc::rate_limited:
        case errc::server_error:
            return true;
        default:
            return false;
        }
    }
    // Raw transport errors, for users who meet them outside a lens::error.
    namespace ae = boost::asio::error;
    return ec == ae::connection_refused || ec == ae::connection_reset || ec == ae::connection_aborted ||
           ec == ae::eof || ec == ae::timed_out || ec == ae::network_unreachable || ec == ae::host_unreachable ||
           ec == ae::broken_pipe || ec == boost::beast::error::timeout ||
           ec == boost::asio::ssl::error::stream_truncated;
}

bool is_surely_unprocessed(const boost::system::error_code& ec) noexcept
{
    return ec == errc::rate_limited || ec == errc::connection_failed;
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value) noexcept
{
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
        value.remove_suffix(1);
    if (value.empty())
        return std::nullopt;
    constexpr auto limit = std::chrono::milliseconds::max().count() / 1000;
    std::chrono::milliseconds::rep seconds = 0;
    for (char c : value) {
        if (c < '0' || c > '9')
            return std::nullopt;
        if (seconds > (limit - (c - '0')) / 10)
            return std::chrono::milliseconds::max(); // saturate: clamped by the decision
        seconds = seconds * 10 + (c - '0');
    }
    return std::chrono::milliseconds(seconds * 1000);
}

std::chrono::milliseconds clamp_server_delay(const backoff_policy& policy, std::chrono::milliseconds hint) noexcept
{
    const auto ceiling = std::max(policy.max_server_delay, std::chrono::milliseconds::zero());
    if (hint.count() < 0)
        return std::chrono::milliseconds::zero();
    return std::min(hint, ceiling);
}

retry_decision decide_retry(const backoff_policy& policy, unsigned max_attempts, const attempt_failure& failure,
                            bool idempotent, unsigned attempts_made, std::chrono::steady_clock::time_point now,
                            std::chrono::steady_clock::time_point deadline, double u) noexcept
{
    // No code is a caller's bug: treat it as a lost connection, which is not "surely
    // unprocessed", so a sent request that changes state is never repeated because of it.
    const auto code = failure.code ? failure.code : make_error_code(errc::connection_lost);
    if (!is_retryable(code))
        return retry_decision::give_up(code);
    if (failure.request_sent && !idempotent && !is_surely_unprocessed(code))
        return retry_decision::give_up(code);
    if (max_attempts != 0 && attempts_made >= max_attempts)
        return retry_decision::give_up(code);
    if (now >= deadline)
        return retry_decision::give_up(code);
    // The schedule's delay; attempt n (1-based attempts made) waits delay(n - 1).
    auto wait = policy.delay(attempts_made == 0 ? 0 : attempts_made - 1, u);
    if (failure.server_delay)
        wait = std::max(wait, clamp_server_delay(policy, *failure.server_delay));
    const auto at = detail::deadline_after(now, wait);
    if (at >= deadline)
        return retry_decision::give_up(code); // waiting would outlive the deadline
    return retry_decision::retry_at(at);
}

} // namespace lens
