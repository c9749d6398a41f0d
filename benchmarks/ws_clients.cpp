// The suite's C++ clients (benchmarks/run.sh runs them): one measurement per process,
// against a server in another process (bench_ws_responder or the emulator), printed as
// one JSON line.
//
//   build/bin/bench_ws_clients --mode MODE --url WS_URL --rest REST_URL [--key KEY]
//       [--ca-file PEM] [--in-flight K] [--sessions N] [--warmup S] [--duration S]
//       [--server-pid PID] [--open-concurrency W]
//
// Throughput modes (the request is {"type":"session.validate"}, binary, as lens sends it):
//   raw-lockstep    K raw Beast connections, one request in flight on each
//   raw-pipelined   one raw Beast connection, K requests in flight (no matching, no timers)
//   lens-pipelined  one lens::session, K coroutines each looping validate()
//   lens-sessions   K lens::sessions (one client, shared endpoint), one validate() in flight each
// They count replies in a window of --duration seconds after --warmup seconds and report
// requests/s, client CPU (getrusage) per request, the server's CPU share over the window
// (/proc/PID/stat of --server-pid), and latency percentiles.
//
// Memory modes (the process is fresh, so its RSS growth is the sessions'):
//   lens-idle       N lens::sessions opened through one lens::client, one validate() each, idle
//   raw-idle        N raw Beast connections, one round trip each, a read pending on each
// W (default 64) are opened at once. Reported: RSS and heap growth per session, sessions
// opened per second, CPU per open (the open alone, without the round trip).
#include "bench_support.hpp"

#include <lens/client.hpp>
#include <lens/session.hpp>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/url/parse.hpp>

#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <malloc.h>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using bench::clock_type;

namespace {

const std::string validate_frame = R"({"type":"session.validate"})";

struct args {
    std::string mode, url, rest, key = "emulator-key", ca_file;
    int in_flight = 1, sessions = 100;
    int open_width = 64; // idle modes: sessions being opened at once
    double warmup = 0.5, duration = 2.0;
    long server_pid = 0;
};

struct target {
    std::string host, port, path;
    bool tls = false;
};

target parse_target(const std::string& url)
{
    auto u = boost::urls::parse_uri(url).value();
    target t;
    t.tls = u.scheme() == "wss";
    t.host = u.host();
    t.port = u.has_port() ? std::string(u.port()) : (t.tls ? "443" : "80");
    t.path = u.encoded_path();
    return t;
}

void rethrow(std::exception_ptr e)
{
    if (e)
        std::rethrow_exception(e);
}

// ---- raw Beast ---------------------------------------------------------------------

using plain_ws = websocket::stream<tcp::socket>;
using tls_ws = websocket::stream<asio::ssl::stream<tcp::socket>>;

/// TCP connect, TLS handshake (if any), WebSocket upgrade with the Lens auth header.
template <class WS>
asio::awaitable<void> connect(WS& ws, const target& t, const tcp::resolver::results_type& addrs, const std::string& key)
{
    auto& sock = beast::get_lowest_layer(ws);
    co_await asio::async_connect(sock, addrs, asio::use_awaitable);
    sock.set_option(tcp::no_delay(true));
    if constexpr (std::is_same_v<WS, tls_ws>) {
        SSL_set_tlsext_host_name(ws.next_layer().native_handle(), t.host.c_str());
        co_await ws.next_layer().async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
    }
    ws.set_option(websocket::stream_base::decorator(
        [key](websocket::request_type& req) { req.set(beast::http::field::authorization, "Bearer " + key); }));
    co_await ws.async_handshake(t.host + ":" + t.port, t.path, asio::use_awaitable);
    ws.binary(true);
}

template <class WS>
std::unique_ptr<WS> make_ws(asio::io_context& ctx, asio::ssl::context* tls)
{
    if constexpr (std::is_same_v<WS, tls_ws>)
        return std::make_unique<WS>(ctx, *tls);
    else
        return std::make_unique<WS>(ctx);
}

std::unique_ptr<asio::ssl::context> client_tls(const args& a)
{
    auto tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    tls->set_verify_mode(asio::ssl::verify_peer);
    if (!a.ca_file.empty())
        tls->load_verify_file(a.ca_file);
    else
        tls->set_default_verify_paths();
    return tls;
}

/// `conns` connections, each one request in flight (conns == 1 with `pipelined`: K in flight on one).
template <class WS>
boost::json::object raw_throughput(const args& a, bool pipelined)
{
    asio::io_context ctx(1);
    const target t = parse_target(a.url);
    auto tls = client_tls(a);
    bench::window w(ctx, a.warmup, a.duration, a.server_pid);
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        tcp::resolver resolver(ctx);
        const auto addrs = co_await resolver.async_resolve(t.host, t.port, asio::use_awaitable);
        const int conns = pipelined ? 1 : a.in_flight;
        std::vector<std::unique_ptr<WS>> socks;
        for (int i = 0; i < conns; ++i) {
            socks.push_back(make_ws<WS>(ctx, tls.get()));
            co_await connect(*socks.back(), t, addrs, a.key);
        }
        int running = conns;
        asio::steady_timer all_done(ctx, clock_type::time_point::max());
        auto lockstep = [&](WS& ws) -> asio::awaitable<void> {
            beast::flat_buffer buffer;
            while (w.running()) {
                const auto sent = clock_type::now();
                co_await ws.async_write(asio::buffer(validate_frame), asio::use_awaitable);
                co_await ws.async_read(buffer, asio::use_awaitable);
                buffer.consume(buffer.size());
                w.record(sent);
            }
            if (--running == 0)
                all_done.cancel();
        };
        auto pipeline = [&](WS& ws) -> asio::awaitable<void> {
            beast::flat_buffer buffer;
            std::deque<clock_type::time_point> sent;
            for (int i = 0; i < a.in_flight; ++i) {
                sent.push_back(clock_type::now());
                co_await ws.async_write(asio::buffer(validate_frame), asio::use_awaitable);
            }
            while (!sent.empty()) {
                co_await ws.async_read(buffer, asio::use_awaitable);
                buffer.consume(buffer.size());
                w.record(sent.front());
                sent.pop_front();
                if (w.running()) {
                    sent.push_back(clock_type::now());
                    co_await ws.async_write(asio::buffer(validate_frame), asio::use_awaitable);
                }
            }
            if (--running == 0)
                all_done.cancel();
        };
        w.start();
        for (auto& s : socks) {
            if (pipelined)
                asio::co_spawn(ctx, pipeline(*s), rethrow);
            else
                asio::co_spawn(ctx, lockstep(*s), rethrow);
        }
        co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
        for (auto& s : socks)
            co_await s->async_close(websocket::close_code::normal, asio::as_tuple(asio::use_awaitable));
    }, rethrow);
    ctx.run();
    return w.summary();
}

