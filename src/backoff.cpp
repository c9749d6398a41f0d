// backoff.cpp — exponential, capped, jittered spacing of retries and reconnects.
#include <lens/backoff.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>

namespace lens {

namespace {

backoff::random_source default_random()
{
    std::uint_fast32_t seed;
    try {
        seed = std::random_device{}();
    } catch (...) {
        // No entropy source: the clock still keeps many clients from retrying in step.
        seed = static_cast<std::uint_fast32_t>(
            std::chrono::steady_clock::now().time_since_epoch().count());
    }
    return [engine = std::minstd_rand(seed)]() mutable {
        return std::uniform_real_distribution<double>(0.0, 1.0)(engine);
    };
}

} // namespace

backoff::backoff(backoff_policy policy, random_source random)
    : policy_(std::move(policy)), random_(random ? std::move(random) : default_random())
{
}

std::chrono::milliseconds backoff_policy::delay(unsigned attempt, double u) const noexcept
{
    using rep = std::chrono::milliseconds::rep;
    const rep cap_ms = std::max<rep>(0, max.count());
    const double cap = static_cast<double>(cap_ms);
    const double first = static_cast<double>(std::max<rep>(0, initial.count()));

    // In floating point, where overflow becomes infinity instead of wrapping; `!(d < cap)`
    // also catches NaN from a nonsensical multiplier.
    double d = first * std::pow(multiplier, static_cast<double>(attempt));
    if (!(d < cap))
        d = cap;
    if (d < 0) // a negative multiplier
        d = 0;

    const double j = std::clamp(std::isnan(jitter) ? 0.0 : jitter, 0.0, 1.0);
    if (j > 0) {
        if (!(u >= 0)) // negative or NaN
            u = 0;
        u = std::min(u, std::nextafter(1.0, 0.0));
        d *= 1 - j * u;
    }
    // The cap itself is returned as given: converting it back from a double could round
    // past the largest representable count.
    if (!(d < cap))
        return std::chrono::milliseconds(cap_ms);
    return std::chrono::milliseconds(static_cast<rep>(std::floor(d)));
}

std::optional<std::chrono::milliseconds> backoff::next_delay()
{
    if (policy_.max_attempts != 0 && attempts_ >= policy_.max_attempts)
        return std::nullopt;
    const auto d = policy_.delay(attempts_, policy_.jitter > 0 ? random_() : 0.0);
    // Saturate: wrapping to 0 would restart the schedule at `initial`.
    if (attempts_ != std::numeric_limits<unsigned>::max())
        ++attempts_;
    return d;
}

void backoff::connected(clock::time_point now)
{
    connected_at_ = now;
}

void backoff::disconnected(clock::time_point now)
{
    if (connected_at_ && now - *connected_at_ >= policy_.reset_after)
        attempts_ = 0;
    connected_at_.reset();
}

} // namespace lens
