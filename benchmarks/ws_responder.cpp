// The benchmark suite's server: a minimal one-thread WebSocket responder that answers
// every data frame with one fixed `session.validate.response`. It accepts the Lens
// session URL shape (`/v0.5/lens/sessions/<id>`) and authentication (`Authorization:
// Bearer <key>`, or the `Sec-WebSocket-Protocol` form of protocol.md §1.3), so lens, raw
// Beast and the Python clients all talk to the same server, and the server does as
// little as a WebSocket server can: what is measured is the client. Beast performs the
// upgrade; on plain ws the frames are then read and answered by hand, every frame of a
// read answered in one write (answer_frames), so a pipelined client is not held to one
// reply per system call of the server's. wss answers through Beast, one reply per write.
//
//   build/bin/bench_ws_responder [--tls] [--api-key KEY] [--ca-file PATH] [--emulator]
//
// Prints one JSON line when listening (endpoint, rest, port, tls, ca_file, pid, server),
// then serves on 127.0.0.1 until SIGTERM or SIGINT. With --tls it serves wss with a
// certificate generated at start-up (the emulator's generator); the CA is written to
// --ca-file (default: a temporary file, removed at exit).
//
// --emulator serves lens::emulator instead (one thread too), with one session of the
// built-in mailbox lens created at start-up: `endpoint` is that session's endpoint, so
// the suite can run every client against the real emulator's WebSocket surface.
#include "emulator/state.hpp" // generate_certificates, random_hex: the emulator's TLS material

#include <lens/client.hpp>
#include <lens/emulator.hpp>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

const std::string reply_frame =
    R"({"type":"session.validate.response","event_data":{"is_valid":true,"error_messages":[]}})";
constexpr std::string_view session_path = "/v0.5/lens/sessions/";

struct settings {
    bool tls = false;
    std::string api_key = "emulator-key";
    std::string ca_file;
};

/// The upgrade request is acceptable: the session path and the key, in either form.
bool authorised(const http::request<http::string_body>& req, const std::string& key)
{
    if (req.target().substr(0, session_path.size()) != session_path)
        return false;
    if (req[http::field::authorization] == "Bearer " + key)
        return true;
    const auto proto = req[http::field::sec_websocket_protocol];
    return proto.find("authenticationauthorization.bearer." + key) != beast::string_view::npos;
}

/// Checks the upgrade request and answers it: 101 (true) or 401 (false).
template <class Stream>
asio::awaitable<bool> handshake(Stream& ws, const http::request<http::string_body>& req, const settings& s)
{
    if (!websocket::is_upgrade(req) || !authorised(req, s.api_key)) {
        http::response<http::string_body> res{http::status::unauthorized, req.version()};
        res.set(http::field::content_type, "application/json");
        res.body() = R"({"errors":["unauthorised"]})";
        res.prepare_payload();
        co_await http::async_write(ws.next_layer(), res, asio::use_awaitable);
        co_return false;
    }
    // The subprotocol form must be echoed, or a browser-style client fails the handshake.
    const bool subprotocol = req[http::field::authorization].empty();
    ws.set_option(websocket::stream_base::decorator([subprotocol](websocket::response_type& res) {
        if (subprotocol)
            res.set(http::field::sec_websocket_protocol, "event-protocol-v1");
    }));
    co_await ws.async_accept(req, asio::use_awaitable);
    co_return true;
}

/// wss: reads the upgrade, checks it, then answers every frame through Beast until the
/// peer goes (one reply per write: the wss figures are about memory and opening rate).
template <class Stream>
asio::awaitable<void> serve(Stream& ws, const settings& s)
{
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    co_await http::async_read(ws.next_layer(), buffer, req, asio::use_awaitable);
    if (!co_await handshake(ws, req, s))
        co_return;
    ws.text(true);
    for (;;) {
        buffer.consume(buffer.size());
        co_await ws.async_read(buffer, asio::use_awaitable);
        co_await ws.async_write(asio::buffer(reply_frame), asio::use_awaitable);
    }
}

/// The reply as one unmasked server text frame (it is shorter than 126 bytes).
const std::string reply_wire = std::string{'\x81', static_cast<char>(reply_frame.size())} + reply_frame;

