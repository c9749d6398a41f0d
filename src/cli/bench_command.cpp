// lens bench: a load generator for any Lens endpoint; lens bench merge: adds up runs.
//
// Phases. N sessions are created and their control channels opened (and, with --sse, their
// event streams connected), spread round robin over the threads of a lens::runtime; that
// is `connect_s`. When the last one is open every thread's gate opens at once and each
// session runs K workers, each looping request → latency until the budget (--requests, a
// shared count, or --duration, one deadline) is spent. The measured phase (rate, CPU,
// latency) is the time between the gate opening and the last worker ending; creating and
// destroying sessions is not in it. Then every session is destroyed (lens::with_session).
//
// Latency goes into one histogram per thread (src/cli/histogram.hpp), merged at the end;
// --histogram-out writes it with the run's counters so that `lens bench merge` adds runs
// of several processes or hosts up exactly.
//
// Without --endpoint the emulator runs in a child process (`lens emulator`, this very
// binary), so that load generator and server never share a core by accident. The child is
// in its own process group (a Ctrl-C at the terminal reaches the bench only, which
// destroys its sessions first) and dies with the bench (PR_SET_PDEATHSIG); it is stopped
// with SIGTERM at the end.
//
// Signals. The first SIGINT or SIGTERM shuts the runtime down: every task is cancelled
// and its with_session destroys the session (see lens/runtime.hpp); later signals are
// ignored while that happens (each destroy has its deadline). The exit status is then
// 128 + the signal, and nothing is printed on stdout.
#include "cli/commands.hpp"
#include "cli/histogram.hpp"
#include "cli/progress.hpp"

#include <lens/client.hpp>
#include <lens/emulator.hpp>
#include <lens/error.hpp>
#include <lens/event_stream.hpp>
#include <lens/events.hpp>
#include <lens/query.hpp>
#include <lens/runtime.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <charconv>
#include <iostream>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace lens::cli {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace asio::experimental::awaitable_operators;

namespace {

using clock = std::chrono::steady_clock;

struct bench_args {
    std::size_t sessions = 1;
    std::size_t inflight = 1;
    double duration_seconds = 0; ///< 0 with --requests 0: the default, 10 s
    std::uint64_t requests = 0;  ///< 0: run for a duration
    std::string event = "session.validate";
    std::string image;
    std::size_t threads = 1;
    bool sse = false;
    std::string lens_id;
    std::string histogram_out;
    bool progress = false;
    bool no_progress = false;
};

constexpr double default_duration_seconds = 10;

/// The requests `lens bench --event` sends through typed calls; any other type goes
/// through session::call.
enum class request_kind { validate, status, query, update, read, heartbeat, other };

request_kind kind_of(const std::string& event)
{
    if (event == "session.validate") return request_kind::validate;
    if (event == "session.status") return request_kind::status;
    if (event == "model.query") return request_kind::query;
    if (event == "session.update") return request_kind::update;
    if (event == "session.read") return request_kind::read;
    if (event == "session.heartbeat") return request_kind::heartbeat;
    return request_kind::other;
}

/// The name an error is counted under in `errors_by_code`: a lens::errc's own name, else
/// the category and message of whatever Asio, Beast or the system reported.
std::string code_name(const boost::system::error_code& ec)
{
    if (ec.category() == lens::error_category()) {
        switch (static_cast<lens::errc>(ec.value())) {
        case errc::timeout: return "timeout";
        case errc::connection_failed: return "connection_failed";
        case errc::connection_lost: return "connection_lost";
        case errc::unauthorized: return "unauthorized";
        case errc::not_found: return "not_found";
        case errc::rate_limited: return "rate_limited";
        case errc::server_error: return "server_error";
        case errc::http_error: return "http_error";
        case errc::api_error: return "api_error";
        case errc::invalid_response: return "invalid_response";
        case errc::body_too_large: return "body_too_large";
        case errc::invalid_argument: return "invalid_argument";
        case errc::query_timed_out: return "query_timed_out";
        case errc::session_gone: return "session_gone";
        case errc::protocol_error: return "protocol_error";
        case errc::limit_exceeded: return "limit_exceeded";
        case errc::not_event_stream: return "not_event_stream";
        case errc::closed: return "closed";
        case errc::certificate_rejected: return "certificate_rejected";
        }
    }
    return std::string(ec.category().name()) + ": " + ec.message();
}

/// VmRSS of this process, in KiB (0 where /proc is not there).
std::uint64_t rss_kb()
{
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmRSS:", 0) == 0)
            return std::strtoull(line.c_str() + 6, nullptr, 10);
    return 0;
}

/// User plus system CPU time of the whole process (every thread), in microseconds.
std::uint64_t cpu_us()
{
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    auto us = [](const timeval& t) {
        return static_cast<std::uint64_t>(t.tv_sec) * 1000000u + static_cast<std::uint64_t>(t.tv_usec);
    };
    return us(u.ru_utime) + us(u.ru_stime);
}

/// Microseconds from nanoseconds, to 0.1 µs.
double us_of(double ns) { return std::round(ns / 100.0) / 10.0; }

/// A number rounded to `digits` decimals, for the JSON line.
double rounded(double v, int digits)
{
    const double scale = std::pow(10.0, digits);
    return std::round(v * scale) / scale;
}

/// Files descriptors: each session holds a WebSocket (and an SSE connection), so a
/// thousand sessions need more than the usual soft limit of 1024. Raised to the hard
/// limit, for the emulator child too (it inherits it).
void raise_file_limit() noexcept
{
    rlimit l{};
    if (::getrlimit(RLIMIT_NOFILE, &l) == 0 && l.rlim_cur < l.rlim_max) {
        l.rlim_cur = l.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &l);
    }
}

