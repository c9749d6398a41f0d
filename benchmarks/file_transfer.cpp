// A large file up and down through the streamed transfers (lens/transfer.hpp): the
// client's peak resident memory must stay far below the file's size.
//
//   build/bin/bench_file_transfer [--size BYTES] [--dir DIR] [--chunk BYTES]
//
// Generates a sparse file of --size bytes (default 2 GiB; a 64 KiB block of random
// bytes every 64 MiB, holes elsewhere) in --dir (default: the temporary directory),
// uploads it with client::upload_file(path, opts) to the emulator running in a child
// process (which spools it to disk: options::spool_uploads_over), downloads it with
// client::download_file_to, and compares SHA-256 (OpenSSL EVP) of both files. Reports
// the throughput of each direction, the client's peak RSS (getrusage ru_maxrss of this
// process, which also hashes both files) and the emulator's. Exits 1 when the checksums
// differ or the client's peak RSS reaches 64 MiB.
//
// Measured once (2 GiB, 64 KiB chunks, http on loopback, 2-core VM, temporary files on
// disk): upload 5.7 s (362 MiB/s), download 3.1 s (660 MiB/s), checksums equal, client
// peak RSS 8.5 MiB, emulator peak RSS 9.2 MiB.
#include "process_support.hpp"

#include <lens/client.hpp>
#include <lens/emulator.hpp>

#include <boost/asio.hpp>

#include <openssl/evp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <sys/resource.h>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

/// A sparse file of `size` bytes: a random 64 KiB block every 64 MiB, holes elsewhere.
void make_sparse_file(const fs::path& path, std::uint64_t size)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    std::mt19937 rng(2026);
    std::vector<char> block(64 * 1024);
    constexpr std::uint64_t stride = 64ull * 1024 * 1024;
    for (std::uint64_t at = 0; at < size; at += stride) {
        for (auto& c : block)
            c = static_cast<char>(rng());
        out.seekp(static_cast<std::streamoff>(at));
        out.write(block.data(), static_cast<std::streamsize>(std::min<std::uint64_t>(block.size(), size - at)));
    }
    out.close();
    fs::resize_file(path, size); // the tail hole
}

std::string sha256_of(const fs::path& path)
{
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    std::ifstream in(path, std::ios::binary);
    std::vector<char> chunk(1 << 20);
    while (in) {
        in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
        EVP_DigestUpdate(ctx, chunk.data(), static_cast<std::size_t>(in.gcount()));
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    std::string hex;
    char two[3];
    for (unsigned int i = 0; i < len; ++i) {
        std::snprintf(two, sizeof two, "%02x", md[i]);
        hex += two;
    }
    return hex;
}

double max_rss_mib(int who)
{
    rusage u{};
    getrusage(who, &u);
    return u.ru_maxrss / 1024.0; // KiB on Linux
}

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

} // namespace

int main(int argc, char** argv)
{
    std::uint64_t size = 2ull * 1024 * 1024 * 1024;
    fs::path dir = fs::temp_directory_path();
    std::size_t chunk = 64 * 1024;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--size"))
            size = std::stoull(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--dir"))
            dir = argv[i + 1];
        else if (!std::strcmp(argv[i], "--chunk"))
            chunk = std::stoul(argv[i + 1]);
    }
    const fs::path source = dir / "lens-bench-upload.mp4";
    const fs::path target = dir / "lens-bench-download.mp4";

    lens::emulator::options eo; // spools uploads over 64 MiB to its temporary directory
    std::string upload_rate, download_rate;
    double client_rss = 0, emulator_rss = 0;
    bool same = false;
    {
        bench::emulator_process emulator(eo);
        make_sparse_file(source, size);

        lens::config cfg;
        cfg.endpoint = emulator.endpoint();
        cfg.api_key = eo.api_key;
        asio::io_context ctx;
        lens::client client(ctx.get_executor(), cfg);
        lens::transfer_options opts;
        opts.chunk_size = chunk;
        std::uint64_t reports = 0;
        opts.progress = [&](std::uint64_t, std::optional<std::uint64_t>) { ++reports; };

        double up_s = 0, down_s = 0;
        std::exception_ptr failure;
        asio::co_spawn(
            ctx,
            [&]() -> asio::awaitable<void> {
                auto t = clock_type::now();
                co_await client.upload_file(source, opts);
                up_s = seconds_since(t);
                t = clock_type::now();
                co_await client.download_file_to("lens-bench-upload.mp4", target, opts);
                down_s = seconds_since(t);
            },
            [&](std::exception_ptr e) { failure = e; });
        ctx.run();
        if (failure) {
            try {
                std::rethrow_exception(failure);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "transfer failed: %s\n", e.what());
                fs::remove(source);
                fs::remove(target);
                return 1;
            }
        }
        const double mib = static_cast<double>(size) / (1024.0 * 1024.0);
        std::printf("file: %.0f MiB, chunk %zu bytes, %llu progress reports\n", mib, chunk,
                    static_cast<unsigned long long>(reports));
        std::printf("upload:   %.2f s, %.0f MiB/s\n", up_s, mib / up_s);
        std::printf("download: %.2f s, %.0f MiB/s\n", down_s, mib / down_s);
        client_rss = max_rss_mib(RUSAGE_SELF); // before hashing: the transfers' own peak
        same = fs::file_size(target) == size && sha256_of(source) == sha256_of(target);
    } // the emulator stops and is waited for here
    emulator_rss = max_rss_mib(RUSAGE_CHILDREN);
    std::printf("checksums (SHA-256): %s\n", same ? "equal" : "DIFFERENT");
    std::printf("client peak RSS: %.1f MiB (after hashing: %.1f MiB)\n", client_rss, max_rss_mib(RUSAGE_SELF));
    std::printf("emulator peak RSS: %.1f MiB\n", emulator_rss);
    fs::remove(source);
    fs::remove(target);
    return same && client_rss < 64.0 ? 0 : 1;
}
