// The WebSocket control channel against the in-process emulator, and against a
// scripted peer on loopback for what the emulator is too well-behaved to do (echo
// the key, send oversized or unsolicited frames on cue).
//
// Timing rules are the state machine's unit tests' job (tests/unit/channel_fsm_test.cpp):
// these tests check protocol behaviour through counters and results, never elapsed time.
#include "detail/read_pacing.hpp"
#include "integration/fixture.hpp"

#include <doctest/doctest.h>

#include <lens/client.hpp>
#include <lens/emulator.hpp>
#include <lens/session.hpp>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using lens::errc;
using lens::task;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

/// A WebSocket server on loopback whose every move a test scripts: the broken or
/// hostile peer the emulator is too well-behaved to be. Connection `i` (from 0) is
/// refused with `refuse(i)` when that returns a response; otherwise it is upgraded,
/// sent `greet(i)`, and each request frame is answered with `answer(request, i)`.
/// A frame made by `close_with(reason)` closes the connection with that reason.
class scripted_peer {
public:
    using stream = websocket::stream<beast::tcp_stream>;
    using refusal = std::optional<http::response<http::string_body>>;

    std::function<refusal(int connection)> refuse;
    std::function<std::vector<std::string>(int connection)> greet;
    std::function<std::vector<std::string>(const json::value& request, int connection)> answer;
    /// Connection `i` reads the upgrade request and then never answers it.
    std::function<bool(int connection)> hang;

    int connections = 0;   ///< TCP connections accepted
    int closed_by_client = 0; ///< connections the client closed (reads that failed)
    std::vector<std::string> requests; ///< request frames received, in order

    explicit scripted_peer(asio::any_io_executor ex)
        : acceptor_(ex, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0))
    {
    }

    void start() { asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached); }

    std::string url() const { return "ws://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/ws"; }
    std::string http_endpoint() const { return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()); }

    static std::string close_with(const std::string& reason) { return std::string(close_marker) + reason; }

    /// Stops accepting and closes every connection, so the io_context runs dry.
    void stop()
    {
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        for (auto& weak : live_)
            if (auto s = weak.lock())
                beast::get_lowest_layer(*s).socket().close(ignored);
    }

private:
    static constexpr std::string_view close_marker = "\x01close:";

    task<void> accept_loop()
    {
        for (;;) {
            auto [ec, socket] = co_await acceptor_.async_accept(nothrow);
            if (ec)
                co_return;
            auto ws = std::make_shared<stream>(std::move(socket));
            live_.push_back(ws);
            asio::co_spawn(acceptor_.get_executor(), serve(ws, connections++), asio::detached);
        }
    }

    task<void> serve(std::shared_ptr<stream> ws, int index)
    {
        beast::flat_buffer buf;
        http::request<http::string_body> req;
        auto [rec, rn] = co_await http::async_read(ws->next_layer(), buf, req, nothrow);
        if (rec)
            co_return;
        if (hang && hang(index)) {
            co_await http::async_read(ws->next_layer(), buf, req, nothrow); // until closed
            ++closed_by_client;
            co_return;
        }
        if (refuse)
            if (auto res = refuse(index)) {
                res->prepare_payload();
                co_await http::async_write(ws->next_layer(), *res, nothrow);
                beast::get_lowest_layer(*ws).socket().shutdown(asio::ip::tcp::socket::shutdown_send);
                co_return;
            }
        auto [aec] = co_await ws->async_accept(req, nothrow);
        if (aec)
            co_return;
        ws->text(true);
        if (greet)
            for (auto& frame : greet(index))
                if (!co_await send(*ws, frame))
                    co_return;
        for (;;) {
            buf.clear();
            auto [ec, n] = co_await ws->async_read(buf, nothrow);
            if (ec) {
                ++closed_by_client;
                co_return;
            }
            requests.push_back(beast::buffers_to_string(buf.data()));
            if (!answer)
                continue;
            for (auto& frame : answer(json::parse(requests.back()), index))
                if (!co_await send(*ws, frame))
                    co_return;
        }
    }

    static task<bool> send(stream& ws, const std::string& frame)
    {
        if (frame.starts_with(close_marker)) {
            websocket::close_reason reason(websocket::close_code::policy_error, frame.substr(close_marker.size()));
            co_await ws.async_close(reason, nothrow);
            co_return false;
        }
        auto [ec, n] = co_await ws.async_write(asio::buffer(frame), nothrow);
        co_return !ec;
    }

    asio::ip::tcp::acceptor acceptor_;
    std::vector<std::weak_ptr<stream>> live_;
};

/// The shared fixture (emulator, watchdog) plus what every session test needs: the
/// error texts seen (checked for the key), scripted peers stopped at the end.
std::string reply_to(const json::value& request); // below, with the other scripted answers

struct ws_harness : lens::test::fixture {
    std::vector<std::string> messages; ///< every error text seen, checked for the key
    std::deque<scripted_peer> peers;

    explicit ws_harness(lens::emulator::options o = lens::test::emulator_options()) : fixture(std::move(o)) {}

    template <class F>
    void run(F body)
    {
        fixture::run([&]() -> task<void> {
            std::exception_ptr failure;
            try {
                co_await body();
            } catch (...) {
                failure = std::current_exception();
            }
            for (auto& p : peers)
                p.stop();
            if (failure)
                std::rethrow_exception(failure);
        });
        for (auto& m : messages)
            CHECK(m.find(cfg.api_key) == std::string::npos);
    }

    /// A scripted peer on this harness's context (start it once scripted).
    scripted_peer& peer() { return peers.emplace_back(ctx.get_executor()); }

    /// A started peer that answers every request with its `.response` (reply_to).
    scripted_peer& answering_peer()
    {
        auto& p = peer();
        p.answer = [](const json::value& request, int) { return std::vector<std::string>{reply_to(request)}; };
        p.start();
        return p;
    }

    /// A config whose REST endpoint is `p`'s host and port, with `key`.
    lens::config config_for(const scripted_peer& p, std::string key) const
    {
        auto c = cfg;
        c.endpoint = p.http_endpoint();
        c.api_key = std::move(key);
        c.ca_file.clear();
        return c;
    }

    task<lens::session_record> create(std::string_view lens_id)
    {
        lens::client c(ctx.get_executor(), cfg);
        co_return co_await c.create_session(std::string(lens_id));
    }

    /// What a failed operation threw.
    struct caught {
        boost::system::error_code code;
        std::string what;
    };

    /// Awaits `op` and returns the lens::error it must throw.
    template <class Awaitable>
    task<caught> failure_of(Awaitable op)
    {
        try {
            co_await std::move(op);
        } catch (const lens::error& e) {
            messages.push_back(e.what());
            co_return caught{e.code(), e.what()};
        }
        FAIL("expected a lens::error");
        co_return caught{};
    }

    /// Waits (bounded) until `pred()` holds; time passes through the emulator knobs under test.
    task<bool> eventually(std::function<bool()> pred, std::chrono::milliseconds limit = 5s)
    {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        asio::steady_timer t(ctx);
        while (!pred() && std::chrono::steady_clock::now() < deadline) {
            t.expires_after(5ms);
            co_await t.async_wait(asio::use_awaitable);
        }
        co_return pred();
    }

    /// Lets every ready handler run a few times over (a spawned coroutine reaches its first wait).
    task<void> settle()
    {
        for (int i = 0; i < 8; ++i)
            co_await asio::post(ctx.get_executor(), asio::use_awaitable);
    }
};

/// The outcome of a spawned operation, for tests that run several at once.
template <class T>
struct outcome {
    bool finished = false;
    std::exception_ptr error;
    T value{};
};

/// Starts `op` now (it runs concurrently with the caller) and records how it ends.
template <class T>
std::shared_ptr<outcome<T>> spawn(asio::any_io_executor ex, task<T> op)
{
    auto out = std::make_shared<outcome<T>>();
    asio::co_spawn(ex, std::move(op), [out](std::exception_ptr e, T v) {
        out->finished = true;
        out->error = e;
        out->value = std::move(v);
    });
    return out;
}

