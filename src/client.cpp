#include <lens/client.hpp>

#include "detail/base64.hpp"
#include "detail/endpoint.hpp"
#include "detail/http_connection.hpp"
#include "detail/tls_resumption.hpp"
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

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <functional>
#include <optional>
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

    /// One attempt of a streamed call (lens/transfer.hpp), run by `exchange` on a connection
    /// in place of the buffered request and reply: it writes and reads by itself, each
    /// step bounded by its stall timeout, and says whether its failures may be retried.
    struct streamed_attempt {
        virtual ~streamed_attempt() = default;
        /// Sends the request and reads the reply on `conn`: a reply below 400 with its body
        /// already consumed (the header only), or an error reply with its body.
        virtual asio::awaitable<detail::http_response> run(detail::http_connection& conn) = 0;
        /// False once a retry could no longer start over cleanly (a sink was fed).
        virtual bool may_retry() const noexcept { return true; }
    };

    /// One call: attempts, backoff, deadline; every retry decided by lens::decide_retry.
    /// A `streamed` call has no whole-call deadline (its attempt bounds each stall; the
    /// connection attempts keep `connect_timeout`), and its attempt does the I/O.
    /// Returns the final 2xx/3xx response; error statuses are thrown as lens::error.
    /// `self` keeps the client's state alive for the whole call, whatever happens to
    /// the `client` objects meanwhile.
    static asio::awaitable<detail::http_response> exchange(std::shared_ptr<impl> self, const detail::rest_call& call,
                                                           std::size_t body_limit,
                                                           streamed_attempt* streamed = nullptr)
    {
        const auto& cfg = self->cfg();
        const auto deadline =
            streamed ? clock::time_point::max() : detail::deadline_after(clock::now(), cfg.timeout);
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
                detail::http_response resp;
                if (streamed) {
                    resp = co_await streamed->run(*conn);
                } else {
                    auto req = self->build(call);
                    counters.bytes_sent += req.body().size();
                    resp = co_await conn->round_trip(req, deadline, body_limit, call.operation);
                }
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
            const bool restartable = !streamed || streamed->may_retry();
            const unsigned attempts_allowed = restartable ? max_attempts : attempt;
            const auto next = decide_retry(cfg.retry.backoff, attempts_allowed, what, call.idempotent, attempt, now,
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
client_stats client::stats() const noexcept
{
    if (!impl_)
        return {};
    client_stats s = impl_->counters;
    if (impl_->ep->rest().tls) { // the context exists (made at construction)
        const auto tls = detail::tls_handshakes(impl_->ep->tls().native_handle());
        s.tls_handshakes = tls.handshakes;
        s.tls_resumed = tls.resumed;
    }
    return s;
}
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

/// "lens/metadata?shard_index=I&max_items_per_shard=N[&key=value]" (-1 and -1 by default:
/// everything), encoded by Boost.URL. (A plain function rather than an initializer list:
/// g++ 12 rejects braced arrays inside coroutine bodies.)
std::string metadata_query(std::string_view path, page p, std::string_view key = {}, std::string_view value = {})
{
    boost::urls::url u;
    u.set_path(path);
    const std::string index = std::to_string(p.shard_index);
    const std::string size = std::to_string(p.max_items_per_shard);
    u.params().append({"shard_index", index});
    u.params().append({"max_items_per_shard", size});
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

/// What surrounds a file's bytes in the one-part multipart/form-data body of an upload.
struct multipart_envelope {
    std::string content_type; ///< the request's, with the boundary
    std::string head;         ///< the boundary and the part's headers
    std::string tail;         ///< the closing boundary
};

/// The envelope of `file_name`; throws errc::invalid_argument for a type the API rejects
/// or a name that would break the part's headers.
multipart_envelope multipart_for(std::string_view operation, const std::string& file_name)
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
    multipart_envelope e;
    e.content_type = "multipart/form-data; boundary=" + boundary;
    e.head = "--" + boundary + "\r\n";
    e.head += "Content-Disposition: form-data; name=\"file\"; filename=\"" + quoted + "\"\r\n";
    e.head += "Content-Type: " + std::string(type) + "\r\n\r\n";
    e.tail = "\r\n--" + boundary + "--\r\n";
    return e;
}

rest_call multipart_upload(std::string path, std::string_view operation, const std::string& file_name,
                           std::string_view contents)
{
    auto e = multipart_for(operation, file_name);
    std::string body;
    body.reserve(e.head.size() + contents.size() + e.tail.size());
    body += e.head;
    body += contents;
    body += e.tail;
    auto call = rest_call::post(std::move(path), std::move(body), operation);
    call.content_type = std::move(e.content_type);
    return call;
}

/// A local file error: the OS's code (errno, which the caller cleared before the failed
/// call; EIO when the stream library failed without setting it), naming the operation and the file.
[[noreturn]] void throw_file_error(std::string_view operation, std::string what, const std::filesystem::path& path)
{
    const int err = errno != 0 ? errno : EIO;
    throw lens::error(boost::system::error_code(err, boost::system::system_category()), std::string(operation),
                      what + " " + path.string());
}

std::size_t chunk_size_of(const transfer_options& opts) { return std::max<std::size_t>(opts.chunk_size, 4096); }

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

/// A multipart upload streamed from disk: the envelope's head, the file a chunk at a
/// time, the tail; Content-Length computed up front from the file's size. Each attempt
/// reads the file from its start (an upload is retried only when surely unprocessed).
class upload_attempt final : public client::impl::streamed_attempt {
public:
    upload_attempt(client::impl& self, const rest_call& call, std::filesystem::path path, std::uint64_t size,
                   const multipart_envelope& envelope, const transfer_options& opts)
        : self_(self), call_(call), path_(std::move(path)), size_(size), envelope_(envelope), opts_(opts)
    {
    }

    asio::awaitable<detail::http_response> run(detail::http_connection& conn) override
    {
        errno = 0;
        std::ifstream in(path_, std::ios::binary);
        if (!in)
            throw_file_error(call_.operation, "cannot open", path_);
        detail::streamed_request req(http::verb::post, self_.ep->rest().target(call_.path), 11);
        self_.ep->set_common_headers(req, self_.ep->rest());
        req.set(http::field::accept, "application/json");
        req.set(http::field::content_type, envelope_.content_type);
        req.keep_alive(true);
        req.content_length(envelope_.head.size() + size_ + envelope_.tail.size());
        const auto stall = opts_.stall_timeout;
        co_await conn.write_header(req, stall, call_.operation);
        co_await conn.write_chunk(asio::buffer(envelope_.head), stall, call_.operation);
        std::vector<char> chunk(chunk_size_of(opts_));
        std::uint64_t done = 0;
        while (done < size_) {
            const auto want = static_cast<std::streamsize>(std::min<std::uint64_t>(chunk.size(), size_ - done));
            errno = 0; // socket calls leave EAGAIN behind: only this read's cause may be reported
            in.read(chunk.data(), want);
            if (in.gcount() != want) // the file shrank (or failed) under us: the length sent is now a lie
                throw_file_error(call_.operation, "short read from", path_);
            co_await conn.write_chunk(asio::buffer(chunk.data(), static_cast<std::size_t>(want)), stall,
                                      call_.operation);
            done += static_cast<std::uint64_t>(want);
            self_.counters.bytes_sent += static_cast<std::uint64_t>(want);
            if (opts_.progress)
                opts_.progress(done, size_);
        }
        if (size_ == 0 && opts_.progress)
            opts_.progress(0, size_);
        co_await conn.write_chunk(asio::buffer(envelope_.tail), stall, call_.operation);
        detail::string_parser reply;
        reply.body_limit(self_.cfg().max_reply_size);
        co_await conn.read_rest(reply, stall, call_.operation);
        co_return reply.release();
    }

private:
    client::impl& self_;
    const rest_call& call_;
    std::filesystem::path path_;
    std::uint64_t size_;
    const multipart_envelope& envelope_;
    const transfer_options& opts_;
};

task<file_record> upload_path(self_ptr self, std::filesystem::path path, transfer_options opts)
{
    require(self, "files/upload");
    const auto name = path.filename().string();
    const auto envelope = multipart_for("files/upload", name); // rejects before touching the file
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec || !std::ifstream(path, std::ios::binary))
        throw lens::error(errc::invalid_argument, "files/upload", "cannot open " + path.string());
    auto call = rest_call::post("files", std::string(), "files/upload");
    upload_attempt attempt(*self, call, path, size, envelope, opts);
    auto resp = co_await client::impl::exchange(self, call, 0, &attempt);
    auto body = detail::success_body(resp, call.operation, *self->ep);
    co_return detail::decode<file_record>(body, "files/upload");
}

/// A download handed to a sink a chunk at a time: the reply's header, then its body read
/// into one chunk buffer, each filled chunk given to the sink. No body limit: the sink
/// decides. An error reply is read whole (bounded by max_reply_size) for its diagnostics.
class download_attempt final : public client::impl::streamed_attempt {
public:
    /// `restart`, when given, undoes what the sink received (truncates a `.part` file),
    /// so that any attempt may start over; without it only attempts that delivered nothing may.
    download_attempt(client::impl& self, const rest_call& call, const transfer_sink& sink,
                     std::function<void()> restart, const transfer_options& opts)
        : self_(self), call_(call), sink_(sink), restart_(std::move(restart)), opts_(opts)
    {
    }

    asio::awaitable<detail::http_response> run(detail::http_connection& conn) override
    {
        if (delivered_ > 0 && restart_) {
            restart_();
            delivered_ = 0;
        }
        const auto stall = opts_.stall_timeout;
        auto req = self_.build(call_);
        co_await conn.write(req, detail::deadline_after(clock::now(), stall), call_.operation);
        detail::header_parser head;
        head.body_limit(boost::none); // checked against Content-Length with the header: the sink decides
        co_await conn.read_header(head, stall, call_.operation);
        if (head.get().result_int() >= 400) {
            const auto limit = self_.cfg().max_reply_size;
            if (auto length = head.content_length(); length && *length > limit)
                throw detail::transport_error(detail::failure_stage::exchange, errc::body_too_large,
                                              std::string(call_.operation),
                                              "error reply body over the limit of " + std::to_string(limit) +
                                                  " bytes");
            detail::string_parser error_reply(std::move(head));
            error_reply.body_limit(self_.cfg().max_reply_size);
            co_await conn.read_rest(error_reply, stall, call_.operation);
            co_return error_reply.release();
        }
        detail::chunk_parser body(std::move(head));
        body.body_limit(boost::none);
        std::optional<std::uint64_t> total;
        if (auto length = body.content_length())
            total = *length;
        std::vector<char> chunk(chunk_size_of(opts_));
        // Beast reads into the free space of the connection's buffer (grown for the header
        // only): room for a chunk makes each read a chunk, not a few hundred bytes.
        conn.buffer().reserve(chunk.size());
        while (!body.is_done()) {
            body.get().body().data = chunk.data();
            body.get().body().size = chunk.size();
            co_await conn.read_some(body, stall, call_.operation);
            const auto n = chunk.size() - body.get().body().size;
            if (n == 0)
                continue;
            delivered_ += n;
            self_.counters.bytes_received += n;
            sink_(std::string_view(chunk.data(), n));
            if (opts_.progress)
                opts_.progress(delivered_, total);
        }
        if (delivered_ == 0 && opts_.progress)
            opts_.progress(0, total);
        detail::http_response header_only;
        header_only.base() = body.get().base();
        co_return header_only;
    }

    bool may_retry() const noexcept override { return delivered_ == 0 || static_cast<bool>(restart_); }
    std::uint64_t delivered() const noexcept { return delivered_; }

private:
    client::impl& self_;
    const rest_call& call_;
    const transfer_sink& sink_;
    std::function<void()> restart_;
    const transfer_options& opts_;
    std::uint64_t delivered_ = 0;
};

task<std::uint64_t> download_to_sink(self_ptr self, rest_call call, transfer_sink sink, transfer_options opts)
{
    require(self, call.operation);
    if (!sink)
        throw lens::error(errc::invalid_argument, std::string(call.operation), "no sink");
    download_attempt attempt(*self, call, sink, nullptr, opts);
    co_await client::impl::exchange(self, call, 0, &attempt);
    co_return attempt.delivered();
}

/// The `.part` file of a download to a path: written chunk by chunk, renamed over the
/// target on success, removed on every other exit (failure, cancellation, destruction).
class part_file {
public:
    part_file(std::filesystem::path target, std::string_view operation)
        : target_(std::move(target)), part_(target_), operation_(operation)
    {
        part_ += ".part";
        open();
    }
    ~part_file()
    {
        if (committed_)
            return;
        out_.close();
        std::error_code ignored;
        std::filesystem::remove(part_, ignored);
    }
    part_file(const part_file&) = delete;
    part_file& operator=(const part_file&) = delete;

    void write(std::string_view chunk)
    {
        errno = 0; // socket calls leave EAGAIN behind: only this write's cause may be reported
        if (!out_.write(chunk.data(), static_cast<std::streamsize>(chunk.size())))
            throw_file_error(operation_, "cannot write", part_);
    }
    /// Starts over: the file empty again (a retried attempt).
    void truncate()
    {
        out_.close();
        open();
    }
    /// Flushes, closes and renames the part over the target.
    void commit()
    {
        errno = 0;
        out_.close();
        if (out_.fail())
            throw_file_error(operation_, "cannot write", part_);
        std::error_code ec;
        std::filesystem::rename(part_, target_, ec);
        if (ec)
            throw lens::error(ec, std::string(operation_), "cannot rename " + part_.string() + " to " +
                                                               target_.string());
        committed_ = true;
    }

private:
    void open()
    {
        errno = 0;
        out_.open(part_, std::ios::binary | std::ios::trunc);
        if (!out_)
            throw_file_error(operation_, "cannot create", part_);
    }

    std::filesystem::path target_;
    std::filesystem::path part_;
    std::string_view operation_;
    std::ofstream out_;
    bool committed_ = false;
};

task<std::uint64_t> download_to_path(self_ptr self, rest_call call, std::filesystem::path path,
                                     transfer_options opts)
{
    require(self, call.operation);
    part_file part(path, call.operation);
    transfer_sink sink = [&part](std::string_view chunk) { part.write(chunk); };
    download_attempt attempt(*self, call, sink, [&part] { part.truncate(); }, opts);
    co_await client::impl::exchange(self, call, 0, &attempt);
    part.commit();
    co_return attempt.delivered();
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
    return list_lenses_task(page::all());
}

task<std::vector<lens_record>> client::list_lenses_task(page p)
{
    return ops::list<lens_record>(impl_, rest_call::get(metadata_query("lens/metadata", p), "lens/metadata"));
}

task<lens_record> client::get_lens_task(std::string&& lens_id)
{
    return ops::find<lens_record>(impl_, rest_call::get(metadata_query("lens/metadata", page::all(), "lens_id", lens_id),
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
    return list_sessions_task(page::all());
}

task<std::vector<session_record>> client::list_sessions_task(page p)
{
    return ops::list<session_record>(
        impl_, rest_call::get(metadata_query("lens/sessions/metadata", p), "sessions/metadata"));
}

task<session_record> client::get_session_task(std::string&& session_id)
{
    return ops::find<session_record>(
        impl_, rest_call::get(metadata_query("lens/sessions/metadata", page::all(), "session_id", session_id), "sessions/metadata"),
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
    return ops::upload_path(impl_, std::move(path), transfer_options());
}

task<file_record> client::upload_file_task(std::filesystem::path&& path, const transfer_options& opts)
{
    return ops::upload_path(impl_, std::move(path), opts);
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

task<std::uint64_t> client::download_file_to_task(std::string&& file_id, std::filesystem::path&& path,
                                                  const transfer_options& opts)
{
    return ops::download_to_path(
        impl_, rest_call::get("files/download/" + detail::encode_segment(file_id), "files/download"),
        std::move(path), opts);
}

task<std::uint64_t> client::download_file_to_task(std::string&& file_id, std::filesystem::path&& path)
{
    return download_file_to_task(std::move(file_id), std::move(path), transfer_options());
}

task<std::uint64_t> client::download_file_to_sink_task(std::string&& file_id, transfer_sink&& sink,
                                                       const transfer_options& opts)
{
    return ops::download_to_sink(
        impl_, rest_call::get("files/download/" + detail::encode_segment(file_id), "files/download"),
        std::move(sink), opts);
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
