// lens::event_stream: the driver. It performs the I/O — one connection at a time, one
// timer — and reports what happened to the sans-I/O core (detail/stream_fsm.hpp), which
// decides every step: when to connect, read, pause, wait or give up, and what the
// consumer receives. See include/lens/event_stream.hpp for the contract.
//
// Who runs what:
// - the reader coroutine (one per stream, started by the first connect()/next()) owns
//   the connection: it connects, reads, and waits on `reader_wake` when the FSM says
//   `wait`;
// - `timer` is armed for `fsm.wake_at()` (the reconnection delay or the idle deadline of
//   the pending read); its handler asks the FSM what the expiry means: close the
//   connection (the pending read then fails and the reader reports it) or wake the reader;
// - next() and connect() take from the FSM and wait on `consumer_wake`.
// close() stops all three: the FSM first, then the socket, the timer, a connection
// attempt in progress (`reader_cancel`) and both waits. Nothing is detached without an
// owner: the reader holds the stream's state alive while it finishes, and the timer's
// handler holds it only weakly.
#include <lens/event_stream.hpp>

#include "detail/endpoint.hpp"
#include "detail/http_connection.hpp"
#include "detail/origin.hpp"
#include "detail/stream_fsm.hpp"

#include <lens/error.hpp>
#include <lens/logger.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <algorithm>
#include <vector>

namespace lens {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using clock_type = std::chrono::steady_clock;
using step = detail::stream_fsm::step;
using timer_step = detail::stream_fsm::timer_step;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view operation = "events";
/// The most of a refusal's body read for its diagnostics.
constexpr std::size_t max_error_body = 64 * 1024;

/// Wakes one waiting coroutine: a timer that never expires, cancelled to wake (the Asio
/// idiom for an event). The waiter re-checks its condition after every wake-up, so a
/// notification while nobody waits is simply not needed.
class wake_signal {
public:
    explicit wake_signal(const asio::any_io_executor& ex) : timer_(ex) {}

    asio::awaitable<void> wait()
    {
        struct waiting_flag {
            bool& flag;
            explicit waiting_flag(bool& f) : flag(f) { flag = true; }
            ~waiting_flag() { flag = false; }
        } flag(waiting_);
        timer_.expires_at(clock_type::time_point::max());
        boost::system::error_code ec;
        co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }

    void notify()
    {
        if (waiting_)
            timer_.cancel();
    }

private:
    asio::steady_timer timer_;
    bool waiting_ = false;
};

using body_parser = http::response_parser<http::buffer_body>;

} // namespace

struct event_stream::impl : std::enable_shared_from_this<impl> {
    impl(asio::any_io_executor executor, std::shared_ptr<const detail::endpoint> e, std::string id,
         const event_stream_options& opts)
        : ex(std::move(executor))
        , ep(std::move(e))
        , session_id(std::move(id))
        , where(ep->rest())
        , target(where.target("lens/sessions/consumer/" +
                              boost::urls::encode(session_id, boost::urls::unreserved_chars)))
        , fsm(opts, ep->settings(), ep->secrets())
        , read_buffer_size(std::max<std::size_t>(256, opts.read_buffer_size))
        , timer(ex)
        , reader_wake(ex)
        , consumer_wake(ex)
    {
        // Here, not at the first connect(): a CR or LF must be refused before anything
        // could be sent, and the constructor already reports bad configuration.
        detail::endpoint::check_header_value("Last-Event-ID", opts.last_event_id, operation);
    }

    asio::any_io_executor ex;
    std::shared_ptr<const detail::endpoint> ep; ///< shared with the client: TLS, headers, redaction
    std::string session_id;
    detail::origin where;
    std::string target;
    detail::stream_fsm fsm;
    std::size_t read_buffer_size;

    asio::steady_timer timer;                 ///< armed for fsm.wake_at()
    clock_type::time_point timer_due = clock_type::time_point::max();
    bool timer_armed = false;
    std::uint64_t timer_generation = 0;       ///< a handler of an older wait does nothing
    wake_signal reader_wake;
    wake_signal consumer_wake;
    asio::cancellation_signal reader_cancel;  ///< close() ends a connection attempt in progress

    std::unique_ptr<detail::http_connection> conn;
    std::optional<body_parser> reply;
    std::vector<char> read_buffer;

    bool started = false;
    bool connecting = false;                  ///< the reader is in http_connection::connect
    bool consumer_busy = false;

    clock_type::time_point now() const { return clock_type::now(); }

    // ---- lifecycle ------------------------------------------------------------

    void start()
    {
        if (started)
            return;
        started = true;
        // The completion handler keeps the state (and `reader_cancel`, whose slot the
        // coroutine machinery holds until the very end) alive until the reader is gone.
        asio::co_spawn(ex, run(shared_from_this()),
                       asio::bind_cancellation_slot(reader_cancel.slot(),
                                                    [keep = shared_from_this()](std::exception_ptr) {}));
    }

