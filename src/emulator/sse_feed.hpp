#pragma once
#include <lens/emulator.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>
namespace lens::emulator::detail {
/// The client's connection (TCP or TLS) after the consumer request head was read; the SSE code writes the whole HTTP response (status line, headers, body) itself.
class byte_sink {
public:
    virtual ~byte_sink() = default;
    virtual boost::asio::awaitable<void> write(std::string_view bytes) = 0; // throws system_error on failure
    virtual void close() = 0;
};
class sse_feed; // one per session: its event log and live consumers
std::shared_ptr<sse_feed> make_sse_feed(boost::asio::any_io_executor ex, const options& live_options, std::string session_id);
void sse_input_stream(sse_feed&, std::string_view stream_type, const boost::json::object& stream_config, const std::string* file_bytes /* null: no such file */);
/// Starts producing `events` at the result interval, replacing any earlier input (as sse_input_stream does).
void sse_produce(sse_feed&, std::vector<boost::json::object> events);
/// Logs one lens event now (an `inference.result` of a session.update, a log line...); nothing once the session ended.
void sse_append(sse_feed&, const boost::json::object& event);
void sse_session_destroyed(sse_feed&);   // ends live consumers with sse.stream.end
void sse_stop(sse_feed&);                // the server is stopping: close consumers
boost::asio::awaitable<void> sse_serve(std::shared_ptr<sse_feed>, byte_sink&, std::string last_event_id /* empty: none */);

// ---- added by the SSE work: what the activity monitor derives from its input,
// exposed so that tests can check every event's content. Each element is the
// `data` payload of one lens event, in the order the feed logs them.

/// `csv_file_reader`: a `log.info`, then one `inference.result` per window of
/// `window_rows` data rows (the first line is the header); `inference.error`
/// when the file has no data rows.
std::vector<boost::json::object> activity_monitor_csv_events(std::string_view file_id, std::string_view csv,
                                                             std::size_t window_rows);
/// `video_file_reader`: a `log.info`, then per synthetic frame (one per 4 KiB of
/// file, at least 1, at most 64) a `frame.processed` and an `inference.result`.
std::vector<boost::json::object> activity_monitor_video_events(std::string_view file_id, std::string_view bytes);

/// The lens events one input stream produces with the activity monitor's behaviour
/// (csv/jsonl windows, video or RTSP frames; a `log.info` for types it does not emulate).
/// `file_bytes` null: the file does not exist (an `inference.error`).
std::vector<boost::json::object> input_stream_events(std::string_view stream_type,
                                                     const boost::json::object& stream_config,
                                                     const std::string* file_bytes, std::size_t csv_window_rows);

/// `session.update` of a lens that writes to SSE: the `inference.result` for update number
/// `index` (from 0) carrying `data`; its one text is `"<focus>: <data as JSON>"` (just the
/// JSON without a focus), so that a `session.modify` of the focus shows in later results.
boost::json::object sensor_update_event(std::size_t index, const boost::json::value& data, std::string_view focus);

/// `{"type": "log.<level>", "event_data": {"message": message}}`.
boost::json::object lens_log_event(std::string_view level, std::string message);
/// `{"type": "inference.error", "event_data": {"error_messages": error_messages}}`.
boost::json::object lens_error_event(const boost::json::array& error_messages);
}
