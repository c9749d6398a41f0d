#include "cli/histogram.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

namespace lens::cli {

namespace json = boost::json;

namespace {

constexpr std::size_t exact_buckets = 2 * histogram::sub_buckets; // values 0..255, one bucket each
constexpr unsigned first_exponent = 8;                              // 2^8 = 256: the first split range

[[noreturn]] void bad(const std::string& what)
{
    throw std::invalid_argument("histogram: " + what);
}

/// `o[key]` as a non-negative integer; throws naming the key otherwise.
std::uint64_t unsigned_field(const json::object& o, const char* key)
{
    const json::value* v = o.if_contains(key);
    if (!v)
        bad(std::string("no \"") + key + "\"");
    if (v->is_uint64())
        return v->get_uint64();
    if (v->is_int64() && v->get_int64() >= 0)
        return static_cast<std::uint64_t>(v->get_int64());
    bad(std::string("\"") + key + "\" is not a non-negative integer");
}

std::uint64_t unsigned_value(const json::value& v, const std::string& where)
{
    if (v.is_uint64())
        return v.get_uint64();
    if (v.is_int64() && v.get_int64() >= 0)
        return static_cast<std::uint64_t>(v.get_int64());
    bad(where + " is not a non-negative integer");
}

} // namespace

histogram::histogram() : counts_(bucket_count, 0) {}

std::size_t histogram::bucket_of(std::uint64_t value) noexcept
{
    if (value < exact_buckets)
        return static_cast<std::size_t>(value);
    const unsigned exponent = 63u - static_cast<unsigned>(std::countl_zero(value)); // >= 8
    const unsigned shift = exponent - 7;                                              // sub in [128, 256)
    const std::uint64_t sub = value >> shift;
    return exact_buckets + (exponent - first_exponent) * sub_buckets + static_cast<std::size_t>(sub - sub_buckets);
}

std::uint64_t histogram::lowest_of(std::size_t index) noexcept
{
    if (index < exact_buckets)
        return index;
    const std::size_t j = index - exact_buckets;
    const unsigned exponent = first_exponent + static_cast<unsigned>(j / sub_buckets);
    const std::uint64_t sub = sub_buckets + j % sub_buckets;
    return sub << (exponent - 7);
}

std::uint64_t histogram::width_of(std::size_t index) noexcept
{
    if (index < exact_buckets)
        return 1;
    const unsigned exponent = first_exponent + static_cast<unsigned>((index - exact_buckets) / sub_buckets);
    return std::uint64_t{1} << (exponent - 7);
}

void histogram::record(std::uint64_t value) noexcept
{
    ++counts_[bucket_of(value)];
    ++count_;
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
}

void histogram::merge(const histogram& other) noexcept
{
    for (std::size_t i = 0; i < bucket_count; ++i)
        counts_[i] += other.counts_[i];
    count_ += other.count_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
}

double histogram::percentile(double p) const noexcept
{
    if (count_ == 0)
        return 0;
    if (!(p >= 0)) // NaN too
        p = 0;
    p = std::min(p, 100.0);
    const double wanted = std::ceil(p / 100.0 * static_cast<double>(count_));
    const std::uint64_t rank = std::max<std::uint64_t>(1, std::min<std::uint64_t>(count_, static_cast<std::uint64_t>(wanted)));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
        seen += counts_[i];
        if (seen >= rank) {
            // The middle of the bucket: at most half a bucket (1/256 of the value) off.
            const double middle = static_cast<double>(lowest_of(i)) + static_cast<double>(width_of(i) - 1) / 2.0;
            return std::clamp(middle, static_cast<double>(min()), static_cast<double>(max_));
        }
    }
    return static_cast<double>(max_); // unreachable: the counts add up to count_
}

json::value histogram::to_json() const
{
    json::array buckets;
    for (std::size_t i = 0; i < bucket_count; ++i)
        if (counts_[i] != 0)
            buckets.push_back(json::array{i, counts_[i]});
    json::object o;
    o["format"] = "lens-histogram";
    o["version"] = 1;
    o["sub_buckets"] = sub_buckets;
    o["count"] = count_;
    o["min"] = min();
    o["max"] = max_;
    o["buckets"] = std::move(buckets);
    return o;
}

histogram histogram::from_json(const json::value& v)
{
    const json::object* o = v.if_object();
    if (!o)
        bad("not a JSON object");
    const json::value* format = o->if_contains("format");
    if (!format || !format->is_string() || format->get_string() != "lens-histogram")
        bad("\"format\" is not \"lens-histogram\"");
    if (unsigned_field(*o, "version") != 1)
        bad("unsupported \"version\" (this lens reads version 1)");
    if (unsigned_field(*o, "sub_buckets") != sub_buckets)
        bad("\"sub_buckets\" is not " + std::to_string(sub_buckets));
    const std::uint64_t count = unsigned_field(*o, "count");
    const std::uint64_t min = unsigned_field(*o, "min");
    const std::uint64_t max = unsigned_field(*o, "max");
    const json::value* buckets = o->if_contains("buckets");
    if (!buckets || !buckets->is_array())
        bad("\"buckets\" is not an array");

    histogram h;
    std::uint64_t total = 0;
    std::size_t n = 0;
    for (const json::value& b : buckets->get_array()) {
        const std::string where = "bucket " + std::to_string(n++);
        const json::array* pair = b.if_array();
        if (!pair || pair->size() != 2)
            bad(where + " is not [index, count]");
        const std::uint64_t index = unsigned_value((*pair)[0], where + "'s index");
        const std::uint64_t c = unsigned_value((*pair)[1], where + "'s count");
        if (index >= bucket_count)
            bad(where + "'s index " + std::to_string(index) + " is out of range (< " + std::to_string(bucket_count) + ")");
        if (c > UINT64_MAX - total)
            bad("the counts overflow");
        h.counts_[index] += c;
        total += c;
    }
    if (total != count)
        bad("\"count\" " + std::to_string(count) + " is not the sum of the buckets (" + std::to_string(total) + ")");
    if (count > 0) {
        if (min > max)
            bad("\"min\" is above \"max\"");
        // min and max are exact; they must lie in the first and last non-empty buckets.
        const auto first = std::find_if(h.counts_.begin(), h.counts_.end(), [](std::uint64_t c) { return c != 0; });
        const auto last = std::find_if(h.counts_.rbegin(), h.counts_.rend(), [](std::uint64_t c) { return c != 0; });
        if (bucket_of(min) != static_cast<std::size_t>(first - h.counts_.begin()))
            bad("\"min\" is not in the first non-empty bucket");
        if (bucket_of(max) != static_cast<std::size_t>(h.counts_.rend() - last - 1))
            bad("\"max\" is not in the last non-empty bucket");
        h.min_ = min;
        h.max_ = max;
    } else if (min != 0 || max != 0) {
        bad("an empty histogram with a \"min\" or \"max\"");
    }
    h.count_ = count;
    return h;
}

} // namespace lens::cli
