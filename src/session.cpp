// The WebSocket control channel: one connection, one reader, one writer, many
// callers. See include/lens/session.hpp for the rules this file implements.
//
// This file is the I/O driver of detail::channel_fsm, which decides every rule of
// time and reconnection: the driver reports events (connected, frame received,
// write done, connection lost...) and does what `resume()` answers (connect, ping,
// heartbeat, drop, stop), arming its ONE timer for the single next wake-up. While
// connected it runs on completion handlers only; a coroutine is used for a connect
// attempt, which the session owns through `attempt_cancel` and ends on close.
#include <lens/session.hpp>

#include <lens/detail/deadline.hpp>
#include <lens/detail/reply_matcher.hpp>
#include <lens/logger.hpp>
#include <lens/retry.hpp>

#include "detail/channel_fsm.hpp"
#include "detail/client_frames.hpp"
#include "detail/coalescing_stream.hpp"
#include "detail/endpoint.hpp"
#include "detail/frame_fields.hpp"
#include "detail/frame_reader.hpp"
#include "detail/http_connection.hpp"
#include "detail/read_pacing.hpp"
#include "detail/rest.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/circular_buffer.hpp>
#include <boost/intrusive/list.hpp>
#include <boost/intrusive/set.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/serializer.hpp>

#include <cstring>
#include <exception>
#include <limits>
#include <random>
#include <span>
#include <type_traits>
#include <variant>

namespace lens {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace http = beast::http;
namespace json = boost::json;
using detail::channel_fsm;
using detail::clock;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr std::string_view query_timed_out_message = "Response timed out for query";

/// Requests that may be sent twice without changing the session (resent after a reconnect).
bool is_idempotent(std::string_view type)
{
    return type == "session.status" || type == "session.validate" || type == "session.read" ||
           type == "session.heartbeat";
}

std::string random_client_id()
{
    static thread_local std::mt19937 rng{std::random_device{}()};
    char buf[9];
    std::snprintf(buf, sizeof buf, "%08x", static_cast<unsigned>(rng()));
    return buf;
}

/// The reconnect jitter of the sessions of this thread (channel_fsm::jitter_source).
double jitter_sample()
{
    static thread_local std::minstd_rand engine = [] {
        try {
            return std::minstd_rand(std::random_device{}());
        } catch (...) { // no entropy source: the clock still keeps sessions apart
            return std::minstd_rand(static_cast<unsigned>(clock::now().time_since_epoch().count()));
        }
    }();
    return std::uniform_real_distribution<double>(0.0, 1.0)(engine);
}

detail::channel_timing timing_of(const session_options& o)
{
    detail::channel_timing t;
    t.connect_timeout = o.connect_timeout;
    t.dead_peer_timeout = o.dead_peer_timeout;
    t.heartbeat_idle = o.heartbeat_idle;
    t.reconnect = o.reconnect;
    return t;
}

/// The request frame: {"type":…}, with its event_data when there is one. Written
/// straight into the string (Boost.JSON quoting the type): an object built only to be
/// serialized costs its table, its copy of the type and a growing output, per request.
/// A big `event_data` (a query's image) is read in place, never copied.
std::string serialize_request(std::string_view type, const json::value& event_data)
{
    std::string frame;
    frame.reserve(type.size() + 16);
    char chunk[512];
    json::serializer out;
    const auto append = [&] {
        while (!out.done())
            frame.append(out.read(chunk, sizeof chunk));
    };
    frame.append(R"({"type":)");
    out.reset(type);
    append();
    if (!event_data.is_null()) {
        frame.append(R"(,"event_data":)");
        out.reset(&event_data);
        append();
    }
    frame.push_back('}');
    return frame;
}

/// A refused WebSocket upgrade: a lens::error carrying the server's Retry-After.
struct upgrade_refused : lens::error {
    upgrade_refused(boost::system::error_code code, unsigned status, std::vector<server_error> said,
                    std::optional<std::chrono::milliseconds> retry)
        : lens::error(code, "session.connect", "upgrade refused", status, std::move(said)), retry_after(retry)
    {
    }
    std::optional<std::chrono::milliseconds> retry_after;
};

} // namespace

/// One request: queued to be written, then matched to its reply.
struct pending_request : detail::matcher_entry {
    boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>> send_hook;
    std::string frame;             ///< the request as written; freed once it can never be written again
    std::size_t frame_bytes = 0;   ///< what `frame` counts in session_stats::pending_bytes
    unsigned writes_in_flight = 0; ///< `frame` is being written (a write on a dropped connection may linger)
    bool free_after_write = false; ///< freeing `frame` waits for those writes
    bool idempotent = false;
    bool written = false;    ///< in the matcher: sent on the current connection
    bool abandoned = false;  ///< nobody waits for the reply any more (timed out, cancelled, internal)
    bool done = false;
    detail::reply reply; ///< the reply (its result is decoded from it)
    boost::system::error_code ec;
    std::string error_detail;
    /// The caller's coroutine while it waits (see wait_for_reply): resumed by the reply,
    /// the deadline or the caller's cancellation, whichever comes first.
    asio::any_completion_handler<void()> waiter;
    asio::cancellation_slot cancel_slot; ///< the waiter's, cleared when it is resumed
    clock::time_point deadline = clock::time_point::max();
    /// In the session's `deadlines` while the caller waits: the session's one timer
    /// serves them all, so a request costs no timer operation of its own.
    boost::intrusive::set_member_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> deadline_hook;
    std::shared_ptr<pending_request> self; ///< keeps the request alive while the session references it
};

/// The waiting requests, earliest deadline first.
struct earlier_deadline {
    bool operator()(const pending_request& a, const pending_request& b) const noexcept
    {
        return a.deadline < b.deadline;
    }
};
using deadline_index = boost::intrusive::multiset<
    pending_request,
    boost::intrusive::member_hook<pending_request, decltype(pending_request::deadline_hook),
                                  &pending_request::deadline_hook>,
    boost::intrusive::compare<earlier_deadline>, boost::intrusive::constant_time_size<false>>;

/// Resumes a waiting caller on its own executor: at once when that executor is the one
/// running this thread (the session's, normally), else posted to it. (The handler goes
/// inside a function object: Asio 1.81 wraps a type-erased handler passed as a
/// completion token again and again, without end.)
void resume(asio::any_completion_handler<void()> h)
{
    const auto where = asio::get_associated_executor(h);
    // An io_context's executor running this thread (the usual case) resumes the caller
    // here, as dispatch would, without wrapping it in a type-erased function first.
    if (const auto* io = where.target<asio::io_context::executor_type>(); io && io->running_in_this_thread()) {
        std::move(h)();
        return;
    }
    asio::dispatch(where, [h = std::move(h)]() mutable { std::move(h)(); });
}

/// Resumes a waiting caller after what the scheduler of `ex` holds now. (The type-erased
/// executor of the handler does not take a post of its own.)
void post_resume(const asio::any_io_executor& ex, asio::any_completion_handler<void()> h)
{
    asio::post(ex, [h = std::move(h)]() mutable { resume(std::move(h)); });
}

/// Resumes each of `callers` after what the scheduler of `ex` holds now, in order.
void post_resumes(const asio::any_io_executor& ex, std::span<asio::any_completion_handler<void()>> callers)
{
    for (auto& h : callers)
        post_resume(ex, std::move(h));
}

/// The caller waiting on `r`, out of the session's deadlines (empty when none waits).
/// Used as is only inside the caller's cancellation handler, which must not clear its
/// own slot; everything else takes the waiter with take_waiter.
asio::any_completion_handler<void()> unhook_waiter(pending_request& r) noexcept
{
    r.deadline_hook.unlink();
    return std::move(r.waiter);
}

/// The caller waiting on `r`, out of the deadlines and no longer reachable through its
/// cancellation slot: whoever takes it resumes it (or drops it) exactly once.
asio::any_completion_handler<void()> take_waiter(pending_request& r) noexcept
{
    r.cancel_slot.clear();
    return unhook_waiter(r);
}

/// A caller of `receive()` waiting for the inbox. Lives in that caller's coroutine frame
/// and unlinks itself if the frame goes away while waiting.
struct inbox_waiter
    : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
    explicit inbox_waiter(const asio::any_io_executor& ex) : timer(ex) {}
    asio::steady_timer timer;
    bool notified = false; ///< woken by a frame or a stop, not by cancellation
};

