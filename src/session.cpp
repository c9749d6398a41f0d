// The WebSocket control channel: one connection, one reader, one writer, many
// callers. See include/lens/session.hpp for the rules this file implements.
#include <lens/session.hpp>

#include <lens/detail/reply_matcher.hpp>

#include "detail/endpoint.hpp"
#include "detail/http_connection.hpp"
#include "detail/rest.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/circular_buffer.hpp>
#include <boost/intrusive/list.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <random>
#include <type_traits>
#include <variant>

namespace lens {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace http = beast::http;
namespace json = boost::json;
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

std::string serialize_request(std::string_view type, const json::value& event_data)
{
    json::object o;
    o["type"] = type;
    if (!event_data.is_null())
        o["event_data"] = event_data;
    return json::serialize(o);
}

} // namespace

/// One request: queued to be written, then matched to its reply.
struct pending_request : detail::matcher_entry {
    explicit pending_request(const asio::any_io_executor& ex) : wake(ex) {}

    boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>> send_hook;
    std::string frame;
    bool idempotent = false;
    bool written = false;    ///< in the matcher: sent on the current connection
    bool abandoned = false;  ///< nobody waits for the reply any more (timed out, cancelled, internal)
    bool done = false;
    json::value reply;
    boost::system::error_code ec;
    std::string error_detail;
    asio::steady_timer wake;  ///< the caller sleeps on this until reply, deadline or cancellation
    std::shared_ptr<pending_request> self; ///< keeps the request alive while the session references it
};

#ifdef TCP_CORK
/// TCP_CORK as an Asio socket option: while set, the kernel coalesces what is written
/// into full segments; clearing it sends what is pending at once.
struct tcp_cork {
    int value = 0;
    template <class Protocol> int level(const Protocol&) const { return IPPROTO_TCP; }
    template <class Protocol> int name(const Protocol&) const { return TCP_CORK; }
    template <class Protocol> const int* data(const Protocol&) const { return &value; }
    template <class Protocol> std::size_t size(const Protocol&) const { return sizeof value; }
};
#endif

/// One WebSocket connection and its read buffer. Completion handlers hold it by
/// shared_ptr, so the stream outlives its last operation even after the session
/// has moved on to the next connection.
template <class Stream>
struct connection {
    explicit connection(Stream&& s) : ws(std::move(s)) {}
    websocket::stream<Stream> ws;
    beast::flat_buffer rx;
    bool corked = false;

    /// Batching: frames written back to back while `on` leave in as few TCP segments as
    /// possible (one wakeup of the server instead of one per frame); turning it off
    /// flushes them. Beast writes one message per call, so this is how several
    /// queued requests share a segment without bypassing Beast's framing.
    void cork(bool on) noexcept
    {
#ifdef TCP_CORK
        if (corked == on)
            return;
        corked = on;
        boost::system::error_code ignored;
        beast::get_lowest_layer(ws).socket().set_option(tcp_cork{on ? 1 : 0}, ignored);
#else
        (void)on;
#endif
    }
};
using tcp_connection = connection<beast::tcp_stream>;
using tls_connection = connection<detail::http_connection::tls_stream>;

using send_queue = boost::intrusive::list<
    pending_request,
    boost::intrusive::member_hook<pending_request, decltype(pending_request::send_hook), &pending_request::send_hook>>;

struct session::impl : std::enable_shared_from_this<impl> {
    enum class state { connecting, connected, reconnecting, stopped };

    impl(asio::any_io_executor executor, std::shared_ptr<const detail::endpoint> e, std::string_view endpoint,
         session_options o)
        : ex(executor), ep(std::move(e)), opts(std::move(o)),
          where(ep->session_origin(endpoint, "session.open")),
          client_id(opts.client_id.empty() ? random_client_id() : opts.client_id),
          schedule(opts.reconnect), liveness_timer(ex), heartbeat_timer(ex), retry_timer(ex), state_signal(ex),
          inbox_signal(ex)
    {
    }

