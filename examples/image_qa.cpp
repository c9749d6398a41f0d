// image_qa — ask a question about an image (`model.query`, image_qa_template_task).
//
// Shows: lens::query_request::image_qa(question, image bytes) or a request built from an
// image file (add_image_file), the model version and token budget, the query's own
// deadline (session_options::query_timeout, 90 s by default: the server itself gives up
// after about 60 s with errc::query_timed_out), and reading the answer text.
//
// Run:  build/bin/example_image_qa   (in-process emulator, a built-in image)
//       ARCHETYPE_API_KEY=... build/bin/example_image_qa --real --lens lns-... --image photo.jpg
//           [--question "How many people are there?"] [--model Newton::...]
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/query.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/json/serialize.hpp>

#include <iostream>

lens::task<void> image_qa(example::environment& env)
{
    lens::client client = env.make_client();
    const std::string question = env.option("question").value_or("What colours does this image contain?");

    lens::query_request q;
    if (auto path = env.option("image")) {
        q.focus = question; // the default template is image_qa_template_task
        q.add_image_file(*path);
    } else if (env.emulated()) {
        q = lens::query_request::image_qa(question, example::sample_png());
    } else {
        throw example::environment::usage_error("--image PATH is required with --real");
    }
    if (auto model = env.option("model"))
        q.model_version = *model;
    q.max_new_tokens = 256;

    co_await lens::with_session(client, env.lens(lens::emulator::builtin::query),
                                [&](const lens::session_record& record) -> lens::task<void> {
        lens::session_options options;
        options.query_timeout = std::chrono::seconds(75);
        lens::session channel = co_await client.open_session(record, options);

        boost::json::value result = co_await channel.query(q); // the reply's event_data.result
        std::cout << "Q: " << question << '\n';
        if (result.is_string())
            std::cout << "A: " << result.get_string().c_str() << '\n';
        else
            std::cout << "A (JSON): " << boost::json::serialize(result) << '\n';

        example::expect(result.is_string() && !result.get_string().empty(), "a text answer");
        if (env.emulated()) // the emulator's answers are a known function of the question and the image
            example::expect(result == lens::emulator::expected_query_answer(q.template_name, q.focus, q.images.front()),
                            "the emulator's answer for this image");
    });
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, image_qa);
}