    void close() noexcept
    {
        fsm.close();
        try {
            drop_socket();
            stop_timer();
            if (connecting) {
                // Emitted from a handler of the context, never from here: the emission
                // reaches the coroutine through a dispatch, which outside the context's
                // run() is a post that could outlive this state (the stream's destructor
                // calls close()). The handler keeps the state alive until it has run.
                asio::post(ex, [self = shared_from_this()] {
                    if (self->connecting)
                        self->reader_cancel.emit(asio::cancellation_type::terminal);
                });
            }
            reader_wake.notify();
            consumer_wake.notify();
        } catch (...) {
            // Cancelling timers and operations does not fail in practice; nothing to report.
        }
    }

    /// Closes the socket; the reader, which owns the connection, releases it.
    void drop_socket() noexcept
    {
        if (conn)
            conn->close();
    }

    void release_connection() noexcept
    {
        if (conn) {
            conn->close();
            conn.reset();
        }
    }

    // ---- the timer ----------------------------------------------------------------

    /// Arms the timer for the FSM's wake-up time, unless a wait that ends no later is
    /// already armed: it fires, finds nothing due, and re-arms — one wait per idle period
    /// instead of one per read.
    void sync_timer()
    {
        const auto due = fsm.wake_at();
        if (due == clock_type::time_point::max() || (timer_armed && timer_due <= due))
            return;
        timer_armed = true;
        timer_due = due;
        const auto generation = ++timer_generation;
        timer.expires_at(due); // cancels the earlier wait; its handler sees an old generation
        timer.async_wait([weak = weak_from_this(), generation](boost::system::error_code ec) {
            auto self = weak.lock();
            if (!self || generation != self->timer_generation)
                return;
            self->timer_armed = false;
            if (!ec)
                self->on_timer();
        });
    }

    void stop_timer()
    {
        ++timer_generation;
        timer_armed = false;
        timer.cancel();
    }

    void on_timer()
    {
        switch (fsm.on_timer(now())) {
        case timer_step::drop_connection:
            log(log_level::warning, "dead_peer", [&](log_record& r) {
                r.code = errc::timeout;
                r.reason = "no bytes within idle_timeout: the connection is dropped";
            });
            drop_socket(); // the pending read fails; the reader reports the end
            break;
        case timer_step::wake_reader:
            reader_wake.notify();
            break;
        case timer_step::none:
            break;
        }
        sync_timer();
    }

    // ---- the logging hook (config::log, through the endpoint's redactor) ------------

    /// A record of this stream, filled by `fill`; nothing is built when `level` is off.
    template <class Fill>
    void log(log_level level, std::string_view event, Fill fill) const
    {
        if (!ep->logs(level))
            return;
        log_record r;
        r.level = level;
        r.event = event;
        r.source = "events";
        r.target = session_id;
        fill(r);
        ep->log(r);
    }

    /// A reconnection the FSM decided (and a `rate_limited` record for a 429).
    void log_reconnect()
    {
        auto note = fsm.take_reconnect_note();
        if (!note)
            return;
        if (note->http_status == 429)
            log(log_level::debug, "rate_limited", [&](log_record& r) {
                r.code = note->code;
                r.http_status = note->http_status;
                r.attempt = note->attempt;
                r.server_delay = note->server_delay;
            });
        log(log_level::warning, "reconnect", [&](log_record& r) {
            r.code = note->code;
            r.http_status = note->http_status;
            r.attempt = note->attempt;
            r.delay = note->delay;
            r.server_delay = note->server_delay;
            r.last_event_id = fsm.last_event_id(); // what the next attempt sends
            r.reason = note->reason;
        });
    }

    /// A reply was accepted: `connect`, or `stream_resume` when it carried Last-Event-ID.
    void log_accepted()
    {
        const auto& id = fsm.last_event_id(); // the id this request sent
        if (id.empty())
            log(log_level::info, "connect", [&](log_record&) {});
        else
            log(log_level::info, "stream_resume", [&](log_record& r) { r.last_event_id = id; });
    }

    /// The reader is done: the stream ended, was closed or failed.
    void log_stopped()
    {
        if (const auto* f = fsm.failure())
            log(log_level::error, "disconnect", [&](log_record& r) {
                r.code = f->code;
                r.http_status = f->http_status;
                r.reason = f->detail;
            });
        else
            log(log_level::info, "disconnect", [&](log_record& r) {
                r.reason = fsm.ended() ? "sse.stream.end received" : "closed";
            });
    }

    // ---- the reader -------------------------------------------------------------