    asio::any_io_executor ex;
    std::shared_ptr<const detail::endpoint> ep; ///< shared with the client: TLS, headers, redaction
    session_options opts;
    detail::origin where;
    std::string client_id;
    backoff schedule;

    state st = state::connecting;
    boost::system::error_code stop_code;
    std::string stop_detail;
    std::string last_connect_error;
    bool destroy_sent = false;

    send_queue to_send;
    detail::reply_matcher<pending_request> awaiting;
    asio::steady_timer liveness_timer;  ///< dead-peer check and keepalive ping
    asio::steady_timer heartbeat_timer; ///< `session.heartbeat` after an idle period
    asio::steady_timer retry_timer;     ///< the backoff sleep between connection attempts
    asio::steady_timer state_signal;    ///< wakes open() on the first connect or a stop
    clock::time_point last_send = clock::now();
    clock::time_point last_receive = clock::now(); ///< any frame, data or control (liveness)
    clock::time_point pinged_for{};                ///< the silence the last ping was about
    bool ping_due = false;    ///< the liveness check asks the writer for a ping
    bool writing = false;     ///< a write (frame or ping) is in flight on the live connection

    // While connected, the session runs on completion handlers alone: an idle session
    // holds one pending read and two timer waits, no coroutine frames. Coroutines are
    // used only to connect. `generation` tells a handler whether its connection is
    // still the live one.
    std::variant<std::monostate, std::shared_ptr<tcp_connection>, std::shared_ptr<tls_connection>> live;
    std::uint64_t generation = 0;
    beast::tcp_stream* live_socket = nullptr; ///< the socket being connected or the live one, to close it

    boost::circular_buffer<json::value> inbox;
    asio::steady_timer inbox_signal;
    session_stats counters;

    // ---- completing requests ----------------------------------------------

    static void finish(pending_request& r)
    {
        r.done = true;
        r.wake.cancel();
        r.self.reset(); // may destroy r if its caller is gone: touch nothing after
    }

    static void fail(pending_request& r, boost::system::error_code ec, std::string detail)
    {
        r.ec = ec;
        r.error_detail = std::move(detail);
        finish(r);
    }

    void deliver(pending_request& r, json::value frame)
    {
        if (r.abandoned) {
            ++counters.late_replies_dropped;
            r.self.reset();
            return;
        }
        ++counters.replies_matched;
        // An enveloped reply carrying `message` and no `event_data` is a failure.
        if (auto* obj = frame.if_object(); obj && obj->contains("type")) {
            const auto* message = obj->if_contains("message");
            const auto* data = obj->if_contains("event_data");
            if (message && (!data || data->is_null())) {
                const std::string text = message->is_string() ? std::string(message->get_string())
                                                              : json::serialize(*message);
                fail(r, text == query_timed_out_message ? errc::query_timed_out : errc::api_error, text);
                return;
            }
        }
        scrub_secrets(frame);
        r.reply = std::move(frame);
        finish(r);
    }

    void deliver_error_frame(pending_request& r, const json::value& frame)
    {
        if (r.abandoned) {
            ++counters.late_replies_dropped;
            r.self.reset();
            return;
        }
        std::string text = "error frame";
        if (auto* m = frame.as_object().if_contains("message"); m && m->is_string())
            text = std::string(m->get_string());
        const bool gone = text.rfind("Unknown session id", 0) == 0;
        fail(r, gone ? errc::session_gone : errc::api_error, std::move(text));
    }

    void to_inbox(json::value frame)
    {
        if (inbox.capacity() == 0)
            inbox.set_capacity(std::max<std::size_t>(1, opts.inbox_capacity)); // allocated on first use
        if (inbox.full())
            ++counters.inbox_dropped; // drop-oldest: the reader never waits for the inbox's reader
        inbox.push_back(std::move(frame));
        inbox_signal.cancel();
    }

