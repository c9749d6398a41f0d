// error_codes — branch on what went wrong: lens error codes and the server's diagnostics.
//
// Shows the failures a program meets and how to tell them apart: every lens failure is
// a boost::system::error_code of lens::error_category() (lens::errc), raised as
// lens::error whose operation(), http_status() and server_errors() say where and why,
// and lens::is_retryable(code) says whether trying again may help (lens already retried
// what it could within the call's deadline).
//
//   errc::not_found         an unknown lens, session or file (HTTP 404)
//   errc::unauthorized      a wrong API key (HTTP 401/403)
//   errc::invalid_argument  refused before sending (a file type the API does not accept)
//   errc::api_error         a 2xx reply reporting failure: no lens runner left; an input
//                           stream naming a file that does not exist
//   errc::query_timed_out   the server gave up on a model.query ("Response timed out for query")
//   errc::session_gone      the session was destroyed
//
// Every operation takes an Asio completion token; `as_tuple(use_awaitable)` completes with
// (error_code, result) instead of throwing, and a `lens::diagnostics&` before the token is
// filled with the operation, HTTP status, server errors and message on failure (and cleared
// on success), as in Boost.MySQL.
//
// Run:  build/bin/example_error_codes   (in-process emulator)
//       ARCHETYPE_API_KEY=... build/bin/example_error_codes --real --lens lns-...   (the emulator-only cases are skipped)
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/error.hpp>
#include <lens/retry.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <iostream>
#include <tuple>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr auto no_throw = boost::asio::as_tuple(boost::asio::use_awaitable);

void print(std::string_view title, const boost::system::error_code& ec, const lens::diagnostics& d)
{
    std::cout << title << "\n  code: " << ec.message() << " (" << ec.category().name() << ":" << ec.value() << ")"
              << (lens::is_retryable(ec) ? ", retryable" : ", final") << "\n  operation: " << d.operation();
    if (d.http_status())
        std::cout << ", HTTP " << d.http_status();
    std::cout << "\n  message: " << d.message() << '\n';
    for (const auto& s : d.server_errors())
        std::cout << "  server said: " << (s.code.empty() ? "" : s.code + ": ") << s.message << '\n';
}

/// One failure, checked: the example fails when the code is not the one expected.
void expect_code(std::string_view title, const boost::system::error_code& ec, lens::errc expected,
                 const lens::diagnostics& d)
{
    print(title, ec, d);
    example::expect(ec == expected, std::string(title) + ": " + lens::make_error_code(expected).message());
}

} // namespace

lens::task<void> error_codes(example::environment& env)
{
    lens::client client = env.make_client();
    lens::diagnostics d;
    boost::system::error_code ec;

    // An unknown lens.
    std::tie(ec, std::ignore) = co_await client.create_session("lns-no-such-lens", d, no_throw);
    expect_code("create a session of an unknown lens", ec, lens::errc::not_found, d);

    // A wrong key: never retried, and the key never appears in the message.
    lens::config wrong = env.config();
    wrong.api_key = "not-my-key";
    lens::client stranger(client.get_executor(), wrong);
    std::tie(ec, std::ignore) = co_await stranger.list_lenses(d, no_throw);
    expect_code("list lenses with a wrong key", ec, lens::errc::unauthorized, d);
    example::expect(d.message().find("not-my-key") == std::string::npos, "the key is not in the message");

    // Refused before anything is sent.
    std::tie(ec, std::ignore) = co_await client.upload_file("setup.exe", "MZ...", d, no_throw);
    expect_code("upload a file type the API does not take", ec, lens::errc::invalid_argument, d);

    // A 200 reply that reports failure: no lens runner left (the emulator is told to have none).
    if (env.emulated()) {
        const auto max = env.emulator().knobs().max_sessions;
        env.emulator().knobs().max_sessions = 0;
        const std::string lens_id(lens::emulator::builtin::query);
        std::tie(ec, std::ignore) = co_await client.create_session(lens_id, d, no_throw);
        env.emulator().knobs().max_sessions = max;
        expect_code("create a session when the server has no runner left", ec, lens::errc::api_error, d);
        example::expect(!d.server_errors().empty(), "the server's reason is kept");
    }

    co_await lens::with_session(client, env.lens(lens::emulator::builtin::activity_monitor),
                                [&](const lens::session_record& record) -> lens::task<void> {
        lens::session channel = co_await client.open_session(record);

        // A reply with `is_valid: false` and the server's messages.
        std::tie(ec, std::ignore) = co_await channel.set_input_stream(lens::csv_stream("no-such-file.csv"), d, no_throw);
        expect_code("input stream of a file never uploaded", ec, lens::errc::api_error, d);

        // The server gives up on a query (the emulator quickly, the real server after ~60 s).
        if (env.emulated()) {
            env.emulator().knobs().ws.query_timeout_after = 50ms;
            lens::session_record q = co_await client.create_session(std::string(lens::emulator::builtin::query));
            lens::session asking = co_await client.open_session(q);
            const auto never_answered = lens::query_request::image_qa("emulator:timeout", example::sample_png());
            std::tie(ec, std::ignore) = co_await asking.query(never_answered, d, no_throw);
            expect_code("a query the server gives up on", ec, lens::errc::query_timed_out, d);
            co_await client.destroy_session(q.session_id);
        }

        // After destroy, the channel refuses everything.
        co_await channel.destroy();
        std::tie(ec, std::ignore) = co_await channel.validate(d, no_throw);
        expect_code("validate a destroyed session", ec, lens::errc::session_gone, d);
    });

    // Success is an empty code.
    std::tie(ec, std::ignore) = co_await client.list_lenses(d, no_throw);
    std::cout << "list lenses: " << (ec ? ec.message() : "success") << '\n';
    example::expect(!ec, "success is an empty error_code");
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, error_codes);
}
