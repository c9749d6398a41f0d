#include <lens/client.hpp>

#include "detail/base64.hpp"
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

#include <fstream>
#include <random>

namespace lens {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using detail::clock;

namespace {

/// `Retry-After` as delta-seconds; HTTP-dates are rare on APIs and fall back to our backoff.
std::optional<std::chrono::milliseconds> retry_after(const detail::http_response& resp)
{
    const auto it = resp.find(http::field::retry_after);
    if (it == resp.end())
        return std::nullopt;
    const auto value = it->value();
    unsigned long seconds = 0;
    if (value.empty() || value.size() > 9)
        return std::nullopt;
    for (char c : value) {
        if (c < '0' || c > '9')
            return std::nullopt;
        seconds = seconds * 10 + static_cast<unsigned long>(c - '0');
    }
    return std::chrono::seconds(seconds);
}

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
    config cfg;
    detail::origin where;
    std::shared_ptr<asio::ssl::context> tls;
    std::vector<std::unique_ptr<detail::http_connection>> idle;

    impl(asio::any_io_executor ex, config c)
        : executor(std::move(ex)), cfg(std::move(c)), where(detail::parse_origin(cfg.endpoint, "client"))
    {
        if (where.tls)
            tls = detail::make_tls_context(cfg);
    }

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
        const auto connect_deadline = std::min(deadline, clock::now() + cfg.connect_timeout);
        co_return co_await detail::http_connection::connect(where, tls.get(), connect_deadline, operation);
    }

    void release(std::unique_ptr<detail::http_connection> conn)
    {
        if (idle.size() < cfg.max_idle_connections)
            idle.push_back(std::move(conn));
    }

    detail::http_request build(const detail::rest_call& call) const
    {
        detail::http_request req{call.method, where.target(call.path), 11};
        req.set(http::field::host, where.host_header());
        req.set(http::field::user_agent, cfg.user_agent);
        req.set(http::field::authorization, "Bearer " + cfg.api_key);
        req.set(http::field::accept, "application/json");
        if (!call.body.empty() || call.method == http::verb::post) {
            req.set(http::field::content_type, call.content_type.empty() ? "application/json" : call.content_type);
            req.body() = call.body;
        }
        req.keep_alive(true);
        req.prepare_payload();
        return req;
    }

    /// One call: attempts, backoff, deadline. Returns the final 2xx..4xx response
    /// (4xx and exhausted transient statuses are thrown as lens::error).
    asio::awaitable<detail::http_response> exchange(const detail::rest_call& call)
    {
        const auto deadline = clock::now() + cfg.timeout;
        backoff schedule(cfg.retry.backoff);
        const unsigned max_attempts = std::max(1u, cfg.retry.max_attempts);
        for (unsigned attempt = 1;; ++attempt) {
            std::exception_ptr failure;
            std::optional<std::chrono::milliseconds> server_wait;
            try {
                auto conn = co_await acquire(deadline, call.operation);
                auto req = build(call);
                auto resp = co_await conn->round_trip(req, deadline, cfg.max_body_size, call.operation);
                if (resp.keep_alive())
                    release(std::move(conn));
                const unsigned status = resp.result_int();
                const bool transient = status == 429 || status >= 500;
                if (status < 400)
                    co_return resp;
                // A 429 was refused unprocessed; a 5xx may have been processed.
                if (!transient || !(status == 429 || call.idempotent) || attempt >= max_attempts)
                    throw detail::status_error(resp, call.operation);
                server_wait = retry_after(resp);
                failure = std::make_exception_ptr(detail::status_error(resp, call.operation));
            } catch (const detail::transport_error& e) {
                const bool safe = e.stage() == detail::failure_stage::connect || call.idempotent;
                // A timeout is final once the call's deadline passed; a connection attempt that
                // only ran out of `connect_timeout` is retried like any failed connect.
                const bool out_of_time = e.code() == errc::timeout && clock::now() >= deadline;
                const bool permanent = e.code() == errc::body_too_large || e.code() == errc::certificate_rejected;
                if (out_of_time || permanent || !safe || attempt >= max_attempts)
                    throw;
                failure = std::current_exception();
            }
            auto delay = schedule.next_delay().value_or(cfg.retry.backoff.max);
            if (server_wait && *server_wait > delay)
                delay = *server_wait;
            if (clock::now() + delay >= deadline)
                std::rethrow_exception(failure); // waiting would outlive the deadline
            asio::steady_timer timer(executor, delay);
            co_await timer.async_wait(asio::use_awaitable);
        }
    }