/// An unsolicited frame and the bytes of text it came as (what `inbox_max_bytes` counts).
struct inbox_entry {
    json::value frame;
    std::size_t bytes = 0;
};


/// One WebSocket connection, its read buffer and its frame reader. Completion handlers
/// hold it by shared_ptr, so the stream outlives its last operation even after the
/// session has moved on to the next connection.
///
/// Beast performs the upgrade; after it the session does its own framing, because Beast
/// reads and writes one message per operation and each operation costs a scheduler pass
/// (and with it an epoll_wait) on a busy session:
/// - the writer masks every queued frame straight into the coalescing layer's buffer
///   (detail::client_frames) and the burst leaves in one write (write_next); only a frame
///   over the layer's bound goes through Beast, on its own;
/// - on a plain connection the first write of a scheduler pass goes on the spot (the
///   socket takes it: no completion, no pass of its own) and the requests made later in
///   the same pass, or by the callers one read woke, leave together at the pass's end
///   (pump_writes, end_of_pass); a read that woke callers starts after them;
/// - the reader reads from the coalescing layer into `rx` and takes every frame the read
///   brought in one go (detail::frame_reader, Beast's rules and error codes).
template <class Stream>
struct connection {
    connection(Stream&& s, std::size_t max_message) : ws(std::move(s)), frames(max_message) {}
    websocket::stream<detail::coalescing_stream<Stream>> ws;
    beast::flat_buffer rx;
    detail::frame_reader frames;
    std::string pong_payload; ///< the last ping's payload, echoed by the writer's pong
    bool pong_due = false;    ///< a ping arrived: the writer answers it before anything else
    /// How much the next read asks for: doubles while reads fill it (a burst), back to
    /// the smallest when one does not. An idle session holds a buffer of this size.
    std::size_t read_chunk = smallest_read;
    static constexpr std::size_t smallest_read = 2048;
    static constexpr std::size_t largest_read = 64 * 1024;
    /// A plain socket: writes go on the spot when the socket takes them (write_next).
    static constexpr bool direct = detail::coalescing_stream<Stream>::direct;
};
using tcp_connection = connection<beast::tcp_stream>;
using tls_connection = connection<detail::http_connection::tls_stream>;

using send_queue = boost::intrusive::list<
    pending_request,
    boost::intrusive::member_hook<pending_request, decltype(pending_request::send_hook), &pending_request::send_hook>>;
using waiter_list = boost::intrusive::list<inbox_waiter, boost::intrusive::constant_time_size<false>>;

struct session::impl : std::enable_shared_from_this<impl> {
    impl(asio::any_io_executor executor, std::shared_ptr<const detail::endpoint> e, std::string_view endpoint,
         session_options o)
        : ex(executor), ep(std::move(e)), opts(std::move(o)),
          where(ep->session_origin(endpoint, "session.open")),
          client_id(opts.client_id.empty() ? random_client_id() : opts.client_id),
          fsm(timing_of(opts), &jitter_sample), timer(ex), state_signal(ex), pacing(detail::awaiting_tally_of(ex))
    {
    }

    ~impl()
    {
        // Normally everything left at teardown; this only breaks the requests' self-references.
        awaiting.drain([](pending_request& r) { r.self.reset(); });
        while (!to_send.empty()) {
            auto& r = to_send.front();
            to_send.pop_front();
            r.self.reset();
        }
    }

    asio::any_io_executor ex;
    std::shared_ptr<const detail::endpoint> ep; ///< shared with the client: TLS, headers, redaction
    session_options opts;
    detail::origin where;
    std::string client_id;
    channel_fsm fsm;

    send_queue to_send;
    detail::reply_matcher<pending_request> awaiting;
    deadline_index deadlines; ///< the callers waiting for a reply, by deadline
    asio::steady_timer timer;                     ///< the FSM's one wake-up
    clock::time_point timer_at = clock::time_point::max(); ///< when `timer` is due (max: not armed, or never)
    unsigned timer_waits = 0; ///< waits on `timer` whose handler has not run yet
    asio::steady_timer state_signal;              ///< wakes open() on the first connect or a stop
    /// Tears down the connect attempt in progress (null: none). One signal per attempt,
    /// held by that attempt until its coroutine is gone, so that no attempt's cancellation
    /// state ever points into a signal that a later attempt replaced.
    std::shared_ptr<asio::cancellation_signal> attempt_cancel;
    bool driving = false;     ///< inside drive(): events met on the way are seen by its loop
    bool ping_due = false;    ///< the FSM asked the writer for a ping
    bool writing = false;     ///< a write (frame or ping) is in flight on the live connection
    // Writes on a plain connection go on the spot (no completion to wait for) when they
    // are the first of a scheduler pass; the rest of the pass's requests wait for
    // end_of_pass and leave in one write.
    bool spot_written = false;       ///< a write went on the spot in this pass
    bool end_of_pass_posted = false; ///< end_of_pass is posted
    // The callers whose replies a read delivers resume inline, after the read's frames
    // are handled and before the next read starts (resume_after_read); their next
    // requests leave together in one write.
    bool taking_frames = false;    ///< inside a read's handling: woken callers wait in `ready`
    bool resuming_callers = false; ///< resume_after_read runs them: their writes wait for its end
    std::vector<asio::any_completion_handler<void()>> ready;
    bool inbox_overflowing = false; ///< an inbox_overflow was logged; the inbox has not been drained since
    detail::read_pacing pacing; ///< this session in its context's tally of sessions awaiting replies

    // While connected, the session runs on completion handlers alone: an idle session
    // holds one pending read and one timer wait, no coroutine frames. `generation`
    // tells a handler whether its connection is still the live one.
    std::variant<std::monostate, std::shared_ptr<tcp_connection>, std::shared_ptr<tls_connection>> live;
    std::uint64_t generation = 0;
    beast::tcp_stream* live_socket = nullptr; ///< the socket being upgraded or the live one, to close it

    boost::circular_buffer<inbox_entry> inbox;
    waiter_list receivers;
    session_stats counters; ///< pending_bytes and inbox_bytes kept current; the rest on demand

    // ---- the state machine's driver -----------------------------------------------

    /// Does what the FSM says is due at `now`, then arms the timer for the next wake-up.
    void drive(clock::time_point now = clock::now())
    {
        if (driving)
            return; // an event reported by one of the actions below: the loop resumes after it
        driving = true;
        struct done_driving {
            bool& flag;
            ~done_driving() { flag = false; }
        } guard{driving};
        for (;;) {
            const auto a = fsm.resume(now);
            switch (a.kind) {
            case channel_fsm::action::wait_until:
                arm_next(a.until);
                return;
            case channel_fsm::action::connect:
                start_attempt();
                break;
            case channel_fsm::action::abort_connect:
                abort_attempt();
                break;
            case channel_fsm::action::send_ping:
                ping_due = true; // written by the writer: Beast allows one
                pump_writes();
                break;
            case channel_fsm::action::send_heartbeat:
                enqueue_heartbeat();
                pump_writes();
                break;
            case channel_fsm::action::drop_dead_peer:
                ++counters.dead_peer_disconnects;
                log(log_level::warning, "dead_peer", [&](log_record& r) {
                    r.code = fsm.last_failure_code();
                    r.reason = fsm.last_failure();
                });
                log_reconnect(now, 0, std::nullopt);
                close_live();
                requeue_after_loss(fsm.last_failure());
                break;
            case channel_fsm::action::stop:
                teardown();
                break;
            }
        }
    }

    /// The timer is re-armed only when the wake-up moves earlier: a wake-up that comes
    /// too early (a frame arrived meanwhile) just asks the FSM again. So frames and
    /// writes cost no timer operation.
    void arm(clock::time_point until, bool callers_wait = false)
    {
        if (timer_waits > 0 && timer_at <= until)
            return; // a pending wait comes first
        if (until == clock::time_point::max() && !callers_wait)
            return; // nothing due. (Waiting callers keep a wait pending even then: its
                    // handler lets go of them if the io_context goes away, timer_handler.)
        timer_at = until;
        timer.expires_at(until);
        ++timer_waits;
        timer.async_wait(timer_handler{shared_from_this(), until});
    }

