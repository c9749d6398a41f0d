// Streamed file transfers (lens/transfer.hpp): uploads from disk and downloads to a path
// or a sink, a chunk at a time, with stall deadlines and progress reports. Against the
// emulator for the round trips, and against a tiny scripted HTTP peer for the stalls
// (one that stops sending mid-body, one that is slow but keeps moving, one that never answers).
#include "integration/fixture.hpp"

#include <lens/transfer.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <openssl/evp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using asio::ip::tcp;
using namespace std::chrono_literals;
using lens::test::contains;
using lens::test::expect_error;
using lens::test::fixture;

/// A fresh directory under the system's temporary directory, removed with its contents.
struct temp_dir {
    fs::path path;
    temp_dir()
    {
        std::random_device rd;
        path = fs::temp_directory_path() / ("lens-transfer-" + std::to_string(rd()) + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~temp_dir()
    {
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
    fs::path operator/(const std::string& name) const { return path / name; }
};

/// Writes `size` pseudo-random bytes to `path`, a chunk at a time.
void write_random_file(const fs::path& path, std::uint64_t size, std::uint32_t seed)
{
    std::mt19937 rng(seed);
    std::ofstream out(path, std::ios::binary);
    std::vector<char> chunk(1 << 16);
    for (std::uint64_t left = size; left > 0;) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, chunk.size()));
        for (std::size_t i = 0; i < n; ++i)
            chunk[i] = static_cast<char>(rng());
        out.write(chunk.data(), static_cast<std::streamsize>(n));
        left -= n;
    }
}

/// SHA-256 of a byte string, hex (OpenSSL EVP).
class sha256 {
public:
    sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
    ~sha256() { EVP_MD_CTX_free(ctx_); }
    sha256(const sha256&) = delete;
    sha256& operator=(const sha256&) = delete;
    void update(std::string_view bytes) { EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()); }
    std::string hex()
    {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_DigestFinal_ex(ctx_, md, &len);
        std::string out;
        char two[3];
        for (unsigned int i = 0; i < len; ++i) {
            std::snprintf(two, sizeof two, "%02x", md[i]);
            out += two;
        }
        return out;
    }

private:
    EVP_MD_CTX* ctx_;
};

std::string sha256_of_file(const fs::path& path)
{
    sha256 h;
    std::ifstream in(path, std::ios::binary);
    std::vector<char> chunk(1 << 16);
    while (in) {
        in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
        h.update(std::string_view(chunk.data(), static_cast<std::size_t>(in.gcount())));
    }
    return h.hex();
}

/// What a progress callback saw.
struct progress_log {
    std::vector<std::uint64_t> done;
    std::optional<std::uint64_t> total;
    bool total_changed = false;

    lens::transfer_progress callback()
    {
        return [this](std::uint64_t d, std::optional<std::uint64_t> t) {
            if (!done.empty() && t != total)
                total_changed = true;
            done.push_back(d);
            total = t;
        };
    }
    bool increasing() const
    {
        for (std::size_t i = 1; i < done.size(); ++i)
            if (done[i] <= done[i - 1])
                return false;
        return true;
    }
};

lens::transfer_options options_with(std::chrono::milliseconds stall, lens::transfer_progress progress = {})
{
    lens::transfer_options o;
    o.stall_timeout = stall;
    o.progress = std::move(progress);
    return o;
}

// ---- a scripted HTTP peer ----------------------------------------------------------

/// A loopback listener for scripted exchanges; its endpoint is a lens endpoint.
struct test_peer {
    tcp::acceptor acceptor;
    int connections = 0;

