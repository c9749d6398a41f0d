// lens/detail/run_scoped.hpp — the one rule behind lens::with_session and lens::with_lens:
// run the body with the owned resource, then release the resource on every exit path.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace lens::detail {

/// Awaits `op` without letting the caller's cancellation reach it: for the calls that
/// acquire a server-side resource (create a session, register a lens), which, cut off
/// after their request left, would leave it owned by nobody. They have their own
/// deadlines. The caller's cancellation is still recorded in its cancellation state
/// (Asio's next cancellable co_await of the caller throws operation_aborted).
template <class T>
boost::asio::awaitable<T> shielded(boost::asio::awaitable<T> op)
{
    auto ex = co_await boost::asio::this_coro::executor;
    co_return co_await boost::asio::co_spawn(
        ex, std::move(op),
        boost::asio::bind_cancellation_slot(boost::asio::cancellation_slot(), boost::asio::use_awaitable));
}

/// The awaitable `body` returns for the record of `Owner`.
template <class Owner, class Body>
using scoped_body_result_t = std::invoke_result_t<Body&, decltype(std::declval<const Owner&>().record())>;

/// Awaits `acquire` (a scoped_session or scoped_lens), runs `body(owner.record())`, then
/// `owner.destroy()` whether the body returned, threw or was cancelled, and completes with
/// the body's result or its exception (the body's failure wins over a failed destroy).
template <class Owner, class Body>
auto run_scoped(boost::asio::awaitable<Owner> acquire, Body body) -> scoped_body_result_t<Owner, Body>
{
    using result_type = typename scoped_body_result_t<Owner, Body>::value_type;

    Owner owner = co_await std::move(acquire);
    std::exception_ptr failure;
    std::optional<std::conditional_t<std::is_void_v<result_type>, int, result_type>> result;
    try {
        // Acquiring is shielded from cancellation (see shielded): a cancellation that came
        // meanwhile skips the body, and the resource is released below.
        boost::asio::cancellation_state state = co_await boost::asio::this_coro::cancellation_state;
        if (state.cancelled() != boost::asio::cancellation_type::none)
            throw boost::system::system_error(boost::asio::error::operation_aborted);
        if constexpr (std::is_void_v<result_type>) {
            co_await body(owner.record());
            result.emplace(0);
        } else {
            result.emplace(co_await body(owner.record()));
        }
    } catch (...) {
        failure = std::current_exception();
    }
    // When the caller was cancelled, Asio throws operation_aborted at every later co_await
    // of this coroutine, `co_await owner.destroy()` included, before destroy() even
    // starts; reset first so the release really runs here (it has its own deadline).
    co_await boost::asio::this_coro::reset_cancellation_state();
    try {
        co_await owner.destroy();
    } catch (...) {
        if (!failure)
            failure = std::current_exception();
    }
    if (failure)
        std::rethrow_exception(failure);
    if constexpr (!std::is_void_v<result_type>)
        co_return std::move(*result);
}

} // namespace lens::detail
