// lens::emulator::server: binding, TLS set-up, the accept loop and shutdown.
#include "emulator/connection.hpp"
#include "emulator/sse_feed.hpp"

#include <lens/error.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/ssl.h>

#include <filesystem>
#include <fstream>

namespace lens::emulator {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

tcp::endpoint listen_endpoint(const options& o)
{
    boost::system::error_code ec;
    auto address = asio::ip::make_address(o.host, ec);
    if (ec) {
        if (o.host != "localhost")
            throw lens::error(ec, "emulator", "cannot listen on host \"" + o.host + "\" (an IP address or localhost)");
        address = asio::ip::address_v4::loopback();
    }
    return {address, o.port};
}

void write_file(const std::string& path, const std::string& contents)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << contents;
    out.close();
    if (!out)
        throw lens::error(make_error_code(boost::system::errc::io_error), "emulator",
                          "cannot write the CA file " + path);
}

} // namespace

server::impl::impl(asio::any_io_executor ex, options o)
    : executor(std::move(ex)), opts(std::move(o)), acceptor(executor)
{
    lenses = detail::builtin_lenses();

    tcp::endpoint ep = listen_endpoint(opts);
    boost::system::error_code ec;
    acceptor.open(ep.protocol(), ec);
    if (!ec)
        acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec)
        acceptor.bind(ep, ec);
    if (!ec)
        acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
        throw lens::error(ec, "emulator", "cannot listen on " + opts.host + ':' + std::to_string(opts.port));
    bound_port = acceptor.local_endpoint().port();

    if (opts.tls) {
        detail::generated_certificates certs = detail::generate_certificates(opts.host);
        tls.emplace(asio::ssl::context::tls_server);
        tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::single_dh_use);
        tls->use_certificate_chain(asio::buffer(certs.server_cert_pem));
        tls->use_private_key(asio::buffer(certs.server_key_pem), asio::ssl::context::pem);
        SSL_CTX_set_min_proto_version(tls->native_handle(), TLS1_2_VERSION);

        if (opts.ca_file.empty()) {
            auto path = std::filesystem::temp_directory_path() /
                        ("lens-emulator-ca-" + detail::random_hex(8) + ".pem");
            ca_path = path.string();
            ca_path_is_temporary = true;
        } else {
            ca_path = opts.ca_file;
        }
        write_file(ca_path, certs.ca_pem);
        opts.ca_file = ca_path;
    }
}

server::impl::~impl()
{
    if (ca_path_is_temporary) {
        std::error_code ec;
        std::filesystem::remove(ca_path, ec);
    }
}

namespace {

asio::awaitable<void> accept_loop(std::shared_ptr<server::impl> srv)
{
    for (;;) {
        boost::system::error_code ec;
        tcp::socket socket = co_await srv->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
        if (srv->stopped || !srv->acceptor.is_open())
            co_return;
        if (ec) {
            if (ec == asio::error::operation_aborted)
                co_return;
            // Out of descriptors and the like: the listener itself is fine. Pause
            // briefly so that a persistent failure does not spin the thread.
            asio::steady_timer pause(srv->executor, std::chrono::milliseconds(20));
            co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            continue;
        }
        socket.set_option(tcp::no_delay(true), ec);
        ++srv->counters.tcp_connections;
        detail::serve_connection(srv, std::move(socket));
    }
}

} // namespace

server::server(asio::any_io_executor executor, options opts)
    : impl_(std::make_shared<impl>(std::move(executor), std::move(opts)))
{
}

server::~server()
{
    stop();
}

void server::start()
{
    if (impl_->started || impl_->stopped)
        return;
    impl_->started = true;
    asio::co_spawn(impl_->executor, accept_loop(impl_), [](std::exception_ptr e) {
        if (e)
            std::rethrow_exception(e);
    });
}

void server::impl::stop_now()
{
    if (stopped)
        return;
    stopped = true;
    boost::system::error_code ec;
    acceptor.close(ec);
    stop_all();
}

void server::stop()
{
    // Everything the emulator owns belongs to its executor's thread. Benchmarks run
    // the emulator on a thread of its own and stop it (or destroy it) from another:
    // then the work is handed over, and the posted handler keeps the state alive.
    auto* io = impl_->executor.target<asio::io_context::executor_type>();
    if (io && !io->running_in_this_thread() && !io->context().stopped()) {
        asio::post(impl_->executor, [self = impl_] { self->stop_now(); });
        return;
    }
    impl_->stop_now();
}

std::string server::endpoint() const
{
    return impl_->http_base();
}

unsigned short server::port() const
{
    return impl_->bound_port;
}

const std::string& server::ca_file() const
{
    return impl_->ca_path;
}

const std::string& server::api_key() const
{
    return impl_->opts.api_key;
}

options& server::knobs()
{
    return impl_->opts;
}

stats server::statistics() const
{
    return impl_->counters;
}

} // namespace lens::emulator
