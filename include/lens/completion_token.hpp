/// \file
/// lens/completion_token.hpp — how lens's asynchronous operations complete.
///
/// Every public asynchronous operation of lens takes an Asio completion token as its
/// last argument, after the operation's own arguments and an optional
/// `lens::diagnostics&` (lens/diagnostics.hpp):
///
///     auto s = co_await c.get_session(id);                               // default: throws lens::error
///     auto [ec, s] = co_await c.get_session(id, asio::as_tuple(asio::use_awaitable));
///     auto [ec, s] = co_await c.get_session(id, diag, asio::as_tuple(asio::use_awaitable));
///     c.get_session(id, [](boost::system::error_code ec, lens::session_record s) { ... });
///     auto op = c.get_session(id, asio::deferred);                        // runs when awaited / invoked
///
/// The completion signature is `void(boost::system::error_code, T)` (`void(error_code)` for
/// operations without a result), T being what the awaitable form returns.
///
/// The default token is `boost::asio::use_awaitable` (`lens::default_token`): the
/// operation returns the `lens::task<T>` it always did, nothing is added on that path,
/// and a failure throws the full `lens::error` (operation, HTTP status, server errors).
///
/// Any other token goes through `boost::asio::async_initiate`: the operation's coroutine
/// is spawned on the I/O object's executor (a client's, session's or stream's), and its
/// outcome is delivered as (ec, value): on failure, ec is the error's code and the value
/// is empty (T{}, or a moved-from-like empty object for types without a default
/// constructor). Exceptions other than system errors (std::bad_alloc, bugs) are not
/// turned into codes; they propagate from the completion, as from a co_spawn.
/// - The diagnostics an exception would carry are written to the `lens::diagnostics&`
///   of the overloads that take one (filled on failure, cleared on success). It must
///   outlive the operation. With `use_awaitable` these overloads throw
///   `boost::system::system_error(ec)`; the details are in the diagnostics.
/// - Per-operation cancellation follows the completion handler's cancellation slot
///   (`bind_cancellation_slot`, `awaitable_operators`, `cancel_after` style adapters):
///   a terminal cancellation completes the operation with `operation_aborted`.
/// - The handler is invoked through its associated executor, like any Asio operation's
///   (by default, the object's). An operation of a moved-from object (which has no
///   executor) fails with errc::closed on the handler's associated executor.
/// - The arguments are copied (or encoded) before the initiating function returns,
///   whatever the token, `deferred` included.
/// - Static operations without an I/O object (`session::open(config, ...)`) run on the
///   handler's associated executor (the awaiting coroutine's, for the use_awaitable
///   family); a handler without one (a bare callback, use_future) fails with
///   errc::invalid_argument: bind an executor with `boost::asio::bind_executor`.
#pragma once

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

namespace lens {

/// What every lens operation's results are awaited as: `co_await op()` yields `T`.
template <class T>
using task = boost::asio::awaitable<T>;

/// The completion token of every lens operation when none is given: awaiting it in a
/// coroutine yields the result and throws `lens::error` on failure.
using default_token = boost::asio::use_awaitable_t<>;

/// The completion signature of a lens operation whose awaitable form yields `T`.
template <class T>
struct completion_signature {
    /// `void(boost::system::error_code, T)`: the error (empty on success), then the result.
    using type = void(boost::system::error_code, T);
};
/// The completion signature of a lens operation without a result.
template <>
struct completion_signature<void> {
    /// `void(boost::system::error_code)`: the error, empty on success.
    using type = void(boost::system::error_code);
};
/// `completion_signature<T>::type`.
template <class T>
using completion_signature_t = typename completion_signature<T>::type;

/// A completion token (use_awaitable, as_tuple(...), deferred, a callback, use_future...)
/// for a lens operation yielding `T`. Keeps the operations' other arguments (strings,
/// `call_options`, `diagnostics`) from being mistaken for tokens.
template <class Token, class T>
concept completion_token_for = boost::asio::completion_token_for<Token, completion_signature_t<T>>;

} // namespace lens
