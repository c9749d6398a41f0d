// lens events: a session's SSE consumer, one JSON line per event.
// lens sse-decode: the SSE parser on a captured stream from stdin.
#include "cli/commands.hpp"
#include "cli/event_output.hpp"
#include "cli/run.hpp"

#include <lens/client.hpp>
#include <lens/error.hpp>
#include <lens/event_stream.hpp>
#include <lens/sse/parser.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <unistd.h>

namespace lens::cli {

namespace json = boost::json;

namespace {

/// Reads stdin raw and feeds it `chunk` bytes at a time (0: each read as it comes).
int sse_decode(std::size_t chunk)
{
    lens::sse::parser p;
    auto print = [](const lens::sse::event& ev) {
        json::object o;
        o["event"] = ev.type;
        o["data"] = ev.data;
        o["id"] = ev.last_event_id;
        print_json_line(o);
    };
    std::string buf(64 * 1024, '\0');
    for (;;) {
        const ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw lens::error(boost::system::error_code(errno, boost::system::system_category()),
                              "sse-decode", "reading stdin");
        }
        if (n == 0)
            break;
        const std::string_view bytes(buf.data(), static_cast<std::size_t>(n));
        const std::size_t step = chunk == 0 ? bytes.size() : chunk;
        for (std::size_t pos = 0; pos < bytes.size(); pos += step)
            p.feed(bytes.substr(pos, step), print);
    }
    p.finish();
    json::object last;
    last["last_event_id"] = p.last_event_id();
    if (auto r = p.retry())
        last["retry"] = r->count();
    else
        last["retry"] = nullptr;
    print_json_line(last);
    return 0;
}

struct events_args {
    std::string session_id;
    std::string last_event_id;
    std::size_t max = 0;
    double idle_timeout_seconds = 0;
};

/// Prints every event until `sse.stream.end` (or `max` events).
int events(const lens::config& cfg, const events_args& args)
{
    boost::asio::io_context ctx;
    lens::event_stream_options opts;
    opts.last_event_id = args.last_event_id;
    if (args.idle_timeout_seconds > 0)
        opts.idle_timeout = seconds_option(args.idle_timeout_seconds);
    auto stream = lens::client(ctx.get_executor(), cfg).events(args.session_id, opts);
    return run_blocking(ctx, [](lens::event_stream& stream, std::size_t max) -> boost::asio::awaitable<int> {
        std::size_t n = 0;
        while (auto ev = co_await stream.next()) {
            print_json_line(event_line(std::move(*ev)));
            if (max != 0 && ++n >= max)
                break;
        }
        stream.close();
        co_return 0;
    }(stream, args.max));
}

} // namespace

void add_sse_commands(CLI::App& app, globals& g, action& run)
{
    {
        auto* cmd = app.add_subcommand(
            "events", "Consume a session's event stream (SSE): one JSON line {id, type, data} per event, "
                      "until sse.stream.end");
        auto args = std::make_shared<events_args>();
        cmd->add_option("ID", args->session_id, "Session id")->required();
        cmd->add_option("--last-event-id", args->last_event_id, "Resume after this event id");
        cmd->add_option("--max", args->max, "Stop after N events (0: no limit)");
        cmd->add_option("--idle-timeout", args->idle_timeout_seconds,
                        "Reconnect when no bytes arrive for S seconds (default 30)")
            ->check(CLI::PositiveNumber);
        cmd->callback([&g, &run, args] { run = [&g, args] { return events(g.make_config(), *args); }; });
    }
    {
        auto* cmd = app.add_subcommand(
            "sse-decode", "Decode a raw text/event-stream from stdin: one JSON line per dispatched event");
        auto chunk = std::make_shared<std::size_t>(0);
        cmd->add_option("--chunk", *chunk, "Feed the parser N bytes at a time (default: each read whole)")
            ->check(CLI::PositiveNumber);
        cmd->callback([&run, chunk] { run = [chunk] { return sse_decode(*chunk); }; });
    }
}

} // namespace lens::cli