/// Plain ws after the handshake: the frames themselves, not Beast's stream, so that every
/// complete frame of a read is answered and the replies of one read leave in one write.
/// Beast reads and writes one message per operation, which made this server the
/// bottleneck of every pipelined client (a system call per reply) and measured its pace
/// rather than the clients' cost. Data frames get the reply when final; pings a pong;
/// a close its echo, then the end.
asio::awaitable<void> answer_frames(tcp::socket& sock, std::string in)
{
    std::string out;
    std::vector<char> chunk(64 * 1024);
    std::size_t pos = 0;
    for (;;) {
        bool closing = false;
        for (;;) {
            const std::size_t avail = in.size() - pos;
            if (avail < 2)
                break;
            const auto* p = reinterpret_cast<const unsigned char*>(in.data() + pos);
            const unsigned opcode = p[0] & 0x0f;
            const bool fin = (p[0] & 0x80) != 0, masked = (p[1] & 0x80) != 0;
            std::uint64_t len = p[1] & 0x7f;
            std::size_t head = 2;
            if (len == 126) {
                if (avail < 4)
                    break;
                len = (std::uint64_t(p[2]) << 8) | p[3];
                head = 4;
            } else if (len == 127) {
                if (avail < 10)
                    break;
                len = 0;
                for (int i = 0; i < 8; ++i)
                    len = (len << 8) | p[2 + i];
                head = 10;
            }
            if (len > (std::uint64_t(16) << 20))
                co_return; // not a client of this benchmark
            const unsigned char* key = p + head;
            head += masked ? 4 : 0;
            if (avail < head + len)
                break;
            if (opcode <= 0x2 && fin) {
                out += reply_wire;
            } else if (opcode == 0x8 || opcode == 0x9) { // close: echo the code; ping: pong
                const std::size_t n = opcode == 0x8 ? std::min<std::size_t>(len, 2) : len;
                out += static_cast<char>(opcode == 0x8 ? 0x88 : 0x8a);
                out += static_cast<char>(n);
                for (std::size_t i = 0; i < n; ++i)
                    out += static_cast<char>(p[head + i] ^ (masked ? key[i % 4] : 0));
                closing = opcode == 0x8;
            }
            pos += head + len;
            if (closing)
                break;
        }
        in.erase(0, pos);
        pos = 0;
        if (!out.empty()) {
            auto [ec, n] = co_await asio::async_write(sock, asio::buffer(out), asio::as_tuple(asio::use_awaitable));
            if (ec)
                co_return;
            out.clear();
        }
        if (closing)
            co_return;
        // Into a buffer of its own: growing `in` by 64 KiB per read would zero-fill it each time.
        auto [ec, n] = co_await sock.async_read_some(asio::buffer(chunk), asio::as_tuple(asio::use_awaitable));
        if (ec)
            co_return;
        in.append(chunk.data(), n);
    }
}

asio::awaitable<void> plain(tcp::socket sock, const settings& s)
{
    sock.set_option(tcp::no_delay(true));
    websocket::stream<tcp::socket> ws(std::move(sock));
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    co_await http::async_read(ws.next_layer(), buffer, req, asio::use_awaitable);
    if (!co_await handshake(ws, req, s))
        co_return;
    // Frames a client sent right behind its upgrade request are in `buffer`.
    const auto early = buffer.data();
    co_await answer_frames(ws.next_layer(), std::string(static_cast<const char*>(early.data()), early.size()));
}

asio::awaitable<void> secure(tcp::socket sock, asio::ssl::context& tls, const settings& s)
{
    sock.set_option(tcp::no_delay(true));
    websocket::stream<asio::ssl::stream<tcp::socket>> ws(std::move(sock), tls);
    co_await ws.next_layer().async_handshake(asio::ssl::stream_base::server, asio::use_awaitable);
    co_await serve(ws, s);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, asio::ssl::context* tls, const settings& s)
{
    for (;;) {
        auto [ec, sock] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
        if (ec == asio::error::operation_aborted)
            co_return;
        if (ec)
            continue; // EMFILE and the like: the next accept may succeed
        auto ex = acceptor.get_executor();
        // A connection's end (the peer closing, or any error) ends only its coroutine.
        if (tls)
            asio::co_spawn(ex, secure(std::move(sock), *tls, s), asio::detached);
        else
            asio::co_spawn(ex, plain(std::move(sock), s), asio::detached);
    }
}

