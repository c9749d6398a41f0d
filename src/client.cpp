#include <lens/client.hpp>

#include "detail/base64.hpp"
#include "detail/endpoint.hpp"
#include "detail/http_connection.hpp"
#include "detail/rest.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/version.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_to.hpp>
#include <boost/url/url.hpp>

#include <lens/detail/deadline.hpp>
#include <lens/event_stream.hpp>
#include <lens/retry.hpp>
#include <lens/session.hpp>

#include <fstream>
#include <random>

namespace lens {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using detail::clock;

namespace {

std::string_view extension_of(std::string_view name)
{
    const auto dot = name.rfind('.');
    const auto slash = name.find_last_of("/\\");
    if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash))
        return {};
    return name.substr(dot + 1);
}

std::string random_boundary()
{
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    char buf[33];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()));
    return std::string("lens-") + buf;
}

} // namespace

std::string_view content_type_for(std::string_view file_name) noexcept
{
    std::string ext(extension_of(file_name));
    for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (ext == "png") return "image/png";
    if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
    if (ext == "mp4") return "video/mp4";
    if (ext == "csv") return "text/csv";
    if (ext == "json" || ext == "jsonl" || ext == "txt") return "text/plain";
    return {};
}

// ---------------------------------------------------------------------------

struct client::impl {
    asio::any_io_executor executor;
    std::shared_ptr<const detail::endpoint> ep;
    std::vector<std::unique_ptr<detail::http_connection>> idle;
    backoff jitter; ///< only its random source: the schedule is decide_retry's
    client_stats counters; ///< shared by the client's copies; client::stats()

    impl(asio::any_io_executor ex, config c)
        : executor(std::move(ex)), ep(std::make_shared<const detail::endpoint>(std::move(c))),
          jitter(ep->settings().retry.backoff)
    {
    }

    const config& cfg() const noexcept { return ep->settings(); }

    asio::awaitable<std::unique_ptr<detail::http_connection>>
    acquire(clock::time_point deadline, std::string_view operation)
    {
        while (!idle.empty()) {
            auto conn = std::move(idle.back());
            idle.pop_back();
            if (conn->still_open())
                co_return conn;
        }
        // Each connection attempt gets `connect_timeout`, within what is left of the call's deadline.
        const auto connect_deadline = std::min(deadline, detail::deadline_after(clock::now(), cfg().connect_timeout));
        auto conn = co_await detail::http_connection::connect(ep->rest(), ep->tls_for(ep->rest()), connect_deadline,
                                                              operation);
        ++counters.connections_opened;
        if (ep->logs(log_level::debug)) {
            log_record r;
            r.level = log_level::debug;
            r.event = "connect";
            r.source = "rest";
            r.operation = operation;
            const auto host = ep->rest().host_header();
            r.target = host;
            ep->log(r);
        }
        co_return conn;
    }

    void release(std::unique_ptr<detail::http_connection> conn)
    {
        if (idle.size() < cfg().max_idle_connections)
            idle.push_back(std::move(conn));
    }

    detail::http_request build(const detail::rest_call& call) const
    {
        detail::http_request req{call.method, ep->rest().target(call.path), 11};
        ep->set_common_headers(req, ep->rest());
        req.set(http::field::accept, "application/json");
        if (!call.body.empty() || call.method == http::verb::post) {
            req.set(http::field::content_type, call.content_type.empty() ? "application/json" : call.content_type);
            req.body() = call.body;
        }
        req.keep_alive(true);
        req.prepare_payload();
        return req;
    }

