// The emulator's SSE surface: `GET lens/sessions/consumer/{session_id}`.
//
// One `sse_feed` per session holds the session's event log and its live
// consumers. Lens events (everything the activity monitor produces) get ids
// 1, 2, 3... per session and stay in the log, so that a consumer connecting
// late, or reconnecting with `Last-Event-ID: N`, is sent every event after N
// and then the live ones. Envelope events (`sse.stream.start`, heartbeats,
// `sse.stream.end`) carry no id.
//
// The response is `200`, `Content-Type: text/event-stream`, `Cache-Control:
// no-cache`, `Connection: close`, with a chunked body (one HTTP chunk per
// write, or per `chunk_size` bytes). A graceful end writes `sse.stream.end`
// and the terminating chunk, then closes; a cut closes without either.
//
// Knobs (`options::sse`), read at the moment they apply:
//   heartbeat_interval  time between heartbeats on each connection (measured
//                       from the previous heartbeat, or the stream's start)
//   result_interval     spacing of the activity monitor's events
//   csv_window_rows     CSV rows per inference.result
//   cut_after_events    after N lens events (envelope events do not count) on
//                       one connection, the connection is cut in the middle of
//                       event N+1 once it exists: its first half is written,
//                       then the socket is closed without ending the body. The
//                       consumer must discard the half event and resume with
//                       `Last-Event-ID: <id of event N>`.
//   line_end            LF, CRLF or CR after every line
//   chunk_size          the body is written in pieces of this many bytes (each
//                       its own HTTP chunk and its own socket write)
//   bom                 each response body starts with a UTF-8 BOM
//   comments            `: ...` comment lines before and inside every event
//   stall               after the response head nothing is written (no events,
//                       no heartbeats) while set; the connection stays open
//
// Limits of the emulation: a consumer that goes away is noticed at the next
// write; the log keeps the latest 65536 events of a session.
#include "emulator/sse_feed.hpp"
#include "emulator/state.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <deque>
#include <vector>

