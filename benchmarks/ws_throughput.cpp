// WebSocket control channel: lens::session against a raw Beast client doing the
// same request/reply loop, in the same run, against the same emulator; then the
// client's resident memory per idle session at 1,000 sessions on one thread.
//
//   build/bin/bench_ws_throughput [--requests N] [--rounds R] [--sessions S]
//
// The emulator runs on its own thread (throughput) or in a child process
// (memory, so that only the client's memory is counted).
#include "process_support.hpp"

#include <lens/client.hpp>
#include <lens/emulator.hpp>
#include <lens/session.hpp>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <malloc.h>
#include <unistd.h>
#include <sys/wait.h>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using clock_type = std::chrono::steady_clock;

namespace {

struct result {
    double requests_per_second = 0;
    double p50_us = 0, p99_us = 0;
};

double percentile(std::vector<double>& v, double p)
{
    if (v.empty()) return 0;
    std::size_t k = static_cast<std::size_t>(p * (v.size() - 1));
    std::nth_element(v.begin(), v.begin() + k, v.end());
    return v[k];
}

result summarise(std::vector<double>& latencies_us, clock_type::duration elapsed)
{
    result r;
    r.requests_per_second = latencies_us.size() / std::chrono::duration<double>(elapsed).count();
    r.p50_us = percentile(latencies_us, 0.50);
    r.p99_us = percentile(latencies_us, 0.99);
    return r;
}

const std::string validate_frame = R"({"type":"session.validate"})";

/// lens::session: `inflight` coroutines each looping validate() until `total` are done.
result run_lens(const lens::config& cfg, const std::string& endpoint, int inflight, int total)
{
    asio::io_context ctx;
    std::vector<double> lat;
    lat.reserve(total);
    clock_type::duration elapsed{};
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        auto s = co_await lens::session::open(cfg, endpoint);
        int issued = 0, running = inflight;
        // Woken by the last worker; no polling, which would cost the client timer syscalls.
        asio::steady_timer all_done(ctx, clock_type::time_point::max());
        auto worker = [&]() -> asio::awaitable<void> {
            while (issued < total) {
                ++issued;
                const auto t0 = clock_type::now();
                auto v = co_await s.validate();
                if (!v.is_valid) throw std::runtime_error("invalid reply");
                lat.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
            }
            if (--running == 0) all_done.cancel();
        };
        const auto start = clock_type::now();
        for (int i = 0; i < inflight; ++i)
            asio::co_spawn(ctx, worker(), [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
        co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
        elapsed = clock_type::now() - start;
        s.close();
    }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
    ctx.run();
    return summarise(lat, elapsed);
}

/// The floor: a raw Beast WebSocket client, `inflight` requests pipelined, no matching, no timers.
result run_raw(const lens::config& cfg, const std::string& endpoint, int inflight, int total)
{
    asio::io_context ctx;
    std::vector<double> lat;
    lat.reserve(total);
    clock_type::duration elapsed{};
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        auto url = boost::urls::parse_uri(endpoint).value();
        asio::ip::tcp::resolver resolver(ctx);
        websocket::stream<beast::tcp_stream> ws(ctx);
        auto results = co_await resolver.async_resolve(std::string(url.host()), std::string(url.port()), asio::use_awaitable);
        co_await beast::get_lowest_layer(ws).async_connect(results, asio::use_awaitable);
        beast::get_lowest_layer(ws).socket().set_option(asio::ip::tcp::no_delay(true));
        beast::get_lowest_layer(ws).expires_never();
        ws.set_option(websocket::stream_base::decorator([&](websocket::request_type& req) {
            req.set(beast::http::field::authorization, "Bearer " + cfg.api_key);
        }));
        co_await ws.async_handshake(std::string(url.host()) + ":" + std::string(url.port()), std::string(url.path()),
                                    asio::use_awaitable);
        ws.binary(true);
        std::deque<clock_type::time_point> sent;
        beast::flat_buffer buffer;
        int issued = 0;
        const auto start = clock_type::now();
        for (; issued < std::min(inflight, total); ++issued) {
            sent.push_back(clock_type::now());
            co_await ws.async_write(asio::buffer(validate_frame), asio::use_awaitable);
        }
        while (static_cast<int>(lat.size()) < total) {
            co_await ws.async_read(buffer, asio::use_awaitable);
            buffer.consume(buffer.size());
            lat.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - sent.front()).count());
            sent.pop_front();
            if (issued < total) {
                ++issued;
                sent.push_back(clock_type::now());
                co_await ws.async_write(asio::buffer(validate_frame), asio::use_awaitable);
            }
        }
        elapsed = clock_type::now() - start;
        co_await ws.async_close(websocket::close_code::normal, asio::use_awaitable);
    }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
    ctx.run();
    return summarise(lat, elapsed);
}

