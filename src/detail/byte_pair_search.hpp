// A substring pre-filter: the places in a text where one byte stands a given distance
// before another, found sixteen places at a time.
//
// Every WebSocket frame and SSE event is searched for a few rare things: the API key,
// an `api_key` member, the end of the stream. Each is found by two of its bytes at a
// fixed distance (the key's first and last, the `_` and `k` of `api_key`), and only the
// rare places where both stand are compared in full. Sixteen places are tested at once
// with GCC's vector extensions (SSE2 on x86-64, NEON on AArch64, plain code elsewhere),
// so a search costs about the same whatever the text and the key: a skip table
// (Boyer-Moore-Horspool) skips little through JSON that shares letters with the key,
// and its table is one more thing to fall out of the cache between two events.
#pragma once

#include <bit>
#include <cstddef>
#include <cstring>
#include <string_view>

namespace lens::detail {

/// Two bytes a fixed distance apart: `first` at some place `i`, and `second` at
/// `i + distance` once OR-ed with `fold_second` (0x20 folds ASCII letters to lower case,
/// when `second` is a lower-case letter; 0 compares exactly).
struct byte_pair {
    unsigned char first;
    unsigned char second;
    std::size_t distance;
    unsigned char fold_second = 0;
};

/// The first place `i` of `text` where `pair` stands and `confirm(i)` returns true (it is
/// asked only at such places, in increasing order, and `i + pair.distance < text.size()`
/// always holds); `std::string_view::npos` when there is none.
template <class Confirm>
std::size_t find_byte_pair(std::string_view text, const byte_pair& pair, Confirm&& confirm)
{
    if (pair.distance >= text.size())
        return std::string_view::npos;
    const std::size_t places = text.size() - pair.distance; // i < places
    const char* s = text.data();
    std::size_t i = 0;
#if defined(__GNUC__)
    typedef unsigned char bytes16 __attribute__((vector_size(16)));
    typedef unsigned long long words2 __attribute__((vector_size(16)));
    const bytes16 first = bytes16{} + pair.first;
    const bytes16 second = bytes16{} + pair.second;
    const bytes16 fold = bytes16{} + pair.fold_second;
    // Each block tests sixteen places; the last block ends at the last place, overlapping
    // the one before it, whose places it skips (`from`): no place is offered twice, and
    // only texts shorter than a block and the distance are left to the byte loop.
    auto block = [&](std::size_t at, std::size_t from) -> std::size_t {
        bytes16 a, b;
        std::memcpy(&a, s + at, 16); // unaligned loads
        std::memcpy(&b, s + at + pair.distance, 16);
        const bytes16 hits = (a == first) & ((b | fold) == second); // 0xff where both stand
        const words2 w = std::bit_cast<words2>(hits);
        if ((w[0] | w[1]) != 0)
            for (std::size_t j = from; j < 16; ++j)
                if (hits[j] && confirm(at + j))
                    return at + j;
        return std::string_view::npos;
    };
    if (places >= 16) {
        for (; i + 16 <= places; i += 16)
            if (const auto hit = block(i, 0); hit != std::string_view::npos)
                return hit;
        return i == places ? std::string_view::npos : block(places - 16, 16 - (places - i));
    }
#endif
    for (; i < places; ++i)
        if (static_cast<unsigned char>(s[i]) == pair.first &&
            (static_cast<unsigned char>(s[i + pair.distance]) | pair.fold_second) == pair.second && confirm(i))
            return i;
    return std::string_view::npos;
}

/// The first place of `word` in `text` (std::string_view::npos when there is none),
/// found by its bytes at `first` and `second` (`first <= second`), then compared in full.
/// With `fold`, the letters of `word`, which must be lower case, match either case in
/// `text`; its byte at `first` must then not be a letter.
inline std::size_t find_word(std::string_view text, std::string_view word, std::size_t first, std::size_t second,
                             bool fold = false) noexcept
{
    const auto is_lower = [](unsigned char c) { return c >= 'a' && c <= 'z'; };
    const auto w = [&](std::size_t i) { return static_cast<unsigned char>(word[i]); };
    const byte_pair pair{w(first), w(second), second - first,
                         static_cast<unsigned char>(fold && is_lower(w(second)) ? 0x20 : 0)};
    const std::size_t tail = word.size() - first; // bytes from the first of the pair to the word's end
    const std::size_t at = find_byte_pair(text, pair, [&](std::size_t i) noexcept {
        if (i < first || text.size() - i < tail)
            return false;
        const char* start = text.data() + i - first;
        if (!fold)
            return std::memcmp(start, word.data(), word.size()) == 0;
        for (std::size_t k = 0; k < word.size(); ++k) {
            const auto c = static_cast<unsigned char>(start[k]);
            if ((is_lower(w(k)) ? (c | 0x20) : c) != w(k))
                return false;
        }
        return true;
    });
    return at == std::string_view::npos ? at : at - first;
}

} // namespace lens::detail
