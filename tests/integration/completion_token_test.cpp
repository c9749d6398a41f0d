// Every public asynchronous operation of lens takes an Asio completion token
// (lens/completion_token.hpp). Checked against the emulator, operation by operation:
// each one succeeds through `as_tuple(use_awaitable)` and fails through it with its
// diagnostics filled and no exception; then, across the set, plain callbacks,
// `deferred`, `use_future` from another thread, per-operation cancellation through the
// token path, and the default token that still throws the full lens::error.
#include "integration/fixture.hpp"

#include <lens/client.hpp>
#include <lens/diagnostics.hpp>
#include <lens/emulator.hpp>
#include <lens/event_stream.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <type_traits>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace emu = lens::emulator;
using boost::system::error_code;
using lens::errc;
using lens::task;
using lens::test::contains;
using lens::test::eventually;
using lens::test::fixture;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;

constexpr auto tuple_token = asio::as_tuple(asio::use_awaitable);

// The default token is the coroutine itself: nothing added on that path.
static_assert(
    std::is_same_v<decltype(std::declval<lens::client&>().list_lenses()), lens::task<std::vector<lens::lens_record>>>);
static_assert(std::is_same_v<decltype(std::declval<lens::client&>().list_lenses(asio::use_awaitable)),
                             lens::task<std::vector<lens::lens_record>>>);
static_assert(
    std::is_same_v<decltype(std::declval<lens::session&>().read(std::string("id"))), lens::task<lens::read_result>>);
static_assert(std::is_same_v<decltype(std::declval<lens::event_stream&>().next()),
                             lens::task<std::optional<lens::session_event>>>);
// Other arguments are never taken for tokens.
static_assert(!lens::completion_token_for<lens::call_options&, int>);
static_assert(!lens::completion_token_for<lens::diagnostics&, int>);
static_assert(!lens::completion_token_for<const char (&)[3], int>);
static_assert(lens::completion_token_for<decltype(tuple_token), void>);

// ---- values built outside coroutine bodies (g++ 12) ------------------------------

json::object sample_lens_config()
{
    json::object c;
    c["model_pipeline"] = json::array{json::object{{"processor_name", "lens_echo_processor"}}};
    c["input_streams"] = json::array{json::object{{"stream_type", "data.json"}}};
    c["output_streams"] = json::array{json::object{{"stream_type", "server_sent_events_writer"}}};
    return c;
}

json::object rename_fields(const std::string& name)
{
    json::object o;
    o["lens_name"] = name;
    return o;
}

json::object number_payload(int i)
{
    json::object o;
    o["n"] = i;
    return o;
}

json::value csv_input(const std::string& file_id)
{
    json::object config;
    config["file_id"] = file_id;
    json::object o;
    o["stream_type"] = "csv_file_reader";
    o["stream_config"] = std::move(config);
    return o;
}

std::string sample_csv()
{
    std::string csv = "timestamp,a1,a2,a3\n";
    for (int i = 0; i < 20; ++i)
        csv += std::to_string(1000 + i) + "," + std::to_string(i % 7) + ".5,1,0." + std::to_string(i % 10) + "\n";
    return csv;
}

lens::call_options within(std::chrono::milliseconds t)
{
    lens::call_options o;
    o.timeout = t;
    return o;
}

/// A file on disk for upload_file(path), removed with its directory.
struct temp_file {
    std::filesystem::path dir;
    std::filesystem::path path;

    temp_file(const std::string& name, const std::string& contents)
    {
        static std::atomic<int> counter{0};
        dir = std::filesystem::temp_directory_path() /
              ("lens-token-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
        std::filesystem::create_directories(dir);
        path = dir / name;
        std::ofstream(path, std::ios::binary) << contents;
    }
    ~temp_file()
    {
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
    }
};

/// One fixture's client and the setup the scenarios share (all through the default token).
struct world {
    fixture& f;
    lens::client c;

    explicit world(fixture& fx) : f(fx), c(fx.make_client()) {}

    /// A client whose key the emulator refuses: every REST call fails with a 401.
    lens::client refused_client()
    {
        auto cfg = f.cfg;
        cfg.api_key = lens::test::test_key("not-the-key");
        return f.make_client(cfg);
    }

    task<lens::session_record> create(std::string_view lens_id)
    {
        co_return co_await c.create_session(std::string(lens_id));
    }

    task<lens::session> open(std::string_view lens_id)
    {
        auto record = co_await create(lens_id);
        co_return co_await c.open_session(record);
    }

    task<lens::lens_record> registered(std::string name)
    {
        co_return co_await c.register_lens(std::move(name), sample_lens_config());
    }