    void dispatch(std::string_view text)
    {
        boost::system::error_code ec;
        json::value frame = json::parse(text, ec);
        if (ec) {
            to_inbox(json::string(text));
            return;
        }
        const auto cls = detail::classify_frame(frame);
        if (cls.kind == detail::frame_class::reply) {
            if (auto* r = awaiting.match(cls.request_type)) {
                deliver(*r, std::move(frame));
                return;
            }
        } else if (cls.kind == detail::frame_class::error) {
            if (auto* r = awaiting.oldest()) {
                deliver_error_frame(*r, frame);
                return;
            }
        }
        scrub_secrets(frame);
        to_inbox(std::move(frame));
    }

    // ---- connection loss and stop -------------------------------------------

    /// The connection dropped: requests written on it cannot be answered on the next one.
    void requeue_after_loss()
    {
        std::vector<pending_request*> resend;
        awaiting.drain([&](pending_request& r) {
            r.written = false;
            if (r.abandoned)
                r.self.reset();
            else if (r.idempotent)
                resend.push_back(&r);
            else
                fail(r, errc::connection_lost, "connection lost after the request was sent");
        });
        // Resent requests go first, in their original order.
        for (auto it = resend.rbegin(); it != resend.rend(); ++it)
            to_send.push_front(**it);
    }

    void stop(boost::system::error_code ec, std::string detail)
    {
        if (st == state::stopped)
            return;
        st = state::stopped;
        stop_code = ec;
        stop_detail = detail;
        awaiting.drain([&](pending_request& r) {
            if (r.abandoned) r.self.reset(); else fail(r, ec, detail);
        });
        while (!to_send.empty()) {
            auto& r = to_send.front();
            to_send.pop_front();
            fail(r, ec, detail);
        }
        drop_connection();
        retry_timer.cancel();
        state_signal.cancel();
        inbox_signal.cancel();
    }

    void close_socket() noexcept
    {
        if (live_socket) {
            boost::system::error_code ignored;
            live_socket->socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
            live_socket->socket().close(ignored);
        }
    }

    /// Closes the live connection (its pending operations complete with errors and are
    /// ignored: the generation moves on) and stops its timers.
    void drop_connection() noexcept
    {
        close_socket();
        live_socket = nullptr;
        live = std::monostate{};
        ++generation;
        writing = false;
        ping_due = false;
        liveness_timer.cancel();
        heartbeat_timer.cancel();
    }

    /// The live connection `gen` failed (read or write error, dead peer): reconnect.
    void connection_lost(std::uint64_t gen)
    {
        if (gen != generation || st != state::connected)
            return; // already handled, or stopped
        drop_connection();
        st = state::reconnecting;
        schedule.disconnected(clock::now());
        requeue_after_loss();
        asio::co_spawn(ex, connect_loop(shared_from_this(), false), asio::detached);
    }

    // ---- connecting -----------------------------------------------------------

    /// Connects (after a backoff delay unless `first`), retrying until connected or stopped.
    static asio::awaitable<void> connect_loop(std::shared_ptr<impl> self, bool first)
    {
        while (self->st != state::stopped) {
            if (!first) {
                if (self->destroy_sent) { // the session is gone: nothing to reconnect to
                    self->stop(errc::session_gone, "session destroyed");
                    break;
                }
                auto delay = self->schedule.next_delay();
                if (!delay) {
                    self->stop(errc::connection_lost, "gave up reconnecting after " +
                                                          std::to_string(self->schedule.attempts()) +
                                                          " attempts: " + self->last_connect_error);
                    break;
                }
                self->retry_timer.expires_after(*delay);
                co_await self->retry_timer.async_wait(nothrow);
                if (self->st == state::stopped)
                    break;
            }
            first = false;
            try {
                co_await self->connect();
                co_return; // connected: handlers take over until the connection is lost
            } catch (const lens::error& e) {
                ++self->counters.connect_failures;
                self->last_connect_error = e.what();
                if (e.code() == errc::unauthorized || e.code() == errc::session_gone ||
                    e.code() == errc::certificate_rejected) {
                    self->stop(e.code(), e.what());
                    break;
                }
            } catch (const std::exception& e) {
                ++self->counters.connect_failures;
                self->last_connect_error = e.what();
            }
        }
    }

