// examples/example_support.hpp — the few lines every example shares: where to
// connect, a watchdog, and an exit status a test can check.
//
// Each example is `int main(int argc, char** argv) { return example::run(argc, argv, body); }`
// where `body(example::environment&)` is a coroutine returning lens::task<void>.
//
// Where it connects:
//   (no arguments)   an in-process emulator of the Lens API on 127.0.0.1, an ephemeral
//                    port, with its built-in lenses. This is what ctest runs.
//   --real           the real Lens API: ARCHETYPE_API_KEY (required) and
//                    ARCHETYPE_API_ENDPOINT (optional) through lens::config::from_environment().
//                    Examples that need a lens then take `--lens lns-...`; other options
//                    (`--image`, `--file`, `--rtsp`...) are listed in each example's header.
//
// Exit status: 0 when everything the example expects happened; 1 when something did
// not (a failed `example::expect`, or an exception such as lens::error, printed with its
// code); 2 for a usage error; 3 when the watchdog fired: the whole run has a deadline,
// so an example can never hang, whatever the server does. The watchdog cancels the
// example's coroutine first, so sessions opened with lens::with_session or
// lens::scoped_session are still destroyed on the server.
//
// This is a header (not a .cpp) because CMake makes every examples/*.cpp an example.
#pragma once

#include <lens/client.hpp>
#include <lens/config.hpp>
#include <lens/emulator.hpp>
#include <lens/error.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace example {

/// Thrown by `expect`: the example saw something it did not expect.
struct unexpected : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// Fails the example (exit status 1) with `what` when `condition` is false.
inline void expect(bool condition, std::string_view what)
{
    if (!condition)
        throw unexpected("expected: " + std::string(what));
}

/// A 2x2 PNG (red, green, blue, grey): an image for the query examples that needs no file.
inline std::string sample_png()
{
    static const char bytes[] =
        "\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x02"
        "\x00\x00\x00\x02\x08\x02\x00\x00\x00\xfd\xd4\x9a\x73\x00\x00\x00\x13\x49\x44\x41\x54"
        "\x78\x9c\x63\xf8\xcf\xc0\xc0\x00\xc2\x0c\xff\x1b\x1a\x1a\x00\x1c\xf4\x04\x7e\x29"
        "\x80\x40\xd8\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82";
    return std::string(bytes, sizeof bytes - 1);
}

/// Where the example runs and what it was asked to do.
class environment {
public:
    environment(boost::asio::io_context& ctx, lens::config cfg, lens::emulator::server* emulator,
                std::map<std::string, std::string, std::less<>> options)
        : ctx_(ctx), cfg_(std::move(cfg)), emulator_(emulator), options_(std::move(options))
    {
    }

    boost::asio::io_context& context() const noexcept { return ctx_; }
    /// Endpoint, key and deadlines, ready for lens::client.
    const lens::config& config() const noexcept { return cfg_; }
    /// A client of the target, on the example's one thread.
    lens::client make_client() const { return lens::client(ctx_.get_executor(), cfg_); }

    /// True when running against the in-process emulator (the default, and under ctest).
    bool emulated() const noexcept { return emulator_ != nullptr; }
    /// The emulator, to set its fault knobs (only when emulated()).
    lens::emulator::server& emulator() const
    {
        if (!emulator_)
            throw std::logic_error("no emulator: running against the real API");
        return *emulator_;
    }

    /// The value of `--name VALUE`, if given.
    std::optional<std::string> option(std::string_view name) const
    {
        if (auto it = options_.find(name); it != options_.end())
            return it->second;
        return std::nullopt;
    }

    /// The lens to use: `--lens ID` when given; otherwise the emulator's built-in
    /// `emulator_lens`. Against the real API `--lens` is required.
    std::string lens(std::string_view emulator_lens) const
    {
        if (auto id = option("lens"))
            return *id;
        if (!emulated())
            throw usage_error("--lens lns-... is required with --real");
        return std::string(emulator_lens);
    }

    /// A required option for the real API, with a stand-in value under the emulator.
    std::string option_or(std::string_view name, std::string emulated_value) const
    {
        if (auto v = option(name))
            return *v;
        if (!emulated())
            throw usage_error("--" + std::string(name) + " is required with --real");
        return emulated_value;
    }

