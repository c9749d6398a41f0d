// The REST surface of docs/protocol.md §2: lenses, sessions, events and files.
//
// Error bodies deliberately use every shape the real API uses, each where the
// real API uses it: `{"detail": ...}` (FastAPI: not found, malformed bodies),
// `{"errors": ["..."]}` inside an HTTP 200 (session cap), `{"errors": [{...}]}`
// (auth, in connection.cpp) and `{"is_valid": false, "error_messages": [...]}`
// (rejected files, built-in lenses).
#include "emulator/connection.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>

#include <charconv>
#include <variant>

namespace lens::emulator::detail {
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

namespace {

response detail_reply(const request& req, unsigned status, std::string_view message)
{
    return json_response(req, status, json::object{{"detail", message}});
}

response invalid_reply(const request& req, unsigned status, std::string_view message)
{
    return json_response(req, status,
                         json::object{{"is_valid", false}, {"error_messages", json::array{json::string(message)}}});
}

/// The request body as a JSON object, or the reply explaining why not.
std::variant<json::object, response> body_object(const request& req)
{
    std::string error;
    auto v = parse_json(req.body(), error);
    if (!v)
        return detail_reply(req, 400, "Malformed JSON body: " + error);
    if (!v->is_object())
        return detail_reply(req, 400, "Malformed JSON body: expected an object");
    return std::move(v->as_object());
}

/// A required string field, or nullptr.
const json::string* string_field(const json::object& o, std::string_view name)
{
    auto* v = o.if_contains(name);
    return v && v->is_string() ? &v->get_string() : nullptr;
}

/// `shard_index` and `max_items_per_shard`: -1 (or absent) means everything.
struct shard {
    long long index = -1;
    long long max_items = -1;
};

std::optional<shard> parse_shard(const api_target& t)
{
    shard s;
    auto read = [&](std::string_view name, long long& out) {
        auto it = t.query.find(name);
        if (it == t.query.end() || it->second.empty())
            return true;
        const std::string& text = it->second;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
        return ec == std::errc{} && end == text.data() + text.size();
    };
    if (!read("shard_index", s.index) || !read("max_items_per_shard", s.max_items))
        return std::nullopt;
    return s;
}

json::array take_shard(json::array all, shard s)
{
    if (s.index < 0 || s.max_items <= 0)
        return all;
    json::array out;
    auto first = static_cast<std::size_t>(s.index) * static_cast<std::size_t>(s.max_items);
    for (std::size_t i = first; i < all.size() && i < first + static_cast<std::size_t>(s.max_items); ++i)
        out.push_back(std::move(all[i]));
    return out;
}

json::object file_record(const stored_file& f)
{
    return json::object{
        {"file_id", f.id},
        {"file_uid", f.uid},
        {"file_name", f.id},
        {"file_type", f.content_type},
        {"num_bytes", f.size()},
        {"file_size", f.size()},
        {"upload_timestamp", f.upload_timestamp},
    };
}

std::string basename_of(std::string_view path)
{
    auto slash = path.find_last_of("/\\");
    return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

class rest_router {
public:
    rest_router(server::impl& srv, const request& req, const api_target& t, std::shared_ptr<disk_file> spooled)
        : srv_(srv), req_(req), t_(t), spooled_(std::move(spooled))
    {
    }

    /// The file a download streams (set by file_download for a spooled file).
    std::shared_ptr<const disk_file> body_file;

    rest_outcome route()
    {
        const auto& seg = t_.segments;
        const auto verb = req_.method();
        std::string path;
        for (auto& s : seg)
            path += (path.empty() ? "" : "/") + s;

        // Each fixed route: the path matches, then the method must.
        struct entry {
            std::string_view path;
            http::verb verb;
            response (rest_router::*handler)();
        };
        static constexpr entry routes[] = {
            {"lens/info", http::verb::get, &rest_router::lens_info},
            {"lens/metadata", http::verb::get, &rest_router::lens_metadata},
            {"lens/register", http::verb::post, &rest_router::lens_register},
            {"lens/clone", http::verb::post, &rest_router::lens_clone},
            {"lens/modify", http::verb::post, &rest_router::lens_modify},
            {"lens/delete", http::verb::post, &rest_router::lens_delete},
            {"lens/sessions/info", http::verb::get, &rest_router::sessions_info},
            {"lens/sessions/metadata", http::verb::get, &rest_router::sessions_metadata},
            {"lens/sessions/create", http::verb::post, &rest_router::sessions_create},
            {"lens/sessions/destroy", http::verb::post, &rest_router::sessions_destroy},
            {"files", http::verb::post, &rest_router::files_upload},
            {"files/base64", http::verb::post, &rest_router::files_upload_base64},
            {"files/info", http::verb::get, &rest_router::files_info},
            {"files/metadata", http::verb::get, &rest_router::files_metadata},
        };
        for (const auto& r : routes)
            if (path == r.path)
                return {verb == r.verb ? (this->*r.handler)() : method_not_allowed()};
        if (path == "lens/sessions/events/process")
            return verb == http::verb::post ? events_process() : rest_outcome{method_not_allowed()};
        if (seg.size() == 3 && seg[0] == "files") {
            const std::string& id = seg[2];
            if (seg[1] == "metadata")
                return {verb == http::verb::get ? file_metadata(id) : method_not_allowed()};
            if (seg[1] == "download")
                return {verb == http::verb::get ? file_download(id) : method_not_allowed()};
            if (seg[1] == "delete")
                return {verb == http::verb::delete_ ? file_delete(id) : method_not_allowed()};
        }
        if (seg.size() == 3 && seg[0] == "lens" && seg[1] == "sessions")
            return {detail_reply(req_, 400, "This endpoint only accepts WebSocket upgrades")};
        return {detail_reply(req_, 404, "Not Found")};
    }

private:
    response method_not_allowed() { return detail_reply(req_, 405, "Method Not Allowed"); }

    // ---- lenses ----------------------------------------------------------------

    response lens_info()
    {
        json::array ids;
        for (auto& l : srv_.lenses)
            ids.push_back(json::string(l.id));
        return json_response(req_, 200,
                             json::object{{"num_lenses", srv_.lenses.size()}, {"lens_ids", std::move(ids)}});
    }

    response lens_metadata()
    {
        auto s = parse_shard(t_);
        if (!s)
            return detail_reply(req_, 422, "shard_index and max_items_per_shard must be integers");
        json::array all;
        if (auto it = t_.query.find("lens_id"); it != t_.query.end() && !it->second.empty()) {
            auto* l = srv_.find_lens(it->second);
            if (!l)
                return detail_reply(req_, 404, "Lens not found: " + it->second);
            all.push_back(l->record);
        } else {
            for (auto& l : srv_.lenses)
                all.push_back(l.record);
        }
        return json_response(req_, 200, take_shard(std::move(all), *s));
    }

    response lens_register()
    {
        auto body = body_object(req_);
        if (auto* r = std::get_if<response>(&body))
            return std::move(*r);
        auto& o = std::get<json::object>(body);
        // The double nesting is the real API's: {"lens_config": {"lens_name", "lens_config": {...}}}.
        auto* outer = o.if_contains("lens_config");
        if (!outer || !outer->is_object())
            return detail_reply(req_, 422, "lens_config is required");
        auto* inner = outer->as_object().if_contains("lens_config");
        if (!inner || !inner->is_object())
            return detail_reply(req_, 422, "lens_config.lens_config is required");
        auto* name = string_field(outer->as_object(), "lens_name");
        lens_entry l;
        l.id = "lns-" + random_hex(8);
        l.record = json::object{{"lens_id", l.id},
                                {"lens_name", name ? json::value(*name) : json::value("unnamed lens")},
                                {"lens_config", *inner}};
        srv_.lenses.push_back(l);
        return json_response(req_, 200, l.record);
    }

    /// The lens named by the body's `lens_id`, or the reply explaining why not.
    std::variant<std::pair<lens_entry*, json::object>, response> body_lens()
    {
        auto body = body_object(req_);
        if (auto* r = std::get_if<response>(&body))
            return std::move(*r);
        auto& o = std::get<json::object>(body);
        auto* id = string_field(o, "lens_id");
        if (!id)
            return detail_reply(req_, 422, "lens_id is required");
        auto* l = srv_.find_lens(*id);
        if (!l)
            return detail_reply(req_, 404, "Lens not found: " + std::string(*id));
        return std::pair{l, std::move(o)};
    }

    response lens_clone()
    {
        auto found = body_lens();
        if (auto* r = std::get_if<response>(&found))
            return std::move(*r);
        auto [l, o] = std::move(std::get<0>(found));
        lens_entry copy;
        copy.id = "lns-" + random_hex(8);
        copy.record = l->record;
        copy.record["lens_id"] = copy.id;
        if (auto* name = string_field(o, "lens_name"))
            copy.record["lens_name"] = *name;
        else
            copy.record["lens_name"] = std::string(l->record.at("lens_name").as_string()) + " (clone)";
        srv_.lenses.push_back(copy);
        return json_response(req_, 200, copy.record);
    }

    response lens_modify()
    {
        auto found = body_lens();
        if (auto* r = std::get_if<response>(&found))
            return std::move(*r);
        auto [l, o] = std::move(std::get<0>(found));
        if (l->builtin)
            return invalid_reply(req_, 400, "Built-in lens " + l->id + " cannot be modified");
        if (auto* name = string_field(o, "lens_name"))
            l->record["lens_name"] = *name;
        if (auto* config = o.if_contains("lens_config"); config && config->is_object()) {
            // Accept both the plain config and the register call's double nesting.
            auto& c = config->as_object();
            if (auto* inner = c.if_contains("lens_config"); inner && inner->is_object()) {
                if (auto* name = string_field(c, "lens_name"))
                    l->record["lens_name"] = *name;
                l->record["lens_config"] = *inner;
            } else {
                l->record["lens_config"] = c;
            }
        }
        return json_response(req_, 200, l->record);
    }

    response lens_delete()
    {
        auto found = body_lens();
        if (auto* r = std::get_if<response>(&found))
            return std::move(*r);
        lens_entry* l = std::get<0>(found).first;
        if (l->builtin)
            return invalid_reply(req_, 400, "Built-in lens " + l->id + " cannot be deleted");
        std::string id = l->id;
        std::erase_if(srv_.lenses, [&](const lens_entry& e) { return e.id == id; });
        return json_response(req_, 200, json::object{{"is_valid", true}, {"error_messages", json::array{}}, {"lens_id", id}});
    }

    // ---- sessions ----------------------------------------------------------------

    response sessions_info()
    {
        return json_response(req_, 200,
                             json::object{{"num_sessions", srv_.session_order.size()},
                                          {"num_active_sessions", srv_.live_sessions()},
                                          {"max_sessions", srv_.opts.max_sessions}});
    }

    response sessions_metadata()
    {
        auto s = parse_shard(t_);
        if (!s)
            return detail_reply(req_, 422, "shard_index and max_items_per_shard must be integers");
        json::array all;
        if (auto it = t_.query.find("session_id"); it != t_.query.end() && !it->second.empty()) {
            auto session = srv_.find_session(it->second);
            if (!session)
                return detail_reply(req_, 404, "Unknown session id: " + it->second);
            all.push_back(srv_.session_record(*session, status_spelling::rest));
        } else {
            for (auto& session : srv_.session_order)
                all.push_back(srv_.session_record(*session, status_spelling::rest));
        }
        return json_response(req_, 200, take_shard(std::move(all), *s));
    }

    response sessions_create()
    {
        auto found = body_lens();
        if (auto* r = std::get_if<response>(&found))
            return std::move(*r);
        lens_entry* l = std::get<0>(found).first;
        if (srv_.live_sessions() >= srv_.opts.max_sessions) {
            // The real server reports running out of runners as a success status.
            return json_response(
                req_, 200,
                json::object{{"errors", json::array{"Failed to allocate lens runner - try stopping an older session!"}}});
        }
        auto s = srv_.create_session(*l);
        json::object full = srv_.session_record(*s, status_spelling::create_reply);
        return json_response(req_, 200,
                             json::object{{"session_id", full["session_id"]},
                                          {"lens_id", full["lens_id"]},
                                          {"session_endpoint", full["session_endpoint"]},
                                          {"session_status", full["session_status"]}});
    }

    /// The session named by the body's `session_id`, or the reply explaining why not.
    std::variant<std::pair<std::shared_ptr<session_state>, json::object>, response> body_session()
    {
        auto body = body_object(req_);
        if (auto* r = std::get_if<response>(&body))
            return std::move(*r);
        auto& o = std::get<json::object>(body);
        auto* id = string_field(o, "session_id");
        if (!id)
            return detail_reply(req_, 422, "session_id is required");
        auto s = srv_.find_session(*id);
        if (!s)
            return detail_reply(req_, 404, "Unknown session id: " + std::string(*id));
        return std::pair{std::move(s), std::move(o)};
    }

    response sessions_destroy()
    {
        auto found = body_session();
        if (auto* r = std::get_if<response>(&found))
            return std::move(*r);
        auto& s = *std::get<0>(found).first;
        srv_.destroy_session(s); // idempotent: a second destroy answers the STALE record again
        return json_response(req_, 200, srv_.session_record(s, status_spelling::rest));
    }

    rest_outcome events_process()
    {
        auto found = body_session();
        if (auto* r = std::get_if<response>(&found))
            return {std::move(*r)};
        auto& [s, o] = std::get<0>(found);
        auto* event = o.if_contains("event");
        if (!event || !event->is_object())
            return {detail_reply(req_, 422, "event is required")};
        auto* type = string_field(event->as_object(), "type");
        if (!type)
            return {detail_reply(req_, 422, "event.type is required")};
        const json::value* data = event->as_object().if_contains("event_data");
        static const json::value null_value;
        event_reply reply = srv_.process_event(*s, *type, data ? *data : null_value);
        return {json_response(req_, 200, reply.frame), reply.delay};
    }

    // ---- files -------------------------------------------------------------------

    /// The one rule of both upload paths (in memory and spooled): the form's `file` part,
    /// its stored name (the basename) and content type; or the reply refusing the upload.
    template <class Part>
    std::optional<response> accept_file_part(std::optional<std::vector<Part>>& parts, Part*& file, std::string& id,
                                             std::string& type)
    {
        if (!parts)
            return detail_reply(req_, 400, "Malformed multipart/form-data body");
        for (auto& p : *parts)
            if (p.name == "file") {
                file = &p;
                break;
            }
        if (!file)
            return detail_reply(req_, 422, "The form field 'file' is required");
        id = basename_of(file->file_name);
        if (id.empty())
            return detail_reply(req_, 422, "The 'file' part needs a filename");
        type = content_type_for(id);
        if (type.empty())
            return invalid_reply(req_, 400, "Unsupported file type: " + id +
                                                " (accepted: png, jpg, jpeg, mp4, csv, json, jsonl, txt)");
        return std::nullopt;
    }

    /// Keeps an accepted upload under `id` (replacing a file of that name) and answers it.
    response store(stored_file f, std::string id, std::string type)
    {
        f.id = id;
        f.uid = random_uid();
        f.content_type = std::move(type);
        f.upload_timestamp = now_seconds();
        json::object reply{{"is_valid", true}, {"file_id", f.id}, {"file_uid", f.uid}};
        srv_.files.insert_or_assign(std::move(id), std::move(f));
        return json_response(req_, 200, reply);
    }

    /// An upload spooled to disk: the file part's bytes stay where they are, in the spool.
    response upload_spooled()
    {
        auto parts = parse_multipart_file(req_[http::field::content_type], spooled_->path);
        spooled_part* file = nullptr;
        std::string id, type;
        if (auto refused = accept_file_part(parts, file, id, type))
            return std::move(*refused);
        spooled_->offset = file->offset;
        spooled_->size = file->size;
        stored_file f;
        f.on_disk = std::move(spooled_);
        return store(std::move(f), std::move(id), std::move(type));
    }

    response upload(bool base64)
    {
        if (spooled_ && !base64)
            return upload_spooled();
        auto parts = parse_multipart(req_[http::field::content_type], req_.body());
        form_part* file = nullptr;
        std::string id, type;
        if (auto refused = accept_file_part(parts, file, id, type))
            return std::move(*refused);
        stored_file f;
        if (base64) {
            auto decoded = base64_decode(file->body);
            if (!decoded)
                return invalid_reply(req_, 400, "The content of " + id + " is not valid base64");
            f.bytes = std::move(*decoded);
        } else {
            f.bytes = std::move(file->body);
        }
        return store(std::move(f), std::move(id), std::move(type));
    }

    response files_upload() { return upload(false); }
    response files_upload_base64() { return upload(true); }

    response files_info()
    {
        std::size_t bytes = 0;
        for (auto& [id, f] : srv_.files)
            bytes += f.size();
        return json_response(req_, 200, json::object{{"num_files", srv_.files.size()}, {"num_bytes", bytes}});
    }

    response files_metadata()
    {
        auto s = parse_shard(t_);
        if (!s)
            return detail_reply(req_, 422, "shard_index and max_items_per_shard must be integers");
        json::array all;
        for (auto& [id, f] : srv_.files)
            all.push_back(file_record(f));
        return json_response(req_, 200, take_shard(std::move(all), *s));
    }

    response file_metadata(const std::string& id)
    {
        auto it = srv_.files.find(id);
        if (it == srv_.files.end())
            return detail_reply(req_, 404, "File not found: " + id);
        return json_response(req_, 200, file_record(it->second));
    }

    response file_download(const std::string& id)
    {
        auto it = srv_.files.find(id);
        if (it == srv_.files.end())
            return detail_reply(req_, 404, "File not found: " + id);
        response res{http::status::ok, req_.version()};
        res.set(http::field::server, "lens-emulator");
        res.set(http::field::content_type, it->second.content_type);
        res.set(http::field::content_disposition, "attachment; filename=\"" + id + "\"");
        res.keep_alive(req_.keep_alive());
        if (it->second.on_disk) {
            body_file = it->second.on_disk;
            res.content_length(body_file->size);
            return res;
        }
        res.body() = it->second.bytes;
        res.prepare_payload();
        return res;
    }

    response file_delete(const std::string& id)
    {
        auto it = srv_.files.find(id);
        if (it == srv_.files.end())
            return detail_reply(req_, 404, "File not found: " + id);
        srv_.files.erase(it);
        return json_response(req_, 200, json::object{{"is_valid", true}, {"error_messages", json::array{}}, {"file_id", id}});
    }

    server::impl& srv_;
    const request& req_;
    const api_target& t_;
    std::shared_ptr<disk_file> spooled_;
};

} // namespace

rest_outcome handle_rest(server::impl& srv, const request& req, std::shared_ptr<disk_file> spooled)
{
    auto target = parse_target(req.target());
    if (!target)
        return {detail_reply(req, 404, "Not Found")};
    rest_router router(srv, req, *target, std::move(spooled));
    auto out = router.route();
    out.body_file = std::move(router.body_file);
    return out;
}

} // namespace lens::emulator::detail