    /// One call: attempts, backoff, deadline; every retry decided by lens::decide_retry.
    /// Returns the final 2xx/3xx response; error statuses are thrown as lens::error.
    /// `self` keeps the client's state alive for the whole call, whatever happens to
    /// the `client` objects meanwhile.
    static asio::awaitable<detail::http_response> exchange(std::shared_ptr<impl> self, const detail::rest_call& call,
                                                           std::size_t body_limit)
    {
        const auto& cfg = self->cfg();
        const auto deadline = detail::deadline_after(clock::now(), cfg.timeout);
        const unsigned max_attempts = std::max(1u, cfg.retry.max_attempts);
        auto& counters = self->counters;
        ++counters.calls;
        // Counts the call as failed unless it returns a reply (errors and cancellation alike).
        struct call_outcome {
            client_stats& counters;
            bool succeeded = false;
            ~call_outcome() { ++(succeeded ? counters.succeeded : counters.failed); }
        } outcome{counters};
        for (unsigned attempt = 1;; ++attempt) {
            std::exception_ptr failure;
            attempt_failure what;
            unsigned status = 0;
            ++counters.attempts;
            if (attempt > 1)
                ++counters.retries;
            try {
                auto conn = co_await self->acquire(deadline, call.operation);
                auto req = self->build(call);
                counters.bytes_sent += req.body().size();
                auto resp = co_await conn->round_trip(req, deadline, body_limit, call.operation);
                counters.bytes_received += resp.body().size();
                if (resp.keep_alive())
                    self->release(std::move(conn));
                status = resp.result_int();
                if (status < 400) {
                    outcome.succeeded = true;
                    co_return resp;
                }
                what.code = status_condition(status);
                what.request_sent = true;
                what.server_delay = parse_retry_after(resp[http::field::retry_after]);
                failure = std::make_exception_ptr(detail::status_error(resp, call.operation, *self->ep));
            } catch (const detail::transport_error& e) {
                what.code = e.code();
                what.request_sent = e.stage() != detail::failure_stage::connect;
                failure = std::current_exception();
            }
            self->count_failure(status, what.code);
            const auto now = clock::now();
            const auto next = decide_retry(cfg.retry.backoff, max_attempts, what, call.idempotent, attempt, now,
                                           deadline, self->jitter.sample());
            self->log_failure(call, attempt, status, what, next, now, failure);
            if (!next.retry)
                std::rethrow_exception(failure);
            asio::steady_timer timer(self->executor, next.at);
            co_await timer.async_wait(asio::use_awaitable);
        }
    }

    /// One failed attempt in client_stats, by outcome.
    void count_failure(unsigned status, const boost::system::error_code& code) noexcept
    {
        if (status == 429)
            ++counters.rate_limited;
        else if (status >= 500 && status < 600)
            ++counters.server_errors;
        else if (code == errc::timeout)
            ++counters.timeouts;
        else if (status != 0)
            ++counters.http_errors;
        else if (code == errc::connection_failed)
            ++counters.connection_failures;
        else if (code == errc::connection_lost)
            ++counters.connections_lost;
    }

    /// The records of a failed attempt: `rate_limited` (debug) for a 429, then `retry`
    /// (warning) when it is retried, or `give_up` (error) when a transient failure ends
    /// the call. A final status (401, 404...) is the caller's to report: no record.
    void log_failure(const detail::rest_call& call, unsigned attempt, unsigned status, const attempt_failure& what,
                     const retry_decision& next, clock::time_point now, const std::exception_ptr& failure) const
    {
        if (!ep->logs(log_level::error))
            return; // off (nothing is enabled when error is not): no record is built
        log_record r;
        r.source = "rest";
        r.operation = call.operation;
        r.http_status = status;
        r.code = what.code;
        r.attempt = attempt;
        if (status == 429 && ep->logs(log_level::debug)) { // the server's hint, before clamping
            r.level = log_level::debug;
            r.event = "rate_limited";
            r.server_delay = what.server_delay;
            ep->log(r);
            r.server_delay.reset();
        }
        if (next.retry) {
            r.level = log_level::warning;
            r.event = "retry";
        } else if (is_retryable(what.code)) {
            r.level = log_level::error;
            r.event = "give_up";
        } else {
            return;
        }
        if (!ep->logs(r.level))
            return;
        if (next.retry)
            r.delay = std::chrono::ceil<std::chrono::milliseconds>(std::max(next.at - now, clock::duration::zero()));
        else
            r.code = next.code;
        std::string reason;
        try {
            std::rethrow_exception(failure);
        } catch (const std::exception& e) {
            reason = e.what(); // already free of the key; the endpoint scrubs it again
        }
        r.reason = reason;
        ep->log(r);
    }

    static asio::awaitable<json::value> call_json(std::shared_ptr<impl> self, const detail::rest_call& call)
    {
        const auto limit = self->cfg().max_reply_size;
        auto resp = co_await exchange(self, call, limit);
        co_return detail::success_body(resp, call.operation, *self->ep);
    }
};