// ---- the emulator in a child process ---------------------------------------------------

/// `lens emulator` run as a child of this process, on 127.0.0.1 and an ephemeral port;
/// the endpoint is read from its first stdout line through a pipe. Killed (SIGTERM, then
/// SIGKILL if it lingers) by the destructor.
class emulator_child {
public:
    emulator_child(std::size_t max_sessions, const std::string& api_key)
    {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0)
            throw std::runtime_error(std::string("bench: cannot make a pipe: ") + std::strerror(errno));
        // Everything the child needs is built before fork: it only calls async-signal-safe functions.
        std::vector<std::string> args{"lens", "emulator", "--host", "127.0.0.1", "--port", "0",
                                      "--max-sessions", std::to_string(max_sessions), "--api-key", api_key};
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        const pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ < 0) {
            const int e = errno;
            ::close(fds[0]);
            ::close(fds[1]);
            throw std::runtime_error(std::string("bench: cannot start the emulator: ") + std::strerror(e));
        }
        if (pid_ == 0) {
            ::setpgid(0, 0);                     // a terminal's Ctrl-C reaches the bench only
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // and the child never outlives it
            if (::getppid() != parent)
                ::_exit(1);
            ::dup2(fds[1], STDOUT_FILENO);       // the duplicate is not close-on-exec
            ::execv("/proc/self/exe", argv.data());
            ::_exit(127);
        }
        ::close(fds[1]);
        out_ = fds[0];
        try {
            read_endpoint();
        } catch (...) {
            stop();
            throw;
        }
    }
    ~emulator_child() { stop(); }
    emulator_child(const emulator_child&) = delete;
    emulator_child& operator=(const emulator_child&) = delete;

    const std::string& endpoint() const noexcept { return endpoint_; }

    /// SIGTERM (the emulator stops cleanly), then SIGKILL after 5 s; reaps the child.
    void stop() noexcept
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            const auto give_up = clock::now() + std::chrono::seconds(5);
            while (::waitpid(pid_, &status, WNOHANG) == 0) {
                if (clock::now() > give_up) {
                    ::kill(pid_, SIGKILL);
                    ::waitpid(pid_, &status, 0);
                    break;
                }
                ::usleep(5000); // the emulator exits within milliseconds of SIGTERM
            }
            pid_ = -1;
        }
        if (out_ >= 0) {
            ::close(out_);
            out_ = -1;
        }
    }

private:
    /// Reads `{"endpoint": ..., "port": ...}`, the emulator's first line, within 20 s.
    void read_endpoint()
    {
        std::string line;
        const auto deadline = clock::now() + std::chrono::seconds(20);
        while (line.find('\n') == std::string::npos) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
            if (left <= 0)
                throw std::runtime_error("bench: the emulator printed no endpoint within 20 s");
            pollfd p{out_, POLLIN, 0};
            const int ready = ::poll(&p, 1, static_cast<int>(left));
            if (ready < 0 && errno == EINTR)
                continue;
            if (ready <= 0)
                continue;
            char buf[512];
            const ssize_t n = ::read(out_, buf, sizeof buf);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                throw std::runtime_error("bench: the emulator exited before printing its endpoint");
            line.append(buf, static_cast<std::size_t>(n));
            if (line.size() > 64 * 1024)
                throw std::runtime_error("bench: the emulator's first line is too long");
        }
        line.resize(line.find('\n'));
        boost::system::error_code ec;
        const json::value v = json::parse(line, ec);
        const json::value* ep = (!ec && v.is_object()) ? v.get_object().if_contains("endpoint") : nullptr;
        if (!ep || !ep->is_string())
            throw std::runtime_error("bench: the emulator's first line has no endpoint");
        endpoint_ = std::string(ep->get_string());
    }

    pid_t pid_ = -1;
    int out_ = -1;
    std::string endpoint_;
};