// ---- frames of the scripted peer (ordinary functions: g++ 12 and braced lists in coroutines) ----

std::string type_of(const json::value& request)
{
    if (auto* o = request.if_object())
        if (auto* t = o->if_contains("type"); t && t->is_string())
            return std::string(t->get_string());
    return {};
}

std::string reply_to(const json::value& request)
{
    json::object o;
    o["type"] = type_of(request) + ".response";
    json::object data;
    data["ok"] = true;
    if (type_of(request) == "session.validate")
        data["is_valid"] = true;
    o["event_data"] = std::move(data);
    return json::serialize(o);
}

std::string note(int n, std::size_t padding = 0)
{
    json::object o;
    o["type"] = "note";
    json::object data;
    data["n"] = n;
    if (padding)
        data["pad"] = std::string(padding, 'p');
    o["event_data"] = std::move(data);
    return json::serialize(o);
}

/// `{"type": "push", "event_data": {"count": n, "padding": p}}`: the scripted peer answers
/// with n notes, then the reply.
json::object push_request(int count, std::size_t padding = 0)
{
    json::object o;
    o["count"] = count;
    o["padding"] = padding;
    return o;
}

std::vector<std::string> push_then_reply(const json::value& request)
{
    std::vector<std::string> frames;
    if (type_of(request) == "push") {
        auto& data = request.at("event_data").as_object();
        const auto count = data.at("count").to_number<int>();
        const auto padding = data.at("padding").to_number<std::size_t>();
        for (int i = 0; i < count; ++i)
            frames.push_back(note(i, padding));
    }
    frames.push_back(reply_to(request));
    return frames;
}

int n_of(const std::optional<json::value>& frame)
{
    REQUIRE(frame);
    return static_cast<int>(frame->at("event_data").at("n").to_number<int>());
}

lens::session_options fast_reconnect()
{
    lens::session_options so;
    so.reconnect.initial = 1ms;
    so.reconnect.max = 10ms;
    so.reconnect.jitter = 0;
    return so;
}

lens::call_options within(std::chrono::milliseconds t)
{
    lens::call_options o;
    o.timeout = t;
    return o;
}

json::object number_payload(int i)
{
    json::object o;
    o["n"] = i;
    return o;
}

json::object file_config(std::size_t n)
{
    json::object o;
    o["file_id"] = std::string(n, 'j');
    return o;
}

std::string image_for(int i) { return "image-bytes-" + std::to_string(i * 7919); }

} // namespace

TEST_CASE("session: every typed operation against the mailbox lens")
{
    ws_harness h;
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        auto s = co_await lens::session::open(h.cfg, record);
        CHECK(s.is_connected());

        auto status = co_await s.status();
        CHECK(status.session_id == record.session_id);
        CHECK(status.status == lens::session_status::running);
        CHECK_FALSE(status.raw.contains("api_key"));
        CHECK(json::serialize(json::value_from(status)).find(h.cfg.api_key) == std::string::npos);

        auto v = co_await s.validate();
        CHECK(v.is_valid);
        CHECK(v.error_messages.empty());
        CHECK(v.raw().at("type") == "session.validate.response"); // the reply's text, parsed
        CHECK(v.raw() == json::parse(v.reply));
        co_await s.heartbeat();

        // The mailbox: a cursor per client id; a new id replays from the start.
        auto first = co_await s.read("reader-a");
        const auto initial = first.messages.size();
        CHECK(initial >= 1);
        CHECK(first.client_id == "reader-a");
        for (int i = 0; i < 3; ++i)
            co_await s.update(number_payload(i));
        auto next = co_await s.read("reader-a");
        REQUIRE(next.messages.size() == 3);
        CHECK(next.messages[2].data.as_object().at("n").as_int64() == 2);
        auto empty = co_await s.read("reader-a");
        CHECK(empty.messages.empty()); // event_data null: nothing pending
        auto replay = co_await s.read("reader-b");
        CHECK(replay.messages.size() == initial + 3);
        CHECK(replay.raw().at("event_data").at("messages").as_array().size() == initial + 3);
        CHECK(s.client_id().size() == 8); // random per session object
        auto own = co_await s.read();
        CHECK(own.messages.size() == initial + 3);

        // Braced temporaries straight into the awaited call: g++ 12 destroys braced
        // aggregate temporaries twice here, so these types are not aggregates.
        lens::client rest(h.ctx.get_executor(), h.cfg);
        auto file = co_await rest.upload_file(std::string(40, 'f') + ".csv", "t,a\n1,2\n");
        auto set = co_await s.set_input_stream(lens::csv_stream{file.file_id});
        CHECK(set.as_object().at("type") == "input_stream.set.response");
        auto missing = co_await h.failure_of(s.set_input_stream(lens::raw_stream{"jsonl_file_reader", file_config(40)}));
        CHECK(missing.code == errc::api_error);
        CHECK(missing.what.find("File not found") != std::string::npos);
        auto pushed = co_await s.update(number_payload(64));
        CHECK(pushed.is_object());
        auto called = co_await s.call(std::string("session.") + "validate", json::value(nullptr));
        CHECK(called.as_object().at("type") == "session.validate.response");

        auto raw = co_await s.call("session.validate");
        CHECK(raw.as_object().at("type") == "session.validate.response");

        co_await s.destroy();
        auto gone = co_await h.failure_of(s.status());
        CHECK(gone.code == errc::session_gone);
        lens::client c(h.ctx.get_executor(), h.cfg);
        CHECK((co_await c.get_session(record.session_id)).status == lens::session_status::stale);
        // The session is gone: a new channel is refused for good, not retried.
        auto refused = co_await h.failure_of(lens::session::open(h.cfg, record));
        CHECK(refused.code == errc::not_found); // the 404 upgrade (lens::status_condition)
    });
}

TEST_CASE("session: 1000 concurrent mixed requests, each gets its own reply")
{
    auto o = lens::test::emulator_options();
    o.ws.query_latency = 2ms; // queries complete after the status/validate replies sent later
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::query);
        auto s = co_await lens::session::open(h.cfg, record);
        int checked = 0;
        auto one = [&](int i) -> task<void> {
            switch (i % 3) {
            case 0: {
                const auto focus = "question " + std::to_string(i);
                auto q = i % 2 ? lens::query_request::image_qa(focus, image_for(i))
                               : lens::query_request::bbox("Input: [car" + std::to_string(i) + ",person]", image_for(i));
                auto answer = co_await s.query(q);
                CHECK(answer == lens::emulator::expected_query_answer(q.template_name, q.focus, image_for(i)));
                break;
            }
            case 1: {
                auto st = co_await s.status();
                CHECK(st.session_id == record.session_id);
                break;
            }
            default: {
                auto v = co_await s.validate();
                CHECK(v.is_valid);
            }
            }
            ++checked;
        };
        std::vector<task<void>> all;
        auto ex = co_await asio::this_coro::executor;
        std::vector<std::future<void>> done;
        for (int i = 0; i < 1000; ++i)
            done.push_back(asio::co_spawn(ex, one(i), asio::use_future));
        CHECK(co_await h.eventually([&] { return checked == 1000; }, 20s));
        for (auto& f : done)
            f.get(); // rethrows a failed request
        CHECK(s.stats().replies_matched == 1000);
        CHECK(s.stats().pending == 0);
    });
}