    asio::awaitable<void> connect()
    {
        const auto deadline = clock::now() + opts.connect_timeout;
        auto conn = co_await detail::http_connection::connect(where, ep->tls_for(where), deadline, "session.connect");
        if (auto* plain = std::get_if<detail::http_connection::tcp_stream>(&conn->stream())) {
            auto c = std::make_shared<tcp_connection>(std::move(*plain));
            conn.reset();
            co_await handshake(c);
        } else {
            auto c = std::make_shared<tls_connection>(
                std::move(std::get<detail::http_connection::tls_stream>(conn->stream())));
            conn.reset();
            co_await handshake(c);
        }
    }

    template <class Connection>
    asio::awaitable<void> handshake(std::shared_ptr<Connection> c)
    {
        auto& ws = c->ws;
        auto& lowest = beast::get_lowest_layer(ws);
        lowest.expires_never(); // the websocket's own timeouts take over
        // Beast's idle timeout re-arms its timer on every read, which costs a timerfd_settime
        // system call per frame; check_liveness below arms one timer per half-period instead.
        websocket::stream_base::timeout timeouts;
        timeouts.handshake_timeout = opts.connect_timeout;
        timeouts.idle_timeout = websocket::stream_base::none();
        timeouts.keep_alive_pings = false;
        ws.set_option(timeouts);
        ws.control_callback([this](websocket::frame_type kind, beast::string_view) {
            last_receive = clock::now();
            if (kind == websocket::frame_type::pong)
                ++counters.pongs_received;
        });
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
        if (hec) {
            live_socket = nullptr;
            if (hec == websocket::error::upgrade_declined) {
                const unsigned status = res.result_int();
                const errc code = (status == 401 || status == 403) ? errc::unauthorized
                                  : status == 404                  ? errc::session_gone
                                                                   : errc::connection_failed;
                throw lens::error(code, "session.connect", "upgrade refused", status);
            }
            throw lens::error(detail::classify_transport_error(hec, errc::connection_failed), "session.connect",
                              "WebSocket upgrade with " + where.host_header() + ": " + hec.message());
        }
        if (st == state::stopped) { // closed while connecting
            live_socket = nullptr;
            co_return;
        }
        install(std::move(c));
    }

    /// The upgrade succeeded: `c` becomes the live connection.
    template <class Connection>
    void install(std::shared_ptr<Connection> c)
    {
        st = state::connected;
        ++counters.connects;
        schedule.connected(clock::now());
        state_signal.cancel();
        const auto gen = ++generation;
        last_receive = clock::now();
        pinged_for = {};
        ping_due = false;
        writing = false;
        live = c;
        read_next(c, gen);
        check_liveness(gen);
        arm_heartbeat(gen);
        write_next(c, gen); // requests queued while disconnected
    }

    // ---- the live connection: completion handlers --------------------------------

    template <class Connection>
    void read_next(const std::shared_ptr<Connection>& c, std::uint64_t gen)
    {
        c->ws.async_read(c->rx, [self = shared_from_this(), c, gen](boost::system::error_code ec, std::size_t) {
            if (gen != self->generation)
                return; // an old connection's read, completing after its close
            if (ec) {
                self->connection_lost(gen);
                return;
            }
            self->last_receive = clock::now();
            const auto data = c->rx.cdata();
            self->dispatch(std::string_view(static_cast<const char*>(data.data()), data.size()));
            c->rx.consume(c->rx.size());
            if (c->rx.capacity() > 64 * 1024)
                c->rx.shrink_to_fit(); // an idle session keeps a small buffer
            if (gen == self->generation)
                self->read_next(c, gen);
        });
    }

