// lens lenses register|modify and lens run: custom lenses from configuration files
// (YAML or JSON, the official SDK's document shape; see config_file.hpp).
#include "cli/commands.hpp"
#include "cli/config_file.hpp"
#include "cli/run.hpp"
#include "cli/run_command.hpp"

#include <lens/client.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value_from.hpp>

#include <memory>
#include <stdexcept>

namespace lens::cli {

namespace json = boost::json;

namespace {

struct register_args {
    std::string config_path;
    std::string name;
    bool dry_run = false;
};

struct modify_args {
    std::string lens_id;
    std::string config_path;
    std::string data;
    std::string name;
};

/// The file's lens definition with `name` (when given) overriding its lens_name.
lens_definition definition_from(const std::string& path, const std::string& name)
{
    lens_definition def = lens_definition_of(load_config_file(path), path);
    if (!name.empty())
        def.lens_name = name;
    return def;
}

int register_lens(const globals& g, const register_args& a)
{
    lens_definition def = definition_from(a.config_path, a.name);
    if (def.lens_name.empty())
        throw config_error(a.config_path + ": no lens_name (give one in the file or with --name)");
    if (a.dry_run) { // the document that would be registered, in the SDK's shape
        json::object doc;
        doc["lens_name"] = def.lens_name;
        doc["lens_config"] = std::move(def.lens_config);
        print_json_line(doc);
        return 0;
    }
    boost::asio::io_context ctx;
    lens::client c(ctx.get_executor(), g.make_config());
    auto record = run_blocking(ctx, c.register_lens(std::move(def.lens_name), std::move(def.lens_config)));
    print_json_line(json::value_from(record));
    return 0;
}

/// The fields `lens/modify` receives beside `lens_id`.
json::object modify_fields(const modify_args& a)
{
    if (!a.data.empty()) {
        boost::system::error_code ec;
        json::value v = json::parse(a.data, ec);
        if (ec || !v.is_object())
            throw std::runtime_error("--data: not a JSON object" + (ec ? ": " + ec.message() : std::string()));
        json::object fields = std::move(v.get_object());
        if (!a.name.empty())
            fields["lens_name"] = a.name;
        return fields;
    }
    lens_definition def = definition_from(a.config_path, a.name);
    json::object fields;
    if (!def.lens_name.empty())
        fields["lens_name"] = def.lens_name;
    fields["lens_config"] = std::move(def.lens_config);
    return fields;
}

int modify_lens(const globals& g, const modify_args& a)
{
    json::object fields = modify_fields(a);
    boost::asio::io_context ctx;
    lens::client c(ctx.get_executor(), g.make_config());
    auto record = run_blocking(ctx, c.modify_lens(a.lens_id, std::move(fields)));
    print_json_line(json::value_from(record));
    return 0;
}

} // namespace

void add_lens_config_commands(CLI::App& app, globals& g, action& run)
{
    // `lenses` itself belongs to the REST commands (add_rest_commands runs first).
    CLI::App* lenses = app.get_subcommand("lenses");
    {
        auto* cmd = lenses->add_subcommand(
            "register", "Register a lens from a configuration file (YAML or JSON: lens_name, lens_config)");
        auto a = std::make_shared<register_args>();
        cmd->add_option("--config", a->config_path, "The lens configuration file")->required();
        cmd->add_option("--name", a->name, "The lens name (overrides the file's lens_name)");
        cmd->add_flag("--dry-run", a->dry_run, "Print the configuration as it would be registered; send nothing");
        cmd->callback([&g, &run, a] { run = [&g, a] { return register_lens(g, *a); }; });
    }
    {
        auto* cmd = lenses->add_subcommand(
            "modify", "Modify a lens: its configuration from a file (--config) or fields as JSON (--data)");
        auto a = std::make_shared<modify_args>();
        cmd->add_option("ID", a->lens_id, "Lens id")->required();
        auto* config = cmd->add_option("--config", a->config_path, "The new lens configuration file");
        auto* data = cmd->add_option("--data", a->data, "The fields to change, as a JSON object");
        config->excludes(data);
        cmd->add_option("--name", a->name, "A new lens name");
        cmd->callback([&g, &run, a] {
            if (a->config_path.empty() && a->data.empty())
                throw CLI::ValidationError("modify", "one of --config or --data is required");
            run = [&g, a] { return modify_lens(g, *a); };
        });
    }
    {
        auto* cmd = app.add_subcommand(
            "run", "Register a lens from a configuration file, run a session of it and print its events "
                   "(one JSON line {id, type, data} each); the session is destroyed and the lens deleted "
                   "however the run ends");
        auto o = std::make_shared<run_options>();
        cmd->add_option("--config", o->config_path, "The lens configuration file (YAML or JSON)")->required();
        cmd->add_option("--name", o->name, "The lens name (overrides the file's lens_name)");
        cmd->add_option("--input", o->input,
                        "A file to upload and attach as the input stream: .mp4 (video_file_reader), "
                        ".csv (csv_file_reader) or .jsonl (jsonl_file_reader)");
        cmd->add_option("--sensor-data", o->sensor_data,
                        "JSON lines to send as session.update data.json events, one per line (-: stdin)");
        cmd->add_option("--max-events", o->max_events,
                        "Stop after N lens events (the SSE envelope - stream start, heartbeats - not counted)");
        cmd->add_option("--duration", o->duration_seconds, "Stop after S seconds of reading events")
            ->check(CLI::PositiveNumber);
        cmd->add_flag("--no-validate", [o](std::int64_t) { o->validate = false; }, "Skip session.validate");
        cmd->footer("Ends at sse.stream.end, --max-events or --duration (exit status 0), SIGINT or SIGTERM "
                    "(exit status 128+N: 130, 143) or an error (exit status 1); the session is destroyed and "
                    "the lens deleted first in every case.");
        cmd->callback([&g, &run, o] {
            if (!o->input.empty() && !input_stream_type_for(o->input))
                throw CLI::ValidationError("--input", "expected a .mp4, .csv or .jsonl file: " + o->input);
            run = [&g, o] { return run_lens(g, *o); };
        });
    }
}

} // namespace lens::cli