TEST_CASE("session: a timed-out request leaves its neighbours intact and its late reply is dropped")
{
    auto o = lens::test::emulator_options();
    o.ws.query_timeout_after = 150ms;
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::query);
        auto s = co_await lens::session::open(h.cfg, record);
        auto ex = co_await asio::this_coro::executor;
        // A: never answered in time by the model; B: queued behind it; C: another type.
        auto a = asio::co_spawn(ex, h.failure_of(s.query(lens::query_request::image_qa("emulator:timeout", "x"), within(30ms))),
                                asio::use_awaitable);
        auto b = asio::co_spawn(ex, s.query(lens::query_request::image_qa("b", "bytes-b"), within(3s)), asio::use_awaitable);
        auto c = asio::co_spawn(ex, s.status(), asio::use_awaitable);
        auto [timeout, answer, status] = co_await (std::move(a) && std::move(b) && std::move(c));
        CHECK(timeout.code == errc::timeout);
        CHECK(timeout.what.find("model.query") != std::string::npos);
        CHECK(answer == lens::emulator::expected_query_answer("image_qa_template_task", "b", "bytes-b"));
        CHECK(status.session_id == record.session_id);
        CHECK(s.stats().late_replies_dropped == 1);
        // The connection carried on.
        CHECK((co_await s.validate()).is_valid);
        CHECK(s.stats().connects == 1);
    });
}

TEST_CASE("session: per-operation cancellation composes with ||")
{
    auto o = lens::test::emulator_options();
    o.ws.reply_delay = 60ms;
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        auto s = co_await lens::session::open(h.cfg, record);
        asio::steady_timer timer(co_await asio::this_coro::executor, 5ms);
        auto winner = co_await (s.validate() || timer.async_wait(asio::use_awaitable));
        CHECK(winner.index() == 1); // the timer won; validate was cancelled
        // The cancelled request keeps its place: the next validate gets its own reply.
        auto v = co_await s.validate();
        CHECK(v.is_valid);
        CHECK(s.stats().late_replies_dropped == 1);
        CHECK(s.stats().connects == 1);
    });
}

TEST_CASE("session: the model's timeout reply and error frames become errors of their request")
{
    auto o = lens::test::emulator_options();
    o.ws.query_timeout_after = 10ms;
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::query);
        auto s = co_await lens::session::open(h.cfg, record);
        auto e = co_await h.failure_of(s.query(lens::query_request::image_qa("emulator:timeout", "x")));
        CHECK(e.code == errc::query_timed_out);
        CHECK(e.what.find("Response timed out for query") != std::string::npos);

        h.knobs().ws.error_frame_next = 1;
        auto err = co_await h.failure_of(s.status());
        CHECK(err.code == errc::api_error);
        CHECK(err.what.find("session.status") != std::string::npos);
        CHECK((co_await s.status()).session_id == record.session_id);

        // A malformed frame answers nothing: it goes to the inbox, the reply still arrives.
        h.knobs().ws.malformed_next = 1;
        CHECK((co_await s.validate()).is_valid);
        auto junk = s.try_receive();
        REQUIRE(junk);
        CHECK(junk->is_string());
    });
}

TEST_CASE("session: reconnects after a drop - idempotent requests are resent, others fail")
{
    auto o = lens::test::emulator_options();
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        lens::session_options so;
        so.reconnect.initial = 5ms;
        so.reconnect.jitter = 0;
        auto s = co_await lens::session::open(h.cfg, record, so);
        h.knobs().ws.drop_after_frames = 3;
        for (int i = 0; i < 12; ++i) {
            auto st = co_await s.status(within(3s));
            CHECK(st.session_id == record.session_id);
        }
        CHECK(s.stats().connects >= 4);

        // A non-idempotent request caught by a drop fails with connection_lost.
        int lost = 0, ok = 0;
        for (int i = 0; i < 6; ++i) {
            try {
                co_await s.update(number_payload(i), within(3s));
                ++ok;
            } catch (const lens::error& e) {
                h.messages.push_back(e.what());
                CHECK(e.code() == errc::connection_lost);
                ++lost;
            }
        }
        CHECK(lost >= 1);
        CHECK(ok >= 1);
    });
}

TEST_CASE("session: a silent peer is detected within dead_peer_timeout and the session reconnects")
{
    ws_harness h;
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        lens::session_options so;
        // Generous enough that a loaded CI machine (sanitizers) answers a ping within half of it.
        so.dead_peer_timeout = 600ms;
        so.reconnect.initial = 5ms;
        so.reconnect.jitter = 0;
        auto s = co_await lens::session::open(h.cfg, record, so);

        // The peer swallows the request and goes quiet with the TCP connection open:
        // only the unanswered ping reveals it. The idempotent request is resent on the
        // next connection and answered there, well within its own deadline.
        h.knobs().ws.silent_after_frames = 1;
        auto v = co_await s.validate(within(20s));
        CHECK(v.is_valid);
        CHECK(s.stats().dead_peer_disconnects == 1);
        CHECK(s.stats().connects == 2);

        // A request that is not idempotent fails with connection_lost (the drop), not
        // with its own deadline's timeout.
        h.knobs().ws.silent_after_frames = 1;
        auto lost = co_await h.failure_of(s.update(number_payload(1), within(20s)));
        CHECK(lost.code == errc::connection_lost);
        CHECK(lost.what.find("dead peer") != std::string::npos);
        CHECK(s.stats().dead_peer_disconnects == 2);
        CHECK(co_await h.eventually([&] { return s.stats().connects == 3; })); // reconnected after backoff

        // A live peer that is merely idle answers the pings: three answered pings (each
        // after half a dead-peer period of silence) cost no connection.
        const auto pongs = s.stats().pongs_received;
        CHECK(co_await h.eventually([&] { return s.stats().pongs_received >= pongs + 3; }, 5s));
        CHECK(s.stats().dead_peer_disconnects == 2);
        CHECK(s.stats().connects == 3);
        CHECK((co_await s.validate(within(1s))).is_valid);
    });
}

TEST_CASE("session: over wss, keepalive pings answered through TLS")
{
    auto o = lens::test::emulator_options();
    o.tls = true;
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        CHECK(record.session_endpoint.starts_with("wss://127.0.0.1:"));
        lens::session_options so;
        so.dead_peer_timeout = 600ms;
        auto s = co_await lens::session::open(h.cfg, record, so);
        CHECK((co_await s.status()).session_id == record.session_id);
        CHECK((co_await s.validate()).is_valid);
        // Silence: three pings go out and are answered through TLS, nothing reconnects.
        CHECK(co_await h.eventually([&] { return s.stats().pongs_received >= 3; }, 5s));
        CHECK(s.stats().dead_peer_disconnects == 0);
        CHECK(s.stats().connects == 1);
        co_await s.update(number_payload(7));
        auto mail = co_await s.read("tls-reader");
        REQUIRE_FALSE(mail.messages.empty());
        CHECK(mail.messages.back().data.as_object().at("n").as_int64() == 7);

        // A wrong CA: the certificate is rejected and open() reports it, key-free.
        auto untrusted = h.cfg;
        untrusted.ca_file.clear();
        lens::session_options quick;
        quick.connect_timeout = 2s;
        quick.reconnect.max_attempts = 0; // unlimited: the rejection must stop it anyway
        auto refused = co_await h.failure_of(lens::session::open(untrusted, record, quick));
        CHECK(refused.code == errc::certificate_rejected);
        CHECK(refused.what.find("session.open") != std::string::npos);
        CHECK(refused.what.find("certificate") != std::string::npos);
    });
}

