// lens emulator | lens demo
#include "cli/commands.hpp"
#include "cli/demo.hpp"

#include <lens/emulator.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json/object.hpp>

#include <csignal>

namespace lens::cli {

namespace {

struct emulator_args {
    std::string host = "127.0.0.1";
    unsigned short port = 0;
    bool tls = false;
    std::string api_key = "emulator-key";
    std::size_t max_sessions = 64;
};

int serve(const emulator_args& a)
{
    boost::asio::io_context ctx;
    lens::emulator::options opts;
    opts.host = a.host;
    opts.port = a.port;
    opts.tls = a.tls;
    opts.api_key = a.api_key;
    opts.max_sessions = a.max_sessions;
    lens::emulator::server server(ctx.get_executor(), opts);
    server.start();

    // The first line is machine-readable so scripts can find the endpoint.
    boost::json::object line{{"endpoint", server.endpoint()}, {"port", server.port()}, {"tls", a.tls}};
    if (a.tls)
        line["ca_file"] = server.ca_file();
    print_json_line(line);

    boost::asio::signal_set signals(ctx, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int) {
        if (!ec)
            server.stop();
    });
    ctx.run();
    return 0;
}

} // namespace

void add_emulator_commands(CLI::App& app, globals& g, action& run)
{
    auto* emu = app.add_subcommand("emulator", "Serve the local Lens API emulator until SIGINT or SIGTERM");
    auto args = std::make_shared<emulator_args>();
    emu->add_option("--host", args->host, "Address to listen on")->capture_default_str();
    emu->add_option("--port", args->port, "Port (0: an ephemeral port)")->capture_default_str();
    emu->add_flag("--tls", args->tls, "Serve https/wss with a generated certificate; prints the CA file");
    emu->add_option("--api-key", args->api_key, "The key clients must present")->capture_default_str();
    emu->add_option("--max-sessions", args->max_sessions, "Live sessions before create is refused")
        ->capture_default_str();
    emu->callback([&run, args] { run = [args] { return serve(*args); }; });

    auto* demo = app.add_subcommand("demo", "Walk through the API against an in-process emulator");
    auto tls = std::make_shared<bool>(false);
    demo->add_flag("--tls", *tls, "Run the emulator and the client over TLS");
    demo->callback([&run, &g, tls] { run = [&g, tls] { return run_demo(g, *tls); }; });
}

} // namespace lens::cli
