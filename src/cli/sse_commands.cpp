// lens sse-decode: the SSE parser on a captured stream from stdin.
#include "cli/commands.hpp"

#include <lens/error.hpp>
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

} // namespace

void add_sse_commands(CLI::App& app, globals& g, action& run)
{
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