    /// Arms the timer for the FSM's next wake-up `fsm_until` or the earliest request
    /// deadline, whichever comes first.
    void arm_next(clock::time_point fsm_until)
    {
        if (deadlines.empty())
            arm(fsm_until);
        else
            arm(std::min(fsm_until, deadlines.begin()->deadline), true);
    }

    /// The handler of the session's one timer: the FSM's wake-up and the requests'
    /// deadlines. Destroyed without running (the io_context shut down), it lets go of the
    /// waiting callers, whose coroutines would otherwise keep themselves alive through
    /// their requests.
    struct timer_handler {
        std::shared_ptr<impl> self;
        clock::time_point until;

        void operator()(boost::system::error_code ec)
        {
            const auto s = std::move(self);
            --s->timer_waits;
            if (ec)
                return; // re-armed or stopped
            if (s->timer_at == until)
                s->timer_at = clock::time_point::max();
            const auto now = clock::now();
            s->expire_requests(now);
            s->drive(now);
        }

        timer_handler(std::shared_ptr<impl> s, clock::time_point u) : self(std::move(s)), until(u) {}
        timer_handler(timer_handler&&) = default;
        timer_handler& operator=(timer_handler&&) = delete;
        ~timer_handler()
        {
            if (self)
                self->drop_waiters();
        }
    };

    /// The callers whose deadline has passed resume (and time out), after this handler.
    void expire_requests(clock::time_point now)
    {
        while (!deadlines.empty() && deadlines.begin()->deadline <= now)
            if (auto caller = take_waiter(*deadlines.begin()))
                post_resume(ex, std::move(caller));
    }

    /// The io_context is going away with callers waiting: their coroutines are destroyed.
    void drop_waiters()
    {
        std::vector<asio::any_completion_handler<void()>> dropped;
        while (!deadlines.empty())
            dropped.push_back(take_waiter(*deadlines.begin()));
        // Destroyed here, after the index is left alone: a frame going away may release
        // the request and the session with it (the handler calling this holds the session).
    }

    void start() { fsm.start(clock::now()); drive(); }

    /// Stops for good (close, destroy, open cancelled); the first reason wins.
    void shutdown(boost::system::error_code ec, std::string detail)
    {
        fsm.stop(ec, std::move(detail));
        drive();
    }

    // ---- the logging hook (config::log, through the endpoint's redactor) ------------

    /// A record of this session, filled by `fill`; nothing is built when `level` is off.
    template <class Fill>
    void log(log_level level, std::string_view event, Fill fill) const
    {
        if (!ep->logs(level))
            return;
        log_record r;
        r.level = level;
        r.event = event;
        r.source = "session";
        const std::string target = where.host_header() + where.base_path;
        r.target = target;
        fill(r);
        ep->log(r);
    }

    /// The FSM counted a failure at `now` (a failed attempt, a lost connection): when it
    /// decided to try again, a `reconnect` record with the reason and the delay (and a
    /// `rate_limited` one for a 429). When it stopped instead, teardown logs `disconnect`.
    void log_reconnect(clock::time_point now, unsigned status, std::optional<std::chrono::milliseconds> server_delay)
    {
        if (fsm.current() != channel_fsm::phase::backing_off || !ep->logs(log_level::error))
            return;
        if (status == 429)
            log(log_level::debug, "rate_limited", [&](log_record& r) {
                r.code = fsm.last_failure_code();
                r.http_status = status;
                r.attempt = fsm.failures();
                r.server_delay = server_delay;
            });
        log(log_level::warning, "reconnect", [&](log_record& r) {
            r.code = fsm.last_failure_code();
            r.http_status = status;
            r.attempt = fsm.failures();
            if (fsm.retry_at() != clock::time_point::max())
                r.delay = std::chrono::ceil<std::chrono::milliseconds>(
                    std::max(fsm.retry_at() - now, clock::duration::zero()));
            r.server_delay = server_delay;
            r.reason = fsm.last_failure();
        });
    }

    // ---- completing requests ----------------------------------------------

    /// Frees the request's frame now, or once the writes still reading it complete.
    void free_frame(pending_request& r) noexcept
    {
        if (r.writes_in_flight > 0) {
            r.free_after_write = true;
            return;
        }
        counters.pending_bytes -= r.frame_bytes;
        r.frame_bytes = 0;
        std::string().swap(r.frame);
    }

    /// The session lets go of `r` (it may be destroyed: touch nothing after).
    void retire(pending_request& r) noexcept
    {
        free_frame(r);
        r.self.reset();
    }

    void finish(pending_request& r)
    {
        r.done = true;
        wake_caller(r);
        retire(r);
    }

    /// The callers woken by a read that will not resume them inline resume after what the
    /// scheduler holds now.
    void post_ready()
    {
        post_resumes(ex, ready);
        ready.clear();
    }

    /// The caller of `r`, if it waits, resumes: after the frames of the read being handled
    /// (see resume_after_read), or else after what the scheduler holds now.
    void wake_caller(pending_request& r)
    {
        if (!r.waiter)
            return;
        if (taking_frames)
            ready.push_back(take_waiter(r));
        else
            post_resume(ex, take_waiter(r));
    }

    void fail(pending_request& r, boost::system::error_code ec, std::string detail)
    {
        r.ec = ec;
        r.error_detail = std::move(detail);
        finish(r);
    }

    /// The caller gives up: an unsent request simply leaves the queue; a sent one keeps
    /// its place so that its late reply is consumed, not mis-delivered, but its frame
    /// (a query's image...) is freed now: it will never be written again.
    void abandon(pending_request& r)
    {
        if (r.send_hook.is_linked()) {
            to_send.erase(to_send.iterator_to(r));
            retire(r);
        } else {
            r.abandoned = true;
            free_frame(r);
        }
    }

    /// `text` is the reply, scrubbed of secrets, and `f` its fields.
    void deliver(pending_request& r, std::string_view text, detail::frame_fields& f)
    {
        if (r.abandoned) {
            ++counters.late_replies_dropped;
            retire(r);
            return;
        }
        ++counters.replies_matched;
        if (const auto failure = detail::reply_failure(f)) {
            const auto code = *failure == query_timed_out_message ? errc::query_timed_out : errc::api_error;
            fail(r, code, std::string(*failure));
            return;
        }
        r.reply.text.assign(text);
        r.reply.is_valid = f.is_valid;
        r.reply.error_messages = std::move(f.error_messages);
        finish(r);
    }

    void deliver_error_frame(pending_request& r, const detail::frame_fields& f)
    {
        if (r.abandoned) {
            ++counters.late_replies_dropped;
            retire(r);
            return;
        }
        std::string text = f.message_is_string ? std::string(f.message) : std::string("error frame");
        const bool gone = text.rfind("Unknown session id", 0) == 0;
        fail(r, gone ? errc::session_gone : errc::api_error, std::move(text));
    }

    // ---- the inbox ----------------------------------------------------------------

    void to_inbox(json::value frame, std::size_t bytes)
    {
        const std::size_t max_bytes = opts.inbox_max_bytes;
        if (bytes > max_bytes) { // could only be kept by breaking the bound
            ++counters.inbox_dropped;
            log_inbox_overflow();
            return;
        }
        if (inbox.capacity() == 0)
            inbox.set_capacity(std::max<std::size_t>(1, opts.inbox_capacity)); // allocated on first use
        // Drop-oldest: the reader never waits for the inbox's reader.
        while (!inbox.empty() && (inbox.full() || counters.inbox_bytes + bytes > max_bytes)) {
            counters.inbox_bytes -= inbox.front().bytes;
            inbox.pop_front();
            ++counters.inbox_dropped;
            log_inbox_overflow();
        }
        inbox.push_back(inbox_entry{std::move(frame), bytes});
        counters.inbox_bytes += bytes;
        if (!receivers.empty()) { // one frame, one waiter
            auto& w = receivers.front();
            receivers.pop_front();
            w.notified = true;
            w.timer.cancel();
        }
    }