    /// An activity-monitor session with a stream connected, and its input set: events flow.
    task<lens::event_stream> flowing_stream()
    {
        auto record = co_await create(emu::builtin::activity_monitor);
        auto stream = c.events(record.session_id);
        co_await stream.connect();
        co_await c.upload_file(std::string("stream.csv"), sample_csv());
        co_await c.process_event(record.session_id, "input_stream.set", csv_input("stream.csv"));
        co_return stream;
    }
};

/// The checks every failure through a token passes: the code, the diagnostics naming
/// the operation (also in their message), and nothing thrown (else the test fails).
void check_failure(const error_code& ec, const lens::diagnostics& diag, errc expected, std::string_view operation)
{
    CHECK_MESSAGE(ec == lens::make_error_code(expected), "got " << ec.message() << ": " << diag.message());
    CHECK(diag.operation() == operation);
    CHECK(contains(diag.message(), operation));
}

using scenario = task<void> (*)(world&);

struct row {
    const char* name;
    scenario run;
};

/// Runs every row in its own fixture, one doctest subcase each.
void run_rows(const std::vector<row>& rows)
{
    for (const auto& r : rows) {
        SUBCASE(r.name)
        {
            fixture f;
            f.run([&]() -> task<void> {
                world w(f);
                co_await r.run(w);
            });
        }
    }
}

// ---- success of every operation through as_tuple(use_awaitable) --------------------

std::vector<row> client_successes()
{
    return {
        {"client open_session",
         [](world& w) -> task<void> {
             auto record = co_await w.create(emu::builtin::mailbox);
             auto [ec, s] = co_await w.c.open_session(record, tuple_token);
             CHECK_FALSE(ec);
             CHECK(s.is_connected());
             lens::session_options o;
             o.client_id = "with-options";
             auto [ec2, s2] = co_await w.c.open_session(record, o, tuple_token);
             CHECK_FALSE(ec2);
             CHECK(s2.client_id() == "with-options");
         }},
        {"client lens_info",
         [](world& w) -> task<void> {
             auto [ec, v] = co_await w.c.lens_info(tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.is_object());
         }},
        {"client list_lenses",
         [](world& w) -> task<void> {
             auto [ec, v] = co_await w.c.list_lenses(tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.size() == 3);
         }},
        {"client get_lens",
         [](world& w) -> task<void> {
             auto [ec, v] = co_await w.c.get_lens(std::string(emu::builtin::mailbox), tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.lens_id == emu::builtin::mailbox);
         }},
        {"client register_lens",
         [](world& w) -> task<void> {
             auto [ec, v] = co_await w.c.register_lens("token lens", sample_lens_config(), tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.lens_name == "token lens");
             CHECK(v.lens_id.starts_with("lns-"));
         }},
        {"client clone_lens",
         [](world& w) -> task<void> {
             auto original = co_await w.registered("original");
             auto [ec, v] = co_await w.c.clone_lens(original.lens_id, tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.lens_id.starts_with("lns-"));
             CHECK(v.lens_id != original.lens_id);
         }},
        {"client modify_lens",
         [](world& w) -> task<void> {
             auto original = co_await w.registered("before");
             auto [ec, v] = co_await w.c.modify_lens(original.lens_id, rename_fields("after"), tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.lens_name == "after");
         }},
        {"client delete_lens",
         [](world& w) -> task<void> {
             auto original = co_await w.registered("doomed");
             auto [ec] = co_await w.c.delete_lens(original.lens_id, tuple_token);
             CHECK_FALSE(ec);
             CHECK((co_await w.c.list_lenses()).size() == 3);
         }},
        {"client sessions_info",
         [](world& w) -> task<void> {
             auto [ec, v] = co_await w.c.sessions_info(tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.is_object());
         }},
        {"client list_sessions",
         [](world& w) -> task<void> {
             auto record = co_await w.create(emu::builtin::mailbox);
             auto [ec, v] = co_await w.c.list_sessions(tuple_token);
             CHECK_FALSE(ec);
             REQUIRE(v.size() == 1);
             CHECK(v[0].session_id == record.session_id);
         }},
        {"client get_session",
         [](world& w) -> task<void> {
             auto record = co_await w.create(emu::builtin::mailbox);
             auto [ec, v] = co_await w.c.get_session(record.session_id, tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.session_id == record.session_id);
         }},
        {"client create_session",
         [](world& w) -> task<void> {
             auto [ec, v] = co_await w.c.create_session(std::string(emu::builtin::mailbox), tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.session_id.starts_with("lsn-"));
             CHECK(w.f.stats().live_sessions == 1);
         }},
        {"client destroy_session",
         [](world& w) -> task<void> {
             auto record = co_await w.create(emu::builtin::mailbox);
             auto [ec, v] = co_await w.c.destroy_session(record.session_id, tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.status == lens::session_status::stale);
             CHECK(w.f.stats().live_sessions == 0);
         }},
        {"client process_event",
         [](world& w) -> task<void> {
             auto record = co_await w.create(emu::builtin::mailbox);
             auto [ec, v] = co_await w.c.process_event(record.session_id, "session.validate", nullptr, tuple_token);
             CHECK_FALSE(ec);
             CHECK(contains(json::serialize(v), "\"is_valid\":true"));
         }},
        {"client upload_file from a path",
         [](world& w) -> task<void> {
             temp_file file("from_disk.csv", sample_csv());
             auto [ec, v] = co_await w.c.upload_file(file.path, tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.file_id == "from_disk.csv");
         }},
        {"client upload_file from memory",
         [](world& w) -> task<void> {
             auto [ec, v] = co_await w.c.upload_file(std::string("memory.csv"), sample_csv(), tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.file_id == "memory.csv");
         }},
        {"client upload_file_base64",
         [](world& w) -> task<void> {
             auto [ec, v] = co_await w.c.upload_file_base64(std::string("encoded.csv"), sample_csv(), tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.file_id == "encoded.csv");
             CHECK(co_await w.c.download_file("encoded.csv") == sample_csv());
         }},
        {"client files_info",
         [](world& w) -> task<void> {
             auto [ec, v] = co_await w.c.files_info(tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.is_object());
         }},
        {"client list_files",
         [](world& w) -> task<void> {
             co_await w.c.upload_file(std::string("listed.csv"), sample_csv());
             auto [ec, v] = co_await w.c.list_files(tuple_token);
             CHECK_FALSE(ec);
             REQUIRE(v.size() == 1);
             CHECK(v[0].file_id == "listed.csv");
         }},
        {"client get_file",
         [](world& w) -> task<void> {
             co_await w.c.upload_file(std::string("meta.csv"), sample_csv());
             auto [ec, v] = co_await w.c.get_file("meta.csv", tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.file_id == "meta.csv");
         }},
        {"client download_file",
         [](world& w) -> task<void> {
             co_await w.c.upload_file(std::string("down.csv"), sample_csv());
             auto [ec, v] = co_await w.c.download_file("down.csv", tuple_token);
             CHECK_FALSE(ec);
             CHECK(v == sample_csv());
         }},
        {"client upload_file from a path with transfer options",
         [](world& w) -> task<void> {
             temp_file file("streamed.csv", sample_csv());
             lens::transfer_options opts;
             auto [ec, v] = co_await w.c.upload_file(file.path, opts, tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.file_id == "streamed.csv");
         }},
        {"client download_file_to",
         [](world& w) -> task<void> {
             co_await w.c.upload_file(std::string("to_disk.csv"), sample_csv());
             temp_file file("placeholder.csv", "");
             auto [ec, n] = co_await w.c.download_file_to("to_disk.csv", file.dir / "copy.csv", tuple_token);
             CHECK_FALSE(ec);
             CHECK(n == sample_csv().size());
             CHECK(std::filesystem::file_size(file.dir / "copy.csv") == sample_csv().size());
         }},
        {"client download_file_to with transfer options",
         [](world& w) -> task<void> {
             co_await w.c.upload_file(std::string("to_disk.csv"), sample_csv());
             temp_file file("placeholder.csv", "");
             lens::transfer_options opts;
             auto [ec, n] = co_await w.c.download_file_to("to_disk.csv", file.dir / "copy.csv", opts, tuple_token);
             CHECK_FALSE(ec);
             CHECK(n == sample_csv().size());
         }},
        {"client download_file_to_sink",
         [](world& w) -> task<void> {
             co_await w.c.upload_file(std::string("to_sink.csv"), sample_csv());
             std::string got;
             lens::transfer_options opts;
             auto [ec, n] = co_await w.c.download_file_to_sink(
                 "to_sink.csv", [&got](std::string_view chunk) { got += chunk; }, opts, tuple_token);
             CHECK_FALSE(ec);
             CHECK(n == sample_csv().size());
             CHECK(got == sample_csv());
         }},
        {"client delete_file",
         [](world& w) -> task<void> {
             co_await w.c.upload_file(std::string("gone.csv"), sample_csv());
             auto [ec] = co_await w.c.delete_file("gone.csv", tuple_token);
             CHECK_FALSE(ec);
             CHECK((co_await w.c.list_files()).empty());
         }},
    };
}

std::vector<row> session_successes()
{
    return {
        {"session open with a record and options",
         [](world& w) -> task<void> {
             auto record = co_await w.create(emu::builtin::mailbox);
             lens::session_options o;
             o.client_id = "opened";
             auto [ec, s] = co_await lens::session::open(w.f.cfg, record, o, tuple_token);
             CHECK_FALSE(ec);
             CHECK(s.is_connected());
             CHECK(s.client_id() == "opened");
         }},
        {"session open with an endpoint and options",
         [](world& w) -> task<void> {
             auto record = co_await w.create(emu::builtin::mailbox);
             lens::session_options o;
             auto [ec, s] = co_await lens::session::open(w.f.cfg, record.session_endpoint, o, tuple_token);
             CHECK_FALSE(ec);
             CHECK(s.is_connected());
         }},
        {"session open with a record",
         [](world& w) -> task<void> {
             auto record = co_await w.create(emu::builtin::mailbox);
             auto [ec, s] = co_await lens::session::open(w.f.cfg, record, tuple_token);
             CHECK_FALSE(ec);
             CHECK(s.is_connected());
         }},
        {"session open with an endpoint",
         [](world& w) -> task<void> {
             auto record = co_await w.create(emu::builtin::mailbox);
             auto [ec, s] = co_await lens::session::open(w.f.cfg, record.session_endpoint, tuple_token);
             CHECK_FALSE(ec);
             CHECK(s.is_connected());
         }},
        {"session status",
         [](world& w) -> task<void> {
             auto s = co_await w.open(emu::builtin::mailbox);
             auto [ec, v] = co_await s.status(tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.status == lens::session_status::running);
             auto [ec2, v2] = co_await s.status(within(5s), tuple_token);
             CHECK_FALSE(ec2);
             CHECK(v2.session_id == v.session_id);
         }},
        {"session validate",
         [](world& w) -> task<void> {
             auto s = co_await w.open(emu::builtin::mailbox);
             auto [ec, v] = co_await s.validate(tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.is_valid);
         }},
        {"session read",
         [](world& w) -> task<void> {
             auto s = co_await w.open(emu::builtin::mailbox);
             auto [ec, v] = co_await s.read(tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.client_id == s.client_id());
             CHECK(!v.messages.empty());
         }},
        {"session read with a client id",
         [](world& w) -> task<void> {
             auto s = co_await w.open(emu::builtin::mailbox);
             auto [ec, v] = co_await s.read("reader-a", tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.client_id == "reader-a");
             auto [ec2, v2] = co_await s.read("reader-a", within(5s), tuple_token);
             CHECK_FALSE(ec2);
             CHECK(v2.messages.empty()); // the cursor moved
         }},
        {"session destroy",
         [](world& w) -> task<void> {
             auto s = co_await w.open(emu::builtin::mailbox);
             auto [ec, v] = co_await s.destroy(tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.is_object());
             CHECK(w.f.stats().live_sessions == 0);
         }},
        {"session set_input_stream",
         [](world& w) -> task<void> {
             auto s = co_await w.open(emu::builtin::mailbox);
             co_await w.c.upload_file(std::string("input.csv"), sample_csv());
             auto [ec, v] = co_await s.set_input_stream(lens::csv_stream("input.csv"), tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.as_object().at("type") == "input_stream.set.response");
         }},
        {"session query",
         [](world& w) -> task<void> {
             auto s = co_await w.open(emu::builtin::query);
             auto q = lens::query_request::image_qa("what is it", "image-bytes");
             auto [ec, v] = co_await s.query(q, tuple_token);
             CHECK_FALSE(ec);
             CHECK(v == emu::expected_query_answer(q.template_name, q.focus, "image-bytes"));
         }},
        {"session update",
         [](world& w) -> task<void> {
             auto s = co_await w.open(emu::builtin::mailbox);
             auto [ec, v] = co_await s.update(number_payload(7), tuple_token);
             CHECK_FALSE(ec);
             CHECK(v.is_object());
         }},
        {"session heartbeat",
         [](world& w) -> task<void> {
             auto s = co_await w.open(emu::builtin::mailbox);
             auto [ec] = co_await s.heartbeat(tuple_token);
             CHECK_FALSE(ec);
         }},
        {"session call",
         [](world& w) -> task<void> {
             auto s = co_await w.open(emu::builtin::mailbox);
             auto [ec1, v1] = co_await s.call("session.validate", tuple_token);
             CHECK_FALSE(ec1);
             CHECK(v1.as_object().at("type") == "session.validate.response");
             auto [ec2, v2] = co_await s.call("session.validate", json::value(nullptr), tuple_token);
             CHECK_FALSE(ec2);
             CHECK(v2.as_object().at("type") == "session.validate.response");
             auto [ec3, v3] = co_await s.call("session.validate", json::value(nullptr), within(5s), tuple_token);
             CHECK_FALSE(ec3);
             CHECK(v3.as_object().at("type") == "session.validate.response");
         }},
        {"session receive",
         [](world& w) -> task<void> {
             auto s = co_await w.open(emu::builtin::mailbox);
             auto [ec, v] = co_await s.receive(5ms, tuple_token);
             CHECK_FALSE(ec);
             CHECK_FALSE(v); // nothing unsolicited: the wait timed out
         }},
    };
}

std::vector<row> other_successes()
{
    return {
        {"event_stream connect",
         [](world& w) -> task<void> {
             auto record = co_await w.create(emu::builtin::activity_monitor);
             auto stream = w.c.events(record.session_id);
             auto [ec] = co_await stream.connect(tuple_token);
             CHECK_FALSE(ec);
             CHECK(stream.statistics().connections == 1);
         }},
        {"event_stream next",
         [](world& w) -> task<void> {
             auto stream = co_await w.flowing_stream();
             auto [ec, ev] = co_await stream.next(tuple_token);
             CHECK_FALSE(ec);
             REQUIRE(ev);
             CHECK(ev->kind() == lens::event_kind::stream_start);
         }},
        {"scoped_session create",
         [](world& w) -> task<void> {
             auto [ec, s] = co_await lens::scoped_session::create(w.c, std::string(emu::builtin::mailbox), tuple_token);
             CHECK_FALSE(ec);
             CHECK(s.id().starts_with("lsn-"));
             CHECK(w.f.stats().live_sessions == 1);
             co_await s.destroy();
         }},
        {"scoped_session destroy",
         [](world& w) -> task<void> {
             auto s = co_await lens::scoped_session::create(w.c, std::string(emu::builtin::mailbox));
             auto [ec] = co_await s.destroy(tuple_token);
             CHECK_FALSE(ec);
             CHECK(w.f.stats().live_sessions == 0);
             CHECK(s.id().starts_with("lsn-"));              // the record stays readable
             auto [again] = co_await s.destroy(tuple_token); // idempotent
             CHECK_FALSE(again);
         }},
    };
}

// ---- failure of every operation through as_tuple + diagnostics ---------------------

/// A client operation made with the refused key: `operation` is what its diagnostics name.
struct refused_row {
    const char* name;
    const char* operation;
    task<error_code> (*run)(world&, lens::client&, lens::diagnostics&);
};

std::vector<refused_row> refused_rows()
{
    using lens::client;
    using lens::diagnostics;
    return {
        {"lens_info", "lens/info",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.lens_info(d, tuple_token);
             CHECK(v.is_null());
             co_return ec;
         }},
        {"list_lenses", "lens/metadata",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.list_lenses(d, tuple_token);
             CHECK(v.empty());
             co_return ec;
         }},
        {"get_lens", "lens/metadata",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.get_lens(std::string(emu::builtin::mailbox), d, tuple_token);
             CHECK(v.lens_id.empty());
             co_return ec;
         }},
        {"register_lens", "lens/register",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.register_lens("refused", sample_lens_config(), d, tuple_token);
             co_return ec;
         }},
        {"clone_lens", "lens/clone",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.clone_lens(std::string(emu::builtin::mailbox), d, tuple_token);
             co_return ec;
         }},
        {"modify_lens", "lens/modify",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.modify_lens("lns-x", rename_fields("x"), d, tuple_token);
             co_return ec;
         }},
        {"delete_lens", "lens/delete",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec] = co_await c.delete_lens("lns-x", d, tuple_token);
             co_return ec;
         }},
        {"sessions_info", "sessions/info",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.sessions_info(d, tuple_token);
             co_return ec;
         }},
        {"list_sessions", "sessions/metadata",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.list_sessions(d, tuple_token);
             co_return ec;
         }},
        {"get_session", "sessions/metadata",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.get_session("lsn-x", d, tuple_token);
             co_return ec;
         }},
        {"create_session", "sessions/create",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.create_session(std::string(emu::builtin::mailbox), d, tuple_token);
             co_return ec;
         }},
        {"destroy_session", "sessions/destroy",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.destroy_session("lsn-x", d, tuple_token);
             co_return ec;
         }},
        {"process_event", "sessions/events/process",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.process_event("lsn-x", "session.status", nullptr, d, tuple_token);
             co_return ec;
         }},
        {"upload_file from a path", "files/upload",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             temp_file file("refused.csv", sample_csv());
             auto [ec, v] = co_await c.upload_file(file.path, d, tuple_token);
             co_return ec;
         }},
        {"upload_file from a path with transfer options", "files/upload",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             temp_file file("refused.csv", sample_csv());
             lens::transfer_options opts;
             auto [ec, v] = co_await c.upload_file(file.path, opts, d, tuple_token);
             co_return ec;
         }},
        {"download_file_to", "files/download",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             temp_file file("placeholder.csv", "");
             auto [ec, n] = co_await c.download_file_to("x.csv", file.dir / "x.csv", d, tuple_token);
             CHECK(n == 0);
             CHECK_FALSE(std::filesystem::exists(file.dir / "x.csv.part"));
             co_return ec;
         }},
        {"download_file_to with transfer options", "files/download",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             temp_file file("placeholder.csv", "");
             lens::transfer_options opts;
             auto [ec, n] = co_await c.download_file_to("x.csv", file.dir / "x.csv", opts, d, tuple_token);
             co_return ec;
         }},
        {"download_file_to_sink", "files/download",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             lens::transfer_options opts;
             auto [ec, n] = co_await c.download_file_to_sink("x.csv", [](std::string_view) {}, opts, d, tuple_token);
             co_return ec;
         }},
        {"upload_file from memory", "files/upload",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.upload_file(std::string("refused.csv"), sample_csv(), d, tuple_token);
             co_return ec;
         }},
        {"upload_file_base64", "files/upload-base64",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.upload_file_base64(std::string("refused.csv"), sample_csv(), d, tuple_token);
             co_return ec;
         }},
        {"files_info", "files/info",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.files_info(d, tuple_token);
             co_return ec;
         }},
        {"list_files", "files/metadata",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.list_files(d, tuple_token);
             co_return ec;
         }},
        {"get_file", "files/metadata",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.get_file("x.csv", d, tuple_token);
             co_return ec;
         }},
        {"download_file", "files/download",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await c.download_file("x.csv", d, tuple_token);
             CHECK(v.empty());
             co_return ec;
         }},
        {"delete_file", "files/delete",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec] = co_await c.delete_file("x.csv", d, tuple_token);
             co_return ec;
         }},
        {"scoped_session create", "sessions/create",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             auto [ec, s] =
                 co_await lens::scoped_session::create(c, std::string(emu::builtin::mailbox), d, tuple_token);
             CHECK(s.id().empty()); // an empty scoped_session that owns nothing
             co_return ec;
         }},
        {"scoped_session destroy", "sessions/destroy",
         [](world&, client& c, diagnostics& d) -> task<error_code> {
             lens::session_record record;
             record.session_id = "lsn-x";
             lens::scoped_session s(c, record);
             auto [ec] = co_await s.destroy(d, tuple_token);
             co_return ec;
         }},
    };
}