TEST_CASE("session: refused upgrades - 401 unauthorized and 404 not_found stop at once, 503 is retried")
{
    ws_harness h;
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        auto bad = h.cfg;
        bad.api_key = lens::test::test_key("not-the-key");
        auto e401 = co_await h.failure_of(lens::session::open(bad, record));
        CHECK(e401.code == errc::unauthorized);
        CHECK(e401.what.find(lens::test::test_key("not-the-key")) == std::string::npos);

        auto unknown = record;
        unknown.session_endpoint = record.session_endpoint.substr(0, record.session_endpoint.rfind('/')) + "/lsn-nope";
        const auto upgrades = h.stats().ws_upgrades;
        auto e404 = co_await h.failure_of(lens::session::open(h.cfg, unknown));
        // One table for every HTTP status (lens::status_condition): a 404 upgrade is
        // not_found, as for REST, and the server's reason is quoted. Not retried.
        CHECK(e404.code == errc::not_found);
        CHECK(e404.what.find("404") != std::string::npos);
        CHECK(e404.what.find("Unknown session id") != std::string::npos);
        CHECK(h.stats().ws_upgrades == upgrades + 1);

        h.knobs().ws.refuse_upgrade_status = 503;
        h.knobs().ws.refuse_next_upgrades = 2;
        lens::session_options so;
        so.reconnect.initial = 5ms;
        auto s = co_await lens::session::open(h.cfg, record, so);
        CHECK(s.stats().connect_failures == 2);
        CHECK((co_await s.validate()).is_valid);
    });
}

TEST_CASE("session: a server that accepts and closes at once gets spaced attempts, not a storm")
{
    ws_harness h;
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        h.knobs().ws.accept_then_close_next = 4;
        lens::session_options so;
        so.reconnect.initial = 20ms;
        so.reconnect.multiplier = 2;
        so.reconnect.jitter = 0;
        so.connect_timeout = 5s;
        const auto upgrades = h.stats().ws_upgrades;
        auto s = co_await lens::session::open(h.cfg, record, so);
        auto v = co_await s.validate();
        CHECK(v.is_valid);
        // One upgrade per attempt and no more: each short-lived connection is a failure in
        // a row, so the delays grow (20, 40, 80, 160 ms: channel_fsm_test checks the times).
        CHECK(s.stats().connects == 5);
        CHECK(h.stats().ws_upgrades == upgrades + 5);
        CHECK(s.stats().connect_failures == 0);
    });
}

TEST_CASE("session: subprotocol authentication, idle heartbeats, several sessions on one thread")
{
    ws_harness h;
    h.run([&]() -> task<void> {
        lens::session_options so;
        so.subprotocol_auth = true;
        so.heartbeat_idle = 20ms;
        std::vector<lens::session> sessions;
        for (int i = 0; i < 5; ++i)
            sessions.push_back(co_await lens::session::open(h.cfg, co_await h.create(lens::emulator::builtin::mailbox), so));
        // Drive all five at once from this one thread.
        auto ex = co_await asio::this_coro::executor;
        std::vector<std::future<lens::validation>> results;
        for (auto& s : sessions)
            results.push_back(asio::co_spawn(ex, s.validate(), asio::use_future));
        CHECK(co_await h.eventually([&] {
            for (auto& s : sessions)
                if (s.stats().heartbeats_sent < 2) return false;
            return true;
        }));
        for (auto& r : results)
            CHECK(r.get().is_valid);
        for (auto& s : sessions)
            CHECK(s.stats().late_replies_dropped == s.stats().heartbeats_sent - (s.stats().pending ? 1 : 0));
    });
}

// ---- receive() ------------------------------------------------------------------------

TEST_CASE("session: receive - a waiting caller gets the frame that arrives, two waiters one frame each")
{
    ws_harness h;
    auto& peer = h.peer();
    peer.answer = [](const json::value& request, int) { return push_then_reply(request); };
    peer.start();
    h.run([&]() -> task<void> {
        auto s = co_await lens::session::open(h.config_for(peer, lens::test::test_key("key-receive")), peer.url());
        auto ex = co_await asio::this_coro::executor;

        // Waiting before the frame exists: woken by its arrival, it returns it (this
        // threw operation_aborted when the wake-up cancelled a use_awaitable wait).
        auto one = spawn(ex, s.receive(10s));
        co_await h.settle();
        CHECK_FALSE(one->finished);
        co_await s.call("push", push_request(1));
        CHECK(co_await h.eventually([&] { return one->finished; }));
        CHECK_FALSE(one->error);
        CHECK(n_of(one->value) == 0);

        // Two waiters, two frames: each gets one, in order.
        auto a = spawn(ex, s.receive(10s));
        auto b = spawn(ex, s.receive(10s));
        co_await h.settle();
        co_await s.call("push", push_request(2));
        CHECK(co_await h.eventually([&] { return a->finished && b->finished; }));
        CHECK_FALSE(a->error);
        CHECK_FALSE(b->error);
        CHECK(n_of(a->value) == 0);
        CHECK(n_of(b->value) == 1);

        // Two waiters, one frame: one gets it, the other times out with nullopt.
        auto c = spawn(ex, s.receive(10s));
        auto d = spawn(ex, s.receive(200ms));
        co_await h.settle();
        co_await s.call("push", push_request(1));
        CHECK(co_await h.eventually([&] { return c->finished && d->finished; }));
        CHECK_FALSE(c->error);
        CHECK_FALSE(d->error);
        CHECK(n_of(c->value) == 0);
        CHECK_FALSE(d->value);

        // A frame already queued is returned at once; an empty inbox with no time gives nullopt.
        co_await s.call("push", push_request(1));
        CHECK(n_of(co_await s.receive(0ms)) == 0);
        CHECK_FALSE(co_await s.receive(0ms));
        CHECK(s.stats().inbox_dropped == 0);
    });
}

TEST_CASE("session: receive - close while waiting returns nullopt, cancelling the caller throws")
{
    ws_harness h;
    auto& peer = h.peer();
    peer.answer = [](const json::value& request, int) { return push_then_reply(request); };
    peer.start();
    h.run([&]() -> task<void> {
        auto s = co_await lens::session::open(h.config_for(peer, lens::test::test_key("key-receive")), peer.url());
        auto ex = co_await asio::this_coro::executor;

        // The caller's own cancellation is an error, as for every lens operation.
        asio::cancellation_signal cancel;
        bool cancelled = false, threw_aborted = false;
        asio::co_spawn(ex, s.receive(10s),
                       asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e, std::optional<json::value>) {
                           cancelled = true;
                           try {
                               if (e)
                                   std::rethrow_exception(e);
                           } catch (const boost::system::system_error& se) {
                               threw_aborted = se.code() == asio::error::operation_aborted;
                           }
                       }));
        co_await h.settle();
        cancel.emit(asio::cancellation_type::terminal);
        CHECK(co_await h.eventually([&] { return cancelled; }));
        CHECK(threw_aborted);
        // The session carries on: a frame still reaches the next caller.
        co_await s.call("push", push_request(1));
        CHECK(n_of(co_await s.receive(10s)) == 0);

        // close() wakes every waiter with nullopt, not an exception.
        auto a = spawn(ex, s.receive(10s));
        auto b = spawn(ex, s.receive(std::chrono::milliseconds::max()));
        co_await h.settle();
        s.close();
        CHECK(co_await h.eventually([&] { return a->finished && b->finished; }));
        CHECK_FALSE(a->error);
        CHECK_FALSE(b->error);
        CHECK_FALSE(a->value);
        CHECK_FALSE(b->value);
        CHECK_FALSE(co_await s.receive(10s)); // closed: nothing to wait for
    });
}

// ---- deadlines and lifetimes -------------------------------------------------------------

TEST_CASE("session: a huge timeout saturates - milliseconds max still waits for the reply")
{
    auto o = lens::test::emulator_options();
    o.ws.reply_delay = 20ms;
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        lens::session_options so;
        so.request_timeout = std::chrono::milliseconds::max();
        auto s = co_await lens::session::open(h.cfg, record, so);
        // `now + milliseconds::max()` overflowed into the past: an instant timeout.
        CHECK((co_await s.validate(within(std::chrono::milliseconds::max()))).is_valid);
        CHECK((co_await s.status()).session_id == record.session_id); // the session default
        CHECK(s.stats().replies_matched == 2);
    });
}