    /// One `inbox_overflow` record per overflow: not again until the inbox has been
    /// drained empty, so a flood of frames does not become a flood of records.
    void log_inbox_overflow()
    {
        if (inbox_overflowing)
            return;
        inbox_overflowing = true;
        log(log_level::warning, "inbox_overflow", [&](log_record& r) {
            r.count = counters.inbox_dropped;
            r.reason = "unsolicited frames dropped, oldest first (inbox_capacity, inbox_max_bytes)";
        });
    }

    std::optional<json::value> pop_inbox()
    {
        if (inbox.empty())
            return std::nullopt;
        auto e = std::move(inbox.front());
        inbox.pop_front();
        if (inbox.empty())
            inbox_overflowing = false;
        counters.inbox_bytes -= e.bytes;
        return std::move(e.frame);
    }

    void wake_all_receivers()
    {
        while (!receivers.empty()) {
            auto& w = receivers.front();
            receivers.pop_front();
            w.notified = true;
            w.timer.cancel();
        }
    }

    /// Every frame from the server enters here, and is scrubbed of the key before it is
    /// classified: replies, error texts and the inbox only ever see the scrubbed frame.
    ///
    /// The typical frame builds no tree: when its text holds neither the key nor an
    /// escape, the fields that route it are gathered in one streaming pass, which gives up
    /// on an `api_key` member; so the text needs no scrubbing and is the reply as is.
    /// Anything else is parsed and its tree scrubbed (redactor::scrub), as before.
    void dispatch(std::string_view text)
    {
        const auto& secrets = ep->secrets();
        detail::frame_fields f;
        std::optional<json::value> tree;
        std::string scrubbed_text; // the scrubbed tree's text, when it differs from `text`
        const std::size_t bytes = text.size();
        const bool leaks = secrets.leaks(text);
        if (leaks || detail::redactor::has_escape(text) || !detail::gather_streaming(text, f)) {
            boost::system::error_code ec;
            tree.emplace(json::parse(text, ec));
            if (ec) {
                to_inbox(json::string(secrets.scrubbed(text)), bytes);
                return;
            }
            if (leaks || detail::redactor::may_hide_secret(text)) {
                secrets.scrub(*tree);
                scrubbed_text = json::serialize(*tree);
                text = scrubbed_text;
            }
            f = detail::frame_fields{};
            detail::gather_from_tree(*tree, f);
        }
        const auto cls = detail::classify_frame(f);
        if (cls.kind == detail::frame_class::reply) {
            if (auto* r = awaiting.match(cls.request_type)) {
                deliver(*r, text, f);
                return;
            }
        } else if (cls.kind == detail::frame_class::error) {
            if (auto* r = awaiting.oldest()) {
                deliver_error_frame(*r, f);
                return;
            }
        }
        to_inbox(tree ? std::move(*tree) : json::parse(text), bytes);
    }

    // ---- connection loss and stop -------------------------------------------

    /// The connection dropped: each request written on it meets its fate (channel_fsm).
    void requeue_after_loss(const std::string& why)
    {
        std::vector<pending_request*> resend;
        awaiting.drain([&](pending_request& r) {
            r.written = false;
            switch (channel_fsm::fate_after_loss(true, r.abandoned, r.idempotent)) {
            case detail::request_fate::drop:
                retire(r);
                break;
            case detail::request_fate::resend_first:
                resend.push_back(&r);
                break;
            case detail::request_fate::fail:
                fail(r, errc::connection_lost, "connection lost after the request was sent: " + why);
                break;
            case detail::request_fate::keep_queued:
                break; // only for requests never written
            }
        });
        for (auto it = resend.rbegin(); it != resend.rend(); ++it)
            to_send.push_front(**it);
    }

    /// The FSM stopped: everything fails with its code, the connection and any attempt
    /// in progress end, the timer and every waiter wake up.
    void teardown()
    {
        const auto code = fsm.stop_code();
        const std::string& detail = fsm.stop_detail();
        const bool asked = code == errc::closed || code == errc::session_gone; // by the user
        log(asked ? log_level::info : log_level::error, "disconnect", [&](log_record& r) {
            r.code = code;
            r.attempt = asked ? 0 : fsm.failures();
            r.reason = detail;
        });
        awaiting.drain([&](pending_request& r) {
            if (r.abandoned) retire(r); else fail(r, code, detail);
        });
        while (!to_send.empty()) {
            auto& r = to_send.front();
            to_send.pop_front();
            if (r.abandoned) retire(r); else fail(r, code, detail);
        }
        close_live();
        if (attempt_cancel)
            attempt_cancel->emit(asio::cancellation_type::terminal);
        timer.cancel();
        timer_at = clock::time_point::max();
        state_signal.cancel();
        wake_all_receivers();
    }

    void close_socket() noexcept
    {
        if (live_socket) {
            boost::system::error_code ignored;
            live_socket->socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
            live_socket->socket().close(ignored);
        }
    }

    /// Closes the live connection (or the one being upgraded); its pending operations
    /// complete with errors and are ignored: the generation moves on.
    void close_live() noexcept
    {
        close_socket();
        live_socket = nullptr;
        live = std::monostate{};
        ++generation;
        writing = false;
        ping_due = false;
        pacing.awaiting(false); // what it awaited is resent, if at all, on the next connection
    }

    /// The live connection `gen` failed (read or write error, oversized frame).
    void connection_failed(std::uint64_t gen, std::string why)
    {
        if (gen != generation || !fsm.connected())
            return; // already handled, or stopped
        close_live();
        const auto now = clock::now();
        fsm.on_connection_lost(now, ep->secrets().scrubbed(why));
        log_reconnect(now, 0, std::nullopt);
        requeue_after_loss(fsm.last_failure());
        drive();
    }

    // ---- connecting -----------------------------------------------------------

    void start_attempt()
    {
        auto cancel = std::make_shared<asio::cancellation_signal>();
        attempt_cancel = cancel;
        // The completion handler keeps the signal until the coroutine's thread is done with it.
        asio::co_spawn(ex, connect_attempt(shared_from_this(), fsm.attempt_deadline(), cancel),
                       asio::bind_cancellation_slot(cancel->slot(), [cancel](std::exception_ptr) {}));
    }

    /// The FSM's deadline passed: end the attempt wherever it is (resolve, TCP, TLS or
    /// upgrade); it then reports its failure, which the FSM counts as a timeout.
    void abort_attempt()
    {
        close_socket();
        if (attempt_cancel)
            attempt_cancel->emit(asio::cancellation_type::terminal);
    }

    /// One connect attempt. Owned by the session: `attempt_cancel` ends it on close.
    static asio::awaitable<void> connect_attempt(std::shared_ptr<impl> self, clock::time_point deadline,
                                                 std::shared_ptr<asio::cancellation_signal> cancel)
    {
        boost::system::error_code code;
        std::string detail;
        std::optional<std::chrono::milliseconds> retry_after;
        unsigned status = 0;
        try {
            co_await self->connect(deadline);
            self->attempt_ended(cancel);
            co_return;
        } catch (const upgrade_refused& e) {
            code = e.code();
            detail = e.what();
            retry_after = e.retry_after;
            status = e.http_status();
        } catch (const lens::error& e) {
            code = e.code();
            detail = e.what();
        } catch (const std::exception& e) {
            code = errc::connection_failed;
            detail = std::string("session.connect: ") + e.what();
        }
        self->attempt_ended(cancel);
        self->attempt_failed(code, std::move(detail), retry_after, status);
    }

    void attempt_ended(const std::shared_ptr<asio::cancellation_signal>& cancel) noexcept
    {
        if (attempt_cancel == cancel)
            attempt_cancel.reset();
    }

    void attempt_failed(boost::system::error_code code, std::string detail,
                        std::optional<std::chrono::milliseconds> retry_after, unsigned status)
    {
        live_socket = nullptr;
        if (fsm.current() != channel_fsm::phase::connecting)
            return; // stopped meanwhile
        ++counters.connect_failures;
        if (code.category() != error_category())
            code = errc::connection_failed; // a raw transport code (a cancelled operation...)
        const auto now = clock::now();
        fsm.on_connect_failed(now, code, ep->secrets().scrubbed(detail), retry_after);
        log_reconnect(now, status, retry_after);
        drive();
    }

