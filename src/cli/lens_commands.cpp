// lens lenses list|get|info|clone|delete: the lens definitions, one JSON document per result.
// (lenses register and lenses modify, which read a lens configuration, live elsewhere.)
#include "cli/commands.hpp"
#include "cli/run.hpp"

#include <lens/client.hpp>

#include <boost/json/object.hpp>

namespace lens::cli {

namespace json = boost::json;

void add_lens_commands(CLI::App& app, globals& g, action& run)
{
    auto* lenses = app.add_subcommand("lenses", "Lens definitions")->require_subcommand(1);
    {
        auto* list = lenses->add_subcommand("list", "List the lenses (a JSON array; one page with --shard-index)");
        auto p = std::make_shared<lens::page>();
        add_page_options(*list, *p);
        list->callback([&, p] {
            run = rest_action(g, [p](lens::client& c) -> task<json::value> {
                co_return to_json(co_await c.list_lenses(*p));
            });
        });
    }
    {
        auto* get = lenses->add_subcommand("get", "Show one lens");
        auto id = add_id(*get, "ID", "Lens id");
        get->callback([&, id] {
            run = rest_action(g, [id](lens::client& c) -> task<json::value> {
                co_return json::value_from(co_await c.get_lens(*id));
            });
        });
    }
    lenses->add_subcommand("info", "lens/info: the service's summary of the lenses")->callback([&] {
        run = rest_action(g, [](lens::client& c) -> task<json::value> { co_return co_await c.lens_info(); });
    });
    {
        auto* clone = lenses->add_subcommand("clone", "Copy a lens; prints the new lens");
        auto id = add_id(*clone, "ID", "Lens id to copy");
        clone->callback([&, id] {
            run = rest_action(g, [id](lens::client& c) -> task<json::value> {
                co_return json::value_from(co_await c.clone_lens(*id));
            });
        });
    }
    {
        auto* del = lenses->add_subcommand("delete", "Delete a lens; prints {\"lens_id\", \"deleted\": true}");
        auto id = add_id(*del, "ID", "Lens id");
        del->callback([&, id] {
            run = rest_action(g, [id](lens::client& c) -> task<json::value> {
                co_await c.delete_lens(*id);
                json::object done;
                done["lens_id"] = *id;
                done["deleted"] = true;
                co_return done;
            });
        });
    }
}

} // namespace lens::cli
