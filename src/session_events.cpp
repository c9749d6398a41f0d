// Typed event payloads of the control channel: input streams and model queries.
#include <lens/error.hpp>
#include <lens/input_stream.hpp>
#include <lens/query.hpp>

#include "detail/base64.hpp"

#include <boost/json/array.hpp>

#include <fstream>

namespace lens {

namespace json = boost::json;

namespace {

json::object file_stream(std::string_view type, const std::string& file_id)
{
    json::object config;
    config["file_id"] = file_id;
    json::object o;
    o["stream_type"] = type;
    o["stream_config"] = std::move(config);
    return o;
}

} // namespace

json::object to_event_data(const input_stream& s)
{
    struct visitor {
        json::object operator()(const rtsp_stream& r) const
        {
            json::object config;
            config["rtsp_url"] = r.rtsp_url;
            if (r.height && r.width)
                config["target_image_size"] = json::array{*r.height, *r.width};
            if (r.frame_rate_hz)
                config["target_frame_rate_hz"] = *r.frame_rate_hz;
            json::object o;
            o["stream_type"] = r.stream_type;
            o["stream_config"] = std::move(config);
            return o;
        }
        json::object operator()(const csv_stream& c) const { return file_stream("csv_file_reader", c.file_id); }
        json::object operator()(const video_stream& v) const { return file_stream("video_file_reader", v.file_id); }
        json::object operator()(const jsonl_stream& j) const { return file_stream("jsonl_file_reader", j.file_id); }
        json::object operator()(const raw_stream& r) const
        {
            json::object o;
            o["stream_type"] = r.stream_type;
            o["stream_config"] = r.stream_config;
            return o;
        }
    };
    return std::visit(visitor{}, s);
}

query_request query_request::image_qa(std::string focus, std::string image_bytes)
{
    query_request q;
    q.template_name = image_qa_template;
    q.focus = std::move(focus);
    q.images.push_back(std::move(image_bytes));
    return q;
}

query_request query_request::bbox(std::string focus, std::string image_bytes)
{
    query_request q;
    q.template_name = bbox_template;
    q.instruction = "Localize all objects in the picture and build bounding box around them.";
    q.focus = std::move(focus);
    q.images.push_back(std::move(image_bytes));
    return q;
}

query_request& query_request::add_image_file(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw lens::error(errc::invalid_argument, "model.query", "cannot open image " + path.string());
    images.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return *this;
}

json::object query_request::to_event_data() const
{
    json::array data;
    for (auto& image : images) {
        json::object item;
        item["type"] = "base64_img";
        item["base64_img"] = detail::base64_encode(image);
        data.push_back(std::move(item));
    }
    json::object o;
    o["model_version"] = model_version;
    o["template_name"] = template_name;
    o["instruction"] = instruction;
    o["focus"] = focus;
    o["max_new_tokens"] = max_new_tokens;
    o["data"] = std::move(data);
    o["sensor_metadata"] = sensor_metadata;
    return o;
}

} // namespace lens
