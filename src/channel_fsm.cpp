// channel_fsm.cpp — the control channel's timing and reconnect rules (see detail/channel_fsm.hpp).
#include "detail/channel_fsm.hpp"

#include <lens/detail/deadline.hpp>
#include <lens/error.hpp>
#include <lens/retry.hpp>

#include <algorithm>
#include <utility>

namespace lens::detail {

namespace {

std::string ms_text(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

channel_fsm::action wait_until(channel_fsm::time_point t) noexcept
{
    return {channel_fsm::action::wait_until, t};
}

channel_fsm::action act(channel_fsm::action::kind_type k) noexcept { return {k, channel_fsm::time_point::max()}; }

} // namespace

channel_fsm::channel_fsm(channel_timing timing, jitter_source jitter) noexcept
    : timing_(std::move(timing)), jitter_(jitter)
{
}

// ---- events -----------------------------------------------------------------------

void channel_fsm::start(time_point now)
{
    if (phase_ != phase::idle)
        return;
    open_deadline_ = deadline_after(now, timing_.connect_timeout);
    // "Backing off until now": `resume` starts the first attempt at once.
    phase_ = phase::backing_off;
    retry_at_ = now;
}

void channel_fsm::begin_attempt(time_point now)
{
    phase_ = phase::connecting;
    abort_requested_ = false;
    attempt_deadline_ = deadline_after(now, timing_.connect_timeout);
    if (!ever_connected_)
        attempt_deadline_ = std::min(attempt_deadline_, open_deadline_);
}

bool channel_fsm::on_connected(time_point now)
{
    if (phase_ != phase::connecting)
        return false;
    if (abort_requested_) { // the success raced the abort: the attempt timed out
        on_connect_failed(now, {}, {});
        return false;
    }
    phase_ = phase::connected;
    ever_connected_ = true;
    open_deadline_ = time_point::max();
    connected_at_ = last_receive_ = last_send_ = now;
    pinged_for_ = time_point::min();
    request_writing_ = false;
    return true;
}

void channel_fsm::on_connect_failed(time_point now, boost::system::error_code code, std::string detail,
                                    std::optional<std::chrono::milliseconds> server_delay)
{
    if (phase_ != phase::connecting)
        return; // stopped meanwhile
    if (abort_requested_) {
        // Whatever the torn-down attempt reported, the cause is its deadline.
        code = errc::timeout;
        detail = "connect attempt timed out";
        server_delay.reset();
    }
    abort_requested_ = false;
    fail_attempt(now, code ? code : make_error_code(errc::connection_failed), std::move(detail), server_delay);
}

void channel_fsm::on_connection_lost(time_point now, std::string detail)
{
    if (phase_ != phase::connected)
        return;
    count_loss(now, std::move(detail));
}

void channel_fsm::on_received(time_point now) noexcept { last_receive_ = std::max(last_receive_, now); }

void channel_fsm::on_write_started(time_point now, bool request) noexcept
{
    if (!request)
        return; // pings keep the connection alive, not the server-side session
    request_writing_ = true;
    last_send_ = std::max(last_send_, now);
}

void channel_fsm::on_write_finished(time_point now, bool request) noexcept
{
    if (!request)
        return;
    request_writing_ = false;
    last_send_ = std::max(last_send_, now);
}

void channel_fsm::stop(boost::system::error_code code, std::string detail)
{
    if (phase_ != phase::stopped)
        enter_stop(code, std::move(detail));
}

// ---- decisions ----------------------------------------------------------------------

void channel_fsm::count_loss(time_point now, std::string detail)
{
    if (now >= deadline_after(connected_at_, timing_.reconnect.reset_after))
        failures_ = 0; // it was stable: this loss starts a new run of failures
    fail_attempt(now, make_error_code(errc::connection_lost), std::move(detail), std::nullopt);
}

void channel_fsm::fail_attempt(time_point now, boost::system::error_code code, std::string detail,
                               std::optional<std::chrono::milliseconds> server_delay)
{
    if (failures_ != ~0u)
        ++failures_;
    last_failure_ = std::move(detail);
    last_failure_code_ = code;
    if (destroy_sent_) {
        enter_stop(errc::session_gone, "session destroyed");
        return;
    }
    const auto& policy = timing_.reconnect;
    const double u = policy.jitter > 0 && jitter_ ? jitter_() : 0.0;
    attempt_failure failure;
    failure.code = code;
    failure.server_delay = server_delay;
    // A (re)connect may always be repeated: nothing was asked of the session yet.
    const auto decision = decide_retry(policy, policy.max_attempts, failure, /*idempotent*/ true, failures_, now,
                                       open_deadline_, u);
    if (decision.retry) {
        phase_ = phase::backing_off;
        retry_at_ = decision.at;
        return;
    }
    if (!is_retryable(decision.code))
        enter_stop(decision.code, last_failure_);
    else if (policy.max_attempts != 0 && failures_ >= policy.max_attempts)
        enter_stop(decision.code,
                   "gave up after " + std::to_string(failures_) + " failed attempts in a row: " + last_failure_);
    else if (open_deadline_ != time_point::max()) // only the first connection has a deadline: open()'s
        enter_stop(errc::timeout, "not connected within " + ms_text(timing_.connect_timeout) +
                                      " (last attempt: " + last_failure_ + ")");
    else { // a delay that saturated to "never": the settings asked for it
        phase_ = phase::backing_off;
        retry_at_ = time_point::max();
    }
}

void channel_fsm::enter_stop(boost::system::error_code code, std::string detail)
{
    phase_ = phase::stopped;
    stop_code_ = code ? code : make_error_code(errc::closed);
    stop_detail_ = std::move(detail);
    stop_announced_ = false;
}

channel_fsm::action channel_fsm::resume(time_point now)
{
    switch (phase_) {
    case phase::idle:
        return wait_until(time_point::max());
    case phase::stopped:
        if (!std::exchange(stop_announced_, true))
            return act(action::stop);
        return wait_until(time_point::max());
    case phase::backing_off:
        if (now < retry_at_)
            return wait_until(retry_at_);
        begin_attempt(now);
        return act(action::connect);
    case phase::connecting:
        if (abort_requested_)
            return wait_until(time_point::max()); // the attempt's failure report comes next
        if (now >= attempt_deadline_) {
            abort_requested_ = true;
            return act(action::abort_connect);
        }
        return wait_until(attempt_deadline_);
    case phase::connected:
        return resume_connected(now);
    }
    return wait_until(time_point::max());
}

channel_fsm::action channel_fsm::resume_connected(time_point now)
{
    auto next = time_point::max();
    if (const auto limit = timing_.dead_peer_timeout; limit.count() > 0) {
        const auto drop_at = deadline_after(last_receive_, limit);
        if (now >= drop_at) {
            count_loss(now, "nothing received for " + ms_text(limit) + " (dead peer)");
            return act(action::drop_dead_peer);
        }
        if (pinged_for_ != last_receive_) {
            const auto ping_at = deadline_after(last_receive_, limit / 2);
            if (now >= ping_at) {
                pinged_for_ = last_receive_; // one ping per silence
                return act(action::send_ping);
            }
            next = ping_at;
        } else {
            next = drop_at;
        }
    }
    if (const auto idle = timing_.heartbeat_idle; idle.count() > 0 && !request_writing_) {
        const auto beat_at = deadline_after(last_send_, idle);
        if (now >= beat_at) {
            last_send_ = now; // due once; the heartbeat's own write moves it on
            return act(action::send_heartbeat);
        }
        next = std::min(next, beat_at);
    }
    return wait_until(next);
}

request_fate channel_fsm::fate_after_loss(bool written, bool abandoned, bool idempotent) noexcept
{
    if (abandoned)
        return request_fate::drop;
    if (!written)
        return request_fate::keep_queued;
    return idempotent ? request_fate::resend_first : request_fate::fail;
}

} // namespace lens::detail
