// lens status|validate|read|query|input ID: the WebSocket control channel, one
// request per invocation, the reply printed as JSON.
#include "cli/commands.hpp"
#include "cli/run.hpp"

#include <lens/client.hpp>
#include <lens/session.hpp>

#include <boost/json/value_from.hpp>

namespace lens::cli {

namespace json = boost::json;

namespace {

/// Looks the session up over REST (for its endpoint), opens the channel and runs `call`.
template <class F>
action session_action(globals& g, std::shared_ptr<std::string> id, F call)
{
    return [&g, id, call] {
        boost::asio::io_context ctx;
        const auto cfg = g.make_config();
        const bool explicit_timeout = g.timeout_seconds > 0;
        auto result = run_blocking(ctx, [](lens::config cfg, std::string id, F call, bool explicit_timeout) -> task<json::value> {
            lens::client c(co_await boost::asio::this_coro::executor, cfg);
            auto record = co_await c.get_session(id);
            session_options opts;
            opts.request_timeout = cfg.timeout;
            opts.connect_timeout = cfg.timeout;
            if (explicit_timeout) // --timeout bounds model.query too (its default is 90 s)
                opts.query_timeout = cfg.timeout;
            auto s = co_await c.open_session(record, opts);
            co_return co_await call(s);
        }(cfg, *id, call, explicit_timeout));
        print_json_line(result);
        return 0;
    };
}

struct query_args {
    std::string image, focus, instruction, template_name = "image_qa", model_version;
    unsigned max_new_tokens = 512;
};

struct input_args {
    std::string csv, video, rtsp, size;
    double fps = 0;
};

} // namespace

void add_session_commands(CLI::App& app, globals& g, action& run)
{
    auto add_simple = [&](const char* name, const char* help, auto call) {
        auto* cmd = app.add_subcommand(name, help);
        auto id = std::make_shared<std::string>();
        cmd->add_option("ID", *id, "Session id")->required();
        cmd->callback([&g, &run, id, call] { run = session_action(g, id, call); });
        return std::make_pair(cmd, id);
    };
    add_simple("status", "session.status: the session record", [](lens::session& s) -> task<json::value> {
        co_return json::value_from(co_await s.status());
    });
    add_simple("validate", "session.validate", [](lens::session& s) -> task<json::value> {
        co_return (co_await s.validate()).raw;
    });

    {
        auto* cmd = app.add_subcommand("read", "session.read: drain the session's mailbox");
        auto id = std::make_shared<std::string>();
        auto client_id = std::make_shared<std::string>();
        cmd->add_option("ID", *id, "Session id")->required();
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
                co_return r.raw;
            });
        });
    }
    {
        auto* cmd = app.add_subcommand("query", "model.query: ask the lens's model about an image");
        auto id = std::make_shared<std::string>();
        auto a = std::make_shared<query_args>();
        cmd->add_option("ID", *id, "Session id")->required();
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
        auto* csv = cmd->add_option("--csv", a->csv, "An uploaded CSV file id");
        auto* video = cmd->add_option("--video", a->video, "An uploaded video file id");
        auto* rtsp = cmd->add_option("--rtsp", a->rtsp, "An RTSP camera URL");
        csv->excludes(video)->excludes(rtsp);
        video->excludes(rtsp);
        cmd->add_option("--size", a->size, "Target image size HxW (rtsp)")->needs(rtsp);
        cmd->add_option("--fps", a->fps, "Target frame rate (rtsp)")->needs(rtsp)->check(CLI::PositiveNumber);
        cmd->callback([&g, &run, id, a] {
            if (a->csv.empty() && a->video.empty() && a->rtsp.empty())
                throw CLI::ValidationError("input", "one of --csv, --video or --rtsp is required");
            input_stream stream;
            if (!a->csv.empty()) {
                stream = csv_stream{a->csv};
            } else if (!a->video.empty()) {
                stream = video_stream{a->video};
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
}

} // namespace lens::cli