// ---- lens --------------------------------------------------------------------------

lens::config lens_config(const args& a)
{
    lens::config cfg;
    cfg.endpoint = a.rest;
    cfg.api_key = a.key;
    cfg.ca_file = a.ca_file;
    return cfg;
}

lens::session_record record_for(const args& a)
{
    lens::session_record r;
    r.session_id = "lsn-bench";
    r.session_endpoint = a.url;
    return r;
}

/// One session with K validate() loops, or K sessions with one each.
boost::json::object lens_throughput(const args& a, bool many_sessions)
{
    asio::io_context ctx(1);
    bench::window w(ctx, a.warmup, a.duration, a.server_pid);
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        lens::client client(ctx.get_executor(), lens_config(a));
        const auto record = record_for(a);
        std::vector<lens::session> sessions;
        const int count = many_sessions ? a.in_flight : 1;
        for (int i = 0; i < count; ++i)
            sessions.push_back(co_await client.open_session(record));
        int running = a.in_flight;
        asio::steady_timer all_done(ctx, clock_type::time_point::max());
        auto worker = [&](lens::session& s) -> asio::awaitable<void> {
            while (w.running()) {
                const auto sent = clock_type::now();
                auto v = co_await s.validate();
                if (!v.is_valid)
                    throw std::runtime_error("invalid reply");
                w.record(sent);
            }
            if (--running == 0)
                all_done.cancel();
        };
        w.start();
        for (int i = 0; i < a.in_flight; ++i)
            asio::co_spawn(ctx, worker(sessions[many_sessions ? i : 0]), rethrow);
        co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
        for (auto& s : sessions)
            s.close();
    }, rethrow);
    ctx.run();
    return w.summary();
}

// ---- idle memory -------------------------------------------------------------------

