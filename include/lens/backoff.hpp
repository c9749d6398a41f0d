// lens/backoff.hpp — exponential, capped, jittered reconnect and retry spacing.
//
// Sans-I/O: the caller supplies the time and (optionally) the random source,
// so the schedule is tested without clocks or sleeps.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

namespace lens {

struct backoff_policy {
    std::chrono::milliseconds initial = std::chrono::milliseconds(200);
    std::chrono::milliseconds max = std::chrono::seconds(30);
    double multiplier = 2.0;
    /// Fraction of each delay that is randomised: delay * (1 - jitter * u), u uniform in [0, 1).
    /// 0 gives the exact exponential schedule; 1 gives "full jitter".
    double jitter = 0.5;
    /// A connection that stayed up this long resets the schedule to `initial`.
    std::chrono::milliseconds reset_after = std::chrono::seconds(30);
    /// Attempts before giving up; 0 means unlimited.
    unsigned max_attempts = 0;
};

class backoff {
public:
    using clock = std::chrono::steady_clock;
    /// Returns a uniform value in [0, 1).
    using random_source = std::function<double()>;

    explicit backoff(backoff_policy policy = {}, random_source random = {});

    /// The delay before the next attempt, or nullopt when the attempt limit is reached.
    std::optional<std::chrono::milliseconds> next_delay();

    /// Record that a connection was established at `now`.
    void connected(clock::time_point now);
    /// Record that the connection was lost at `now`; resets the schedule if it was stable.
    void disconnected(clock::time_point now);
    /// Start over from `initial`.
    void reset() noexcept { attempts_ = 0; }

    unsigned attempts() const noexcept { return attempts_; }
    const backoff_policy& policy() const noexcept { return policy_; }

private:
    backoff_policy policy_;
    random_source random_;
    unsigned attempts_ = 0;
    std::optional<clock::time_point> connected_at_;
};

} // namespace lens
