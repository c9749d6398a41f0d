// A latency histogram for `lens bench`: log-linear buckets (HdrHistogram's layout), so
// that any percentile is within 1% of the exact one, and so that histograms recorded by
// several threads, processes or hosts add up exactly (merge sums bucket counts).
#pragma once

#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lens::cli {

/// Counts of non-negative integer values (`lens bench` records nanoseconds) in buckets
/// whose width is at most 1/128 of their lower bound: values below 256 have a bucket each;
/// each range [2^e, 2^(e+1)) above is split into 128 equal sub-buckets. A percentile is
/// reported as the middle of its bucket (clamped to the exact min and max), within 1/256
/// of the true value. Not thread-safe: one per thread, merged at the end.
class histogram {
public:
    /// Sub-buckets per power of two: the precision (relative bucket width 1/128).
    static constexpr unsigned sub_buckets = 128;
    /// Buckets in all: 256 exact ones, then 128 for each power of two from 2^8 to 2^63.
    static constexpr std::size_t bucket_count = 2 * sub_buckets + (63 - 7) * sub_buckets;

    histogram();

    /// Counts one value.
    void record(std::uint64_t value) noexcept;
    /// Adds every count of `other` (of any origin: the layout is fixed).
    void merge(const histogram& other) noexcept;

    /// The values recorded.
    std::uint64_t count() const noexcept { return count_; }
    /// The largest value recorded, exactly (0 when empty).
    std::uint64_t max() const noexcept { return max_; }
    /// The smallest value recorded, exactly (0 when empty).
    std::uint64_t min() const noexcept { return count_ == 0 ? 0 : min_; }
    /// The value below or at which `p` percent of the values lie (p in [0, 100], clamped):
    /// the value of rank ceil(p/100 * count) (at least 1), to within 1/256. 0 when empty.
    double percentile(double p) const noexcept;

    /// The bucket of `value`.
    static std::size_t bucket_of(std::uint64_t value) noexcept;
    /// The smallest value of bucket `index` (< bucket_count).
    static std::uint64_t lowest_of(std::size_t index) noexcept;
    /// The number of values bucket `index` spans.
    static std::uint64_t width_of(std::size_t index) noexcept;

    /// {"format":"lens-histogram","version":1,"sub_buckets":128,"count":N,"min":..,"max":..,
    ///  "buckets":[[index,count],...]} (only the buckets that are not empty).
    boost::json::value to_json() const;
    /// The histogram `to_json` wrote; throws std::invalid_argument naming what is wrong
    /// (not an object, another format or version, a bucket out of range, counts that do
    /// not add up, min/max outside their buckets).
    static histogram from_json(const boost::json::value& v);

private:
    std::vector<std::uint64_t> counts_;
    std::uint64_t count_ = 0;
    std::uint64_t min_ = UINT64_MAX;
    std::uint64_t max_ = 0;
};

} // namespace lens::cli
