// Typed SSE events end to end: lens::event_stream against a raw Beast loop doing the same
// work (HTTP read + lens::sse::parser + boost::json::parse per event), on the same stream,
// from a server in another process.
//
//   build/bin/bench_sse_events [--events N] [--rounds R] [--memory-events M] [--only lens|raw]
//
// The server (forked at start, one thread) answers every GET with a close-delimited
// text/event-stream of N events shaped as the emulator's CSV `inference.result` events
// (`id: k`, one JSON `data:` line of ~230 bytes), opened by `sse.stream.start` and ended
// by `sse.stream.end`, written in 256 KiB pieces: it formats events far faster than a
// client parses them, so the client is what is measured. Rounds alternate lens and raw;
// each row is the median [min-max] over the rounds of events/s, client CPU µs per event
// (getrusage) and the server's CPU share. Then one lens stream of M events: heap in use
// (mallinfo2) sampled every M/10 events, to show it stays flat. `--only` runs one of
// the two clients (for a profiler: `perf record --no-inherit` sees only the client).
#include "bench_support.hpp"

#include <lens/config.hpp>
#include <lens/event_stream.hpp>
#include <lens/sse/parser.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

/// Appends event `k` as the emulator would send it (an inference.result of the CSV reader).
void append_event(std::string& out, std::uint64_t k)
{
    char line[512];
    const unsigned h = static_cast<unsigned>(k * 2654435761u);
    const int healthy = static_cast<int>(h % 100);
    const int n = std::snprintf(
        line, sizeof line,
        "id: %llu\ndata: {\"type\":\"inference.result\",\"event_data\":{\"response\":[\"%s\",{\"HEALTHY\":0.%02d,"
        "\"BROKEN\":0.%02d}],\"query_id\":\"qry-%016llx\",\"query_metadata\":{\"window\":%llu,\"rows\":[%llu,%llu],"
        "\"num_rows\":1,\"file_id\":\"bench.csv\",\"stream_type\":\"csv_file_reader\"}}}\n\n",
        static_cast<unsigned long long>(k), healthy >= 50 ? "HEALTHY" : "BROKEN", healthy, 99 - healthy,
        static_cast<unsigned long long>(k) * 0x9e3779b97f4a7c15ull, static_cast<unsigned long long>(k - 1),
        static_cast<unsigned long long>(k - 1), static_cast<unsigned long long>(k - 1));
    out.append(line, static_cast<std::size_t>(n));
}

/// The server: every GET gets `count` events (the count is the target's last segment
/// when it is a number, else `default_count`), then the end marker and a close.
asio::awaitable<void> serve(tcp::socket sock, std::uint64_t default_count)
{
    beast::flat_buffer buf;
    http::request<http::empty_body> req;
    auto [ec, n] = co_await http::async_read(sock, buf, req, asio::as_tuple(asio::use_awaitable));
    if (ec)
        co_return;
    std::uint64_t count = default_count;
    const std::string target(req.target());
    const auto slash = target.rfind('/');
    if (slash != std::string::npos && slash + 1 < target.size() && std::isdigit(target[slash + 1]))
        count = std::strtoull(target.c_str() + slash + 1, nullptr, 10);
    std::string out =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        "data: {\"type\":\"sse.stream.start\",\"session_id\":\"lsn-bench\",\"reader_id\":\"bench\"}\n\n";
    for (std::uint64_t k = 1; k <= count; ++k) {
        append_event(out, k);
        if (out.size() >= 256 * 1024 || k == count) {
            if (k == count)
                out += "data: {\"type\":\"sse.stream.end\",\"session_id\":\"lsn-bench\"}\n\n";
            auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(out), asio::as_tuple(asio::use_awaitable));
            if (wec)
                co_return;
            out.clear();
        }
    }
    boost::system::error_code ignored;
    sock.shutdown(tcp::socket::shutdown_send, ignored);
    char sink[256];
    co_await sock.async_read_some(asio::buffer(sink), asio::as_tuple(asio::use_awaitable)); // the client's close
}

