// Helpers shared by the unit tests: exact backoff policies, text counting and deep JSON.
#pragma once

#include <lens/backoff.hpp>

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <string_view>
#include <utility>

namespace lens::test {

/// A backoff policy without jitter, so that every delay is an exact value.
inline lens::backoff_policy exact_backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max,
                                          double multiplier = 2.0)
{
    lens::backoff_policy p;
    p.initial = initial;
    p.max = max;
    p.multiplier = multiplier;
    p.jitter = 0;
    return p;
}

/// How many times `what` occurs in `text`, without overlaps.
inline std::size_t occurrences(std::string_view text, std::string_view what)
{
    std::size_t n = 0;
    for (auto pos = text.find(what); pos != std::string_view::npos; pos = text.find(what, pos + what.size()))
        ++n;
    return n;
}

/// A value nested `depth` arrays deep around `leaf`, built without recursion.
inline boost::json::value nested_arrays(std::size_t depth, boost::json::value leaf)
{
    for (std::size_t i = 0; i < depth; ++i) {
        boost::json::array a;
        a.emplace_back(std::move(leaf));
        leaf = std::move(a);
    }
    return leaf;
}

/// Destroys a deeply nested value one level at a time: value's destructor recurses, and a
/// value nested deeper than the stack allows would crash the test rather than fail it.
inline void dismantle(boost::json::value& v)
{
    for (;;) {
        boost::json::value inner;
        if (auto* a = v.if_array(); a && !a->empty())
            inner = std::move(a->back());
        else if (auto* o = v.if_object(); o && !o->empty())
            inner = std::move(o->begin()->value());
        else
            return;
        v = std::move(inner);
    }
}

} // namespace lens::test
