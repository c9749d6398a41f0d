// What the benchmarks share: the emulator in a child process (so that only the
// client's memory and CPU are counted in the benchmark's own process), and the
// process's resident memory.
#pragma once

#include <lens/emulator.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <fstream>
#include <stdexcept>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

namespace bench {

/// Resident set size of this process, in bytes.
inline long resident_bytes()
{
    std::ifstream statm("/proc/self/statm");
    long size = 0, resident = 0;
    statm >> size >> resident;
    return resident * sysconf(_SC_PAGESIZE);
}

/// An emulator serving in a child process until this object is destroyed (SIGTERM).
class emulator_process {
public:
    explicit emulator_process(lens::emulator::options opts)
    {
        int fds[2];
        if (pipe(fds) != 0)
            throw std::runtime_error("pipe");
        pid_ = fork();
        if (pid_ < 0)
            throw std::runtime_error("fork");
        if (pid_ == 0) {
            close(fds[0]);
            {
                boost::asio::io_context ctx;
                lens::emulator::server server(ctx.get_executor(), opts);
                server.start();
                const auto lines = server.endpoint() + "\n" + server.ca_file() + "\n";
                if (write(fds[1], lines.data(), lines.size()) < 0)
                    _exit(1);
                close(fds[1]);
                boost::asio::signal_set stop(ctx, SIGTERM);
                stop.async_wait([&](auto, int) { server.stop(); });
                ctx.run();
            } // the server is destroyed before _exit: its temporary files (CA, spooled uploads) go
            _exit(0);
        }
        close(fds[1]);
        for (std::string* field : {&endpoint_, &ca_file_}) {
            char c;
            while (read(fds[0], &c, 1) == 1 && c != '\n')
                *field += c;
        }
        close(fds[0]);
    }
    ~emulator_process()
    {
        kill(pid_, SIGTERM);
        waitpid(pid_, nullptr, 0);
    }
    emulator_process(const emulator_process&) = delete;
    emulator_process& operator=(const emulator_process&) = delete;

    const std::string& endpoint() const noexcept { return endpoint_; }
    /// The CA to trust in TLS mode (empty otherwise).
    const std::string& ca_file() const noexcept { return ca_file_; }

private:
    pid_t pid_ = -1;
    std::string endpoint_;
    std::string ca_file_;
};

} // namespace bench