    /// Starts the next write if none is in flight: a keepalive ping first, then the
    /// queued requests in order, back to back.
    template <class Connection>
    void write_next(const std::shared_ptr<Connection>& c, std::uint64_t gen)
    {
        if (writing || gen != generation || st != state::connected)
            return;
        auto on_written = [self = shared_from_this(), c, gen](boost::system::error_code ec, auto&&...) {
            if (gen != self->generation)
                return;
            self->writing = false;
            if (ec) {
                self->connection_lost(gen);
                return;
            }
            self->write_next(c, gen);
        };
        if (ping_due) { // written here: Beast allows one writer
            ping_due = false;
            writing = true;
            c->ws.async_ping({}, std::move(on_written));
            return;
        }
        if (to_send.empty()) {
            c->cork(false); // the batch is complete: send it now
            return;
        }
        pending_request& r = to_send.front();
        to_send.pop_front();
        if (!to_send.empty())
            c->cork(true); // more frames queued behind this one: coalesce them
        r.written = true;
        awaiting.expect(r); // before writing: the reply may race the write's completion
        ++counters.requests_sent;
        last_send = clock::now();
        writing = true;
        // The handler keeps the request (and so the frame being written) alive even if
        // its caller gives up and the connection drops meanwhile.
        c->ws.async_write(asio::buffer(r.frame),
                          [keep = r.self, next = std::move(on_written)](boost::system::error_code ec,
                                                                         std::size_t) mutable { next(ec); });
    }

    /// Kicks the writer of the live connection, if any. The write starts at once (no
    /// extra scheduler hop on the latency path); requests queued while it is in flight
    /// go out corked, as one batch.
    void pump_writes()
    {
        std::visit(
            [this](auto& c) {
                if constexpr (!std::is_same_v<std::decay_t<decltype(c)>, std::monostate>)
                    write_next(c, generation);
            },
            live);
    }

    /// Dead-peer detection: nothing received (data, ping or pong) for `dead_peer_timeout`
    /// drops the connection, which then reconnects. Half-way through the silence the
    /// writer sends a WebSocket ping, which a live peer answers with a pong. The check
    /// runs on its own timer, so a write stuck behind a full send buffer cannot delay it,
    /// and the timer is re-armed once per half-period, not per frame.
    void check_liveness(std::uint64_t gen)
    {
        const auto limit = opts.dead_peer_timeout;
        if (limit.count() <= 0 || gen != generation || st != state::connected)
            return;
        const auto now = clock::now();
        if (now - last_receive >= limit) {
            ++counters.dead_peer_disconnects;
            connection_lost(gen);
            return;
        }
        const auto half_way = last_receive + limit / 2;
        if (now >= half_way && pinged_for != last_receive) {
            pinged_for = last_receive;
            ping_due = true;
            pump_writes();
        }
        liveness_timer.expires_at(now >= half_way ? last_receive + limit : half_way);
        liveness_timer.async_wait([self = shared_from_this(), gen](boost::system::error_code ec) {
            if (!ec)
                self->check_liveness(gen);
        });
    }

    /// `session.heartbeat` once nothing has been sent for `heartbeat_idle`.
    void arm_heartbeat(std::uint64_t gen)
    {
        if (opts.heartbeat_idle.count() <= 0 || gen != generation || st != state::connected)
            return;
        // Due a full period after the last send; when requests are queued behind a busy
        // writer (nothing to add), look again a full period from now rather than spin.
        heartbeat_timer.expires_at(std::max(last_send, clock::now() - opts.heartbeat_idle / 2) + opts.heartbeat_idle);
        heartbeat_timer.async_wait([self = shared_from_this(), gen](boost::system::error_code ec) {
            if (ec || gen != self->generation || self->st != state::connected)
                return;
            if (self->to_send.empty() && clock::now() >= self->last_send + self->opts.heartbeat_idle) {
                self->enqueue_internal("session.heartbeat");
                self->pump_writes();
            }
            self->arm_heartbeat(gen);
        });
    }

    void enqueue_internal(std::string_view type)
    {
        auto r = std::make_shared<pending_request>(ex);
        r->request_type = type;
        r->frame = serialize_request(type, nullptr);
        r->idempotent = true;
        r->abandoned = true; // nobody waits: the reply is consumed and dropped
        r->self = r;
        to_send.push_back(*r);
        ++counters.heartbeats_sent;
    }

    // ---- requests ---------------------------------------------------------------

