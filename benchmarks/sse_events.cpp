// End-to-end SSE: typed events per second from the emulator to lens::event_stream,
// emulator and client on ONE thread (one io_context), over loopback.
//
//   build/bin/bench_sse_events [--events N] [--runs R]
//
// Rows:
//   event_stream replay   the session's N events are logged, then each run opens a
//                         new lens::event_stream and reads all of them and the end
//                         (emulator formatting + HTTP + parse + JSON + typed decode)
//   raw beast replay      the same bytes read by a bare Beast loop feeding
//                         lens::sse::parser and boost::json::parse (no queue, no
//                         typed events): the floor event_stream is compared with
//   event_stream live     events produced while consumed (result_interval 0)
//   event_stream replay, chunk_size 64 / CR line ends: the emulator's fault knobs
// plus the parser alone on the same bytes. Median of R runs.
#include <lens/client.hpp>
#include <lens/emulator.hpp>
#include <lens/event_stream.hpp>
#include <lens/sse/parser.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

template <class T>
T run(asio::io_context& ctx, asio::awaitable<T> work)
{
    auto f = asio::co_spawn(ctx, std::move(work), asio::use_future);
    ctx.restart();
    while (f.wait_for(0s) != std::future_status::ready)
        ctx.run_one();
    return f.get();
}

/// Reads `events` lens events (stream markers aside) from a session, then destroys it.
asio::awaitable<std::size_t> drain_and_destroy(lens::client& client, const lens::config& cfg, std::string id,
                                               std::size_t events)
{
    lens::event_stream s(co_await asio::this_coro::executor, cfg, id);
    std::size_t n = 0;
    while (auto ev = co_await s.next())
        if (!ev->type.starts_with("sse.stream.") && ++n == events)
            break;
    co_await client.destroy_session(id);
    co_return n;
}

std::string make_csv(std::size_t rows)
{
    std::string csv = "timestamp,a1,a2,a3\n";
    for (std::size_t i = 0; i < rows; ++i)
        csv += std::to_string(1000 + i) + "," + std::to_string(i % 7) + ".5," + std::to_string(i * 3 % 11) + ",0." +
               std::to_string(i % 10) + "\n";
    return csv;
}

lens::config config_for(const lens::emulator::server& emu)
{
    lens::config cfg;
    cfg.endpoint = emu.endpoint();
    cfg.api_key = emu.api_key();
    cfg.timeout = 60s;
    return cfg;
}

/// Reads a whole stream with lens::event_stream; returns the events (end included).
asio::awaitable<std::size_t> read_typed(lens::config cfg, std::string id)
{
    lens::event_stream_options o;
    o.idle_timeout = 60s;
    lens::event_stream s(co_await asio::this_coro::executor, cfg, id, o);
    std::size_t n = 0;
    while (auto ev = co_await s.next())
        n += ev->kind() != lens::event_kind::heartbeat;
    co_return n;
}

/// The same with a bare Beast loop, the parser and boost::json::parse; also captures the body.
asio::awaitable<std::size_t> read_raw(unsigned short port, std::string id, std::string* body_out)
{
    beast::tcp_stream s(co_await asio::this_coro::executor);
    co_await s.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), asio::use_awaitable);
    http::request<http::empty_body> req(http::verb::get, "/v0.5/lens/sessions/consumer/" + id, 11);
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::authorization, "Bearer emulator-key");
    req.set(http::field::accept, "text/event-stream");
    co_await http::async_write(s, req, asio::use_awaitable);
    beast::flat_buffer buf;
    http::response_parser<http::buffer_body> p;
    p.body_limit(boost::none);
    co_await http::async_read_header(s, buf, p, asio::use_awaitable);
    lens::sse::parser sp;
    std::size_t n = 0;
    std::vector<char> chunk(16 * 1024);
    while (!p.is_done()) {
        p.get().body().data = chunk.data();
        p.get().body().size = chunk.size();
        auto [ec, k] = co_await http::async_read_some(s, buf, p, asio::as_tuple(asio::use_awaitable));
        const std::size_t got = chunk.size() - p.get().body().size;
        if (body_out)
            body_out->append(chunk.data(), got);
        sp.feed(std::string_view(chunk.data(), got), [&](const lens::sse::event& e) {
            json::error_code jec;
            auto v = json::parse(e.data, jec);
            n += !jec && v.is_object();
        });
        if (ec && ec != http::error::need_buffer)
            break;
    }
    co_return n;
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

struct row {
    const char* name;
    double events_per_s;
    double mb_per_s;
};