TEST_CASE("session: a short deadline behind a long one fires first - the session keeps the deadlines in order")
{
    ws_harness h;
    auto& peer = h.peer();
    peer.answer = [](const json::value&, int) { return std::vector<std::string>{}; }; // never answers
    peer.start();
    h.run([&]() -> task<void> {
        auto s = co_await lens::session::open(h.config_for(peer, lens::test::test_key("key-deadlines")), peer.url(),
                                              fast_reconnect());
        auto ex = co_await asio::this_coro::executor;
        bool long_done = false;
        asio::co_spawn(ex, h.failure_of(s.call("long", json::object(), within(30s))),
                       [&](std::exception_ptr, ws_harness::caught c) {
                           long_done = true;
                           CHECK(c.code == errc::closed);
                       });
        // The short request, made second, times out at its own deadline (a list in
        // arrival order would have it wait for the long one's).
        asio::steady_timer give_up(ex, 10s);
        auto first = co_await (h.failure_of(s.call("short", json::object(), within(50ms))) ||
                               give_up.async_wait(asio::use_awaitable));
        REQUIRE(first.index() == 0);
        CHECK(std::get<0>(first).code == errc::timeout);
        CHECK_FALSE(long_done);
        s.close();
        CHECK(co_await lens::test::eventually([&] { return long_done; }));
    });
}

TEST_CASE("session: an io_context destroyed while callers wait frees their coroutines - even without a deadline")
{
    // A waiting caller's coroutine is held by its request, which the session holds,
    // which the coroutine holds: only the session's pending timer wait, destroyed with
    // the io_context, lets go of them.
    ws_harness h; // its configuration
    std::weak_ptr<int> forever, long_wait;
    bool waiting = false;
    {
        asio::io_context ctx;
        scripted_peer peer(ctx.get_executor());
        peer.answer = [](const json::value&, int) { return std::vector<std::string>{}; }; // never answers
        peer.start();
        const auto cfg = h.config_for(peer, lens::test::test_key("key-shutdown"));
        auto caller = [&](std::weak_ptr<int>& seen, std::chrono::milliseconds timeout) {
            auto token = std::make_shared<int>(0);
            seen = token;
            // The coroutine owns its session, as an application's would.
            asio::co_spawn(ctx, [&cfg, &peer, &waiting, token, timeout]() -> task<void> {
                auto s = co_await lens::session::open(cfg, peer.url(), fast_reconnect());
                waiting = true;
                co_await s.call("never", json::object(), within(timeout));
            }, asio::detached);
        };
        caller(forever, std::chrono::milliseconds::max());
        caller(long_wait, 60s);
        const auto give_up = std::chrono::steady_clock::now() + 10s; // the watchdog
        while (!(waiting && peer.requests.size() >= 2) && std::chrono::steady_clock::now() < give_up)
            ctx.run_for(10ms);
        REQUIRE(peer.requests.size() >= 2);
        CHECK_FALSE(forever.expired());
        CHECK_FALSE(long_wait.expired());
        peer.stop();
    }
    CHECK(forever.expired());
    CHECK(long_wait.expired());
}

TEST_CASE("session: a moved-from session fails its operations with closed and its accessors return empty values")
{
    ws_harness h;
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::mailbox);
        auto s = co_await lens::session::open(h.cfg, record);
        // An operation made before the move belongs to the session it was made on.
        auto made_before = s.validate();
        lens::session t = std::move(s);
        CHECK((co_await std::move(made_before)).is_valid);

        auto expect_closed = [&](const ws_harness::caught& e, std::string_view operation) {
            CHECK(e.code == errc::closed);
            CHECK(e.what.find(operation) != std::string::npos);
            CHECK(e.what.find("moved-from session") != std::string::npos);
        };
        expect_closed(co_await h.failure_of(s.call("session.validate")), "session.validate");
        expect_closed(co_await h.failure_of(s.status()), "session.status");
        expect_closed(co_await h.failure_of(s.validate()), "session.validate");
        expect_closed(co_await h.failure_of(s.read()), "session.read");
        expect_closed(co_await h.failure_of(s.read("other")), "session.read");
        expect_closed(co_await h.failure_of(s.update(number_payload(1))), "session.update");
        expect_closed(co_await h.failure_of(s.heartbeat()), "session.heartbeat");
        expect_closed(co_await h.failure_of(s.query(lens::query_request::image_qa("q", "img"))), "model.query");
        expect_closed(co_await h.failure_of(s.set_input_stream(lens::csv_stream{"file"})), "input_stream.set");
        expect_closed(co_await h.failure_of(s.destroy()), "session.destroy");
        expect_closed(co_await h.failure_of(s.receive(10ms)), "session.receive");
        CHECK(s.client_id().empty());
        CHECK(s.stats().connects == 0);
        CHECK(s.stats().pending == 0);
        CHECK_FALSE(s.is_connected());
        CHECK_FALSE(s.try_receive());
        s.close(); // harmless

        // The moved-to session is the one that works.
        CHECK(t.is_connected());
        CHECK(t.client_id().size() == 8);
        CHECK((co_await t.status()).session_id == record.session_id);
        // Moving a live session into it closes what it held.
        auto other = co_await lens::session::open(h.cfg, record);
        other = std::move(t);
        CHECK(other.is_connected());
        CHECK((co_await other.validate()).is_valid);
    });
}

TEST_CASE("session: closing during a connect attempt ends the attempt - nothing outlives the session")
{
    ws_harness h;
    auto& peer = h.peer();
    peer.hang = [](int) { return true; }; // reads the upgrade request, never answers
    peer.start();
    h.run([&]() -> task<void> {
        lens::session_options so;
        so.connect_timeout = 60s; // far beyond the watchdog: only the cancellation can end it
        // open() is cancelled once the peer holds its connection (not after a fixed
        // time, which a loaded machine can spend before the connection is even made).
        auto r = co_await (lens::session::open(h.config_for(peer, lens::test::test_key("key-hang")), peer.url(), so) ||
                           h.eventually([&] { return peer.connections == 1; }));
        REQUIRE(r.index() == 1); // open was cancelled
        CHECK(std::get<1>(r));
        // The attempt's socket is closed at once, not when the 60 s deadline passes.
        CHECK(co_await h.eventually([&] { return peer.closed_by_client == 1; }));
        CHECK(peer.connections == 1);
    });
}

TEST_CASE("session: closing during a TLS handshake that never completes ends the attempt at once")
{
    // The stage before the upgrade: TCP is up, the server never sends its hello. The
    // attempt is cancelled from open(), and its socket must close then, not at the
    // attempt's deadline.
    ws_harness h;
    asio::ip::tcp::acceptor acceptor(h.ctx, {asio::ip::make_address("127.0.0.1"), 0});
    const auto port = acceptor.local_endpoint().port();
    int accepted = 0, closed_by_client = 0;
    asio::co_spawn(h.ctx, [&]() -> task<void> {
        auto sock = co_await acceptor.async_accept(asio::use_awaitable);
        ++accepted;
        char sink[4096];
        for (;;) { // the ClientHello, then nothing until the client closes
            auto [ec, n] = co_await sock.async_read_some(asio::buffer(sink), asio::as_tuple(asio::use_awaitable));
            if (ec) {
                ++closed_by_client;
                co_return;
            }
        }
    }, asio::detached);
    h.run([&]() -> task<void> {
        auto c = h.cfg;
        c.endpoint = "https://127.0.0.1:" + std::to_string(port) + "/v0.5";
        lens::session_options so;
        so.connect_timeout = 60s; // far beyond the watchdog: only the cancellation can end it
        const std::string url = "wss://127.0.0.1:" + std::to_string(port) + "/v0.5/lens/sessions/lsn-tls";
        auto r = co_await (lens::session::open(c, url, so) || h.eventually([&] { return accepted == 1; }));
        REQUIRE(r.index() == 1); // open was cancelled
        CHECK(co_await h.eventually([&] { return closed_by_client == 1; }));
    });
}

// ---- the secret boundary -----------------------------------------------------------------

