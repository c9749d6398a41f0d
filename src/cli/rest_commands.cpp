// lens lenses|sessions|files ...: the REST calls, one JSON document per result.
#include "cli/commands.hpp"
#include "cli/run.hpp"

#include <lens/client.hpp>

namespace lens::cli {

namespace json = boost::json;

namespace {

/// Runs `call(client)` and prints its JSON result.
template <class F>
action rest_action(globals& g, F call)
{
    return [&g, call] {
        boost::asio::io_context ctx;
        lens::client c(ctx.get_executor(), g.make_config());
        auto result = run_blocking(ctx, call(c));
        print_json_line(result);
        return 0;
    };
}

} // namespace

void add_rest_commands(CLI::App& app, globals& g, action& run)
{
    auto* lenses = app.add_subcommand("lenses", "Lens definitions")->require_subcommand(1);
    lenses->add_subcommand("list", "List the lenses")->callback([&] {
        run = rest_action(g, [](lens::client& c) -> task<json::value> { co_return to_json(co_await c.list_lenses()); });
    });
    {
        auto* get = lenses->add_subcommand("get", "Show one lens");
        auto id = std::make_shared<std::string>();
        get->add_option("ID", *id, "Lens id")->required();
        get->callback([&, id] {
            run = rest_action(g, [id](lens::client& c) -> task<json::value> {
                co_return json::value_from(co_await c.get_lens(*id));
            });
        });
    }

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
    sessions->add_subcommand("list", "List sessions")->callback([&] {
        run = rest_action(g, [](lens::client& c) -> task<json::value> { co_return to_json(co_await c.list_sessions()); });
    });
    {
        auto* get = sessions->add_subcommand("get", "Show one session");
        auto id = std::make_shared<std::string>();
        get->add_option("ID", *id, "Session id")->required();
        get->callback([&, id] {
            run = rest_action(g, [id](lens::client& c) -> task<json::value> {
                co_return json::value_from(co_await c.get_session(*id));
            });
        });
    }
    {
        auto* destroy = sessions->add_subcommand("destroy", "Destroy a session");
        auto id = std::make_shared<std::string>();
        destroy->add_option("ID", *id, "Session id")->required();
        destroy->callback([&, id] {
            run = rest_action(g, [id](lens::client& c) -> task<json::value> {
                co_return json::value_from(co_await c.destroy_session(*id));
            });
        });
    }

    auto* files = app.add_subcommand("files", "Uploaded files")->require_subcommand(1);
    {
        auto* upload = files->add_subcommand("upload", "Upload a file (png, jpg, mp4, csv, json, jsonl, txt)");
        auto path = std::make_shared<std::string>();
        upload->add_option("PATH", *path, "Local file")->required();
        upload->callback([&, path] {
            run = rest_action(g, [path](lens::client& c) -> task<json::value> {
                co_return json::value_from(co_await c.upload_file(std::filesystem::path(*path)));
            });
        });
    }
    files->add_subcommand("list", "List uploaded files")->callback([&] {
        run = rest_action(g, [](lens::client& c) -> task<json::value> { co_return to_json(co_await c.list_files()); });
    });
}

} // namespace lens::cli