    static asio::awaitable<void> run(std::shared_ptr<impl> self)
    {
        try {
            co_await self->drive();
        } catch (const std::exception& e) {
            // After close() this is the cancelled wait or connect (the FSM ignores it);
            // otherwise something unexpected, reported as a lost connection.
            self->fsm.abort(errc::connection_lost, e.what());
        }
        self->connecting = false;
        self->release_connection();
        self->stop_timer();
        self->log_stopped();
        self->consumer_wake.notify();
    }

    asio::awaitable<void> drive()
    {
        read_buffer.resize(read_buffer_size);
        step next = fsm.start(now());
        for (;;) {
            log_reconnect(); // the step just taken may have scheduled one
            sync_timer();
            consumer_wake.notify(); // events, a connection or the end: the consumer re-checks
            switch (next) {
            case step::connect:
                next = co_await attempt();
                break;
            case step::read:
                next = co_await read_some();
                break;
            case step::wait:
                co_await reader_wake.wait();
                next = fsm.resume(now());
                break;
            case step::stop:
                co_return;
            }
        }
    }

    /// One connection attempt: connect, send the request, read the reply head.
    asio::awaitable<step> attempt()
    {
        boost::system::error_code failed;
        std::string why;
        try {
            connecting = true;
            conn = co_await detail::http_connection::connect(where, ep->tls_for(where), fsm.connect_deadline(),
                                                             operation);
            connecting = false;
            if (fsm.over())
                co_return step::stop;
            detail::http_request req(http::verb::get, target, 11);
            ep->set_common_headers(req, where);
            req.set(http::field::accept, "text/event-stream");
            req.set(http::field::cache_control, "no-cache");
            if (!fsm.last_event_id().empty())
                req.set("Last-Event-ID", fsm.last_event_id());
            co_await conn->write(req, fsm.head_deadline(), operation);
        } catch (const detail::transport_error& e) {
            connecting = false;
            failed = e.code();
            why = e.what();
        }
        if (failed) {
            release_connection();
            co_return fsm.connect_failed(failed, std::move(why), now());
        }

        reply.emplace();
        reply->body_limit(boost::none); // a stream has no size; the parser's limits apply
        conn->tcp().expires_at(fsm.head_deadline());
        auto [hec, hn] = co_await std::visit(
            [&](auto& s) { return http::async_read_header(s, conn->buffer(), *reply, nothrow); }, conn->stream());
        if (fsm.over())
            co_return step::stop;
        if (hec) {
            release_connection();
            co_return fsm.connect_failed(detail::classify_transport_error(hec, errc::connection_lost),
                                         "reading the reply head: " + hec.message(), now());
        }
        const unsigned status = reply->get().result_int();
        if (status != 200) {
            std::string body = co_await read_refusal_body();
            release_connection();
            const auto& head = reply->get();
            co_return fsm.refused(status, head[http::field::retry_after], body, now());
        }
        conn->tcp().expires_never(); // the idle watchdog takes over from the head's deadline
        // Beast's parser reads at most the free room of this buffer: left at the 512 bytes
        // a reply head needed, every read of the stream would be a 512-byte system call.
        conn->buffer().reserve(read_buffer_size);
        const step next = fsm.accepted(reply->get()[http::field::content_type], now());
        if (fsm.current_phase() == detail::stream_fsm::phase::streaming)
            log_accepted();
        co_return next;
    }

    /// The body of a refusal, for its diagnostics: at most `max_error_body` bytes, before
    /// the head's deadline.
    asio::awaitable<std::string> read_refusal_body()
    {
        std::string body;
        auto& p = *reply;
        while (!p.is_done() && body.size() < max_error_body) {
            p.get().body().data = read_buffer.data();
            p.get().body().size = std::min(read_buffer.size(), max_error_body - body.size());
            const std::size_t offered = p.get().body().size;
            auto [ec, n] = co_await std::visit(
                [&](auto& s) { return http::async_read_some(s, conn->buffer(), p, nothrow); }, conn->stream());
            body.append(read_buffer.data(), offered - p.get().body().size);
            if (ec && ec != http::error::need_buffer)
                break;
        }
        co_return body;
    }

    /// One read of the body, reported to the FSM.
    asio::awaitable<step> read_some()
    {
        auto& p = *reply;
        if (p.is_done()) { // a body with a length, or chunked, that is complete
            release_connection();
            co_return fsm.connection_ended({}, "the stream ended without sse.stream.end", now());
        }
        p.get().body().data = read_buffer.data();
        p.get().body().size = read_buffer.size();
        auto [ec, n] = co_await std::visit(
            [&](auto& s) { return http::async_read_some(s, conn->buffer(), p, nothrow); }, conn->stream());
        const std::size_t got = read_buffer.size() - p.get().body().size;
        if (ec == http::error::need_buffer)
            ec = {};
        const auto t = now();
        step next = step::read;
        if (got != 0 || !ec)
            next = fsm.received(std::string_view(read_buffer.data(), got), t);
        if (next == step::stop)
            co_return next; // ended, failed or closed
        if (ec || p.is_done()) {
            release_connection();
            boost::system::error_code code;
            std::string why = "the stream ended without sse.stream.end";
            if (ec) {
                code = detail::classify_transport_error(ec, errc::connection_lost);
                why = "the stream broke: " + ec.message();
            }
            // Now, not `t`: parsing what the read brought took time, and the reconnection
            // delay counts from the end the reader sees (as the reconnect record says).
            next = fsm.connection_ended(code, std::move(why), now());
        }
        co_return next;
    }

