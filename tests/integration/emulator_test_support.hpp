// Raw Beast clients for testing the emulator itself, independent of the lens
// client library: what they see is exactly what the emulator put on the wire.
#pragma once

#include "integration/secret.hpp"

#include <lens/emulator.hpp>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <exception>
#include <functional>
#include <string>

namespace emu_test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using asio::use_awaitable;
using response = http::response<http::string_body>;

/// Runs `body` against a started emulator on one io_context; when it finishes the
/// emulator is stopped and the io_context must run dry — which checks that stop()
/// really ends every connection, timer and coroutine.
inline void run_with_emulator(lens::emulator::options opts,
                              std::function<asio::awaitable<void>(lens::emulator::server&)> body)
{
    asio::io_context ioc;
    lens::emulator::server srv(ioc.get_executor(), std::move(opts));
    srv.start();
    std::exception_ptr failure;
    bool finished = false;
    asio::co_spawn(ioc, body(srv), [&](std::exception_ptr e) {
        failure = e;
        finished = true;
        srv.stop();
    });
    ioc.run();
    CHECK(finished);
    if (failure)
        std::rethrow_exception(failure);
}

/// A keep-alive HTTP/1.1 connection to the emulator (plain TCP).
class http_client {
public:
    http_client(lens::emulator::server& srv, asio::any_io_executor ex) : srv_(srv), stream_(std::move(ex)) {}

    asio::awaitable<void> connect()
    {
        buffer_.clear();
        co_await stream_.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), srv_.port()),
                                       use_awaitable);
    }

    /// Sends a request and reads the reply; throws on connection errors.
    asio::awaitable<response> request(http::verb verb, std::string path, std::string body = {},
                                      std::string content_type = "application/json", bool auth = true)
    {
        http::request<http::string_body> req{verb, "/v0.5/" + path, 11};
        req.set(http::field::host, "127.0.0.1");
        if (auth)
            req.set(http::field::authorization, "Bearer " + srv_.api_key());
        if (!body.empty() || verb == http::verb::post) {
            req.set(http::field::content_type, content_type);
            req.body() = std::move(body);
        }
        req.prepare_payload();
        co_return co_await send(std::move(req));
    }

    asio::awaitable<response> send(http::request<http::string_body> req)
    {
        if (!stream_.socket().is_open())
            co_await connect();
        co_await http::async_write(stream_, req, use_awaitable);
        http::response_parser<http::string_body> parser;
        parser.body_limit(64 * 1024 * 1024);
        co_await http::async_read(stream_, buffer_, parser, use_awaitable);
        co_return parser.release();
    }

    asio::awaitable<json::value> get_json(std::string path)
    {
        auto res = co_await request(http::verb::get, std::move(path));
        REQUIRE(res.result_int() == 200);
        co_return json::parse(res.body());
    }

    asio::awaitable<json::value> post_json(std::string path, const json::value& body)
    {
        auto res = co_await request(http::verb::post, std::move(path), json::serialize(body));
        REQUIRE(res.result_int() == 200);
        co_return json::parse(res.body());
    }

    /// Creates a session of `lens_id` and returns its id.
    asio::awaitable<std::string> create_session(std::string_view lens_id)
    {
        // (GCC 12 miscompiles braced initializer lists in a full-expression with co_await.)
        json::object body{{"lens_id", lens_id}};
        auto v = co_await post_json("lens/sessions/create", body);
        co_return std::string(v.at("session_id").as_string());
    }

    /// Uploads `content` as `file_name` with a hand-written multipart body.
    asio::awaitable<response> upload(std::string file_name, std::string content, std::string path = "files")
    {
        auto [body, type] = multipart_body(file_name, content);
        co_return co_await request(http::verb::post, std::move(path), std::move(body), std::move(type));
    }

    /// The body and content type of a one-part form upload.
    static std::pair<std::string, std::string> multipart_body(const std::string& file_name, const std::string& content)
    {
        const std::string boundary = "----lens-test-boundary-7MA4YWxkTrZu0gW";
        std::string body = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" +
                           file_name + "\"\r\nContent-Type: application/octet-stream\r\n\r\n" + content +
                           "\r\n--" + boundary + "--\r\n";
        return {std::move(body), "multipart/form-data; boundary=" + boundary};
    }

    beast::tcp_stream& stream() { return stream_; }

private:
    lens::emulator::server& srv_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
};

/// A raw WebSocket client of a session's control channel (plain TCP).
class ws_client {
public:
    enum class auth { header, subprotocol, none };

    explicit ws_client(asio::any_io_executor ex) : ws_(std::move(ex)) {}

    /// Upgrades to the session's channel. Returns the error (upgrade_declined for a
    /// refusal, whose status is then in `handshake_response()`).
    asio::awaitable<boost::system::error_code> connect(lens::emulator::server& srv, std::string session_id,
                                                       auth mode = auth::header, std::string key = {})
    {
        if (key.empty())
            key = srv.api_key();
        ws_.set_option(websocket::stream_base::decorator([mode, key](websocket::request_type& req) {
            if (mode == auth::header)
                req.set(http::field::authorization, "Bearer " + key);
            else if (mode == auth::subprotocol)
                req.set(http::field::sec_websocket_protocol,
                        "authenticationauthorization.bearer." + key + ", event-protocol-v1");
        }));
        boost::system::error_code ec;
        co_await beast::get_lowest_layer(ws_).async_connect(
            tcp::endpoint(asio::ip::make_address("127.0.0.1"), srv.port()), asio::redirect_error(use_awaitable, ec));
        if (ec)
            co_return ec;
        co_await ws_.async_handshake(res_, "127.0.0.1:" + std::to_string(srv.port()),
                                     "/v0.5/lens/sessions/" + session_id, asio::redirect_error(use_awaitable, ec));
        co_return ec;
    }

    const websocket::response_type& handshake_response() const { return res_; }

    /// Sends a request frame (binary, as the protocol says, unless `text`).
    asio::awaitable<void> send(std::string frame, bool text = false)
    {
        ws_.binary(!text);
        co_await ws_.async_write(asio::buffer(frame), use_awaitable);
    }

    /// Reads one frame; checks that replies come as text frames.
    asio::awaitable<std::string> read_frame()
    {
        beast::flat_buffer b;
        co_await ws_.async_read(b, use_awaitable);
        CHECK(ws_.got_text());
        co_return beast::buffers_to_string(b.data());
    }

    asio::awaitable<json::value> read_json() { co_return json::parse(co_await read_frame()); }

    /// Reads until the connection fails; returns the error.
    asio::awaitable<boost::system::error_code> read_error()
    {
        beast::flat_buffer b;
        boost::system::error_code ec;
        co_await ws_.async_read(b, asio::redirect_error(use_awaitable, ec));
        co_return ec;
    }

    websocket::stream<beast::tcp_stream>& stream() { return ws_; }

private:
    websocket::stream<beast::tcp_stream> ws_;
    websocket::response_type res_;
};

/// `{"type": T, "event_data": D}` as a frame.
inline std::string event(std::string_view type, const json::value& data = nullptr)
{
    json::object o;
    o["type"] = type;
    o["event_data"] = data;
    return json::serialize(o);
}

/// Sleeps on a timer (the emulator's knob delays are what is being timed).
inline asio::awaitable<void> pause(std::chrono::milliseconds d)
{
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(use_awaitable);
}

} // namespace emu_test
