// bounding_boxes — find objects in an image (`model.query`, image_bbox_template_task).
//
// Shows: lens::query_request::bbox with the labels to look for ("Input: [a, b]"), and
// reading the reply tolerantly: an array of `{label, box: [x1, y1, x2, y2]}` objects.
// Several queries may be in flight on one session at once; here two images are asked
// about together with `&&` and each answer goes to its own caller.
//
// Run:  build/bin/example_bounding_boxes   (in-process emulator, built-in images)
//       ARCHETYPE_API_KEY=... build/bin/example_bounding_boxes --real --lens lns-... --image a.jpg --image2 b.jpg
//           [--labels "person, forklift"]
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/query.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/json/serialize.hpp>

#include <fstream>
#include <iostream>
#include <iterator>
#include <set>

using namespace boost::asio::experimental::awaitable_operators;

namespace {

struct box {
    std::string label;
    double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

/// The boxes of a bbox answer; entries of another shape are skipped.
std::vector<box> boxes_of(const boost::json::value& result)
{
    std::vector<box> out;
    if (!result.is_array())
        return out;
    for (const auto& item : result.get_array()) {
        const auto* o = item.if_object();
        const auto* label = o ? o->if_contains("label") : nullptr;
        const auto* coords = o ? o->if_contains("box") : nullptr;
        if (!label || !label->is_string() || !coords || !coords->is_array() || coords->get_array().size() != 4)
            continue;
        const auto& c = coords->get_array();
        auto num = [](const boost::json::value& v) { return v.is_number() ? v.to_number<double>() : 0.0; };
        out.push_back(box{std::string(label->get_string()), num(c[0]), num(c[1]), num(c[2]), num(c[3])});
    }
    return out;
}

/// Prints an answer's boxes; with `check_labels`, each must be one of the default labels.
void print_boxes(int n, const boost::json::value& result, bool check_labels)
{
    const std::set<std::string> asked = {"person", "forklift", "pallet"};
    const auto found = boxes_of(result);
    std::cout << "image " << n << ": " << found.size() << " box(es)\n";
    for (const auto& b : found) {
        std::cout << "  " << b.label << " at (" << b.x1 << ", " << b.y1 << ")-(" << b.x2 << ", " << b.y2 << ")\n";
        example::expect(b.x2 > b.x1 && b.y2 > b.y1, "well-formed boxes");
        if (check_labels)
            example::expect(asked.count(b.label) == 1, "only the labels asked for");
    }
    example::expect(result.is_array(), "an array of boxes");
}

std::string image(const example::environment& env, const char* option, std::string stand_in)
{
    if (auto path = env.option(option)) {
        std::ifstream in(*path, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    if (!env.emulated())
        throw example::environment::usage_error(std::string("--") + option + " PATH is required with --real");
    return stand_in;
}

} // namespace

lens::task<void> bounding_boxes(example::environment& env)
{
    lens::client client = env.make_client();
    const std::string labels = env.option("labels").value_or("person, forklift, pallet");
    const auto first = lens::query_request::bbox("Input: [" + labels + "]", image(env, "image", example::sample_png()));
    const auto second = lens::query_request::bbox("Input: [" + labels + "]",
                                                  image(env, "image2", example::sample_png() + "another frame"));

    co_await lens::with_session(client, env.lens(lens::emulator::builtin::query),
                                [&](const lens::session_record& record) -> lens::task<void> {
        lens::session channel = co_await client.open_session(record);
        auto [a, b] = co_await (channel.query(first) && channel.query(second));

        print_boxes(1, a, env.emulated() && !env.option("labels"));
        print_boxes(2, b, env.emulated() && !env.option("labels"));
        if (env.emulated()) {
            example::expect(a == lens::emulator::expected_query_answer(first.template_name, first.focus, first.images.front()),
                            "the first answer is the first image's");
            example::expect(b == lens::emulator::expected_query_answer(second.template_name, second.focus, second.images.front()),
                            "the second answer is the second image's");
        }
    });
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, bounding_boxes);
}
