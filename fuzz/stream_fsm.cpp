// Fuzz target: the event stream's sans-I/O core (src/detail/stream_fsm.hpp) driven like
// lens::event_stream drives it — connects, refusals, body bytes, ends, timers, takes and
// closes at scripted times — with fuzzer-chosen settings and server data that carries
// the API key in plain and escaped forms.
//
// Invariants:
// - the key never reaches the consumer: not in an event's id, type, raw JSON, typed
//   fields or malformed text, nor in a failure's detail and diagnostics, nor in a
//   reconnect note;
// - every reconnection waits what the policy says for its attempt (delay(n - 1) for the
//   jitter sample, or the clamped server hint when longer): never faster; a resume
//   before that time does not connect;
// - each attempt's deadlines are within `connect_timeout` and `timeout` of its start;
//   a pending read is dropped by the idle watchdog at `idle_timeout` at the latest;
// - the Last-Event-ID sent is a valid header value; nothing follows sse.stream.end.
//
// Server data: "$K" in the input stands for the key, "$U" for the key with its first
// character as a JSON \u escape, "$N" for an `api_key` member name in odd case.
#include "detail/stream_fsm.hpp"

#include <lens/detail/deadline.hpp>
#include <lens/retry.hpp>

#include "fuzz_check.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <string>

namespace {

using fsm_type = lens::detail::stream_fsm;
using step = fsm_type::step;
using time_point = fsm_type::time_point;
using ms = std::chrono::milliseconds;
using lens::detail::deadline_after;

const std::string key = "sk-live-Qx7Zk2P9";

std::string with_secrets(std::string s)
{
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '$' && i + 1 < s.size()) {
            const char c = s[i + 1];
            if (c == 'K') { out += key; ++i; continue; }
            if (c == 'U') { out += "\\u0073" + key.substr(1); ++i; continue; }
            if (c == 'N') { out += "aPi_KeY"; ++i; continue; }
        }
        out += s[i];
    }
    return out;
}

bool leaks(std::string_view s) { return s.find(key) != std::string_view::npos; }

/// No string of `v`, member name or value, at any depth, holds the key.
bool json_leaks(const boost::json::value& v) { return leaks(boost::json::serialize(v)); }

bool event_leaks(const lens::session_event& ev)
{
    if (leaks(ev.id) || leaks(ev.type) || leaks(ev.data) || json_leaks(ev.raw()))
        return true;
    return std::visit(
        [](const auto& b) {
            using T = std::decay_t<decltype(b)>;
            if constexpr (std::is_same_v<T, lens::stream_start>)
                return leaks(b.session_id) || leaks(b.reader_id);
            else if constexpr (std::is_same_v<T, lens::heartbeat>)
                return leaks(b.session_id) || leaks(b.session_status);
            else if constexpr (std::is_same_v<T, lens::stream_end>)
                return leaks(b.session_id);
            else if constexpr (std::is_same_v<T, lens::inference_result>) {
                const auto texts = b.texts();
                return leaks(b.query_id) ||
                       std::any_of(texts.begin(), texts.end(), [](const std::string& t) { return leaks(t); });
            }
            else if constexpr (std::is_same_v<T, lens::inference_error>)
                return std::any_of(b.error_messages.begin(), b.error_messages.end(),
                                   [](const std::string& m) { return leaks(m); });
            else if constexpr (std::is_same_v<T, lens::log_message>)
                return leaks(b.level) || leaks(b.message);
            else if constexpr (std::is_same_v<T, lens::error_event>)
                return leaks(b.message);
            else if constexpr (std::is_same_v<T, lens::malformed_event>)
                return leaks(b.data) || leaks(b.error);
            else
                return false;
        },
        ev.body);
}

ms some_ms(FuzzedDataProvider& in, ms::rep most)
{
    switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: return ms(0);
    case 1: return ms::max();
    default: return ms(in.ConsumeIntegralInRange<ms::rep>(0, most));
    }
}