/// Runs fn(i) for i in [0, n) with at most `width` running at once (one thread: no locks).
template <class Fn>
asio::awaitable<void> for_each_concurrently(int n, int width, Fn fn)
{
    auto ex = co_await asio::this_coro::executor;
    int next = 0, running = 0;
    std::exception_ptr failure;
    asio::steady_timer all_done(ex, clock_type::time_point::max());
    auto worker = [&]() -> asio::awaitable<void> {
        while (next < n && !failure) {
            const int i = next++;
            try {
                co_await fn(i);
            } catch (...) {
                failure = std::current_exception();
            }
        }
        if (--running == 0)
            all_done.cancel();
    };
    running = std::max(1, std::min(width, n));
    for (int w = running; w > 0; --w)
        asio::co_spawn(ex, worker(), asio::detached);
    co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
    if (failure)
        std::rethrow_exception(failure);
}

struct idle_sample {
    long rss0 = 0, rss1 = 0, server_rss0 = 0, server_rss1 = 0;
    std::size_t heap0 = 0, heap1 = 0;
    double open_wall = 0, open_cpu = 0;
};

boost::json::object idle_summary(const idle_sample& s, int n)
{
    boost::json::object o;
    o["sessions"] = n;
    o["rss_kib_per_session"] = static_cast<double>(s.rss1 - s.rss0) / 1024.0 / n;
    o["heap_kib_per_session"] = (static_cast<double>(s.heap1) - static_cast<double>(s.heap0)) / 1024.0 / n;
    o["rss_mib_total"] = static_cast<double>(s.rss1) / 1048576.0;
    o["server_rss_kib_per_session"] = static_cast<double>(s.server_rss1 - s.server_rss0) / 1024.0 / n;
    o["opened_per_s"] = s.open_wall > 0 ? n / s.open_wall : 0.0;
    o["cpu_ms_per_open"] = s.open_cpu * 1000.0 / n;
    return o;
}

boost::json::object lens_idle(const args& a)
{
    // Leaked on purpose, as the connections: main exits the process right after the report.
    auto& ctx = *new asio::io_context(1);
    idle_sample out;
    auto& open = *new std::vector<lens::session>;
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        lens::client client(ctx.get_executor(), lens_config(a));
        const auto record = record_for(a);
        lens::session_options opts;
        opts.heartbeat_idle = std::chrono::milliseconds(0);
        { // warm up: code pages, allocator arenas, OpenSSL's one-time initialisation
            auto warm = co_await client.open_session(record, opts);
            co_await warm.validate();
            warm.close();
        }
        out.rss0 = bench::resident_bytes();
        out.server_rss0 = bench::resident_bytes_of(a.server_pid);
        out.heap0 = mallinfo2().uordblks;
        const double cpu0 = bench::cpu_seconds();
        const auto t0 = clock_type::now();
        open.reserve(a.sessions);
        co_await for_each_concurrently(a.sessions, a.open_width, [&](int) -> asio::awaitable<void> {
            open.push_back(co_await client.open_session(record, opts));
        });
        out.open_wall = std::chrono::duration<double>(clock_type::now() - t0).count();
        out.open_cpu = bench::cpu_seconds() - cpu0;
        // Each does one round trip, then idles.
        co_await for_each_concurrently(a.sessions, a.open_width, [&](int i) -> asio::awaitable<void> {
            co_await open[i].validate();
        });
        out.rss1 = bench::resident_bytes();
        out.server_rss1 = bench::resident_bytes_of(a.server_pid);
        out.heap1 = mallinfo2().uordblks;
        ctx.stop(); // the process exits with the sessions open: closing 10,000 is not measured
    }, rethrow);
    ctx.run();
    return idle_summary(out, a.sessions);
}

