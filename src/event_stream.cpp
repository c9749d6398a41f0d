// lens::event_stream: the reader coroutine, the bounded queue, reconnection.
// See include/lens/event_stream.hpp for the contract.
#include <lens/event_stream.hpp>

#include "detail/endpoint.hpp"
#include "detail/http_connection.hpp"
#include "detail/origin.hpp"

#include <lens/error.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/json/parse.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <algorithm>
#include <cctype>
#include <deque>
#include <vector>

namespace lens {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view operation = "events";
constexpr std::size_t max_error_body = 64 * 1024;

bool is_event_stream(std::string_view content_type)
{
    content_type = content_type.substr(0, content_type.find(';'));
    while (!content_type.empty() && std::isspace(static_cast<unsigned char>(content_type.back())))
        content_type.remove_suffix(1);
    while (!content_type.empty() && std::isspace(static_cast<unsigned char>(content_type.front())))
        content_type.remove_prefix(1);
    constexpr std::string_view want = "text/event-stream";
    return content_type.size() == want.size() &&
           std::equal(want.begin(), want.end(), content_type.begin(), [](char a, char b) {
               return a == std::tolower(static_cast<unsigned char>(b));
           });
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
std::chrono::milliseconds retry_after(std::string_view v)
{
    unsigned long long s = 0;
    if (v.empty() || v.size() > 9)
        return {};
    for (char c : v) {
        if (c < '0' || c > '9')
            return {};
        s = s * 10 + static_cast<unsigned>(c - '0');
    }
    return std::chrono::seconds(s);
}

/// How one connection attempt ended, when it is not final.
struct outcome {
    enum kind_t { ended, closed, lost } kind = lost;
    boost::system::error_code ec;     ///< why it was lost
    std::string detail;
    unsigned status = 0;
    std::chrono::milliseconds retry_after{0};
    bool progress = false;            ///< a new event id arrived on this connection
};

} // namespace

struct event_stream::impl : std::enable_shared_from_this<impl> {
    impl(asio::any_io_executor executor, std::shared_ptr<const detail::endpoint> e, std::string id,
         event_stream_options o)
        : ex(std::move(executor))
        , ep(std::move(e))
        , cfg(ep->settings())
        , session_id(std::move(id))
        , opts(std::move(o))
        , where(ep->rest())
        , parser(opts.limits)
        , backoff(opts.reconnect)
        , consumer_wake(ex)
        , space_wake(ex)
        , retry_timer(ex)
    {
        opts.queue_capacity = std::max<std::size_t>(1, opts.queue_capacity);
        opts.read_buffer_size = std::max<std::size_t>(256, opts.read_buffer_size);
        opts.parse_slice = std::max<std::size_t>(1, opts.parse_slice);
        detail::endpoint::check_header_value("Last-Event-ID", opts.last_event_id, operation);
        parser.set_last_event_id(opts.last_event_id);
        delivered_id = opts.last_event_id;
        target = where.target("lens/sessions/consumer/" + boost::urls::encode(session_id, boost::urls::unreserved_chars));
    }

    asio::any_io_executor ex;
    std::shared_ptr<const detail::endpoint> ep; ///< shared with the client: TLS, headers, redaction
    const config& cfg;
    std::string session_id;
    event_stream_options opts;
    detail::origin where;
    std::string target;
    sse::parser parser;
    lens::backoff backoff;

    struct queued_event {
        session_event ev;
        std::size_t bytes;
    };
    std::deque<queued_event> queue;
    std::size_t queued_bytes = 0;

    asio::steady_timer consumer_wake; // next() / connect() wait here for the reader
    asio::steady_timer space_wake;    // the reader waits here for room in the queue
    asio::steady_timer retry_timer;   // the reader's reconnection delay
    std::unique_ptr<detail::http_connection> conn;
    std::vector<char> read_buffer;

    // The idle watchdog of the current connection (see read_body()).
    asio::steady_timer* watchdog_timer = nullptr;
    std::uint64_t connection_seq = 0;
    clock_type::time_point read_started;
    bool reading = false;
    bool idle_fired = false;

    bool started = false;
    bool connected_once = false;
    bool stream_ended = false;        // sse.stream.end received
    bool closed = false;              // close() called
    bool reader_done = false;
    bool consumer_waiting = false;
    bool reader_paused = false;
    bool consumer_busy = false;
    std::exception_ptr failure;
    std::string delivered_id;
    std::string connection_start_id;  // the parser's last id when this connection began
    event_stream_stats stats;

    // ---- consumer side ---------------------------------------------------

    void start()
    {
        if (started)
            return;
        started = true;
        asio::co_spawn(ex, run(shared_from_this()), asio::detached);
    }