/// A session operation on a moved-from session: errc::closed naming `operation`.
struct closed_row {
    const char* name;
    const char* operation;
    task<error_code> (*run)(lens::session&, lens::diagnostics&);
};

std::vector<closed_row> closed_rows()
{
    using lens::diagnostics;
    using lens::session;
    return {
        {"status", "session.status",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.status(d, tuple_token);
             co_return ec;
         }},
        {"status with options", "session.status",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.status(within(1s), d, tuple_token);
             co_return ec;
         }},
        {"validate", "session.validate",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.validate(d, tuple_token);
             co_return ec;
         }},
        {"read", "session.read",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.read(d, tuple_token);
             co_return ec;
         }},
        {"read with a client id", "session.read",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.read("other", d, tuple_token);
             co_return ec;
         }},
        {"destroy", "session.destroy",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.destroy(d, tuple_token);
             co_return ec;
         }},
        {"set_input_stream", "input_stream.set",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.set_input_stream(lens::csv_stream("file"), d, tuple_token);
             co_return ec;
         }},
        {"query", "model.query",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.query(lens::query_request::image_qa("q", "img"), d, tuple_token);
             co_return ec;
         }},
        {"update", "session.update",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.update(number_payload(1), d, tuple_token);
             co_return ec;
         }},
        {"heartbeat", "session.heartbeat",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec] = co_await s.heartbeat(d, tuple_token);
             co_return ec;
         }},
        {"call", "session.validate",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.call("session.validate", d, tuple_token);
             co_return ec;
         }},
        {"call with data", "session.validate",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.call("session.validate", json::value(nullptr), d, tuple_token);
             co_return ec;
         }},
        {"call with data and options", "session.validate",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.call("session.validate", json::value(nullptr), within(1s), d, tuple_token);
             co_return ec;
         }},
        {"receive", "session.receive",
         [](session& s, diagnostics& d) -> task<error_code> {
             auto [ec, v] = co_await s.receive(10ms, d, tuple_token);
             co_return ec;
         }},
    };
}

} // namespace

