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

std::optional<std::chrono::milliseconds> backoff::next_delay()
{
    if (policy_.max_attempts != 0 && attempts_ >= policy_.max_attempts)
        return std::nullopt;

    using rep = std::chrono::milliseconds::rep;
    const rep cap_ms = std::max<rep>(0, policy_.max.count());
    const double cap = static_cast<double>(cap_ms);
    const double initial = static_cast<double>(std::max<rep>(0, policy_.initial.count()));

    // In floating point, where overflow becomes infinity instead of wrapping; `!(d < cap)`
    // also catches NaN from a nonsensical multiplier.
    double delay = initial * std::pow(policy_.multiplier, static_cast<double>(attempts_));
    if (!(delay < cap))
        delay = cap;
    if (delay < 0)  // a negative multiplier
        delay = 0;

    const double jitter = std::clamp(std::isnan(policy_.jitter) ? 0.0 : policy_.jitter, 0.0, 1.0);
    if (jitter > 0) {
        double u = random_();
        if (!(u >= 0))  // negative or NaN
            u = 0;
        u = std::min(u, std::nextafter(1.0, 0.0));
        delay *= 1 - jitter * u;
    }

    // Saturate: wrapping to 0 would restart the schedule at `initial`.
    if (attempts_ != std::numeric_limits<unsigned>::max())
        ++attempts_;
    // The cap itself is returned as given: converting it back from a double could round
    // past the largest representable count.
    if (!(delay < cap))
        return std::chrono::milliseconds(cap_ms);
    return std::chrono::milliseconds(static_cast<rep>(std::floor(delay)));
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
