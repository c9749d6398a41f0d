// One HTTP/1.1 connection of the emulator: TLS handshake, keep-alive request
// loop, the REST fault knobs, and the hand-over to the WebSocket or SSE surface.
#include "emulator/connection.hpp"
#include "emulator/sse_feed.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/file_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <fstream>
#include <variant>

namespace lens::emulator::detail {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using asio::use_awaitable;
using namespace std::chrono_literals;

// ---- shared helpers ------------------------------------------------------------

asio::awaitable<bool> wait_set::wait(asio::any_io_executor ex, std::chrono::milliseconds d)
{
    if (closed_)
        co_return false;
    if (d <= 0ms)
        co_return true;
    asio::steady_timer timer(ex, d);
    timers_.insert(&timer);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
    timers_.erase(&timer);
    co_return !closed_;
}

void wait_set::after(asio::any_io_executor ex, std::chrono::milliseconds d, std::function<void()> fn)
{
    if (closed_)
        return;
    auto timer = std::make_shared<asio::steady_timer>(std::move(ex), d);
    timers_.insert(timer.get());
    timer->async_wait([this, timer, fn = std::move(fn)](boost::system::error_code) {
        timers_.erase(timer.get());
        if (!closed_)
            fn();
    });
}

void wait_set::close()
{
    closed_ = true;
    for (auto* t : timers_)
        t->cancel();
}

std::optional<api_target> parse_target(std::string_view target)
{
    auto parsed = boost::urls::parse_origin_form(target);
    if (!parsed)
        return std::nullopt;
    api_target out;
    bool first = true;
    for (std::string segment : parsed->segments()) {
        if (first) {
            if (segment != "v0.5")
                return std::nullopt;
            first = false;
            continue;
        }
        out.segments.push_back(std::move(segment));
    }
    if (first)
        return std::nullopt;
    // "/v0.5/files/" and "/v0.5/files" name the same route.
    if (!out.segments.empty() && out.segments.back().empty())
        out.segments.pop_back();
    for (auto param : parsed->params())
        out.query[param.key] = param.value;
    return out;
}

response json_response(const request& req, unsigned status, const json::value& body)
{
    response res{static_cast<http::status>(status), req.version()};
    res.set(http::field::server, "lens-emulator");
    res.set(http::field::content_type, "application/json");
    res.keep_alive(req.keep_alive());
    res.body() = json::serialize(body);
    res.prepare_payload();
    return res;
}

bool has_valid_bearer(const server::impl& srv, const request& req)
{
    auto it = req.find(http::field::authorization);
    if (it == req.end())
        return false;
    std::string_view value = it->value();
    constexpr std::string_view scheme = "Bearer ";
    if (value.size() < scheme.size() || !std::equal(scheme.begin(), scheme.end(), value.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
        }))
        return false;
    value.remove_prefix(scheme.size());
    return !srv.opts.api_key.empty() && value == srv.opts.api_key;
}

response unauthorized_response(const request& req)
{
    // Never echo the presented key: it may be a real secret sent to the wrong place.
    return json_response(req, 401,
                         json::object{{"errors", json::array{json::object{
                                                     {"code", "unauthorized"},
                                                     {"message", "Invalid or missing API key"},
                                                     {"suggestion", "Pass Authorization: Bearer <key>"},
                                                     {"error_uid", random_hex(16)},
                                                 }}}});
}

