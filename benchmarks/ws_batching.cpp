// Client CPU per round trip on the WebSocket control channel, the server in ANOTHER
// process: lens::session at 16/64/128 requests in flight on one session against two
// raw Beast clients, the yardsticks:
//   - raw lockstep: 64 connections, one request in flight on each (the Python SDK's way,
//     64 times over), one write and one read system call per round trip;
//   - raw pipelined: one connection, 128 requests in flight, one write per request.
//
//   build/bin/bench_ws_batching [--requests N] [--rounds R] [--server responder|emulator] [--only TEXT]
//
// `--only TEXT` runs only the clients whose name contains TEXT (e.g. "x 128"), to profile
// one of them (strace -c, perf) without the others.
//
// The server is, by default, a minimal one-thread Beast responder in a child process: it
// answers every frame with `{"type":"session.validate.response","event_data":{"is_valid":true}}`
// and does nothing else (no auth, no JSON parsing), so that the emulator's own work does
// not hide the client's cost. `--server emulator` uses the lens emulator instead.
// Every configuration runs once per round, rounds interleaved; the table gives the median
// with min-max of requests/s and of client CPU (getrusage user+sys of this process, which
// runs only the client, on one thread) per round trip.
#include "process_support.hpp"

#include <lens/client.hpp>
#include <lens/emulator.hpp>
#include <lens/session.hpp>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

bool verbose = false; ///< --only: the session's counters after each run, on stderr

const std::string request_frame = R"({"type":"session.validate"})";
const std::string reply_frame = R"({"type":"session.validate.response","event_data":{"is_valid":true}})";

// ---- the responder: a child process ------------------------------------------------

asio::awaitable<void> respond(tcp::socket socket)
{
    socket.set_option(tcp::no_delay(true));
    websocket::stream<tcp::socket> ws(std::move(socket));
    auto [aec] = co_await ws.async_accept(asio::as_tuple(asio::use_awaitable));
    if (aec)
        co_return;
    ws.text(true);
    beast::flat_buffer buf;
    for (;;) {
        auto [rec, n] = co_await ws.async_read(buf, asio::as_tuple(asio::use_awaitable));
        if (rec)
            co_return;
        buf.consume(buf.size());
        auto [wec, m] = co_await ws.async_write(asio::buffer(reply_frame), asio::as_tuple(asio::use_awaitable));
        if (wec)
            co_return;
    }
}

/// The responder serving in a child process until this object is destroyed (SIGTERM).
class responder_process {
public:
    responder_process()
    {
        int fds[2];
        if (pipe(fds) != 0)
            throw std::runtime_error("pipe");
        pid_ = fork();
        if (pid_ < 0)
            throw std::runtime_error("fork");
        if (pid_ == 0) {
            close(fds[0]);
            {
                asio::io_context ctx(1);
                tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
                const auto line = std::to_string(acceptor.local_endpoint().port()) + "\n";
                if (write(fds[1], line.data(), line.size()) < 0)
                    _exit(1);
                close(fds[1]);
                asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
                    for (;;) {
                        auto [ec, s] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
                        if (ec)
                            co_return;
                        asio::co_spawn(ctx, respond(std::move(s)), asio::detached);
                    }
                }, asio::detached);
                asio::signal_set stop(ctx, SIGTERM);
                stop.async_wait([&](auto, int) { ctx.stop(); });
                ctx.run();
            }
            _exit(0);
        }
        close(fds[1]);
        std::string port;
        char c;
        while (read(fds[0], &c, 1) == 1 && c != '\n')
            port += c;
        close(fds[0]);
        port_ = port;
    }
    ~responder_process()
    {
        kill(pid_, SIGTERM);
        waitpid(pid_, nullptr, 0);
    }
    responder_process(const responder_process&) = delete;
    responder_process& operator=(const responder_process&) = delete;
    const std::string& port() const noexcept { return port_; }

private:
    pid_t pid_ = -1;
    std::string port_;
};

// ---- measuring ---------------------------------------------------------------------

double cpu_seconds()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

struct sample {
    double requests_per_second = 0;
    double cpu_us_per_request = 0;
};

