// runtime.cpp — N threads, one io_context and one client each (see lens/runtime.hpp).
//
// Who touches what:
// - `worker::tasks` and `worker::stopping` belong to the worker's thread: only handlers
//   running there read or change them (a spawn posts its task there; a shutdown posts
//   the cancellation there). No lock.
// - The state, the counters and the first failure are shared by every thread and the
//   callers of spawn/shutdown/join/wait: one mutex, one condition variable.
// - Everything else is fixed at construction.
#include <lens/runtime.hpp>

#include <lens/error.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace lens {

namespace asio = boost::asio;

struct runtime::impl {
    enum class state { idle, running, stopping, stopped };
    enum class outcome { completed, cancelled, failed };

    /// One thread: its context, its client, and the tasks running there.
    struct worker {
        explicit worker(const config& cfg)
            : ctx(std::make_unique<asio::io_context>(1)), guard(asio::make_work_guard(*ctx)),
              client(std::in_place, ctx->get_executor(), cfg)
        {
        }

        std::unique_ptr<asio::io_context> ctx;
        /// Keeps the thread alive while idle; dropped on the thread at shutdown.
        std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
        std::optional<lens::client> client;
        std::thread thread;
        // Owned by this worker's thread (see the top of the file).
        std::unordered_map<std::uint64_t, std::shared_ptr<asio::cancellation_signal>> tasks;
        std::uint64_t next_task_id = 0;
        bool stopping = false;
    };

    impl(config cfg, runtime_options o) : opts(std::move(o))
    {
        std::size_t n = opts.threads;
        if (n == 0)
            n = std::max(1u, std::thread::hardware_concurrency());
        workers.reserve(n);
        for (std::size_t i = 0; i < n; ++i)
            workers.push_back(std::make_unique<worker>(cfg));
    }

    ~impl()
    {
        // The threads are joined. The clients go first: a client owns sockets of its
        // context (its idle keep-alive connections), which must close while the context
        // exists; tasks hold copies of their client, so a client still in use by a frame a
        // forced stop left behind lives on until the context destroys that frame. Then the
        // guards, then the contexts, destroying whatever was left pending.
        signals.reset();
        for (auto& w : workers)
            w->client.reset();
        for (auto& w : workers)
            w->guard.reset();
        for (auto& w : workers)
            w->ctx.reset();
    }

    // ---- on a worker's thread ------------------------------------------------

    /// The task runner. Owns `make`, so a coroutine lambda's captures live as long as its
    /// task, and a copy of the thread's client, so the reference the task gets is valid
    /// for as long as the task's frames exist, even when a forced stop leaves them to be
    /// destroyed with the context.
    static task<void> run_task(std::unique_ptr<task_maker> make, lens::client c) { co_await make->make(c); }

    void start_task(worker& w, std::unique_ptr<task_maker> make)
    {
        if (w.stopping) { // spawned just before the shutdown, arrived after its cancellation
            task_ended(w, outcome::cancelled, nullptr);
            return;
        }
        auto signal = std::make_shared<asio::cancellation_signal>();
        const std::uint64_t id = w.next_task_id++;
        w.tasks.emplace(id, signal);
        asio::co_spawn(*w.ctx, run_task(std::move(make), *w.client),
                       asio::bind_cancellation_slot(signal->slot(), [this, &w, id, signal](std::exception_ptr e) {
                           w.tasks.erase(id);
                           // After the shutdown's cancellation, whatever the task ends with is
                           // what the cancellation caused: a cancelled lens operation reports
                           // operation_aborted, or its own failure (a REST call cut off in the
                           // middle of its exchange reports errc::connection_lost).
                           if (!e)
                               task_ended(w, outcome::completed, nullptr);
                           else if (w.stopping)
                               task_ended(w, outcome::cancelled, nullptr);
                           else
                               task_ended(w, outcome::failed, std::move(e));
                       }));
    }

    void task_ended(worker&, outcome how, std::exception_ptr failure)
    {
        bool report = false;
        {
            std::lock_guard lock(mutex);
            switch (how) {
            case outcome::completed: ++counters.completed; break;
            case outcome::cancelled: ++counters.cancelled; break;
            case outcome::failed:
                ++counters.failed;
                if (opts.on_failure)
                    report = true;
                else if (!first_failure)
                    first_failure = failure;
                break;
            }
            --counters.running;
            changed.notify_all();
        }
        if (report) {
            try {
                opts.on_failure(failure);
            } catch (...) {
                // Documented: what the handler throws is dropped.
            }
        }
    }