namespace {

/// The body every injected REST failure carries.
response injected_failure(const request& req, unsigned status, unsigned retry_after, const std::string& body)
{
    response res = json_response(req, status, json::object{{"detail", "injected fault"}});
    if (!body.empty()) {
        res.body() = body;
        res.prepare_payload();
    }
    if (retry_after > 0) {
        res.set(http::field::retry_after, std::to_string(retry_after));
        res.prepare_payload();
    }
    return res;
}

response not_found_reply(const request& req)
{
    return json_response(req, 404, json::object{{"detail", "Not Found"}});
}

/// What a load balancer says when the app behind it is down.
response html_page(const request& req)
{
    response res{http::status::bad_gateway, req.version()};
    res.set(http::field::server, "nginx");
    res.set(http::field::content_type, "text/html");
    res.keep_alive(req.keep_alive());
    res.body() = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                 "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
                 "</body>\r\n</html>\r\n";
    res.prepare_payload();
    return res;
}

/// A 200 that claims to be JSON and is not.
response garbage_reply(const request& req)
{
    response res{http::status::ok, req.version()};
    res.set(http::field::server, "lens-emulator");
    res.set(http::field::content_type, "application/json");
    res.keep_alive(req.keep_alive());
    res.body() = "{\"session_id\": \"lsn-garbage\", <<this is not JSON>>";
    res.prepare_payload();
    return res;
}

/// A valid JSON object of exactly `size` bytes (at least 2).
response oversize_reply(const request& req, std::size_t size)
{
    std::string body;
    constexpr std::string_view head = "{\"padding\":\"", tail = "\"}";
    if (size >= head.size() + tail.size()) {
        body.reserve(size);
        body += head;
        body.append(size - head.size() - tail.size(), 'x');
        body += tail;
    } else {
        body = "{}";
        body.append(size > 2 ? size - 2 : 0, ' ');
    }
    response res{http::status::ok, req.version()};
    res.set(http::field::server, "lens-emulator");
    res.set(http::field::content_type, "application/json");
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
}

std::vector<std::string_view> split_list(std::string_view s)
{
    std::vector<std::string_view> out;
    while (!s.empty()) {
        auto comma = s.find(',');
        std::string_view item = s.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
            item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t'))
            item.remove_suffix(1);
        if (!item.empty())
            out.push_back(item);
        if (comma == std::string_view::npos)
            break;
        s.remove_prefix(comma + 1);
    }
    return out;
}

/// Upload bodies (videos) can be large; headers cannot.
constexpr std::uint64_t max_request_body = 512ull * 1024 * 1024;

template <class Stream>
constexpr bool is_tls = !std::is_same_v<Stream, beast::tcp_stream>;

bool expects_continue(const request& head)
{
    auto it = head.find(http::field::expect);
    return it != head.end() && beast::iequals(it->value(), "100-continue");
}

http::response<http::empty_body> continue_response()
{
    return http::response<http::empty_body>(http::status::continue_, 11);
}

/// `GET lens/sessions/consumer/{session_id}`.
bool is_consumer(const std::optional<api_target>& t)
{
    return t && t->segments.size() == 4 && t->segments[0] == "lens" && t->segments[1] == "sessions" &&
           t->segments[2] == "consumer";
}

template <class Stream>
class http_connection : public closable, public std::enable_shared_from_this<http_connection<Stream>> {
public:
    http_connection(std::shared_ptr<server::impl> srv, Stream stream)
        : srv_(std::move(srv)), stream_(std::move(stream))
    {
    }

    ~http_connection() override
    {
        if (id_)
            srv_->untrack(id_);
    }

    static asio::awaitable<void> run(std::shared_ptr<http_connection> self)
    {
        self->id_ = self->srv_->track(self);
        try {
            co_await self->serve();
        } catch (const boost::system::system_error&) {
            // A failed write or handshake ends only this connection.
        }
        self->close();
    }

