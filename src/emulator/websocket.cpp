// The WebSocket control channel of a session (docs/protocol.md §3), with its fault knobs.
//
// One reader loop per connection. Replies complete at different times (the query
// lens thinks, knobs delay), and Beast allows one outstanding write, so every
// reply goes through an outbox drained by one writer coroutine. Replies of one
// type leave in request order (each request takes a slot in its reply type's
// queue on arrival, and a slot is sent only once those before it are), while
// replies of different types may overtake each other — as on the real server,
// whose protocol has no request ids.
#include "emulator/connection.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <deque>
#include <map>

namespace lens::emulator::detail {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace json = boost::json;
using asio::use_awaitable;
using namespace std::chrono_literals;

namespace {

void rethrow_bugs(std::exception_ptr e)
{
    if (e)
        std::rethrow_exception(e);
}

template <class Stream>
class ws_session : public closable, public std::enable_shared_from_this<ws_session<Stream>> {
public:
    ws_session(std::shared_ptr<server::impl> srv, Stream stream, std::shared_ptr<session_state> session)
        : srv_(std::move(srv)), ws_(std::move(stream)), session_(std::move(session))
    {
    }

    ~ws_session() override
    {
        if (id_)
            srv_->untrack(id_);
    }

    static asio::awaitable<void> run(std::shared_ptr<ws_session> self, request req, bool event_protocol)
    {
        self->id_ = self->srv_->track(self);
        co_await self->serve(std::move(req), event_protocol);
        self->close();
    }

    void close() override
    {
        if (closed_)
            return;
        closed_ = true;
        waits_.close();
        // An abrupt close, which is what a crashing or restarting server looks like;
        // the client must cope with it anyway.
        boost::system::error_code ec;
        beast::get_lowest_layer(ws_).socket().close(ec);
    }

private:
    asio::awaitable<void> serve(request req, bool event_protocol)
    {
        ws_knobs& k = srv_->opts.ws;
        websocket::stream_base::timeout timeouts{};
        timeouts.handshake_timeout = 30s;
        timeouts.idle_timeout = websocket::stream_base::none();
        timeouts.keep_alive_pings = false;
        ws_.set_option(timeouts);
        ws_.set_option(websocket::stream_base::decorator([event_protocol](websocket::response_type& res) {
            res.set(beast::http::field::server, "lens-emulator");
            if (event_protocol) // the key never comes back: only the protocol version is selected
                res.set(beast::http::field::sec_websocket_protocol, "event-protocol-v1");
        }));
        ws_.read_message_max(64 * 1024 * 1024);

        boost::system::error_code ec;
        co_await ws_.async_accept(req, asio::redirect_error(use_awaitable, ec));
        if (ec)
            co_return;
        ++session_->num_active_connections;
        struct leave {
            session_state& s;
            ~leave() { --s.num_active_connections; }
        } leave_{*session_};

        if (k.accept_then_close_next > 0) {
            --k.accept_then_close_next;
            co_return;
        }
        ws_.text(true); // replies are text frames; requests may be either

        beast::flat_buffer buffer;
        for (;;) {
            buffer.clear();
            co_await ws_.async_read(buffer, asio::redirect_error(use_awaitable, ec));
            if (ec || closed_)
                co_return; // closed by the client (websocket::error::closed), dropped, or stopped
            ++frames_;
            ++srv_->counters.ws_frames_received;
            // The frame that reaches the limit is swallowed: a request in flight
            // when the connection dies, which the client must fail, not hang on.
            if (k.drop_after_frames > 0 && frames_ >= k.drop_after_frames)
                co_return;
            if (k.silent_after_frames > 0 && frames_ >= k.silent_after_frames) {
                k.silent_after_frames = 0;
                co_await waits_.wait(srv_->executor, 24h); // until the server stops
                co_return;
            }
            on_frame(beast::buffers_to_string(buffer.data()));
        }
    }