    asio::awaitable<json::value> call_json(const detail::rest_call& call)
    {
        auto resp = co_await exchange(call);
        co_return detail::success_body(resp, call.operation);
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

const config& client::configuration() const noexcept { return impl_->cfg; }
asio::any_io_executor client::get_executor() const noexcept { return impl_->executor; }

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

task<json::value> client::lens_info()
{
    co_return co_await impl_->call_json(rest_call::get("lens/info", "lens/info"));
}

task<std::vector<lens_record>> client::list_lenses()
{
    auto body = co_await impl_->call_json(rest_call::get(
        metadata_query("lens/metadata"), "lens/metadata"));
    co_return records_of<lens_record>(body, "lens/metadata");
}

task<lens_record> client::get_lens(std::string lens_id)
{
    auto body = co_await impl_->call_json(rest_call::get(
        metadata_query("lens/metadata", "lens_id", lens_id),
        "lens/metadata"));
    auto all = records_of<lens_record>(body, "lens/metadata");
    for (auto& r : all)
        if (r.lens_id == lens_id)
            co_return std::move(r);
    throw lens::error(errc::not_found, "lens/metadata", "no lens " + lens_id);
}

task<lens_record> client::register_lens(std::string lens_name, json::object lens_config)
{
    auto call = rest_call::post("lens/register", register_body(lens_name, std::move(lens_config)), "lens/register");
    auto body = co_await impl_->call_json(call);
    co_return detail::decode<lens_record>(body, "lens/register");
}

task<lens_record> client::clone_lens(std::string lens_id)
{
    auto body = co_await impl_->call_json(
        rest_call::post("lens/clone", json_member("lens_id", json::value(lens_id)), "lens/clone"));
    co_return detail::decode<lens_record>(body, "lens/clone");
}

task<lens_record> client::modify_lens(std::string lens_id, json::object fields)
{
    fields["lens_id"] = lens_id;
    auto body = co_await impl_->call_json(
        rest_call::post("lens/modify", json_body(std::move(fields)), "lens/modify"));
    co_return detail::decode<lens_record>(body, "lens/modify");
}

task<void> client::delete_lens(std::string lens_id)
{
    auto call = rest_call::post("lens/delete", json_member("lens_id", json::value(lens_id)), "lens/delete");
    call.idempotent = true;
    co_await impl_->call_json(call);
}

task<json::value> client::sessions_info()
{
    co_return co_await impl_->call_json(rest_call::get("lens/sessions/info", "sessions/info"));
}

task<std::vector<session_record>> client::list_sessions()
{
    auto body = co_await impl_->call_json(rest_call::get(
        metadata_query("lens/sessions/metadata"),
        "sessions/metadata"));
    co_return records_of<session_record>(body, "sessions/metadata");
}

task<session_record> client::get_session(std::string session_id)
{
    auto body = co_await impl_->call_json(rest_call::get(
        metadata_query("lens/sessions/metadata", "session_id", session_id),
        "sessions/metadata"));
    for (auto& r : records_of<session_record>(body, "sessions/metadata"))
        if (r.session_id == session_id)
            co_return std::move(r);
    throw lens::error(errc::not_found, "sessions/metadata", "no session " + session_id);
}

task<session_record> client::create_session(std::string lens_id)
{
    auto body = co_await impl_->call_json(
        rest_call::post("lens/sessions/create", json_member("lens_id", json::value(lens_id)), "sessions/create"));
    co_return detail::decode<session_record>(body, "sessions/create");
}

task<session_record> client::destroy_session(std::string session_id)
{
    auto call = rest_call::post("lens/sessions/destroy", json_member("session_id", json::value(session_id)),
                                "sessions/destroy");
    call.idempotent = true; // destroying twice leaves the same state
    auto body = co_await impl_->call_json(call);
    co_return detail::decode<session_record>(body, "sessions/destroy");
}

task<json::value> client::process_event(std::string session_id, std::string type, json::value event_data)
{
    auto call = rest_call::post("lens/sessions/events/process",
                                process_body(session_id, type, std::move(event_data)), "sessions/events/process");
    auto body = co_await impl_->call_json(call);
    scrub_secrets(body);
    co_return body;
}

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

task<file_record> client::upload_file(std::filesystem::path path)
{
    const auto name = path.filename().string();
    if (content_type_for(name).empty()) // reject before reading a possibly large file
        (void)multipart_upload("files", "files/upload", name, {});
    auto contents = read_whole_file(path, "files/upload");
    co_return co_await upload_file(name, std::move(contents));
}

task<file_record> client::upload_file(std::string file_name, std::string contents)
{
    file_name = file_name_of(file_name);
    auto call = multipart_upload("files", "files/upload", file_name, contents);
    auto body = co_await impl_->call_json(call);
    co_return detail::decode<file_record>(body, "files/upload");
}

task<file_record> client::upload_file_base64(std::string file_name, std::string contents)
{
    file_name = file_name_of(file_name);
    auto call = multipart_upload("files/base64", "files/upload-base64", file_name, detail::base64_encode(contents));
    auto body = co_await impl_->call_json(call);
    co_return detail::decode<file_record>(body, "files/upload-base64");
}

task<json::value> client::files_info()
{
    co_return co_await impl_->call_json(rest_call::get("files/info", "files/info"));
}

task<std::vector<file_record>> client::list_files()
{
    auto body = co_await impl_->call_json(rest_call::get("files/metadata", "files/metadata"));
    co_return records_of<file_record>(body, "files/metadata");
}

task<file_record> client::get_file(std::string file_id)
{
    auto body = co_await impl_->call_json(
        rest_call::get("files/metadata/" + detail::encode_segment(file_id), "files/metadata"));
    if (body.is_array() && !body.get_array().empty())
        co_return detail::decode<file_record>(body.get_array().front(), "files/metadata");
    co_return detail::decode<file_record>(body, "files/metadata");
}

task<std::string> client::download_file(std::string file_id)
{
    auto resp = co_await impl_->exchange(
        rest_call::get("files/download/" + detail::encode_segment(file_id), "files/download"));
    co_return std::move(resp.body());
}

task<void> client::delete_file(std::string file_id)
{
    auto call = rest_call::get("files/delete/" + detail::encode_segment(file_id), "files/delete");
    call.method = http::verb::delete_;
    co_await impl_->call_json(call);
}

} // namespace lens
