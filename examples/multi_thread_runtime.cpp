// multi_thread_runtime — many sessions spread over several threads, each pinned to one.
//
// Shows: lens::runtime (N threads, one io_context and one client each), spawn placing
// each session's coroutine on the next thread in turn, with_session destroying every
// session, Ctrl-C (SIGINT) cancelling everything gracefully, and the counters at the end.
//
// Unlike the other examples this one cannot use example::run: the runtime's threads
// replace the example's one thread, and the in-process emulator runs on a thread of
// its own. The watchdog is the runtime's own shutdown (graceful, then bounded).
//
// Run:  build/bin/example_multi_thread_runtime [--threads N] [--sessions N]   (emulator)
//       ARCHETYPE_API_KEY=... build/bin/example_multi_thread_runtime --real --lens lns-... --sessions 4
#include "example_support.hpp"

#include <lens/runtime.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <thread>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

int main(int argc, char** argv)
{
    bool real = false;
    std::map<std::string, std::string, std::less<>> args;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--real")
            real = true;
        else if (a.starts_with("--") && i + 1 < argc)
            args[std::string(a.substr(2))] = argv[++i];
        else {
            std::cerr << "usage: " << argv[0] << " [--real --lens ID] [--threads N] [--sessions N]\n";
            return 2;
        }
    }
    auto number = [&](const char* name, std::size_t fallback) {
        auto it = args.find(name);
        return it == args.end() ? fallback : std::stoul(it->second);
    };

    // The target: the real API, or an emulator serving from a thread of its own.
    lens::config cfg;
    asio::io_context emulator_ctx;
    std::unique_ptr<lens::emulator::server> emulator;
    std::thread emulator_thread;
    std::string lens_id;
    if (real) {
        cfg = lens::config::from_environment();
        if (cfg.api_key.empty() || !args.count("lens")) {
            std::cerr << "--real needs ARCHETYPE_API_KEY in the environment and --lens lns-...\n";
            return 2;
        }
        lens_id = args["lens"];
    } else {
        lens::emulator::options opts;
        if (const char* key = std::getenv("LENS_TEST_API_KEY"); key && *key)
            opts.api_key = key; // scripts/secret_canary.sh
        emulator = std::make_unique<lens::emulator::server>(emulator_ctx.get_executor(), opts);
        emulator->start();
        cfg.endpoint = emulator->endpoint();
        cfg.api_key = emulator->api_key();
        emulator_thread = std::thread([&] { emulator_ctx.run(); });
        lens_id = std::string(lens::emulator::builtin::query);
    }
    cfg.timeout = 10s;

    lens::runtime_options opts;
    opts.threads = number("threads", 4);
    opts.shutdown_timeout = 15s;
    opts.shutdown_on_signals = true; // Ctrl-C: every session is destroyed before exiting
    const std::size_t sessions = number("sessions", 40);

    int status = 0;
    {
        lens::runtime rt(cfg, opts);
        std::atomic<std::size_t> answered{0};
        std::vector<std::atomic<std::size_t>> per_thread(rt.size());
        for (std::size_t n = 0; n < sessions; ++n)
            rt.spawn([&, n](lens::client& c) -> lens::task<void> {
                // Everything here runs on one thread of the runtime: c is that thread's
                // client, and the session below never leaves it.
                co_await lens::with_session(c, lens_id, [&](const lens::session_record& s) -> lens::task<void> {
                    lens::session channel = co_await c.open_session(s);
                    auto question = lens::query_request::image_qa("What is on camera " + std::to_string(n) + "?",
                                                                  example::sample_png());
                    auto [record, answer] = co_await (channel.status() && channel.query(question));
                    (void)record;
                    if (answer.is_string())
                        ++answered;
                    ++per_thread[rt.current_thread().value_or(0)];
                });
            });

        // A watchdog: a runtime that is not done in time is shut down (gracefully first).
        std::atomic<bool> done{false};
        std::thread dog([&] {
            for (int i = 0; i < 300 && !done; ++i)
                std::this_thread::sleep_for(100ms);
            if (!done) {
                std::cerr << "watchdog: shutting the runtime down\n";
                rt.shutdown();
            }
        });
        const auto start = std::chrono::steady_clock::now();
        try {
            rt.wait(); // every task ended; rethrows the first failure
        } catch (const lens::error& e) {
            std::cerr << "lens error: " << e.what() << " [" << e.code().message() << "]\n";
            status = 1;
        }
        done = true;
        dog.join();
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);

        const auto s = rt.stats();
        std::cout << sessions << " sessions on " << rt.size() << " threads in " << ms.count() << " ms: "
                  << answered << " answered; per thread:";
        for (auto& t : per_thread)
            std::cout << ' ' << t.load();
        std::cout << "; " << s.completed << " completed, " << s.cancelled << " cancelled, " << s.failed
                  << " failed\n";
        if (status == 0 && (answered != sessions || s.completed != sessions)) {
            std::cerr << "expected: every session answered\n";
            status = s.cancelled ? 3 : 1;
        }
    }
    if (emulator) {
        if (emulator_thread.joinable()) {
            std::size_t live = 0;
            asio::post(emulator_ctx, [&] { live = emulator->statistics().live_sessions; });
            emulator->stop();
            emulator_thread.join();
            if (live != 0) {
                std::cerr << "expected: every session destroyed, " << live << " left\n";
                status = 1;
            }
        }
    }
    if (status == 0)
        std::cout << "ok\n";
    return status;
}
