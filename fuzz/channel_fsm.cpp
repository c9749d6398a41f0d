// Fuzz target: the control channel's state machine (src/detail/channel_fsm.hpp) driven by
// a fuzzer-decoded sequence of events at scripted times, with fuzzer-chosen settings.
//
// The harness is the driver lens::session is: it calls resume(now) until told to wait,
// does what each action says, and reports connects, failures, frames, writes and losses.
// Invariants:
// - no connect attempt outlives its deadline: resume at or after it aborts the attempt,
//   and a wait while connecting never ends after it; before the first connection every
//   attempt and every backoff ends within connect_timeout of start();
// - a dead peer is dropped by dead_peer_timeout after the last frame (one ping per
//   silence before), a heartbeat is due by heartbeat_idle after the last request write;
// - every reconnect waits exactly what the policy says after failure n: delay(n - 1)
//   for the jitter sample used, or the server's hint clamped to max_server_delay when
//   longer (never less, so never faster than the policy); no wake-up is in the past;
// - max_attempts failures in a row stop the channel; `stop` is announced exactly once.
#include "detail/channel_fsm.hpp"

#include <lens/detail/deadline.hpp>
#include <lens/error.hpp>
#include <lens/retry.hpp>

#include "fuzz_check.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <chrono>

namespace {

using lens::detail::channel_fsm;
using lens::detail::deadline_after;
using ms = std::chrono::milliseconds;
using time_point = channel_fsm::time_point;
using act = channel_fsm::action;

double jitter_sample = 0.0;
double sample() { return jitter_sample; }

ms some_ms(FuzzedDataProvider& in, ms::rep most)
{
    switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: return ms(0);
    case 1: return ms::max(); // "never"
    default: return ms(in.ConsumeIntegralInRange<ms::rep>(0, most));
    }
}

