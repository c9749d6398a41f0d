// What the suite's client drivers share (benchmarks/ws_clients.cpp): a measurement
// window after a warm-up, the client's CPU time from getrusage, the server's from
// /proc/PID/stat, latency percentiles, and the one JSON line each driver prints.
#pragma once

#include "process_support.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

namespace bench {

using clock_type = std::chrono::steady_clock;

/// User + system CPU seconds of this process (all its threads).
inline double cpu_seconds()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

/// User + system CPU seconds of process `pid` (utime + stime of /proc/PID/stat); 0 if unknown.
inline double process_cpu_seconds(long pid)
{
    if (pid <= 0)
        return 0;
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = all.rfind(')'); // the command name may hold spaces and parentheses
    if (close == std::string::npos)
        return 0;
    std::istringstream fields(all.substr(close + 2));
    std::string skip;
    for (int i = 3; i < 14; ++i) // fields 3..13: state .. cmajflt
        fields >> skip;
    double utime = 0, stime = 0;
    fields >> utime >> stime;
    return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

/// Resident set size of process `pid`, in bytes; 0 if unknown.
inline long resident_bytes_of(long pid)
{
    if (pid <= 0)
        return 0;
    std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
    long size = 0, resident = 0;
    statm >> size >> resident;
    return resident * sysconf(_SC_PAGESIZE);
}

/// The value at fraction `p` of sorted `v` (nearest rank below).
inline double percentile_sorted(const std::vector<double>& v, double p)
{
    if (v.empty())
        return 0;
    return v[static_cast<std::size_t>(std::floor(p * static_cast<double>(v.size() - 1)))];
}

/// A warm-up, then a measurement window, on one io_context. Workers ask running() before
/// each request and call record() after each reply; only replies inside the window count.
class window {
public:
    window(boost::asio::io_context& ctx, double warmup_s, double duration_s, long server_pid)
        : timer_(ctx), warmup_(warmup_s), duration_(duration_s), server_pid_(server_pid)
    {
        latencies_us_.reserve(1 << 20);
    }

    /// Starts the clock: warm-up now, the window after it.
    void start()
    {
        timer_.expires_after(std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(warmup_)));
        timer_.async_wait([this](auto ec) {
            if (ec)
                return;
            measuring_ = true;
            cpu0_ = cpu_seconds();
            server_cpu0_ = process_cpu_seconds(server_pid_);
            t0_ = clock_type::now();
            timer_.expires_after(
                std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(duration_)));
            timer_.async_wait([this](auto ec2) {
                if (ec2)
                    return;
                wall_ = std::chrono::duration<double>(clock_type::now() - t0_).count();
                cpu_ = cpu_seconds() - cpu0_;
                server_cpu_ = process_cpu_seconds(server_pid_) - server_cpu0_;
                measuring_ = false;
                done_ = true;
            });
        });
    }

    bool running() const noexcept { return !done_; }

    void record(clock_type::time_point sent)
    {
        if (measuring_)
            latencies_us_.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - sent).count());
    }

    /// The sample as JSON (call once the window is over).
    boost::json::object summary()
    {
        std::sort(latencies_us_.begin(), latencies_us_.end());
        const double n = static_cast<double>(latencies_us_.size());
        boost::json::object o;
        o["requests"] = latencies_us_.size();
        o["seconds"] = wall_;
        o["rps"] = wall_ > 0 ? n / wall_ : 0.0;
        o["client_cpu_s"] = cpu_;
        o["client_cpu_share"] = wall_ > 0 ? cpu_ / wall_ : 0.0;
        o["cpu_us_per_request"] = n > 0 ? cpu_ * 1e6 / n : 0.0;
        o["server_cpu_s"] = server_cpu_;
        o["server_cpu_share"] = wall_ > 0 ? server_cpu_ / wall_ : 0.0;
        o["latency_us"] = {{"p50", percentile_sorted(latencies_us_, 0.50)},
                           {"p90", percentile_sorted(latencies_us_, 0.90)},
                           {"p99", percentile_sorted(latencies_us_, 0.99)},
                           {"p999", percentile_sorted(latencies_us_, 0.999)},
                           {"max", latencies_us_.empty() ? 0.0 : latencies_us_.back()}};
        return o;
    }

private:
    boost::asio::steady_timer timer_;
    double warmup_, duration_;
    long server_pid_;
    bool measuring_ = false, done_ = false;
    clock_type::time_point t0_;
    double cpu0_ = 0, server_cpu0_ = 0, wall_ = 0, cpu_ = 0, server_cpu_ = 0;
    std::vector<double> latencies_us_;
};

} // namespace bench
