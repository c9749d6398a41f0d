// lens run --config FILE: register a lens, run one session of it with its SSE events on
// stdout, and leave nothing behind (docs/protocol.md §5 and §6).
//
// The order is the SDK's and the protocol's: register, create, open the control channel,
// validate, connect the SSE consumer, and only then attach the input (an uploaded file) or
// send the sensor readings, so that no event is missed. lens::with_lens and
// lens::with_session own the lens and the session: whatever ends the run — the end of
// the stream, --max-events, --duration, a signal, an error — the session is destroyed and
// then the lens deleted before `lens run` exits.
//
// Signals. SIGINT and SIGTERM are caught by an asio::signal_set. While the lens is being
// registered or the session created, the signal is held until that call completes (each
// has its deadline), so that the lens or session it creates is known and can be deleted;
// every other phase (upload, open, validate, reading, feeding) stops at once. Further
// signals are ignored while cleaning up (its calls are bounded by the configured timeout
// each; SIGQUIT or SIGKILL still end the process at once). SIGPIPE is ignored: when
// stdout's reader goes away (`lens run ... | head`), the run ends as if --max-events was
// reached.
#include "cli/run_command.hpp"

#include "cli/config_file.hpp"
#include "cli/event_output.hpp"
#include "cli/line_source.hpp"

#include <lens/client.hpp>
#include <lens/detail/deadline.hpp>
#include <lens/error.hpp>
#include <lens/event_stream.hpp>
#include <lens/events.hpp>
#include <lens/input_stream.hpp>
#include <lens/scoped_lens.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <stdexcept>


namespace lens::cli {

namespace asio = boost::asio;
namespace json = boost::json;

std::optional<std::string_view> input_stream_type_for(std::string_view path)
{
    std::string ext(std::filesystem::path(path).extension().string());
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == ".mp4")
        return "video_file_reader";
    if (ext == ".csv")
        return "csv_file_reader";
    if (ext == ".jsonl")
        return "jsonl_file_reader";
    return std::nullopt;
}

namespace {

/// Runs `a` and `b` at once; the first to complete, successfully or not, cancels the other
/// and is awaited. Returns which completed first (0 or 1); rethrows its exception.
/// (Not awaitable_operators' `||`: it waits for the first *success*, so a failure of one
/// side would wait for the other — forever for a never-ending side.)
task<std::size_t> first_of(task<void> a, task<void> b)
{
    auto ex = co_await asio::this_coro::executor;
    auto [order, a_failure, b_failure] =
        co_await asio::experimental::make_parallel_group(asio::co_spawn(ex, std::move(a), asio::deferred),
                                                         asio::co_spawn(ex, std::move(b), asio::deferred))
            .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    const std::size_t first = order[0];
    const std::exception_ptr& failure = first == 0 ? a_failure : b_failure;
    if (failure)
        std::rethrow_exception(failure);
    co_return first;
}

/// first_of, for a place that only needs it to end.
task<void> either(task<void> a, task<void> b)
{
    co_await first_of(std::move(a), std::move(b));
}

/// A stop asked for by a signal: its number, and a timer whose cancellation wakes `wait()`.
class stop_request {
public:
    explicit stop_request(asio::any_io_executor ex) : wake_(std::move(ex), asio::steady_timer::time_point::max()) {}

    /// Records signal `n` and wakes every `wait()`.
    void request(int n)
    {
        signal_ = n;
        wake_.cancel();
    }
    /// Ends the waits (at the end of the run).
    void close() { wake_.cancel(); }
    bool requested() const noexcept { return signal_ != 0; }
    /// The exit status after the signal: 128 + N, as a shell reports a death by signal N.
    int exit_status() const noexcept { return 128 + signal_; }

