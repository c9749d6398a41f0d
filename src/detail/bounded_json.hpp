// JSON parsing with a memory budget.
//
// A reply's size in bytes does not bound the memory its parsed tree takes:
// `[{},{},...]` is 3 bytes per object and at least 16 bytes per value once parsed,
// plus the parser's own stack. REST replies are parsed with a budget of allocated
// bytes; exceeding it is errc::body_too_large, never an unbounded allocation.
#pragma once

#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <string_view>

namespace lens::detail {

/// Parses `text`, allocating at most `budget` bytes. `ec` is set to the JSON error, or to
/// errc::body_too_large when the budget ran out. The result uses the default storage.
boost::json::value parse_bounded(std::string_view text, std::size_t budget, boost::system::error_code& ec);

} // namespace lens::detail
