// Runs one coroutine to completion on a fresh io_context (the CLI is one-shot), and the
// helpers the REST subcommands share.
#pragma once

#include "cli/commands.hpp"

#include <lens/client.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/value_from.hpp>

#include <memory>
#include <string>
#include <vector>

namespace lens::cli {

template <class T>
T run_blocking(boost::asio::io_context& ctx, boost::asio::awaitable<T> work)
{
    auto result = boost::asio::co_spawn(ctx, std::move(work), boost::asio::use_future);
    ctx.run();
    return result.get();
}

template <class Record>
boost::json::value to_json(const std::vector<Record>& records)
{
    boost::json::array out;
    for (auto& r : records)
        out.push_back(boost::json::value_from(r));
    return out;
}

/// Runs `call(client)` (a `task<json::value>`) and prints its JSON result.
template <class F>
action rest_action(globals& g, F call)
{
    return [&g, call] {
        boost::asio::io_context ctx;
        lens::client c(ctx.get_executor(), g.make_config());
        auto result = run_blocking(ctx, call(c));
        print_json_line(result);
        return 0;
    };
}

/// Adds the positional argument `name` (required) to `cmd`; the value lives as long as
/// the actions that capture the returned pointer.
inline std::shared_ptr<std::string> add_id(CLI::App& cmd, const char* name, const char* help)
{
    auto id = std::make_shared<std::string>();
    cmd.add_option(name, *id, help)->required();
    return id;
}

} // namespace lens::cli
