// lens run --config FILE: the official SDK's create_and_run_lens from the command line.
#pragma once

#include "cli/commands.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace lens::cli {

/// What `lens run` was asked to do.
struct run_options {
    std::string config_path;     ///< --config: the lens configuration (YAML or JSON)
    std::string name;            ///< --name: overrides the file's lens_name
    std::string input;           ///< --input: a file to upload and attach as the input stream
    std::string sensor_data;     ///< --sensor-data: JSON lines sent as session.update ("-": stdin)
    std::size_t max_events = 0;  ///< --max-events: stop after N lens events (0: no limit)
    double duration_seconds = 0; ///< --duration: stop after S seconds of reading (0: no limit)
    bool validate = true;        ///< false with --no-validate
};

/// The input stream type an `--input` file is attached as, chosen by its extension
/// (case-insensitive): .mp4 video_file_reader, .csv csv_file_reader, .jsonl
/// jsonl_file_reader; nullopt for anything else.
std::optional<std::string_view> input_stream_type_for(std::string_view path);

/// Registers the lens, creates a session, validates it, connects the SSE consumer, attaches
/// the input, feeds the sensor data and prints every event as a JSON line until the stream
/// ends, `max_events` lens events were printed, `duration_seconds` passed or SIGINT/SIGTERM
/// arrived; then destroys the session and deletes the lens, on every path. Returns 0, or
/// 128 + N after signal N. Throws (after the same cleanup) on a failure.
int run_lens(const globals& g, const run_options& o);

} // namespace lens::cli