    /// A usage error: exit status 2.
    struct usage_error : std::runtime_error {
        using std::runtime_error::runtime_error;
    };

private:
    boost::asio::io_context& ctx_;
    lens::config cfg_;
    lens::emulator::server* emulator_;
    std::map<std::string, std::string, std::less<>> options_;
};

/// Runs `body(env)` (a callable returning lens::task<void>) on one thread against the
/// target the command line names, within `watchdog`; returns the exit status.
template <class Body>
int run(int argc, char** argv, Body body, std::chrono::seconds watchdog = std::chrono::seconds(30))
{
    using clock = std::chrono::steady_clock;
    bool real = false;
    std::map<std::string, std::string, std::less<>> options;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--real") {
            real = true;
        } else if (arg.starts_with("--") && i + 1 < argc) {
            options[std::string(arg.substr(2))] = argv[++i];
        } else {
            std::cerr << "usage: " << argv[0] << " [--real] [--lens ID] [--NAME VALUE]...\n"
                      << "  without --real: against an in-process emulator\n"
                      << "  with --real: ARCHETYPE_API_KEY and ARCHETYPE_API_ENDPOINT from the environment\n";
            return 2;
        }
    }

    boost::asio::io_context ctx;
    std::unique_ptr<lens::emulator::server> emulator;
    lens::config cfg;
    if (real) {
        cfg = lens::config::from_environment();
        if (cfg.api_key.empty()) {
            std::cerr << "--real needs ARCHETYPE_API_KEY in the environment\n";
            return 2;
        }
    } else {
        lens::emulator::options opts;
        opts.host = "127.0.0.1";
        opts.port = 0; // an ephemeral port: examples run in parallel under ctest
        if (const char* key = std::getenv("LENS_TEST_API_KEY"); key && *key)
            opts.api_key = key; // scripts/secret_canary.sh: a marker that must appear in no output
        emulator = std::make_unique<lens::emulator::server>(ctx.get_executor(), opts);
        emulator->start();
        cfg.endpoint = emulator->endpoint();
        cfg.api_key = emulator->api_key();
        cfg.timeout = std::chrono::seconds(10);
    }

    environment env(ctx, cfg, emulator.get(), std::move(options));
    int status = -1; // -1: still running
    auto report = [&](std::exception_ptr failure) {
        status = 0;
        if (failure) {
            try {
                std::rethrow_exception(failure);
            } catch (const lens::error& e) {
                // The message names the operation and the cause; the code is what to branch on.
                std::cerr << "lens error: " << e.what() << " [" << e.code().message() << "]\n";
                status = 1;
            } catch (const environment::usage_error& e) {
                std::cerr << "usage: " << e.what() << '\n';
                status = 2;
            } catch (const std::exception& e) {
                std::cerr << "failed: " << e.what() << '\n';
                status = 1;
            }
        }
        if (emulator)
            emulator->stop(); // ends its connections, so the context runs out of work
    };
    boost::asio::cancellation_signal cancel;
    boost::asio::co_spawn(ctx, [&]() -> lens::task<void> { co_await body(env); },
                          boost::asio::bind_cancellation_slot(cancel.slot(), report));

    // The watchdog: run in slices until the body finished and its work drained, or the
    // deadline passed. Then the body is cancelled (with_session and scoped_session still
    // destroy their sessions) and given a few seconds to unwind. After the body, lingering
    // work (a detached destroy...) gets one second.
    const auto deadline = clock::now() + watchdog;
    std::optional<clock::time_point> finished_at, cancelled_at;
    while (!ctx.stopped()) {
        ctx.run_for(std::chrono::milliseconds(50));
        const auto now = clock::now();
        if (status != -1 && !finished_at)
            finished_at = now;
        if (finished_at && now - *finished_at > std::chrono::seconds(1))
            break;
        if (status == -1 && now > deadline && !cancelled_at) {
            std::cerr << "watchdog: the example did not finish within " << watchdog.count() << " s; cancelling it\n";
            cancelled_at = now;
            cancel.emit(boost::asio::cancellation_type::terminal);
        }
        if (cancelled_at && (status != -1 || now - *cancelled_at > std::chrono::seconds(5)))
            break;
    }
    if (cancelled_at) {
        if (emulator)
            std::cerr << "watchdog: " << emulator->statistics().live_sessions << " session(s) left on the emulator\n";
        ctx.stop();
        return 3;
    }
    if (status == 0)
        std::cout << "ok\n";
    return status;
}

} // namespace example