    asio::awaitable<void> connect(clock::time_point deadline)
    {
        auto conn = co_await detail::http_connection::connect(where, ep->tls_for(where), deadline, "session.connect");
        if (auto* plain = std::get_if<detail::http_connection::tcp_stream>(&conn->stream())) {
            auto c = std::make_shared<tcp_connection>(std::move(*plain), message_limit());
            conn.reset();
            co_await handshake(c, deadline);
        } else {
            auto c = std::make_shared<tls_connection>(
                std::move(std::get<detail::http_connection::tls_stream>(conn->stream())), message_limit());
            conn.reset();
            co_await handshake(c, deadline);
        }
    }

    /// The upgrade's refusal as an error: the status through `lens::status_condition`
    /// (401/403 unauthorized, 404 not_found, 429 and 5xx retried), the server's
    /// diagnostics scrubbed of the key, its Retry-After for the FSM.
    upgrade_refused refusal(const websocket::response_type& res) const
    {
        const unsigned status = res.result_int();
        auto code = status_condition(status);
        if (!code)
            code = errc::http_error; // a 2xx that is not 101: not a WebSocket server
        std::vector<server_error> said;
        boost::system::error_code ec;
        json::value body = json::parse(res.body(), ec);
        if (!ec) {
            ep->secrets().scrub(body);
            said = parse_server_errors(body);
        }
        std::optional<std::chrono::milliseconds> retry;
        if (auto it = res.find(http::field::retry_after); it != res.end())
            retry = parse_retry_after(it->value());
        return upgrade_refused(code, status, std::move(said), retry);
    }

    template <class Connection>
    asio::awaitable<void> handshake(std::shared_ptr<Connection> c, clock::time_point deadline)
    {
        auto& ws = c->ws;
        auto& lowest = beast::get_lowest_layer(ws);
        lowest.expires_at(deadline); // the upgrade shares the attempt's deadline
        // The FSM owns the connection's timing (one timer for dead peer, keepalive and
        // heartbeat), so Beast's idle timeout is off: it would re-arm a timer on every
        // frame. Beast reads nothing after the upgrade (read_next does).
        websocket::stream_base::timeout timeouts;
        timeouts.handshake_timeout = opts.connect_timeout;
        timeouts.idle_timeout = websocket::stream_base::none();
        timeouts.keep_alive_pings = false;
        ws.set_option(timeouts);
        // Frames sent right behind the 101 stay in the layer for read_next, not in Beast.
        ws.next_layer().stop_reads_at_header_end();
        ws.set_option(websocket::stream_base::decorator([this](websocket::request_type& req) {
            ep->set_common_headers(req, where,
                                   opts.subprotocol_auth ? detail::endpoint::auth::websocket_subprotocol
                                                         : detail::endpoint::auth::bearer_header);
        }));
        ws.binary(true); // requests go out as binary frames

        websocket::response_type res;
        std::string target = where.base_path.empty() ? "/" : where.base_path;
        if (!where.query.empty())
            target += "?" + where.query;
        live_socket = &lowest;
        auto [hec] = co_await ws.async_handshake(res, where.host_header(), target, nothrow);
        live_socket = nullptr;
        if (hec) {
            if (hec == websocket::error::upgrade_declined)
                throw refusal(res);
            throw lens::error(detail::classify_transport_error(hec, errc::connection_failed), "session.connect",
                              "WebSocket upgrade with " + where.host_header() + ": " + hec.message());
        }
        lowest.expires_never();
        install(std::move(c));
    }

    /// The upgrade succeeded: `c` becomes the live connection.
    template <class Connection>
    void install(std::shared_ptr<Connection> c)
    {
        const auto now = clock::now();
        if (!fsm.on_connected(now)) { // stopped, or aborted, while the upgrade completed
            boost::system::error_code ignored;
            beast::get_lowest_layer(c->ws).socket().close(ignored);
            drive(now);
            return;
        }
        ++counters.connects;
        log(log_level::info, "connect", [&](log_record& r) {
            if (counters.connects > 1)
                r.reason = "reconnected";
        });
        const auto gen = ++generation;
        writing = false;
        ping_due = false;
        live = c;
        live_socket = &beast::get_lowest_layer(c->ws);
        c->ws.next_layer().keep_alive_with(c); // the layer's own writes (a flush) hold the connection
        state_signal.cancel();
        read_next(shared_from_this(), c, gen);
        write_next(c, gen); // requests queued while disconnected
        drive(now);
    }

    // ---- the live connection: completion handlers --------------------------------

    /// The largest message the frame reader accepts: max_message_size, 0 meaning no limit.
    std::size_t message_limit() const noexcept
    {
        // Half the range: the reader adds a frame's length to the fragments so far, and
        // that sum must not wrap.
        return opts.max_message_size != 0 ? opts.max_message_size : std::numeric_limits<std::size_t>::max() / 2;
    }

    /// How much the next read asks for: room for what the socket may have (a burst of
    /// replies), or for more of the frame begun, up to largest_read at a time. The buffer
    /// grows with the bytes that actually arrive, never with the length a header announces.
    template <class Connection>
    static std::size_t read_room(const Connection& c)
    {
        const auto have = c.rx.cdata();
        const std::size_t missing =
            c.frames.missing(std::string_view(static_cast<const char*>(have.data()), have.size()));
        return std::max(c.read_chunk, std::min(missing, Connection::largest_read));
    }

    /// `n` bytes were read into a room of `room`: every complete frame is handled and the
    /// next read's size chosen. False once the connection is over.
    template <class Connection>
    bool took(const std::shared_ptr<Connection>& c, std::uint64_t gen, std::size_t n, std::size_t room)
    {
        c->rx.commit(n);
        fsm.on_received(clock::now());
        struct taking {
            impl& s;
            bool done = false;
            ~taking()
            {
                s.taking_frames = false;
                if (!done)
                    s.post_ready(); // the connection ended (or a frame threw): nobody resumes them inline
            }
        } scope{*this};
        taking_frames = true;
        if (!take_frames(c, gen))
            return false;
        scope.done = true;
        taking_frames = false;
        if (n == room) {
            c->read_chunk = std::min(c->read_chunk * 2, Connection::largest_read);
        } else {
            c->read_chunk = Connection::smallest_read;
            if (c->rx.size() == 0 && c->rx.capacity() > 4 * Connection::smallest_read)
                c->rx.shrink_to_fit(); // the burst is over: an idle session keeps a small buffer
        }
        return true;
    }

    /// After a read: the callers it woke run, their requests leave, the next read starts:
    /// at once, or one scheduler pass later when other sessions of this thread's context
    /// await replies too (see detail/read_pacing.hpp).
    ///
    /// The read loop's two owners (`owner` of this session, `c` of its connection) pass by
    /// value from one read's handler to the next read's: moved, not copied, which saves four
    /// atomic reference count updates per read.
    template <class Connection>
    void read_next(std::shared_ptr<impl> owner, std::shared_ptr<Connection> c, std::uint64_t gen)
    {
        const bool resumed = !ready.empty();
        if (resumed) {
            resume_after_read(c, gen);
            if (gen != generation)
                return; // a caller closed the session, or its request broke the connection
        }
        pacing.awaiting(!awaiting.empty());
        if (resumed && pacing.defer_read()) {
            start_read_later(std::move(owner), std::move(c), gen);
            return;
        }
        start_read(std::move(owner), std::move(c), gen);
    }

    /// Starts the next read after what the scheduler holds now (the writes still queued
    /// first, with `pump_first`), unless the connection has changed meanwhile.
    template <class Connection>
    void start_read_later(std::shared_ptr<impl> owner, std::shared_ptr<Connection> c, std::uint64_t gen,
                          bool pump_first = false)
    {
        asio::post(ex, [owner = std::move(owner), c = std::move(c), gen, pump_first]() mutable {
            impl& self = *owner;
            if (gen != self.generation)
                return;
            if (pump_first)
                self.pump_writes();
            self.start_read(std::move(owner), std::move(c), gen);
        });
    }

