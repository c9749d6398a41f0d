// The query lens's answers: deterministic functions of the template, the focus
// and the image bytes, so that tests can check every reply's content.
#include <lens/emulator.hpp>

#include <boost/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lens::emulator {
namespace json = boost::json;

namespace {

std::uint64_t fnv1a64(std::string_view bytes)
{
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

/// A well-mixed 64-bit value per box (splitmix64).
std::uint64_t mix(std::uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

std::string_view trim(std::string_view s)
{
    auto junk = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '"' || c == '\''; };
    while (!s.empty() && junk(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && junk(s.back()))
        s.remove_suffix(1);
    return s;
}

/// The labels of a bbox focus such as "Detect objects. Input: [person, car]".
std::vector<std::string> labels_of(std::string_view focus)
{
    std::vector<std::string> labels;
    auto input = focus.find("Input:");
    if (input != std::string_view::npos) {
        auto open = focus.find('[', input);
        auto close = open == std::string_view::npos ? open : focus.find(']', open);
        if (close != std::string_view::npos) {
            std::string_view list = focus.substr(open + 1, close - open - 1);
            while (!list.empty()) {
                auto comma = list.find(',');
                std::string_view item = trim(list.substr(0, comma));
                if (!item.empty())
                    labels.emplace_back(item);
                if (comma == std::string_view::npos)
                    break;
                list.remove_prefix(comma + 1);
            }
        }
    }
    if (labels.empty())
        labels.emplace_back("object");
    return labels;
}

} // namespace

json::value expected_query_answer(std::string_view template_name, std::string_view focus, std::string_view image_bytes)
{
    const std::uint64_t h = fnv1a64(image_bytes);
    if (template_name == "image_bbox_template_task") {
        std::vector<std::string> labels = labels_of(focus);
        json::array boxes;
        const std::size_t count = 1 + h % 3;
        for (std::size_t i = 0; i < count; ++i) {
            std::uint64_t r = mix(h + i);
            std::int64_t x1 = static_cast<std::int64_t>(r % 500);
            std::int64_t y1 = static_cast<std::int64_t>((r >> 16) % 500);
            std::int64_t x2 = x1 + 10 + static_cast<std::int64_t>((r >> 32) % 300);
            std::int64_t y2 = y1 + 10 + static_cast<std::int64_t>((r >> 48) % 300);
            boxes.push_back(json::object{{"label", labels[(r >> 8) % labels.size()]},
                                         {"box", json::array{x1, y1, x2, y2}}});
        }
        return boxes;
    }
    // image_qa_template_task, and any other template: a text answer.
    static constexpr char digits[] = "0123456789abcdef";
    std::string hex(16, '0');
    for (int i = 0; i < 16; ++i)
        hex[static_cast<std::size_t>(i)] = digits[(h >> (60 - 4 * i)) & 15];
    return json::string(std::string(focus) + " \u2014 image " + hex + " (" + std::to_string(image_bytes.size()) +
                        " bytes)");
}

} // namespace lens::emulator
