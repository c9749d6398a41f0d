// The emulator's lenses and sessions, and the small helpers every surface uses.
#include "emulator/state.hpp"
#include "emulator/sse_feed.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace lens::emulator {
namespace json = boost::json;
using detail::lens_entry;
using detail::lens_output;
using detail::session_state;
using detail::status_spelling;

namespace detail {

std::filesystem::path spool_path()
{
    return std::filesystem::temp_directory_path() / ("lens-emulator-upload-" + random_hex(12));
}

std::string random_hex(std::size_t bytes)
{
    std::vector<unsigned char> raw(bytes);
    if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1)
        throw std::runtime_error("RAND_bytes failed");
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes * 2);
    for (unsigned char c : raw) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

std::string random_uid()
{
    std::string h = random_hex(16);
    return h.substr(0, 8) + '-' + h.substr(8, 4) + '-' + h.substr(12, 4) + '-' + h.substr(16, 4) + '-' +
           h.substr(20);
}

double now_seconds()
{
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::optional<std::string> base64_decode(std::string_view text)
{
    std::string compact;
    compact.reserve(text.size());
    for (char c : text)
        if (!std::isspace(static_cast<unsigned char>(c)))
            compact += c;
    if (compact.size() % 4 != 0)
        return std::nullopt;
    if (compact.empty())
        return std::string{};
    std::string out(compact.size() / 4 * 3, '\0');
    // EVP_DecodeBlock rejects characters outside the alphabet but decodes the '='
    // padding as zero bytes, which we trim ourselves.
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(compact.data()),
                            static_cast<int>(compact.size()));
    if (n < 0)
        return std::nullopt;
    std::size_t padding = 0;
    if (compact.ends_with("=="))
        padding = 2;
    else if (compact.ends_with('='))
        padding = 1;
    // '=' is only valid as trailing padding.
    if (compact.find('=') < compact.size() - padding)
        return std::nullopt;
    out.resize(static_cast<std::size_t>(n) - padding);
    return out;
}

std::string content_type_for(std::string_view file_name)
{
    auto dot = file_name.rfind('.');
    if (dot == std::string_view::npos)
        return {};
    std::string ext(file_name.substr(dot + 1));
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == "png")
        return "image/png";
    if (ext == "jpg" || ext == "jpeg")
        return "image/jpeg";
    if (ext == "mp4")
        return "video/mp4";
    if (ext == "csv")
        return "text/csv";
    if (ext == "json" || ext == "jsonl" || ext == "txt")
        return "text/plain";
    return {};
}

std::optional<json::value> parse_json(std::string_view text, std::string& error)
{
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec) {
        error = ec.message();
        return std::nullopt;
    }
    return v;
}

} // namespace detail

// ---- addresses ---------------------------------------------------------------

std::string server::impl::host_for_urls() const
{
    // An IPv6 literal needs brackets in a URL.
    if (opts.host.find(':') != std::string::npos)
        return '[' + opts.host + ']';
    return opts.host;
}

std::string server::impl::http_base() const
{
    return std::string(tls ? "https://" : "http://") + host_for_urls() + ':' +
           std::to_string(bound_port) + "/v0.5";
}

std::string server::impl::session_endpoint(std::string_view session_id) const
{
    return std::string(tls ? "wss://" : "ws://") + host_for_urls() + ':' +
           std::to_string(bound_port) + "/v0.5/lens/sessions/" + std::string(session_id);
}

// ---- lenses ------------------------------------------------------------------

namespace {

json::object make_lens_record(std::string_view id, std::string_view name, std::string_view processor,
                              json::object parameters, json::array inputs, std::string_view output)
{
    return json::object{
        {"lens_id", id},
        {"lens_name", name},
        {"lens_config",
         json::object{
             {"model_pipeline", json::array{json::object{{"processor_name", processor},
                                                         {"processor_config", json::object{}}}}},
             {"model_parameters", std::move(parameters)},
             {"input_streams", std::move(inputs)},
             {"output_streams", json::array{json::object{{"stream_type", output}}}},
         }},
    };
}

} // namespace

namespace detail {
std::vector<lens_entry> builtin_lenses()
{
    std::vector<lens_entry> out;
    out.push_back({std::string(builtin::activity_monitor),
                   make_lens_record(builtin::activity_monitor, "Activity Monitor (emulator)",
                                    "lens_timeseries_state_processor",
                                    json::object{{"model_version", "Newton::emulator"},
                                                 {"window_size", 10},
                                                 {"step_size", 10}},
                                    json::array{json::object{{"stream_type", "csv_file_reader"}},
                                                json::object{{"stream_type", "video_file_reader"}}},
                                    "server_sent_events_writer"),
                   true});
    out.push_back({std::string(builtin::mailbox),
                   make_lens_record(builtin::mailbox, "Mailbox Echo (emulator)", "lens_echo_processor",
                                    json::object{{"model_version", "Newton::emulator"}},
                                    json::array{json::object{{"stream_type", "data.json"}}},
                                    "websocket_mailbox_writer"),
                   true});
    out.push_back({std::string(builtin::query),
                   make_lens_record(builtin::query, "Image Query (emulator)", "lens_model_query_processor",
                                    json::object{{"model_version", "Newton::emulator"},
                                                 {"templates", json::array{"image_qa_template_task",
                                                                           "image_bbox_template_task"}}},
                                    json::array{}, "websocket_writer"),
                   true});
    return out;
}
} // namespace detail

lens_entry* server::impl::find_lens(std::string_view id)
{
    for (auto& l : lenses)
        if (l.id == id)
            return &l;
    return nullptr;
}

