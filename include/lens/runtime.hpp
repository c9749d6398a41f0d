/// \file
/// lens/runtime.hpp — sessions spread over N threads, each pinned to one.
///
/// Every lens object (client, session, event stream, scoped_session, scoped_lens) is
/// bound to one executor and used from its thread only, like an Asio I/O object; one
/// thread drives thousands of sessions (examples/many_sessions.cpp). A `runtime` is
/// how to use more cores without giving that up: N threads, one `io_context` each
/// (concurrency hint 1: no locking inside Asio), and one `lens::client` per thread,
/// all made from one `lens::config`. Work is placed on a thread when it is spawned and
/// stays there: a task's sessions and streams come from its thread's client (so they
/// share that thread's connection pool and TLS context) and never see another thread.
/// Nothing inside lens is shared between the threads, so nothing needs a strand or a lock.
///
///     lens::runtime rt(cfg);                       // hardware_concurrency() threads
///     for (int n = 0; n < 1000; ++n)
///         rt.spawn([=](lens::client& c) -> lens::task<void> {
///             co_await lens::with_session(c, lens_id, [&](const lens::session_record& s) -> lens::task<void> {
///                 auto channel = co_await c.open_session(s);   // pinned to this task's thread
///                 ...
///             });
///         });
///     rt.wait();                                   // every task done; rethrows the first failure
///
/// Threads. What may be called from where:
/// - From any thread, concurrently: `spawn`, `shutdown`, `size`, `executor`,
///   `current_thread`, `stopping`, `stats`. `start`, `wait` and `join` from any thread
///   but the runtime's own (waiting there would wait for itself: refused).
/// - From thread i only (a task spawned on it, or a handler posted to `executor(i)`):
///   everything on `client(i)` and on every object it makes (sessions, event streams,
///   scoped sessions and lenses, copies of the client). A session is pinned to the
///   thread it was opened on; to use it elsewhere, post the work to its thread instead
///   of moving the object. After `join()` returns, the clients may be read from the
///   joining thread (their `stats()`, for instance).
/// - `config::log`'s sink is called by every thread's client, sessions and streams, so
///   concurrently: with a runtime it must be thread-safe.
///
/// Tasks. `spawn(f)` calls `f(client)` on the next thread in turn (`spawn(i, f)`: on
/// thread i), with that thread's client (a handle the task owns, sharing the connection
/// pool, TLS context and counters of `client(i)`), and runs the `lens::task<void>` it
/// returns there. `f` and the client handle live as long as the task, so a coroutine
/// lambda may capture by value. A task that throws is a failure: the first failure is rethrown by `wait()` or
/// `join()`, unless `runtime_options::on_failure` is set (then every failure goes to it,
/// on the task's thread). One task's failure does not stop the others.
///
/// Shutdown. `shutdown()` (from any thread, or SIGINT/SIGTERM with `shutdown_on_signals`)
/// refuses new tasks and cancels every running one: each task has its own
/// `cancellation_signal`, emitted (terminal) on the task's own thread. A task unwinds
/// from the `co_await` it was in, so `with_session`, `with_lens` and `scoped_session`
/// bodies end and destroy their sessions and delete their lenses on the server (those
/// calls have their own deadlines), session objects close their connections, streams
/// stop. A task that ends with an exception after the cancellation counts as cancelled,
/// not failed, and its exception is dropped: it is what the cancellation caused (a
/// cancelled operation reports `operation_aborted`, or its own failure: a REST call cut
/// off mid-exchange reports errc::connection_lost). Sessions and lenses being created
/// when the cancellation comes are created, then destroyed (see lens/scoped_session.hpp). Each thread exits when its context runs out of work. `join()`
/// waits for that at most `shutdown_timeout` after the shutdown was requested; then it
/// stops the contexts hard (`runtime_stats::forced_stop`), and whatever was still
/// pending is destroyed with the runtime (sockets closed, server-side sessions possibly
/// left to the server's idle timeout).
#pragma once

#include <lens/client.hpp>
#include <lens/completion_token.hpp>
#include <lens/config.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace lens {

/// How many threads a runtime runs, how long its shutdown may take, and where failures go.
struct runtime_options {
    /// Not an aggregate on purpose (like lens::config): start from a named value and set members.
    runtime_options() = default;

    /// Threads, one io_context and one client each; 0: `std::thread::hardware_concurrency()`
    /// (at least 1).
    std::size_t threads = 0;
    /// How long `join()` lets a graceful shutdown take, from the moment it was requested,
    /// before stopping the contexts hard. Leave room for the destroy and delete calls the
    /// cancelled tasks make (`config::timeout` each).
    std::chrono::milliseconds shutdown_timeout = std::chrono::seconds(30);
    /// SIGINT and SIGTERM call `shutdown()` (see `runtime::shutdown_on_signals`).
    bool shutdown_on_signals = false;
    /// Receives every task's failure, on the task's thread, instead of `wait()`/`join()`
    /// rethrowing the first one. Must not throw (what it throws is dropped).
    std::function<void(std::exception_ptr)> on_failure;
};