    void close() override
    {
        waits_.close();
        if (handed_over_)
            return; // the WebSocket session owns the stream now
        boost::system::error_code ec;
        beast::get_lowest_layer(stream_).socket().close(ec);
    }

private:
    asio::awaitable<void> serve()
    {
        if constexpr (is_tls<Stream>) {
            beast::get_lowest_layer(stream_).expires_after(30s);
            co_await stream_.async_handshake(asio::ssl::stream_base::server, use_awaitable);
            beast::get_lowest_layer(stream_).expires_never();
        }
        for (;;) {
            http::request_parser<http::string_body> parser;
            // The limit is applied after the header: a spooled upload has none.
            parser.body_limit(boost::none);
            boost::system::error_code ec;
            co_await http::async_read_header(stream_, buffer_, parser, asio::redirect_error(use_awaitable, ec));
            if (ec || srv_->stopped)
                co_return; // the client closed (end_of_stream), or sent something unparseable
            if (expects_continue(parser.get())) {
                // curl asks before sending a large upload; without this it waits a second.
                auto interim = continue_response();
                co_await http::async_write(stream_, interim, asio::redirect_error(use_awaitable, ec));
                if (ec)
                    co_return;
            }
            request req;
            std::shared_ptr<disk_file> spooled;
            if (should_spool(parser.get(), parser.content_length())) {
                // A large upload goes to a temporary file as it arrives, never to memory.
                spooled = std::make_shared<disk_file>(spool_path());
                ++srv_->counters.spooled_uploads;
                http::request_parser<http::file_body> to_disk(std::move(parser));
                to_disk.body_limit(boost::none);
                to_disk.get().body().open(spooled->path.c_str(), beast::file_mode::write, ec);
                if (ec)
                    co_return;
                buffer_.reserve(256 * 1024); // reads of 256 KiB, not of what the header left free
                co_await http::async_read(stream_, buffer_, to_disk, asio::redirect_error(use_awaitable, ec));
                if (ec || srv_->stopped)
                    co_return;
                to_disk.get().body().close();
                req.base() = to_disk.get().base();
            } else {
                if (auto length = parser.content_length(); length && *length > max_request_body)
                    co_return; // as Beast's body limit would: the connection ends
                parser.body_limit(max_request_body); // for chunked bodies, checked as they arrive
                co_await http::async_read(stream_, buffer_, parser, asio::redirect_error(use_awaitable, ec));
                if (ec || srv_->stopped)
                    co_return;
                req = parser.release();
            }
            std::optional<api_target> target = parse_target(req.target());

            // (Results are named rather than tested inside `if (co_await ...)`:
            // GCC 12 miscompiles some of those.)
            bool keep_going;
            if (beast::websocket::is_upgrade(req)) {
                const bool handed_over = co_await upgrade(std::move(req), target);
                keep_going = !handed_over;
            } else if (is_consumer(target)) {
                const bool done = co_await consume(std::move(req), target->segments[3]);
                keep_going = !done;
            } else {
                keep_going = co_await rest(std::move(req), target, std::move(spooled));
            }
            if (!keep_going)
                co_return;
        }
    }

    /// True for an upload to `files` announcing more than `options::spool_uploads_over` bytes.
    bool should_spool(const request& head, boost::optional<std::uint64_t> length) const
    {
        if (head.method() != http::verb::post)
            return false;
        if (!length || *length <= srv_->opts.spool_uploads_over)
            return false;
        const auto target = parse_target(head.target());
        return target && target->segments.size() == 1 && target->segments[0] == "files";
    }

    /// Writes the header `res`, then the bytes of `file` a chunk at a time; false when
    /// the connection must end.
    asio::awaitable<bool> send_file(response res, std::shared_ptr<const disk_file> file)
    {
        http::response<http::empty_body> head;
        head.base() = res.base();
        http::response_serializer<http::empty_body> sr(head);
        boost::system::error_code ec;
        co_await http::async_write_header(stream_, sr, asio::redirect_error(use_awaitable, ec));
        if (ec)
            co_return false;
        std::ifstream in(file->path, std::ios::binary);
        in.seekg(static_cast<std::streamoff>(file->offset));
        std::vector<char> chunk(256 * 1024);
        for (std::uint64_t left = file->size; left > 0;) {
            const auto want = static_cast<std::streamsize>(std::min<std::uint64_t>(left, chunk.size()));
            in.read(chunk.data(), want);
            if (in.gcount() != want)
                co_return false; // the length is sent: a short file can only end the connection
            co_await asio::async_write(stream_, asio::buffer(chunk.data(), static_cast<std::size_t>(want)),
                                       asio::redirect_error(use_awaitable, ec));
            if (ec)
                co_return false;
            left -= static_cast<std::uint64_t>(want);
        }
        co_return res.keep_alive();
    }

    /// Writes `res`; false when the connection must end.
    asio::awaitable<bool> send(response res)
    {
        boost::system::error_code ec;
        co_await http::async_write(stream_, res, asio::redirect_error(use_awaitable, ec));
        co_return !ec && res.keep_alive();
    }