TEST_CASE("completion tokens: every client operation succeeds through as_tuple(use_awaitable)")
{
    run_rows(client_successes());
}

TEST_CASE("completion tokens: every session operation succeeds through as_tuple(use_awaitable)")
{
    run_rows(session_successes());
}

TEST_CASE("completion tokens: event_stream and scoped_session operations succeed through as_tuple(use_awaitable)")
{
    run_rows(other_successes());
}

TEST_CASE("completion tokens: every client operation refused with 401 - error code and diagnostics, no exception")
{
    for (const auto& r : refused_rows()) {
        SUBCASE(r.name)
        {
            fixture f;
            f.run([&]() -> task<void> {
                world w(f);
                auto refused = w.refused_client();
                lens::diagnostics diag;
                const auto ec = co_await r.run(w, refused, diag);
                check_failure(ec, diag, errc::unauthorized, r.operation);
                CHECK(diag.http_status() == 401);
                REQUIRE(diag.server_errors().size() == 1);
                CHECK(diag.server_errors()[0].code == "unauthorized");
                CHECK(diag.server_errors()[0].message == "Invalid or missing API key");
                CHECK_FALSE(contains(diag.message(), lens::test::test_key("not-the-key"))); // never the key
            });
        }
    }
}

TEST_CASE("completion tokens: every session operation on a moved-from session completes with closed")
{
    for (const auto& r : closed_rows()) {
        SUBCASE(r.name)
        {
            fixture f;
            f.run([&]() -> task<void> {
                world w(f);
                auto s = co_await w.open(emu::builtin::mailbox);
                lens::session moved = std::move(s);
                lens::diagnostics diag;
                const auto ec = co_await r.run(s, diag);
                check_failure(ec, diag, errc::closed, r.operation);
                CHECK(contains(diag.message(), "moved-from session"));
                CHECK(moved.is_connected());
            });
        }
    }
}