// ---------------------------------------------------------------------------

client::client(asio::any_io_executor executor, config cfg)
    : impl_(std::make_shared<impl>(std::move(executor), std::move(cfg)))
{
}
client::~client() = default;
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;

const config& client::configuration() const { return checked("client.configuration").cfg(); }
asio::any_io_executor client::get_executor() const { return checked("client.get_executor").executor; }
client_stats client::stats() const noexcept { return impl_ ? impl_->counters : client_stats{}; }
asio::any_io_executor client::token_executor() const noexcept
{
    return impl_ ? impl_->executor : asio::any_io_executor();
}

namespace {

using detail::rest_call;

std::string json_body(json::object o) { return json::serialize(o); }

/// `{"key": value}` serialized (g++ 12 rejects braced initializer lists in coroutines).
std::string json_member(std::string_view key, json::value value)
{
    json::object o;
    o[key] = std::move(value);
    return json::serialize(o);
}

std::string register_body(std::string_view lens_name, json::object lens_config)
{
    json::object inner;
    inner["lens_name"] = lens_name;
    inner["lens_config"] = std::move(lens_config);
    return json_member("lens_config", std::move(inner));
}

std::string process_body(std::string_view session_id, std::string_view type, json::value event_data)
{
    json::object event;
    event["type"] = type;
    if (!event_data.is_null())
        event["event_data"] = std::move(event_data);
    json::object body;
    body["session_id"] = session_id;
    body["event"] = std::move(event);
    return json::serialize(body);
}

/// "lens/metadata?shard_index=-1&max_items_per_shard=-1[&key=value]", encoded by Boost.URL.
/// (A plain function rather than an initializer list: g++ 12 rejects braced arrays
/// inside coroutine bodies.)
std::string metadata_query(std::string_view path, std::string_view key = {}, std::string_view value = {})
{
    boost::urls::url u;
    u.set_path(path);
    u.params().append({"shard_index", "-1"});
    u.params().append({"max_items_per_shard", "-1"});
    if (!key.empty())
        u.params().append({key, value});
    return std::string(u.buffer());
}

template <class Record>
std::vector<Record> records_of(const json::value& body, std::string_view operation)
{
    const json::array* list = body.if_array();
    if (!list) {
        // Tolerate a wrapper object holding the list under some key.
        if (auto* o = body.if_object())
            for (auto& [k, v] : *o)
                if (v.is_array()) { list = &v.get_array(); break; }
    }
    if (!list)
        throw_error(errc::invalid_response, std::string(operation), "expected a list of records");
    std::vector<Record> out;
    out.reserve(list->size());
    for (auto& item : *list)
        out.push_back(detail::decode<Record>(item, operation));
    return out;
}

std::string file_name_of(const std::string& path)
{
    return std::filesystem::path(path).filename().string();
}

} // namespace