    /// One REST request with the fault knobs. Returns false when the connection must end.
    asio::awaitable<bool> rest(request req, const std::optional<api_target>& target,
                               std::shared_ptr<disk_file> spooled)
    {
        server::impl& srv = *srv_;
        rest_knobs& k = srv.opts.rest;
        ++srv.counters.http_requests;
        const std::uint64_t n = ++srv.rest_sequence;

        // Faults are decided on arrival so that the counting is deterministic, and
        // they are injected before the request touches any state: a retry of a
        // failed or dropped request is always safe.
        enum class fault { none, drop, fail, html, garbage, oversize, given } f = fault::none;
        std::size_t oversize = 0;
        if (k.drop_next > 0) {
            --k.drop_next;
            f = fault::drop;
        } else if (k.drop_every_nth > 0 && n % k.drop_every_nth == 0) {
            f = fault::drop;
        } else if (k.fail_next > 0) {
            --k.fail_next;
            f = fault::fail;
        } else if (k.fail_every_nth > 0 && n % k.fail_every_nth == 0) {
            f = fault::fail;
        } else if (k.html_next > 0) {
            --k.html_next;
            f = fault::html;
        } else if (k.garbage_next > 0) {
            --k.garbage_next;
            f = fault::garbage;
        } else if (k.oversize_body > 0) {
            oversize = std::exchange(k.oversize_body, 0);
            f = fault::oversize;
        } else if (!k.body_next.empty()) {
            f = fault::given;
        }

        if (f == fault::drop)
            co_return false; // close without a reply

        std::chrono::milliseconds delay = k.delay;
        response res;
        std::shared_ptr<const disk_file> body_file;
        switch (f) {
        case fault::fail: res = injected_failure(req, k.fail_status, k.retry_after_seconds, k.fail_body); break;
        case fault::given:
            res = json_response(req, 200, json::object());
            res.body() = std::exchange(k.body_next, std::string());
            res.prepare_payload();
            break;
        case fault::html: res = html_page(req); break;
        case fault::garbage: res = garbage_reply(req); break;
        case fault::oversize: res = oversize_reply(req, oversize); break;
        default:
            if (!target) {
                res = not_found_reply(req);
            } else if (!has_valid_bearer(srv, req)) {
                res = unauthorized_response(req);
            } else {
                rest_outcome out = handle_rest(srv, req, std::move(spooled));
                res = std::move(out.res);
                delay += out.delay;
                body_file = std::move(out.body_file);
            }
        }

        const bool still_open = co_await waits_.wait(srv_->executor, delay);
        if (!still_open)
            co_return false;
        if (body_file)
            co_return co_await send_file(std::move(res), std::move(body_file));
        co_return co_await send(std::move(res));
    }

    // GCC 12 miscompiles some braced initializer lists inside coroutines ("array used
    // as initializer"), so every decision that builds JSON lives in a plain function
    // and the coroutines only do I/O.

    /// What to do with an upgrade: refuse it with a reply, or accept it for a session.
    struct upgrade_decision {
        std::optional<response> refusal;
        std::shared_ptr<session_state> session;
        bool event_protocol = false;
    };

    upgrade_decision decide_upgrade(const request& req, const std::optional<api_target>& target)
    {
        server::impl& srv = *srv_;
        ws_knobs& k = srv.opts.ws;
        ++srv.counters.ws_upgrades;
        upgrade_decision d;

        if (k.refuse_upgrade_status != 0) {
            unsigned status = k.refuse_upgrade_status;
            // A count of refusals, once used up, turns refusing off.
            if (k.refuse_next_upgrades > 0 && --k.refuse_next_upgrades == 0)
                k.refuse_upgrade_status = 0;
            d.refusal = json_response(req, status, json::object{{"detail", "injected upgrade refusal"}});
            return d;
        }

        bool subprotocol_key = false;
        const std::string key_token = "authenticationauthorization.bearer." + srv.opts.api_key;
        for (auto& field : req) {
            if (field.name() != http::field::sec_websocket_protocol)
                continue;
            for (std::string_view p : split_list(field.value())) {
                if (p == "event-protocol-v1")
                    d.event_protocol = true;
                else if (!srv.opts.api_key.empty() && p == key_token)
                    subprotocol_key = true;
            }
        }
        if (!has_valid_bearer(srv, req) && !subprotocol_key) {
            d.refusal = unauthorized_response(req);
            return d;
        }
        const auto& seg = target ? target->segments : std::vector<std::string>{};
        if (seg.size() != 3 || seg[0] != "lens" || seg[1] != "sessions") {
            d.refusal = json_response(req, 404, json::object{{"detail", "Not Found"}});
            return d;
        }
        d.session = srv.find_session(seg[2]);
        if (!d.session || d.session->destroyed) {
            d.refusal = json_response(req, 404, json::object{{"detail", "Unknown session id: " + seg[2]}});
            d.session = nullptr;
        }
        return d;
    }