TEST_CASE("completion tokens: failures with their own causes - not_found, a 400 with server errors, a local refusal")
{
    fixture f;
    f.run([&]() -> task<void> {
        world w(f);
        lens::diagnostics diag;

        // The brief's example: an unknown session id.
        auto [missing, record] = co_await w.c.get_session("lsn-unknown", diag, tuple_token);
        check_failure(missing, diag, errc::not_found, "sessions/metadata");
        CHECK(contains(diag.message(), "lsn-unknown"));
        CHECK(record.session_id.empty());

        // Success clears what the last failure left.
        auto [fine, lenses] = co_await w.c.list_lenses(diag, tuple_token);
        CHECK_FALSE(fine);
        CHECK(lenses.size() == 3);
        CHECK(diag.operation().empty());
        CHECK(diag.message().empty());
        CHECK(diag.http_status() == 0);

        // A built-in lens refuses modification: 400, and the server's own errors.
        auto [refused, unchanged] =
            co_await w.c.modify_lens(std::string(emu::builtin::query), rename_fields("mine"), diag, tuple_token);
        check_failure(refused, diag, errc::http_error, "lens/modify");
        CHECK(diag.http_status() == 400);
        CHECK_FALSE(diag.server_errors().empty());
        CHECK(contains(diag.message(), "cannot be modified"));

        // Refused before anything is sent (the initiating function threw): the same path.
        const auto requests = w.f.stats().http_requests;
        auto [local, file] = co_await w.c.upload_file(std::string("tool.exe"), std::string("MZ"), diag, tuple_token);
        check_failure(local, diag, errc::invalid_argument, "files/upload");
        CHECK(contains(diag.message(), "tool.exe"));
        CHECK(w.f.stats().http_requests == requests);

        // A moved-from client: closed, reported by the token like any failure.
        lens::client gone = w.c;
        lens::client taken = std::move(gone);
        auto [closed, none] = co_await gone.list_sessions(diag, tuple_token);
        check_failure(closed, diag, errc::closed, "sessions/metadata");
        auto [closed_open, no_session] = co_await gone.open_session(lens::session_record(), diag, tuple_token);
        CHECK(closed_open == errc::closed);
        CHECK(diag.operation() == "session.open");
        CHECK_FALSE(no_session.is_connected());
    });
}

