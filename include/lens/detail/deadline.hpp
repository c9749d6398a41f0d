// lens/detail/deadline.hpp — saturating time arithmetic.
//
// `now + timeout` overflows for large timeouts (a `--timeout 1e10` became a deadline
// in the past; `milliseconds::max()` is undefined behaviour in steady_clock's
// nanoseconds). Every deadline and every "wait until" in lens is computed here:
// sums saturate at `time_point::max()` (never), negative or NaN durations count as zero.
#pragma once

#include <chrono>
#include <cmath>
#include <ratio>

namespace lens::detail {

using clock = std::chrono::steady_clock;

/// `d` in seconds as a double: exact enough to decide saturation for any representation.
template <class Rep, class Period>
constexpr double seconds_of(std::chrono::duration<Rep, Period> d) noexcept
{
    return static_cast<double>(d.count()) * Period::num / Period::den;
}

/// `now + d`, saturating at `clock::time_point::max()`; a negative or NaN `d` gives `now`.
template <class Rep, class Period>
clock::time_point deadline_after(clock::time_point now, std::chrono::duration<Rep, Period> d) noexcept
{
    const double s = seconds_of(d);
    if (!(s > 0)) // negative, zero or NaN
        return now;
    const double headroom = seconds_of(clock::time_point::max() - now);
    // One second of margin keeps the conversion below clear of rounding at the boundary.
    if (s >= headroom - 1.0)
        return clock::time_point::max();
    return now + std::chrono::duration_cast<clock::duration>(d);
}

/// `d` as whole milliseconds, saturating at `milliseconds::max()`; negative or NaN is 0.
template <class Rep, class Period>
std::chrono::milliseconds saturating_ms(std::chrono::duration<Rep, Period> d) noexcept
{
    using ms = std::chrono::milliseconds;
    const double s = seconds_of(d);
    if (!(s > 0))
        return ms::zero();
    if (s >= seconds_of(ms::max()) - 1.0)
        return ms::max();
    return std::chrono::duration_cast<ms>(d);
}

/// `a + b` for non-negative millisecond counts, saturating at `milliseconds::max()`.
inline std::chrono::milliseconds saturating_add(std::chrono::milliseconds a, std::chrono::milliseconds b) noexcept
{
    if (a.count() < 0) a = a.zero();
    if (b.count() < 0) b = b.zero();
    if (a > std::chrono::milliseconds::max() - b)
        return std::chrono::milliseconds::max();
    return a + b;
}

} // namespace lens::detail