    /// A WebSocket upgrade. Returns true when the connection was handed over (or must end).
    asio::awaitable<bool> upgrade(request req, const std::optional<api_target>& target)
    {
        upgrade_decision d = decide_upgrade(req, target);
        if (d.refusal) {
            const bool reusable = co_await send(std::move(*d.refusal));
            co_return !reusable;
        }
        handed_over_ = true;
        waits_.close();
        start_websocket(srv_, std::move(stream_), std::move(req), std::move(d.session), d.event_protocol);
        co_return true;
    }

    /// The session a consumer request may stream, or the reply refusing it.
    std::variant<std::shared_ptr<session_state>, response> decide_consumer(const request& req, const std::string& id)
    {
        server::impl& srv = *srv_;
        if (req.method() != http::verb::get)
            return json_response(req, 405, json::object{{"detail", "Method Not Allowed"}});
        if (!has_valid_bearer(srv, req))
            return unauthorized_response(req);
        auto session = srv.find_session(id);
        if (!session)
            return json_response(req, 404, json::object{{"detail", "Unknown session id: " + id}});
        return session;
    }

    /// The SSE consumer. Returns true when the connection is done.
    asio::awaitable<bool> consume(request req, const std::string& id)
    {
        auto d = decide_consumer(req, id);
        if (auto* refusal = std::get_if<response>(&d)) {
            const bool reusable = co_await send(std::move(*refusal));
            co_return !reusable;
        }
        auto session = std::get<0>(std::move(d));

        ++srv_->counters.sse_connections;
        std::string last_event_id;
        if (auto it = req.find("Last-Event-ID"); it != req.end())
            last_event_id = std::string(it->value());
        sink sink_(*this);
        try {
            co_await sse_serve(session->feed, sink_, std::move(last_event_id));
        } catch (const boost::system::system_error&) {
        }
        co_return true;
    }

    /// The connection as the SSE code sees it.
    class sink : public byte_sink {
    public:
        explicit sink(http_connection& c) : c_(c) {}
        asio::awaitable<void> write(std::string_view bytes) override
        {
            co_await asio::async_write(c_.stream_, asio::buffer(bytes.data(), bytes.size()), use_awaitable);
        }
        void close() override { c_.close(); }

    private:
        http_connection& c_;
    };

    std::shared_ptr<server::impl> srv_;
    Stream stream_;
    beast::flat_buffer buffer_;
    wait_set waits_;
    std::uint64_t id_ = 0;
    bool handed_over_ = false;
};

template <class Stream>
void spawn(std::shared_ptr<server::impl> srv, Stream stream)
{
    auto c = std::make_shared<http_connection<Stream>>(srv, std::move(stream));
    asio::co_spawn(srv->executor, http_connection<Stream>::run(std::move(c)), [](std::exception_ptr e) {
        if (e)
            std::rethrow_exception(e); // a bug, not an I/O failure: let it surface
    });
}

} // namespace

void serve_connection(std::shared_ptr<server::impl> srv, asio::ip::tcp::socket socket)
{
    if (srv->tls)
        spawn(srv, beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *srv->tls));
    else
        spawn(srv, beast::tcp_stream(std::move(socket)));
}

} // namespace lens::emulator::detail