    /// Resumes the callers whose replies the last read delivered, here and now, as a raw
    /// read loop would: a posted resumption costs a scheduler pass (and a non-blocking
    /// epoll_wait) before the caller's next request leaves. Their requests wait while
    /// they run and then leave together in one write, before the next read starts (when,
    /// read_next decides).
    template <class Connection>
    void resume_after_read(const std::shared_ptr<Connection>& c, std::uint64_t gen)
    {
        std::vector<asio::any_completion_handler<void()>> callers;
        callers.swap(ready);
        std::size_t next = 0;
        resuming_callers = true;
        try {
            for (; next < callers.size(); ++next)
                resume(std::move(callers[next]));
            // Their requests (and a ping a caller's drive() made due) leave in one write,
            // here: not marked as this pass's write on the spot, which would post an end of
            // pass (the read handler ends the pass itself). write_next does nothing when
            // nothing waits.
            if (gen == generation)
                write_next(c, gen);
        } catch (...) {
            // A caller's completion threw (a handler that rethrows), out through
            // io_context::run: the other callers are posted, and so are the writes and the
            // read that were to follow, so the session goes on. (try/catch, not a guard
            // asking std::uncaught_exceptions: that costs a call on every read.)
            resuming_callers = false;
            if (next < callers.size())
                post_resumes(ex, std::span(callers).subspan(next + 1));
            start_read_later(shared_from_this(), c, gen, true);
            throw;
        }
        resuming_callers = false;
        callers.clear();
        if (ready.empty())
            ready.swap(callers); // keep the capacity
    }

    template <class Connection>
    void start_read(std::shared_ptr<impl> owner, std::shared_ptr<Connection> c, std::uint64_t gen)
    {
        const std::size_t room = read_room(*c);
        auto& layer = c->ws.next_layer();
        const auto buffer = c->rx.prepare(room);
        auto handler = [owner = std::move(owner), c = std::move(c), gen, room](boost::system::error_code ec,
                                                                               std::size_t n) mutable {
            impl& self = *owner;
            if (gen != self.generation)
                return; // an old connection's read, completing after its close
            if (ec) {
                self.connection_failed(gen, "read: " + ec.message());
                return;
            }
            if (self.took(c, gen, n, room))
                self.read_next(std::move(owner), std::move(c), gen);
        };
        // A live connection has no read timeout (expires_never after the upgrade).
        layer.async_read_some_untimed(buffer, std::move(handler));
    }

    /// Handles every complete frame in the read buffer. False once the connection is
    /// over (a close frame, a protocol error, or a stop while dispatching).
    template <class Connection>
    bool take_frames(const std::shared_ptr<Connection>& c, std::uint64_t gen)
    {
        using kind = detail::frame_reader::kind;
        for (;;) {
            const auto data = c->rx.cdata();
            const auto f = c->frames.next(std::string_view(static_cast<const char*>(data.data()), data.size()));
            switch (f.what) {
            case kind::need_more:
                return true;
            case kind::fragment:
                break;
            case kind::message:
                dispatch(f.payload);
                break;
            case kind::ping:
                c->pong_payload.assign(f.payload);
                c->pong_due = true;
                break;
            case kind::pong:
                ++counters.pongs_received;
                break;
            case kind::close: {
                std::string why = "closed by the server (code " + std::to_string(f.close_code);
                if (!f.payload.empty())
                    why += ": " + std::string(f.payload);
                end_with_close(c, gen, f.close_code, why + ")");
                return false;
            }
            case kind::failed:
                // "Fail the WebSocket Connection" (RFC 6455 §7.1.7): a close frame with
                // the reason, then the TCP connection ends without waiting for the peer.
                if (f.error == websocket::error::message_too_big) {
                    ++counters.oversize_disconnects;
                    end_with_close(c, gen, 1009,
                                   "a frame over max_message_size (" + std::to_string(opts.max_message_size) +
                                       " bytes) was refused");
                } else {
                    end_with_close(c, gen, f.error == websocket::error::bad_frame_payload ? 1007 : 1002,
                                   "read: " + f.error.message());
                }
                return false;
            }
            c->rx.consume(f.consumed);
            if (gen != generation)
                return false; // the session stopped or dropped the connection meanwhile
            if (c->pong_due)
                pump_writes();
        }
    }

    /// Ends the connection with a close frame of `code` (the answer to the server's close,
    /// RFC 6455 §5.5.1, or the reason this client fails the connection), written when the
    /// writer is free; the TCP connection ends once it is written. A writer in the middle
    /// of a message cannot be interrupted by a frame: then the TCP connection just ends.
    template <class Connection>
    void end_with_close(const std::shared_ptr<Connection>& c, std::uint64_t gen, std::uint16_t code, std::string why)
    {
        if (writing) {
            connection_failed(gen, std::move(why));
            return;
        }
        writing = true; // nothing else is written on this connection
        auto& layer = c->ws.next_layer();
        const std::string frame = detail::client_close_frame(code);
        std::memcpy(layer.append(frame.size()), frame.data(), frame.size());
        layer.async_flush([self = shared_from_this(), c, gen, why = std::move(why)](boost::system::error_code) {
            self->connection_failed(gen, why);
        });
    }

    /// Starts the next write if none is in flight: a pong owed to the server first, then
    /// a keepalive ping, then the queued requests in order. The frames are encoded into
    /// the coalescing layer's buffer (detail::client_frames) and leave in one write, up to
    /// the layer's bound; what is queued meanwhile leaves in the next. A frame too large
    /// to be worth copying is written by Beast on its own.
    template <class Connection>
    void write_next(const std::shared_ptr<Connection>& c, std::uint64_t gen)
    {
        if (writing || gen != generation || !fsm.connected())
            return;
        auto& layer = c->ws.next_layer();
        bool frames = false;
        if (c->pong_due) {
            c->pong_due = false;
            append_frame(layer, detail::ws_opcode::pong, c->pong_payload);
            frames = true;
        }
        if (ping_due) {
            ping_due = false;
            append_frame(layer, detail::ws_opcode::ping, {});
            frames = true;
        }
        bool requests = false;
        while (!to_send.empty() && layer.buffered() < layer.max_buffered()) {
            pending_request& r = to_send.front();
            const bool large = r.frame.size() > layer.max_buffered();
            if (large && (frames || requests))
                break; // it goes next, on its own
            to_send.pop_front();
            r.written = true;
            awaiting.expect(r); // before writing: the reply may race the write's completion
            ++counters.requests_sent;
            if (r.request_type == "session.destroy")
                fsm.on_destroy_sent();
            if (large) {
                write_large(c, gen, r);
                return;
            }
            append_frame(layer, detail::ws_opcode::binary, r.frame);
            requests = true;
            // Copied into the layer: unless it may be resent, the frame is never needed again.
            if (!r.idempotent || r.abandoned)
                free_frame(r);
        }
        if (!frames && !requests)
            return; // nothing queued
        ++counters.writes;
        if constexpr (Connection::direct) {
            // On the spot when the socket takes it all: no completion, no scheduler pass.
            boost::system::error_code ec;
            const auto now = clock::now();
            if (layer.write_now(ec)) {
                if (!resuming_callers) {
                    spot_written = true; // the next requests of this pass wait for its end
                    end_of_pass_later();
                }
                fsm.on_write_started(now, requests);
                fsm.on_write_finished(now, requests);
                if (!to_send.empty())
                    write_next(c, gen); // stopped at the layer's bound: the rest follows
                drive(now);
                return;
            }
            if (ec) {
                connection_failed(gen, "write: " + ec.message());
                return;
            }
            // The socket took part of it: the rest is in flight, async_flush completes after it.
        }
        writing = true;
        fsm.on_write_started(clock::now(), requests);
        layer.async_flush([self = shared_from_this(), c, gen, requests](boost::system::error_code ec) {
            self->write_done(c, gen, ec, requests);
        });
    }

    template <class Layer>
    static void append_frame(Layer& layer, detail::ws_opcode op, std::string_view payload)
    {
        detail::encode_client_frame(layer.append(detail::client_frame_size(payload.size())), op, payload);
    }

