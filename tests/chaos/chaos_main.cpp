// tests/chaos/chaos_main.cpp — lens under fire: the chaos run and the soak.
//
//   lens_chaos chaos [--sessions N] [--seconds S] [--tls] [--seed X]
//   lens_chaos soak  [--sessions N] [--seconds S] [--tls] [--seed X]
//
// The emulator runs in a child process; everything of the client (and the fault proxy,
// tests/chaos/fault_proxy.hpp) runs on this process's one thread. Exit status 0 when
// every requirement held, 1 otherwise; the figures go to stdout as one JSON line.
//
// chaos: N sessions, each with an SSE stream of a CSV input (one event per row) and two
// loops of control requests (status, validate, read), while the proxy resets,
// half-closes, stalls, delays and trickles connections and the emulator itself drops
// WebSockets and cuts SSE streams, every few hundred milliseconds for S seconds.
// Requires:
//   - every SSE event of every session arrives exactly once, in order, with the content
//     the emulator logged (ids 1..E, checked against the emulator's own event list);
//   - every request ends with a result or an error of the documented set (timeout,
//     connection_lost) within its deadline (plus a scheduling allowance);
//   - every reconnect of every session and stream waits at least the delay it announced,
//     and that delay lies within the backoff policy's schedule for its attempt;
//   - afterwards (sessions destroyed, client gone) the process holds the same file
//     descriptors and, within a small allowance, the same heap as before.
//
// soak: idle sessions whose connections go silent (heartbeats and pings unanswered, the
// dead-peer rule reconnects them), model queries with large images abandoned by their
// callers, and SSE streams cut after every event (thousands of resumes); the heap is
// sampled every second and must stay flat, no descriptor may leak.
#include "fault_proxy.hpp"
#include "process_support.hpp"
#include "integration/secret.hpp"
#include "emulator/sse_feed.hpp"

#include <lens/client.hpp>
#include <lens/event_stream.hpp>
#include <lens/query.hpp>
#include <lens/session.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <malloc.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

struct settings {
    std::string mode = "chaos";
    std::size_t sessions = 20;
    std::chrono::seconds duration{6};
    bool tls = false;
    std::uint32_t seed = 1;
};

// ---- what the process holds ----------------------------------------------------

std::size_t open_descriptors()
{
    std::size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n - 1; // the iterator's own
}

/// Heap bytes in use (glibc), after giving free pages back.
std::size_t heap_in_use()
{
    malloc_trim(0);
    return mallinfo2().uordblks;
}

/// OpenSSL builds its table of error strings (about 1 MiB) the first time a TLS error is
/// described, and keeps it for the process: a one-time cost that the baseline must hold,
/// or the first truncated TLS record of the run would look like a leak.
void load_tls_error_strings()
{
    (void)ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_UNEXPECTED_EOF_WHILE_READING));
}

asio::awaitable<void> sleep_for(clock_type::duration d)
{
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

std::string describe(std::exception_ptr e)
{
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    } catch (...) {
        return "an exception that is not a std::exception";
    }
}

// ---- the requirements, as counters ---------------------------------------------

struct failures {
    std::vector<std::string> lines;
    void add(std::string s)
    {
        if (lines.size() < 40)
            std::cerr << "chaos: FAIL " << s << '\n';
        lines.push_back(std::move(s));
    }
};

/// The process's descriptors and heap "afterwards": once closed sockets are reaped and a
/// connect attempt that a close() interrupted has ended, within its connect timeout (it
/// frees what it holds only then: the client's TLS context is 1 MiB with the system
/// trust store).
struct holdings {
    std::size_t fds = 0;
    std::size_t heap = 0;
};
asio::awaitable<holdings> afterwards(std::size_t fds_before, std::chrono::milliseconds connect_timeout)
{
    for (int i = 0; i < 100 && open_descriptors() != fds_before; ++i)
        co_await sleep_for(20ms);
    co_await sleep_for(connect_timeout + 200ms);
    co_return holdings{open_descriptors(), heap_in_use()};
}