TEST_CASE("completion tokens: session open, a destroyed session, event_stream and scoped_session failures")
{
    fixture f;
    f.run([&]() -> task<void> {
        world w(f);
        lens::diagnostics diag;
        auto s = co_await w.open(emu::builtin::mailbox);
        const auto record = co_await s.status();
        co_await s.destroy();

        // The server-side session is gone: requests fail with session_gone...
        auto [gone, nothing] = co_await s.status(diag, tuple_token);
        CHECK(gone == errc::session_gone);
        CHECK(diag.operation() == "session.status");

        // ... and a new channel is refused (the 404 upgrade), by every open overload.
        lens::session_options o;
        auto [e1, s1] = co_await lens::session::open(w.f.cfg, record, o, diag, tuple_token);
        check_failure(e1, diag, errc::not_found, "session.open");
        CHECK_FALSE(s1.is_connected());
        auto [e2, s2] = co_await lens::session::open(w.f.cfg, record.session_endpoint, o, diag, tuple_token);
        check_failure(e2, diag, errc::not_found, "session.open");
        auto [e3, s3] = co_await lens::session::open(w.f.cfg, record, diag, tuple_token);
        check_failure(e3, diag, errc::not_found, "session.open");
        auto [e4, s4] = co_await lens::session::open(w.f.cfg, record.session_endpoint, diag, tuple_token);
        check_failure(e4, diag, errc::not_found, "session.open");
        auto [e5, s5] = co_await w.c.open_session(record, o, diag, tuple_token);
        check_failure(e5, diag, errc::not_found, "session.open");
        auto [e6, s6] = co_await w.c.open_session(record, diag, tuple_token);
        check_failure(e6, diag, errc::not_found, "session.open");

        // An event stream of an unknown session: connect and next fail alike.
        auto stream = w.c.events("lsn-unknown");
        auto [e7] = co_await stream.connect(diag, tuple_token);
        check_failure(e7, diag, errc::not_found, "events");
        auto other = w.c.events("lsn-unknown");
        auto [e8, ev] = co_await other.next(diag, tuple_token);
        check_failure(e8, diag, errc::not_found, "events");
        CHECK_FALSE(ev);

        // scoped_session of an unknown lens.
        auto [e9, scoped] = co_await lens::scoped_session::create(w.c, "lns-unknown", diag, tuple_token);
        CHECK(e9);
        CHECK(diag.operation() == "sessions/create");
        CHECK(scoped.id().empty());
        CHECK(w.f.stats().live_sessions == 0);
    });
}