/// A key for the child emulator only: random, so that nothing else can use it by chance.
std::string random_key()
{
    std::random_device rd;
    std::string key = "bench-";
    static constexpr char hex[] = "0123456789abcdef";
    for (int i = 0; i < 24; ++i)
        key += hex[rd() % 16];
    return key;
}

// ---- the run ---------------------------------------------------------------------------

/// What one runtime thread counts. The histogram, the error map and the gate are used on
/// that thread only; the atomics are also read by the progress line (relaxed: figures).
/// Plain data: the sessions' coroutine frames, which the runtime may destroy last, refer to it.
struct thread_state {
    histogram latency; ///< nanoseconds, successful requests
    std::map<std::string, std::uint64_t> errors_by_code;
    bool gate_open = false; ///< every session is open: the measured phase started
    std::vector<asio::steady_timer*> waiting; ///< the sessions waiting for the gate (timers of their frames)
    std::atomic<std::uint64_t> requests{0};   ///< requests completed, failed ones included
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::uint64_t> latency_ns{0}; ///< sum over successful requests (the live mean)
    std::atomic<std::uint64_t> events{0};     ///< SSE events, without the stream's envelope
    std::atomic<std::uint64_t> sse_errors{0}; ///< event streams that failed
};

struct bench_state {
    bench_args args;
    request_kind kind = request_kind::validate;
    std::string lens_id;
    lens::session_options opts;
    lens::query_request query = lens::query_request::image_qa("What is in the picture?", "\x89PNG bench image");
    json::value update_data;
    lens::runtime* rt = nullptr;
    std::vector<std::unique_ptr<thread_state>> threads;
    std::function<void()> finished; ///< posts "the run is over" to the main thread

    std::atomic<std::size_t> connected{0};
    std::atomic<std::size_t> measured{0};
    std::atomic<std::size_t> tasks_left{0};
    std::atomic<std::int64_t> budget{0};      ///< --requests: requests not yet started
    std::atomic<bool> measuring{false};       ///< set (release) once the fields below are
    std::atomic<bool> measured_all{false};    ///< set (release) once the end_* fields are

    // Written by the task that opens the gates (before `measuring`), or by the last to
    // finish measuring (before `measured_all`); read after those flags or after join().
    clock::time_point start, connected_at, deadline, end;
    std::uint64_t rss_before = 0, rss_connected = 0, rss_end = 0;
    std::uint64_t cpu_start = 0, cpu_end = 0;

    std::mutex failure_mutex;
    std::string failure; ///< the first failure that was not caused by a stop

    /// Takes one request from the budget; false when it is spent.
    bool take_one() noexcept
    {
        if (args.requests > 0)
            return budget.fetch_sub(1, std::memory_order_relaxed) > 0;
        return clock::now() < deadline;
    }

    /// A session is open: the last one opens every thread's gate.
    void on_connected()
    {
        if (connected.fetch_add(1) + 1 != args.sessions)
            return;
        connected_at = clock::now();
        rss_connected = rss_kb();
        cpu_start = cpu_us();
        deadline = connected_at + std::chrono::duration_cast<clock::duration>(
                                      std::chrono::duration<double>(args.duration_seconds));
        measuring.store(true, std::memory_order_release);
        for (std::size_t i = 0; i < threads.size(); ++i)
            asio::post(rt->executor(i), [t = threads[i].get()] {
                t->gate_open = true;
                for (auto* w : t->waiting)
                    w->cancel();
            });
    }

    /// A session's workers are done: the last one ends the measured phase.
    void on_measured()
    {
        if (measured.fetch_add(1) + 1 != args.sessions)
            return;
        end = clock::now();
        cpu_end = cpu_us();
        rss_end = rss_kb();
        measured_all.store(true, std::memory_order_release);
    }

    /// A failure not caused by a stop ends the whole run.
    void fail(const std::string& what)
    {
        if (!rt->stopping()) {
            std::lock_guard lock(failure_mutex);
            if (failure.empty())
                failure = what;
        }
        rt->shutdown();
        finished();
    }

    void task_ended()
    {
        if (tasks_left.fetch_sub(1) == 1)
            finished();
    }
};

