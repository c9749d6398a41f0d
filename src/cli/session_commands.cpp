// lens status|validate|read|query|input|destroy|update|call ID: the WebSocket control
// channel, one request per invocation (update --jsonl: one per line), each reply printed
// as JSON.
#include "cli/commands.hpp"
#include "cli/run.hpp"

#include <lens/client.hpp>
#include <lens/session.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value_from.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <vector>

namespace lens::cli {

namespace json = boost::json;

namespace {

/// Looks the session up over REST (for its endpoint), opens the channel and runs `call`
/// (a `task<void>` that prints what it gets).
template <class F>
action session_run(globals& g, std::shared_ptr<std::string> id, F call)
{
    return [&g, id, call] {
        boost::asio::io_context ctx;
        const auto cfg = g.make_config();
        const bool explicit_timeout = g.timeout_seconds > 0;
        const bool subprotocol_auth = g.subprotocol_auth;
        run_blocking(ctx, [](lens::config cfg, std::string id, F call, bool explicit_timeout,
                             bool subprotocol_auth) -> task<void> {
            lens::client c(co_await boost::asio::this_coro::executor, cfg);
            auto record = co_await c.get_session(id);
            session_options opts;
            opts.request_timeout = cfg.timeout;
            opts.connect_timeout = cfg.timeout;
            opts.subprotocol_auth = subprotocol_auth;
            if (explicit_timeout) // --timeout bounds model.query too (its default is 90 s)
                opts.query_timeout = cfg.timeout;
            auto s = co_await c.open_session(record, opts);
            co_await call(s);
        }(cfg, *id, call, explicit_timeout, subprotocol_auth));
        return 0;
    };
}

/// `session_run` for a `call` returning the one JSON value to print.
template <class F>
action session_action(globals& g, std::shared_ptr<std::string> id, F call)
{
    return session_run(g, id, [call](lens::session& s) -> task<void> {
        auto reply = co_await call(s);
        print_json_line(reply);
    });
}

/// `--subprotocol-auth` on a WebSocket subcommand too (the same switch as the global one).
void add_subprotocol_flag(CLI::App& cmd, globals& g)
{
    cmd.add_flag("--subprotocol-auth", g.subprotocol_auth,
                 "Send the key in Sec-WebSocket-Protocol, not in Authorization");
}

/// The JSON values of a JSON-lines file (`-`: stdin), read wholly and checked before
/// anything is sent; blank lines are skipped. A usage error names the line that is not JSON.
std::vector<json::value> read_json_lines(const std::string& path)
{
    std::ifstream file;
    std::istream* in = &std::cin;
    if (path != "-") {
        file.open(path);
        if (!file)
            throw CLI::ValidationError("--jsonl", "cannot open " + path + ": " + std::strerror(errno));
        in = &file;
    }
    std::vector<json::value> values;
    std::string line;
    for (std::size_t number = 1; std::getline(*in, line); ++number) {
        if (line.find_first_not_of(" \t\r") == std::string::npos)
            continue;
        boost::system::error_code ec;
        auto v = json::parse(line, ec);
        if (ec)
            throw CLI::ValidationError("--jsonl", path + " line " + std::to_string(number) + " is not valid JSON (" +
                                                      ec.message() + ")");
        values.push_back(std::move(v));
    }
    if (in->bad())
        throw CLI::ValidationError("--jsonl", "cannot read " + path);
    return values;
}

struct query_args {
    std::string image, focus, instruction, template_name = "image_qa", model_version;
    unsigned max_new_tokens = 512;
};

struct input_args {
    std::string csv, video, rtsp, size, jsonl, stream_type, stream_config;
    double fps = 0;
};

struct update_args {
    std::string json_text, jsonl_path;
    std::vector<json::value> updates; ///< parsed before anything is sent
};

struct call_args {
    std::string type, data;
    json::value event_data; ///< `data` parsed (null without --data)
};

} // namespace

void add_session_commands(CLI::App& app, globals& g, action& run)
{
    auto add_simple = [&](const char* name, const char* help, auto call) {
        auto* cmd = app.add_subcommand(name, help);
        auto id = std::make_shared<std::string>();
        cmd->add_option("ID", *id, "Session id")->required();
        add_subprotocol_flag(*cmd, g);
        cmd->callback([&g, &run, id, call] { run = session_action(g, id, call); });
        return std::make_pair(cmd, id);
    };
    add_simple("status", "session.status: the session record", [](lens::session& s) -> task<json::value> {
        co_return json::value_from(co_await s.status());
    });
    add_simple("validate", "session.validate", [](lens::session& s) -> task<json::value> {
        co_return (co_await s.validate()).raw();
    });
    add_simple("destroy", "session.destroy over the WebSocket (see also `lens sessions destroy`, over REST)",
               [](lens::session& s) -> task<json::value> { co_return co_await s.destroy(); });

    {
        auto* cmd = app.add_subcommand("read", "session.read: drain the session's mailbox");
        auto id = std::make_shared<std::string>();
        auto client_id = std::make_shared<std::string>();
        cmd->add_option("ID", *id, "Session id")->required();
        add_subprotocol_flag(*cmd, g);
        cmd->add_option("--client-id", *client_id, "Mailbox cursor (default: a random one, which replays from the start)");
        cmd->callback([&g, &run, id, client_id] {
            run = session_action(g, id, [client_id](lens::session& s) -> task<json::value> {
                // Not `cond ? co_await a : co_await b`: g++ 12 miscompiles co_await in both
                // arms of a conditional (the result is copied from a destroyed temporary).
                read_result r;
                if (client_id->empty())
                    r = co_await s.read();
                else
                    r = co_await s.read(*client_id);
                co_return r.raw();
            });
        });
    }
    {
        auto* cmd = app.add_subcommand("query", "model.query: ask the lens's model about an image");
        auto id = std::make_shared<std::string>();
        auto a = std::make_shared<query_args>();
        cmd->add_option("ID", *id, "Session id")->required();
        add_subprotocol_flag(*cmd, g);
        cmd->add_option("--image", a->image, "Image file (png, jpg)")->required()->check(CLI::ExistingFile);
        cmd->add_option("--focus", a->focus, "The question, or the objects to box")->required();
        cmd->add_option("--instruction", a->instruction, "Instruction text");
        cmd->add_option("--template", a->template_name, "image_qa or bbox")
            ->check(CLI::IsMember({"image_qa", "bbox"}))->capture_default_str();
        cmd->add_option("--model-version", a->model_version, "Model version");
        cmd->add_option("--max-new-tokens", a->max_new_tokens, "Answer length limit")->capture_default_str();
        cmd->callback([&g, &run, id, a] {
            run = session_action(g, id, [a](lens::session& s) -> task<json::value> {
                query_request q = a->template_name == "bbox" ? query_request::bbox(a->focus, {})
                                                             : query_request::image_qa(a->focus, {});
                q.images.clear();
                q.add_image_file(a->image);
                if (!a->instruction.empty()) q.instruction = a->instruction;
                if (!a->model_version.empty()) q.model_version = a->model_version;
                q.max_new_tokens = a->max_new_tokens;
                co_return co_await s.query(q);
            });
        });
    }
    {
        auto* cmd = app.add_subcommand("input", "input_stream.set: feed the session from a file or a camera");
        auto id = std::make_shared<std::string>();
        auto a = std::make_shared<input_args>();
        cmd->add_option("ID", *id, "Session id")->required();
        add_subprotocol_flag(*cmd, g);
        auto* csv = cmd->add_option("--csv", a->csv, "An uploaded CSV file id");
        auto* video = cmd->add_option("--video", a->video, "An uploaded video file id");
        auto* rtsp = cmd->add_option("--rtsp", a->rtsp, "An RTSP camera URL");
        auto* jsonl = cmd->add_option("--jsonl", a->jsonl, "An uploaded JSON-lines file id");
        auto* type = cmd->add_option("--stream-type", a->stream_type, "Any other stream type, sent as given");
        auto* config = cmd->add_option("--stream-config", a->stream_config,
                                       "Its stream_config, a JSON object (default {})");
        config->needs(type);
        const std::vector<CLI::Option*> sources{csv, video, rtsp, jsonl, type};
        for (std::size_t i = 0; i < sources.size(); ++i)
            for (std::size_t j = i + 1; j < sources.size(); ++j)
                sources[i]->excludes(sources[j]);
        cmd->add_option("--size", a->size, "Target image size HxW (rtsp)")->needs(rtsp);
        cmd->add_option("--fps", a->fps, "Target frame rate (rtsp)")->needs(rtsp)->check(CLI::PositiveNumber);
        cmd->callback([&g, &run, id, a] {
            if (a->csv.empty() && a->video.empty() && a->rtsp.empty() && a->jsonl.empty() && a->stream_type.empty())
                throw CLI::ValidationError("input",
                                           "one of --csv, --video, --rtsp, --jsonl or --stream-type is required");
            input_stream stream;
            if (!a->csv.empty()) {
                stream = csv_stream{a->csv};
            } else if (!a->video.empty()) {
                stream = video_stream{a->video};
            } else if (!a->jsonl.empty()) {
                stream = jsonl_stream{a->jsonl};
            } else if (!a->stream_type.empty()) {
                json::object config;
                if (!a->stream_config.empty()) {
                    auto v = parse_json_option("--stream-config", a->stream_config);
                    if (!v.is_object())
                        throw CLI::ValidationError("--stream-config", "must be a JSON object");
                    config = std::move(v.get_object());
                }
                stream = raw_stream{a->stream_type, std::move(config)};
            } else {
                rtsp_stream r;
                r.rtsp_url = a->rtsp;
                if (!a->size.empty()) {
                    unsigned h = 0, w = 0;
                    char x = 0;
                    if (std::sscanf(a->size.c_str(), "%u%c%u", &h, &x, &w) != 3 || (x != 'x' && x != 'X'))
                        throw CLI::ValidationError("--size", "expected HxW, e.g. 360x640");
                    r.height = h;
                    r.width = w;
                }
                if (a->fps > 0) r.frame_rate_hz = a->fps;
                stream = r;
            }
            run = session_action(g, id, [stream](lens::session& s) -> task<json::value> {
                co_return co_await s.set_input_stream(stream);
            });
        });
    }
    {
        auto* cmd = app.add_subcommand(
            "update", "session.update: push data.json into a running session; prints the reply "
                      "(--jsonl: one update and one reply line per input line)");
        auto id = std::make_shared<std::string>();
        auto a = std::make_shared<update_args>();
        cmd->add_option("ID", *id, "Session id")->required();
        add_subprotocol_flag(*cmd, g);
        auto* one = cmd->add_option("--json", a->json_text, "The event_data of the data.json update, as JSON");
        auto* lines = cmd->add_option("--jsonl", a->jsonl_path,
                                      "A JSON-lines file (- : stdin), read wholly first; each line is one update");
        one->excludes(lines);
        cmd->callback([&g, &run, id, a, one, lines] {
            if (one->count() == 0 && lines->count() == 0)
                throw CLI::ValidationError("update", "one of --json or --jsonl is required");
            if (one->count() > 0) {
                auto data = parse_json_option("--json", a->json_text);
                run = session_action(g, id, [data](lens::session& s) -> task<json::value> {
                    co_return co_await s.update(data);
                });
                return;
            }
            if (a->jsonl_path != "-" && !std::filesystem::is_regular_file(a->jsonl_path))
                throw CLI::ValidationError("--jsonl", "file does not exist: " + a->jsonl_path);
            a->updates = read_json_lines(a->jsonl_path);
            run = session_run(g, id, [a](lens::session& s) -> task<void> {
                for (auto& data : a->updates) {
                    auto reply = co_await s.update(data);
                    print_json_line(reply);
                }
            });
        });
    }
    {
        auto* cmd = app.add_subcommand("call", "Send any event {\"type\": TYPE, \"event_data\": DATA}; prints the reply");
        auto id = std::make_shared<std::string>();
        auto a = std::make_shared<call_args>();
        cmd->add_option("ID", *id, "Session id")->required();
        cmd->add_option("TYPE", a->type, "Event type, e.g. session.heartbeat")->required();
        add_subprotocol_flag(*cmd, g);
        auto* data = cmd->add_option("--data", a->data, "The event_data, as JSON (default: none)");
        cmd->callback([&g, &run, id, a, data] {
            if (data->count() > 0)
                a->event_data = parse_json_option("--data", a->data);
            run = session_action(g, id, [a](lens::session& s) -> task<json::value> {
                if (a->event_data.is_null())
                    co_return co_await s.call(a->type);
                co_return co_await s.call(a->type, a->event_data);
            });
        });
    }
}

} // namespace lens::cli
