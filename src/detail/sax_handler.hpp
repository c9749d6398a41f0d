// What the handlers of lens's streaming decoders share (json::basic_parser handlers that
// gather a few fields and build no tree: detail/event_decoding.hpp for SSE events,
// detail/frame_fields.hpp for WebSocket frames). Each gives up where a parsed tree must
// decide, by failing the parse.
#pragma once

#include <boost/json/error.hpp>
#include <boost/json/string_view.hpp>

#include <cstddef>
#include <cstring>
#include <string_view>

namespace lens::detail {

struct sax_handler_base {
    std::string_view input; ///< the text parsed

    // No limits of the handler's own: Boost's parse_options bound the depth, and the
    // caller the text.
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);

    bool on_document_begin(boost::json::error_code&) { return true; }
    bool on_comment_part(boost::json::string_view, boost::json::error_code&) { return true; }
    bool on_comment(boost::json::string_view, boost::json::error_code&) { return true; }
    bool on_number_part(boost::json::string_view, boost::json::error_code&) { return true; }

    /// Fails the parse: a tree decides this text.
    static bool give_up(boost::json::error_code& ec) noexcept
    {
        ec = boost::json::error::extra_data; // any error: the caller only sees that it gave up
        return false;
    }

    /// `s` is a piece of `input` (the parser handed it over in place, not unescaped into
    /// a buffer of its own): a view of it stays valid while the text does.
    bool inside_input(std::string_view s) const noexcept
    {
        return s.data() >= input.data() && s.data() + s.size() <= input.data() + input.size();
    }

    /// `k` spells `word`, for a `k` whose length the caller has matched already (a switch
    /// on the length): a comparison of known size, inlined. Every member name passes here.
    template <std::size_t N>
    static bool is(std::string_view k, const char (&word)[N]) noexcept
    {
        return std::memcmp(k.data(), word, N - 1) == 0;
    }
};

} // namespace lens::detail