namespace lens::emulator::detail {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr std::size_t max_log = 65536;
constexpr std::size_t max_video_frames = 64;
constexpr std::size_t video_frame_bytes = 4096;
constexpr std::size_t batch_bytes = 64 * 1024;

std::uint64_t fnv1a(std::string_view s, std::uint64_t h = 14695981039346656037ull) noexcept
{
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

std::string hex(std::uint64_t v, int digits = 16)
{
    char buf[17];
    std::snprintf(buf, sizeof buf, "%0*llx", digits, static_cast<unsigned long long>(v));
    return buf;
}

double hundredths(std::uint64_t v) { return static_cast<double>(v % 101) / 100.0; }

json::object lens_event(std::string_view type, json::object event_data)
{
    return json::object{{"type", type}, {"event_data", std::move(event_data)}};
}

json::object log_info(std::string message)
{
    return lens_event("log.info", json::object{{"message", std::move(message)}});
}

json::object inference_error(std::string message)
{
    return lens_event("inference.error", json::object{{"error_messages", json::array{json::string(message)}}});
}

/// A classification from a hash: ["HEALTHY"|"BROKEN", {HEALTHY: p, BROKEN: 1-p}].
json::array classification(std::uint64_t h)
{
    const double healthy = hundredths(h);
    const double broken = std::round((1.0 - healthy) * 100.0) / 100.0;
    return json::array{healthy >= 0.5 ? "HEALTHY" : "BROKEN", json::object{{"HEALTHY", healthy}, {"BROKEN", broken}}};
}

/// The data rows of a CSV file (the first line is the header), without line ends.
std::vector<std::string_view> csv_rows(std::string_view csv)
{
    std::vector<std::string_view> rows;
    bool header = true;
    while (!csv.empty()) {
        const auto eol = csv.find('\n');
        std::string_view line = csv.substr(0, eol);
        csv.remove_prefix(eol == std::string_view::npos ? csv.size() : eol + 1);
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (std::exchange(header, false) || line.empty())
            continue;
        rows.push_back(line);
    }
    return rows;
}

} // namespace

std::vector<json::object> activity_monitor_csv_events(std::string_view file_id, std::string_view csv,
                                                      std::size_t window_rows)
{
    std::vector<json::object> out;
    const auto rows = csv_rows(csv);
    if (rows.empty()) {
        out.push_back(inference_error("No data rows in " + std::string(file_id)));
        return out;
    }
    window_rows = std::max<std::size_t>(1, window_rows);
    const std::size_t windows = (rows.size() + window_rows - 1) / window_rows;
    out.push_back(log_info("csv_file_reader: " + std::string(file_id) + ", " + std::to_string(rows.size()) +
                           " rows in " + std::to_string(windows) + " windows of " + std::to_string(window_rows)));
    for (std::size_t k = 0; k < windows; ++k) {
        const std::size_t first = k * window_rows, last = std::min(rows.size(), first + window_rows) - 1;
        std::uint64_t h = fnv1a(file_id);
        for (std::size_t r = first; r <= last; ++r)
            h = fnv1a(rows[r], h);
        out.push_back(lens_event(
            "inference.result",
            json::object{{"response", classification(h)},
                         {"query_id", "qry-" + hex(h)},
                         {"query_metadata", json::object{{"window", k},
                                                         {"rows", json::array{first, last}},
                                                         {"num_rows", last - first + 1},
                                                         {"file_id", file_id},
                                                         {"stream_type", "csv_file_reader"}}}}));
    }
    return out;
}

std::vector<json::object> activity_monitor_video_events(std::string_view file_id, std::string_view bytes)
{
    std::vector<json::object> out;
    const std::size_t frames =
        std::clamp<std::size_t>((bytes.size() + video_frame_bytes - 1) / video_frame_bytes, 1, max_video_frames);
    out.push_back(log_info("video_file_reader: " + std::string(file_id) + ", " + std::to_string(frames) + " frames"));
    static const char* const descriptions[] = {"A machine running normally.", "A conveyor belt carrying boxes.",
                                               "An empty workbench.", "A person inspecting a motor.",
                                               "Sparks near a grinding wheel."};
    for (std::size_t i = 0; i < frames; ++i) {
        const std::string_view frame = bytes.substr(std::min(bytes.size(), i * video_frame_bytes), video_frame_bytes);
        const std::uint64_t h = fnv1a(frame, fnv1a(file_id) + i);
        const double timestamp = static_cast<double>(i) / 10.0;
        out.push_back(lens_event("frame.processed",
                                 json::object{{"frame_index", i},
                                              {"file_id", file_id},
                                              {"timestamp", timestamp},
                                              {"frame_hash", hex(h)}}));
        out.push_back(lens_event(
            "inference.result",
            json::object{{"response", json::array{descriptions[h % std::size(descriptions)]}},
                         {"query_id", "qry-" + hex(h)},
                         {"query_metadata", json::object{{"frame_index", i},
                                                         {"timestamp", timestamp},
                                                         {"file_id", file_id},
                                                         {"stream_type", "video_file_reader"}}}}));
    }
    return out;
}

// ---------------------------------------------------------------------------

class sse_feed : public std::enable_shared_from_this<sse_feed> {
public:
    sse_feed(asio::any_io_executor ex, const options& opts, std::string session_id)
        : executor_(std::move(ex)), opts_(&opts), session_id_(std::move(session_id))
    {
    }

    struct entry {
        std::uint64_t id;
        std::string payload; // the JSON text of `data`
    };

    /// A connection being served. Its loop waits on `wake`, which never expires by
    /// itself: new events, the end of the session and its heartbeat ticker cancel it
    /// (no timer is re-armed per event).
    struct consumer {
        asio::steady_timer wake;
        byte_sink* sink;
        bool heartbeat_due = false;
        bool done = false;
        asio::steady_timer* ticker = nullptr;
    };

    /// Marks a heartbeat due on `c` every heartbeat_interval (read at each tick).
    static asio::awaitable<void> heartbeat_ticker(std::shared_ptr<sse_feed> self, std::shared_ptr<consumer> c)
    {
        asio::steady_timer timer(self->executor_);
        c->ticker = &timer;
        while (!c->done) {
            timer.expires_after(self->knobs().heartbeat_interval);
            boost::system::error_code ec;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (c->done)
                break;
            c->heartbeat_due = true;
            c->wake.cancel();
        }
        c->ticker = nullptr;
    }