template <class T>
T run_sync(asio::awaitable<T> a)
{
    asio::io_context ctx;
    auto f = asio::co_spawn(ctx, std::move(a), asio::use_future);
    ctx.run();
    return f.get();
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

void throughput(int total, int rounds, const std::vector<int>& windows, const std::string& only)
{
    asio::io_context server_ctx;
    lens::emulator::options opts;
    opts.max_sessions = 4;
    lens::emulator::server server(server_ctx.get_executor(), opts);
    server.start();
    auto guard = asio::make_work_guard(server_ctx);
    std::thread server_thread([&] { server_ctx.run(); });

    lens::config cfg;
    cfg.endpoint = server.endpoint();
    cfg.api_key = server.api_key();
    auto record = run_sync([&]() -> asio::awaitable<lens::session_record> {
        lens::client c(co_await asio::this_coro::executor, cfg);
        co_return co_await c.create_session(std::string(lens::emulator::builtin::mailbox));
    }());

    std::printf("session.validate round trips, %d per run, median of %d runs (lens and raw Beast alternate)\n",
                total, rounds);
    std::printf("%9s | %12s %12s %7s | %10s %10s | %10s %10s\n", "in flight", "lens req/s", "raw req/s",
                "ratio", "lens p50us", "raw p50us", "lens p99us", "raw p99us");
    double lockstep = 0;
    std::vector<std::pair<int, double>> multiplexed;
    for (int inflight : windows) {
        std::vector<double> lr, rr, lp50, rp50, lp99, rp99;
        for (int i = 0; i < rounds; ++i) {
            auto l = only == "raw" ? result{} : run_lens(cfg, record.session_endpoint, inflight, total);
            auto r = only == "lens" ? result{} : run_raw(cfg, record.session_endpoint, inflight, total);
            lr.push_back(l.requests_per_second); rr.push_back(r.requests_per_second);
            lp50.push_back(l.p50_us); rp50.push_back(r.p50_us);
            lp99.push_back(l.p99_us); rp99.push_back(r.p99_us);
        }
        std::printf("%9d | %12.0f %12.0f %7.2f | %10.1f %10.1f | %10.1f %10.1f\n", inflight, median(lr), median(rr),
                    median(lr) / median(rr), median(lp50), median(rp50), median(lp99), median(rp99));
        if (inflight == 1)
            lockstep = median(rr);
        else if (lockstep > 0)
            multiplexed.emplace_back(inflight, median(lr));
    }
    // The Python SDK's way (one request at a time) is the raw client at 1 in flight.
    for (auto [inflight, rps] : multiplexed)
        std::printf("lens at %d in flight vs a raw lockstep Beast client: %.1fx\n", inflight, rps / lockstep);
    guard.reset();
    asio::post(server_ctx, [&] { server.stop(); });
    server_thread.join();
}

void memory(int sessions)
{
    // The emulator runs in a child process so that only the client's memory is counted.
    lens::emulator::options server_opts;
    server_opts.max_sessions = static_cast<std::size_t>(sessions) + 10;
    server_opts.ws.query_latency = std::chrono::milliseconds(0);
    bench::emulator_process server(server_opts);

    lens::config cfg;
    cfg.endpoint = server.endpoint();
    cfg.api_key = "emulator-key";
    asio::io_context ctx;
    long before = 0, after = 0;
    std::size_t heap_before = 0, heap_after = 0;
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        lens::client rest(ctx.get_executor(), cfg);
        std::vector<std::string> endpoints;
        for (int i = 0; i < sessions; ++i)
            endpoints.push_back((co_await rest.create_session(std::string(lens::emulator::builtin::mailbox))).session_endpoint);
        lens::session_options opts;
        opts.heartbeat_idle = std::chrono::milliseconds(0);
        { // warm up: code pages, allocator arenas, TLS-free path
            auto warm = co_await lens::session::open(cfg, endpoints.back(), opts);
            co_await warm.validate();
        }
        before = bench::resident_bytes();
        heap_before = mallinfo2().uordblks;
        std::vector<lens::session> open;
        open.reserve(sessions);
        for (auto& e : endpoints) {
            open.push_back(co_await lens::session::open(cfg, e, opts));
        }
        for (auto& s : open) co_await s.validate(); // each has done one round trip, then idles
        after = bench::resident_bytes();
        heap_after = mallinfo2().uordblks;
        for (auto& s : open) s.close();
    }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
    ctx.run();
    std::printf("\nidle sessions on one thread: %d; client RSS %.1f MiB -> %.1f MiB; %.1f KiB per session "
                "(heap in use: %.1f KiB per session)\n",
                sessions, before / 1048576.0, after / 1048576.0, (after - before) / 1024.0 / sessions,
                (static_cast<double>(heap_after) - static_cast<double>(heap_before)) / 1024.0 / sessions);
}

} // namespace

int main(int argc, char** argv)
{
    int total = 20000, rounds = 5, sessions = 1000;
    std::vector<int> windows{1, 16, 128};
    std::string only; // "lens" or "raw": profile one side alone
    bool ok = true;
    for (int i = 1; ok && i < argc; i += 2) {
        const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
        if (!value) ok = false;
        else if (!std::strcmp(argv[i], "--requests")) total = std::atoi(value);
        else if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(value);
        else if (!std::strcmp(argv[i], "--sessions")) sessions = std::atoi(value);
        else if (!std::strcmp(argv[i], "--in-flight")) windows = {std::atoi(value)}; // one window only
        else if (!std::strcmp(argv[i], "--only")) only = value;
        else ok = false;
    }
    if (!ok || total <= 0 || rounds <= 0 || windows.front() <= 0 || (!only.empty() && only != "lens" && only != "raw")) {
        std::fprintf(stderr, "usage: %s [--requests N] [--rounds R] [--sessions S (0: skip memory)] "
                             "[--in-flight W] [--only lens|raw]\n", argv[0]);
        return 2;
    }
    std::printf("machine: %u hardware threads; emulator on its own thread, client on one thread\n",
                std::thread::hardware_concurrency());
    throughput(total, rounds, windows, only);
    if (sessions > 0)
        memory(sessions);
}
