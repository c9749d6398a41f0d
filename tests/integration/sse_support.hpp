// Test support for the SSE tests: a raw Beast consumer (no lens::event_stream)
// and the setup of activity-monitor sessions on the emulator.
#pragma once

#include "integration/secret.hpp"

#include <lens/client.hpp>
#include <lens/emulator.hpp>
#include <lens/sse/parser.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace lens::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace std::chrono_literals;

/// How long `run` lets one piece of work take before it fails the test.
inline constexpr std::chrono::seconds run_watchdog{30};

/// Runs `work` to completion on `ctx` (which also runs the emulator) and returns its result.
/// A watchdog fails the test (std::runtime_error) when the work is not done within
/// `run_watchdog`, so no test can hang the suite.
template <class T>
T run(asio::io_context& ctx, asio::awaitable<T> work)
{
    auto f = asio::co_spawn(ctx, std::move(work), asio::use_future);
    auto expired = std::make_shared<bool>(false);
    asio::steady_timer dog(ctx, run_watchdog);
    dog.async_wait([expired](boost::system::error_code ec) { *expired = !ec; });
    ctx.restart();
    while (f.wait_for(0s) != std::future_status::ready && !*expired)
        ctx.run_one();
    dog.cancel();
    if (f.wait_for(0s) != std::future_status::ready)
        throw std::runtime_error("watchdog: the work did not finish within " + std::to_string(run_watchdog.count()) +
                                 " s");
    return f.get();
}

/// What a raw consumer saw on one connection.
struct capture {
    unsigned status = 0;
    std::string content_type;
    std::string cache_control;
    std::string raw_body;            ///< the body bytes as received (chunked framing removed)
    std::vector<sse::event> events;  ///< as parsed by lens::sse::parser
    bool complete = false;           ///< the body ended properly (terminating chunk)
    bool timed_out = false;          ///< a read deadline passed
    bool discarded = false;          ///< finish() found an unfinished event
    std::string last_event_id;

    /// The `type` of every event's JSON payload.
    std::vector<std::string> types() const
    {
        std::vector<std::string> out;
        for (auto& e : events)
            out.push_back(std::string(boost::json::parse(e.data).as_object().at("type").as_string()));
        return out;
    }
};

struct consume_options {
    std::string last_event_id;                        ///< sent as Last-Event-ID when not empty
    std::string api_key = lens::test::test_key();     ///< empty: no Authorization header
    std::chrono::milliseconds read_timeout = 10s;     ///< per read
    std::function<bool(const capture&)> stop;         ///< checked after each read: true ends the capture
};

/// GET lens/sessions/consumer/{id} with a raw Beast client; reads until the body
/// ends, the connection drops, a read times out, or `stop` says so.
inline asio::awaitable<capture> consume(unsigned short port, std::string session_id, consume_options o = {})
{
    capture c;
    beast::tcp_stream s(co_await asio::this_coro::executor);
    s.expires_after(5s);
    co_await s.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                             asio::use_awaitable);
    http::request<http::empty_body> req(http::verb::get, "/v0.5/lens/sessions/consumer/" + session_id, 11);
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::accept, "text/event-stream");
    req.set(http::field::cache_control, "no-cache");
    if (!o.api_key.empty())
        req.set(http::field::authorization, "Bearer " + o.api_key);
    if (!o.last_event_id.empty())
        req.set("Last-Event-ID", o.last_event_id);
    co_await http::async_write(s, req, asio::use_awaitable);

    beast::flat_buffer buf;
    http::response_parser<http::buffer_body> p;
    p.body_limit(boost::none);
    s.expires_after(o.read_timeout);
    co_await http::async_read_header(s, buf, p, asio::use_awaitable);
    c.status = p.get().result_int();
    c.content_type = std::string(p.get()[http::field::content_type]);
    c.cache_control = std::string(p.get()[http::field::cache_control]);

    sse::parser sp;
    char chunk[4096];
    while (!p.is_done()) {
        p.get().body().data = chunk;
        p.get().body().size = sizeof chunk;
        s.expires_after(o.read_timeout);
        auto [ec, n] = co_await http::async_read_some(s, buf, p, asio::as_tuple(asio::use_awaitable));
        const std::size_t got = sizeof chunk - p.get().body().size;
        c.raw_body.append(chunk, got);
        sp.feed(std::string_view(chunk, got), [&](sse::event&& e) { c.events.push_back(std::move(e)); });
        if (ec == http::error::need_buffer)
            ec = {};
        if (ec) {
            c.timed_out = ec == beast::error::timeout;
            break;
        }
        if (o.stop && o.stop(c))
            break;
    }
    c.complete = p.is_done();
    c.discarded = sp.finish();
    c.last_event_id = sp.last_event_id();
    s.close();
    co_return c;
}

/// A CSV of `rows` data rows (plus the header).
inline std::string make_csv(std::size_t rows)
{
    std::string csv = "timestamp,a1,a2,a3\n";
    for (std::size_t i = 0; i < rows; ++i)
        csv += std::to_string(1000 + i) + "," + std::to_string(i % 7) + ".5," + std::to_string(i * 3 % 11) + ",0." +
               std::to_string(i % 10) + "\n";
    return csv;
}

/// `{"stream_type": type, "stream_config": {"file_id": file_id}}`
inline boost::json::object input_stream_config(std::string_view type, std::string_view file_id)
{
    boost::json::object config;
    config["file_id"] = file_id;
    boost::json::object o;
    o["stream_type"] = type;
    o["stream_config"] = std::move(config);
    return o;
}

/// Creates an activity-monitor session; uploads `csv` as `file_id` and sets it as the
/// input stream when `csv` is not empty. Returns the session id.
inline asio::awaitable<std::string> start_activity_session(lens::client& c, std::string file_id, std::string csv)
{
    auto s = co_await c.create_session(std::string(lens::emulator::builtin::activity_monitor));
    if (!csv.empty()) {
        co_await c.upload_file(file_id, std::move(csv));
        // (built outside the co_await: g++ 12 miscompiles braced literals inside one)
        boost::json::object input = input_stream_config("csv_file_reader", file_id);
        co_await c.process_event(s.session_id, "input_stream.set", std::move(input));
    }
    co_return s.session_id;
}

inline lens::config emulator_config(const lens::emulator::server& emu)
{
    lens::config cfg;
    cfg.endpoint = emu.endpoint();
    cfg.api_key = emu.api_key();
    cfg.timeout = std::chrono::seconds(10);
    return cfg;
}

} // namespace lens::test