TEST_CASE("completion tokens: the default token still throws lens::error with its diagnostics")
{
    fixture f;
    f.run([&]() -> task<void> {
        world w(f);
        auto refused = w.refused_client();
        for (int explicit_token = 0; explicit_token < 2; ++explicit_token) {
            bool thrown = false;
            try {
                if (explicit_token)
                    co_await refused.list_lenses(asio::use_awaitable);
                else
                    co_await refused.list_lenses();
            } catch (const lens::error& e) {
                thrown = true;
                CHECK(e.code() == errc::unauthorized);
                CHECK(e.operation() == "lens/metadata");
                CHECK(e.http_status() == 401);
                REQUIRE(e.server_errors().size() == 1);
                CHECK(e.server_errors()[0].code == "unauthorized");
                // The diagnostics made from it say the same.
                lens::diagnostics d(e);
                CHECK(d.operation() == e.operation());
                CHECK(d.message() == e.what());
                d.clear();
                CHECK(d.message().empty());
            }
            CHECK(thrown);
        }

        // With diagnostics and use_awaitable: a system_error of the code, details in diag.
        lens::diagnostics diag;
        bool thrown = false;
        try {
            co_await w.c.get_session("lsn-unknown", diag);
        } catch (const lens::error&) {
            FAIL("expected a plain system_error");
        } catch (const boost::system::system_error& e) {
            thrown = true;
            CHECK(e.code() == errc::not_found);
        }
        CHECK(thrown);
        CHECK(diag.operation() == "sessions/metadata");
    });
}

TEST_CASE("completion tokens: plain callbacks, on the object's executor or the one bound to them")
{
    fixture f;
    f.run([&]() -> task<void> {
        world w(f);
        const auto io_thread = std::this_thread::get_id();

        // A bare callback runs on the client's executor (this thread).
        std::optional<error_code> listed;
        std::size_t lenses = 0;
        std::thread::id ran_on;
        w.c.list_lenses([&](error_code ec, std::vector<lens::lens_record> v) {
            listed = ec;
            lenses = v.size();
            ran_on = std::this_thread::get_id();
        });
        CHECK(co_await eventually([&] { return listed.has_value(); }));
        CHECK_FALSE(*listed);
        CHECK(lenses == 3);
        CHECK(ran_on == io_thread);

        // A failing one gets the code and the empty value; diagnostics alongside.
        lens::diagnostics diag;
        std::optional<error_code> failed;
        w.c.get_session("lsn-unknown", diag, [&](error_code ec, lens::session_record r) {
            failed = ec;
            CHECK(r.session_id.empty());
        });
        CHECK(co_await eventually([&] { return failed.has_value(); }));
        CHECK(*failed == errc::not_found);
        CHECK(diag.operation() == "sessions/metadata");

        // session::open has no object: its session lives on the handler's executor...
        auto record = co_await w.create(emu::builtin::mailbox);
        std::optional<lens::session> opened;
        auto ex = co_await asio::this_coro::executor;
        lens::session::open(w.f.cfg, record, asio::bind_executor(ex, [&](error_code ec, lens::session s) {
                                CHECK_FALSE(ec);
                                opened.emplace(std::move(s));
                            }));
        CHECK(co_await eventually([&] { return opened.has_value(); }));
        REQUIRE(opened);
        CHECK(opened->is_connected());
        std::optional<error_code> heartbeat;
        opened->heartbeat([&](error_code ec) { heartbeat = ec; });
        CHECK(co_await eventually([&] { return heartbeat.has_value(); }));
        CHECK_FALSE(*heartbeat);

        // ... so a handler without one is refused rather than run on Asio's thread pool.
        // (That handler runs on Asio's system context, hence the promise.)
        std::promise<std::pair<error_code, bool>> refused;
        auto answer = refused.get_future();
        lens::session::open(w.f.cfg, record, [&](error_code ec, lens::session s) {
            refused.set_value(std::make_pair(ec, s.is_connected()));
        });
        CHECK(co_await eventually([&] { return answer.wait_for(0s) == std::future_status::ready; }));
        const auto [refusal, connected] = answer.get();
        CHECK(refusal == errc::invalid_argument);
        CHECK_FALSE(connected);
    });
}