    void wake_consumer()
    {
        if (consumer_waiting)
            consumer_wake.cancel();
    }

    void wake_reader()
    {
        if (reader_paused)
            space_wake.cancel();
    }

    void close() noexcept
    {
        if (closed)
            return;
        closed = true;
        if (conn)
            conn->close();
        retry_timer.cancel();
        space_wake.cancel();
        if (watchdog_timer)
            watchdog_timer->cancel();
        consumer_wake.cancel();
    }

    /// Waits for the reader to change something. Throws operation_aborted when cancelled.
    asio::awaitable<void> wait_for_reader()
    {
        consumer_waiting = true;
        consumer_wake.expires_at(clock_type::time_point::max());
        boost::system::error_code ec;
        co_await consumer_wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        consumer_waiting = false;
    }

    // ---- the reader --------------------------------------------------------

    static asio::awaitable<void> run(std::shared_ptr<impl> self)
    {
        try {
            co_await self->read_loop();
        } catch (const lens::error&) {
            self->failure = std::current_exception();
        } catch (const std::exception& e) {
            self->failure = std::make_exception_ptr(lens::error(errc::connection_lost, std::string(operation), e.what()));
        }
        self->reader_done = true;
        if (self->conn) {
            self->conn->close();
            self->conn.reset();
        }
        self->wake_consumer();
    }