/// --emulator: lens::emulator on this thread, one mailbox session created through lens::client.
int serve_emulator(const settings& s)
{
    asio::io_context ctx(1);
    lens::emulator::options opts;
    opts.tls = s.tls;
    opts.api_key = s.api_key;
    opts.ca_file = s.ca_file;
    opts.max_sessions = 4;
    lens::emulator::server server(ctx.get_executor(), opts);
    server.start();
    lens::config cfg;
    cfg.endpoint = server.endpoint();
    cfg.api_key = s.api_key;
    cfg.ca_file = server.ca_file();
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
        lens::client c(ctx.get_executor(), cfg);
        auto record = co_await c.create_session(std::string(lens::emulator::builtin::mailbox));
        std::printf("{\"endpoint\":\"%s\",\"rest\":\"%s\",\"port\":%u,\"tls\":%s,\"ca_file\":\"%s\",\"pid\":%d,"
                    "\"server\":\"emulator\"}\n",
                    record.session_endpoint.c_str(), server.endpoint().c_str(), server.port(),
                    s.tls ? "true" : "false", server.ca_file().c_str(), static_cast<int>(getpid()));
        std::fflush(stdout);
    }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
    asio::signal_set stop(ctx, SIGTERM, SIGINT);
    stop.async_wait([&](auto, int) { server.stop(); });
    ctx.run();
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    settings s;
    bool emulator = false;
    for (int i = 1; i < argc; ++i) {
        const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
        if (!std::strcmp(argv[i], "--tls")) s.tls = true;
        else if (!std::strcmp(argv[i], "--api-key") && value) s.api_key = value, ++i;
        else if (!std::strcmp(argv[i], "--ca-file") && value) s.ca_file = value, ++i;
        else if (!std::strcmp(argv[i], "--emulator")) emulator = true;
        else {
            std::fprintf(stderr, "usage: %s [--tls] [--api-key KEY] [--ca-file PATH] [--emulator]\n", argv[0]);
            return 2;
        }
    }
    if (emulator)
        return serve_emulator(s);
    asio::io_context ctx(1); // one thread: no locking in Asio's reactor
    tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor.listen(asio::socket_base::max_listen_connections);
    const auto port = acceptor.local_endpoint().port();

    std::optional<asio::ssl::context> tls;
    bool ca_temporary = false;
    if (s.tls) {
        auto certs = lens::emulator::detail::generate_certificates("127.0.0.1");
        tls.emplace(asio::ssl::context::tls_server);
        tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3);
        tls->use_certificate_chain(asio::buffer(certs.server_cert_pem));
        tls->use_private_key(asio::buffer(certs.server_key_pem), asio::ssl::context::pem);
        if (s.ca_file.empty()) {
            s.ca_file = (std::filesystem::temp_directory_path() /
                         ("bench-responder-ca-" + lens::emulator::detail::random_hex(8) + ".pem"))
                            .string();
            ca_temporary = true;
        }
        std::ofstream(s.ca_file) << certs.ca_pem;
    }

    const std::string host = "127.0.0.1:" + std::to_string(port);
    std::printf("{\"endpoint\":\"%s://%s/v0.5/lens/sessions/lsn-bench\",\"rest\":\"%s://%s/v0.5\",\"port\":%u,"
                "\"tls\":%s,\"ca_file\":\"%s\",\"pid\":%d,\"server\":\"responder\"}\n",
                s.tls ? "wss" : "ws", host.c_str(), s.tls ? "https" : "http", host.c_str(), port,
                s.tls ? "true" : "false", s.ca_file.c_str(), static_cast<int>(getpid()));
    std::fflush(stdout);

    asio::signal_set stop(ctx, SIGTERM, SIGINT);
    stop.async_wait([&](auto, int) { ctx.stop(); });
    asio::co_spawn(ctx, accept_loop(acceptor, tls ? &*tls : nullptr, s), asio::detached);
    ctx.run();
    if (ca_temporary)
        std::filesystem::remove(s.ca_file);
    return 0;
}
