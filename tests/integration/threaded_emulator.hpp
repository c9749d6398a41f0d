// tests/integration/threaded_emulator.hpp — the emulator on a thread of its own, for
// tests whose client side runs on several threads (lens::runtime).
//
// The emulator's state belongs to its thread: read its statistics and change its knobs
// through `call`, which runs a function there and waits for the result. Knobs may also
// be set in `options` before construction.
//
// `watchdog` is the multi-thread counterpart of the fixture's: when the test has not
// dismissed it within its limit, it records that and runs its action (typically
// `runtime::shutdown()`, whose join() is bounded), so a stuck test fails instead of
// hanging the suite.
#pragma once

#include "integration/fixture.hpp"

#include <lens/emulator.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

namespace lens::test {

/// An emulator serving from its own thread until destroyed.
class threaded_emulator {
public:
    explicit threaded_emulator(lens::emulator::options opts = emulator_options())
        : server_(ctx_.get_executor(), std::move(opts)),
          cfg(test_config(server_.endpoint(), server_.api_key(), server_.ca_file()))
    {
        server_.start();
        thread_ = std::thread([this] { ctx_.run(); });
    }

    ~threaded_emulator()
    {
        server_.stop(); // handed to the emulator's thread; its context then runs out of work
        thread_.join();
    }

    threaded_emulator(const threaded_emulator&) = delete;
    threaded_emulator& operator=(const threaded_emulator&) = delete;

    /// Runs `f()` on the emulator's thread and returns its result.
    template <class F>
    auto call(F f) -> decltype(f())
    {
        std::packaged_task<decltype(f())()> task(std::move(f));
        auto result = task.get_future();
        boost::asio::post(ctx_, [&task] { task(); });
        return result.get();
    }

    /// The emulator's counters, read on its thread.
    lens::emulator::stats stats()
    {
        return call([this] { return server_.statistics(); });
    }
    /// Changes the knobs on the emulator's thread.
    void set_knobs(std::function<void(lens::emulator::options&)> change)
    {
        call([&] { change(server_.knobs()); });
    }

private:
    boost::asio::io_context ctx_{1};
    lens::emulator::server server_;

public:
    /// A config for the emulator: endpoint, key, test deadlines (see test_config).
    lens::config cfg;

private:
    std::thread thread_;
};

/// Runs `action` once if not dismissed within `limit` (see the file description).
class watchdog {
public:
    watchdog(std::chrono::milliseconds limit, std::function<void()> action)
        : thread_([this, limit, action = std::move(action)] {
              std::unique_lock lock(m_);
              if (!cv_.wait_for(lock, limit, [this] { return dismissed_; })) {
                  fired_ = true;
                  lock.unlock();
                  action();
              }
          })
    {
    }
    ~watchdog() { dismiss(); }

    /// Stops watching (idempotent); waits for a running action.
    void dismiss()
    {
        {
            std::lock_guard lock(m_);
            dismissed_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable())
            thread_.join();
    }
    /// True when the limit passed before dismiss().
    bool fired() const { return fired_; }

private:
    std::mutex m_;
    std::condition_variable cv_;
    bool dismissed_ = false;
    std::atomic<bool> fired_{false};
    std::thread thread_;
};

} // namespace lens::test
