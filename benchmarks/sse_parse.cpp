// SSE parse rate: lens::sse::parser on whole buffers and in small feeds.
//
//   build/bin/bench_sse_parse [--runs N] [--mib M]
//
// Workloads (each about M MiB, default 16; 1-byte feeds use M/8):
//   lens      realistic Lens API traffic: `id:` + one-line JSON `data:` (~330 B),
//             a heartbeat every 20 events
//   lines     many short `data:` lines per event (8 × 40 B)
//   utf8      one-line events whose data is mostly non-ASCII UTF-8 (~1 KiB)
//   large     1 MiB single-line events
// For comparison the same run measures a naive line splitter ("naive"): it keeps
// a pending buffer and searches it from its start at every feed, as many small
// SSE clients do — linear on whole buffers, quadratic when a long line arrives
// in small pieces (last rows).
//
// Each cell is the median of N runs (default 7). MB/s counts input bytes.
#include <lens/sse/parser.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

std::string lens_workload(std::size_t bytes)
{
    std::string s;
    for (std::size_t i = 1; s.size() < bytes; ++i) {
        if (i % 20 == 0) {
            s += "data: {\"type\":\"sse.stream.heartbeat\",\"session_id\":\"lsn-0123456789\","
                 "\"session_status\":\"SESSION_STATUS_RUNNING\",\"num_messages\":" + std::to_string(i) +
                 ",\"num_bytes\":" + std::to_string(i * 331) + ",\"message_timeout\":" + std::to_string(i / 20) +
                 "}\n\n";
            continue;
        }
        s += "id: " + std::to_string(i) + "\n";
        s += "data: {\"type\":\"inference.result\",\"event_data\":{\"response\":[\"HEALTHY\",{\"HEALTHY\":0.95,"
             "\"BROKEN\":0.05}],\"query_id\":\"q-" + std::to_string(i) +
             "\",\"query_metadata\":{\"window\":" + std::to_string(i) +
             ",\"rows\":[0,9],\"file_id\":\"machine_sensor_readings.csv\",\"timestamp\":1717171717.25}}}\n\n";
    }
    return s;
}

std::string lines_workload(std::size_t bytes)
{
    std::string s;
    while (s.size() < bytes) {
        s += "event: table\n";
        for (int l = 0; l < 8; ++l)
            s += "data: 0123456789 abcdefghij 0123456789 abcdefg\n";
        s += "\n";
    }
    return s;
}

std::string utf8_workload(std::size_t bytes)
{
    std::string s;
    while (s.size() < bytes) {
        s += "data: ";
        for (int k = 0; k < 64; ++k)
            s += "Grüße, 世界! \xF0\x9F\x98\x80 ";
        s += "\n\n";
    }
    return s;
}

std::string large_workload(std::size_t bytes)
{
    std::string s;
    const std::string body(std::size_t(1) << 20, 'x');
    while (s.size() < bytes)
        s += "data: " + body + "\n\n";
    return s;
}

/// The naive splitter: pending buffer, find("\n") from its start on every feed.
struct naive_parser {
    std::string pending, data;
    std::size_t events = 0;
    void feed(std::string_view bytes)
    {
        pending.append(bytes);
        std::size_t start = 0;
        for (;;) {
            const auto eol = pending.find('\n', start);
            if (eol == std::string::npos)
                break;
            std::string_view line(pending.data() + start, eol - start);
            start = eol + 1;
            if (line.empty()) {
                if (!data.empty())
                    ++events;
                data.clear();
            } else if (line.substr(0, 5) == "data:") {
                line.remove_prefix(line.size() > 5 && line[5] == ' ' ? 6 : 5);
                data.append(line);
                data.push_back('\n');
            }
        }
        pending.erase(0, start);
    }
};

struct measurement {
    double mb_per_s;
    double events_per_s;
};

template <class Run>
measurement measure(std::string_view input, int runs, Run run)
{
    std::vector<double> seconds;
    std::size_t events = 0;
    for (int r = 0; r < runs; ++r) {
        const auto t0 = clock_type::now();
        events = run(input);
        seconds.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    return {static_cast<double>(input.size()) / 1e6 / median, static_cast<double>(events) / median};
}

std::size_t run_lens(std::string_view in, std::size_t chunk)
{
    lens::sse::parser p(lens::sse::limits{std::size_t(64) << 20, std::size_t(64) << 20});
    std::size_t events = 0;
    auto sink = [&](const lens::sse::event&) { ++events; };
    for (std::size_t pos = 0; pos < in.size(); pos += chunk)
        p.feed(in.substr(pos, chunk), sink);
    return events;
}

std::size_t run_naive(std::string_view in, std::size_t chunk)
{
    naive_parser p;
    for (std::size_t pos = 0; pos < in.size(); pos += chunk)
        p.feed(in.substr(pos, chunk));
    return p.events;
}

} // namespace

int main(int argc, char** argv)
{
    int runs = 7;
    std::size_t mib = 16;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--runs") == 0)
            runs = std::max(1, std::atoi(argv[i + 1]));
        else if (std::strcmp(argv[i], "--mib") == 0)
            mib = std::max<std::size_t>(1, std::strtoull(argv[i + 1], nullptr, 10));
    }
    const std::size_t big = mib << 20, small = std::max<std::size_t>(1 << 20, big / 8);

    struct workload {
        const char* name;
        std::function<std::string(std::size_t)> make;
    };
    const workload workloads[] = {{"lens", lens_workload},
                                  {"lines", lines_workload},
                                  {"utf8", utf8_workload},
                                  {"large", large_workload}};

    std::printf("SSE parser, median of %d runs\n\n", runs);
    std::printf("%-8s %-7s %-12s %10s %14s\n", "parser", "input", "feeds", "MB/s", "events/s");
    std::printf("%-8s %-7s %-12s %10s %14s\n", "------", "-----", "-----", "----", "--------");
    auto row = [](const char* parser, const char* input, const char* feeds, measurement m) {
        std::printf("%-8s %-7s %-12s %10.1f %14.0f\n", parser, input, feeds, m.mb_per_s, m.events_per_s);
    };
    for (const auto& w : workloads) {
        const std::string whole = w.make(big);
        row("lens", w.name, "whole", measure(whole, runs, [](std::string_view in) { return run_lens(in, in.size()); }));
        row("lens", w.name, "4 KiB", measure(whole, runs, [](std::string_view in) { return run_lens(in, 4096); }));
        const std::string part = w.make(small);
        row("lens", w.name, "1 byte", measure(part, runs, [](std::string_view in) { return run_lens(in, 1); }));
    }
    std::printf("\n");
    {
        const std::string whole = lens_workload(big);
        row("naive", "lens", "whole", measure(whole, runs, [](std::string_view in) { return run_naive(in, in.size()); }));
        row("naive", "lens", "4 KiB", measure(whole, runs, [](std::string_view in) { return run_naive(in, 4096); }));
        const std::string part = lens_workload(small);
        row("naive", "lens", "1 byte", measure(part, runs, [](std::string_view in) { return run_naive(in, 1); }));
        // One 1 MiB line in 256-byte feeds: the naive splitter rescans its pending line.
        const std::string line = "data: " + std::string(std::size_t(1) << 20, 'x') + "\n\n";
        row("lens", "1MiB ln", "256 B", measure(line, runs, [](std::string_view in) { return run_lens(in, 256); }));
        row("naive", "1MiB ln", "256 B", measure(line, runs, [](std::string_view in) { return run_naive(in, 256); }));
    }
    return 0;
}
