// A consumer of lens: starts the emulator in process, creates a session, talks to it over
// the WebSocket (status, validate), destroys it, exits 0. It also uses Asio and Beast
// header-only on its own (no BOOST_ASIO_SEPARATE_COMPILATION here) in the same program
// as liblens, which contains Asio's and Beast's separately compiled implementation.
#include <lens/client.hpp>
#include <lens/config.hpp>
#include <lens/emulator.hpp>
#include <lens/session.hpp>
#include <lens/version.hpp>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

static_assert(LENS_VERSION_MAJOR >= 0 && LENS_VERSION_MINOR >= 0 && LENS_VERSION_PATCH >= 0);

namespace {

void require(bool ok, const std::string& what)
{
    if (!ok)
        throw std::runtime_error("consumer: " + what);
}

/// A plain Beast request of the consumer's own: GET lens/metadata, the status code.
asio::awaitable<unsigned> beast_get(const lens::emulator::server& emu)
{
    const std::string target = "/v0.5/lens/metadata?shard_index=-1&max_items_per_shard=-1";
    beast::tcp_stream stream(co_await asio::this_coro::executor);
    co_await stream.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), emu.port()),
                                  asio::use_awaitable);
    http::request<http::empty_body> req(http::verb::get, target, 11);
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::authorization, "Bearer " + emu.api_key());
    co_await http::async_write(stream, req, asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    co_await http::async_read(stream, buffer, res, asio::use_awaitable);
    beast::error_code ignored;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    co_return res.result_int();
}

asio::awaitable<void> run(lens::emulator::server& emu)
{
    lens::config cfg;
    cfg.endpoint = emu.endpoint();
    cfg.api_key = emu.api_key();
    require(cfg.user_agent.find(std::string("lens-cpp/") + LENS_VERSION_STRING) == 0,
            "the default user agent does not carry the version: " + cfg.user_agent);

    lens::client rest(co_await asio::this_coro::executor, cfg);
    auto lenses = co_await rest.list_lenses();
    require(!lenses.empty(), "the emulator lists no lens");

    auto record = co_await rest.create_session(std::string(lens::emulator::builtin::mailbox));
    std::cout << "created " << record.session_id << '\n';
    {
        auto s = co_await rest.open_session(record);
        auto status = co_await s.status();
        require(status.session_id == record.session_id, "status names another session");
        auto v = co_await s.validate();
        require(v.is_valid, "the session is not valid");
        std::cout << "status " << lens::to_string(status.status) << ", valid\n";
        s.close();
    }
    auto destroyed = co_await rest.destroy_session(record.session_id);
    std::cout << "destroyed: " << lens::to_string(destroyed.status) << '\n';

    const unsigned code = co_await beast_get(emu);
    require(code == 200, "Beast GET lens/metadata answered " + std::to_string(code));
    std::cout << "beast GET lens/metadata: " << code << '\n';
}

} // namespace

int main()
{
    std::cout << "lens " << lens::version() << '\n';
    require(std::strcmp(lens::version(), LENS_VERSION_STRING) == 0, "lens::version()");
    asio::io_context ctx;
    lens::emulator::server emu(ctx.get_executor());
    emu.start();
    std::exception_ptr failure;
    asio::co_spawn(ctx, run(emu), [&](std::exception_ptr e) {
        failure = e;
        emu.stop();
    });
    ctx.run();
    if (failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const std::exception& e) {
            std::cerr << e.what() << '\n';
            return 1;
        }
    }
    std::cout << "consumer: ok\n";
    return 0;
}