    void on_frame(const std::string& text)
    {
        ws_knobs& k = srv_->opts.ws;
        if (k.error_frame_next > 0) {
            --k.error_frame_next;
            schedule("error", json::object{{"type", "error"}, {"message", "injected error"}}, k.reply_delay);
            return;
        }
        std::string error;
        auto v = parse_json(text, error);
        const json::object* o = v && v->is_object() ? &v->get_object() : nullptr;
        const json::value* type = o ? o->if_contains("type") : nullptr;
        if (!v) {
            schedule("error", json::object{{"type", "error"}, {"message", "Invalid JSON: " + error}}, k.reply_delay);
            return;
        }
        if (!type || !type->is_string()) {
            schedule("error", json::object{{"type", "error"}, {"message", "Invalid event: expected {\"type\", \"event_data\"}"}},
                     k.reply_delay);
            return;
        }
        static const json::value null_value;
        const json::value* data = o->if_contains("event_data");
        event_reply reply = srv_->process_event(*session_, type->get_string(), data ? *data : null_value);
        schedule(reply.type, std::move(reply.frame), reply.delay + k.reply_delay);
    }

    /// A reply that will exist after `delay`; it keeps its place among replies of its type.
    struct slot {
        std::optional<std::string> frame;
    };

    void schedule(const std::string& type, const json::value& frame, std::chrono::milliseconds delay)
    {
        auto s = std::make_shared<slot>();
        pending_[type].push_back(s);
        std::string text = json::serialize(frame);
        if (delay <= 0ms) {
            fill(type, *s, std::move(text));
            return;
        }
        // A plain completion handler rather than a coroutine per delayed reply: it is
        // cheaper, and GCC 12 miscompiled the coroutine version of this.
        waits_.after(srv_->executor, delay, [self = this->shared_from_this(), type, s, text = std::move(text)]() mutable {
            self->fill(type, *s, std::move(text));
        });
    }

    void fill(const std::string& type, slot& s, std::string text)
    {
        s.frame = std::move(text);
        auto it = pending_.find(type);
        auto& q = it->second;
        while (!q.empty() && q.front()->frame) {
            send(std::move(*q.front()->frame));
            q.pop_front();
        }
        if (q.empty())
            pending_.erase(it);
    }

    void send(std::string text)
    {
        if (closed_)
            return;
        ws_knobs& k = srv_->opts.ws;
        if (k.malformed_next > 0) {
            --k.malformed_next;
            outbox_.push_back("{not json");
        }
        outbox_.push_back(std::move(text));
        if (!writing_) {
            writing_ = true;
            asio::co_spawn(srv_->executor, drain(this->shared_from_this()), rethrow_bugs);
        }
    }

    static asio::awaitable<void> drain(std::shared_ptr<ws_session> self)
    {
        while (!self->outbox_.empty() && !self->closed_) {
            std::string text = std::move(self->outbox_.front());
            self->outbox_.pop_front();
            boost::system::error_code ec;
            co_await self->ws_.async_write(asio::buffer(text), asio::redirect_error(use_awaitable, ec));
            if (ec) {
                self->close();
                break;
            }
        }
        self->writing_ = false;
    }

    std::shared_ptr<server::impl> srv_;
    websocket::stream<Stream> ws_;
    std::shared_ptr<session_state> session_;
    wait_set waits_;
    std::map<std::string, std::deque<std::shared_ptr<slot>>, std::less<>> pending_;
    std::deque<std::string> outbox_;
    std::size_t frames_ = 0;
    std::uint64_t id_ = 0;
    bool writing_ = false;
    bool closed_ = false;
};

} // namespace

template <class Stream>
void start_websocket(std::shared_ptr<server::impl> srv, Stream stream, request req,
                     std::shared_ptr<session_state> session, bool select_event_protocol)
{
    auto s = std::make_shared<ws_session<Stream>>(srv, std::move(stream), std::move(session));
    asio::co_spawn(srv->executor, ws_session<Stream>::run(std::move(s), std::move(req), select_event_protocol),
                   rethrow_bugs);
}

template void start_websocket<beast::tcp_stream>(std::shared_ptr<server::impl>, beast::tcp_stream, request,
                                                 std::shared_ptr<session_state>, bool);
template void start_websocket<beast::ssl_stream<beast::tcp_stream>>(std::shared_ptr<server::impl>,
                                                                     beast::ssl_stream<beast::tcp_stream>, request,
                                                                     std::shared_ptr<session_state>, bool);

} // namespace lens::emulator::detail