    /// `keep` holds the session while the request runs: callers start this from ordinary
    /// functions (one coroutine frame per request, not one per API layer).
    asio::awaitable<json::value> request([[maybe_unused]] std::shared_ptr<impl> keep, std::string type,
                                         json::value event_data,
                                         call_options o, std::chrono::milliseconds default_timeout)
    {
        if (st == state::stopped)
            throw lens::error(stop_code ? stop_code : make_error_code(errc::closed), type, stop_detail);
        const auto timeout = o.timeout.count() > 0 ? o.timeout : default_timeout;
        const auto deadline = clock::now() + timeout;
        auto r = std::make_shared<pending_request>(ex);
        r->request_type = type;
        r->frame = serialize_request(type, event_data);
        r->idempotent = o.idempotent || is_idempotent(type);
        r->self = r;
        r->wake.expires_at(deadline);
        if (type == "session.destroy")
            destroy_sent = true;
        to_send.push_back(*r);
        pump_writes();

        co_await r->wake.async_wait(nothrow);
        if (r->done) {
            if (r->ec)
                throw lens::error(r->ec, type, r->error_detail);
            co_return std::move(r->reply);
        }
        // The caller gives up: an unsent request simply leaves the queue; a sent one
        // keeps its place so that its late reply is consumed, not mis-delivered.
        if (r->send_hook.is_linked()) {
            to_send.erase(to_send.iterator_to(*r));
            r->self.reset();
        } else {
            r->abandoned = true;
        }
        if (clock::now() >= deadline)
            throw lens::error(errc::timeout, type, "no reply within " + std::to_string(timeout.count()) + " ms");
        throw boost::system::system_error(asio::error::operation_aborted, type);
    }
};

// ---- public API -----------------------------------------------------------------

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

task<session> session::open(const config& cfg, const session_record& record, const session_options& opts)
{
    co_return co_await open(cfg, record.session_endpoint, opts);
}

task<session> session::open(const config& cfg, const std::string& endpoint, const session_options& opts)
{
    // A private endpoint (and TLS context): client::open_session shares the client's.
    co_return co_await open(std::make_shared<const detail::endpoint>(cfg), endpoint, opts);
}

task<session> session::open(std::shared_ptr<const detail::endpoint> ep, std::string endpoint, session_options opts)
{
    auto p = std::make_shared<impl>(co_await asio::this_coro::executor, std::move(ep), endpoint, opts);
    auto ex = p->ex;
    asio::co_spawn(ex, impl::connect_loop(p, true), asio::detached);
    const auto deadline = clock::now() + p->opts.connect_timeout;
    while (p->st != impl::state::connected && p->st != impl::state::stopped && clock::now() < deadline) {
        p->state_signal.expires_at(deadline);
        co_await p->state_signal.async_wait(nothrow);
        auto cancellation = co_await asio::this_coro::cancellation_state;
        if (cancellation.cancelled() != asio::cancellation_type::none) {
            p->stop(errc::closed, "open cancelled");
            throw boost::system::system_error(asio::error::operation_aborted, "session.open");
        }
    }
    if (p->st == impl::state::stopped)
        throw lens::error(p->stop_code, "session.open", p->stop_detail);
    if (p->st != impl::state::connected) {
        auto detail = "not connected within " + std::to_string(p->opts.connect_timeout.count()) + " ms";
        if (!p->last_connect_error.empty())
            detail += " (last attempt: " + p->last_connect_error + ")";
        p->stop(errc::timeout, detail);
        throw lens::error(errc::timeout, "session.open", detail);
    }
    co_return session(std::move(p));
}

void session::close() noexcept
{
    if (impl_)
        impl_->stop(errc::closed, "session closed");
}

task<json::value> session::call(std::string type, json::value event_data, call_options o)
{
    auto& i = *impl_;
    return i.request(impl_, std::move(type), std::move(event_data), o, i.opts.request_timeout);
}

task<session_record> session::status(call_options o)
{
    auto reply = co_await call("session.status", nullptr, o);
    co_return detail::decode<session_record>(reply, "session.status");
}