// ---- sessions ----------------------------------------------------------------

std::shared_ptr<session_state> server::impl::find_session(std::string_view id) const
{
    auto it = sessions.find(std::string(id));
    return it == sessions.end() ? nullptr : it->second;
}

std::size_t server::impl::live_sessions() const
{
    return counters.live_sessions;
}

std::shared_ptr<session_state> server::impl::create_session(const lens_entry& lens)
{
    auto s = std::make_shared<session_state>();
    s->id = "lsn-" + detail::random_hex(12);
    s->lens_id = lens.id;
    s->behaviour = detail::behaviour_of(lens.record);
    s->lens = lens.record;
    if (auto* config = lens.record.if_contains("lens_config"); config && config->is_object())
        if (auto* p = config->get_object().if_contains("model_parameters"); p && p->is_object())
            s->model_parameters = p->get_object();
    double now = detail::now_seconds();
    s->registration_timestamp = now;
    s->session_start_timestamp = now;
    s->last_event_timestamp = now;
    s->last_update_timestamp = now;
    s->input_data_stream_id = "ds-" + detail::random_hex(8);
    s->output_data_stream_id = "ds-" + detail::random_hex(8);
    s->feed = detail::make_sse_feed(executor, opts, s->id);
    if (s->behaviour.output == lens_output::mailbox)
        append_mailbox(*s, "log.info", json::object{{"message", "session started"}});
    for (auto& why : s->behaviour.not_emulated) {
        s->problems.push_back(json::string(why));
        if (s->behaviour.output == lens_output::sse)
            detail::sse_append(*s->feed, detail::lens_log_event("warning", why));
    }
    start_configured_inputs(*s);
    sessions.emplace(s->id, s);
    session_order.push_back(s);
    ++counters.live_sessions;
    return s;
}

void server::impl::destroy_session(session_state& s)
{
    if (s.destroyed)
        return;
    s.destroyed = true;
    s.session_destroyed_timestamp = detail::now_seconds();
    s.last_update_timestamp = s.session_destroyed_timestamp;
    --counters.live_sessions;
    if (s.feed)
        detail::sse_session_destroyed(*s.feed);

    // Destroyed records stay visible (destroy is idempotent, metadata lists them)
    // but a benchmark creating millions of sessions must not grow without bound.
    static constexpr std::size_t keep_destroyed = 4096;
    destroyed_order.push_back(s.id);
    while (destroyed_order.size() > keep_destroyed) {
        std::string old = std::move(destroyed_order.front());
        destroyed_order.pop_front();
        sessions.erase(old);
        std::erase_if(session_order, [&](const auto& p) { return p->id == old; });
    }
}

json::object server::impl::session_record(const session_state& s, status_spelling spelling) const
{
    std::string_view status;
    if (s.destroyed)
        status = "LensSessionStatus.SESSION_STATUS_STALE";
    else if (spelling == status_spelling::create_reply)
        status = "LensSessionStatus.SESSION_STATUS_REGISTERED";
    else if (spelling == status_spelling::websocket)
        status = "3";
    else
        status = "SESSION_STATUS_RUNNING";

    json::object r;
    r["session_id"] = s.id;
    r["lens_id"] = s.lens_id;
    r["lens_name"] = s.lens.contains("lens_name") ? s.lens.at("lens_name") : json::value("");
    r["session_status"] = status;
    r["session_endpoint"] = session_endpoint(s.id);
    r["session_ttl_sec"] = 86400;
    r["registration_timestamp"] = s.registration_timestamp;
    r["last_event_timestamp"] = s.last_event_timestamp;
    r["last_update_timestamp"] = s.last_update_timestamp;
    r["session_start_timestamp"] = s.session_start_timestamp;
    if (s.destroyed)
        r["session_destroyed_timestamp"] = s.session_destroyed_timestamp;
    else
        r["session_destroyed_timestamp"] = nullptr;
    r["num_active_connections"] = s.num_active_connections;
    r["num_updates"] = s.num_updates;
    r["num_inputs"] = s.num_inputs;
    r["num_outputs"] = s.num_outputs;
    r["num_events"] = s.num_events;
    r["input_data_stream_id"] = s.input_data_stream_id;
    r["output_data_stream_id"] = s.output_data_stream_id;
    r["lens_config"] = s.lens.contains("lens_config") ? s.lens.at("lens_config") : json::value(json::object{});
    // The real server echoes the caller's key here (docs/protocol.md §2.2); the emulator does
    // too, so that the client's scrubbing of it is exercised.
    r["api_key"] = opts.api_key;
    return r;
}

void server::impl::append_mailbox(session_state& s, std::string_view type, json::value data)
{
    s.mailbox.push_back(json::object{{"timestamp", detail::now_seconds()}, {"type", type}, {"data", std::move(data)}});
    ++s.num_outputs;
}

// ---- connections -------------------------------------------------------------

std::uint64_t server::impl::track(std::weak_ptr<detail::closable> c)
{
    std::uint64_t id = ++next_connection_id;
    connections.emplace(id, std::move(c));
    return id;
}

void server::impl::untrack(std::uint64_t id)
{
    connections.erase(id);
}

void server::impl::stop_all()
{
    // Closing a connection may untrack others' entries re-entrantly only through
    // completions, which run later; still, work on a snapshot.
    std::vector<std::shared_ptr<detail::closable>> live;
    for (auto& [id, w] : connections)
        if (auto c = w.lock())
            live.push_back(std::move(c));
    connections.clear();
    for (auto& c : live)
        c->close();
    for (auto& s : session_order)
        if (s->feed)
            detail::sse_stop(*s->feed);
}

} // namespace lens::emulator
