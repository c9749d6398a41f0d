// lens/detail/async_op.hpp — the one place where a lens coroutine becomes an Asio
// asynchronous operation taking any completion token (see lens/completion_token.hpp).
//
// Each public operation is a short template that names its result type and hands over
// a callable making the operation's coroutine (a non-template function compiled in
// src/*.cpp; scoped_session's are in its header). With the default token that coroutine is returned as it is. With any other
// token the callable is invoked at once (so every argument is copied before the
// initiating function returns), and the coroutine is co_spawned by the initiation:
// co_spawn connects the completion handler's cancellation slot to the coroutine, and
// `task_completion` turns its (exception_ptr, T) into (error_code, T), filling the
// caller's diagnostics. The exception-to-code conversion is one non-template function.
#pragma once

#include <lens/completion_token.hpp>
#include <lens/diagnostics.hpp>
#include <lens/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace lens::detail {

/// The error code an operation's exception stands for, after filling `diag` (when not
/// null) with what it carried. Anything that is not a `boost::system::system_error`
/// (bad_alloc, a bug) is rethrown.
boost::system::error_code error_code_of(const std::exception_ptr& failure, diagnostics* diag);

/// True when `ex` runs handlers on Asio's system context (many threads): no place for
/// an operation of lens, whose objects are used from one thread.
bool on_system_context(const boost::asio::any_io_executor& ex) noexcept;

/// The failure of a handler without an associated executor, for operations that need one.
std::exception_ptr no_handler_executor(const char* operation);

/// A coroutine that fails with `failure` when run: what an initiating function that
/// threw hands to the initiation, so that the token reports it like any other failure.
template <class T>
boost::asio::awaitable<T> rethrow_task(std::exception_ptr failure)
{
    co_await boost::asio::this_coro::executor;
    std::rethrow_exception(failure);
}

/// Makes `t` run `replacement` instead. Not `t = replacement`: Boost 1.81's awaitable move
/// assignment overwrites its frame pointer without destroying the frame (leaking the
/// coroutine and everything its arguments own), so the old frame is destroyed here first.
template <class T>
void replace_task(boost::asio::awaitable<T>& t, boost::asio::awaitable<T> replacement)
{
    {
        boost::asio::awaitable<T> old(std::move(t)); // destroyed at the end of this block
    }
    t = std::move(replacement); // `t` holds no frame now: nothing to leak
}

/// co_spawn hands `T()` to its handler on failure, so a result type without a default
/// constructor is spawned as an optional (one more coroutine frame, for those types only).
template <class T>
inline constexpr bool spawned_as_optional = !std::is_void_v<T> && !std::is_default_constructible_v<T>;

template <class T>
boost::asio::awaitable<std::optional<T>> optional_of(boost::asio::awaitable<T> t)
{
    co_return co_await std::move(t);
}

/// The empty value completing a failed operation whose result type has no default
/// constructor: such a type declares a hidden friend
/// `T lens_failed_result(std::type_identity<T>) noexcept`, found by argument-dependent lookup.
template <class T>
struct failed_result {
    T operator()() const { return lens_failed_result(std::type_identity<T>()); }
};

/// The completion handler given to co_spawn: (exception_ptr, T) in, (error_code, T) out.
/// Every associated characteristic (executor, allocator, cancellation slot) is the
/// wrapped handler's (see the associator specialisation below).
template <class Handler, class T, class Fallback>
class task_completion {
public:
    task_completion(Handler handler, diagnostics* diag, Fallback fallback)
        : handler_(std::move(handler)), diag_(diag), fallback_(std::move(fallback))
    {
    }

    void operator()(std::exception_ptr failure)
        requires std::is_void_v<T>
    {
        std::move(handler_)(settle(failure));
    }

    template <class Value>
    void operator()(std::exception_ptr failure, Value&& value)
        requires(!std::is_void_v<T>)
    {
        const auto ec = settle(failure);
        if constexpr (spawned_as_optional<T>) {
            if (ec)
                std::move(handler_)(ec, fallback_());
            else
                std::move(handler_)(ec, std::move(*value));
        } else {
            std::move(handler_)(ec, std::forward<Value>(value));
        }
    }

    Handler handler_;

private:
    boost::system::error_code settle(const std::exception_ptr& failure)
    {
        if (failure)
            return error_code_of(failure, diag_);
        if (diag_)
            diag_->clear();
        return {};
    }

    diagnostics* diag_;
    Fallback fallback_;
};