    /// A frame over the layer's bound, written by Beast (masked in Beast's own small
    /// buffer, in pieces) rather than copied whole.
    template <class Connection>
    void write_large(const std::shared_ptr<Connection>& c, std::uint64_t gen, pending_request& r)
    {
        writing = true;
        ++counters.writes;
        ++r.writes_in_flight;
        fsm.on_write_started(clock::now(), true);
        // The handler keeps the request (and so the frame being written) alive even if
        // its caller gives up and the connection drops meanwhile.
        c->ws.async_write(asio::buffer(r.frame), [self = shared_from_this(), c, gen,
                                                  keep = r.self](boost::system::error_code ec, std::size_t) {
            auto& req = *keep;
            --req.writes_in_flight;
            // Written: unless it may be resent, the frame is never needed again.
            if (req.free_after_write || !req.idempotent || req.abandoned)
                self->free_frame(req);
            self->write_done(c, gen, ec, true);
        });
    }

    template <class Connection>
    void write_done(const std::shared_ptr<Connection>& c, std::uint64_t gen, boost::system::error_code ec,
                    bool request)
    {
        if (gen != generation)
            return;
        writing = false;
        fsm.on_write_finished(clock::now(), request);
        if (ec) {
            connection_failed(gen, "write: " + ec.message());
            return;
        }
        write_next(c, gen);
        drive(); // an idle writer makes the heartbeat due again
    }

    /// Kicks the writer of the live connection, if any. The first write of a scheduler
    /// pass starts at once (no extra hop on the latency path); the requests queued later
    /// in the pass, or while a write is in flight, leave together in the next write.
    void pump_writes()
    {
        if (resuming_callers)
            return; // resume_after_read writes once they have all run
        if (spot_written) {
            // Coalescing: a write already went on the spot in this scheduler pass; the
            // pass's other requests leave together at its end (end_of_pass), in one write.
            end_of_pass_later();
            return;
        }
        std::visit(
            [this](auto& c) {
                if constexpr (!std::is_same_v<std::decay_t<decltype(c)>, std::monostate>)
                    write_next(c, generation);
            },
            live);
    }

    /// Runs end_of_pass after what the scheduler holds now (once, however many ask).
    void end_of_pass_later()
    {
        if (end_of_pass_posted)
            return;
        end_of_pass_posted = true;
        asio::post(ex, [self = shared_from_this()] { self->end_of_pass(); });
    }

    /// The callers that ran in the pass have queued their requests: one write takes them.
    void end_of_pass()
    {
        end_of_pass_posted = false;
        spot_written = false;
        pump_writes();
    }

    void enqueue_heartbeat()
    {
        auto r = std::make_shared<pending_request>();
        r->request_type = "session.heartbeat";
        r->frame = serialize_request(r->request_type, nullptr);
        r->frame_bytes = r->frame.size();
        counters.pending_bytes += r->frame_bytes;
        r->idempotent = true;
        r->abandoned = true; // nobody waits: the reply is consumed and dropped
        r->self = r;
        to_send.push_back(*r);
        ++counters.heartbeats_sent;
    }

    // ---- requests ---------------------------------------------------------------

    /// Suspends the caller of `r` until its reply (or failure), its deadline or the
    /// caller's cancellation, whichever comes first; the caller then looks at `r`.
    static auto wait_for_reply(const std::shared_ptr<impl>& self, const std::shared_ptr<pending_request>& r)
    {
        return asio::async_initiate<const asio::use_awaitable_t<>, void()>(
            [](auto handler, impl& s, const std::shared_ptr<pending_request>& r) {
                auto slot = asio::get_associated_cancellation_slot(handler);
                // Not `waiter = std::move(handler)`: Asio 1.81's move assignment of
                // any_completion_handler wraps the handler in itself without end.
                asio::any_completion_handler<void()>(std::move(handler)).swap(r->waiter);
                if (slot.is_connected()) {
                    r->cancel_slot = slot;
                    slot.assign([w = std::weak_ptr<pending_request>(r), ex = s.ex](asio::cancellation_type) {
                        // The caller gives up: it resumes after this, finds `r` not done and
                        // abandons it. (The slot is not cleared here, inside its own handler.)
                        auto p = w.lock();
                        if (!p || !p->waiter)
                            return;
                        post_resume(ex, unhook_waiter(*p));
                    });
                }
                s.deadlines.insert(*r);
                s.arm(r->deadline, true);
            },
            asio::use_awaitable, std::ref(*self), r);
    }

    /// One request, start to finish, its result `decode` of the reply's text (which may
    /// throw). A static coroutine holding the session by shared_ptr: the public functions
    /// in front of it are ordinary functions that encode the request first, so neither
    /// the caller's arguments nor `this` are touched after they return (and a typed
    /// request costs one coroutine frame).
    template <class Decode>
    static asio::awaitable<std::invoke_result_t<Decode&, detail::reply&&>>
    request(std::shared_ptr<impl> self, std::string type, std::string frame, call_options o,
            std::chrono::milliseconds session_options::*timeout_of, Decode decode)
    {
        if (!self)
            throw lens::error(errc::closed, type, "moved-from session");
        impl& s = *self;
        if (s.fsm.stopped())
            throw lens::error(s.fsm.stop_code(), type, s.fsm.stop_detail());
        // Backpressure: a caller faster than the server gets a clear error, not a queue
        // (and its payloads) growing without bound. Abandoned requests count: each one
        // holds its place until its late reply or the connection's end.
        if (s.opts.max_pending != 0 && s.awaiting.size() + s.to_send.size() >= s.opts.max_pending)
            throw lens::error(errc::limit_exceeded, type,
                              "max_pending (" + std::to_string(s.opts.max_pending) +
                                  " requests) already pending; retry once replies arrive");
        const auto timeout = o.timeout.count() > 0 ? o.timeout : s.opts.*timeout_of;
        const auto deadline = detail::deadline_after(clock::now(), timeout);
        auto r = std::make_shared<pending_request>();
        r->idempotent = o.idempotent || is_idempotent(type);
        r->request_type = std::move(type); // named by r->request_type from here on
        r->frame = std::move(frame);
        r->frame_bytes = r->frame.size();
        s.counters.pending_bytes += r->frame_bytes;
        r->self = r;
        r->deadline = deadline;
        s.to_send.push_back(*r);
        s.pump_writes(); // may fail the request at once (a write on the spot found the connection broken)

        if (!r->done)
            co_await wait_for_reply(self, r);
        if (r->done) {
            if (r->ec)
                throw lens::error(r->ec, r->request_type, r->error_detail);
            co_return decode(std::move(r->reply));
        }
        s.abandon(*r);
        if (clock::now() >= deadline)
            throw lens::error(errc::timeout, r->request_type, "no reply within " + std::to_string(timeout.count()) + " ms");
        throw boost::system::system_error(asio::error::operation_aborted, r->request_type);
    }

    /// `receive()`: a static coroutine for the same reason as `request`.
    static asio::awaitable<std::optional<json::value>> receive(std::shared_ptr<impl> self,
                                                               std::chrono::milliseconds timeout)
    {
        if (!self)
            throw lens::error(errc::closed, "session.receive", "moved-from session");
        const auto deadline = detail::deadline_after(clock::now(), timeout);
        inbox_waiter w(self->ex);
        for (;;) {
            if (auto frame = self->pop_inbox())
                co_return frame;
            if (self->fsm.stopped() || clock::now() >= deadline)
                co_return std::nullopt;
            w.notified = false;
            w.timer.expires_at(deadline);
            self->receivers.push_back(w);
            // A frame or a stop wakes this waiter by cancelling its timer: not an error.
            auto [ec] = co_await w.timer.async_wait(nothrow);
            w.unlink();
            if (ec == asio::error::operation_aborted && !w.notified)
                throw boost::system::system_error(ec, "session.receive"); // the caller was cancelled
        }
    }
};

// ---- public API -----------------------------------------------------------------

