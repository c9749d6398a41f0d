// What a session of a lens does, derived from the lens's configuration
// (docs/protocol.md §6, "What the emulator understands").
//
// The emulator has three behaviours, those of its built-in lenses: the activity
// monitor (input streams → results on SSE), the mailbox (session.update → results)
// and the query lens (model.query). A lens configuration is mapped onto them by its
// `model_pipeline` processors, its `output_streams` and its `input_streams`; the
// built-in lenses go through the same mapping, so a registered or cloned lens with
// their configuration behaves exactly like them.
#include "emulator/sse_feed.hpp"
#include "emulator/state.hpp"

#include <algorithm>
#include <array>
#include <iterator>

namespace lens::emulator {
namespace json = boost::json;
using detail::lens_behaviour;
using detail::lens_output;
using detail::session_state;

namespace detail {

namespace {

/// A processor the emulator runs, and which behaviours it brings.
struct processor {
    std::string_view name;
    bool reads_streams;
    bool takes_updates;
    bool answers_queries;
};

// The names are the official SDK examples' (and the built-in lenses' own).
constexpr std::array<processor, 5> processors{{
    {"lens_timeseries_state_processor", true, true, false}, // sensor time series: csv/jsonl windows
    {"lens_camera_processor", true, true, false},           // video and RTSP frames
    {"lens_sensor_logs_processor", true, true, false},      // sensor logs pushed with session.update
    {"lens_echo_processor", true, true, false},             // the built-in mailbox lens
    {"lens_model_query_processor", false, false, true},     // the built-in query lens
}};

const json::object* object_at(const json::object& o, std::string_view key)
{
    auto* v = o.if_contains(key);
    return v && v->is_object() ? &v->get_object() : nullptr;
}

const json::array* array_at(const json::object& o, std::string_view key)
{
    auto* v = o.if_contains(key);
    return v && v->is_array() ? &v->get_array() : nullptr;
}

std::string_view string_at(const json::object& o, std::string_view key)
{
    auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string_view(v->get_string()) : std::string_view{};
}

} // namespace

lens_behaviour behaviour_of(const json::object& lens_record)
{
    static const json::object empty;
    const json::object* found = object_at(lens_record, "lens_config");
    const json::object& config = found ? *found : empty;

    lens_behaviour b;
    // Where results go: the first writer the emulator knows.
    if (auto* outputs = array_at(config, "output_streams"))
        for (auto& o : *outputs) {
            if (!o.is_object())
                continue;
            const auto type = string_at(o.get_object(), "stream_type");
            if (type == "server_sent_events_writer")
                b.output = lens_output::sse;
            else if (type == "websocket_mailbox_writer")
                b.output = lens_output::mailbox;
            if (b.output != lens_output::none)
                break;
        }

    // What it does: the union of its processors' behaviours. Without a pipeline it is a
    // plain Newton lens: streams and updates, like the SDK's examples without one.
    const json::array* pipeline = array_at(config, "model_pipeline");
    if (!pipeline || pipeline->empty()) {
        b.reads_streams = b.takes_updates = true;
        return b;
    }
    for (auto& step : *pipeline) {
        const std::string_view name = step.is_object() ? string_at(step.get_object(), "processor_name") : "";
        auto known = std::find_if(processors.begin(), processors.end(), [&](const processor& p) { return p.name == name; });
        if (known == processors.end()) {
            b.not_emulated.push_back("The lens emulator does not emulate the processor '" + std::string(name) +
                                     "' (it emulates lens_timeseries_state_processor, lens_camera_processor, "
                                     "lens_sensor_logs_processor, lens_echo_processor, lens_model_query_processor); "
                                     "this session produces no results");
            continue;
        }
        b.reads_streams |= known->reads_streams;
        b.takes_updates |= known->takes_updates;
        b.answers_queries |= known->answers_queries;
    }
    if (!b.not_emulated.empty())
        b.reads_streams = b.takes_updates = b.answers_queries = false;
    return b;
}

std::vector<json::object> configured_input_streams(const json::object& lens_record)
{
    std::vector<json::object> out;
    const json::object* config = object_at(lens_record, "lens_config");
    const json::array* inputs = config ? array_at(*config, "input_streams") : nullptr;
    if (!inputs)
        return out;
    for (auto& i : *inputs)
        if (i.is_object() && object_at(i.get_object(), "stream_config"))
            out.push_back(i.get_object());
    return out;
}

} // namespace detail

server::impl::input_check server::impl::check_input_stream(std::string_view stream_type,
                                                            const json::object& config) const
{
    input_check out;
    auto file_id = [&] { return std::string(detail::string_at(config, "file_id")); };
    if (stream_type.empty())
        out.errors.push_back("stream_type is required");
    if (stream_type == "csv_file_reader" || stream_type == "video_file_reader" || stream_type == "jsonl_file_reader") {
        const std::string id = file_id();
        if (auto it = files.find(id); it != files.end())
            out.file_bytes = &it->second.bytes;
        else if (id.empty())
            out.errors.push_back(json::string("stream_config.file_id is required for " + std::string(stream_type)));
        else
            out.errors.push_back(json::string("File not found: " + id));
    } else if (stream_type == "rtsp_video_streamer" || stream_type == "rtsp_video_reader") {
        if (detail::string_at(config, "rtsp_url").empty())
            out.errors.push_back(json::string("stream_config.rtsp_url is required for " + std::string(stream_type)));
    }
    return out;
}

void server::impl::start_configured_inputs(session_state& s)
{
    // Every configured stream, in order, as one input: the feed has one producer.
    std::vector<json::object> events;
    for (const auto& input : detail::configured_input_streams(s.lens)) {
        const std::string type(detail::string_at(input, "stream_type"));
        const json::object& config = input.at("stream_config").get_object();
        auto check = check_input_stream(type, config);
        if (!check.errors.empty()) {
            for (auto& e : check.errors)
                s.problems.push_back(e);
            if (s.behaviour.output == lens_output::sse)
                events.push_back(detail::lens_error_event(check.errors));
            continue;
        }
        ++s.num_inputs;
        if (!s.behaviour.reads_streams)
            continue;
        if (s.behaviour.output == lens_output::sse) {
            auto more = detail::input_stream_events(type, config, check.file_bytes, opts.sse.csv_window_rows);
            std::move(more.begin(), more.end(), std::back_inserter(events));
        } else if (s.behaviour.output == lens_output::mailbox) {
            append_mailbox(s, "log.info", json::object{{"message", "input stream set: " + type}});
        }
    }
    if (!events.empty() && s.feed)
        detail::sse_produce(*s.feed, std::move(events));
}

} // namespace lens::emulator