void print(const row& r)
{
    std::printf("%-36s %14.0f %10.1f\n", r.name, r.events_per_s, r.mb_per_s);
}

} // namespace

int main(int argc, char** argv)
{
    std::size_t events = 20000;
    int runs = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--events") == 0)
            events = std::max<std::size_t>(10, std::strtoull(argv[i + 1], nullptr, 10));
        else if (std::strcmp(argv[i], "--runs") == 0)
            runs = std::max(1, std::atoi(argv[i + 1]));
    }

    asio::io_context ctx; // the one thread: emulator and client
    lens::emulator::options eo;
    eo.sse.csv_window_rows = 1;
    eo.sse.result_interval = 0ms;
    eo.sse.heartbeat_interval = 60s;
    lens::emulator::server emu(ctx.get_executor(), eo);
    emu.start();
    const auto cfg = config_for(emu);
    lens::client client(ctx.get_executor(), cfg);

    const std::string csv = make_csv(events - 1); // + the log.info line = `events` lens events
    // (built outside the coroutine: g++ 12 miscompiles nested braced literals inside one)
    const json::object input{{"stream_type", "csv_file_reader"}, {"stream_config", {{"file_id", "bench.csv"}}}};
    auto make_session = [&](bool set_input) {
        return run(ctx, [&]() -> asio::awaitable<std::string> {
            auto s = co_await client.create_session(std::string(lens::emulator::builtin::activity_monitor));
            if (set_input)
                co_await client.process_event(s.session_id, "input_stream.set", input);
            co_return s.session_id;
        }());
    };
    run(ctx, [&]() -> asio::awaitable<void> { co_await client.upload_file("bench.csv", csv); }());

    // A session whose log holds every event: produce, drain once, destroy.
    const std::string replay_id = make_session(true);
    run(ctx, drain_and_destroy(client, cfg, replay_id, events));
    std::string body;
    run(ctx, read_raw(emu.port(), replay_id, &body));
    const double mb = static_cast<double>(body.size()) / 1e6;

    auto measure = [&](auto once) {
        std::vector<double> seconds;
        std::size_t n = 0;
        for (int r = 0; r < runs; ++r) {
            const auto t0 = clock_type::now();
            n = once();
            seconds.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
        }
        const double s = median(seconds);
        return std::make_pair(static_cast<double>(n) / s, s);
    };

    std::printf("SSE end to end, emulator and client on one thread; %zu lens events (%.1f MB), median of %d runs\n\n",
                events, mb, runs);
    std::printf("%-36s %14s %10s\n", "path", "events/s", "MB/s");
    std::printf("%-36s %14s %10s\n", "----", "--------", "----");

    auto typed = measure([&] { return run(ctx, read_typed(cfg, replay_id)); });
    print({"event_stream replay", typed.first, mb / typed.second});
    auto raw = measure([&] { return run(ctx, read_raw(emu.port(), replay_id, nullptr)); });
    print({"raw beast + parser + json replay", raw.first, mb / raw.second});

    auto live = measure([&] {
        const std::string id = make_session(true);
        return run(ctx, drain_and_destroy(client, cfg, id, events));
    });
    print({"event_stream live (result_interval 0)", live.first, mb / live.second});

    emu.knobs().sse.chunk_size = 64;
    auto chunked = measure([&] { return run(ctx, read_typed(cfg, replay_id)); });
    print({"event_stream replay, chunk_size 64", chunked.first, mb / chunked.second});
    emu.knobs().sse.chunk_size = 0;
    emu.knobs().sse.line_end = lens::emulator::sse_knobs::line_ending::cr;
    auto cr = measure([&] { return run(ctx, read_typed(cfg, replay_id)); });
    print({"event_stream replay, CR line ends", cr.first, mb / cr.second});

    // The parser alone on the same stream bytes.
    auto parse = measure([&] {
        lens::sse::parser p;
        std::size_t n = 0;
        p.feed(body, [&](const lens::sse::event&) { ++n; });
        return n;
    });
    print({"sse::parser alone (whole buffer)", parse.first, mb / parse.second});
    auto parse1 = measure([&] {
        lens::sse::parser p;
        std::size_t n = 0;
        for (std::size_t i = 0; i < body.size(); ++i)
            p.feed(std::string_view(body).substr(i, 1), [&](const lens::sse::event&) { ++n; });
        return n;
    });
    print({"sse::parser alone (1-byte feeds)", parse1.first, mb / parse1.second});
    std::printf("\n(bench_sse_parse has the parser on more inputs and feed sizes)\n");
    emu.stop();
    return 0;
}
