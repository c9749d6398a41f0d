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
#pragma once

#include <lens/client.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace lens {

/// Owns a server-side session and destroys it: explicitly with `destroy()`, else from
/// the destructor (detached, best effort). Move-only.
class scoped_session {
public:
    /// Creates a session of `lens_id`.
    static task<scoped_session> create(client c, std::string lens_id)
    {
        auto record = co_await c.create_session(std::move(lens_id));
        co_return scoped_session(std::move(c), std::move(record));
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
    task<void> destroy()
    {
        if (!std::exchange(owned_, false))
            co_return;
        co_await boost::asio::this_coro::reset_cancellation_state();
        co_await client_.destroy_session(record_.session_id);
    }

    /// Gives up ownership: the session outlives this object.
    session_record release() noexcept
    {
        owned_ = false;
        return std::move(record_);
    }

private:
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
    using awaitable_type = std::invoke_result_t<Body&, const session_record&>;
    using result_type = typename awaitable_type::value_type;

    auto session = co_await scoped_session::create(c, std::move(lens_id));
    std::exception_ptr failure;
    std::optional<std::conditional_t<std::is_void_v<result_type>, int, result_type>> result;
    try {
        if constexpr (std::is_void_v<result_type>) {
            co_await body(session.record());
            result.emplace(0);
        } else {
            result.emplace(co_await body(session.record()));
        }
    } catch (...) {
        failure = std::current_exception();
    }
    // When the caller was cancelled, Asio throws operation_aborted at every later co_await
    // of this coroutine, `co_await session.destroy()` included, before destroy() even
    // starts; reset first so the destroy really runs here (it has its own deadline).
    co_await boost::asio::this_coro::reset_cancellation_state();
    try {
        co_await session.destroy();
    } catch (...) {
        if (!failure)
            failure = std::current_exception();
    }
    if (failure)
        std::rethrow_exception(failure);
    if constexpr (!std::is_void_v<result_type>)
        co_return std::move(*result);
}

} // namespace lens
