// Unit tests of the byte-pair pre-filter (detail/byte_pair_search.hpp): against a
// byte-at-a-time reference, at every place of texts longer and shorter than one vector
// of sixteen, with every distance the searches use, folded and not.
#include "detail/byte_pair_search.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

using lens::detail::byte_pair;
using lens::detail::find_byte_pair;

namespace {

/// Every place where `pair` stands, one byte at a time.
std::vector<std::size_t> places_of(std::string_view text, const byte_pair& pair)
{
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i + pair.distance < text.size(); ++i)
        if (static_cast<unsigned char>(text[i]) == pair.first &&
            (static_cast<unsigned char>(text[i + pair.distance]) | pair.fold_second) == pair.second)
            out.push_back(i);
    return out;
}

/// Every place find_byte_pair offers to `confirm`, in the order it offers them.
std::vector<std::size_t> offered(std::string_view text, const byte_pair& pair)
{
    std::vector<std::size_t> out;
    const auto found = find_byte_pair(text, pair, [&](std::size_t at) {
        REQUIRE(at + pair.distance < text.size());
        out.push_back(at);
        return false; // ask for the next
    });
    CHECK(found == std::string_view::npos);
    return out;
}

} // namespace

TEST_CASE("byte_pair_search: every place where the pair stands is offered, in order, and no other")
{
    std::mt19937 random(20261207);
    // A small alphabet, so that pairs stand often, next to each other and across the
    // sixteen-byte boundaries; 'K' and 'k' for the folded pair.
    const std::string alphabet = "ab.dkK_";
    for (const std::size_t distance : {0, 1, 2, 3, 8, 15, 16, 17, 31, 40}) {
        for (const byte_pair pair : {byte_pair{'a', 'b', distance}, byte_pair{'_', 'k', distance, 0x20},
                                     byte_pair{'.', 'd', distance}, byte_pair{'a', 'a', distance}}) {
            for (std::size_t size = 0; size <= 70; ++size) {
                std::string text(size, ' ');
                for (auto& c : text)
                    c = alphabet[random() % alphabet.size()];
                CAPTURE(distance);
                CAPTURE(pair.first);
                CAPTURE(text);
                CHECK(offered(text, pair) == places_of(text, pair));
            }
        }
    }
}

TEST_CASE("byte_pair_search: the first confirmed place is returned, whatever stands after it")
{
    //                       0123456789012345678901234567890123456789
    const std::string text = "xx a.b a.b xxxxxxxxxxxxxxxxxxxx a.b a.b";
    const byte_pair pair{'a', 'b', 2};
    CHECK(find_byte_pair(text, pair, [](std::size_t) { return true; }) == 3);
    CHECK(find_byte_pair(text, pair, [](std::size_t at) { return at > 3; }) == 7);
    CHECK(find_byte_pair(text, pair, [](std::size_t at) { return at > 16; }) == 32);
    CHECK(find_byte_pair(text, pair, [](std::size_t at) { return at > 32; }) == 36);
    CHECK(find_byte_pair(text, pair, [](std::size_t) { return false; }) == std::string_view::npos);
    // A pair whose second byte would stand past the end is never offered.
    CHECK(find_byte_pair("xxa", pair, [](std::size_t) { return true; }) == std::string_view::npos);
    CHECK(find_byte_pair("", byte_pair{'a', 'a', 0}, [](std::size_t) { return true; }) == std::string_view::npos);
}

TEST_CASE("byte_pair_search: bytes above 0x7f are compared as bytes")
{
    const std::string text = std::string(20, 'x') + "\xe9x\xff" + std::string(20, '\x80');
    CHECK(find_byte_pair(text, byte_pair{0xe9, 0xff, 2}, [](std::size_t) { return true; }) == 20);
    CHECK(find_byte_pair(text, byte_pair{0x80, 0x80, 19}, [](std::size_t) { return true; }) == 23);
    CHECK(find_byte_pair(text, byte_pair{0x80, 0x80, 20}, [](std::size_t) { return true; }) == std::string_view::npos);
}

TEST_CASE("byte_pair_search: find_word returns where the word starts, folded or exact, and never a word cut short")
{
    using lens::detail::find_word;
    for (std::size_t pad = 0; pad <= 40; ++pad) {
        CAPTURE(pad);
        const std::string filler(pad, 'e');
        CHECK(find_word(filler + "api_key" + filler, "api_key", 3, 4, true) == pad);
        CHECK(find_word(filler + "API_Key", "api_key", 3, 4, true) == pad);
        CHECK(find_word(filler + "API_Key", "api_key", 3, 4) == std::string_view::npos); // exact
        CHECK(find_word(filler + "api_ke", "api_key", 3, 4, true) == std::string_view::npos);
        CHECK(find_word("pi_key" + filler, "api_key", 3, 4, true) == std::string_view::npos);
        CHECK(find_word(filler + "sse.stream.end" + filler, "stream.end", 6, 9) == pad + 4);
        CHECK(find_word(filler + "x", "x", 0, 0) == pad);
    }
}