template <class WS>
boost::json::object raw_idle(const args& a)
{
    // Leaked on purpose, as in lens_idle.
    auto& ctx = *new asio::io_context(1);
    const target t = parse_target(a.url);
    auto tls = client_tls(a).release();
    idle_sample out;
    struct conn {
        std::unique_ptr<WS> ws;
        beast::flat_buffer buffer;
    };
    auto& open = *new std::list<conn>;
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        tcp::resolver resolver(ctx);
        const auto addrs = co_await resolver.async_resolve(t.host, t.port, asio::use_awaitable);
        auto round_trip = [&](conn& c) -> asio::awaitable<void> {
            co_await c.ws->async_write(asio::buffer(validate_frame), asio::use_awaitable);
            co_await c.ws->async_read(c.buffer, asio::use_awaitable);
            c.buffer.consume(c.buffer.size());
        };
        { // warm up, as lens-idle does
            conn warm{make_ws<WS>(ctx, tls), {}};
            co_await connect(*warm.ws, t, addrs, a.key);
            co_await round_trip(warm);
            co_await warm.ws->async_close(websocket::close_code::normal, asio::use_awaitable);
        }
        out.rss0 = bench::resident_bytes();
        out.server_rss0 = bench::resident_bytes_of(a.server_pid);
        out.heap0 = mallinfo2().uordblks;
        const double cpu0 = bench::cpu_seconds();
        const auto t0 = clock_type::now();
        std::vector<conn*> conns;
        co_await for_each_concurrently(a.sessions, a.open_width, [&](int) -> asio::awaitable<void> {
            open.push_back(conn{make_ws<WS>(ctx, tls), {}});
            auto& c = open.back(); // std::list: stays where it is
            conns.push_back(&c);
            co_await connect(*c.ws, t, addrs, a.key);
        });
        out.open_wall = std::chrono::duration<double>(clock_type::now() - t0).count();
        out.open_cpu = bench::cpu_seconds() - cpu0;
        co_await for_each_concurrently(a.sessions, a.open_width, [&](int i) -> asio::awaitable<void> {
            co_await round_trip(*conns[i]);
            // Idle like a session: a read pending, so a close or a ping would be seen.
            conns[i]->ws->async_read(conns[i]->buffer, [](auto, auto) {});
        });
        out.rss1 = bench::resident_bytes();
        out.server_rss1 = bench::resident_bytes_of(a.server_pid);
        out.heap1 = mallinfo2().uordblks;
        ctx.stop();
    }, rethrow);
    ctx.run();
    return idle_summary(out, a.sessions);
}

} // namespace

int main(int argc, char** argv)
{
    args a;
    bool ok = true;
    for (int i = 1; ok && i < argc; i += 2) {
        const std::string k = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
        if (!v) ok = false;
        else if (k == "--mode") a.mode = v;
        else if (k == "--url") a.url = v;
        else if (k == "--rest") a.rest = v;
        else if (k == "--key") a.key = v;
        else if (k == "--ca-file") a.ca_file = v;
        else if (k == "--in-flight") a.in_flight = std::atoi(v);
        else if (k == "--sessions") a.sessions = std::atoi(v);
        else if (k == "--open-concurrency") a.open_width = std::atoi(v);
        else if (k == "--warmup") a.warmup = std::atof(v);
        else if (k == "--duration") a.duration = std::atof(v);
        else if (k == "--server-pid") a.server_pid = std::atol(v);
        else ok = false;
    }
    if (!ok || a.url.empty() || a.in_flight <= 0 || a.sessions <= 0 || a.duration <= 0) {
        std::fprintf(stderr,
                     "usage: %s --mode raw-lockstep|raw-pipelined|lens-pipelined|lens-sessions|lens-idle|raw-idle "
                     "--url WS_URL --rest REST_URL [--key KEY] [--ca-file PEM] [--in-flight K] [--sessions N] "
                     "[--warmup S] [--duration S] [--server-pid PID] [--open-concurrency W]\n",
                     argv[0]);
        return 2;
    }
    const bool tls = parse_target(a.url).tls;
    boost::json::object o;
    try {
        if (a.mode == "raw-lockstep")
            o = tls ? raw_throughput<tls_ws>(a, false) : raw_throughput<plain_ws>(a, false);
        else if (a.mode == "raw-pipelined")
            o = tls ? raw_throughput<tls_ws>(a, true) : raw_throughput<plain_ws>(a, true);
        else if (a.mode == "lens-pipelined")
            o = lens_throughput(a, false);
        else if (a.mode == "lens-sessions")
            o = lens_throughput(a, true);
        else if (a.mode == "lens-idle")
            o = lens_idle(a);
        else if (a.mode == "raw-idle")
            o = tls ? raw_idle<tls_ws>(a) : raw_idle<plain_ws>(a);
        else {
            std::fprintf(stderr, "unknown mode %s\n", a.mode.c_str());
            return 2;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", a.mode.c_str(), e.what());
        return 1;
    }
    o["client"] = a.mode;
    o["in_flight"] = a.in_flight;
    o["tls"] = tls;
    std::cout << boost::json::serialize(o) << std::endl;
    std::_Exit(0); // idle modes leave thousands of connections open: the kernel closes them
}
