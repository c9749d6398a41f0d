/// \file
/// lens/query.hpp — `model.query` requests (docs/protocol.md §3.8).
#pragma once

#include <boost/json/object.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace lens {

/// A `model.query` of the Newton model: an instruction, a focus and images
/// (docs/protocol.md §3.8). Sent with `session::query`.
struct query_request {
    /// The template of image questions: the answer is text.
    static constexpr const char* image_qa_template = "image_qa_template_task";
    /// The template of object detection: the answer is a list of bounding boxes.
    static constexpr const char* bbox_template = "image_bbox_template_task";

    /// Not an aggregate on purpose (see input_stream.hpp): build with the factories
    /// below or set the members of a named value.
    query_request() = default;

    std::string model_version = "Newton::c2_4_7b_251215a172f6d7"; ///< the model to ask
    std::string template_name = image_qa_template;  ///< `image_qa_template` or `bbox_template`
    std::string instruction = "Answer the following question about the image:"; ///< the task, in words
    std::string focus;                    ///< the question, or the classes to find ("Input: [person,car]")
    unsigned max_new_tokens = 512;        ///< the longest answer, in tokens
    std::vector<std::string> images;      ///< raw image bytes; base64-encoded when sent
    boost::json::object sensor_metadata;  ///< sent as given (empty by default)

    /// An image question: `focus` is the question.
    static query_request image_qa(std::string focus, std::string image_bytes);
    /// Bounding boxes: `focus` like "Input: [person,car]".
    static query_request bbox(std::string focus, std::string image_bytes);
    /// Adds the bytes of an image file; throws lens::error (invalid_argument) if unreadable.
    query_request& add_image_file(const std::filesystem::path& path);

    /// The `event_data` of `model.query`.
    boost::json::object to_event_data() const;
};

} // namespace lens