double jitter_sample = 0;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    FuzzedDataProvider in(data, size);
    lens::event_stream_options opts;
    opts.idle_timeout = some_ms(in, 60000);
    opts.queue_capacity = in.ConsumeIntegralInRange<std::size_t>(0, 8);
    opts.queue_max_bytes = in.ConsumeIntegralInRange<std::size_t>(0, 4096);
    opts.parse_slice = in.ConsumeIntegralInRange<std::size_t>(0, 300);
    auto& policy = opts.reconnect;
    policy.initial = some_ms(in, 2000);
    policy.max = some_ms(in, 30000);
    policy.multiplier = in.ConsumeFloatingPointInRange<double>(0.5, 4.0);
    policy.jitter = in.ConsumeProbability<double>();
    policy.reset_after = some_ms(in, 60000);
    policy.max_attempts = in.ConsumeIntegralInRange<unsigned>(0, 5);
    policy.max_server_delay = some_ms(in, 60000);
    if (in.ConsumeBool()) {
        opts.limits.max_line = in.ConsumeIntegralInRange<std::size_t>(0, 512);
        opts.limits.max_event = in.ConsumeIntegralInRange<std::size_t>(0, 512);
    }
    if (in.ConsumeBool())
        opts.last_event_id = "42";
    lens::config cfg;
    cfg.api_key = key;
    cfg.timeout = some_ms(in, 10000);
    cfg.connect_timeout = some_ms(in, 10000);
    cfg.retry.max_attempts = in.ConsumeIntegralInRange<unsigned>(0, 4);
    cfg.log = lens::logger([](const lens::log_record&) {}, lens::log_level::debug);
    jitter_sample = in.ConsumeProbability<double>();
    const double u = policy.jitter > 0 ? jitter_sample : 0.0;

    fsm_type fsm(opts, cfg, lens::detail::redactor(key), [] { return jitter_sample; });
    time_point now = time_point{} + std::chrono::hours(1);
    step s = fsm.start(now);
    bool end_taken = false;
    time_point read_since{};
    std::size_t attempts = 0;

    // After each report: what the step and the state promise.
    // `resumed`: the step came from resume(), which repeats `read` for a read still pending.
    auto check = [&](step got, bool resumed = false) {
        const bool read_continues = resumed && s == step::read && got == step::read;
        s = got;
        if (auto note = fsm.take_reconnect_note()) {
            FUZZ_REQUIRE(!leaks(note->reason));
            FUZZ_REQUIRE(fsm.current_phase() == fsm_type::phase::waiting);
            FUZZ_REQUIRE(note->attempt >= 1);
            ms wait = policy.delay(note->attempt - 1, u);
            if (note->server_delay)
                wait = std::max(wait, lens::clamp_server_delay(policy, *note->server_delay));
            FUZZ_REQUIRE(fsm.wake_at() == deadline_after(now, wait)); // never sooner
        }
        if (const auto* f = fsm.failure()) {
            FUZZ_REQUIRE(!leaks(f->detail));
            for (const auto& e : f->said)
                FUZZ_REQUIRE(!leaks(e.code) && !leaks(e.message) && !leaks(e.suggestion) && !leaks(e.error_uid));
        }
        if (s == step::connect)
            FUZZ_REQUIRE(fsm.current_phase() == fsm_type::phase::connecting);
        if (const auto n = fsm.statistics().attempts; n != attempts) { // a new attempt began now
            FUZZ_REQUIRE(n == attempts + 1 && s == step::connect);
            attempts = n;
            FUZZ_REQUIRE(fsm.head_deadline() == deadline_after(now, cfg.timeout));
            FUZZ_REQUIRE(fsm.connect_deadline() <= deadline_after(now, cfg.connect_timeout));
            FUZZ_REQUIRE(fsm.connect_deadline() <= fsm.head_deadline());
            for (unsigned char c : fsm.last_event_id())
                FUZZ_REQUIRE(c >= 0x20 || c == '\t');
        }
        if (s == step::read) {
            if (!read_continues)
                read_since = now;
            if (opts.idle_timeout.count() > 0)
                FUZZ_REQUIRE(fsm.wake_at() <= deadline_after(now, opts.idle_timeout));
        }
        if (s == step::stop)
            FUZZ_REQUIRE(fsm.over() || fsm.current_phase() == fsm_type::phase::closed);
    };
    check(s);

    for (int i = 0; i < 200 && in.remaining_bytes() > 0; ++i) {
        switch (in.ConsumeIntegralInRange<int>(0, 9)) {
        case 0: { // time passes, not beyond the timer
            const time_point wake = fsm.wake_at();
            now = std::min(wake == time_point::max() ? time_point::max() - std::chrono::hours(1) : wake,
                           deadline_after(now, ms(in.ConsumeIntegralInRange<int>(0, 90000))));
            break;
        }
        case 1: { // the timer fires
            const time_point wake = fsm.wake_at();
            if (wake == time_point::max())
                break;
            const bool was_waiting = fsm.current_phase() == fsm_type::phase::waiting;
            now = wake;
            switch (fsm.on_timer(now)) {
            case fsm_type::timer_step::wake_reader:
                FUZZ_REQUIRE(was_waiting);
                check(fsm.resume(now), true);
                FUZZ_REQUIRE(s == step::connect || s == step::stop);
                break;
            case fsm_type::timer_step::drop_connection:
                FUZZ_REQUIRE(s == step::read && opts.idle_timeout.count() > 0);
                FUZZ_REQUIRE(now >= deadline_after(read_since, opts.idle_timeout));
                check(fsm.connection_ended(boost::asio::error::operation_aborted, "closed", now));
                break;
            case fsm_type::timer_step::none:
                break;
            }
            break;
        }
        case 2: // the attempt's outcome
            if (s != step::connect)
                break;
            switch (in.ConsumeIntegralInRange<int>(0, 3)) {
            case 0:
                check(fsm.connect_failed(lens::errc::connection_failed, with_secrets(in.ConsumeRandomLengthString(32)),
                                         now));
                break;
            case 1:
                check(fsm.accepted(in.ConsumeBool() ? "text/event-stream" : with_secrets(in.ConsumeRandomLengthString(24)),
                                   now));
                break;
            default: {
                const unsigned status = in.PickValueInArray({204u, 400u, 401u, 404u, 408u, 429u, 500u, 503u});
                const std::string retry_after = in.ConsumeRandomLengthString(8);
                const std::string body = with_secrets(in.ConsumeRandomLengthString(256));
                check(fsm.refused(status, retry_after, body, now));
                break;
            }
            }
            break;
        case 3:
        case 4: // body bytes
            if (s == step::read)
                check(fsm.received(with_secrets(in.ConsumeRandomLengthString(512)), now));
            break;
        case 5: // the body ends or breaks
            if (s == step::read)
                check(fsm.connection_ended(in.ConsumeBool() ? boost::system::error_code{}
                                                            : make_error_code(lens::errc::connection_lost),
                                           with_secrets(in.ConsumeRandomLengthString(16)), now));
            break;
        case 6:
        case 7: { // the consumer takes events
            for (int n = in.ConsumeIntegralInRange<int>(1, 8); n > 0; --n) {
                auto ev = fsm.take();
                if (!ev)
                    break;
                FUZZ_REQUIRE(!end_taken); // nothing after sse.stream.end
                FUZZ_REQUIRE(!event_leaks(*ev));
                end_taken = ev->kind() == lens::event_kind::stream_end;
            }
            if (fsm.reader_may_continue())
                check(fsm.resume(now), true);
            break;
        }
        case 8: { // the reader is woken (possibly early)
            const bool waiting = fsm.current_phase() == fsm_type::phase::waiting;
            const time_point due = fsm.wake_at();
            check(fsm.resume(now), true);
            if (waiting && now < due)
                FUZZ_REQUIRE(s == step::wait); // never connects before its time
            break;
        }
        default:
            if (in.ConsumeIntegralInRange<int>(0, 7) == 0) {
                fsm.close();
                s = step::stop;
            }
            break;
        }
    }
    while (auto ev = fsm.take())
        FUZZ_REQUIRE(!event_leaks(*ev));
    return 0;
}