/// Forks the server; returns its pid and port.
std::pair<pid_t, unsigned short> start_server(std::uint64_t default_count)
{
    int fds[2];
    if (pipe(fds) != 0)
        std::exit(1);
    const pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        asio::io_context ctx(1);
        tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        const unsigned short port = acceptor.local_endpoint().port();
        if (write(fds[1], &port, sizeof port) != sizeof port)
            _exit(1);
        close(fds[1]);
        asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
            for (;;) {
                auto sock = co_await acceptor.async_accept(asio::use_awaitable);
                asio::co_spawn(ctx, serve(std::move(sock), default_count), asio::detached);
            }
        }, asio::detached);
        ctx.run();
        _exit(0);
    }
    close(fds[1]);
    unsigned short port = 0;
    if (read(fds[0], &port, sizeof port) != sizeof port)
        std::exit(1);
    close(fds[0]);
    return {pid, port};
}

/// lens::event_stream: events read until the end; `sample` called every `every` events.
asio::awaitable<std::size_t> read_lens(unsigned short port, std::uint64_t count, std::uint64_t every = 0,
                                       std::vector<double>* heap_mib = nullptr)
{
    lens::config cfg;
    cfg.endpoint = "http://127.0.0.1:" + std::to_string(port) + "/v0.5";
    cfg.api_key = "bench-key";
    cfg.timeout = 60s;
    lens::event_stream_options o;
    o.idle_timeout = 60s;
    lens::event_stream s(co_await asio::this_coro::executor, cfg, std::to_string(count), o);
    std::size_t n = 0;
    while (auto ev = co_await s.next()) {
        n += ev->kind() != lens::event_kind::heartbeat;
        if (every != 0 && n % every == 0)
            heap_mib->push_back(static_cast<double>(mallinfo2().uordblks) / 1048576.0);
    }
    co_return n;
}

/// The same stream with Beast, the parser and json::parse per event: the floor.
asio::awaitable<std::size_t> read_raw(unsigned short port, std::uint64_t count)
{
    beast::tcp_stream s(co_await asio::this_coro::executor);
    co_await s.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), asio::use_awaitable);
    http::request<http::empty_body> req(http::verb::get, "/v0.5/lens/sessions/consumer/" + std::to_string(count), 11);
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::authorization, "Bearer bench-key");
    req.set(http::field::accept, "text/event-stream");
    co_await http::async_write(s, req, asio::use_awaitable);
    beast::flat_buffer buf;
    http::response_parser<http::buffer_body> p;
    p.body_limit(boost::none);
    co_await http::async_read_header(s, buf, p, asio::use_awaitable);
    buf.reserve(64 * 1024); // Beast reads at most the free room: 512 bytes otherwise
    lens::sse::parser sp;
    std::size_t n = 0;
    std::vector<char> chunk(64 * 1024);
    while (!p.is_done()) {
        p.get().body().data = chunk.data();
        p.get().body().size = chunk.size();
        auto [ec, k] = co_await http::async_read_some(s, buf, p, asio::as_tuple(asio::use_awaitable));
        const std::size_t got = chunk.size() - p.get().body().size;
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

template <class T>
T run(asio::io_context& ctx, asio::awaitable<T> work)
{
    auto f = asio::co_spawn(ctx, std::move(work), asio::use_future);
    ctx.restart();
    ctx.run();
    return f.get();
}

struct sample {
    double events_per_s, cpu_us_per_event, server_share;
};

std::string cell(std::vector<double> v, const char* fmt)
{
    std::sort(v.begin(), v.end());
    char a[32], b[32], c[32];
    char out[sizeof a + sizeof b + sizeof c + 8];
    std::snprintf(a, sizeof a, fmt, v[v.size() / 2]);
    std::snprintf(b, sizeof b, fmt, v.front());
    std::snprintf(c, sizeof c, fmt, v.back());
    std::snprintf(out, sizeof out, "%s [%s-%s]", a, b, c);
    return out;
}

} // namespace

