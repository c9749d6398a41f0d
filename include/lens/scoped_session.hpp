/// \file
/// lens/scoped_session.hpp — sessions hold scarce server capacity (docs/protocol.md §5);
/// these make sure each one is destroyed on every exit path.
///
///     co_await lens::with_session(client, lens_id, [&](const lens::session_record& s) -> lens::task<void> {
///         ... // return, throw, or be cancelled: the session is destroyed either way
///     });
///
/// `with_session` is the structured form: it destroys the session before it
/// completes, even when the caller's coroutine was cancelled (the cancellation is
/// reset for the destroy call, which has its own deadline), and rethrows the
/// body's exception. `scoped_session` is the RAII form for sessions whose life
/// does not fit one scope: `co_await s.destroy()` when done; a scoped_session
/// dropped without it spawns the destroy on the client's executor as a last resort.
///
/// `scoped_session::create` and `destroy` take completion tokens like every lens
/// operation (lens/completion_token.hpp). `with_session` does not: its body is itself
/// a coroutine returning an awaitable, so it only ever runs inside one, and an awaitable
/// can already be given any token by spawning it:
/// `asio::co_spawn(ex, lens::with_session(c, id, body), token)`.
#pragma once

#include <lens/client.hpp>
#include <lens/detail/run_scoped.hpp>
#include <lens/completion_token.hpp>
#include <lens/detail/async_op.hpp>
#include <lens/diagnostics.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>

#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace lens {

/// Owns a server-side session and destroys it: explicitly with `destroy()`, else from
/// the destructor (detached, best effort). Move-only.
class scoped_session {
public:
    /// Creates a session of `lens_id`. Takes a completion token (default:
    /// `co_await scoped_session::create(c, id)`) and optionally a `lens::diagnostics&`
    /// before it, like client::create_session (lens/completion_token.hpp). Through a token,
    /// a failure completes with an empty scoped_session that owns nothing.
    template <completion_token_for<scoped_session> Token = default_token>
    static auto create(client c, std::string lens_id, Token&& token = {})
    {
        // The executor and the fallback copy `c` before the coroutine takes it (arguments
        // are evaluated before async_run runs `make`).
        return detail::async_run<scoped_session>(
            std::forward<Token>(token), [&c] { return executor_of(c); },
            [&] { return create_task(std::move(c), std::move(lens_id)); }, unowned(c));
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<scoped_session> Token = default_token>
    static auto create(client c, std::string lens_id, diagnostics& diag, Token&& token = {})
    {
        return detail::async_run<scoped_session>(
            std::forward<Token>(token), diag, [&c] { return executor_of(c); },
            [&] { return create_task(std::move(c), std::move(lens_id)); }, unowned(c));
    }

    /// Takes ownership of the existing session `record`, destroyed through `c`.
    scoped_session(client c, session_record record) : client_(std::move(c)), record_(std::move(record)) {}
    /// Takes over `other`'s session; `other` no longer destroys it.
    scoped_session(scoped_session&& other) noexcept
        : client_(other.client_), record_(std::move(other.record_)), owned_(std::exchange(other.owned_, false))
    {
    }
    scoped_session& operator=(scoped_session&&) = delete;
    scoped_session(const scoped_session&) = delete;
    ~scoped_session()
    {
        if (owned_)
            boost::asio::co_spawn(client_.get_executor(), destroy_detached(client_, record_.session_id),
                                  boost::asio::detached);
    }

    /// The record `create` returned (or the one given).
    const session_record& record() const noexcept { return record_; }
    /// The session's id.
    const std::string& id() const noexcept { return record_.session_id; }

    /// Destroys the session now (idempotent). A caller that was cancelled must first
    /// `co_await boost::asio::this_coro::reset_cancellation_state()`: Asio throws
    /// operation_aborted at a cancelled coroutine's every co_await, this one included,
    /// and the destructor's detached destroy is then the only fallback.
    /// Takes a completion token and optionally a `lens::diagnostics&` before it
    /// (lens/completion_token.hpp). Through a token, the session is handed to the operation
    /// when destroy() is called (this object then owns nothing): an operation dropped
    /// without running (its awaiting coroutine was cancelled, a `deferred` never invoked)
    /// still destroys it, detached, as the destructor would.
    template <completion_token_for<void> Token = default_token>
    auto destroy(Token&& token = {})
    {
        return detail::async_run<void>(
            std::forward<Token>(token), [this] { return executor_of(client_); },
            [&] {
                if constexpr (std::is_same_v<std::decay_t<Token>, default_token>)
                    return destroy_task();
                else
                    return destroy_handed_over(hand_over());
            });
    }
    /// \overload
    /// Filling `diag` on failure.
    template <completion_token_for<void> Token = default_token>
    auto destroy(diagnostics& diag, Token&& token = {})
    {
        return detail::async_run<void>(
            std::forward<Token>(token), diag, [this] { return executor_of(client_); },
            [&] { return destroy_handed_over(hand_over()); });
    }

    /// Gives up ownership: the session outlives this object.
    session_record release() noexcept
    {
        owned_ = false;
        return std::move(record_);
    }

private:
    /// Not cancellable: a create cut off after its request left would leave a session on
    /// the server that nobody owns. It has its own deadline (config::timeout); a
    /// cancellation arriving meanwhile is acted on as soon as it returns (with_session then
    /// destroys the session without running the body).
    static task<scoped_session> create_task(client c, std::string lens_id)
    {
        auto record = co_await detail::shielded(c.create_session(std::move(lens_id)));
        co_return scoped_session(std::move(c), std::move(record));
    }

    /// What a failed create completes with through a token: owns nothing.
    static auto unowned(const client& c)
    {
        return [c] {
            scoped_session s(c, session_record());
            s.owned_ = false;
            return s;
        };
    }

    /// The awaitable destroy(): resets the caller's cancellation first (see destroy()).
    task<void> destroy_task()
    {
        if (!std::exchange(owned_, false))
            co_return;
        co_await boost::asio::this_coro::reset_cancellation_state();
        co_await client_.destroy_session(record_.session_id);
    }

    /// A copy of this scoped_session that takes over its ownership (`record()` stays valid here).
    scoped_session hand_over()
    {
        scoped_session s(client_, record_);
        s.owned_ = std::exchange(owned_, false);
        return s;
    }

    /// The token path of destroy(): owns the session in its frame, so `*this` may go away,
    /// and a frame destroyed unrun spawns the destroy like any dropped scoped_session.
    static task<void> destroy_handed_over(scoped_session s) { co_await s.destroy_task(); }

    /// The client's executor; empty for a moved-from client (its operations fail with errc::closed).
    static boost::asio::any_io_executor executor_of(const client& c) noexcept
    {
        try {
            return c.get_executor();
        } catch (...) {
            return {};
        }
    }

    static task<void> destroy_detached(client c, std::string id)
    {
        try {
            co_await c.destroy_session(std::move(id));
        } catch (...) {
            // Best effort: nobody is left to tell.
        }
    }

    client client_;
    session_record record_;
    bool owned_ = true;
};

/// Creates a session of `lens_id`, runs `body(record)`, and destroys the session on
/// every exit path before completing. Returns what `body` returns.
template <class Body>
auto with_session(client c, std::string lens_id, Body body)
    -> std::invoke_result_t<Body&, const session_record&>
{
    return detail::run_scoped(scoped_session::create(std::move(c), std::move(lens_id)), std::move(body));
}

} // namespace lens