namespace {

/// The key the hostile server is sent and quotes back (the canary's marker under scripts/secret_canary.sh).
std::string hostile_key()
{
    return lens::test::test_key("sk-HOSTILE-test-key-0123456789");
}

/// What a hostile server does with the key it was sent, by request type.
std::vector<std::string> leak_key(const json::value& request)
{
    const std::string key = hostile_key();
    const auto type = type_of(request);
    std::vector<std::string> frames;
    json::object o;
    if (type == "leak.error") { // an error frame quoting the key
        o["type"] = "error";
        o["message"] = "invalid token " + key;
    } else if (type == "leak.message") { // a reply whose `message` quotes it
        o["type"] = "leak.message.response";
        o["message"] = "bad key: " + key;
    } else if (type == "leak.reply") { // a reply carrying it anywhere
        o["type"] = "leak.reply.response";
        json::object data;
        data["echo"] = "your key is " + key;
        data["api_key"] = key;
        json::object nested;
        nested[key] = json::array{key, "x"};
        data["nested"] = std::move(nested);
        o["event_data"] = std::move(data);
    } else if (type == "leak.unsolicited") { // frames nobody asked for
        frames.push_back("not json, but the key: " + key);
        json::object n;
        n["type"] = "note";
        json::object deep;
        deep["deeper"] = json::array{json::object{{"api_KEY", key}}, "..." + key + "..."};
        n[key] = std::move(deep); // under a member name that is the key
        n["api_key"] = key;
        frames.push_back(json::serialize(n));
        o["type"] = "leak.unsolicited.response";
        o["event_data"] = json::object();
        frames.push_back(json::serialize(o));
        json::object err; // after the reply, nothing is outstanding: it goes to the inbox
        err["type"] = "error";
        err["message"] = "stray " + key;
        frames.push_back(json::serialize(err));
        return frames;
    } else if (type == "leak.hidden") { // the key only in escapes, and an api_key member
        // The frame's text never spells the key: only its parsed strings do.
        std::string escaped;
        for (unsigned char c : key) {
            char u[8];
            std::snprintf(u, sizeof u, "\\u%04x", c);
            escaped += u;
        }
        frames.push_back(R"({"type":"leak.hidden.response","event_data":{"echo":")" + escaped + R"(",")" + escaped +
                         R"(":1,"API_Key":"elsewhere"}})");
        return frames;
    } else if (type == "leak.close") { // the close reason quotes it
        frames.push_back(scripted_peer::close_with("bye " + key));
        return frames;
    } else {
        return {reply_to(request)};
    }
    frames.push_back(json::serialize(o));
    return frames;
}

http::response<http::string_body> refusal_quoting_key(unsigned status)
{
    http::response<http::string_body> res(static_cast<http::status>(status), 11);
    res.set(http::field::content_type, "application/json");
    json::object body;
    body["detail"] = "token " + hostile_key() + " rejected";
    res.body() = json::serialize(body);
    return res;
}

} // namespace

TEST_CASE("session: the API key never reaches the caller - replies, escapes, error frames, inbox, close reasons, refusals")
{
    ws_harness h;
    auto& peer = h.peer();
    // The first upgrade is refused with a 503 quoting the key (retried); later ones pass.
    peer.refuse = [](int i) -> scripted_peer::refusal {
        if (i == 0)
            return refusal_quoting_key(503);
        return std::nullopt;
    };
    peer.answer = [](const json::value& request, int) { return leak_key(request); };
    peer.start();
    h.run([&]() -> task<void> {
        const auto cfg = h.config_for(peer, hostile_key());
        h.cfg.api_key = cfg.api_key; // the harness checks every error text for this key
        auto so = fast_reconnect();
        auto s = co_await lens::session::open(cfg, peer.url(), so);
        CHECK(s.stats().connect_failures == 1);
        const std::string key = hostile_key();
        auto leaks = [&](const std::string& text) { return text.find(key) != std::string::npos; };

        auto err = co_await h.failure_of(s.call("leak.error"));
        CHECK(err.code == errc::api_error);
        CHECK(err.what.find("invalid token [redacted]") != std::string::npos);

        auto msg = co_await h.failure_of(s.call("leak.message"));
        CHECK(msg.code == errc::api_error);
        CHECK(msg.what.find("bad key: [redacted]") != std::string::npos);

        auto reply = co_await s.call("leak.reply");
        const auto reply_text = json::serialize(reply);
        CHECK_FALSE(leaks(reply_text));
        CHECK_FALSE(reply.at("event_data").as_object().contains("api_key"));
        CHECK(reply.at("event_data").at("echo") == "your key is [redacted]");

        // Escapes and member names: no scan of the frame's text may skip the parsed tree.
        auto hidden = co_await s.call("leak.hidden");
        const auto hidden_text = json::serialize(hidden);
        CHECK_FALSE(leaks(hidden_text));
        CHECK(hidden.at("event_data").at("echo") == "[redacted]");
        CHECK(hidden.at("event_data").as_object().contains("[redacted]"));
        CHECK_FALSE(hidden.at("event_data").as_object().contains("API_Key"));

        co_await s.call("leak.unsolicited");
        auto text = s.try_receive(); // the non-JSON frame, kept as a string
        REQUIRE(text);
        REQUIRE(text->is_string());
        CHECK(text->get_string() == "not json, but the key: [redacted]");
        auto unsolicited = co_await s.receive(5s);
        REQUIRE(unsolicited);
        const auto unsolicited_text = json::serialize(*unsolicited);
        CHECK_FALSE(leaks(unsolicited_text));
        CHECK(unsolicited_text.find("api_key") == std::string::npos);
        CHECK(unsolicited_text.find("api_KEY") == std::string::npos);
        CHECK(unsolicited->as_object().contains("[redacted]")); // the renamed member
        auto stray = co_await s.receive(5s);
        REQUIRE(stray);
        CHECK(stray->at("message") == "stray [redacted]");

        // The close reason of a connection lost with a request in flight.
        auto closed = co_await h.failure_of(s.call("leak.close"));
        CHECK(closed.code == errc::connection_lost);
        CHECK(closed.what.find("bye [redacted]") != std::string::npos);
        CHECK((co_await s.call("session.validate")).is_object()); // reconnected
        s.close();

        // A refusal whose body quotes the key: the server's reason is kept, the key is not.
        auto& refusing = h.peer();
        refusing.refuse = [](int) -> scripted_peer::refusal { return refusal_quoting_key(401); };
        refusing.start();
        auto refused = co_await h.failure_of(lens::session::open(h.config_for(refusing, key), refusing.url()));
        CHECK(refused.code == errc::unauthorized);
        CHECK(refused.what.find("token [redacted] rejected") != std::string::npos);
        // h.run checks every error text above for the key.
    });
}