    asio::awaitable<void> read_loop()
    {
        read_buffer.resize(opts.read_buffer_size);
        outcome last;
        for (;;) {
            if (closed)
                co_return;
            last = co_await attempt();
            if (last.kind != outcome::lost || closed)
                co_return;
            if (last.ec == errc::certificate_rejected)
                give_up(last); // configuration, not weather: retrying cannot help
            if (last.progress)
                backoff.reset();
            // Before the first success the stream is retried like a REST call.
            if (!connected_once && stats.attempts >= std::max(1u, cfg.retry.max_attempts))
                give_up(last);
            auto delay = backoff.next_delay();
            if (!delay)
                give_up(last);
            if (auto r = parser.retry(); r && *r > *delay)
                delay = r;
            if (last.retry_after > *delay)
                delay = last.retry_after;
            retry_timer.expires_after(*delay);
            boost::system::error_code ec;
            co_await retry_timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
    }

    [[noreturn]] void give_up(const outcome& last)
    {
        throw lens::error(last.ec ? last.ec : make_error_code(errc::connection_failed), std::string(operation),
                          "session " + session_id + ": gave up after " + std::to_string(stats.attempts) +
                              " attempts: " + last.detail,
                          last.status);
    }

    /// One connection: connect, request, check the reply, read the body.
    asio::awaitable<outcome> attempt()
    {
        ++stats.attempts;
        outcome out;
        const auto head_deadline = clock_type::now() + cfg.timeout;
        http::response_parser<http::buffer_body> p;
        p.body_limit(boost::none);
        try {
            conn = co_await detail::http_connection::connect(
                where, ep->tls_for(where), std::min(head_deadline, clock_type::now() + cfg.connect_timeout), operation);
            if (closed) {
                out.kind = outcome::closed;
                co_return out;
            }
            detail::http_request req(http::verb::get, target, 11);
            ep->set_common_headers(req, where);
            req.set(http::field::accept, "text/event-stream");
            req.set(http::field::cache_control, "no-cache");
            if (!parser.last_event_id().empty())
                req.set("Last-Event-ID", parser.last_event_id());
            co_await conn->write(req, head_deadline, operation);
        } catch (const detail::transport_error& e) {
            out.ec = e.code();
            out.detail = e.what();
            drop_connection();
            co_return out;
        }

        conn->tcp().expires_at(head_deadline);
        auto [hec, hn] = co_await std::visit(
            [&](auto& s) { return http::async_read_header(s, conn->buffer(), p, nothrow); }, conn->stream());
        if (hec) {
            out.ec = detail::classify_transport_error(hec, errc::connection_lost);
            out.detail = "reading the reply head: " + hec.message();
            drop_connection();
            co_return out;
        }
        if (closed) {
            drop_connection();
            out.kind = outcome::closed;
            co_return out;
        }

        const unsigned status = p.get().result_int();
        if (status != 200) {
            std::string body = co_await read_error_body(p, head_deadline);
            drop_connection();
            out.status = status;
            out.detail = std::to_string(status) + " from the consumer endpoint";
            if (status == 408 || status == 429 || status >= 500) {
                ++stats.retried_statuses;
                out.ec = status == 429 ? errc::rate_limited : status == 408 ? errc::timeout : errc::server_error;
                out.retry_after = retry_after(p.get()[http::field::retry_after]);
                co_return out;
            }
            std::vector<server_error> said;
            boost::system::error_code jec;
            auto json = boost::json::parse(body, jec);
            if (!jec)
                said = parse_server_errors(json);
            const errc code = status == 401 || status == 403 ? errc::unauthorized
                            : status == 404                  ? errc::not_found
                                                             : errc::http_error;
            throw lens::error(code, std::string(operation), "session " + session_id, status, std::move(said));
        }
        if (!is_event_stream(p.get()[http::field::content_type])) {
            const std::string type(p.get()[http::field::content_type]);
            drop_connection();
            throw lens::error(errc::not_event_stream, std::string(operation),
                              "session " + session_id + ": the reply is '" + (type.empty() ? "no content type" : type) +
                                  "', not text/event-stream",
                              status);
        }

        // Accepted.
        ++stats.connections;
        if (connected_once)
            ++stats.reconnects;
        connected_once = true;
        backoff.connected(clock_type::now());
        connection_start_id = parser.last_event_id();
        wake_consumer();

        out = co_await read_body(p);
        out.progress = parser.last_event_id() != connection_start_id;
        drop_connection();
        if (parser.finish())
            ++stats.half_events_discarded;
        backoff.disconnected(clock_type::now());
        co_return out;
    }

    void drop_connection() noexcept
    {
        if (conn) {
            conn->close();
            conn.reset();
        }
    }

    /// The body of a refusal, for its diagnostics (bounded).
    asio::awaitable<std::string> read_error_body(http::response_parser<http::buffer_body>& p,
                                                 clock_type::time_point deadline)
    {
        std::string body;
        conn->tcp().expires_at(deadline);
        while (!p.is_done() && body.size() < max_error_body) {
            p.get().body().data = read_buffer.data();
            p.get().body().size = read_buffer.size();
            auto [ec, n] = co_await std::visit(
                [&](auto& s) { return http::async_read_some(s, conn->buffer(), p, nothrow); }, conn->stream());
            body.append(read_buffer.data(), read_buffer.size() - p.get().body().size);
            if (ec && ec != http::error::need_buffer)
                break;
        }
        co_return body;
    }

    /// The idle watchdog of connection `seq`: when a read has been pending for
    /// `idle_timeout`, it closes the socket — what Beast's own stream timeout does,
    /// without re-arming a timer for every read (one timer wait per idle period).
    /// While the reader is paused for a full queue no read is pending: not idle.
    static asio::awaitable<void> watchdog(std::shared_ptr<impl> self, std::uint64_t seq)
    {
        asio::steady_timer timer(self->ex);
        self->watchdog_timer = &timer;
        const auto idle = self->opts.idle_timeout;
        auto due = clock_type::now() + idle;
        for (;;) {
            timer.expires_at(due);
            boost::system::error_code ec;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (self->connection_seq != seq || self->closed)
                break;
            const auto now = clock_type::now();
            if (self->reading && now - self->read_started >= idle) {
                self->idle_fired = true;
                if (self->conn)
                    self->conn->close();
                break;
            }
            due = self->reading ? self->read_started + idle : now + idle;
        }
        if (self->watchdog_timer == &timer)
            self->watchdog_timer = nullptr;
    }

    asio::awaitable<outcome> read_body(http::response_parser<http::buffer_body>& p)
    {
        outcome out;
        conn->tcp().expires_never(); // the head's deadline no longer applies
        idle_fired = false;
        reading = false;
        const std::uint64_t seq = ++connection_seq;
        if (opts.idle_timeout.count() > 0)
            asio::co_spawn(ex, watchdog(shared_from_this(), seq), asio::detached);
        struct stop_watchdog {
            impl& self;
            ~stop_watchdog()
            {
                ++self.connection_seq;
                self.reading = false;
                if (self.watchdog_timer)
                    self.watchdog_timer->cancel();
            }
        } guard{*this};

        while (!p.is_done()) {
            if (closed) {
                out.kind = outcome::closed;
                co_return out;
            }
            p.get().body().data = read_buffer.data();
            p.get().body().size = read_buffer.size();
            read_started = clock_type::now();
            reading = true;
            auto [ec, n] = co_await std::visit(
                [&](auto& s) { return http::async_read_some(s, conn->buffer(), p, nothrow); }, conn->stream());
            reading = false;
            const std::size_t got = read_buffer.size() - p.get().body().size;
            if (got != 0) {
                stats.bytes_received += got;
                // The socket is not read while the consumer lags.
                co_await consume(read_buffer.data(), got);
                if (stream_ended) {
                    out.kind = outcome::ended;
                    co_return out;
                }
                if (closed) {
                    out.kind = outcome::closed;
                    co_return out;
                }
            }
            if (ec == http::error::need_buffer)
                continue;
            if (ec) {
                if (closed) {
                    out.kind = outcome::closed;
                    co_return out;
                }
                if (idle_fired) {
                    ++stats.idle_timeouts;
                    out.ec = errc::timeout;
                    out.detail = "no bytes for " + std::to_string(opts.idle_timeout.count()) + " ms";
                } else {
                    out.ec = errc::connection_lost;
                    out.detail = "the stream broke: " + ec.message();
                }
                co_return out;
            }
        }
        out.ec = errc::connection_lost;
        out.detail = "the stream ended without sse.stream.end";
        co_return out;
    }

    /// Parses `n` bytes in slices, stopping while the queue is full.
    asio::awaitable<void> consume(const char* data, std::size_t n)
    {
        for (std::size_t pos = 0; pos < n;) {
            const std::size_t k = std::min(opts.parse_slice, n - pos);
            boost::system::error_code ec;
            parser.feed(std::string_view(data + pos, k), [this](sse::event&& e) { on_event(std::move(e)); }, ec);
            pos += k;
            if (ec)
                throw lens::error(ec, std::string(operation), "session " + session_id + ": " + ec.message());
            if (stream_ended)
                co_return;
            if (queue.size() >= opts.queue_capacity) {
                ++stats.reader_pauses;
                while (queue.size() >= opts.queue_capacity && !closed) {
                    reader_paused = true;
                    space_wake.expires_at(clock_type::time_point::max());
                    boost::system::error_code wec;
                    co_await space_wake.async_wait(asio::redirect_error(asio::use_awaitable, wec));
                    reader_paused = false;
                }
            }
            if (closed)
                co_return;
        }
    }

    void on_event(sse::event&& e)
    {
        if (stream_ended)
            return; // nothing after the end
        ++stats.events_received;
        const std::size_t bytes = e.data.size();
        session_event ev = decode_event(std::move(e.last_event_id), e.data);
        if (ev.kind() == event_kind::malformed)
            ++stats.malformed;
        if (ev.kind() == event_kind::stream_end)
            stream_ended = true;
        queue.push_back({std::move(ev), bytes});
        queued_bytes += bytes;
        stats.max_queued = std::max(stats.max_queued, queue.size());
        stats.max_queued_bytes = std::max(stats.max_queued_bytes, queued_bytes);
        wake_consumer();
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
    : impl_(std::make_shared<impl>(std::move(executor), std::move(ep), std::move(session_id), std::move(opts)))
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

asio::awaitable<void> event_stream::connect()
{
    auto self = impl_;
    if (!self)
        throw lens::error(errc::closed, std::string(operation), "moved-from stream");
    busy_guard busy(self->consumer_busy);
    self->start();
    auto cs = co_await asio::this_coro::cancellation_state;
    for (;;) {
        throw_if_cancelled(cs);
        if (self->connected_once || self->stream_ended || self->closed)
            co_return;
        if (self->failure)
            std::rethrow_exception(self->failure);
        if (self->reader_done)
            co_return;
        co_await self->wait_for_reader();
    }
}

asio::awaitable<std::optional<session_event>> event_stream::next()
{
    auto self = impl_;
    if (!self)
        co_return std::nullopt;
    busy_guard busy(self->consumer_busy);
    self->start();
    auto cs = co_await asio::this_coro::cancellation_state;
    for (;;) {
        // Cancelled (a timer won an `||`): leave every event where it is.
        throw_if_cancelled(cs);
        if (!self->queue.empty()) {
            auto q = std::move(self->queue.front());
            self->queue.pop_front();
            self->queued_bytes -= q.bytes;
            ++self->stats.events_delivered;
            self->delivered_id = q.ev.id;
            self->wake_reader();
            co_return std::move(q.ev);
        }
        if (self->failure)
            std::rethrow_exception(self->failure);
        if (self->stream_ended || self->closed || self->reader_done)
            co_return std::nullopt;
        co_await self->wait_for_reader();
    }
}

void event_stream::close() noexcept
{
    if (impl_)
        impl_->close();
}

const std::string& event_stream::last_event_id() const noexcept { return impl_->delivered_id; }

bool event_stream::ended() const noexcept { return impl_ && impl_->stream_ended; }

const std::string& event_stream::session_id() const noexcept { return impl_->session_id; }

event_stream_stats event_stream::statistics() const noexcept
{
    if (!impl_)
        return {};
    auto s = impl_->stats;
    s.queued = impl_->queue.size();
    return s;
}

} // namespace lens