namespace {

rest_call multipart_upload(std::string path, std::string_view operation, const std::string& file_name,
                           std::string_view contents)
{
    const auto type = content_type_for(file_name);
    if (type.empty())
        throw lens::error(errc::invalid_argument, std::string(operation),
                          "unsupported file type '" + file_name +
                              "' (accepted: png, jpg, jpeg, mp4, csv, json, jsonl, txt)");
    if (file_name.find_first_of("\r\n") != std::string::npos)
        throw lens::error(errc::invalid_argument, std::string(operation), "file name contains a line break");
    std::string quoted;
    for (char c : file_name)
        quoted += c == '"' ? std::string("%22") : std::string(1, c);
    const auto boundary = random_boundary();
    std::string body;
    body.reserve(contents.size() + 256);
    body += "--" + boundary + "\r\n";
    body += "Content-Disposition: form-data; name=\"file\"; filename=\"" + quoted + "\"\r\n";
    body += "Content-Type: " + std::string(type) + "\r\n\r\n";
    body += contents;
    body += "\r\n--" + boundary + "--\r\n";
    auto call = rest_call::post(std::move(path), std::move(body), operation);
    call.content_type = "multipart/form-data; boundary=" + boundary;
    return call;
}

std::string read_whole_file(const std::filesystem::path& path, std::string_view operation)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw lens::error(errc::invalid_argument, std::string(operation), "cannot open " + path.string());
    return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace

// Every operation is an ordinary member function that hands a copy of the shared state
// to a coroutine: the coroutine never touches `this`, so the client object may be
// destroyed (or moved from) while the call is in flight.
namespace ops {

using self_ptr = std::shared_ptr<client::impl>;

/// The moved-from check, inside the coroutine: reported when the call is awaited.
void require(const self_ptr& self, std::string_view operation)
{
    if (!self)
        throw lens::error(errc::closed, std::string(operation), "the client was moved from");
}

task<json::value> call_json(self_ptr self, rest_call call)
{
    require(self, call.operation);
    co_return co_await client::impl::call_json(self, call);
}

template <class Record>
task<std::vector<Record>> list(self_ptr self, rest_call call)
{
    require(self, call.operation);
    auto body = co_await client::impl::call_json(self, call);
    co_return records_of<Record>(body, call.operation);
}

template <class Record>
task<Record> one(self_ptr self, rest_call call)
{
    require(self, call.operation);
    auto body = co_await client::impl::call_json(self, call);
    co_return detail::decode<Record>(body, call.operation);
}

/// A metadata list filtered by id: the record whose `member` is `id`, else not_found.
template <class Record>
task<Record> find(self_ptr self, rest_call call, std::string Record::*member, std::string id)
{
    require(self, call.operation);
    auto body = co_await client::impl::call_json(self, call);
    for (auto& r : records_of<Record>(body, call.operation))
        if (r.*member == id)
            co_return std::move(r);
    throw lens::error(errc::not_found, std::string(call.operation), "no record with id " + id);
}

task<void> discard(self_ptr self, rest_call call)
{
    require(self, call.operation);
    co_await client::impl::call_json(self, call);
}

task<json::value> scrubbed(self_ptr self, rest_call call)
{
    require(self, call.operation);
    auto body = co_await client::impl::call_json(self, call);
    scrub_secrets(body);
    co_return body;
}

task<file_record> first_file(self_ptr self, rest_call call)
{
    require(self, call.operation);
    auto body = co_await client::impl::call_json(self, call);
    if (body.is_array() && !body.get_array().empty())
        co_return detail::decode<file_record>(body.get_array().front(), call.operation);
    co_return detail::decode<file_record>(body, call.operation);
}

task<std::string> download(self_ptr self, rest_call call)
{
    require(self, call.operation);
    auto resp = co_await client::impl::exchange(self, call, self->cfg().max_body_size);
    co_return std::move(resp.body());
}

task<file_record> upload_path(self_ptr self, std::filesystem::path path)
{
    require(self, "files/upload");
    const auto name = path.filename().string();
    if (content_type_for(name).empty()) // reject before reading a possibly large file
        (void)multipart_upload("files", "files/upload", name, {});
    auto contents = read_whole_file(path, "files/upload");
    auto body = co_await client::impl::call_json(self, multipart_upload("files", "files/upload", name, contents));
    co_return detail::decode<file_record>(body, "files/upload");
}

} // namespace ops

client::impl& client::checked(const char* operation) const
{
    if (!impl_)
        throw lens::error(errc::closed, operation, "the client was moved from");
    return *impl_;
}

task<json::value> client::lens_info_task()
{
    return ops::call_json(impl_, rest_call::get("lens/info", "lens/info"));
}

task<std::vector<lens_record>> client::list_lenses_task()
{
    return ops::list<lens_record>(impl_, rest_call::get(metadata_query("lens/metadata"), "lens/metadata"));
}

task<lens_record> client::get_lens_task(std::string&& lens_id)
{
    return ops::find<lens_record>(impl_, rest_call::get(metadata_query("lens/metadata", "lens_id", lens_id),
                                                        "lens/metadata"),
                                  &lens_record::lens_id, lens_id); // copied: argument order is unspecified
}

task<lens_record> client::register_lens_task(std::string&& lens_name, json::object&& lens_config)
{
    return ops::one<lens_record>(
        impl_, rest_call::post("lens/register", register_body(lens_name, std::move(lens_config)), "lens/register"));
}

task<lens_record> client::clone_lens_task(std::string&& lens_id)
{
    return ops::one<lens_record>(
        impl_, rest_call::post("lens/clone", json_member("lens_id", json::value(lens_id)), "lens/clone"));
}

task<lens_record> client::modify_lens_task(std::string&& lens_id, json::object&& fields)
{
    fields["lens_id"] = lens_id;
    return ops::one<lens_record>(impl_, rest_call::post("lens/modify", json_body(std::move(fields)), "lens/modify"));
}

task<void> client::delete_lens_task(std::string&& lens_id)
{
    auto call = rest_call::post("lens/delete", json_member("lens_id", json::value(lens_id)), "lens/delete");
    call.idempotent = true;
    return ops::discard(impl_, std::move(call));
}

task<json::value> client::sessions_info_task()
{
    return ops::call_json(impl_, rest_call::get("lens/sessions/info", "sessions/info"));
}

task<std::vector<session_record>> client::list_sessions_task()
{
    return ops::list<session_record>(impl_,
                                     rest_call::get(metadata_query("lens/sessions/metadata"), "sessions/metadata"));
}

task<session_record> client::get_session_task(std::string&& session_id)
{
    return ops::find<session_record>(
        impl_, rest_call::get(metadata_query("lens/sessions/metadata", "session_id", session_id), "sessions/metadata"),
        &session_record::session_id, session_id); // copied: argument order is unspecified
}

task<session_record> client::create_session_task(std::string&& lens_id)
{
    return ops::one<session_record>(
        impl_, rest_call::post("lens/sessions/create", json_member("lens_id", json::value(lens_id)), "sessions/create"));
}

task<session_record> client::destroy_session_task(std::string&& session_id)
{
    auto call = rest_call::post("lens/sessions/destroy", json_member("session_id", json::value(session_id)),
                                "sessions/destroy");
    call.idempotent = true; // destroying twice leaves the same state
    return ops::one<session_record>(impl_, std::move(call));
}

task<json::value> client::process_event_task(std::string&& session_id, std::string&& type, json::value&& event_data)
{
    return ops::scrubbed(impl_, rest_call::post("lens/sessions/events/process",
                                                process_body(session_id, type, std::move(event_data)),
                                                "sessions/events/process"));
}

task<file_record> client::upload_file_task(std::filesystem::path&& path)
{
    return ops::upload_path(impl_, std::move(path));
}

task<file_record> client::upload_file_task(std::string&& file_name, std::string&& contents)
{
    file_name = file_name_of(file_name);
    return ops::one<file_record>(impl_, multipart_upload("files", "files/upload", file_name, contents));
}

task<file_record> client::upload_file_base64_task(std::string&& file_name, std::string&& contents)
{
    file_name = file_name_of(file_name);
    return ops::one<file_record>(
        impl_, multipart_upload("files/base64", "files/upload-base64", file_name, detail::base64_encode(contents)));
}

task<json::value> client::files_info_task()
{
    return ops::call_json(impl_, rest_call::get("files/info", "files/info"));
}

task<std::vector<file_record>> client::list_files_task()
{
    return ops::list<file_record>(impl_, rest_call::get("files/metadata", "files/metadata"));
}

task<file_record> client::get_file_task(std::string&& file_id)
{
    return ops::first_file(impl_, rest_call::get("files/metadata/" + detail::encode_segment(file_id), "files/metadata"));
}

task<std::string> client::download_file_task(std::string&& file_id)
{
    return ops::download(impl_, rest_call::get("files/download/" + detail::encode_segment(file_id), "files/download"));
}

task<void> client::delete_file_task(std::string&& file_id)
{
    auto call = rest_call::get("files/delete/" + detail::encode_segment(file_id), "files/delete");
    call.method = http::verb::delete_;
    return ops::discard(impl_, std::move(call));
}

// ---- sessions and streams sharing the endpoint ----------------------------------

task<session> client::open_session_task(const session_record& record, const session_options& opts) const
{
    return session::open(checked("session.open").ep, record.session_endpoint, opts);
}

task<session> client::open_session_task(const session_record& record) const
{
    return open_session_task(record, session::default_options());
}

event_stream client::events(std::string session_id, const event_stream_options& opts) const
{
    auto& i = checked("events");
    return event_stream(i.executor, i.ep, std::move(session_id), opts);
}

event_stream client::events(std::string session_id) const
{
    return events(std::move(session_id), event_stream_options{});
}

} // namespace lens
