// Unit tests of the latency histogram of `lens bench` (src/cli/histogram.cpp): percentiles
// within 1% of an exact sort, merging equal to recording everything in one, the JSON form
// round-tripping and bad JSON rejected with a message that says what is wrong.
#include "cli/histogram.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace json = boost::json;
using lens::cli::histogram;

namespace {

/// The exact value of rank ceil(p/100 * n) (at least 1) of sorted `v`.
double exact_percentile(const std::vector<std::uint64_t>& sorted, double p)
{
    const auto n = sorted.size();
    auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(n)));
    rank = std::clamp<std::size_t>(rank, 1, n);
    return static_cast<double>(sorted[rank - 1]);
}

/// Latency-like values over many orders of magnitude: log-uniform from 1 to 2^40.
std::vector<std::uint64_t> random_values(std::size_t n, unsigned seed)
{
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> exponent(0.0, 40.0);
    std::vector<std::uint64_t> v(n);
    for (auto& x : v)
        x = static_cast<std::uint64_t>(std::exp2(exponent(rng)));
    return v;
}

std::string rejection(const std::string& text)
{
    try {
        histogram::from_json(json::parse(text));
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "accepted";
}

} // namespace

TEST_CASE("histogram: buckets tile the values and are at most 1/128 wide")
{
    CHECK(histogram::bucket_of(0) == 0);
    CHECK(histogram::bucket_of(255) == 255);
    CHECK(histogram::bucket_of(256) == 256);
    CHECK(histogram::bucket_of(UINT64_MAX) == histogram::bucket_count - 1);
    for (std::size_t i = 0; i + 1 < histogram::bucket_count; ++i) {
        INFO("bucket " << i);
        REQUIRE(histogram::lowest_of(i) + histogram::width_of(i) == histogram::lowest_of(i + 1));
        REQUIRE(histogram::bucket_of(histogram::lowest_of(i)) == i);
        REQUIRE(histogram::bucket_of(histogram::lowest_of(i + 1) - 1) == i);
        if (i >= 256)
            REQUIRE(histogram::width_of(i) * 128 <= histogram::lowest_of(i));
    }
}

TEST_CASE("histogram: percentiles are within 1 percent of an exact sort")
{
    for (unsigned seed : {1u, 2u, 3u}) {
        auto values = random_values(20000, seed);
        histogram h;
        for (auto v : values)
            h.record(v);
        std::sort(values.begin(), values.end());
        CHECK(h.count() == values.size());
        CHECK(h.min() == values.front());
        CHECK(h.max() == values.back());
        for (double p : {0.0, 1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
            const double exact = exact_percentile(values, p);
            const double got = h.percentile(p);
            INFO("seed " << seed << " p" << p << ": exact " << exact << ", histogram " << got);
            CHECK(std::abs(got - exact) <= 0.01 * exact);
        }
    }
}

TEST_CASE("histogram: small values are exact and an empty histogram reports zeros")
{
    histogram h;
    CHECK(h.percentile(50) == 0);
    CHECK(h.max() == 0);
    CHECK(h.min() == 0);
    for (std::uint64_t v = 1; v <= 100; ++v)
        h.record(v);
    CHECK(h.percentile(50) == 50);
    CHECK(h.percentile(99) == 99);
    CHECK(h.percentile(100) == 100);
    CHECK(h.percentile(0) == 1);
}

TEST_CASE("histogram: merging equals recording everything in one")
{
    const auto values = random_values(30000, 7);
    histogram all, parts[3];
    for (std::size_t i = 0; i < values.size(); ++i) {
        all.record(values[i]);
        parts[i % 3].record(values[i]);
    }
    histogram merged;
    for (auto& p : parts)
        merged.merge(p);
    CHECK(json::serialize(merged.to_json()) == json::serialize(all.to_json()));
    for (double p : {50.0, 90.0, 99.0, 99.9})
        CHECK(merged.percentile(p) == all.percentile(p));
    histogram empty;
    merged.merge(empty);
    CHECK(merged.min() == all.min());
    CHECK(merged.count() == all.count());
}

TEST_CASE("histogram: the JSON form round-trips")
{
    histogram h;
    for (auto v : random_values(5000, 11))
        h.record(v);
    h.record(0);
    h.record(UINT64_MAX);
    const std::string text = json::serialize(h.to_json());
    const histogram back = histogram::from_json(json::parse(text));
    CHECK(json::serialize(back.to_json()) == text);
    CHECK(back.count() == h.count());
    CHECK(back.max() == UINT64_MAX);
    CHECK(back.min() == 0);
    CHECK(back.percentile(99) == h.percentile(99));

    const histogram empty = histogram::from_json(histogram().to_json());
    CHECK(empty.count() == 0);
}

TEST_CASE("histogram: bad JSON is rejected with a message naming the problem")
{
    const std::string head = R"({"format":"lens-histogram","version":1,"sub_buckets":128,)";
    CHECK(rejection("[1,2]").find("not a JSON object") != std::string::npos);
    CHECK(rejection(R"({"format":"other"})").find("format") != std::string::npos);
    CHECK(rejection(R"({"format":"lens-histogram","version":2,"sub_buckets":128})").find("version") !=
          std::string::npos);
    CHECK(rejection(R"({"format":"lens-histogram","version":1,"sub_buckets":64})").find("sub_buckets") !=
          std::string::npos);
    CHECK(rejection(head + R"("count":1,"min":5,"max":5})").find("\"buckets\"") != std::string::npos);
    CHECK(rejection(head + R"("count":1,"min":5,"max":5,"buckets":[[5]]})").find("bucket 0 is not [index, count]") !=
          std::string::npos);
    CHECK(rejection(head + R"("count":1,"min":5,"max":5,"buckets":[[99999,1]]})").find("out of range") !=
          std::string::npos);
    CHECK(rejection(head + R"("count":1,"min":5,"max":5,"buckets":[[5,-1]]})").find("non-negative") !=
          std::string::npos);
    CHECK(rejection(head + R"("count":2,"min":5,"max":5,"buckets":[[5,1]]})").find("sum of the buckets") !=
          std::string::npos);
    CHECK(rejection(head + R"("count":1,"min":6,"max":6,"buckets":[[5,1]]})").find("\"min\"") != std::string::npos);
    CHECK(rejection(head + R"("count":"1","min":5,"max":5,"buckets":[[5,1]]})").find("\"count\"") !=
          std::string::npos);
    CHECK(rejection(head + R"("count":1,"min":5,"max":5,"buckets":[[5,1]]})") == "accepted");
}