/// Runs `body` on `ctx` until it ends, then stops `proxy`; a watchdog fails the run and
/// stops the context if it has not ended after `limit`.
void run_to_end(asio::io_context& ctx, asio::awaitable<void> body, lens::chaos::fault_proxy& proxy,
                clock_type::duration limit, failures& f)
{
    bool finished = false;
    asio::co_spawn(ctx, std::move(body), [&](std::exception_ptr e) {
        finished = true;
        if (e)
            f.add("the run threw: " + describe(e));
        proxy.stop();
    });
    asio::steady_timer watchdog(ctx, limit);
    watchdog.async_wait([&](boost::system::error_code ec) {
        if (!ec && !finished) {
            f.add("watchdog: the run did not finish");
            ctx.stop();
        }
    });
    while (!finished && ctx.run_one()) {
    }
    watchdog.cancel();
}

/// Every reconnect must wait at least the delay it announced, and that delay must lie in
/// the policy's schedule: failure n in a row waits delay(n - 1) = min(max, initial *
/// multiplier^(n-1)) * (1 - jitter * u), u in [0, 1).
class backoff_checker {
public:
    backoff_checker(lens::backoff_policy session_policy, lens::backoff_policy stream_policy, failures& f)
        : session_(session_policy), stream_(stream_policy), failures_(f)
    {
    }

    void on_record(const lens::log_record& r)
    {
        if (r.source != "session" && r.source != "events")
            return;
        const auto now = clock_type::now();
        const std::string key = std::string(r.source) + " " + std::string(r.target);
        auto it = pending_.find(key);
        if (it != pending_.end() && r.event == "disconnect") {
            pending_.erase(it); // closed while waiting: no attempt followed
            it = pending_.end();
        }
        if (it != pending_.end()) {
            // The previous record of this channel announced a wait: whatever followed it
            // (a connect, another failure) came after the wait.
            const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - it->second.at);
            if (waited + 1ms < it->second.delay) {
                ++too_early;
                failures_.add("reconnect of " + key + " after " + std::to_string(waited.count()) + " ms, announced " +
                              std::to_string(it->second.delay.count()) + " ms");
            }
            pending_.erase(it);
        }
        if (r.event != "reconnect" || !r.delay)
            return;
        ++reconnects;
        const auto& policy = r.source == "session" ? session_ : stream_;
        if (!r.server_delay) {
            const unsigned n = std::max(r.attempt, 1u);
            const double base = std::min<double>(static_cast<double>(policy.max.count()),
                                                 policy.initial.count() * std::pow(policy.multiplier, n - 1));
            const double lo = std::floor(base * (1.0 - policy.jitter)) - 1;
            if (r.delay->count() < lo || r.delay->count() > base) {
                ++off_schedule;
                failures_.add("reconnect " + std::to_string(n) + " of " + key + " announced " +
                              std::to_string(r.delay->count()) + " ms, outside [" + std::to_string(lo) + ", " +
                              std::to_string(base) + "]");
            }
        }
        pending_[key] = {now, *r.delay};
    }

    void forget() { std::map<std::string, wait>().swap(pending_); }

    std::size_t reconnects = 0;
    std::size_t too_early = 0;
    std::size_t off_schedule = 0;

private:
    struct wait {
        clock_type::time_point at;
        std::chrono::milliseconds delay;
    };
    lens::backoff_policy session_, stream_;
    failures& failures_;
    std::map<std::string, wait> pending_;
};

/// What the emulator's activity monitor logs for the run's CSV: event k has id k.
std::vector<json::value> expected_events(const std::string& file_id, const std::string& csv)
{
    std::vector<json::value> out;
    for (auto& o : lens::emulator::detail::activity_monitor_csv_events(file_id, csv, 1))
        out.emplace_back(std::move(o));
    return out;
}

std::string sensor_csv(std::size_t rows)
{
    std::string csv = "timestamp,value\n";
    for (std::size_t i = 0; i < rows; ++i)
        csv += std::to_string(i) + "," + std::to_string(i * 7 % 23) + "\n";
    return csv;
}

lens::backoff_policy quick_backoff()
{
    lens::backoff_policy p;
    p.initial = 20ms;
    p.max = 640ms;
    p.multiplier = 2.0;
    p.jitter = 0.5;
    p.reset_after = 2s;
    return p;
}