int main(int argc, char** argv)
{
    std::uint64_t events = 300000, memory_events = 3000000;
    int rounds = 5;
    std::string only;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--events") == 0)
            events = std::max<std::uint64_t>(1000, std::strtoull(argv[i + 1], nullptr, 10));
        else if (std::strcmp(argv[i], "--rounds") == 0)
            rounds = std::max(1, std::atoi(argv[i + 1]));
        else if (std::strcmp(argv[i], "--memory-events") == 0)
            memory_events = std::strtoull(argv[i + 1], nullptr, 10);
        else if (std::strcmp(argv[i], "--only") == 0)
            only = argv[i + 1];
    }
    const auto [server, port] = start_server(events);
    asio::io_context ctx(1); // the client's one thread

    auto measure = [&](auto read) {
        const double cpu0 = bench::cpu_seconds(), server0 = bench::process_cpu_seconds(server);
        const auto t0 = bench::clock_type::now();
        const std::size_t n = read();
        const double wall = std::chrono::duration<double>(bench::clock_type::now() - t0).count();
        const double cpu = bench::cpu_seconds() - cpu0, server_cpu = bench::process_cpu_seconds(server) - server0;
        if (n < events) {
            std::fprintf(stderr, "bench_sse_events: %zu of %llu events\n", n, static_cast<unsigned long long>(events));
            std::exit(1);
        }
        return sample{static_cast<double>(n) / wall, cpu * 1e6 / static_cast<double>(n), server_cpu / wall};
    };
    auto lens_once = [&] { return run(ctx, read_lens(port, events)); };
    auto raw_once = [&] { return run(ctx, read_raw(port, events)); };
    const bool with_lens = only != "raw", with_raw = only != "lens";
    if (with_lens)
        measure(lens_once); // warm-up: page cache, allocator, branch predictors
    if (with_raw)
        measure(raw_once);
    std::vector<sample> lens_samples, raw_samples;
    for (int r = 0; r < rounds; ++r) {
        if (with_lens)
            lens_samples.push_back(measure(lens_once));
        if (with_raw)
            raw_samples.push_back(measure(raw_once));
    }

    std::printf("SSE end to end: %llu inference.result events (~300 bytes each) per stream from a one-thread server "
                "in another process; client on one thread; %d interleaved rounds, median [min-max]\n\n",
                static_cast<unsigned long long>(events), rounds);
    std::printf("| client | events/s | client CPU µs/event | server CPU share |\n|---|---:|---:|---:|\n");
    auto row = [&](const char* name, const std::vector<sample>& s) {
        if (s.empty())
            return;
        std::vector<double> rate, cpu, share;
        for (const auto& x : s) {
            rate.push_back(x.events_per_s);
            cpu.push_back(x.cpu_us_per_event);
            share.push_back(x.server_share * 100);
        }
        std::printf("| %s | %s | %s | %s%% |\n", name, cell(rate, "%.0f").c_str(), cell(cpu, "%.2f").c_str(),
                    cell(share, "%.0f").c_str());
    };
    row("lens::event_stream (typed events)", lens_samples);
    row("raw Beast + lens::sse::parser + json::parse", raw_samples);

    if (memory_events > 0) {
        std::vector<double> heap;
        const auto every = std::max<std::uint64_t>(1, memory_events / 10);
        const double before = static_cast<double>(mallinfo2().uordblks) / 1048576.0;
        const auto t0 = bench::clock_type::now();
        const auto n = run(ctx, read_lens(port, memory_events, every, &heap));
        const double wall = std::chrono::duration<double>(bench::clock_type::now() - t0).count();
        std::printf("\nOne lens::event_stream of %zu events (%.0f events/s): heap in use before %.2f MiB, every %llu "
                    "events:",
                    n, static_cast<double>(n) / wall, before, static_cast<unsigned long long>(every));
        for (double h : heap)
            std::printf(" %.2f", h);
        std::printf(" MiB\n");
    }
    kill(server, SIGTERM);
    waitpid(server, nullptr, 0);
    return 0;
}