TEST_CASE("session: typed results read the reply's text - odd shapes, escapes and the key")
{
    ws_harness h;
    auto& peer = h.peer();
    // Each session.validate is answered with the next of these replies.
    const std::string key = hostile_key();
    const std::vector<std::string> replies = {
        // the streaming pass decides these two
        R"({"type":"session.validate.response","event_data":{"is_valid":false,"error_messages":["no lens","x"]}})",
        R"({"type":"session.validate.response","event_data":null})",
        // the tree decides: non-text messages are rendered, a non-boolean is_valid is false
        R"({"type":"session.validate.response","event_data":{"is_valid":"yes","error_messages":[1,{"a":2},"t"]}})",
        // escapes: decoded
        R"({"type":"session.validate.response","event_data":{"is_valid":true,"error_messages":["tab\tx\u0041"]}})",
        // the key in the text, in an escape and in an api_key member: none of it reaches the result
        R"({"type":"session.validate.response","api_key":")" + key + R"(","event_data":{"is_valid":false,)" +
            R"("error_messages":["bad key )" + key + R"("],"Api_Key":1}})",
        // a member named twice: the last one wins, as in a tree
        R"({"type":"session.validate.response","event_data":{"is_valid":false,"is_valid":true}})",
        // a failure envelope
        R"({"type":"session.validate.response","message":"no such lens"})",
    };
    auto next = std::make_shared<std::size_t>(0);
    peer.answer = [&replies, next](const json::value& request, int) {
        if (type_of(request) != "session.validate")
            return std::vector<std::string>{reply_to(request)};
        return std::vector<std::string>{replies.at((*next)++)};
    };
    peer.start();
    h.run([&]() -> task<void> {
        const auto cfg = h.config_for(peer, key);
        h.cfg.api_key = cfg.api_key;
        auto s = co_await lens::session::open(cfg, peer.url(), fast_reconnect());
        auto leaks = [&](const lens::validation& v) {
            std::string all = v.reply + json::serialize(v.raw());
            for (auto& m : v.error_messages)
                all += m;
            return all.find(key) != std::string::npos;
        };

        auto v = co_await s.validate();
        CHECK_FALSE(v.is_valid);
        CHECK(v.error_messages == std::vector<std::string>{"no lens", "x"});
        CHECK(v.reply == replies[0]); // kept as sent
        CHECK(v.raw() == json::parse(replies[0]));

        v = co_await s.validate();
        CHECK_FALSE(v.is_valid);
        CHECK(v.error_messages.empty());
        CHECK(v.raw().at("event_data").is_null());

        v = co_await s.validate();
        CHECK_FALSE(v.is_valid);
        CHECK(v.error_messages == std::vector<std::string>{"1", R"({"a":2})", "t"});

        v = co_await s.validate();
        CHECK(v.is_valid);
        CHECK(v.error_messages == std::vector<std::string>{"tab\txA"});

        v = co_await s.validate();
        CHECK_FALSE(v.is_valid);
        CHECK(v.error_messages == std::vector<std::string>{"bad key [redacted]"});
        CHECK_FALSE(leaks(v));
        CHECK_FALSE(v.raw().as_object().contains("api_key"));
        CHECK_FALSE(v.raw().at("event_data").as_object().contains("Api_Key"));

        v = co_await s.validate();
        CHECK(v.is_valid);

        auto failed = co_await h.failure_of(s.validate());
        CHECK(failed.code == errc::api_error);
        CHECK(failed.what.find("no such lens") != std::string::npos);
        CHECK(*next == replies.size());
    });
}

// ---- byte budgets --------------------------------------------------------------------------

TEST_CASE("session: a frame over max_message_size drops the connection with a clear error and the session reconnects")
{
    ws_harness h;
    auto& peer = h.peer();
    const std::string big = note(0, 1024 * 1024); // 1 MiB against a 64 KiB limit
    // Connection 0 answers `big.please` with the big frame; connections 1 to 7 send one
    // unsolicited at once; connection 8 behaves.
    peer.greet = [&](int i) {
        std::vector<std::string> frames;
        if (i >= 1 && i <= 7)
            frames.push_back(big);
        return frames;
    };
    peer.answer = [&](const json::value& request, int) {
        std::vector<std::string> frames;
        frames.push_back(type_of(request) == "big.please" ? big : reply_to(request));
        return frames;
    };
    peer.start();
    h.run([&]() -> task<void> {
        auto so = fast_reconnect();
        so.max_message_size = 64 * 1024;
        auto s = co_await lens::session::open(h.config_for(peer, lens::test::test_key("key-big")), peer.url(), so);
        auto lost = co_await h.failure_of(s.call("big.please"));
        CHECK(lost.code == errc::connection_lost);
        CHECK(lost.what.find("max_message_size (65536 bytes)") != std::string::npos);
        // Each oversized frame costs a connection, never its size in memory; the session
        // reconnects until the peer behaves.
        CHECK((co_await s.call("session.validate", json::object(), within(10s))).is_object());
        CHECK(s.stats().oversize_disconnects == 8);
        CHECK(s.stats().connects == 9);
        CHECK(peer.connections == 9);
        CHECK(s.stats().inbox_bytes == 0);
    });
}

TEST_CASE("session: max_message_size 0 means no limit - a 1 MiB frame arrives whole")
{
    ws_harness h;
    auto& peer = h.peer();
    const std::string big = note(0, 1024 * 1024);
    peer.answer = [&](const json::value& request, int) {
        std::vector<std::string> frames{reply_to(request)};
        if (type_of(request) == "big.please")
            frames.push_back(big);
        return frames;
    };
    peer.start();
    h.run([&]() -> task<void> {
        auto so = fast_reconnect();
        so.max_message_size = 0;
        so.inbox_max_bytes = 4 * 1024 * 1024;
        auto s = co_await lens::session::open(h.config_for(peer, lens::test::test_key("key-unlimited")), peer.url(), so);
        co_await s.call("big.please", json::object(), within(10s));
        auto v = co_await s.receive(10s);
        REQUIRE(v.has_value());
        CHECK(v->at("event_data").at("pad").as_string().size() == 1024 * 1024);
        CHECK(s.stats().oversize_disconnects == 0);
        CHECK(s.stats().connects == 1);
    });
}

TEST_CASE("session: requests made together leave together - 20 calls started in one pass take at most two writes")
{
    // The first request of a scheduler pass is written on the spot; the others made in
    // the same pass wait for its end and leave in one write, not one write each.
    ws_harness h;
    auto& peer = h.answering_peer();
    h.run([&]() -> task<void> {
        auto s = co_await lens::session::open(h.config_for(peer, lens::test::test_key("key-together")), peer.url(),
                                              fast_reconnect());
        co_await s.call("warm.up", json::object(), within(5s));
        const auto before = s.stats();
        constexpr int calls = 20;
        int answered = 0;
        auto ex = co_await asio::this_coro::executor;
        for (int i = 0; i < calls; ++i)
            asio::co_spawn(ex, s.call("together", json::object(), within(5s)),
                           [&](std::exception_ptr e, json::value) { answered += e ? 0 : 1; });
        CHECK(co_await lens::test::eventually([&] { return answered == calls; }));
        const auto after = s.stats();
        CHECK(after.requests_sent - before.requests_sent == calls);
        CHECK(after.writes - before.writes >= 1);
        CHECK(after.writes - before.writes <= 2);
        CHECK(after.connects == 1);
    });
}

TEST_CASE("session: two sessions in lockstep on one thread pace their reads - every reply arrives and the tally returns to zero")
{
    // With other sessions of the context awaiting replies, a session starts its read one
    // scheduler pass after its write (detail/read_pacing.hpp). Two lockstep callers on two
    // sessions of one context keep each other counted, so the deferred read is what
    // delivers their replies; once they stop, the context's tally is back to zero.
    ws_harness h;
    auto& peer = h.answering_peer();
    const auto tally = lens::detail::awaiting_tally_of(h.ctx.get_executor());
    h.run([&]() -> task<void> {
        const auto cfg = h.config_for(peer, lens::test::test_key("key-paced"));
        auto a = co_await lens::session::open(cfg, peer.url(), fast_reconnect());
        auto b = co_await lens::session::open(cfg, peer.url(), fast_reconnect());
        constexpr int rounds = 40;
        int answered = 0;
        std::size_t most_counted = 0;
        auto lockstep = [&](lens::session& s, std::string name) -> task<void> {
            for (int i = 0; i < rounds; ++i) {
                const auto reply = co_await s.call(name + "." + std::to_string(i), json::object(), within(5s));
                CHECK(reply.is_object());
                ++answered;
                most_counted = std::max(most_counted, tally->load());
            }
        };
        auto ex = co_await asio::this_coro::executor;
        asio::co_spawn(ex, lockstep(a, "a"), asio::detached);
        asio::co_spawn(ex, lockstep(b, "b"), asio::detached);
        CHECK(co_await lens::test::eventually([&] { return answered == 2 * rounds; }));
        CHECK(most_counted == 2); // both awaited at once: the deferred reads carried the replies
        CHECK(tally->load() == 0);
        CHECK(a.stats().connects == 1);
        CHECK(b.stats().connects == 1);
        a.close();
        b.close();
    });
    CHECK(tally->load() == 0);
}