    // ---- the consumer ---------------------------------------------------------------

    lens::error error_of(const detail::stream_failure& f) const
    {
        return lens::error(f.code, std::string(operation), "session " + session_id + ": " + f.detail, f.http_status,
                           f.said);
    }
};

event_stream::event_stream(asio::any_io_executor executor, config cfg, std::string session_id,
                           event_stream_options opts)
    // A private endpoint (and TLS context): client::events shares the client's.
    : event_stream(std::move(executor), std::make_shared<const detail::endpoint>(std::move(cfg)),
                   std::move(session_id), std::move(opts))
{
}

event_stream::event_stream(asio::any_io_executor executor, std::shared_ptr<const detail::endpoint> ep,
                           std::string session_id, event_stream_options opts)
    : impl_(std::make_shared<impl>(std::move(executor), std::move(ep), std::move(session_id), opts))
{
}

event_stream::event_stream(asio::any_io_executor executor, config cfg, std::string session_id)
    : event_stream(std::move(executor), std::move(cfg), std::move(session_id), event_stream_options{})
{
}

event_stream::event_stream(event_stream&&) noexcept = default;

event_stream& event_stream::operator=(event_stream&& other) noexcept
{
    if (this != &other) {
        if (impl_)
            impl_->close();
        impl_ = std::move(other.impl_);
    }
    return *this;
}

event_stream::~event_stream()
{
    if (impl_)
        impl_->close();
}

namespace {

/// Marks the consumer side busy for the duration of one next() / connect().
struct busy_guard {
    bool& flag;
    explicit busy_guard(bool& f) : flag(f)
    {
        if (flag)
            throw lens::error(errc::invalid_argument, std::string(operation),
                              "next() or connect() is already waiting on this stream");
        flag = true;
    }
    ~busy_guard() { flag = false; }
};

void throw_if_cancelled(const asio::cancellation_state& cs)
{
    if (cs.cancelled() != asio::cancellation_type::none)
        throw boost::system::system_error(asio::error::operation_aborted);
}

} // namespace

asio::awaitable<void> event_stream::connect_task(std::shared_ptr<impl> self)
{
    if (!self)
        throw lens::error(errc::closed, std::string(operation), "moved-from stream");
    busy_guard busy(self->consumer_busy);
    self->start();
    auto cs = co_await asio::this_coro::cancellation_state;
    for (;;) {
        throw_if_cancelled(cs);
        if (self->fsm.connected_once())
            co_return;
        if (const auto* f = self->fsm.failure())
            throw self->error_of(*f);
        if (self->fsm.over())
            co_return;
        co_await self->consumer_wake.wait();
    }
}

asio::awaitable<std::optional<session_event>> event_stream::next_task(std::shared_ptr<impl> self)
{
    if (!self)
        co_return std::nullopt;
    busy_guard busy(self->consumer_busy);
    self->start();
    auto cs = co_await asio::this_coro::cancellation_state;
    for (;;) {
        // Cancelled (a timer won an `||`): leave every event where it is.
        throw_if_cancelled(cs);
        if (auto ev = self->fsm.take()) {
            if (self->fsm.reader_may_continue())
                self->reader_wake.notify();
            co_return ev;
        }
        if (const auto* f = self->fsm.failure())
            throw self->error_of(*f);
        if (self->fsm.over())
            co_return std::nullopt;
        co_await self->consumer_wake.wait();
    }
}

asio::any_io_executor event_stream::token_executor() const noexcept
{
    return impl_ ? impl_->ex : asio::any_io_executor();
}

void event_stream::close() noexcept
{
    if (impl_)
        impl_->close();
}

namespace {
const std::string no_string;
} // namespace

const std::string& event_stream::last_event_id() const noexcept
{
    return impl_ ? impl_->fsm.delivered_id() : no_string;
}

bool event_stream::ended() const noexcept { return impl_ && impl_->fsm.ended(); }

const std::string& event_stream::session_id() const noexcept { return impl_ ? impl_->session_id : no_string; }

event_stream_stats event_stream::statistics() const noexcept
{
    return impl_ ? impl_->fsm.statistics() : event_stream_stats{};
}

} // namespace lens
