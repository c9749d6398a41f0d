// lens files upload|list|info|get|delete|download: the uploaded files. Uploads and
// downloads are streamed (lens/transfer.hpp), with a progress line on stderr when it is a
// terminal; `files download` without --output writes the file's bytes to stdout and
// nothing else.
#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cli/run.hpp"

#include <lens/client.hpp>
#include <lens/error.hpp>

#include <boost/json/object.hpp>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

namespace lens::cli {

namespace json = boost::json;

namespace {

struct upload_args {
    std::string path;
    bool base64 = false;
    bool no_progress = false;
};

struct download_args {
    std::string file_id, output;
    bool no_progress = false;
};

/// The whole file `path` (for the base64 upload, which encodes it in memory).
std::string read_whole_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw lens::error(boost::system::error_code(errno, boost::system::system_category()), "files/upload-base64",
                          "cannot open " + path);
    std::ostringstream contents;
    contents << in.rdbuf();
    if (in.bad())
        throw lens::error(boost::system::error_code(errno, boost::system::system_category()), "files/upload-base64",
                          "cannot read " + path);
    return std::move(contents).str();
}

int upload(globals& g, const upload_args& a)
{
    boost::asio::io_context ctx;
    lens::client c(ctx.get_executor(), g.make_config());
    const std::string name = std::filesystem::path(a.path).filename().string();
    if (a.base64) {
        // files/base64 takes the encoded contents in one multipart body: no streaming, no progress.
        auto record = run_blocking(ctx, [](lens::client& c, std::string name, std::string contents) -> task<json::value> {
            co_return json::value_from(co_await c.upload_file_base64(std::move(name), std::move(contents)));
        }(c, name, read_whole_file(a.path)));
        print_json_line(record);
        return 0;
    }
    progress_line line("upload " + name, progress_wanted(a.no_progress));
    auto opts = transfer_options_of(g);
    opts.progress = line.callback();
    auto record = run_blocking(ctx, [](lens::client& c, std::filesystem::path path,
                                       lens::transfer_options opts) -> task<json::value> {
        co_return json::value_from(co_await c.upload_file(std::move(path), opts));
    }(c, a.path, opts));
    line.finish();
    print_json_line(record);
    return 0;
}

int download(globals& g, const download_args& a)
{
    boost::asio::io_context ctx;
    lens::client c(ctx.get_executor(), g.make_config());
    progress_line line("download " + a.file_id, progress_wanted(a.no_progress));
    auto opts = transfer_options_of(g);
    opts.progress = line.callback();
    if (a.output.empty()) {
        // The bytes, and only they, go to stdout.
        lens::transfer_sink to_stdout = [](std::string_view chunk) {
            if (std::fwrite(chunk.data(), 1, chunk.size(), stdout) != chunk.size())
                throw lens::error(boost::system::error_code(errno, boost::system::system_category()),
                                  "files/download", "writing stdout");
        };
        run_blocking(ctx, [](lens::client& c, std::string id, lens::transfer_sink sink,
                             lens::transfer_options opts) -> task<std::uint64_t> {
            co_return co_await c.download_file_to_sink(std::move(id), std::move(sink), opts);
        }(c, a.file_id, std::move(to_stdout), opts));
        if (std::fflush(stdout) != 0)
            throw lens::error(boost::system::error_code(errno, boost::system::system_category()), "files/download",
                              "writing stdout");
        line.finish();
        return 0;
    }
    const std::uint64_t bytes = run_blocking(ctx, [](lens::client& c, std::string id, std::filesystem::path path,
                                                     lens::transfer_options opts) -> task<std::uint64_t> {
        co_return co_await c.download_file_to(std::move(id), std::move(path), opts);
    }(c, a.file_id, a.output, opts));
    line.finish();
    json::object done;
    done["file_id"] = a.file_id;
    done["path"] = a.output;
    done["bytes"] = bytes;
    print_json_line(done);
    return 0;
}

} // namespace

void add_file_commands(CLI::App& app, globals& g, action& run)
{
    auto* files = app.add_subcommand("files", "Uploaded files")->require_subcommand(1);
    {
        auto* cmd = files->add_subcommand("upload", "Upload a file (png, jpg, mp4, csv, json, jsonl, txt), streamed");
        auto a = std::make_shared<upload_args>();
        cmd->add_option("PATH", a->path, "Local file")->required()->check(CLI::ExistingFile);
        cmd->add_flag("--base64", a->base64, "Use the files/base64 endpoint (read into memory; no progress line)");
        cmd->add_flag("--no-progress", a->no_progress, "No progress line on stderr (drawn only on a terminal)");
        cmd->callback([&, a] { run = [&g, a] { return upload(g, *a); }; });
    }
    files->add_subcommand("list", "List uploaded files (a JSON array)")->callback([&] {
        run = rest_action(g, [](lens::client& c) -> task<json::value> { co_return to_json(co_await c.list_files()); });
    });
    files->add_subcommand("info", "files/info: the service's summary of the files")->callback([&] {
        run = rest_action(g, [](lens::client& c) -> task<json::value> { co_return co_await c.files_info(); });
    });
    {
        auto* get = files->add_subcommand("get", "Show one file's metadata");
        auto id = add_id(*get, "FILE_ID", "File id (as upload printed it)");
        get->callback([&, id] {
            run = rest_action(g, [id](lens::client& c) -> task<json::value> {
                co_return json::value_from(co_await c.get_file(*id));
            });
        });
    }
    {
        auto* del = files->add_subcommand("delete", "Delete a file; prints {\"file_id\", \"deleted\": true}");
        auto id = add_id(*del, "FILE_ID", "File id");
        del->callback([&, id] {
            run = rest_action(g, [id](lens::client& c) -> task<json::value> {
                co_await c.delete_file(*id);
                json::object done;
                done["file_id"] = *id;
                done["deleted"] = true;
                co_return done;
            });
        });
    }
    {
        auto* cmd = files->add_subcommand(
            "download", "Download a file, streamed: to --output (prints {\"file_id\", \"path\", \"bytes\"}) "
                        "or its bytes to stdout");
        auto a = std::make_shared<download_args>();
        cmd->add_option("FILE_ID", a->file_id, "File id")->required();
        cmd->add_option("--output,-o", a->output,
                        "Write here (via PATH.part, renamed when complete) instead of to stdout");
        cmd->add_flag("--no-progress", a->no_progress, "No progress line on stderr (drawn only on a terminal)");
        cmd->callback([&, a] {
            if (!a->output.empty()) {
                // Refused before anything is sent: the download would fail only after the request.
                const auto dir = std::filesystem::path(a->output).parent_path();
                std::error_code ec;
                if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
                    throw CLI::ValidationError("--output", "the directory " + dir.string() + " does not exist");
                if (std::filesystem::is_directory(a->output, ec))
                    throw CLI::ValidationError("--output", a->output + " is a directory");
            }
            run = [&g, a] { return download(g, *a); };
        });
    }
}

} // namespace lens::cli
