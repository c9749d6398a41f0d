/// \file
/// lens/scoped_lens.hpp — a registered lens belongs to whoever registered it; these make
/// sure it is deleted on every exit path, as `scoped_session.hpp` does for sessions.
///
///     co_await lens::with_lens(client, "my lens", config, [&](const lens::lens_record& l) {
///         return lens::with_session(client, l.lens_id, [&](const lens::session_record& s) -> lens::task<void> {
///             ... // return, throw, or be cancelled: the session is destroyed, then the lens deleted
///         });
///     });
///
/// This is the official SDK's `create_and_run_lens` (register, create a session, run,
/// destroy the session, delete the lens) with deletion that also happens on exceptions
/// and cancellation. `with_lens` is the structured form: it deletes the lens before it
/// completes, even when the caller's coroutine was cancelled (the cancellation is reset
/// for the delete call, which has its own deadline), and rethrows the body's exception.
/// `scoped_lens` is the RAII form for lenses whose life does not fit one scope:
/// `co_await l.destroy()` when done; a scoped_lens dropped without it spawns the delete on
/// the client's executor as a last resort.
#pragma once

#include <lens/client.hpp>
#include <lens/detail/run_scoped.hpp>
#include <lens/error.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/object.hpp>

#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace lens {

/// Owns a registered lens and deletes it: explicitly with `destroy()`, else from the
/// destructor (detached, best effort). Move-only.
class scoped_lens {
public:
    /// Registers `lens_config` (the inner `lens_config` of docs/protocol.md §6:
    /// `model_parameters`, `model_pipeline`, `input_streams`, `output_streams`) as `lens_name`.
    /// Not cancellable, like scoped_session::create: a lens registered while the caller was
    /// being cancelled is owned (and so deleted) all the same.
    static task<scoped_lens> register_lens(client c, std::string lens_name, boost::json::object lens_config)
    {
        auto record = co_await detail::shielded(c.register_lens(std::move(lens_name), std::move(lens_config)));
        co_return scoped_lens(std::move(c), std::move(record));
    }

    /// Takes ownership of the existing lens `record` (registered or cloned), deleted through `c`.
    scoped_lens(client c, lens_record record) : client_(std::move(c)), record_(std::move(record)) {}
    /// Takes over `other`'s lens; `other` no longer deletes it.
    scoped_lens(scoped_lens&& other) noexcept
        : client_(other.client_), record_(std::move(other.record_)), owned_(std::exchange(other.owned_, false))
    {
    }
    scoped_lens& operator=(scoped_lens&&) = delete;
    scoped_lens(const scoped_lens&) = delete;
    scoped_lens& operator=(const scoped_lens&) = delete;
    /// Spawns the delete on the client's executor when the lens is still owned.
    ~scoped_lens()
    {
        if (owned_)
            boost::asio::co_spawn(client_.get_executor(), delete_detached(client_, record_.lens_id),
                                  boost::asio::detached);
    }

    /// The record `register_lens` returned (or the one given).
    const lens_record& record() const noexcept { return record_; }
    /// The lens's id.
    const std::string& id() const noexcept { return record_.lens_id; }

    /// Deletes the lens now (idempotent; a lens already gone, `errc::not_found`, counts as
    /// deleted: that is what was wanted). A caller that was cancelled must first
    /// `co_await boost::asio::this_coro::reset_cancellation_state()`: Asio throws
    /// operation_aborted at a cancelled coroutine's every co_await, this one included,
    /// and the destructor's detached delete is then the only fallback.
    task<void> destroy()
    {
        if (!std::exchange(owned_, false))
            co_return;
        co_await boost::asio::this_coro::reset_cancellation_state();
        try {
            co_await client_.delete_lens(record_.lens_id);
        } catch (const error& e) {
            if (e.code() != make_error_code(errc::not_found))
                throw;
        }
    }

    /// Gives up ownership: the lens outlives this object.
    lens_record release() noexcept
    {
        owned_ = false;
        return std::move(record_);
    }

private:
    static task<void> delete_detached(client c, std::string id)
    {
        try {
            co_await c.delete_lens(std::move(id));
        } catch (...) {
            // Best effort: nobody is left to tell.
        }
    }

    client client_;
    lens_record record_;
    bool owned_ = true;
};

/// Registers `lens_config` as `lens_name`, runs `body(record)`, and deletes the lens on
/// every exit path before completing. Returns what `body` returns. Sessions of the lens
/// are the body's business: open them with `with_session` inside it, so that they are
/// destroyed before the lens is deleted.
template <class Body>
auto with_lens(client c, std::string lens_name, boost::json::object lens_config, Body body)
    -> std::invoke_result_t<Body&, const lens_record&>
{
    return detail::run_scoped(
        scoped_lens::register_lens(std::move(c), std::move(lens_name), std::move(lens_config)), std::move(body));
}

} // namespace lens
