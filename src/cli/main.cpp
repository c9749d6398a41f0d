// The `lens` command line tool. Results are JSON on stdout; an error is one
// line on stderr and exit status 1 (2 for usage errors, from CLI11).
#include "cli/commands.hpp"

#include <lens/detail/deadline.hpp>
#include <lens/error.hpp>

#include <boost/json/serialize.hpp>

#include <iostream>

namespace lens::cli {

lens::config globals::make_config() const
{
    auto cfg = lens::config::from_environment();
    if (!endpoint.empty())
        cfg.endpoint = endpoint;
    if (!api_key.empty())
        cfg.api_key = api_key;
    if (timeout_seconds > 0)
        cfg.timeout = seconds_option(timeout_seconds);
    if (!ca_file.empty())
        cfg.ca_file = ca_file;
    return cfg;
}

std::chrono::milliseconds seconds_option(double seconds) noexcept
{
    return lens::detail::saturating_ms(std::chrono::duration<double>(seconds));
}

void print_json_line(const boost::json::value& v)
{
    std::cout << boost::json::serialize(v) << '\n' << std::flush;
}

} // namespace lens::cli

int main(int argc, char** argv)
{
    using namespace lens::cli;
    CLI::App app{"lens — a client for the Archetype AI Lens API"};
    app.require_subcommand(1);
    globals g;
    app.add_option("--endpoint", g.endpoint, "API base URL (default: $ARCHETYPE_API_ENDPOINT or the public API)");
    app.add_option("--api-key", g.api_key, "API key (default: $ARCHETYPE_API_KEY)");
    app.add_option("--timeout", g.timeout_seconds, "Deadline of each call, in seconds")->check(CLI::PositiveNumber);
    app.add_option("--ca-file", g.ca_file, "Extra CA certificates (PEM) to trust");

    action run;
    add_rest_commands(app, g, run);
    add_emulator_commands(app, g, run);
    add_session_commands(app, g, run);
    add_sse_commands(app, g, run);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        return run ? run() : 0;
    } catch (const std::exception& e) {
        std::cerr << "lens: " << e.what() << '\n';
        return 1;
    }
}