/// One worker: request, latency, again, until the budget is spent.
task<void> worker(lens::session& channel, bench_state& st, thread_state& ts)
{
    while (st.take_one()) {
        const auto t0 = clock::now();
        std::exception_ptr failure;
        std::string code;
        bool fatal = false; // the session is gone: its other requests would fail the same way
        try {
            switch (st.kind) {
            case request_kind::validate: {
                const lens::validation v = co_await channel.validate();
                if (!v.is_valid)
                    code = "not_valid";
                break;
            }
            case request_kind::status: co_await channel.status(); break;
            case request_kind::query: co_await channel.query(st.query); break;
            case request_kind::update: co_await channel.update(st.update_data); break;
            case request_kind::read: co_await channel.read(); break;
            case request_kind::heartbeat: co_await channel.heartbeat(); break;
            case request_kind::other: co_await channel.call(st.args.event); break;
            }
        } catch (const boost::system::system_error& e) {
            failure = std::current_exception();
            code = code_name(e.code());
            fatal = e.code() == lens::errc::session_gone || e.code() == lens::errc::closed;
        } catch (const std::exception&) {
            failure = std::current_exception();
            code = "exception";
        }
        if (failure && st.rt->stopping())
            std::rethrow_exception(failure); // cancelled by the shutdown: not a request's error
        if (code.empty()) {
            const auto ns = static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - t0).count());
            ts.latency.record(ns);
            ts.latency_ns.fetch_add(ns, std::memory_order_relaxed);
        } else {
            ts.errors.fetch_add(1, std::memory_order_relaxed);
            ++ts.errors_by_code[code];
        }
        ts.requests.fetch_add(1, std::memory_order_relaxed);
        if (fatal)
            co_return;
    }
}

/// K workers on one session, all awaited.
task<void> run_workers(lens::session& channel, bench_state& st, thread_state& ts)
{
    auto ex = co_await asio::this_coro::executor;
    using operation = decltype(asio::co_spawn(ex, worker(channel, st, ts), asio::deferred));
    std::vector<operation> workers;
    for (std::size_t k = 0; k < st.args.inflight; ++k)
        workers.push_back(asio::co_spawn(ex, worker(channel, st, ts), asio::deferred));
    auto [order, failures] = co_await asio::experimental::make_parallel_group(std::move(workers))
                                 .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
    (void)order;
    for (auto& f : failures)
        if (f)
            std::rethrow_exception(f);
}

bool is_envelope(const lens::session_event& ev)
{
    const auto k = ev.kind();
    return k == lens::event_kind::stream_start || k == lens::event_kind::heartbeat || k == lens::event_kind::stream_end;
}