/// What became of the runtime's tasks (`runtime::stats()`).
struct runtime_stats {
    std::size_t threads = 0;    ///< threads (and clients) of the runtime
    std::size_t spawned = 0;    ///< tasks accepted by `spawn`
    std::size_t completed = 0;  ///< tasks that returned
    std::size_t cancelled = 0;  ///< tasks that ended, with an exception, after the shutdown's cancellation, or never started because of it
    std::size_t failed = 0;     ///< tasks that threw anything else
    std::size_t running = 0;    ///< tasks spawned and not ended yet (after a forced stop: those abandoned)
    std::size_t refused = 0;    ///< `spawn` calls refused after the shutdown
    bool forced_stop = false;   ///< the shutdown outlasted `shutdown_timeout` and the contexts were stopped hard
};

/// N threads, one io_context and one `lens::client` each; tasks pinned to a thread,
/// cancelled together on shutdown (see the file description for the threading rules).
/// Neither copyable nor movable. The destructor shuts down and joins.
class runtime {
public:
    /// `hardware_concurrency()` threads with default options. Throws like lens::client's
    /// constructor for a bad configuration. The threads start with `start()` (or `wait()`).
    explicit runtime(config cfg);
    /// The runtime `opts` describe; one client per thread, each made from `cfg`.
    runtime(config cfg, runtime_options opts);
    /// `shutdown()`, then `join()` (a failure nobody collected is dropped). Tasks spawned
    /// on a runtime that never started are destroyed without running.
    ~runtime();
    runtime(const runtime&) = delete;
    runtime& operator=(const runtime&) = delete;

    /// The number of threads (fixed at construction). Any thread.
    std::size_t size() const noexcept;
    /// Thread `i`'s executor (i < size()): post there to run code on that thread. Any thread.
    boost::asio::any_io_executor executor(std::size_t i) const;
    /// Thread `i`'s client (i < size()). Taking the reference is safe anywhere; using the
    /// client, its copies and everything it makes is for thread i only.
    lens::client& client(std::size_t i);
    /// The index of the runtime thread calling, or nullopt on any other thread. Any thread.
    std::optional<std::size_t> current_thread() const noexcept;

    /// Runs `f(client)` on the next thread in turn (round robin) with that thread's client;
    /// `f` returns the `lens::task<void>` to run there and lives as long as it. Any thread,
    /// before `start()` too (the task then starts with the threads). Throws lens::error
    /// (errc::closed) once the runtime is shutting down: nothing is spawned then.
    template <class F>
    void spawn(F f)
    {
        spawn(next_thread(), std::move(f));
    }
    /// \overload
    /// On thread `thread` (errc::invalid_argument when not below size()).
    template <class F>
    void spawn(std::size_t thread, F f)
    {
        static_assert(std::is_same_v<std::invoke_result_t<F&, lens::client&>, task<void>>,
                      "spawn(f): f(lens::client&) must return lens::task<void>");
        spawn_erased(thread, std::make_unique<task_maker_of<F>>(std::move(f)));
    }

    /// Starts the threads (once; a second call does nothing). Throws lens::error
    /// (errc::closed) after a shutdown.
    void start();
    /// Starts the threads if needed, waits until every spawned task has ended (tasks
    /// spawned by tasks included), then shuts down and joins. Rethrows the first failure
    /// (see runtime_options::on_failure).
    void wait();
    /// Waits until the runtime has been shut down (by `shutdown()`, from any thread or a
    /// task, or a signal) and its threads have exited, stopping them hard after
    /// `shutdown_timeout`. Rethrows the first failure, once. Returns at once on a runtime
    /// that never started.
    void join();
    /// Refuses new tasks and cancels every running one, on its own thread; the threads
    /// exit as their work ends (see the file description). Returns at once; idempotent;
    /// any thread, a task included. Before `start()`: the queued tasks never run.
    void shutdown() noexcept;
    /// SIGINT and SIGTERM call `shutdown()` (an asio::signal_set on thread 0). Once the
    /// shutdown began the signals are released, so a second Ctrl-C ends the process the
    /// ordinary way. Call before `start()` (errc::invalid_argument after), or set
    /// runtime_options::shutdown_on_signals.
    void shutdown_on_signals();

    /// True once a shutdown was requested. Any thread.
    bool stopping() const noexcept;
    /// A snapshot of the task counters. Any thread.
    runtime_stats stats() const noexcept;

    struct impl;

private:
    /// `spawn`'s callable with its type erased (std::function would demand a copyable one).
    struct task_maker {
        virtual ~task_maker() = default;
        virtual task<void> make(lens::client& c) = 0;
    };
    template <class F>
    struct task_maker_of final : task_maker {
        explicit task_maker_of(F fn) : f(std::move(fn)) {}
        task<void> make(lens::client& c) override { return f(c); }
        F f;
    };

    void spawn_erased(std::size_t thread, std::unique_ptr<task_maker> make);
    std::size_t next_thread() noexcept;

    std::unique_ptr<impl> impl_;
};

} // namespace lens