TEST_CASE("completion tokens: deferred - nothing happens until awaited, arguments are copied")
{
    fixture f;
    f.run([&]() -> task<void> {
        world w(f);
        const auto before = w.f.stats().http_requests;
        auto op = w.c.create_session(std::string(emu::builtin::mailbox), asio::deferred);
        CHECK(w.f.stats().http_requests == before); // lazy
        auto record = co_await std::move(op);
        CHECK(record.session_id.starts_with("lsn-"));
        CHECK(w.f.stats().live_sessions == 1);

        // A failure awaited through deferred throws the code (details in the diagnostics).
        lens::diagnostics diag;
        bool thrown = false;
        try {
            co_await w.c.get_session("lsn-unknown", diag, asio::deferred);
        } catch (const boost::system::system_error& e) {
            thrown = true;
            CHECK(e.code() == errc::not_found);
        }
        CHECK(thrown);
        CHECK(diag.operation() == "sessions/metadata");

        // session::open's arguments (taken by reference) are copied: gone before it runs.
        std::optional<lens::config> cfg(w.f.cfg);
        std::optional<lens::session_record> held(record);
        auto opening = lens::session::open(*cfg, *held, asio::deferred);
        cfg.reset();
        held.reset();
        auto s = co_await std::move(opening);
        CHECK(s.is_connected());
        CHECK((co_await s.status(asio::deferred)).session_id == record.session_id);

        // A scoped_session destroyed through a deferred operation that never runs is still
        // destroyed (detached) when the operation is dropped.
        {
            auto scoped = co_await lens::scoped_session::create(w.c, std::string(emu::builtin::mailbox));
            CHECK(w.f.stats().live_sessions == 2);
            auto dropped = scoped.destroy(asio::deferred);
        }
        CHECK(co_await eventually([&] { return w.f.stats().live_sessions == 1; }));
    });
}

TEST_CASE("completion tokens: use_future from another thread")
{
    fixture f;
    f.run([&]() -> task<void> {
        world w(f);
        std::atomic<bool> finished{false};
        std::size_t lenses = 0;
        std::optional<error_code> missing;
        std::thread other([&] {
            // The operations are started on the client's thread (Asio objects are used from
            // one thread); their futures are waited for here.
            auto listed = asio::post(w.f.ctx, asio::use_future([&] { return w.c.list_lenses(asio::use_future); }));
            auto unknown =
                asio::post(w.f.ctx, asio::use_future([&] { return w.c.get_session("lsn-x", asio::use_future); }));
            try {
                lenses = listed.get().get().size();
                unknown.get().get();
            } catch (const boost::system::system_error& e) {
                missing = e.code();
            }
            finished = true;
        });
        const bool done = co_await eventually([&] { return finished.load(); }, 10s);
        other.join();
        CHECK(done);
        CHECK(lenses == 3);
        REQUIRE(missing);
        CHECK(*missing == errc::not_found);
    });
}

TEST_CASE("completion tokens: per-operation cancellation through the token path")
{
    fixture f;
    f.run([&]() -> task<void> {
        world w(f);
        auto ex = co_await asio::this_coro::executor;
        auto s = co_await w.open(emu::builtin::mailbox);

        // as_tuple against a timer: the receive (an hour long) is cancelled when the timer
        // wins; were it not, || would wait for it and the watchdog would fail the test.
        asio::steady_timer timer(ex, 5ms);
        auto winner = co_await (s.receive(std::chrono::hours(1), tuple_token) || timer.async_wait(asio::use_awaitable));
        CHECK(winner.index() == 1);
        CHECK((co_await s.validate()).is_valid); // the session carried on

        // A callback bound to a cancellation slot: terminal cancellation completes it with
        // operation_aborted.
        asio::cancellation_signal signal;
        std::optional<error_code> received;
        lens::diagnostics diag;
        s.receive(std::chrono::hours(1), diag,
                  asio::bind_cancellation_slot(signal.slot(), [&](error_code ec, std::optional<json::value> v) {
                      received = ec;
                      CHECK_FALSE(v);
                  }));
        co_await asio::post(ex, asio::use_awaitable); // let it start waiting
        CHECK_FALSE(received);
        signal.emit(asio::cancellation_type::terminal);
        CHECK(co_await eventually([&] { return received.has_value(); }));
        CHECK(*received == asio::error::operation_aborted);
        CHECK_FALSE(diag.message().empty());
        CHECK(s.stats().pending == 0);

        // The same for an event stream's next() (no event comes: the session has no input)...
        auto record = co_await w.create(emu::builtin::activity_monitor);
        auto stream = w.c.events(record.session_id);
        co_await stream.connect();
        asio::cancellation_signal stream_signal;
        std::optional<error_code> next_result;
        stream.next(asio::bind_cancellation_slot(
            stream_signal.slot(), [&](error_code ec, std::optional<lens::session_event>) { next_result = ec; }));
        co_await asio::post(ex, asio::use_awaitable);
        stream_signal.emit(asio::cancellation_type::terminal);
        CHECK(co_await eventually([&] { return next_result.has_value(); }));
        CHECK(*next_result == asio::error::operation_aborted);

        // ... and a REST call held by the server (one minute of delay).
        w.f.knobs().rest.delay = std::chrono::minutes(1);
        const auto requests = w.f.stats().http_requests;
        asio::cancellation_signal rest_signal;
        std::optional<error_code> listed;
        w.c.list_sessions(asio::bind_cancellation_slot(
            rest_signal.slot(), [&](error_code ec, std::vector<lens::session_record>) { listed = ec; }));
        CHECK(co_await eventually([&] { return w.f.stats().http_requests > requests; }));
        CHECK_FALSE(listed);
        rest_signal.emit(asio::cancellation_type::terminal);
        CHECK(co_await eventually([&] { return listed.has_value(); }));
        CHECK(*listed == asio::error::operation_aborted);
        w.f.knobs().rest.delay = 0ms;
    });
}