/// Counts a session's events until cancelled (when its workers are done). A stream that
/// ends or fails is counted in `sse_errors` and then waited out: it must not end the
/// workers' run (the `||` it is in waits for the first success).
task<void> count_events(lens::event_stream& events, thread_state& ts)
{
    bool failed = false;
    try {
        while (auto ev = co_await events.next())
            if (!is_envelope(*ev))
                ts.events.fetch_add(1, std::memory_order_relaxed);
    } catch (const std::exception&) {
        failed = true;
    }
    // Cancelled (the workers are done, or the shutdown): that is no failure of the stream.
    const asio::cancellation_state cancelled = co_await asio::this_coro::cancellation_state;
    if (cancelled.cancelled() != asio::cancellation_type::none)
        throw boost::system::system_error(asio::error::operation_aborted);
    if (failed)
        ts.sse_errors.fetch_add(1, std::memory_order_relaxed);
    asio::steady_timer forever(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
    co_await forever.async_wait(asio::use_awaitable);
}

/// One session: create, open (and connect its events), wait for the others, run, destroy.
task<void> session_task(lens::client c, bench_state& st)
{
    thread_state& ts = *st.threads[st.rt->current_thread().value()];
    co_await lens::with_session(c, st.lens_id, [&](const lens::session_record& record) -> task<void> {
        lens::session channel = co_await c.open_session(record, st.opts);
        std::optional<lens::event_stream> events;
        if (st.args.sse) {
            events.emplace(c.events(record.session_id));
            co_await events->connect();
        }
        st.on_connected();
        if (!ts.gate_open) {
            asio::steady_timer wake(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
            ts.waiting.push_back(&wake);
            co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
            std::erase(ts.waiting, &wake);
        }
        if (!ts.gate_open) // woken by the shutdown's cancellation, not by the gate
            throw lens::error(lens::errc::closed, "bench", "stopped before the run began");
        if (events)
            co_await (run_workers(channel, st, ts) || count_events(*events, ts));
        else
            co_await run_workers(channel, st, ts);
        st.on_measured();
        if (events)
            events->close();
    });
}

/// session_task, with its end counted and its failure (if any) recorded.
task<void> guarded_session(lens::client c, bench_state& st)
{
    std::string failure;
    try {
        co_await session_task(std::move(c), st);
    } catch (const std::exception& e) {
        failure = e.what();
        if (failure.empty())
            failure = "unknown error";
    } catch (...) {
        failure = "unknown error";
    }
    if (!failure.empty())
        st.fail(failure);
    st.task_ended();
}

struct totals {
    std::uint64_t requests = 0, errors = 0, events = 0, sse_errors = 0, latency_ns = 0;
};

totals sum(const bench_state& st)
{
    totals t;
    for (auto& ts : st.threads) {
        t.requests += ts->requests.load(std::memory_order_relaxed);
        t.errors += ts->errors.load(std::memory_order_relaxed);
        t.events += ts->events.load(std::memory_order_relaxed);
        t.sse_errors += ts->sse_errors.load(std::memory_order_relaxed);
        t.latency_ns += ts->latency_ns.load(std::memory_order_relaxed);
    }
    return t;
}

/// The live line: connecting n/N, then elapsed time, requests, rate, errors, mean latency.
class live_view {
public:
    live_view(const bench_state& st, bool enabled) : st_(st), line_("bench", enabled) {}

    /// `final`: the figures of the whole measured phase (after it ended), not of the last interval.
    void update(bool final = false)
    {
        if (!st_.measuring.load(std::memory_order_acquire)) {
            line_.show("connecting " + std::to_string(st_.connected.load()) + "/" + std::to_string(st_.args.sessions) +
                       " sessions");
            return;
        }
        const auto now = final ? st_.end : clock::now();
        const totals t = sum(st_);
        const double elapsed = std::chrono::duration<double>(now - st_.connected_at).count();
        const double dt = std::chrono::duration<double>(now - last_at_).count();
        // The rate and mean latency of the last interval (since the previous update).
        const bool whole = final || last_at_ == clock::time_point{} || dt <= 0;
        const totals base = whole ? totals{} : last_;
        const double span = whole ? elapsed : dt;
        const double rate = span > 0 ? static_cast<double>(t.requests - base.requests) / span : 0;
        // (The counters are read one after the other while they move: never below zero.)
        const std::uint64_t ok = t.requests > t.errors ? t.requests - t.errors : 0;
        const std::uint64_t base_ok = base.requests > base.errors ? base.requests - base.errors : 0;
        const double mean_us =
            ok > base_ok ? static_cast<double>(t.latency_ns - base.latency_ns) / 1000.0 / static_cast<double>(ok - base_ok) : 0;
        char text[200];
        std::snprintf(text, sizeof text, "%6.1f s  %llu requests  %.0f req/s  %llu errors  mean %.0f us", elapsed,
                      static_cast<unsigned long long>(t.requests), rate, static_cast<unsigned long long>(t.errors),
                      mean_us);
        std::string s = text;
        if (st_.args.sse)
            s += "  " + std::to_string(t.events) + " events";
        line_.show(std::move(s));
        last_ = t;
        last_at_ = now;
    }
    void finish() { line_.finish(); }

private:
    const bench_state& st_;
    progress_line line_;
    totals last_;
    clock::time_point last_at_{};
};

/// The result line (and, for --histogram-out, what `merge` needs besides it).
struct result {
    json::object line;
    histogram latency;
    std::uint64_t cpu_us = 0;
};

/// The JSON line from the counters and the merged histogram.
json::object result_line(std::uint64_t sessions, std::uint64_t requests, std::uint64_t errors,
                         const json::object& errors_by_code, double rps, const histogram& h, double connect_s,
                         double duration_s, double cpu_us_per_request, std::uint64_t rss, double rss_per_session)
{
    json::object o;
    o["sessions"] = sessions;
    o["requests"] = requests;
    o["errors"] = errors;
    o["errors_by_code"] = errors_by_code;
    o["rps"] = rounded(rps, 1);
    o["p50_us"] = us_of(h.percentile(50));
    o["p90_us"] = us_of(h.percentile(90));
    o["p99_us"] = us_of(h.percentile(99));
    o["p999_us"] = us_of(h.percentile(99.9));
    o["max_us"] = us_of(static_cast<double>(h.max()));
    o["connect_s"] = rounded(connect_s, 3);
    o["duration_s"] = rounded(duration_s, 3);
    o["cpu_us_per_request"] = rounded(cpu_us_per_request, 2);
    o["rss_kb"] = rss;
    o["rss_per_session_kb"] = rounded(rss_per_session, 2);
    return o;
}

result collect(bench_state& st)
{
    result r;
    json::object by_code;
    std::map<std::string, std::uint64_t> codes;
    for (auto& ts : st.threads) {
        r.latency.merge(ts->latency);
        for (auto& [code, n] : ts->errors_by_code)
            codes[code] += n;
    }
    for (auto& [code, n] : codes)
        by_code[code] = n;
    const totals t = sum(st);
    const double seconds = std::chrono::duration<double>(st.end - st.connected_at).count();
    const double connect_s = std::chrono::duration<double>(st.connected_at - st.start).count();
    r.cpu_us = st.cpu_end - st.cpu_start;
    const double per_session = st.rss_connected > st.rss_before
                                   ? static_cast<double>(st.rss_connected - st.rss_before) / st.args.sessions
                                   : 0;
    r.line = result_line(st.args.sessions, t.requests, t.errors, by_code, seconds > 0 ? t.requests / seconds : 0,
                         r.latency, connect_s, seconds, t.requests ? static_cast<double>(r.cpu_us) / t.requests : 0,
                         st.rss_end, per_session);
    if (st.args.sse) {
        r.line["events"] = t.events;
        r.line["events_per_s"] = rounded(seconds > 0 ? t.events / seconds : 0, 1);
        r.line["sse_errors"] = t.sse_errors;
    }
    return r;
}

/// The result line as text: Boost.JSON writes every double in exponent form (2.04857E4);
/// people read these, so numbers are written the shortest way that round-trips (20485.7).
std::string line_text(const json::object& line)
{
    std::string out = "{";
    for (const auto& [key, value] : line) {
        if (out.size() > 1)
            out += ',';
        out += json::serialize(json::string(key));
        out += ':';
        if (value.is_double() && std::isfinite(value.get_double())) {
            char number[64];
            const auto r = std::to_chars(number, number + sizeof number, value.get_double());
            out.append(number, r.ptr);
        } else {
            out += json::serialize(value);
        }
    }
    return out + "}";
}

/// {"format":"lens-bench","version":1,"result":LINE,"cpu_us":N,"histogram":{...}}
json::value bench_file(const result& r)
{
    json::object o;
    o["format"] = "lens-bench";
    o["version"] = 1;
    o["result"] = r.line;
    o["cpu_us"] = r.cpu_us;
    o["histogram"] = r.latency.to_json();
    return o;
}

void write_file(const std::string& path, const json::value& v)
{
    std::ofstream out(path, std::ios::trunc);
    out << json::serialize(v) << '\n';
    out.flush();
    if (!out)
        throw std::runtime_error("--histogram-out " + path + ": cannot write: " + std::strerror(errno));
}

int run_bench(const globals& g, const bench_args& a)
{
    auto st = std::make_unique<bench_state>();
    st->args = a;
    if (st->args.requests == 0 && st->args.duration_seconds <= 0)
        st->args.duration_seconds = default_duration_seconds;
    st->budget = static_cast<std::int64_t>(std::min<std::uint64_t>(a.requests, INT64_MAX));
    st->kind = kind_of(a.event);
    st->lens_id = !a.lens_id.empty()                    ? a.lens_id
                  : st->kind == request_kind::query     ? std::string(lens::emulator::builtin::query)
                                                        : std::string(lens::emulator::builtin::activity_monitor);
    if (!a.image.empty()) {
        st->query.images.clear();
        st->query.add_image_file(a.image);
    }
    json::object reading;
    reading["sensor"] = "bench";
    reading["value"] = 42;
    st->update_data = std::move(reading);

    raise_file_limit();
    lens::config cfg = g.make_config();
    // The child is started before any thread exists (fork in a threaded process is fragile).
    std::optional<emulator_child> child;
    if (g.endpoint.empty()) {
        const std::string key = random_key();
        child.emplace(a.sessions + 16, key);
        cfg.endpoint = child->endpoint();
        cfg.api_key = key;
        cfg.ca_file.clear();
    }
    st->opts.request_timeout = cfg.timeout;
    st->opts.connect_timeout = cfg.timeout;
    if (g.timeout_seconds > 0)
        st->opts.query_timeout = cfg.timeout;
    st->opts.subprotocol_auth = g.subprotocol_auth;
    st->opts.max_pending = std::max<std::size_t>(st->opts.max_pending, 2 * a.inflight);

    // The main thread: signals and the live line; the runtime's threads: the sessions.
    // Declared so that the runtime (whose tasks post to main_ctx and use *st) goes first.
    asio::io_context main_ctx;
    std::optional<lens::runtime> runtime;
    asio::signal_set signals(main_ctx, SIGINT, SIGTERM);
    asio::steady_timer tick(main_ctx);

    lens::runtime_options ro;
    ro.threads = a.threads;
    ro.on_failure = [s = st.get()](std::exception_ptr) noexcept { s->rt->shutdown(); }; // guarded_session catches all
    lens::runtime& rt = runtime.emplace(cfg, ro);
    st->rt = &rt;
    for (std::size_t i = 0; i < rt.size(); ++i)
        st->threads.push_back(std::make_unique<thread_state>());

    int signal_number = 0;
    bool over = false;
    auto end_main = [&] {
        over = true;
        signals.cancel(); // later signals stay caught (and ignored) until the cleanup is done
        tick.cancel();
    };
    st->finished = [&main_ctx, end_main] { asio::post(main_ctx, end_main); };
    signals.async_wait([&](const boost::system::error_code& ec, int n) {
        if (ec)
            return;
        signal_number = n;
        rt.shutdown();
        end_main();
    });
    live_view view(*st, progress_wanted(a.no_progress) || a.progress);
    std::function<void()> redraw = [&] {
        if (over)
            return;
        view.update();
        tick.expires_after(std::chrono::milliseconds(100));
        tick.async_wait([&](const boost::system::error_code& ec) {
            if (!ec)
                redraw();
        });
    };

    st->tasks_left = a.sessions;
    st->rss_before = rss_kb();
    st->start = clock::now();
    for (std::size_t i = 0; i < a.sessions; ++i)
        rt.spawn([s = st.get()](lens::client& c) { return guarded_session(c, *s); });
    rt.start();
    redraw();
    main_ctx.run();

    rt.shutdown();
    rt.join();
    if (signal_number == 0 && st->measured_all.load(std::memory_order_acquire))
        view.update(true);
    view.finish();
    if (child)
        child->stop();
    if (signal_number != 0)
        return 128 + signal_number;
    if (!st->failure.empty())
        throw std::runtime_error("bench: " + st->failure);
    if (!st->measured_all.load(std::memory_order_acquire))
        throw std::runtime_error("bench: the run ended before every session was measured");

    const result r = collect(*st);
    if (!a.histogram_out.empty())
        write_file(a.histogram_out, bench_file(r));
    std::cout << line_text(r.line) << '\n' << std::flush;
    return 0;
}

// ---- lens bench merge ------------------------------------------------------------------

double number_field(const json::object& o, const char* key, const std::string& file)
{
    const json::value* v = o.if_contains(key);
    if (!v || !v->is_number())
        throw std::runtime_error(file + ": \"" + key + "\" is not a number");
    return v->to_number<double>();
}

std::uint64_t count_field(const json::object& o, const char* key, const std::string& file)
{
    const json::value* v = o.if_contains(key);
    if (v && v->is_uint64())
        return v->get_uint64();
    if (v && v->is_int64() && v->get_int64() >= 0)
        return static_cast<std::uint64_t>(v->get_int64());
    throw std::runtime_error(file + ": \"" + key + "\" is not a count");
}

/// Adds up runs written by --histogram-out: counts, rates (the runs ran at the same time,
/// on several hosts) and CPU add up; latency from the merged histogram; connect_s and
/// duration_s are the longest; rss_per_session_kb is the mean over every session.
int merge_files(const std::vector<std::string>& files)
{
    histogram h;
    std::uint64_t sessions = 0, requests = 0, errors = 0, cpu = 0, rss = 0, events = 0, sse_errors = 0;
    double rps = 0, events_per_s = 0, connect_s = 0, duration_s = 0, rss_session_total = 0;
    bool sse = false;
    std::map<std::string, std::uint64_t> codes;
    for (const auto& file : files) {
        std::ifstream in(file);
        if (!in)
            throw std::runtime_error(file + ": cannot open: " + std::strerror(errno));
        std::stringstream text;
        text << in.rdbuf();
        boost::system::error_code ec;
        const json::value v = json::parse(text.str(), ec);
        if (ec)
            throw std::runtime_error(file + ": not JSON (" + ec.message() + ")");
        const json::object* o = v.if_object();
        const json::value* format = o ? o->if_contains("format") : nullptr;
        if (!format || !format->is_string() || format->get_string() != "lens-bench")
            throw std::runtime_error(file + ": not a file of lens bench --histogram-out");
        if (count_field(*o, "version", file) != 1)
            throw std::runtime_error(file + ": unsupported version");
        const json::value* line_value = o->if_contains("result");
        const json::value* hist = o->if_contains("histogram");
        if (!line_value || !line_value->is_object() || !hist)
            throw std::runtime_error(file + ": no \"result\" or \"histogram\"");
        try {
            h.merge(histogram::from_json(*hist));
        } catch (const std::invalid_argument& e) {
            throw std::runtime_error(file + ": " + e.what());
        }
        const json::object& line = line_value->get_object();
        const std::uint64_t s = count_field(line, "sessions", file);
        sessions += s;
        requests += count_field(line, "requests", file);
        errors += count_field(line, "errors", file);
        cpu += count_field(*o, "cpu_us", file);
        rss += count_field(line, "rss_kb", file);
        rps += number_field(line, "rps", file);
        connect_s = std::max(connect_s, number_field(line, "connect_s", file));
        duration_s = std::max(duration_s, number_field(line, "duration_s", file));
        rss_session_total += number_field(line, "rss_per_session_kb", file) * static_cast<double>(s);
        if (line.contains("events")) {
            sse = true;
            events += count_field(line, "events", file);
            sse_errors += count_field(line, "sse_errors", file);
            events_per_s += number_field(line, "events_per_s", file);
        }
        const json::value* by_code = line.if_contains("errors_by_code");
        if (!by_code || !by_code->is_object())
            throw std::runtime_error(file + ": \"errors_by_code\" is not an object");
        for (auto& [code, n] : by_code->get_object())
            codes[std::string(code)] += count_field(by_code->get_object(), std::string(code).c_str(), file);
    }
    json::object by_code;
    for (auto& [code, n] : codes)
        by_code[code] = n;
    json::object line = result_line(sessions, requests, errors, by_code, rps, h, connect_s, duration_s,
                                    requests ? static_cast<double>(cpu) / requests : 0, rss,
                                    sessions ? rss_session_total / sessions : 0);
    if (sse) {
        line["events"] = events;
        line["events_per_s"] = rounded(events_per_s, 1);
        line["sse_errors"] = sse_errors;
    }
    std::cout << line_text(line) << '\n' << std::flush;
    return 0;
}

constexpr const char* bench_description =
    "Load generator: N sessions with K requests in flight on each; one JSON line on stdout:\n"
    "  {sessions, requests, errors, errors_by_code, rps, p50_us, p90_us, p99_us, p999_us, max_us,\n"
    "   connect_s, duration_s, cpu_us_per_request, rss_kb, rss_per_session_kb}\n"
    "  (--sse adds events, events_per_s, sse_errors). connect_s: creating and opening every session;\n"
    "  rps, latency (of the requests that succeeded) and CPU cover the run after that;\n"
    "  cpu_us_per_request is this process's CPU (every thread) per request;\n"
    "  rss_per_session_kb: RSS growth while connecting / N.\n"
    "Without --endpoint (a global option) it runs `lens emulator` in a child process (127.0.0.1, an ephemeral port),\n"
    "stopped at the end. Sessions are destroyed at the end, also on Ctrl-C (exit status 130, no\n"
    "JSON line). A live line on stderr when it is a terminal.";

} // namespace

void add_bench_commands(CLI::App& app, globals& g, action& run)
{
    auto* cmd = app.add_subcommand("bench", bench_description);
    auto a = std::make_shared<bench_args>();
    cmd->add_option("--sessions", a->sessions, "Sessions to create (N)")->check(CLI::Range(1, 100000))
        ->capture_default_str();
    cmd->add_option("--inflight", a->inflight, "Requests in flight on each session (K)")
        ->check(CLI::Range(1, 100000))->capture_default_str();
    auto* duration = cmd->add_option("--duration", a->duration_seconds, "Run for S seconds (default 10)")
                         ->check(CLI::PositiveNumber);
    auto* requests = cmd->add_option("--requests", a->requests, "Send R requests in all, then stop")
                         ->check(CLI::PositiveNumber);
    duration->excludes(requests);
    cmd->add_option("--event", a->event,
                    "The request: session.validate, session.status, model.query, session.update, session.read,\n"
                    "session.heartbeat, or any other type (sent without event_data)")
        ->capture_default_str();
    auto* image = cmd->add_option("--image", a->image, "Image file for model.query (default: a few placeholder bytes)")
                      ->check(CLI::ExistingFile);
    cmd->add_option("--threads", a->threads, "Client threads (T), one io_context each; sessions spread round robin (default 1: on a small machine\nthe other cores are the server's)")
        ->check(CLI::Range(1, 256))->capture_default_str();
    cmd->add_flag("--sse", a->sse, "Also open each session's event stream and count its events");
    cmd->add_option("--lens-id", a->lens_id,
                    "Lens of the sessions (default: lns-emu-query for model.query, else lns-emu-activity-monitor)");
    cmd->add_option("--histogram-out", a->histogram_out,
                    "Also write the result and its latency histogram to FILE (for `lens bench merge`)");
    auto* progress = cmd->add_flag("--progress", a->progress, "Draw the live line even when stderr is not a terminal");
    auto* quiet = cmd->add_flag("--no-progress", a->no_progress, "No live line");
    progress->excludes(quiet);
    cmd->add_flag("--subprotocol-auth", g.subprotocol_auth,
                  "Send the key in Sec-WebSocket-Protocol, not in Authorization");

    auto* merge = cmd->add_subcommand(
        "merge", "Add up runs written by --histogram-out (e.g. on several hosts at once): one JSON line, "
                 "counts and rates summed, latency percentiles from the merged histograms");
    auto files = std::make_shared<std::vector<std::string>>();
    merge->add_option("FILE", *files, "Files written by lens bench --histogram-out")->required()
        ->check(CLI::ExistingFile);
    merge->callback([&run, files] { run = [files] { return merge_files(*files); }; });

    cmd->callback([&g, &run, a, merge, image] {
        if (merge->parsed())
            return;
        if (image->count() > 0 && kind_of(a->event) != request_kind::query)
            throw CLI::ValidationError("--image", "only with --event model.query");
        run = [&g, a] { return run_bench(g, *a); };
    });
}

} // namespace lens::cli