TEST_CASE("session: a caller on a strand resumes on its strand - not inline on the session's executor")
{
    // Callers woken by a read resume at once when their executor is the io_context running
    // the read; any other executor (here a strand of the same context) gets them
    // dispatched, so the caller's code runs where it asked to.
    ws_harness h;
    auto& peer = h.answering_peer();
    h.run([&]() -> task<void> {
        auto s = co_await lens::session::open(h.config_for(peer, lens::test::test_key("key-strand")), peer.url(),
                                              fast_reconnect());
        auto strand = asio::make_strand(h.ctx);
        int answered = 0, on_strand = 0;
        asio::co_spawn(strand, [&]() -> task<void> {
            for (int i = 0; i < 10; ++i) {
                co_await s.call("on.strand", json::object(), within(5s));
                ++answered;
                on_strand += strand.running_in_this_thread() ? 1 : 0;
            }
        }, asio::detached);
        CHECK(co_await lens::test::eventually([&] { return answered == 10; }));
        CHECK(on_strand == 10);
        s.close();
    });
}

TEST_CASE("session: a caller's completion that throws out of run() does not stall the session - the others and the next read go on")
{
    // A completion handler that rethrows leaves io_context::run: the other callers, the
    // writes and the next read must still happen once run() is called again. co_spawn
    // posts its completion, so the throw comes from a handler of its own, not from inside
    // the read's inline resumption: resume_after_read's exception guard is defensive and
    // no test reaches it through the public API.
    ws_harness h;
    auto& peer = h.answering_peer();
    struct thrown {};
    std::optional<lens::session> s;
    bool opened = false;
    asio::co_spawn(h.ctx, [&]() -> task<void> {
        s.emplace(co_await lens::session::open(h.config_for(peer, lens::test::test_key("key-throws")), peer.url(),
                                               fast_reconnect()));
        co_await s->call("warm.up", json::object(), within(5s));
        opened = true;
    }, asio::detached);
    int throws = 0;
    auto run_until = [&](auto done) {
        const auto give_up = std::chrono::steady_clock::now() + 10s; // the watchdog
        while (!done() && std::chrono::steady_clock::now() < give_up) {
            try {
                h.ctx.restart();
                h.ctx.run_for(20ms);
            } catch (const thrown&) {
                ++throws;
            }
        }
        return done();
    };
    REQUIRE(run_until([&] { return opened; }));

    constexpr int calls = 4;
    int answered = 0;
    for (int i = 0; i < calls; ++i)
        asio::co_spawn(h.ctx, s->call("x", json::object(), within(5s)), [&, i](std::exception_ptr e, json::value) {
            if (i == 0)
                throw thrown{};
            answered += e ? 0 : 1;
        });
    CHECK(run_until([&] { return answered == calls - 1; }));
    CHECK(throws == 1);

    bool again = false;
    asio::co_spawn(h.ctx, s->call("after", json::object(), within(5s)), [&](std::exception_ptr e, json::value) {
        again = !e;
    });
    CHECK(run_until([&] { return again; }));
    CHECK(s->stats().connects == 1);
    s->close();
    for (auto& p : h.peers)
        p.stop();
    h.ctx.restart();
    h.ctx.run_for(200ms); // lets the close and the peer's end run out
}

TEST_CASE("session: the inbox is bounded in bytes as well as frames - oldest dropped and counted")
{
    ws_harness h;
    auto& peer = h.peer();
    peer.answer = [](const json::value& request, int) { return push_then_reply(request); };
    peer.start();
    h.run([&]() -> task<void> {
        lens::session_options so;
        so.inbox_max_bytes = 10 * 1024;
        so.inbox_capacity = 256;
        auto s = co_await lens::session::open(h.config_for(peer, lens::test::test_key("key-inbox")), peer.url(), so);
        const auto frame_bytes = note(39, 1000).size(); // the kept ones have two-digit numbers
        co_await s.call("push", push_request(40, 1000)); // 40 frames of ~1 KiB
        const auto kept = so.inbox_max_bytes / frame_bytes;
        auto st = s.stats();
        CHECK(st.inbox_bytes <= so.inbox_max_bytes);
        CHECK(st.inbox_frames == kept);
        CHECK(st.inbox_bytes == kept * frame_bytes);
        CHECK(st.inbox_dropped == 40 - kept);
        // The newest are kept, in order.
        CHECK(n_of(s.try_receive()) == static_cast<int>(40 - kept));
        CHECK(s.stats().inbox_bytes == (kept - 1) * frame_bytes);

        // A frame bigger than the whole budget is dropped on arrival; the rest stays.
        co_await s.call("push", push_request(1, 12 * 1024));
        CHECK(s.stats().inbox_dropped == 40 - kept + 1);
        CHECK(s.stats().inbox_frames == kept - 1);
        while (s.try_receive()) {
        }
        CHECK(s.stats().inbox_bytes == 0);
    });
}

TEST_CASE("session: request payloads are freed once they can never be sent again")
{
    auto o = lens::test::emulator_options();
    o.ws.query_latency = 3s; // the model thinks: the query stays pending
    ws_harness h(o);
    h.run([&]() -> task<void> {
        auto record = co_await h.create(lens::emulator::builtin::query);
        auto s = co_await lens::session::open(h.cfg, record);
        auto ex = co_await asio::this_coro::executor;
        CHECK(s.stats().pending_bytes == 0);

        // A query with a 1 MiB image: once written it can never be resent (not idempotent),
        // so its frame is freed while the reply is still awaited.
        auto q = lens::query_request::image_qa("what is this", std::string(1024 * 1024, 'i'));
        auto answer = spawn(ex, s.query(q, within(20s)));
        CHECK(co_await h.eventually([&] { return s.stats().requests_sent == 1; }));
        CHECK(co_await h.eventually([&] { return s.stats().pending_bytes == 0; }));
        CHECK(s.stats().pending == 1);
        CHECK_FALSE(answer->finished);

        // An idempotent request keeps its frame for a resend after a loss...
        h.knobs().ws.reply_delay = 2s;
        lens::call_options resendable;
        resendable.idempotent = true;
        resendable.timeout = 20s;
        json::object big;
        big["blob"] = std::string(256 * 1024, 'b');
        auto kept = spawn(ex, s.update(big, resendable));
        CHECK(co_await h.eventually([&] { return s.stats().requests_sent == 2; }));
        CHECK(s.stats().pending_bytes > 256 * 1024);
        // ...until its caller gives up: abandoned, it is never resent, so its bytes go
        // (at once, or as soon as its write completes), although the request keeps its
        // place for the late reply.
        asio::cancellation_signal cancel;
        bool gave_up = false;
        asio::co_spawn(ex, s.update(big, resendable),
                       asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e, json::value) {
                           gave_up = e != nullptr;
                       }));
        CHECK(co_await h.eventually([&] { return s.stats().requests_sent == 3; }));
        CHECK(s.stats().pending_bytes > 2 * 256 * 1024);
        cancel.emit(asio::cancellation_type::terminal);
        CHECK(co_await h.eventually([&] { return gave_up; }));
        CHECK(s.stats().pending == 3);
        CHECK(co_await h.eventually([&] { return s.stats().pending_bytes < 2 * 256 * 1024; }));
        CHECK(s.stats().pending_bytes > 256 * 1024); // the first update's, still resendable
        CHECK(co_await h.eventually([&] { return kept->finished; }, 10s));
        CHECK_FALSE(kept->error);
        CHECK(co_await h.eventually([&] { return answer->finished && s.stats().pending == 0; }, 10s));
        CHECK_FALSE(answer->error);
        CHECK(s.stats().late_replies_dropped == 1);
        CHECK(s.stats().pending_bytes == 0);
    });
}
