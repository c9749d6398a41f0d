// lens sessions create|list|get|destroy|info|process: the REST calls on sessions, one
// JSON document per result.
#include "cli/commands.hpp"
#include "cli/run.hpp"

#include <lens/client.hpp>

namespace lens::cli {

namespace json = boost::json;

namespace {

struct process_args {
    std::string session_id, type, data;
    json::value event_data; ///< `data` parsed (null without --data)
};

} // namespace

void add_rest_commands(CLI::App& app, globals& g, action& run)
{
    auto* sessions = app.add_subcommand("sessions", "Lens sessions")->require_subcommand(1);
    {
        auto* create = sessions->add_subcommand("create", "Create a session of a lens");
        auto id = std::make_shared<std::string>();
        create->add_option("--lens-id", *id, "Lens id")->required();
        create->callback([&, id] {
            run = rest_action(g, [id](lens::client& c) -> task<json::value> {
                co_return json::value_from(co_await c.create_session(*id));
            });
        });
    }
    {
        auto* list = sessions->add_subcommand("list", "List sessions (a JSON array; one page with --shard-index)");
        auto p = std::make_shared<lens::page>();
        add_page_options(*list, *p);
        list->callback([&, p] {
            run = rest_action(g, [p](lens::client& c) -> task<json::value> {
                co_return to_json(co_await c.list_sessions(*p));
            });
        });
    }
    {
        auto* get = sessions->add_subcommand("get", "Show one session");
        auto id = add_id(*get, "ID", "Session id");
        get->callback([&, id] {
            run = rest_action(g, [id](lens::client& c) -> task<json::value> {
                co_return json::value_from(co_await c.get_session(*id));
            });
        });
    }
    {
        auto* destroy = sessions->add_subcommand("destroy", "Destroy a session (REST; see also `lens destroy`)");
        auto id = add_id(*destroy, "ID", "Session id");
        destroy->callback([&, id] {
            run = rest_action(g, [id](lens::client& c) -> task<json::value> {
                co_return json::value_from(co_await c.destroy_session(*id));
            });
        });
    }
    sessions->add_subcommand("info", "lens/sessions/info: the service's summary of the sessions")->callback([&] {
        run = rest_action(g, [](lens::client& c) -> task<json::value> { co_return co_await c.sessions_info(); });
    });
    {
        auto* process = sessions->add_subcommand(
            "process", "sessions/events/process: send one event over REST; prints the reply the WebSocket would give");
        auto a = std::make_shared<process_args>();
        process->add_option("ID", a->session_id, "Session id")->required();
        process->add_option("TYPE", a->type, "Event type, e.g. session.status or session.update")->required();
        auto* data = process->add_option("--data", a->data, "The event's event_data, as JSON");
        process->callback([&, a, data] {
            if (data->count() > 0)
                a->event_data = parse_json_option("--data", a->data);
            run = rest_action(g, [a](lens::client& c) -> task<json::value> {
                co_return co_await c.process_event(a->session_id, a->type, a->event_data);
            });
        });
    }
}

} // namespace lens::cli
