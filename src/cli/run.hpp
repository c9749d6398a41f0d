// Runs one coroutine to completion on a fresh io_context (the CLI is one-shot).
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/value_from.hpp>

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

} // namespace lens::cli
