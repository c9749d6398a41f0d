// Session events (docs/protocol.md §3.4): one handler for the WebSocket control channel
// and for REST `lens/sessions/events/process`, so both give the same reply.
//
// The handler is synchronous: the event takes effect at once (mailbox, counters,
// SSE input) and the reply it returns carries the lens's thinking time; the
// caller waits that long, on a timer it can cancel, before sending.
#include "emulator/state.hpp"
#include "emulator/sse_feed.hpp"

namespace lens::emulator {
namespace json = boost::json;
using detail::event_reply;
using detail::lens_output;
using detail::session_state;

namespace {

json::object ack(bool valid = true, json::array errors = {})
{
    return json::object{{"is_valid", valid}, {"error_messages", std::move(errors)}};
}

event_reply enveloped(std::string_view type, json::value data, std::chrono::milliseconds delay = {})
{
    std::string reply_type = std::string(type) + ".response";
    return {json::object{{"type", reply_type}, {"event_data", std::move(data)}}, reply_type, delay};
}

event_reply error_frame(std::string message)
{
    return {json::object{{"type", "error"}, {"message", std::move(message)}}, "error", {}};
}

const json::object* as_object(const json::value& v)
{
    return v.is_object() ? &v.get_object() : nullptr;
}

std::string string_or(const json::object* o, std::string_view key, std::string_view fallback = {})
{
    if (o)
        if (auto* v = o->if_contains(key); v && v->is_string())
            return std::string(v->get_string());
    return std::string(fallback);
}

} // namespace

event_reply server::impl::process_event(session_state& s, std::string_view type, const json::value& event_data)
{
    const double now = detail::now_seconds();
    ++s.num_events;
    s.last_event_timestamp = now;
    const json::object* data = as_object(event_data);

    if (type == "session.status") // the one reply without an envelope
        return {session_record(s, detail::status_spelling::websocket), "session.status", {}};

    // A destroyed session answers nothing else, as the real server does.
    if (s.destroyed)
        return error_frame("Unknown session id: " + s.id);

    if (type == "session.validate") // what the emulator could not run of the lens's configuration
        return enveloped(type, ack(s.problems.empty(), s.problems));

    if (type == "session.get") // the session's model parameters (docs/protocol.md §6)
        return enveloped(type, s.model_parameters);

    if (type == "session.modify") {
        // `event_data`: the parameters to change, merged into the session's (not the lens's).
        if (!data)
            return enveloped(type, ack(false, json::array{"session.modify needs an object of model parameters"}));
        // Also accepted: the parameters wrapped as `{"model_parameters": {...}}`.
        const json::object* changes = data;
        if (data->size() == 1)
            if (auto* inner = data->if_contains("model_parameters"); inner && inner->is_object())
                changes = &inner->get_object();
        for (auto& [key, value] : *changes)
            s.model_parameters[key] = value;
        json::object reply = ack();
        reply["model_parameters"] = s.model_parameters;
        // Seen on the real server's SSE stream after a modification.
        if (s.behaviour.output == lens_output::sse && s.feed)
            detail::sse_append(*s.feed, json::object{{"type", "session.modify.result"},
                                                     {"event_data", json::object{{"model_parameters", s.model_parameters}}}});
        return enveloped(type, std::move(reply));
    }

    if (type == "session.heartbeat")
        return enveloped(type, nullptr);

    if (type == "session.read") {
        std::string client_id = string_or(data, "client_id");
        // Each client id is its own cursor; a new id starts from the beginning.
        std::size_t& cursor = s.read_cursors[client_id];
        if (s.behaviour.output != lens_output::mailbox || cursor >= s.mailbox.size())
            return enveloped(type, nullptr);
        json::array messages;
        for (; cursor < s.mailbox.size(); ++cursor)
            messages.push_back(s.mailbox[cursor]);
        return enveloped(type, json::object{{"messages", std::move(messages)}, {"client_id", client_id}});
    }

    if (type == "session.update") {
        ++s.num_updates;
        s.last_update_timestamp = now;
        if (s.behaviour.takes_updates) {
            // `{"type": "data.json", "event_data": {...}}`: one result per update, carrying the data.
            const json::value* pushed = data ? data->if_contains("event_data") : nullptr;
            const json::value& reading = pushed ? *pushed : event_data;
            if (s.behaviour.output == lens_output::mailbox) {
                append_mailbox(s, "inference.result", reading);
            } else if (s.behaviour.output == lens_output::sse && s.feed) {
                auto* focus = s.model_parameters.if_contains("focus");
                detail::sse_append(*s.feed, detail::sensor_update_event(s.updates_fed, reading,
                                                                        focus && focus->is_string()
                                                                            ? std::string_view(focus->get_string())
                                                                            : std::string_view{}));
                ++s.num_outputs;
            }
            ++s.updates_fed;
        }
        return enveloped(type, ack());
    }

    if (type == "session.destroy") {
        destroy_session(s);
        json::object reply = ack();
        reply["session_id"] = s.id;
        reply["session_status"] = session_record(s, detail::status_spelling::websocket)["session_status"];
        return enveloped(type, std::move(reply));
    }

    if (type == "input_stream.set") {
        std::string stream_type = string_or(data, "stream_type");
        const json::value* config_value = data ? data->if_contains("stream_config") : nullptr;
        static const json::object empty;
        const json::object& config = config_value && config_value->is_object() ? config_value->get_object() : empty;

        auto check = check_input_stream(stream_type, config);
        if (!check.errors.empty()) {
            // Rejected: the running input (if any) carries on; the stream says why, as the
            // reply does.
            if (s.behaviour.output == lens_output::sse && s.feed)
                detail::sse_append(*s.feed, detail::lens_error_event(check.errors));
            return enveloped(type, ack(false, std::move(check.errors)));
        }

        ++s.num_inputs;
        if (s.behaviour.reads_streams && s.behaviour.output == lens_output::sse && s.feed)
            detail::sse_input_stream(*s.feed, stream_type, config, check.file_bytes);
        if (s.behaviour.output == lens_output::mailbox)
            append_mailbox(s, "log.info", json::object{{"message", "input stream set: " + stream_type}});
        return enveloped(type, ack());
    }

    if (type == "model.query") {
        static constexpr std::string_view timed_out = "Response timed out for query";
        auto timeout = [&] {
            return event_reply{json::object{{"type", "model.query.response"}, {"message", timed_out}},
                               "model.query.response", opts.ws.query_timeout_after};
        };
        // Lenses that cannot answer queries leave them to time out, like the real server.
        if (!s.behaviour.answers_queries)
            return timeout();
        std::string focus = string_or(data, "focus");
        if (focus == "emulator:timeout")
            return timeout();

        std::string image;
        if (auto* items = data ? data->if_contains("data") : nullptr; items && items->is_array()) {
            for (auto& item : items->get_array()) {
                const json::object* o = as_object(item);
                if (!o || string_or(o, "type") != "base64_img")
                    continue;
                std::string encoded = string_or(o, "base64_img");
                // Tolerate a data URL ("data:image/png;base64,...").
                if (encoded.starts_with("data:"))
                    if (auto comma = encoded.find(','); comma != std::string::npos)
                        encoded.erase(0, comma + 1);
                auto decoded = detail::base64_decode(encoded);
                if (!decoded)
                    return error_frame("Invalid base64 image in model.query");
                image = std::move(*decoded);
                break;
            }
        }
        ++s.num_outputs;
        return enveloped(type,
                         json::object{{"result", expected_query_answer(string_or(data, "template_name"), focus, image)}},
                         opts.ws.query_latency);
    }

    return error_frame("Unknown event type: " + std::string(type));
}

} // namespace lens::emulator