boost::system::error_code some_code(FuzzedDataProvider& in)
{
    using lens::errc;
    static const errc codes[] = {errc::timeout, errc::connection_failed, errc::connection_lost,
                                 errc::rate_limited, errc::server_error, errc::unauthorized,
                                 errc::not_found, errc::certificate_rejected, errc::invalid_argument};
    const auto i = in.ConsumeIntegralInRange<std::size_t>(0, std::size(codes));
    if (i == std::size(codes))
        return {};
    return codes[i];
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    FuzzedDataProvider in(data, size);
    lens::detail::channel_timing timing;
    timing.connect_timeout = some_ms(in, 5000);
    timing.dead_peer_timeout = some_ms(in, 60000);
    timing.heartbeat_idle = some_ms(in, 60000);
    auto& policy = timing.reconnect;
    policy.initial = some_ms(in, 2000);
    policy.max = some_ms(in, 10000);
    policy.multiplier = in.ConsumeFloatingPointInRange<double>(0.5, 4.0);
    policy.jitter = in.ConsumeProbability<double>();
    policy.reset_after = some_ms(in, 20000);
    policy.max_attempts = in.ConsumeIntegralInRange<unsigned>(0, 6);
    policy.max_server_delay = some_ms(in, 60000);
    jitter_sample = in.ConsumeProbability<double>();
    const double u = policy.jitter > 0 ? jitter_sample : 0.0;

    channel_fsm fsm(timing, &sample);
    time_point now = time_point{} + std::chrono::hours(1);
    const time_point started = now;
    const time_point open_deadline = deadline_after(started, timing.connect_timeout);
    fsm.start(now);

    // The driver's own record, independent of the FSM's.
    bool ever_connected = false;
    bool attempting = false;   // a connect action was given and not reported yet
    bool aborting = false;     // ... and abort_connect was given for it
    bool writing = false;      // a request write in progress
    time_point last_receive{}, last_send{};
    bool pinged = false;       // a ping was asked for the current silence
    int stops = 0;

    // After a failure at `when` with the hint `hint`: the FSM backs off exactly as the policy says.
    auto check_backoff = [&](time_point when, std::optional<ms> hint) {
        if (fsm.stopped())
            return; // gave up: a final code, max_attempts, open()'s deadline, or destroyed
        FUZZ_REQUIRE(fsm.current() == channel_fsm::phase::backing_off);
        FUZZ_REQUIRE(fsm.failures() >= 1);
        if (policy.max_attempts != 0)
            FUZZ_REQUIRE(fsm.failures() < policy.max_attempts);
        ms wait = policy.delay(fsm.failures() - 1, u);
        if (hint)
            wait = std::max(wait, lens::clamp_server_delay(policy, *hint));
        if (fsm.retry_at() != time_point::max())
            FUZZ_REQUIRE(fsm.retry_at() == deadline_after(when, wait));
        if (!ever_connected && open_deadline != time_point::max())
            FUZZ_REQUIRE(fsm.retry_at() < open_deadline);
    };

    for (int step = 0; step < 400 && in.remaining_bytes() > 0; ++step) {
        // Do what is due now.
        time_point wake = time_point::max();
        for (int k = 0;; ++k) {
            FUZZ_REQUIRE(k < 16); // something is always left to wait for
            const act a = fsm.resume(now);
            if (a.kind == act::wait_until) {
                wake = a.until;
                FUZZ_REQUIRE(wake > now);
                break;
            }
            switch (a.kind) {
            case act::connect:
                FUZZ_REQUIRE(!fsm.stopped() && !attempting);
                FUZZ_REQUIRE(fsm.current() == channel_fsm::phase::connecting);
                FUZZ_REQUIRE(fsm.attempt_deadline() <= deadline_after(now, timing.connect_timeout));
                if (!ever_connected)
                    FUZZ_REQUIRE(fsm.attempt_deadline() <= open_deadline);
                attempting = true;
                aborting = false;
                break;
            case act::abort_connect:
                FUZZ_REQUIRE(attempting && !aborting && now >= fsm.attempt_deadline());
                aborting = true;
                break;
            case act::send_ping:
                FUZZ_REQUIRE(fsm.connected() && timing.dead_peer_timeout.count() > 0 && !pinged);
                FUZZ_REQUIRE(now >= deadline_after(last_receive, timing.dead_peer_timeout / 2));
                pinged = true;
                break;
            case act::send_heartbeat:
                FUZZ_REQUIRE(fsm.connected() && timing.heartbeat_idle.count() > 0 && !writing);
                FUZZ_REQUIRE(now >= deadline_after(last_send, timing.heartbeat_idle));
                last_send = now; // queued; the write reports follow
                break;
            case act::drop_dead_peer:
                FUZZ_REQUIRE(timing.dead_peer_timeout.count() > 0);
                FUZZ_REQUIRE(now >= deadline_after(last_receive, timing.dead_peer_timeout));
                writing = false;
                check_backoff(now, std::nullopt);
                break;
            case act::stop:
                FUZZ_REQUIRE(fsm.stopped() && ++stops == 1);
                attempting = false;
                break;
            default:
                FUZZ_REQUIRE(false);
            }
        }
        // What the wait promises.
        if (fsm.stopped()) {
            FUZZ_REQUIRE(stops == 1 && wake == time_point::max());
        } else if (fsm.current() == channel_fsm::phase::connecting && !aborting) {
            FUZZ_REQUIRE(wake <= fsm.attempt_deadline());
        } else if (fsm.current() == channel_fsm::phase::backing_off) {
            FUZZ_REQUIRE(wake == fsm.retry_at());
        } else if (fsm.connected()) {
            if (timing.dead_peer_timeout.count() > 0)
                FUZZ_REQUIRE(wake <= deadline_after(last_receive, timing.dead_peer_timeout));
            if (timing.heartbeat_idle.count() > 0 && !writing)
                FUZZ_REQUIRE(wake <= deadline_after(last_send, timing.heartbeat_idle));
        }

        // Then something happens.
        switch (in.ConsumeIntegralInRange<int>(0, 9)) {
        case 0: // time passes, up to the wake-up time at most (the timer fires then)
        case 1: {
            const auto d = std::chrono::milliseconds(in.ConsumeIntegralInRange<int>(0, 120000));
            now = std::min(wake, deadline_after(now, d));
            break;
        }
        case 2: // the timer fires
            if (wake != time_point::max())
                now = wake;
            break;
        case 3: // the attempt's outcome
            if (attempting) {
                attempting = false;
                const bool was_aborting = std::exchange(aborting, false);
                if (in.ConsumeBool()) {
                    const bool up = fsm.on_connected(now);
                    FUZZ_REQUIRE(up == !was_aborting);
                    if (up) {
                        ever_connected = true;
                        last_receive = last_send = now;
                        pinged = false;
                        writing = false;
                    } else {
                        check_backoff(now, std::nullopt);
                    }
                } else {
                    const auto code = some_code(in);
                    std::optional<ms> hint;
                    if (in.ConsumeBool())
                        hint = some_ms(in, 200000);
                    fsm.on_connect_failed(now, code, "refused", hint);
                    check_backoff(now, was_aborting ? std::nullopt : hint);
                }
            }
            break;
        case 4: // a frame
            fsm.on_received(now);
            if (fsm.connected()) {
                last_receive = now;
                pinged = false;
            }
            break;
        case 5: { // a write (request or ping) starts or ends
            const bool request = in.ConsumeBool();
            if (in.ConsumeBool()) {
                fsm.on_write_started(now, request);
                if (request && fsm.connected()) {
                    writing = true;
                    last_send = now;
                }
            } else {
                fsm.on_write_finished(now, request);
                if (request && fsm.connected()) {
                    writing = false;
                    last_send = now;
                }
            }
            break;
        }
        case 6: // the connection breaks
            if (fsm.connected()) {
                fsm.on_connection_lost(now, "read failed");
                writing = false;
                check_backoff(now, std::nullopt);
            }
            break;
        case 7:
            fsm.on_destroy_sent();
            break;
        case 8:
            if (in.ConsumeIntegralInRange<int>(0, 7) == 0) {
                fsm.stop(some_code(in), "closed");
                attempting = false;
            }
            break;
        default:
            break;
        }
    }
    return 0;
}
