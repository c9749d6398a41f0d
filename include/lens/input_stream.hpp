/// \file
/// lens/input_stream.hpp — typed `input_stream.set` configurations (docs/protocol.md §3.7).
#pragma once

#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <variant>

namespace lens {

// These types have constructors on purpose: g++ 12 destroys a braced *aggregate*
// temporary twice when it appears in a co_await expression (a double free in the
// caller's coroutine), so `co_await s.set_input_stream(csv_stream{id})` must not be
// aggregate initialisation.

/// A live RTSP camera.
struct rtsp_stream {
    rtsp_stream() = default;
    /// The camera at `url`, at the server's default size and rate.
    explicit rtsp_stream(std::string url) : rtsp_url(std::move(url)) {}

    std::string rtsp_url;                     ///< e.g. "rtsp://camera.example.com:554/stream"
    std::optional<unsigned> height;           ///< target_image_size [h, w]; sent only with `width`
    std::optional<unsigned> width;            ///< see `height`
    std::optional<double> frame_rate_hz;      ///< target_frame_rate_hz
    std::string stream_type = "rtsp_video_streamer"; ///< or the older "rtsp_video_reader"
};

/// An uploaded CSV file (its `file_id`).
struct csv_stream {
    csv_stream() = default;
    /// The uploaded file `id`.
    explicit csv_stream(std::string id) : file_id(std::move(id)) {}
    std::string file_id;   ///< the upload's `file_id` (its base name), not its `file_uid`
};

/// An uploaded video file (its `file_id`, e.g. "clip.mp4").
struct video_stream {
    video_stream() = default;
    /// The uploaded file `id`.
    explicit video_stream(std::string id) : file_id(std::move(id)) {}
    std::string file_id;   ///< the upload's `file_id` (its base name), not its `file_uid`
};

/// An uploaded JSON-lines file.
struct jsonl_stream {
    jsonl_stream() = default;
    /// The uploaded file `id`.
    explicit jsonl_stream(std::string id) : file_id(std::move(id)) {}
    std::string file_id;   ///< the upload's `file_id` (its base name), not its `file_uid`
};

/// Any other stream type, sent as given (sensor streams, new readers).
struct raw_stream {
    raw_stream() = default;
    /// A stream of `type` configured by `config`.
    raw_stream(std::string type, boost::json::object config)
        : stream_type(std::move(type)), stream_config(std::move(config)) {}
    std::string stream_type;            ///< sent as `stream_type`
    boost::json::object stream_config;  ///< sent as `stream_config`
};

/// Any input stream `session::set_input_stream` accepts.
using input_stream = std::variant<rtsp_stream, csv_stream, video_stream, jsonl_stream, raw_stream>;

/// The `event_data` of `input_stream.set`: `{"stream_type", "stream_config"}`.
boost::json::object to_event_data(const input_stream& s);

} // namespace lens
