// The `lens` command line tool. Results are JSON on stdout; an error is one
// line on stderr and a non-zero exit status (see exit_status below).
#include "cli/commands.hpp"

#include <lens/detail/deadline.hpp>
#include <lens/error.hpp>
#include <lens/version.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <iostream>

namespace lens::cli {

lens::config globals::make_config() const
{
    // --endpoint and --api-key already hold $ARCHETYPE_API_ENDPOINT / $ARCHETYPE_API_KEY
    // when given no value on the command line (CLI11's envname).
    lens::config cfg;
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

boost::json::value parse_json_option(const std::string& option, const std::string& text)
{
    boost::system::error_code ec;
    auto v = boost::json::parse(text, ec);
    if (ec)
        throw CLI::ValidationError(option, "not valid JSON (" + ec.message() + ")");
    return v;
}

void add_page_options(CLI::App& cmd, lens::page& p)
{
    auto* index = cmd.add_option("--shard-index", p.shard_index, "Which page, from 0 (with --max-items-per-shard)")
                      ->check(CLI::NonNegativeNumber);
    auto* size = cmd.add_option("--max-items-per-shard", p.max_items_per_shard, "Items per page (with --shard-index)")
                     ->check(CLI::PositiveNumber);
    index->needs(size);
    size->needs(index);
}

lens::transfer_options transfer_options_of(const globals& g)
{
    lens::transfer_options opts;
    if (g.timeout_seconds > 0)
        opts.stall_timeout = seconds_option(g.timeout_seconds);
    return opts;
}

namespace {

/// The exit statuses of `lens`, documented in `lens --help` and the README.
enum exit_status : int {
    success = 0,          ///< the command did what was asked (also --help, --version)
    operation_failed = 1, ///< the API, the network, a file or a deadline said no
    usage_error = 2,      ///< the command line is wrong; nothing was sent
};

constexpr const char* exit_status_help = "Exit status:\n"
                                         "  0  success (also --help and --version)\n"
                                         "  1  the operation failed: an API error, the network, a file, a deadline\n"
                                         "     (one line on stderr names the operation and the cause)\n"
                                         "  2  usage error: unknown or missing subcommand, option or value; nothing was sent\n"
                                         "  128+N  killed by signal N (lens emulator exits 0 on SIGINT and SIGTERM;\n"
                                         "         lens run destroys its session and deletes its lens first,\n"
                                         "         lens bench destroys its sessions first)";

} // namespace

} // namespace lens::cli

int main(int argc, char** argv)
{
    using namespace lens::cli;
    CLI::App app{"lens — a client for the Archetype AI Lens API"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "lens " LENS_VERSION_STRING, "Print \"lens <version>\" and exit");
    app.footer(exit_status_help);
    globals g;
    // No capture_default_str: --help shows the variable's name, never its value (the key).
    app.add_option("--endpoint", g.endpoint, "API base URL (default: the public API)")
        ->envname("ARCHETYPE_API_ENDPOINT");
    app.add_option("--api-key", g.api_key, "API key")->envname("ARCHETYPE_API_KEY");
    app.add_option("--timeout", g.timeout_seconds, "Deadline of each call, in seconds (file transfers: the longest stall)")->check(CLI::PositiveNumber);
    app.add_option("--ca-file", g.ca_file, "Extra CA certificates (PEM) to trust");
    app.add_flag("--subprotocol-auth", g.subprotocol_auth,
                 "WebSocket commands send the key in Sec-WebSocket-Protocol, not in Authorization");

    action run;
    add_lens_commands(app, g, run);
    add_rest_commands(app, g, run);
    add_file_commands(app, g, run);
    add_emulator_commands(app, g, run);
    add_session_commands(app, g, run);
    add_sse_commands(app, g, run);
    add_lens_config_commands(app, g, run);
    add_bench_commands(app, g, run);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // app.exit prints help, the version or the error message. CLI11's own codes
        // (106 for most parse errors) are not ours: every usage error is 2.
        const int code = app.exit(e);
        return code == 0 ? success : usage_error;
    }
    try {
        return run ? run() : success;
    } catch (const std::exception& e) {
        std::cerr << "lens: " << e.what() << '\n';
        return operation_failed;
    } catch (...) {
        std::cerr << "lens: unknown error\n";
        return operation_failed;
    }
}