namespace {
const json::value* event_data_of(const json::value& reply)
{
    if (auto* o = reply.if_object())
        if (auto* d = o->if_contains("event_data"); d && !d->is_null())
            return d;
    return nullptr;
}

std::vector<std::string> strings_of(const json::value* v)
{
    std::vector<std::string> out;
    if (v && v->is_array())
        for (auto& item : v->get_array())
            out.push_back(item.is_string() ? std::string(item.get_string()) : json::serialize(item));
    return out;
}
} // namespace

task<validation> session::validate(call_options o)
{
    validation result;
    result.raw = co_await call("session.validate", nullptr, o);
    if (auto* data = event_data_of(result.raw); data && data->is_object()) {
        auto& obj = data->get_object();
        if (auto* v = obj.if_contains("is_valid"); v && v->is_bool())
            result.is_valid = v->get_bool();
        result.error_messages = strings_of(obj.if_contains("error_messages"));
    }
    co_return result;
}

task<read_result> session::read(call_options o) { co_return co_await read(impl_->client_id, o); }

task<read_result> session::read(std::string client_id, call_options o)
{
    json::object data;
    data["client_id"] = client_id;
    read_result result;
    result.client_id = client_id;
    result.raw = co_await call("session.read", std::move(data), o);
    if (auto* d = event_data_of(result.raw); d && d->is_object()) {
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
    co_return result;
}

task<json::value> session::destroy(call_options o)
{
    auto keep = impl_;
    auto reply = co_await call("session.destroy", nullptr, o);
    keep->stop(errc::session_gone, "session destroyed");
    co_return reply;
}

task<json::value> session::set_input_stream(const input_stream& s, call_options o)
{
    return send_input_stream(to_event_data(s), o);
}

task<json::value> session::send_input_stream(json::object event_data, call_options o)
{
    auto reply = co_await call("input_stream.set", std::move(event_data), o);
    if (auto* d = event_data_of(reply); d && d->is_object())
        if (auto* v = d->get_object().if_contains("is_valid"); v && v->is_bool() && !v->get_bool()) {
            std::vector<server_error> errors;
            for (auto& m : strings_of(d->get_object().if_contains("error_messages")))
                errors.push_back({{}, m, {}, {}});
            throw lens::error(errc::api_error, "input_stream.set", {}, 0, std::move(errors));
        }
    co_return reply;
}

task<json::value> session::query(const query_request& q, call_options o)
{
    return send_query(q.to_event_data(), o);
}

task<json::value> session::send_query(json::object event_data, call_options o)
{
    if (o.timeout.count() == 0)
        o.timeout = impl_->opts.query_timeout;
    auto reply = co_await call("model.query", std::move(event_data), o);
    if (auto* d = event_data_of(reply); d && d->is_object())
        if (auto* r = d->get_object().if_contains("result"))
            co_return *r;
    throw lens::error(errc::invalid_response, "model.query", "reply has no event_data.result");
}

task<json::value> session::update(json::value data, call_options o)
{
    json::object envelope;
    envelope["type"] = "data.json";
    envelope["event_data"] = std::move(data);
    co_return co_await call("session.update", std::move(envelope), o);
}

task<void> session::heartbeat(call_options o) { co_await call("session.heartbeat", nullptr, o); }

std::optional<json::value> session::try_receive()
{
    if (!impl_ || impl_->inbox.empty())
        return std::nullopt;
    auto v = std::move(impl_->inbox.front());
    impl_->inbox.pop_front();
    return v;
}

task<std::optional<json::value>> session::receive(std::chrono::milliseconds timeout)
{
    auto keep = impl_;
    const auto deadline = clock::now() + timeout;
    while (keep->inbox.empty() && keep->st != impl::state::stopped && clock::now() < deadline) {
        keep->inbox_signal.expires_at(deadline);
        co_await keep->inbox_signal.async_wait(asio::use_awaitable_t<>{}); // throws when cancelled... by design
    }
    co_return try_receive();
}

const std::string& session::client_id() const noexcept { return impl_->client_id; }

session_stats session::stats() const noexcept
{
    auto s = impl_->counters;
    s.pending = impl_->awaiting.size() + impl_->to_send.size();
    return s;
}

bool session::is_connected() const noexcept { return impl_ && impl_->st == impl::state::connected; }

} // namespace lens