/// The emulator's endpoint, reached through the proxy instead.
std::string through(const std::string& endpoint, std::uint16_t port)
{
    auto u = boost::urls::parse_uri(endpoint).value();
    boost::urls::url url(u);
    url.set_port_number(port);
    return std::string(url.buffer());
}

/// The record with its WebSocket endpoint pointed at the proxy too: the emulator names
/// its own port in `session_endpoint`, as a server not behind a proxy would.
lens::session_record via(lens::session_record r, std::uint16_t port)
{
    r.session_endpoint = through(r.session_endpoint, port);
    return r;
}

lens::config client_config(const bench::emulator_process& emu, std::uint16_t port, failures& f,
                           backoff_checker* checker)
{
    lens::config cfg;
    cfg.endpoint = through(emu.endpoint(), port);
    cfg.api_key = lens::test::test_key();
    cfg.ca_file = emu.ca_file();
    cfg.timeout = 5s;
    cfg.connect_timeout = 1s;
    cfg.retry.max_attempts = 20;
    cfg.retry.backoff = quick_backoff();
    cfg.retry.backoff.max = 200ms;
    const bool echo = lens::test::canary_mode(); // the canary scans what lens would log
    if (checker || echo)
        cfg.log = lens::logger(
            [checker, echo](const lens::log_record& r) {
                if (checker)
                    checker->on_record(r);
                if (echo && r.level >= lens::log_level::warning)
                    std::cerr << "[log] " << r.message << '\n';
            },
            lens::log_level::info);
    (void)f;
    return cfg;
}

// ---- the chaos run ---------------------------------------------------------------

struct request_outcomes {
    std::size_t ok = 0;
    std::map<std::string, std::size_t> errors; // by lens::errc message
    std::size_t late = 0;                      // ended past deadline + allowance
    std::chrono::milliseconds worst_overshoot{0};
};

struct session_slot {
    lens::session_record record;
    std::optional<lens::session> channel;
    std::optional<lens::event_stream> stream;
    std::size_t events = 0;        // lens events received in order
    bool complete = false;
};

constexpr auto request_deadline = 1000ms;
/// A request may end this much after its deadline: the one thread also runs 100
/// sessions, their streams and the proxy, and the machine is shared.
constexpr auto scheduling_allowance = 750ms;

asio::awaitable<void> request_loop(session_slot& s, clock_type::time_point until, std::uint32_t seed,
                                   request_outcomes& out, failures& f)
{
    std::mt19937 rng(seed);
    while (clock_type::now() < until && s.channel) {
        lens::call_options o;
        o.timeout = request_deadline;
        const auto started = clock_type::now();
        try {
            switch (rng() % 3) {
            case 0: co_await s.channel->status(o); break;
            case 1: co_await s.channel->validate(o); break;
            default: co_await s.channel->read(o); break;
            }
            ++out.ok;
        } catch (const lens::error& e) {
            ++out.errors[e.code().message()];
            if (e.code() != lens::errc::timeout && e.code() != lens::errc::connection_lost)
                f.add(std::string("request failed outside the documented set: ") + e.what());
        }
        const auto over = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - started) -
                          request_deadline;
        out.worst_overshoot = std::max(out.worst_overshoot, over);
        if (over > scheduling_allowance) {
            ++out.late;
            f.add("a request ended " + std::to_string(over.count()) + " ms past its deadline");
        }
        co_await sleep_for(std::chrono::milliseconds(10 + rng() % 40));
    }
}

asio::awaitable<void> collect_events(session_slot& s, const std::vector<json::value>& expected, failures& f)
{
    try {
        while (s.events < expected.size()) {
            auto ev = co_await s.stream->next();
            if (!ev)
                break;
            if (ev->type.starts_with("sse.stream."))
                continue;
            const auto want = s.events + 1;
            if (ev->id != std::to_string(want)) {
                f.add("session " + s.record.session_id + ": event id " + ev->id + " where " + std::to_string(want) +
                      " was due");
                co_return;
            }
            if (ev->raw() != expected[s.events]) {
                f.add("session " + s.record.session_id + ": event " + ev->id + " differs from what the emulator logged");
                co_return;
            }
            ++s.events;
        }
    } catch (const lens::error& e) {
        f.add("session " + s.record.session_id + ": stream failed: " + e.what());
        co_return;
    }
    s.complete = s.events == expected.size();
}

