/// \file
/// lens/backoff.hpp — exponential, capped, jittered reconnect and retry spacing.
///
/// Sans-I/O: the caller supplies the time and (optionally) the random source,
/// so the schedule is tested without clocks or sleeps.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

namespace lens {

/// Attempt n (0-based) waits `min(max, initial * multiplier^n) * (1 - jitter * u)`,
/// rounded down to whole milliseconds, with u uniform in [0, 1).
struct backoff_policy {
    /// The delay before the first retry (attempt 0), before jitter.
    std::chrono::milliseconds initial = std::chrono::milliseconds(200);
    /// The cap, applied before jitter: no delay ever exceeds it, however many attempts.
    std::chrono::milliseconds max = std::chrono::seconds(30);
    /// Growth factor from one delay to the next (1 gives a constant delay).
    double multiplier = 2.0;
    /// Fraction of each delay that is randomised: delay * (1 - jitter * u), u uniform in [0, 1).
    /// 0 gives the exact exponential schedule; 1 gives "full jitter". Clamped to [0, 1].
    double jitter = 0.5;
    /// A connection that stayed up this long resets the schedule to `initial`.
    std::chrono::milliseconds reset_after = std::chrono::seconds(30);
    /// Attempts before giving up; 0 means unlimited.
    unsigned max_attempts = 0;
    /// The longest server hint (`Retry-After`, SSE `retry:`) honoured; longer hints are
    /// clamped to it (see lens/retry.hpp).
    std::chrono::milliseconds max_server_delay = std::chrono::seconds(60);

    /// The delay before attempt `attempt + 1` (0-based `attempt`) for the jitter sample
    /// `u` (clamped to [0, 1)): the schedule above as a pure function.
    std::chrono::milliseconds delay(unsigned attempt, double u) const noexcept;
};

/// The stateful form of a backoff_policy: counts attempts, and resets the schedule
/// after a connection that stayed up `reset_after` (reconnect loops use it; one-shot
/// decisions use the pure `lens::decide_retry`).
class backoff {
public:
    /// The clock of `connected()` and `disconnected()`.
    using clock = std::chrono::steady_clock;
    /// Returns a uniform value in [0, 1); values outside it are clamped.
    using random_source = std::function<double()>;

    /// Without a random source, a generator seeded from `std::random_device` is used.
    explicit backoff(backoff_policy policy = {}, random_source random = {});

    /// The delay before the next attempt, and counts the attempt; nullopt (without
    /// counting) once `max_attempts` delays were handed out.
    std::optional<std::chrono::milliseconds> next_delay();

    /// Record that a connection was established at `now`.
    void connected(clock::time_point now);
    /// Record that the connection was lost at `now`; resets the schedule when it had been
    /// up for at least `reset_after`. A connection that drops sooner keeps backing off, so
    /// a server that accepts and immediately closes is not hammered.
    void disconnected(clock::time_point now);
    /// A jitter sample from the random source, for `decide_retry` (lens/retry.hpp).
    double sample() { return policy_.jitter > 0 ? random_() : 0.0; }
    /// Count an attempt handed out by `decide_retry` (saturating).
    void count_attempt() noexcept { if (attempts_ != ~0u) ++attempts_; }
    /// Start over from `initial`.
    void reset() noexcept { attempts_ = 0; }

    /// Attempts counted since construction or the last reset.
    unsigned attempts() const noexcept { return attempts_; }
    /// The policy this backoff follows.
    const backoff_policy& policy() const noexcept { return policy_; }

private:
    backoff_policy policy_;
    random_source random_;
    unsigned attempts_ = 0;
    std::optional<clock::time_point> connected_at_;
};

} // namespace lens