    /// The shutdown, on `w`'s thread: no new task starts here, every running one is
    /// cancelled, and the context may run out of work.
    void stop_worker(worker& w)
    {
        w.stopping = true;
        // Emitting may complete a task at once, which erases it from the map: iterate a copy.
        std::vector<std::shared_ptr<asio::cancellation_signal>> running;
        running.reserve(w.tasks.size());
        for (auto& [id, s] : w.tasks)
            running.push_back(s);
        for (auto& s : running)
            s->emit(asio::cancellation_type::terminal);
        w.guard.reset();
        if (&w == workers.front().get() && signals) {
            boost::system::error_code ignored;
            signals->cancel(ignored);
            signals->clear(ignored); // a second signal now ends the process the ordinary way
        }
    }

    void run_worker(worker& w)
    {
        for (;;) {
            try {
                w.ctx->run();
                break;
            } catch (...) {
                // A handler outside the tasks threw (a user's detached work): a failure
                // like a task's; the thread keeps serving its other tasks.
                std::exception_ptr failure = std::current_exception();
                bool report = false;
                {
                    std::lock_guard lock(mutex);
                    ++counters.failed;
                    if (opts.on_failure)
                        report = true;
                    else if (!first_failure)
                        first_failure = failure;
                }
                if (report) {
                    try {
                        opts.on_failure(failure);
                    } catch (...) {
                    }
                }
            }
        }
        std::lock_guard lock(mutex);
        --threads_running;
        changed.notify_all();
    }

    // ---- anywhere --------------------------------------------------------------

    bool on_own_thread() const noexcept
    {
        for (auto& w : workers)
            if (w->ctx->get_executor().running_in_this_thread())
                return true;
        return false;
    }

    void refuse_own_thread(const char* operation) const
    {
        if (on_own_thread())
            throw lens::error(make_error_code(errc::invalid_argument), operation,
                              "called from one of the runtime's own threads, it would wait for itself");
    }

    /// Starts the threads; `lock` held.
    void start_locked()
    {
        if (opts.shutdown_on_signals) {
            // Installed before any thread runs, so a signal raised right after start() is ours.
            signals = std::make_unique<asio::signal_set>(*workers.front()->ctx, SIGINT, SIGTERM);
            signals->async_wait([this](boost::system::error_code ec, int) {
                if (!ec)
                    shutdown();
            });
        }
        st = state::running;
        threads_running = workers.size();
        for (auto& w : workers)
            w->thread = std::thread([this, &w = *w] { run_worker(w); });
    }

    void shutdown() noexcept
    {
        {
            std::lock_guard lock(mutex);
            if (st == state::idle) { // nothing ever ran: the queued tasks are dropped with the runtime
                counters.cancelled += counters.running;
                counters.running = 0;
                st = state::stopped;
                changed.notify_all();
                return;
            }
            if (st != state::running)
                return;
            st = state::stopping;
            shutdown_requested = std::chrono::steady_clock::now();
            changed.notify_all();
        }
        for (auto& w : workers)
            asio::post(*w->ctx, [this, &w = *w] { stop_worker(w); });
    }

    /// join(): at most one joiner at a time does the joining.
    void join()
    {
        std::lock_guard joining(join_mutex);
        std::unique_lock lock(mutex);
        if (st == state::idle || (st == state::stopped && !joined_threads)) {
            // Never started: nothing to wait for.
        } else if (!joined_threads) {
            changed.wait(lock, [&] { return st != state::running; });
            const auto bound = shutdown_requested + opts.shutdown_timeout;
            if (!changed.wait_until(lock, bound, [&] { return threads_running == 0; })) {
                counters.forced_stop = true;
                for (auto& w : workers)
                    w->ctx->stop(); // thread-safe; run() returns after the handler it is in
            }
            lock.unlock();
            for (auto& w : workers)
                if (w->thread.joinable())
                    w->thread.join();
            lock.lock();
            joined_threads = true;
            st = state::stopped;
        }
        if (auto failure = std::exchange(first_failure, nullptr))
            std::rethrow_exception(failure);
    }

    runtime_options opts;
    // Shared by every thread (see the top of the file); declared before the workers so
    // that they outlive them.
    mutable std::mutex mutex;
    std::condition_variable changed;
    std::mutex join_mutex;
    state st = state::idle;
    std::chrono::steady_clock::time_point shutdown_requested;
    std::size_t threads_running = 0;
    bool joined_threads = false;
    runtime_stats counters;
    std::exception_ptr first_failure;
    std::atomic<std::size_t> next{0};