/// Runs `body` on a fresh io_context (this thread alone) and measures it: `body` starts
/// its clock with `begin()` once connected, and completes `total` round trips.
template <class Body>
sample measure(int total, Body body)
{
    asio::io_context ctx(1);
    clock_type::time_point t0{}, t1{};
    double c0 = 0, c1 = 0;
    auto begin = [&] { t0 = clock_type::now(); c0 = cpu_seconds(); };
    auto end = [&] { t1 = clock_type::now(); c1 = cpu_seconds(); };
    asio::co_spawn(ctx, body(std::function<void()>(begin), std::function<void()>(end)),
                   [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
    ctx.run();
    sample s;
    s.requests_per_second = total / std::chrono::duration<double>(t1 - t0).count();
    s.cpu_us_per_request = (c1 - c0) * 1e6 / total;
    return s;
}

struct target {
    std::string host, port, path;
    lens::config cfg;
    std::string session_endpoint;
};

asio::awaitable<websocket::stream<beast::tcp_stream>> raw_connect(const target& t)
{
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    websocket::stream<beast::tcp_stream> ws(ex);
    auto results = co_await resolver.async_resolve(t.host, t.port, asio::use_awaitable);
    co_await beast::get_lowest_layer(ws).async_connect(results, asio::use_awaitable);
    beast::get_lowest_layer(ws).socket().set_option(tcp::no_delay(true));
    beast::get_lowest_layer(ws).expires_never();
    ws.set_option(websocket::stream_base::decorator([key = t.cfg.api_key](websocket::request_type& req) {
        req.set(beast::http::field::authorization, "Bearer " + key);
    }));
    co_await ws.async_handshake(t.host + ":" + t.port, t.path, asio::use_awaitable);
    ws.binary(true);
    co_return ws;
}

/// `connections` raw Beast connections, one request in flight on each.
sample raw_lockstep(const target& t, int connections, int total)
{
    return measure(total, [&](std::function<void()> begin, std::function<void()> end) -> asio::awaitable<void> {
        std::vector<std::unique_ptr<websocket::stream<beast::tcp_stream>>> conns;
        for (int i = 0; i < connections; ++i)
            conns.push_back(std::make_unique<websocket::stream<beast::tcp_stream>>(co_await raw_connect(t)));
        auto ex = co_await asio::this_coro::executor;
        int issued = 0, running = connections;
        asio::steady_timer all_done(ex, clock_type::time_point::max());
        begin();
        for (auto& c : conns)
            asio::co_spawn(ex, [&, ws = c.get()]() -> asio::awaitable<void> {
                beast::flat_buffer buf;
                while (issued < total) {
                    ++issued;
                    co_await ws->async_write(asio::buffer(request_frame), asio::use_awaitable);
                    co_await ws->async_read(buf, asio::use_awaitable);
                    buf.consume(buf.size());
                }
                if (--running == 0)
                    all_done.cancel();
            }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
        co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
        end();
        for (auto& c : conns)
            beast::get_lowest_layer(*c).close();
    });
}

/// One raw Beast connection, `inflight` requests pipelined, no matching, no timers.
sample raw_pipelined(const target& t, int inflight, int total)
{
    return measure(total, [&](std::function<void()> begin, std::function<void()> end) -> asio::awaitable<void> {
        auto ws = co_await raw_connect(t);
        beast::flat_buffer buf;
        begin();
        int issued = 0, received = 0;
        for (; issued < std::min(inflight, total); ++issued)
            co_await ws.async_write(asio::buffer(request_frame), asio::use_awaitable);
        while (received < total) {
            co_await ws.async_read(buf, asio::use_awaitable);
            buf.consume(buf.size());
            ++received;
            if (issued < total) {
                ++issued;
                co_await ws.async_write(asio::buffer(request_frame), asio::use_awaitable);
            }
        }
        end();
        beast::get_lowest_layer(ws).close();
    });
}

/// lens::session: `inflight` coroutines each looping validate() until `total` are done.
sample lens_session(const target& t, int inflight, int total)
{
    return measure(total, [&](std::function<void()> begin, std::function<void()> end) -> asio::awaitable<void> {
        lens::session_options opts;
        opts.heartbeat_idle = std::chrono::milliseconds(0); // the responder answers every frame as validate
        auto s = co_await lens::session::open(t.cfg, t.session_endpoint, opts);
        auto ex = co_await asio::this_coro::executor;
        int issued = 0, running = inflight;
        asio::steady_timer all_done(ex, clock_type::time_point::max());
        auto worker = [&]() -> asio::awaitable<void> {
            while (issued < total) {
                ++issued;
                auto v = co_await s.validate();
                if (!v.is_valid)
                    throw std::runtime_error("invalid reply");
            }
            if (--running == 0)
                all_done.cancel();
        };
        begin();
        for (int i = 0; i < inflight; ++i)
            asio::co_spawn(ex, worker(), [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
        co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
        end();
        if (verbose) {
            const auto st = s.stats();
            std::fprintf(stderr, "lens x %d: connects %zu, requests sent %zu, replies matched %zu\n", inflight,
                         st.connects, st.requests_sent, st.replies_matched);
        }
        s.close();
    });
}

struct series {
    std::string name;
    std::function<sample()> run;
    std::vector<double> rps, cpu;
};

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv)
{
    int total = 20000, rounds = 5;
    std::string server_kind = "responder", only;
    bool ok = true;
    for (int i = 1; ok && i < argc; i += 2) {
        const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
        if (!value) ok = false;
        else if (!std::strcmp(argv[i], "--requests")) total = std::atoi(value);
        else if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(value);
        else if (!std::strcmp(argv[i], "--server")) server_kind = value;
        else if (!std::strcmp(argv[i], "--only")) only = value;
        else ok = false;
    }
    if (!ok || total <= 0 || rounds <= 0 || (server_kind != "responder" && server_kind != "emulator")) {
        std::fprintf(stderr, "usage: %s [--requests N] [--rounds R] [--server responder|emulator] [--only TEXT]\n", argv[0]);
        return 2;
    }

    target t;
    std::optional<responder_process> responder;
    std::optional<bench::emulator_process> emulator;
    if (server_kind == "responder") {
        responder.emplace();
        t.host = "127.0.0.1";
        t.port = responder->port();
        t.path = "/ws/bench";
        t.cfg.endpoint = "http://127.0.0.1:" + t.port;
        t.cfg.api_key = "bench-key";
        t.session_endpoint = "ws://127.0.0.1:" + t.port + t.path;
    } else {
        lens::emulator::options opts;
        opts.max_sessions = 4;
        emulator.emplace(opts);
        t.cfg.endpoint = emulator->endpoint();
        t.cfg.api_key = "emulator-key";
        asio::io_context ctx;
        auto f = asio::co_spawn(ctx, [&]() -> asio::awaitable<lens::session_record> {
            lens::client c(co_await asio::this_coro::executor, t.cfg);
            co_return co_await c.create_session(std::string(lens::emulator::builtin::mailbox));
        }(), asio::use_future);
        ctx.run();
        t.session_endpoint = f.get().session_endpoint;
        auto url = boost::urls::parse_uri(t.session_endpoint).value();
        t.host = url.host();
        t.port = url.port();
        t.path = url.path();
    }

    std::vector<series> all;
    all.push_back({"raw lockstep, 64 connections x 1", [&] { return raw_lockstep(t, 64, total); }, {}, {}});
    all.push_back({"raw pipelined, 1 connection x 128", [&] { return raw_pipelined(t, 128, total); }, {}, {}});
    for (int w : {16, 64, 128})
        all.push_back({"lens, 1 session x " + std::to_string(w), [&, w] { return lens_session(t, w, total); }, {}, {}});

    verbose = !only.empty();
    if (!only.empty())
        all.erase(std::remove_if(all.begin(), all.end(),
                                 [&](const series& s) { return s.name.find(only) == std::string::npos; }),
                  all.end());
    if (all.empty()) {
        std::fprintf(stderr, "no client matches --only %s\n", only.c_str());
        return 2;
    }
    for (auto& s : all) // warm-up: code pages, allocator arenas
        s.run();
    for (int r = 0; r < rounds; ++r)
        for (auto& s : all) {
            const auto x = s.run();
            s.rps.push_back(x.requests_per_second);
            s.cpu.push_back(x.cpu_us_per_request);
        }

    std::printf("server: %s in another process; %d session.validate round trips per run; median [min-max] of %d "
                "interleaved rounds; client on one thread\n", server_kind.c_str(), total, rounds);
    std::printf("%-36s | %24s | %28s\n", "client", "requests/s", "client CPU us/round trip");
    for (auto& s : all) {
        const auto [rmin, rmax] = std::minmax_element(s.rps.begin(), s.rps.end());
        const auto [cmin, cmax] = std::minmax_element(s.cpu.begin(), s.cpu.end());
        std::printf("%-36s | %8.0f [%6.0f-%6.0f] | %8.2f [%6.2f-%6.2f]\n", s.name.c_str(), median(s.rps), *rmin,
                    *rmax, median(s.cpu), *cmin, *cmax);
    }
    if (!only.empty())
        return 0;
    const double lockstep_cpu = median(all[0].cpu), lockstep_rps = median(all[0].rps);
    for (std::size_t i = 2; i < all.size(); ++i)
        std::printf("%s: CPU per round trip %.2fx the raw lockstep client's, requests/s %.2fx\n", all[i].name.c_str(),
                    median(all[i].cpu) / lockstep_cpu, median(all[i].rps) / lockstep_rps);
}