    const sse_knobs& knobs() const noexcept { return opts_->sse; }

    void append(const json::object& payload)
    {
        entry e{next_id_++, json::serialize(payload)};
        total_bytes_ += e.payload.size();
        log_.push_back(std::move(e));
        if (log_.size() > max_log)
            log_.pop_front();
        notify();
    }

    void notify()
    {
        for (auto* c : consumers_)
            c->wake.cancel();
    }

    /// Starts producing `events` at the result interval, replacing any earlier input.
    void produce(std::vector<json::object> events)
    {
        stop_producer();
        if (destroyed_ || stopped_ || events.empty())
            return;
        asio::co_spawn(executor_, run_producer(shared_from_this(), generation_, std::move(events)), asio::detached);
    }

    void stop_producer()
    {
        ++generation_;
        if (producer_timer_)
            producer_timer_->cancel();
    }

    static asio::awaitable<void> run_producer(std::shared_ptr<sse_feed> self, std::uint64_t generation,
                                              std::vector<json::object> events)
    {
        asio::steady_timer timer(self->executor_);
        self->producer_timer_ = &timer;
        struct unhook {
            sse_feed& f;
            asio::steady_timer* t;
            ~unhook()
            {
                if (f.producer_timer_ == t)
                    f.producer_timer_ = nullptr;
            }
        } guard{*self, &timer};
        // The first event (the log line announcing the input) is immediate. With a
        // zero interval events come as fast as possible, yielding every 64.
        for (std::size_t i = 0; i < events.size(); ++i) {
            const auto interval = self->knobs().result_interval;
            if (i != 0 && interval.count() > 0) {
                timer.expires_after(interval);
                boost::system::error_code ec;
                co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            } else if (i % 64 == 63) {
                co_await asio::post(self->executor_, asio::use_awaitable);
            }
            if (self->generation_ != generation || self->destroyed_ || self->stopped_)
                co_return;
            self->append(events[i]);
        }
    }