    std::vector<std::unique_ptr<worker>> workers;
    /// SIGINT/SIGTERM, on thread 0's context (runtime_options::shutdown_on_signals).
    std::unique_ptr<asio::signal_set> signals;
};

runtime::runtime(config cfg) : runtime(std::move(cfg), runtime_options()) {}

runtime::runtime(config cfg, runtime_options opts) : impl_(std::make_unique<impl>(std::move(cfg), std::move(opts)))
{
    impl_->counters.threads = impl_->workers.size();
}

runtime::~runtime()
{
    impl_->shutdown();
    try {
        impl_->join();
    } catch (...) {
        // Documented: a failure nobody collected is dropped.
    }
}

std::size_t runtime::size() const noexcept { return impl_->workers.size(); }

boost::asio::any_io_executor runtime::executor(std::size_t i) const
{
    if (i >= size())
        throw lens::error(make_error_code(errc::invalid_argument), "runtime.executor",
                          "thread " + std::to_string(i) + " of " + std::to_string(size()));
    return impl_->workers[i]->ctx->get_executor();
}

lens::client& runtime::client(std::size_t i)
{
    if (i >= size())
        throw lens::error(make_error_code(errc::invalid_argument), "runtime.client",
                          "thread " + std::to_string(i) + " of " + std::to_string(size()));
    return *impl_->workers[i]->client;
}

std::optional<std::size_t> runtime::current_thread() const noexcept
{
    for (std::size_t i = 0; i < impl_->workers.size(); ++i)
        if (impl_->workers[i]->ctx->get_executor().running_in_this_thread())
            return i;
    return std::nullopt;
}

std::size_t runtime::next_thread() noexcept
{
    return impl_->next.fetch_add(1, std::memory_order_relaxed) % size();
}

void runtime::spawn_erased(std::size_t thread, std::unique_ptr<task_maker> make)
{
    if (thread >= size())
        throw lens::error(make_error_code(errc::invalid_argument), "runtime.spawn",
                          "thread " + std::to_string(thread) + " of " + std::to_string(size()));
    {
        std::lock_guard lock(impl_->mutex);
        if (impl_->st == impl::state::stopping || impl_->st == impl::state::stopped) {
            ++impl_->counters.refused;
            throw lens::error(make_error_code(errc::closed), "runtime.spawn",
                              "the runtime is shutting down or shut down; the task was not started");
        }
        ++impl_->counters.spawned;
        ++impl_->counters.running;
    }
    auto& w = *impl_->workers[thread];
    asio::post(*w.ctx, [self = impl_.get(), &w, make = std::move(make)]() mutable {
        self->start_task(w, std::move(make));
    });
}

void runtime::start()
{
    std::lock_guard lock(impl_->mutex);
    if (impl_->st == impl::state::running)
        return;
    if (impl_->st != impl::state::idle)
        throw lens::error(make_error_code(errc::closed), "runtime.start", "the runtime was shut down");
    impl_->start_locked();
}

void runtime::wait()
{
    impl_->refuse_own_thread("runtime.wait");
    {
        std::unique_lock lock(impl_->mutex);
        if (impl_->st == impl::state::idle)
            impl_->start_locked();
        impl_->changed.wait(lock, [&] {
            return impl_->counters.running == 0 || impl_->st != impl::state::running;
        });
    }
    impl_->shutdown();
    impl_->join();
}

void runtime::join()
{
    impl_->refuse_own_thread("runtime.join");
    impl_->join();
}

void runtime::shutdown() noexcept { impl_->shutdown(); }

void runtime::shutdown_on_signals()
{
    std::lock_guard lock(impl_->mutex);
    if (impl_->st != impl::state::idle)
        throw lens::error(make_error_code(errc::invalid_argument), "runtime.shutdown_on_signals",
                          "call it before start()");
    impl_->opts.shutdown_on_signals = true;
}

bool runtime::stopping() const noexcept
{
    std::lock_guard lock(impl_->mutex);
    return impl_->st == impl::state::stopping || impl_->st == impl::state::stopped;
}

runtime_stats runtime::stats() const noexcept
{
    std::lock_guard lock(impl_->mutex);
    return impl_->counters;
}

} // namespace lens