namespace {

using self_ptr = std::shared_ptr<session::impl>;
using json_task = task<json::value>;
constexpr auto request_timeout = &session_options::request_timeout;

/// The reply as a tree: its text is scrubbed, valid JSON.
json::value parse_reply(detail::reply&& reply) { return json::parse(reply.text); }

/// Encodes the request now and returns the coroutine that sends it.
template <class Decode = decltype(&parse_reply)>
auto send_request(const self_ptr& self, std::string type, const json::value& event_data, call_options o,
                  Decode decode = &parse_reply,
                  std::chrono::milliseconds session_options::*timeout_of = request_timeout)
{
    auto frame = serialize_request(type, event_data);
    return session::impl::request(self, std::move(type), std::move(frame), o, timeout_of, std::move(decode));
}

const json::value* event_data_of(const json::value& reply)
{
    if (auto* o = reply.if_object())
        if (auto* d = o->if_contains("event_data"); d && !d->is_null())
            return d;
    return nullptr;
}

/// A validation: the fields the reply's routing read (no tree for the typical reply).
validation validation_of(detail::reply&& reply)
{
    validation result;
    result.is_valid = reply.is_valid.value_or(false);
    result.error_messages = std::move(reply.error_messages);
    result.reply = std::move(reply.text);
    return result;
}

read_result read_result_of(detail::reply&& reply, std::string client_id)
{
    read_result result;
    result.client_id = std::move(client_id);
    const json::value tree = json::parse(reply.text);
    if (auto* d = event_data_of(tree); d && d->is_object()) {
        auto& obj = d->get_object();
        if (auto* id = obj.if_contains("client_id"); id && id->is_string())
            result.client_id = std::string(id->get_string());
        if (auto* list = obj.if_contains("messages"); list && list->is_array())
            for (auto& m : list->get_array()) {
                mailbox_message msg;
                if (auto* mo = m.if_object()) {
                    if (auto* t = mo->if_contains("timestamp"); t && t->is_number())
                        msg.timestamp = t->to_number<double>();
                    if (auto* t = mo->if_contains("type"); t && t->is_string())
                        msg.type = std::string(t->get_string());
                    if (auto* t = mo->if_contains("data"))
                        msg.data = *t;
                } else {
                    msg.data = m;
                }
                result.messages.push_back(std::move(msg));
            }
    }
    result.reply = std::move(reply.text);
    return result;
}

json::object read_event_data(const std::string& client_id)
{
    json::object data;
    data["client_id"] = client_id;
    return data;
}

/// `input_stream.set`'s reply: a refusal (`is_valid: false`) is an error.
json::value input_stream_reply(detail::reply&& r)
{
    if (r.is_valid == false) { // present and false; absent is no refusal
        std::vector<server_error> errors;
        for (auto& m : r.error_messages)
            errors.push_back({{}, std::move(m), {}, {}});
        throw lens::error(errc::api_error, "input_stream.set", {}, 0, std::move(errors));
    }
    return parse_reply(std::move(r));
}

/// `model.query`'s result: the reply's `event_data.result`.
json::value query_result(detail::reply&& r)
{
    const json::value reply = parse_reply(std::move(r));
    if (auto* d = event_data_of(reply); d && d->is_object())
        if (auto* r = d->get_object().if_contains("result"))
            return *r;
    throw lens::error(errc::invalid_response, "model.query", "reply has no event_data.result");
}

/// session.destroy: the one typed operation with work after its reply, so a coroutine of
/// its own around the request (holding the session by shared_ptr, never `this`).
json_task destroy_then_shut_down(self_ptr self, call_options o)
{
    auto reply = co_await send_request(self, "session.destroy", nullptr, o);
    self->shutdown(errc::session_gone, "session destroyed");
    co_return reply;
}

} // namespace

session::session(std::shared_ptr<impl> p) noexcept : impl_(std::move(p)) {}
session::session(session&&) noexcept = default;
session& session::operator=(session&& other) noexcept
{
    if (this != &other) {
        close();
        impl_ = std::move(other.impl_);
    }
    return *this;
}
session::~session() { close(); }

const session_options& session::default_options() noexcept
{
    static const session_options defaults;
    return defaults;
}

task<session> session::open_task(const config& cfg, const session_record& record, const session_options& opts)
{
    co_return co_await open_task(cfg, record.session_endpoint, opts);
}

task<session> session::open_task(const config& cfg, const std::string& endpoint, const session_options& opts)
{
    // A private endpoint (and TLS context): client::open_session shares the client's.
    co_return co_await open(std::make_shared<const detail::endpoint>(cfg), endpoint, opts);
}

task<session> session::open(std::shared_ptr<const detail::endpoint> ep, std::string endpoint, session_options opts)
{
    auto p = std::make_shared<impl>(co_await asio::this_coro::executor, std::move(ep), endpoint, std::move(opts));
    p->start(); // the FSM bounds the whole open by connect_timeout, retries included
    while (!p->fsm.connected() && !p->fsm.stopped()) {
        p->state_signal.expires_at(clock::time_point::max());
        co_await p->state_signal.async_wait(nothrow);
        auto cancellation = co_await asio::this_coro::cancellation_state;
        if (cancellation.cancelled() != asio::cancellation_type::none) {
            p->shutdown(errc::closed, "open cancelled");
            throw boost::system::system_error(asio::error::operation_aborted, "session.open");
        }
    }
    if (p->fsm.stopped())
        throw lens::error(p->fsm.stop_code(), "session.open", p->fsm.stop_detail());
    co_return session(std::move(p));
}

task<session> session::open_copied(const config& cfg, const std::string& endpoint, const session_options& opts)
{
    return open(std::make_shared<const detail::endpoint>(cfg), endpoint, opts);
}

asio::any_io_executor session::token_executor() const noexcept
{
    return impl_ ? impl_->ex : asio::any_io_executor();
}

void session::close() noexcept
{
    if (impl_)
        impl_->shutdown(errc::closed, "session closed");
}

task<json::value> session::call_task(std::string&& type, json::value&& event_data, call_options o)
{
    return send_request(impl_, std::move(type), event_data, o);
}

task<session_record> session::status_task(call_options o)
{
    return send_request(impl_, "session.status", nullptr, o, [](detail::reply&& reply) {
        return detail::decode<session_record>(parse_reply(std::move(reply)), "session.status");
    });
}

task<validation> session::validate_task(call_options o)
{
    return send_request(impl_, "session.validate", nullptr, o, &validation_of);
}

task<read_result> session::read_task(call_options o)
{
    return read_task(impl_ ? std::string(impl_->client_id) : std::string(), o);
}

task<read_result> session::read_task(std::string&& client_id, call_options o)
{
    json::value data = read_event_data(client_id);
    return send_request(impl_, "session.read", data, o, [id = std::move(client_id)](detail::reply&& reply) {
        return read_result_of(std::move(reply), id);
    });
}

task<json::value> session::destroy_task(call_options o)
{
    return destroy_then_shut_down(impl_, o);
}

task<json::value> session::set_input_stream_task(const input_stream& s, call_options o)
{
    return impl::request(impl_, "input_stream.set", serialize_request("input_stream.set", to_event_data(s)), o,
                         request_timeout, &input_stream_reply);
}

task<json::value> session::query_task(const query_request& q, call_options o)
{
    // Encoded here: the image is copied once, into the frame, and nothing the caller
    // passed is referenced after this returns.
    return impl::request(impl_, "model.query", serialize_request("model.query", q.to_event_data()), o,
                         &session_options::query_timeout, &query_result);
}

task<json::value> session::update_task(json::value&& data, call_options o)
{
    json::object envelope;
    envelope["type"] = "data.json";
    envelope["event_data"] = std::move(data);
    return send_request(impl_, "session.update", envelope, o);
}

task<void> session::heartbeat_task(call_options o)
{
    return send_request(impl_, "session.heartbeat", nullptr, o, [](detail::reply&&) {});
}

std::optional<json::value> session::try_receive()
{
    if (!impl_)
        return std::nullopt;
    return impl_->pop_inbox();
}

task<std::optional<json::value>> session::receive_task(std::chrono::milliseconds timeout)
{
    return impl::receive(impl_, timeout);
}

json::value validation::raw() const { return json::parse(reply); }
json::value read_result::raw() const { return json::parse(reply); }

const std::string& session::client_id() const noexcept
{
    static const std::string none;
    return impl_ ? impl_->client_id : none;
}

session_stats session::stats() const noexcept
{
    if (!impl_)
        return {};
    auto s = impl_->counters;
    s.pending = impl_->awaiting.size() + impl_->to_send.size();
    s.inbox_frames = impl_->inbox.size();
    return s;
}

bool session::is_connected() const noexcept { return impl_ && impl_->fsm.connected(); }

} // namespace lens