    asio::any_io_executor executor_;
    const options* opts_;
    std::string session_id_;
    std::deque<entry> log_;
    std::uint64_t next_id_ = 1;
    std::uint64_t total_bytes_ = 0;
    std::vector<consumer*> consumers_;
    unsigned readers_ = 0;
    bool destroyed_ = false;
    bool stopped_ = false;
    std::uint64_t generation_ = 0;
    asio::steady_timer* producer_timer_ = nullptr;
};

std::shared_ptr<sse_feed> make_sse_feed(asio::any_io_executor ex, const options& live_options, std::string session_id)
{
    return std::make_shared<sse_feed>(std::move(ex), live_options, std::move(session_id));
}

std::vector<json::object> input_stream_events(std::string_view stream_type, const json::object& stream_config,
                                              const std::string* file_bytes, std::size_t csv_window_rows)
{
    std::string file_id;
    if (auto* v = stream_config.if_contains("file_id"); v && v->is_string())
        file_id = std::string(v->get_string());
    std::vector<json::object> events;
    const bool file_reader = stream_type == "csv_file_reader" || stream_type == "video_file_reader" ||
                             stream_type == "jsonl_file_reader";
    if (file_reader && file_bytes == nullptr) {
        events.push_back(inference_error("File not found: " + (file_id.empty() ? std::string("(no file_id)") : file_id)));
    } else if (stream_type == "csv_file_reader") {
        events = activity_monitor_csv_events(file_id, *file_bytes, csv_window_rows);
    } else if (stream_type == "jsonl_file_reader") {
        // JSON lines are rows without a header line.
        events = activity_monitor_csv_events(file_id, "\n" + *file_bytes, csv_window_rows);
    } else if (stream_type == "video_file_reader") {
        events = activity_monitor_video_events(file_id, *file_bytes);
    } else if (stream_type == "rtsp_video_streamer" || stream_type == "rtsp_video_reader") {
        std::string url;
        if (auto* v = stream_config.if_contains("rtsp_url"); v && v->is_string())
            url = std::string(v->get_string());
        // A live camera, emulated by frames derived from its URL.
        events = activity_monitor_video_events(url, std::string(16 * video_frame_bytes, '\0') + url);
    } else {
        events.push_back(log_info("input stream type not emulated: " + std::string(stream_type)));
    }
    return events;
}

json::object sensor_update_event(std::size_t index, const json::value& data, std::string_view focus)
{
    std::string text = json::serialize(data);
    if (!focus.empty())
        text = std::string(focus) + ": " + text;
    const std::uint64_t h = fnv1a(text, fnv1a(std::to_string(index)));
    return lens_event("inference.result",
                      json::object{{"response", json::array{json::string(text)}},
                                   {"query_id", "qry-" + hex(h)},
                                   {"query_metadata", json::object{{"update_index", index},
                                                                   {"stream_type", "data.json"},
                                                                   {"focus", focus},
                                                                   {"data", data}}}});
}

json::object lens_log_event(std::string_view level, std::string message)
{
    return lens_event("log." + std::string(level), json::object{{"message", std::move(message)}});
}

json::object lens_error_event(const json::array& error_messages)
{
    return lens_event("inference.error", json::object{{"error_messages", error_messages}});
}

void sse_input_stream(sse_feed& f, std::string_view stream_type, const json::object& stream_config,
                      const std::string* file_bytes)
{
    f.produce(input_stream_events(stream_type, stream_config, file_bytes, f.knobs().csv_window_rows));
}

void sse_produce(sse_feed& f, std::vector<json::object> events)
{
    f.produce(std::move(events));
}

void sse_append(sse_feed& f, const json::object& event)
{
    if (f.destroyed_ || f.stopped_)
        return;
    f.append(event);
}

void sse_session_destroyed(sse_feed& f)
{
    f.destroyed_ = true;
    f.stop_producer();
    f.notify();
}

void sse_stop(sse_feed& f)
{
    f.stopped_ = true;
    f.stop_producer();
    // Copy: closing may complete writes whose handlers unregister consumers later.
    const auto consumers = f.consumers_;
    for (auto* c : consumers) {
        c->sink->close();
        c->wake.cancel();
    }
}

namespace {

/// Formats events for one connection according to the knobs in force.
class formatter {
public:
    explicit formatter(const sse_knobs& k) : knobs_(k) {}

    std::string_view eol() const noexcept
    {
        switch (knobs_.line_end) {
        case sse_knobs::line_ending::crlf:
            return "\r\n";
        case sse_knobs::line_ending::cr:
            return "\r";
        default:
            return "\n";
        }
    }