    explicit test_peer(asio::any_io_executor ex) : acceptor(ex, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {}
    std::string endpoint() const
    {
        return "http://127.0.0.1:" + std::to_string(acceptor.local_endpoint().port()) + "/v0.5";
    }
};

/// Waits until the client closes the connection (what a stalled server looks like to it).
asio::awaitable<void> hold_until_closed(tcp::socket& socket)
{
    char byte;
    co_await asio::async_read(socket, asio::buffer(&byte, 1), asio::as_tuple(asio::use_awaitable));
}

/// One download exchange: answers any request with a `total`-byte body sent in `chunk`
/// bytes every `interval`, and stops sending (holding the connection open) after
/// `stop_after` bytes.
/// With `cut` set, it closes the connection after `stop_after` bytes instead of holding it
/// (a transfer interrupted half way).
asio::awaitable<void> serve_download(test_peer& peer, std::size_t total, std::size_t chunk,
                                     std::chrono::milliseconds interval, std::size_t stop_after, bool cut = false)
{
    auto [aec, socket] = co_await peer.acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (aec)
        co_return;
    ++peer.connections;
    std::string request;
    co_await asio::async_read_until(socket, asio::dynamic_buffer(request), "\r\n\r\n",
                                    asio::as_tuple(asio::use_awaitable));
    std::string head = "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: " + std::to_string(total) +
                       "\r\n\r\n";
    co_await asio::async_write(socket, asio::buffer(head), asio::as_tuple(asio::use_awaitable));
    asio::steady_timer timer(socket.get_executor());
    std::string piece(chunk, 'x');
    for (std::size_t sent = 0; sent < total;) {
        if (sent >= stop_after) {
            if (!cut)
                co_await hold_until_closed(socket);
            co_return;
        }
        const auto n = std::min(chunk, total - sent);
        auto [wec, written] = co_await asio::async_write(socket, asio::buffer(piece.data(), n),
                                                         asio::as_tuple(asio::use_awaitable));
        if (wec)
            co_return;
        sent += n;
        timer.expires_after(interval);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    co_await hold_until_closed(socket);
}

/// One upload exchange: reads the request and its whole body, then never answers.
asio::awaitable<void> serve_silent_upload(test_peer& peer, std::uint64_t* body_bytes)
{
    auto [aec, socket] = co_await peer.acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (aec)
        co_return;
    ++peer.connections;
    std::string request;
    auto [ec, header_end] = co_await asio::async_read_until(socket, asio::dynamic_buffer(request), "\r\n\r\n",
                                                            asio::as_tuple(asio::use_awaitable));
    if (ec)
        co_return;
    const auto at = request.find("Content-Length: ");
    const std::uint64_t length = at == std::string::npos ? 0 : std::stoull(request.substr(at + 16));
    std::uint64_t got = request.size() - header_end;
    std::vector<char> chunk(1 << 16);
    while (got < length) {
        auto [rec, n] = co_await socket.async_read_some(asio::buffer(chunk), asio::as_tuple(asio::use_awaitable));
        if (rec)
            co_return;
        got += n;
    }
    *body_bytes = got;
    co_await hold_until_closed(socket);
}

/// Two download exchanges: the first cut half way, the second whole.
asio::awaitable<void> serve_cut_then_whole(test_peer& peer, std::size_t total)
{
    co_await serve_download(peer, total, 10'000, 1ms, total / 2, true);
    co_await serve_download(peer, total, 10'000, 1ms, total);
}

/// One upload exchange: reads the request header and `cut_after` bytes of its body, then closes.
asio::awaitable<void> serve_cut_upload(test_peer& peer, std::uint64_t cut_after)
{
    auto [aec, socket] = co_await peer.acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (aec)
        co_return;
    ++peer.connections;
    std::string request;
    auto [ec, header_end] = co_await asio::async_read_until(socket, asio::dynamic_buffer(request), "\r\n\r\n",
                                                            asio::as_tuple(asio::use_awaitable));
    if (ec)
        co_return;
    std::uint64_t got = request.size() - header_end;
    std::vector<char> chunk(1 << 16);
    while (got < cut_after) {
        auto [rec, n] = co_await socket.async_read_some(asio::buffer(chunk), asio::as_tuple(asio::use_awaitable));
        if (rec)
            co_return;
        got += n;
    }
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
}

} // namespace

TEST_CASE("files: a multi-MiB upload streamed from disk and its download to a path have equal SHA-256")
{
    auto opts = lens::test::emulator_options();
    std::size_t spooled = 0;
    SUBCASE("the emulator keeps the file in memory") {}
    SUBCASE("the emulator spools the file to disk")
    {
        opts.spool_uploads_over = 1024 * 1024;
        spooled = 1;
    }
    SUBCASE("over https, the emulator spooling")
    {
        opts = lens::test::tls_options();
        opts.spool_uploads_over = 1024 * 1024;
        spooled = 1;
    }
    fixture f(opts);
    temp_dir dir;
    const auto source = dir / "clip.mp4";
    // Over 8 MiB (Beast's default response body limit) and not a multiple of the chunk size.
    const std::uint64_t size = 9 * 1024 * 1024 + 12345;
    write_random_file(source, size, 42);
    const auto target = dir / "copy.mp4";
    progress_log up, down;
    f.run([&]() -> lens::task<void> {
        auto c = f.make_client();
        auto uploaded = co_await c.upload_file(source, options_with(5s, up.callback()));
        CHECK(uploaded.file_id == "clip.mp4");
        CHECK(f.stats().spooled_uploads == spooled);
        const auto written = co_await c.download_file_to("clip.mp4", target, options_with(5s, down.callback()));
        CHECK(written == size);
        auto record = co_await c.get_file("clip.mp4");
        CHECK(record.file_size == size);
        // The same file again, in memory: the buffered form still works on either storage.
        CHECK((co_await c.download_file("clip.mp4")).size() == size);
        CHECK(c.stats().bytes_sent >= size);
        CHECK(c.stats().bytes_received >= size);
    });
    CHECK(sha256_of_file(target) == sha256_of_file(source));
    CHECK(fs::file_size(target) == size);
    CHECK_FALSE(fs::exists(target.string() + ".part"));
    // Progress: increasing counts, each chunk reported, ending at the total.
    REQUIRE(up.done.size() > 10);
    CHECK(up.increasing());
    CHECK(up.done.back() == size);
    CHECK(up.total == size);
    CHECK_FALSE(up.total_changed);
    REQUIRE(down.done.size() > 10);
    CHECK(down.increasing());
    CHECK(down.done.back() == size);
    CHECK(down.total == size); // the emulator sends a Content-Length
}

TEST_CASE("files: a download to a sink gets the file in chunks no larger than chunk_size")
{
    fixture f;
    temp_dir dir;
    const auto source = dir / "records.csv";
    write_random_file(source, 3 * 1024 * 1024 + 7, 7);
    std::size_t largest = 0, chunks = 0;
    sha256 h;
    f.run([&]() -> lens::task<void> {
        auto c = f.make_client();
        co_await c.upload_file(source);
        lens::transfer_options opts;
        opts.chunk_size = 16 * 1024;
        const auto delivered = co_await c.download_file_to_sink(
            "records.csv",
            [&](std::string_view chunk) {
                largest = std::max(largest, chunk.size());
                ++chunks;
                h.update(chunk);
            },
            opts);
        CHECK(delivered == fs::file_size(source));
    });
    CHECK(largest <= 16 * 1024);
    CHECK(chunks >= (3 * 1024 * 1024) / (16 * 1024));
    CHECK(h.hex() == sha256_of_file(source));
}

TEST_CASE("files: a download to a path of an unknown file is not_found and leaves no file behind")
{
    fixture f;
    temp_dir dir;
    const auto target = dir / "missing.mp4";
    f.run([&]() -> lens::task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error(lens::errc::not_found, [&] { return c.download_file_to("missing.mp4", target); });
        CHECK(contains(e.what(), "files/download"));
    });
    CHECK_FALSE(fs::exists(target));
    CHECK_FALSE(fs::exists(target.string() + ".part"));
}

TEST_CASE("files: an upload of a missing file or an unsupported type is rejected before sending")
{
    fixture f;
    temp_dir dir;
    std::ofstream(dir / "notes.exe") << "MZ";
    f.run([&]() -> lens::task<void> {
        auto c = f.make_client();
        co_await expect_error(lens::errc::invalid_argument, [&] { return c.upload_file(dir / "absent.mp4"); });
        co_await expect_error(lens::errc::invalid_argument, [&] { return c.upload_file(dir / "notes.exe"); });
        CHECK(c.stats().attempts == 0);
    });
}

TEST_CASE("files: a download that stalls mid-body fails with timeout after stall_timeout and removes the .part")
{
    fixture f;
    temp_dir dir;
    test_peer peer(f.ctx.get_executor());
    const auto target = dir / "stalled.mp4";
    asio::co_spawn(f.ctx, serve_download(peer, 1'000'000, 10'000, 1ms, 50'000), asio::detached);
    progress_log seen;
    f.run([&]() -> lens::task<void> {
        auto cfg = lens::test::test_config(peer.endpoint(), lens::test::test_key("test-key"));
        cfg.retry.max_attempts = 1;
        auto c = f.make_client(cfg);
        const auto started = lens::test::steady::now();
        co_await expect_error(lens::errc::timeout, [&] {
            return c.download_file_to("stalled.mp4", target, options_with(300ms, seen.callback()));
        });
        const auto took = lens::test::steady::now() - started;
        CHECK(took >= 250ms);
        CHECK(took < 3s);
        CHECK(c.stats().timeouts == 1);
        peer.acceptor.close();
    });
    CHECK(peer.connections == 1);
    REQUIRE_FALSE(seen.done.empty());
    CHECK(seen.done.back() == 50'000); // what arrived before the stall was reported
    CHECK(seen.total == 1'000'000);
    CHECK_FALSE(fs::exists(target));
    CHECK_FALSE(fs::exists(target.string() + ".part"));
}

TEST_CASE("files: a sink download that stalled after a first chunk is not retried")
{
    fixture f;
    test_peer peer(f.ctx.get_executor());
    asio::co_spawn(f.ctx, serve_download(peer, 100'000, 10'000, 1ms, 20'000), asio::detached);
    std::uint64_t received = 0;
    f.run([&]() -> lens::task<void> {
        auto c = f.make_client(lens::test::test_config(peer.endpoint(), lens::test::test_key("test-key"))); // 4 attempts allowed
        co_await expect_error(lens::errc::timeout, [&] {
            return c.download_file_to_sink(
                "stalled.mp4", [&](std::string_view chunk) { received += chunk.size(); }, options_with(200ms));
        });
        CHECK(c.stats().attempts == 1);
        peer.acceptor.close();
    });
    CHECK(peer.connections == 1);
    CHECK(received == 20'000);
}

TEST_CASE("files: a slow download that keeps moving outlasts its stall_timeout and succeeds")
{
    fixture f;
    temp_dir dir;
    test_peer peer(f.ctx.get_executor());
    const auto target = dir / "slow.mp4";
    // 12 chunks 100 ms apart: 1.1 s in all, never 300 ms without progress.
    asio::co_spawn(f.ctx, serve_download(peer, 12'000, 1'000, 100ms, 12'000), asio::detached);
    progress_log seen;
    f.run([&]() -> lens::task<void> {
        auto cfg = lens::test::test_config(peer.endpoint(), lens::test::test_key("test-key"));
        cfg.timeout = 500ms; // the whole-call deadline of buffered calls does not apply
        auto c = f.make_client(cfg);
        const auto started = lens::test::steady::now();
        const auto written = co_await c.download_file_to("slow.mp4", target, options_with(300ms, seen.callback()));
        CHECK(written == 12'000);
        CHECK(lens::test::steady::now() - started >= 1s);
        peer.acceptor.close();
    });
    CHECK(fs::file_size(target) == 12'000);
    CHECK(seen.increasing());
    CHECK(seen.done.size() >= 12);
    CHECK(seen.done.back() == 12'000);
}

TEST_CASE("files: an upload whose reply never comes fails with timeout after stall_timeout, not retried")
{
    fixture f;
    temp_dir dir;
    test_peer peer(f.ctx.get_executor());
    const auto source = dir / "clip.mp4";
    write_random_file(source, 1024 * 1024, 3);
    std::uint64_t body_bytes = 0;
    asio::co_spawn(f.ctx, serve_silent_upload(peer, &body_bytes), asio::detached);
    f.run([&]() -> lens::task<void> {
        auto c = f.make_client(lens::test::test_config(peer.endpoint(), lens::test::test_key("test-key"))); // 4 attempts allowed
        const auto started = lens::test::steady::now();
        co_await expect_error(lens::errc::timeout, [&] { return c.upload_file(source, options_with(300ms)); });
        const auto took = lens::test::steady::now() - started;
        CHECK(took >= 250ms);
        CHECK(took < 3s);
        CHECK(c.stats().attempts == 1); // it may have been processed: never sent twice
        peer.acceptor.close();
    });
    CHECK(peer.connections == 1);
    CHECK(body_bytes > 1024 * 1024); // the whole multipart body arrived
}

TEST_CASE("files: a download to a path cancelled mid-body removes the .part and writes nothing")
{
    using namespace boost::asio::experimental::awaitable_operators;
    fixture f;
    temp_dir dir;
    test_peer peer(f.ctx.get_executor());
    const auto target = dir / "cancelled.mp4";
    asio::co_spawn(f.ctx, serve_download(peer, 100'000, 1'000, 20ms, 100'000), asio::detached);
    bool part_seen = false;
    f.run([&]() -> lens::task<void> {
        auto c = f.make_client(lens::test::test_config(peer.endpoint(), lens::test::test_key("test-key")));
        auto opts = options_with(5s, [&](std::uint64_t, std::optional<std::uint64_t>) {
            part_seen = part_seen || fs::exists(target.string() + ".part");
        });
        asio::steady_timer timer(f.ctx, 200ms);
        auto winner = co_await (c.download_file_to("cancelled.mp4", target, opts) ||
                                timer.async_wait(asio::use_awaitable));
        CHECK(winner.index() == 1);
        peer.acceptor.close();
    });
    CHECK(part_seen); // the bytes went to the .part while the download ran
    CHECK_FALSE(fs::exists(target));
    CHECK_FALSE(fs::exists(target.string() + ".part"));
}

TEST_CASE("files: a streamed upload is retried after a 429 (surely unprocessed), reading the file again, not after a 503")
{
    auto opts = lens::test::emulator_options();
    opts.spool_uploads_over = 1024 * 1024; // the refused body is spooled, then dropped
    fixture f(opts);
    temp_dir dir;
    const auto source = dir / "retried.csv";
    const std::uint64_t size = 2 * 1024 * 1024 + 1;
    write_random_file(source, size, 11);
    progress_log seen;
    f.run([&]() -> lens::task<void> {
        auto c = f.make_client();
        f.knobs().rest.fail_next = 1;
        f.knobs().rest.fail_status = 429;
        auto record = co_await c.upload_file(source, options_with(5s, seen.callback()));
        CHECK(record.file_id == "retried.csv");
        CHECK(c.stats().retries == 1);
        CHECK(c.stats().rate_limited == 1);
        const auto copy = dir / "copy.csv";
        CHECK(co_await c.download_file_to("retried.csv", copy) == size);
        CHECK(sha256_of_file(copy) == sha256_of_file(source));

        f.knobs().rest.fail_next = 1;
        f.knobs().rest.fail_status = 503;
        const auto before = c.stats().attempts;
        co_await expect_error(lens::errc::server_error, [&] { return c.upload_file(source); });
        CHECK(c.stats().attempts == before + 1); // it may have been processed: never sent twice
    });
    // The second attempt reported from the start again, and ended at the total.
    REQUIRE_FALSE(seen.done.empty());
    CHECK_FALSE(seen.increasing());
    CHECK(seen.done.back() == size);
    CHECK(std::count(seen.done.begin(), seen.done.end(), size) == 2);
}

TEST_CASE("files: a download into a directory that does not exist fails with the OS's error before sending")
{
    fixture f;
    temp_dir dir;
    f.run([&]() -> lens::task<void> {
        auto c = f.make_client();
        auto e = co_await expect_error([&] { return c.download_file_to("any.csv", dir / "absent" / "any.csv"); });
        CHECK(e.code() == boost::system::errc::no_such_file_or_directory);
        CHECK(contains(e.what(), "files/download"));
        CHECK(contains(e.what(), "any.csv.part"));
        CHECK(c.stats().attempts == 0);
    });
}

TEST_CASE("files: a download to a path cut half way by the server is retried from the start and arrives whole")
{
    fixture f;
    temp_dir dir;
    test_peer peer(f.ctx.get_executor());
    const auto target = dir / "cut.mp4";
    asio::co_spawn(f.ctx, serve_cut_then_whole(peer, 200'000), asio::detached);
    progress_log seen;
    f.run([&]() -> lens::task<void> {
        auto c = f.make_client(lens::test::test_config(peer.endpoint(), lens::test::test_key("test-key"))); // 4 attempts allowed
        const auto written = co_await c.download_file_to("cut.mp4", target, options_with(2s, seen.callback()));
        CHECK(written == 200'000);
        CHECK(c.stats().attempts == 2);
        peer.acceptor.close();
    });
    CHECK(peer.connections == 2);
    REQUIRE(fs::exists(target));
    CHECK(fs::file_size(target) == 200'000); // not the first half plus the whole
    CHECK_FALSE(fs::exists(target.string() + ".part"));
    std::ifstream in(target, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(std::count(bytes.begin(), bytes.end(), 'x') == 200'000);
    REQUIRE_FALSE(seen.done.empty());
    CHECK(seen.done.back() == 200'000);
}

TEST_CASE("files: a sink download cut half way fails clearly and is not retried - the sink saw only the first half")
{
    fixture f;
    test_peer peer(f.ctx.get_executor());
    asio::co_spawn(f.ctx, serve_cut_then_whole(peer, 100'000), asio::detached);
    std::uint64_t received = 0;
    f.run([&]() -> lens::task<void> {
        auto c = f.make_client(lens::test::test_config(peer.endpoint(), lens::test::test_key("test-key")));
        std::string message;
        try {
            co_await c.download_file_to_sink(
                "cut.mp4", [&](std::string_view chunk) { received += chunk.size(); }, options_with(2s));
            FAIL("a download cut half way succeeded");
        } catch (const lens::error& e) {
            message = e.what();
        }
        CHECK(contains(message, "download"));
        CHECK(c.stats().attempts == 1);
        peer.acceptor.close();
    });
    CHECK(peer.connections == 1);
    CHECK(received == 50'000);
}

TEST_CASE("files: an upload cut half way by the server fails clearly within its stall_timeout")
{
    fixture f;
    temp_dir dir;
    test_peer peer(f.ctx.get_executor());
    const auto source = dir / "clip.mp4";
    write_random_file(source, 4 * 1024 * 1024, 5);
    asio::co_spawn(f.ctx, serve_cut_upload(peer, 1024 * 1024), asio::detached);
    f.run([&]() -> lens::task<void> {
        auto cfg = lens::test::test_config(peer.endpoint(), lens::test::test_key("test-key"));
        cfg.retry.max_attempts = 1;
        auto c = f.make_client(cfg);
        const auto started = lens::test::steady::now();
        std::string message;
        try {
            co_await c.upload_file(source, options_with(5s));
            FAIL("an upload cut half way succeeded");
        } catch (const lens::error& e) {
            message = e.what();
            CHECK(e.code() != lens::errc::timeout); // the reset is seen, not waited out
        }
        CHECK(contains(message, "upload"));
        CHECK(lens::test::steady::now() - started < 4s);
        peer.acceptor.close();
    });
    CHECK(peer.connections == 1);
}