/// The operation runs on the completion handler's associated executor (static
/// operations without an I/O object); `operation` names it in the error of a handler
/// without one.
struct handler_executor_t {
    const char* operation;
};

/// The initiation of every lens operation: spawns `t` on the object's executor (or the
/// handler's, see handler_executor_t) with a task_completion around the handler.
template <class T, class Executor, class Fallback>
class initiate_task {
public:
    initiate_task(Executor ex, diagnostics* diag, Fallback fallback)
        : ex_(std::move(ex)), diag_(diag), fallback_(std::move(fallback))
    {
    }

    template <class Handler>
    void operator()(Handler&& handler, boost::asio::awaitable<T> t)
    {
        auto ex = spawn_executor(handler, t);
        task_completion<std::decay_t<Handler>, T, Fallback> done(std::forward<Handler>(handler), diag_,
                                                                 std::move(fallback_));
        if constexpr (spawned_as_optional<T>)
            boost::asio::co_spawn(ex, optional_of(std::move(t)), std::move(done));
        else
            boost::asio::co_spawn(ex, std::move(t), std::move(done));
    }

private:
    template <class Handler>
    boost::asio::any_io_executor spawn_executor(const Handler& handler, boost::asio::awaitable<T>& t) const
    {
        if constexpr (std::is_same_v<Executor, handler_executor_t>) {
            boost::asio::any_io_executor ex = boost::asio::get_associated_executor(handler);
            if (on_system_context(ex))
                replace_task(t, rethrow_task<T>(no_handler_executor(ex_.operation)));
            return ex;
        } else {
            if (ex_)
                return ex_;
            // A moved-from object has no executor; its operation fails with errc::closed
            // at once, wherever it runs: on the handler's executor.
            return boost::asio::get_associated_executor(handler);
        }
    }

    Executor ex_;
    diagnostics* diag_;
    Fallback fallback_;
};

/// The token path: makes the coroutine now (a throw becomes a coroutine that rethrows
/// it) and initiates it. `executor` is the object's (empty when moved from) or a
/// handler_executor_t.
template <class T, class Token, class Executor, class MakeTask, class Fallback = failed_result<T>>
auto initiate(Token&& token, diagnostics* diag, Executor executor, MakeTask&& make, Fallback fallback = {})
{
    boost::asio::awaitable<T> t;
    try {
        t = std::forward<MakeTask>(make)();
    } catch (...) {
        replace_task(t, rethrow_task<T>(std::current_exception()));
    }
    return boost::asio::async_initiate<Token, completion_signature_t<T>>(
        initiate_task<T, Executor, Fallback>(std::move(executor), diag, std::move(fallback)), token, std::move(t));
}

/// An operation without diagnostics: with the default token, `make()` itself (the
/// coroutine as it always was); otherwise the token path. `executor` is a callable
/// giving the executor, only called on the token path.
template <class T, class Token, class ExecutorOf, class MakeTask, class Fallback = failed_result<T>>
auto async_run(Token&& token, ExecutorOf&& executor, MakeTask&& make, Fallback fallback = {})
{
    if constexpr (std::is_same_v<std::decay_t<Token>, default_token>)
        return std::forward<MakeTask>(make)();
    else
        return initiate<T>(std::forward<Token>(token), nullptr, executor(), std::forward<MakeTask>(make),
                           std::move(fallback));
}

/// An operation filling `diag`: always the token path (use_awaitable then throws
/// system_error(ec), the details being in `diag`).
template <class T, class Token, class ExecutorOf, class MakeTask, class Fallback = failed_result<T>>
auto async_run(Token&& token, diagnostics& diag, ExecutorOf&& executor, MakeTask&& make, Fallback fallback = {})
{
    return initiate<T>(std::forward<Token>(token), &diag, executor(), std::forward<MakeTask>(make),
                       std::move(fallback));
}

} // namespace lens::detail

/// A task_completion is its handler to Asio: same executor, allocator, cancellation slot.
template <template <class, class> class Associator, class Handler, class T, class Fallback, class DefaultCandidate>
struct boost::asio::associator<Associator, lens::detail::task_completion<Handler, T, Fallback>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
    static typename Associator<Handler, DefaultCandidate>::type
    get(const lens::detail::task_completion<Handler, T, Fallback>& h) noexcept
    {
        return Associator<Handler, DefaultCandidate>::get(h.handler_);
    }

    static auto get(const lens::detail::task_completion<Handler, T, Fallback>& h, const DefaultCandidate& c) noexcept
        -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler_, c))
    {
        return Associator<Handler, DefaultCandidate>::get(h.handler_, c);
    }
};