    void event(std::string& out, std::string_view payload, std::uint64_t id /* 0: none */)
    {
        if (knobs_.comments) {
            out += ": comment ";
            out += std::to_string(++comments_);
            out += eol();
        }
        if (id != 0) {
            out += "id: ";
            out += std::to_string(id);
            out += eol();
            if (knobs_.comments) {
                out += ":";
                out += eol();
            }
        }
        out += "data: ";
        out += payload;
        out += eol();
        out += eol();
    }

private:
    const sse_knobs& knobs_;
    std::uint64_t comments_ = 0;
};

/// Writes `body` as HTTP chunks (pieces of `chunk_size`, or one), then clears it.
asio::awaitable<void> send_chunks(byte_sink& sink, std::string& body, std::size_t chunk_size, std::string& frame)
{
    const std::size_t step = chunk_size == 0 ? body.size() : chunk_size;
    for (std::size_t pos = 0; pos < body.size(); pos += step) {
        const std::string_view piece = std::string_view(body).substr(pos, step);
        char head[24];
        const int n = std::snprintf(head, sizeof head, "%zx\r\n", piece.size());
        frame.assign(head, static_cast<std::size_t>(n));
        frame += piece;
        frame += "\r\n";
        co_await sink.write(frame);
    }
    body.clear();
}

} // namespace

asio::awaitable<void> sse_serve(std::shared_ptr<sse_feed> feed, byte_sink& sink, std::string last_event_id)
{
    sse_feed& f = *feed;
    const sse_knobs& knobs = f.knobs();
    auto self_ptr = std::make_shared<sse_feed::consumer>(sse_feed::consumer{asio::steady_timer(f.executor_), &sink});
    sse_feed::consumer& self = *self_ptr;
    f.consumers_.push_back(&self);
    struct unregister {
        sse_feed& f;
        sse_feed::consumer* c;
        ~unregister()
        {
            std::erase(f.consumers_, c);
            c->done = true;
            if (c->ticker)
                c->ticker->cancel();
        }
    } guard{f, &self};

    if (f.stopped_) {
        sink.close();
        co_return;
    }

    // Resume after Last-Event-ID when it names an event we logged (or one older
    // than the log keeps); an id we cannot read means "from the start".
    std::uint64_t next = 1;
    if (!last_event_id.empty()) {
        std::uint64_t n = 0;
        const auto* first = last_event_id.data();
        const auto* last = first + last_event_id.size();
        if (auto [p, ec] = std::from_chars(first, last, n); ec == std::errc() && p == last)
            next = std::min(n, f.next_id_ - 1) + 1;
    }

    co_await sink.write("HTTP/1.1 200 OK\r\n"
                        "Content-Type: text/event-stream\r\n"
                        "Cache-Control: no-cache\r\n"
                        "Connection: close\r\n"
                        "Transfer-Encoding: chunked\r\n"
                        "\r\n");

    formatter fmt(knobs);
    std::string body, frame;
    const std::string reader_id = "rdr-" + hex(fnv1a(f.session_id_) + ++f.readers_, 8);
    bool started = false;
    unsigned events_sent = 0;
    std::uint64_t heartbeats = 0;
    asio::co_spawn(f.executor_, sse_feed::heartbeat_ticker(feed, self_ptr), asio::detached);

    for (;;) {
        if (f.stopped_) {
            sink.close();
            co_return;
        }
        if (!knobs.stall) {
            if (!started) {
                started = true;
                if (knobs.bom)
                    body += "\xEF\xBB\xBF";
                fmt.event(body, json::serialize(json::object{{"type", "sse.stream.start"},
                                                             {"session_id", f.session_id_},
                                                             {"reader_id", reader_id}}),
                          0);
            }
            // Logged events after `next`, batched into writes of up to 64 KiB.
            const std::uint64_t front = f.log_.empty() ? f.next_id_ : f.log_.front().id;
            next = std::max(next, front);
            bool cut = false;
            while (next < f.next_id_ && body.size() < batch_bytes) {
                const auto& e = f.log_[next - front];
                if (knobs.cut_after_events != 0 && events_sent >= knobs.cut_after_events) {
                    std::string whole;
                    fmt.event(whole, e.payload, e.id);
                    body.append(whole, 0, whole.size() / 2);
                    cut = true;
                    break;
                }
                fmt.event(body, e.payload, e.id);
                ++next;
                ++events_sent;
            }
            if (!body.empty())
                co_await send_chunks(sink, body, knobs.chunk_size, frame);
            if (cut) {
                sink.close();
                co_return;
            }
            if (next < f.next_id_ && !f.stopped_)
                continue; // more to send
            if (f.destroyed_) {
                fmt.event(body, json::serialize(json::object{{"type", "sse.stream.end"}, {"session_id", f.session_id_}}),
                          0);
                co_await send_chunks(sink, body, knobs.chunk_size, frame);
                co_await sink.write("0\r\n\r\n");
                sink.close();
                co_return;
            }
        }
        if (self.heartbeat_due) {
            self.heartbeat_due = false;
            if (!knobs.stall) {
                fmt.event(body,
                          json::serialize(json::object{{"type", "sse.stream.heartbeat"},
                                                       {"session_id", f.session_id_},
                                                       {"session_status", "SESSION_STATUS_RUNNING"},
                                                       {"num_messages", f.next_id_ - 1},
                                                       {"num_bytes", f.total_bytes_},
                                                       {"message_timeout", ++heartbeats}}),
                          0);
                co_await send_chunks(sink, body, knobs.chunk_size, frame);
            }
            continue;
        }
        // Nothing to do until an event is logged, the session ends, or a heartbeat is due.
        self.wake.expires_at(asio::steady_timer::time_point::max());
        boost::system::error_code ec;
        co_await self.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
}

} // namespace lens::emulator::detail
