// Many wss sessions on one thread: client memory per session and sessions opened per
// second, for the two ways of opening them, interleaved in one run:
//
//   shared   client.open_session(record): every session uses the client's endpoint,
//            one TLS context whose trust store was loaded once;
//   private  session::open(cfg, record): each session builds its own endpoint and TLS
//            context (system trust store loaded per session) — what every session did
//            before the endpoint existed.
//
//   build/bin/bench_wss_sessions [--sessions N] [--rounds R]
//
// The emulator (TLS) runs in a child process; each measurement runs in a fresh child
// process of its own, so its RSS counts only that client. Reported per measurement:
// RSS and heap growth per open idle session, sessions opened per second (wall), and
// client CPU (user + system, getrusage) per session opened. Medians over the rounds.
#include "process_support.hpp"

#include <lens/client.hpp>
#include <lens/emulator.hpp>
#include <lens/session.hpp>

#include <boost/asio.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace {

double cpu_seconds()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

struct sample {
    double rss_kib = 0, heap_kib = 0, opened_per_s = 0, cpu_ms = 0;
};

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

/// Runs in a child process: opens one session per endpoint, all idle on one thread.
sample measure(const lens::config& cfg, const std::vector<lens::session_record>& records, bool shared)
{
    asio::io_context ctx;
    sample out;
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        lens::client rest(ctx.get_executor(), cfg);
        lens::session_options opts;
        opts.heartbeat_idle = std::chrono::milliseconds(0);
        // Warm up: code pages, allocator arenas, OpenSSL's one-time initialisation.
        // (if/else, not ?: — g++ 12 mis-compiles co_await in both arms.)
        if (shared) {
            auto warm = co_await rest.open_session(records.back(), opts);
            co_await warm.validate();
        } else {
            auto warm = co_await lens::session::open(cfg, records.back(), opts);
            co_await warm.validate();
        }
        const long rss0 = bench::resident_bytes();
        const auto heap0 = mallinfo2().uordblks;
        const double cpu0 = cpu_seconds();
        const auto t0 = clock_type::now();
        std::vector<lens::session> open;
        open.reserve(records.size());
        for (auto& r : records) {
            if (shared)
                open.push_back(co_await rest.open_session(r, opts));
            else
                open.push_back(co_await lens::session::open(cfg, r, opts));
        }
        const double wall = std::chrono::duration<double>(clock_type::now() - t0).count();
        const double cpu = cpu_seconds() - cpu0;
        for (auto& s : open)
            co_await s.validate(); // each has done one round trip, then idles
        const double n = static_cast<double>(records.size());
        out.rss_kib = (bench::resident_bytes() - rss0) / 1024.0 / n;
        out.heap_kib = (static_cast<double>(mallinfo2().uordblks) - static_cast<double>(heap0)) / 1024.0 / n;
        out.opened_per_s = n / wall;
        out.cpu_ms = cpu * 1000.0 / n;
        for (auto& s : open)
            s.close();
    }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
    ctx.run();
    return out;
}

/// `measure` in a fresh child process; the sample comes back through a pipe.
sample measure_in_child(const lens::config& cfg, const std::vector<lens::session_record>& records, bool shared)
{
    int fds[2];
    if (pipe(fds) != 0)
        throw std::runtime_error("pipe");
    const pid_t child = fork();
    if (child == 0) {
        close(fds[0]);
        sample s = measure(cfg, records, shared);
        if (write(fds[1], &s, sizeof s) != sizeof s)
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    sample s;
    const auto n = read(fds[0], &s, sizeof s);
    close(fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    if (n != sizeof s || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw std::runtime_error("a measurement failed");
    return s;
}

} // namespace

int main(int argc, char** argv)
{
    int sessions = 1000, rounds = 3;
    for (int i = 1; i < argc; ++i) {
        const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
        if (!value) break;
        if (!std::strcmp(argv[i], "--sessions")) sessions = std::atoi(value), ++i;
        else if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(value), ++i;
    }

    // The emulator, with TLS, in its own process.
    lens::emulator::options server_opts;
    server_opts.tls = true;
    server_opts.max_sessions = static_cast<std::size_t>(sessions) + 10;
    bench::emulator_process server(server_opts);

    lens::config cfg;
    cfg.endpoint = server.endpoint();
    cfg.api_key = "emulator-key";
    cfg.ca_file = server.ca_file();

    std::vector<lens::session_record> records;
    {
        asio::io_context ctx;
        asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
            lens::client rest(ctx.get_executor(), cfg);
            for (int i = 0; i < sessions; ++i)
                records.push_back(co_await rest.create_session(std::string(lens::emulator::builtin::mailbox)));
        }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
        ctx.run();
    }

    std::printf("%d wss sessions on one thread, emulator (TLS) in another process; %d rounds, interleaved\n",
                sessions, rounds);
    std::printf("%-8s | %12s %12s | %12s | %14s\n", "mode", "RSS KiB/ses", "heap KiB/ses", "opened/s",
                "CPU ms/opened");
    std::vector<double> rss[2], heap[2], rate[2], cpu[2];
    for (int r = 0; r < rounds; ++r)
        for (int mode = 0; mode < 2; ++mode) {
            const sample s = measure_in_child(cfg, records, mode == 0);
            rss[mode].push_back(s.rss_kib);
            heap[mode].push_back(s.heap_kib);
            rate[mode].push_back(s.opened_per_s);
            cpu[mode].push_back(s.cpu_ms);
            std::printf("%-8s | %12.1f %12.1f | %12.0f | %14.2f   (round %d)\n", mode == 0 ? "shared" : "private",
                        s.rss_kib, s.heap_kib, s.opened_per_s, s.cpu_ms, r + 1);
        }
    for (int mode = 0; mode < 2; ++mode)
        std::printf("%-8s | %12.1f %12.1f | %12.0f | %14.2f   (median)\n", mode == 0 ? "shared" : "private",
                    median(rss[mode]), median(heap[mode]), median(rate[mode]), median(cpu[mode]));
    return 0;
}