int chaos_run(const settings& st)
{
    const std::size_t rows = static_cast<std::size_t>(st.duration / 20ms) + 10; // events span the run
    lens::emulator::options eo = lens::test::emulator_options();
    eo.tls = st.tls;
    eo.max_sessions = st.sessions + 8;
    eo.sse.csv_window_rows = 1;
    eo.sse.result_interval = 20ms;
    eo.sse.heartbeat_interval = 500ms;
    eo.sse.cut_after_events = 97;  // the emulator cuts every stream now and then (mid-event)
    eo.ws.drop_after_frames = 151; // ...and drops every WebSocket at its 151st request
    bench::emulator_process emu(eo);
    const auto upstream = boost::urls::parse_uri(emu.endpoint()).value().port_number();

    asio::io_context ctx(1);
    failures f;
    lens::chaos::fault_proxy proxy(ctx.get_executor(), upstream, st.seed);
    proxy.enabled(false);
    proxy.start();

    lens::session_options so;
    so.request_timeout = request_deadline;
    so.connect_timeout = 1s;
    so.dead_peer_timeout = 1500ms;
    so.heartbeat_idle = 1s;
    so.reconnect = quick_backoff();
    lens::event_stream_options eso;
    eso.idle_timeout = 1500ms; // heartbeats every 500 ms: a stalled stream is noticed
    eso.reconnect = quick_backoff();
    backoff_checker checker(so.reconnect, eso.reconnect, f);

    const std::string csv = sensor_csv(rows);
    std::vector<session_slot> slots(st.sessions);
    std::vector<request_outcomes> outcomes(st.sessions);
    std::vector<json::value> expected;
    std::size_t expected_count = 0;
    std::map<std::string, std::size_t> error_totals;
    std::size_t fds_before = 0, heap_before = 0, fds_after = 0, heap_after = 0;
    double chaos_seconds = 0;
    std::size_t session_reconnects = 0, stream_reconnects = 0, half_events = 0;

    auto body = [&]() -> asio::awaitable<void> {
        // Warm-up, then the baseline: one session and stream through a second of faults, so
        // that what the process initialises once (OpenSSL's error strings and the state of
        // its failure paths, thread-local state, the allocator's bins) is in the baseline.
        {
            lens::client warm(ctx.get_executor(), client_config(emu, proxy.port(), f, nullptr));
            auto r = via(co_await warm.create_session(std::string(lens::emulator::builtin::activity_monitor)),
                         proxy.port());
            auto ch = co_await warm.open_session(r, so);
            auto ev = warm.events(r.session_id, eso);
            co_await ev.connect();
            proxy.set_faults(lens::chaos::fault_options());
            proxy.enabled(true);
            const auto warm_until = clock_type::now() + 1500ms;
            while (clock_type::now() < warm_until) {
                lens::call_options o;
                o.timeout = request_deadline;
                try {
                    co_await ch.status(o);
                } catch (const lens::error&) {
                }
                co_await sleep_for(20ms);
                if (clock_type::now() > warm_until - 1000ms && clock_type::now() < warm_until - 950ms)
                    proxy.drop_all();
            }
            proxy.enabled(false);
            proxy.drop_all();
            co_await warm.destroy_session(r.session_id);
        }
        load_tls_error_strings();
        co_await sleep_for(200ms);
        fds_before = open_descriptors();
        heap_before = heap_in_use();
        {
            lens::client c(ctx.get_executor(), client_config(emu, proxy.port(), f, &checker));
            const auto file = co_await c.upload_file("chaos.csv", csv);
            expected = expected_events(file.file_id, csv);
            // Sessions, their channels and streams, with the network still clean.
            for (auto& s : slots) {
                s.record = via(co_await c.create_session(std::string(lens::emulator::builtin::activity_monitor)),
                               proxy.port());
                s.channel.emplace(co_await c.open_session(s.record, so));
                s.stream.emplace(c.events(s.record.session_id, eso));
                co_await s.stream->connect();
            }
            for (auto& s : slots)
                co_await s.channel->set_input_stream(lens::csv_stream(file.file_id));

            // Faults from now on.
            lens::chaos::fault_options faults;
            proxy.set_faults(faults);
            proxy.enabled(true);
            proxy.drop_all(); // every connection so far is clean: reconnect through the faults
            const auto started = clock_type::now();
            const auto until = started + st.duration;
            std::size_t collectors = 0, requesters = 0;
            auto ex = co_await asio::this_coro::executor;
            for (std::size_t i = 0; i < slots.size(); ++i) {
                ++collectors;
                asio::co_spawn(ex, collect_events(slots[i], expected, f), [&](std::exception_ptr) { --collectors; });
                for (std::uint32_t k = 0; k < 2; ++k) {
                    ++requesters;
                    asio::co_spawn(ex, request_loop(slots[i], until, st.seed * 7919 + i * 2 + k, outcomes[i], f),
                                   [&](std::exception_ptr e) {
                                       --requesters;
                                       if (e)
                                           f.add("a request loop threw: " + describe(e));
                                   });
                }
            }
            // The path restarts every few hundred milliseconds.
            std::mt19937 rng(st.seed);
            while (clock_type::now() < until) {
                co_await sleep_for(std::chrono::milliseconds(200 + rng() % 500));
                if (rng() % 3 == 0)
                    proxy.refuse_for(std::chrono::milliseconds(100 + rng() % 400));
                else
                    proxy.drop_all();
            }
            chaos_seconds = std::chrono::duration<double>(clock_type::now() - started).count();
            // Clean network again: the requests stop, the streams catch up.
            proxy.enabled(false);
            proxy.drop_all();
            const auto drain_until = clock_type::now() + 30s + st.duration;
            while ((collectors > 0 || requesters > 0) && clock_type::now() < drain_until)
                co_await sleep_for(50ms);
            if (collectors > 0) {
                f.add(std::to_string(collectors) + " streams still incomplete 30 s after the faults stopped");
                for (auto& s : slots)
                    s.stream->close();
                while (collectors > 0 || requesters > 0)
                    co_await sleep_for(20ms);
            }
            for (auto& s : slots) {
                session_reconnects += s.channel->stats().connects - 1;
                stream_reconnects += s.stream->statistics().reconnects;
                half_events += s.stream->statistics().half_events_discarded;
                co_await c.destroy_session(s.record.session_id);
                s.channel.reset();
                s.stream.reset();
                s.record = {}; // the run's bookkeeping, not lens's
            }
        }
        checker.forget();
        expected_count = expected.size();
        std::vector<json::value>().swap(expected); // the run's own bookkeeping is not lens's heap
        for (auto& o : outcomes) // counted now, so that their maps do not weigh on the heap
            for (auto& [k, v] : o.errors)
                error_totals[k] += v;
        for (auto& o : outcomes)
            o.errors.clear();
        proxy.drop_all();
        const auto after = co_await afterwards(fds_before, so.connect_timeout);
        fds_after = after.fds;
        heap_after = after.heap;
    };
    run_to_end(ctx, body(), proxy, st.duration + 90s, f);

    // ---- the verdict ----
    std::size_t events = 0, incomplete = 0, ok = 0, late = 0;
    std::map<std::string, std::size_t>& errors = error_totals;
    std::chrono::milliseconds worst{0};
    for (auto& s : slots) {
        events += s.events;
        incomplete += !s.complete;
    }
    for (auto& o : outcomes) {
        ok += o.ok;
        late += o.late;
        worst = std::max(worst, o.worst_overshoot);
    }
    if (incomplete)
        f.add(std::to_string(incomplete) + " sessions did not receive every event");
    if (fds_after != fds_before)
        f.add("descriptors: " + std::to_string(fds_before) + " before, " + std::to_string(fds_after) + " after");
    const long heap_growth = static_cast<long>(heap_after) - static_cast<long>(heap_before);
    if (heap_growth > 512 * 1024)
        f.add("heap grew by " + std::to_string(heap_growth) + " bytes");
    const auto ps = proxy.stats();
    if (ps.resets + ps.half_closes + ps.stalls + ps.dropped + ps.refused == 0)
        f.add("the proxy injected no fault");

    json::object errs;
    for (auto& [k, v] : errors)
        errs[k] = v;
    json::object report{
        {"mode", "chaos"}, {"tls", st.tls}, {"sessions", st.sessions}, {"seconds", chaos_seconds},
        {"events_expected_per_session", expected_count}, {"events_received", events},
        {"sessions_incomplete", incomplete}, {"requests_ok", ok}, {"request_errors", errs},
        {"requests_late", late}, {"worst_overshoot_ms", worst.count()},
        {"session_reconnects", session_reconnects}, {"stream_reconnects", stream_reconnects},
        {"half_events_discarded", half_events}, {"reconnects_checked", checker.reconnects},
        {"reconnects_too_early", checker.too_early}, {"reconnects_off_schedule", checker.off_schedule},
        {"proxy", json::object{{"connections", ps.connections}, {"resets", ps.resets},
                               {"half_closes", ps.half_closes}, {"stalls", ps.stalls}, {"trickled", ps.trickled},
                               {"dropped", ps.dropped}, {"refused", ps.refused}}},
        {"fds_before", fds_before}, {"fds_after", fds_after}, {"heap_before", heap_before},
        {"heap_after", heap_after}, {"failures", f.lines.size()}};
    std::cout << json::serialize(report) << std::endl;
    return f.lines.empty() ? 0 : 1;
}