    /// Completes when a stop is requested (at once if it already was). Never throws: as the
    /// losing side of first_of it is cancelled, and that is not an error.
    task<void> wait()
    {
        if (signal_ == 0)
            co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
    }

private:
    int signal_ = 0;
    asio::steady_timer wake_;
};

/// Waits for SIGINT/SIGTERM: the first requests the stop; later ones are taken and ignored
/// (the cleanup must not be cut short, and wrappers such as timeout(1) deliver a signal
/// twice: to the child and to its process group).
void arm(asio::signal_set& signals, stop_request& stop)
{
    signals.async_wait([&signals, &stop](const boost::system::error_code& ec, int n) {
        if (ec)
            return;
        if (!stop.requested())
            stop.request(n);
        arm(signals, stop);
    });
}

/// Prints one line on stdout; false when its reader has gone (EPIPE).
bool write_line(const json::value& v)
{
    errno = 0;
    std::cout << json::serialize(v) << '\n' << std::flush;
    if (std::cout)
        return true;
    if (errno == EPIPE)
        return false;
    throw std::runtime_error(std::string("stdout: cannot write: ") + std::strerror(errno));
}

bool is_envelope(const lens::session_event& ev)
{
    const auto k = ev.kind();
    return k == lens::event_kind::stream_start || k == lens::event_kind::heartbeat || k == lens::event_kind::stream_end;
}

/// Prints every event until the stream ends or `max_events` lens events (not counting
/// the SSE envelope: sse.stream.start, heartbeats, sse.stream.end) were printed.
task<void> consume(lens::event_stream& events, std::size_t max_events)
{
    std::size_t n = 0;
    while (auto ev = co_await events.next()) {
        const bool counted = !is_envelope(*ev);
        if (!write_line(event_line(std::move(*ev))))
            co_return;
        if (counted && max_events != 0 && ++n >= max_events)
            co_return;
    }
}

/// Never completes by itself (only by cancellation).
task<void> idle()
{
    asio::steady_timer forever(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
    co_await forever.async_wait(asio::use_awaitable);
}

/// Sends each JSON line of `sensor` as a session.update, one after the other (updates are
/// not idempotent: never resent), then idles: the results keep coming after the last one.
task<void> feed(lens::session& channel, line_source* sensor)
{
    if (sensor) {
        while (auto line = co_await sensor->next()) {
            boost::system::error_code ec;
            json::value reading = json::parse(*line, ec);
            if (ec)
                throw std::runtime_error("--sensor-data " + sensor->name() + ":" + std::to_string(sensor->line_number()) +
                                         ": not JSON: " + ec.message());
            co_await channel.update(std::move(reading));
        }
    }
    co_await idle();
}

/// Completes after `seconds` (never when 0).
task<void> sleep_for(double seconds)
{
    asio::steady_timer t(co_await asio::this_coro::executor);
    if (seconds > 0)
        t.expires_at(lens::detail::deadline_after(lens::detail::clock::now(), std::chrono::duration<double>(seconds)));
    else
        t.expires_at(asio::steady_timer::time_point::max());
    co_await t.async_wait(asio::use_awaitable);
}

/// A failed session.validate as one error: the server's messages, or its raw reply.
[[noreturn]] void throw_invalid(const lens::validation& v)
{
    std::vector<lens::server_error> errors;
    for (const auto& m : v.error_messages) {
        lens::server_error e;
        e.message = m;
        errors.push_back(std::move(e));
    }
    std::string detail = "the session is not valid";
    if (errors.empty())
        detail += " (" + v.reply + ")";
    throw lens::error(lens::errc::api_error, "session.validate", std::move(detail), 0, std::move(errors));
}

/// Everything that happens inside the session: the SDK's session callback.
task<void> run_session(const lens::client& c, const lens::session_record& record, const lens::session_options& opts,
                       const run_options& o, const std::optional<lens::input_stream>& input, line_source* sensor)
{
    lens::session channel = co_await c.open_session(record, opts);
    if (o.validate) {
        lens::validation v = co_await channel.validate();
        if (!v.is_valid)
            throw_invalid(v);
    }
    // Subscribe before any input starts (docs/protocol.md §4), so that no event is missed.
    lens::event_stream events = c.events(record.session_id);
    co_await events.connect();
    if (input)
        co_await channel.set_input_stream(*input);
    co_await first_of(consume(events, o.max_events), either(feed(channel, sensor), sleep_for(o.duration_seconds)));
    events.close();
}

/// Uploads `path` into `uploaded`.
task<void> upload(lens::client& c, std::string path, std::optional<lens::file_record>& uploaded)
{
    uploaded = co_await c.upload_file(std::filesystem::path(path));
}

lens::input_stream input_stream_of(std::string_view type, std::string file_id)
{
    if (type == "video_file_reader")
        return lens::video_stream(std::move(file_id));
    if (type == "csv_file_reader")
        return lens::csv_stream(std::move(file_id));
    return lens::jsonl_stream(std::move(file_id));
}

task<int> run_task(lens::client c, lens_definition def, const run_options& o, lens::session_options opts,
                   line_source* sensor, stop_request& stop)
{
    std::optional<lens::input_stream> input;
    if (!o.input.empty()) {
        // Before the lens exists: a failed or interrupted upload leaves nothing to clean up.
        std::optional<lens::file_record> uploaded;
        if (co_await first_of(upload(c, o.input, uploaded), stop.wait()) == 1)
            co_return stop.exit_status();
        input = input_stream_of(*input_stream_type_for(o.input), uploaded->file_id);
    }
    if (stop.requested())
        co_return stop.exit_status();

    // Registration and creation are not interrupted (see the file comment); the bodies
    // look at the stop request first.
    co_return co_await lens::with_lens(
        c, def.lens_name, std::move(def.lens_config), [&](const lens::lens_record& lens) -> task<int> {
            if (stop.requested())
                co_return stop.exit_status();
            co_return co_await lens::with_session(c, lens.lens_id, [&](const lens::session_record& s) -> task<int> {
                if (stop.requested())
                    co_return stop.exit_status();
                const std::size_t first = co_await first_of(run_session(c, s, opts, o, input, sensor), stop.wait());
                co_return first == 1 ? stop.exit_status() : 0;
            });
        });
}

/// True when the configuration sends its results to the SSE consumer, the only output
/// `lens run` reads.
bool writes_sse(const json::object& lens_config)
{
    const json::value* outputs = lens_config.if_contains("output_streams");
    if (!outputs || !outputs->is_array())
        return false;
    return std::any_of(outputs->get_array().begin(), outputs->get_array().end(), [](const json::value& out) {
        const json::value* type = out.is_object() ? out.get_object().if_contains("stream_type") : nullptr;
        return type && type->is_string() && type->get_string() == "server_sent_events_writer";
    });
}

} // namespace

int run_lens(const globals& g, const run_options& o)
{
    // Everything that can be checked is checked before anything is sent.
    lens_definition def = lens_definition_of(load_config_file(o.config_path), o.config_path);
    if (!o.name.empty())
        def.lens_name = o.name;
    if (def.lens_name.empty())
        throw config_error(o.config_path + ": no lens_name (give one in the file or with --name)");
    if (!writes_sse(def.lens_config))
        std::cerr << "lens: warning: " << o.config_path
                  << ": no output_streams entry of stream_type server_sent_events_writer: "
                     "the lens's results may not reach the event stream lens run reads\n";
    if (!o.input.empty()) {
        std::error_code ec;
        if (!std::filesystem::is_regular_file(o.input, ec))
            throw std::runtime_error("--input " + o.input + ": " +
                                     (ec ? ec.message() : std::filesystem::exists(o.input)
                                                              ? std::string("not a regular file")
                                                              : std::string("No such file or directory")));
    }

    const lens::config cfg = g.make_config();
    lens::session_options opts;
    opts.request_timeout = cfg.timeout;
    opts.connect_timeout = cfg.timeout;

    asio::io_context ctx;
    std::optional<line_source> sensor;
    if (!o.sensor_data.empty())
        sensor.emplace(ctx.get_executor(), o.sensor_data);
    lens::client c(ctx.get_executor(), cfg);

    std::signal(SIGPIPE, SIG_IGN);
    stop_request stop(ctx.get_executor());
    asio::signal_set signals(ctx, SIGINT, SIGTERM);
    arm(signals, stop);

    int status = 1;
    std::exception_ptr failure;
    asio::co_spawn(ctx, run_task(c, std::move(def), o, opts, sensor ? &*sensor : nullptr, stop),
                   [&](std::exception_ptr e, int result) {
                       failure = e;
                       status = result;
                       signals.cancel(); // the run is over: nothing else may keep ctx.run() going
                       stop.close();
                   });
    ctx.run();
    if (failure)
        std::rethrow_exception(failure);
    return status;
}

} // namespace lens::cli
