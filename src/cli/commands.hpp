// The `lens` command line tool: each area registers its subcommands here.
#pragma once

#include <lens/config.hpp>
#include <lens/page.hpp>
#include <lens/transfer.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <functional>
#include <string>

namespace lens::cli {

/// Global options, parsed before any subcommand runs.
struct globals {
    std::string endpoint;       ///< --endpoint (CLI11 fills it from ARCHETYPE_API_ENDPOINT; empty: the default)
    std::string api_key;        ///< --api-key  (CLI11 fills it from ARCHETYPE_API_KEY)
    double timeout_seconds = 0; ///< --timeout  (0: the config default)
    std::string ca_file;        ///< --ca-file
    bool subprotocol_auth = false; ///< --subprotocol-auth: the key in Sec-WebSocket-Protocol (WebSocket commands)

    /// The effective configuration.
    lens::config make_config() const;
};

/// Subcommands set this to the work to do; main() runs it and maps exceptions to
/// one line on stderr and exit status 1.
using action = std::function<int()>;

void add_lens_commands(CLI::App& app, globals& g, action& run);      // lenses
void add_rest_commands(CLI::App& app, globals& g, action& run);      // sessions
void add_file_commands(CLI::App& app, globals& g, action& run);      // files
void add_emulator_commands(CLI::App& app, globals& g, action& run);  // emulator, demo
void add_session_commands(CLI::App& app, globals& g, action& run);   // status, validate, read, query, input,
                                                                     // destroy, update, call
void add_sse_commands(CLI::App& app, globals& g, action& run);       // events, sse-decode
void add_lens_config_commands(CLI::App& app, globals& g, action& run); // lenses register|modify, run (after add_lens_commands)
void add_bench_commands(CLI::App& app, globals& g, action& run);     // bench, bench merge

/// A `--... SECONDS` option as a duration: saturating (1e10 or inf is "practically never",
/// not an overflow into the past); NaN and negatives are rejected by the options' checks.
std::chrono::milliseconds seconds_option(double seconds) noexcept;

/// Prints one JSON value as a line on stdout.
void print_json_line(const boost::json::value& v);

/// The JSON text `text` of the option `option`, parsed; a usage error (CLI::ValidationError,
/// exit status 2, nothing sent) naming the option when it is not JSON.
boost::json::value parse_json_option(const std::string& option, const std::string& text);

/// Adds `--shard-index N --max-items-per-shard N` (each needs the other) to a list
/// command; `p` stays "everything" when they are not given.
void add_page_options(CLI::App& cmd, lens::page& p);

/// The options of a streamed transfer: --timeout bounds stalls (lens/transfer.hpp).
lens::transfer_options transfer_options_of(const globals& g);

} // namespace lens::cli