// ---- the soak ------------------------------------------------------------------

/// The least of v[from, to): the heap's floor over that time. Queries in flight swing
/// the heap by megabytes; what stays retained raises the floor.
std::size_t floor_of(const std::vector<std::size_t>& v, std::size_t from, std::size_t to)
{
    return *std::min_element(v.begin() + from, v.begin() + to);
}

int soak_run(const settings& st)
{
    const std::size_t streams = 4, queriers = 4;
    lens::emulator::options eo = lens::test::emulator_options();
    eo.tls = st.tls;
    eo.max_sessions = st.sessions + streams + queriers + 8;
    eo.sse.csv_window_rows = 1;
    eo.sse.result_interval = 2ms;
    eo.sse.heartbeat_interval = 500ms;
    eo.sse.cut_after_events = 1;     // every stream is cut after each event: a resume per event
    eo.ws.query_latency = 400ms;     // every query outlives its caller's deadline
    bench::emulator_process emu(eo);
    const auto upstream = boost::urls::parse_uri(emu.endpoint()).value().port_number();

    asio::io_context ctx(1);
    failures f;
    // The idle sessions' path: every connection goes silent within its first few hundred
    // bytes: upgrades, heartbeats and pings go unanswered.
    lens::chaos::fault_proxy silent(ctx.get_executor(), upstream, st.seed);
    lens::chaos::fault_options mute;
    mute.reset = mute.half_close = mute.trickle = 0;
    mute.stall = 1.0;
    mute.stall_min = mute.stall_max = 2s; // well past the dead-peer timeout; bounded, so
                                          // the proxy's side of dropped connections ends too
    mute.max_fault_offset = 600;
    mute.max_latency = 0ms;
    silent.set_faults(mute);
    silent.enabled(false);
    silent.start();

    lens::session_options idle;
    idle.heartbeat_idle = 100ms;
    idle.dead_peer_timeout = 300ms;
    idle.connect_timeout = 300ms;
    idle.reconnect.initial = 10ms;
    idle.reconnect.max = 80ms;
    idle.reconnect.reset_after = 1s;
    lens::event_stream_options resume;
    resume.reconnect.initial = 1ms;
    resume.reconnect.max = 4ms;
    resume.reconnect.jitter = 0;
    resume.reconnect.reset_after = 1ms;

    std::vector<std::size_t> heap_samples;
    std::size_t fds_before = 0, fds_after = 0, heap_before = 0, heap_after = 0;
    std::size_t abandoned = 0, queries_answered = 0, idle_reconnects = 0, dead_peers = 0, resumes = 0, events = 0;
    double seconds = 0;

    auto body = [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        {   // warm-up, as in the chaos run
            lens::client warm(ex, client_config(emu, upstream, f, nullptr));
            auto r = co_await warm.create_session(std::string(lens::emulator::builtin::query));
            auto ch = co_await warm.open_session(r);
            co_await ch.status();
            co_await warm.destroy_session(r.session_id);
        }
        load_tls_error_strings();
        co_await sleep_for(200ms);
        fds_before = open_descriptors();
        heap_before = heap_in_use();
        {
            lens::client direct(ex, client_config(emu, upstream, f, nullptr));
            lens::client muted(ex, client_config(emu, silent.port(), f, nullptr));
            std::vector<lens::session_record> records;
            std::vector<lens::session> idle_sessions;
            for (std::size_t i = 0; i < st.sessions; ++i) {
                records.push_back(
                    via(co_await muted.create_session(std::string(lens::emulator::builtin::mailbox)), silent.port()));
                idle_sessions.push_back(co_await muted.open_session(records.back(), idle));
            }
            silent.enabled(true);
            silent.drop_all(); // from now on, every connection of the idle sessions goes silent

            const auto started = clock_type::now();
            const auto until = started + st.duration;
            std::size_t running = 0;
            // Queries with a 512 KiB image, abandoned after 30 ms (the lens answers after 400).
            for (std::size_t q = 0; q < queriers; ++q) {
                ++running;
                asio::co_spawn(ex, [&, q]() -> asio::awaitable<void> {
                    auto r = co_await direct.create_session(std::string(lens::emulator::builtin::query));
                    auto ch = co_await direct.open_session(r);
                    std::string image(512 * 1024, '\0');
                    std::mt19937 rng(st.seed + static_cast<std::uint32_t>(q));
                    for (auto& c : image)
                        c = static_cast<char>(rng());
                    const auto request = lens::query_request::image_qa("what is it?", image);
                    while (clock_type::now() < until) {
                        lens::call_options o;
                        o.timeout = 30ms;
                        try {
                            co_await ch.query(request, o);
                            ++queries_answered;
                        } catch (const lens::error& e) {
                            if (e.code() == lens::errc::timeout)
                                ++abandoned;
                            else
                                f.add(std::string("query: ") + e.what());
                        }
                        co_await sleep_for(50ms);
                    }
                    co_await direct.destroy_session(r.session_id);
                }, [&](std::exception_ptr e) {
                    --running;
                    if (e)
                        f.add("a query loop threw: " + describe(e));
                });
            }
            // Streams cut after every event: one resume per event.
            const std::string csv = sensor_csv(static_cast<std::size_t>(st.duration / 1ms));
            const auto file = co_await direct.upload_file("soak.csv", csv);
            for (std::size_t k = 0; k < streams; ++k) {
                ++running;
                asio::co_spawn(ex, [&]() -> asio::awaitable<void> {
                    auto r = co_await direct.create_session(std::string(lens::emulator::builtin::activity_monitor));
                    auto stream = direct.events(r.session_id, resume);
                    co_await stream.connect();
                    {
                        auto ch = co_await direct.open_session(r);
                        co_await ch.set_input_stream(lens::csv_stream(file.file_id));
                    }
                    std::size_t next = 1;
                    asio::steady_timer stop(ex, until);
                    stop.async_wait([&stream](boost::system::error_code ec) {
                        if (!ec)
                            stream.close();
                    });
                    try {
                        while (auto ev = co_await stream.next()) {
                            if (ev->type.starts_with("sse.stream."))
                                continue;
                            if (ev->id != std::to_string(next)) {
                                f.add("soak stream: event " + ev->id + " where " + std::to_string(next) + " was due");
                                break;
                            }
                            ++next;
                            ++events;
                        }
                    } catch (const lens::error& e) {
                        if (e.code() != lens::errc::closed) // closed: the stop timer's close()
                            f.add(std::string("soak stream: ") + e.what());
                    }
                    stop.cancel();
                    resumes += stream.statistics().reconnects;
                    co_await direct.destroy_session(r.session_id);
                }, [&](std::exception_ptr e) {
                    --running;
                    if (e)
                        f.add("a stream loop threw: " + describe(e));
                });
            }
            // One heap sample a second.
            while (clock_type::now() < until) {
                co_await sleep_for(1s);
                heap_samples.push_back(heap_in_use());
            }
            seconds = std::chrono::duration<double>(clock_type::now() - started).count();
            while (running > 0)
                co_await sleep_for(20ms);
            for (auto& s : idle_sessions) {
                idle_reconnects += s.stats().connect_failures + s.stats().connects - 1;
                dead_peers += s.stats().dead_peer_disconnects;
                s.close();
            }
            silent.enabled(false);
            silent.drop_all();
            for (auto& r : records)
                co_await muted.destroy_session(r.session_id);
        }
        silent.drop_all();
        const auto after = co_await afterwards(fds_before, idle.connect_timeout);
        fds_after = after.fds;
        heap_after = after.heap;
    };
    run_to_end(ctx, body(), silent, st.duration + 60s, f);

    // Flat: the floor of the last quarter of the samples against the floor of the second
    // quarter (the first quarter is warm-up: buffers and pools reach their size).
    long growth = 0;
    const std::size_t n = heap_samples.size();
    if (n >= 4) {
        const auto early = floor_of(heap_samples, n / 4, n / 2);
        const auto late = floor_of(heap_samples, n - n / 4, n);
        growth = static_cast<long>(late) - static_cast<long>(early);
        if (growth > std::max<long>(1 << 20, static_cast<long>(early / 20)))
            f.add("the heap grew by " + std::to_string(growth) + " bytes over the soak");
    } else {
        f.add("too few heap samples: run for at least 4 seconds");
    }
    if (fds_after != fds_before)
        f.add("descriptors: " + std::to_string(fds_before) + " before, " + std::to_string(fds_after) + " after");
    if (heap_after > heap_before + 512 * 1024)
        f.add("heap after the soak: " + std::to_string(heap_after) + " bytes, before " + std::to_string(heap_before));
    if (dead_peers == 0)
        f.add("no idle session noticed a dead peer");
    if (abandoned == 0)
        f.add("no query was abandoned");
    if (resumes < 10)
        f.add("the streams hardly resumed");

    json::array samples;
    for (auto v : heap_samples)
        samples.push_back(v);
    json::object report{{"mode", "soak"}, {"tls", st.tls}, {"idle_sessions", st.sessions}, {"seconds", seconds},
                        {"idle_reconnects", idle_reconnects}, {"dead_peer_disconnects", dead_peers},
                        {"queries_abandoned", abandoned}, {"queries_answered", queries_answered},
                        {"stream_resumes", resumes}, {"events_in_order", events},
                        {"heap_growth_bytes", growth}, {"heap_samples", samples},
                        {"fds_before", fds_before}, {"fds_after", fds_after}, {"heap_before", heap_before},
                        {"heap_after", heap_after}, {"failures", f.lines.size()}};
    std::cout << json::serialize(report) << std::endl;
    return f.lines.empty() ? 0 : 1;
}

} // namespace

int main(int argc, char** argv)
{
    settings st;
    std::vector<std::string> args(argv + 1, argv + argc);
    std::size_t i = 0;
    if (i < args.size() && !args[i].starts_with("--"))
        st.mode = args[i++];
    for (; i < args.size(); ++i) {
        auto value = [&]() -> std::string {
            if (i + 1 >= args.size()) {
                std::cerr << "lens_chaos: " << args[i] << " needs a value\n";
                std::exit(2);
            }
            return args[++i];
        };
        if (args[i] == "--sessions")
            st.sessions = std::stoul(value());
        else if (args[i] == "--seconds")
            st.duration = std::chrono::seconds(std::stoul(value()));
        else if (args[i] == "--tls")
            st.tls = true;
        else if (args[i] == "--seed")
            st.seed = static_cast<std::uint32_t>(std::stoul(value()));
        else {
            std::cerr << "usage: lens_chaos [chaos|soak] [--sessions N] [--seconds S] [--tls] [--seed X]\n";
            return 2;
        }
    }
    if (st.mode == "chaos")
        return chaos_run(st);
    if (st.mode == "soak")
        return soak_run(st);
    std::cerr << "lens_chaos: unknown mode " << st.mode << '\n';
    return 2;
}
