// Lines of a file or of stdin, read without blocking the io_context when they come from
// a pipe, a FIFO or a terminal (`lens run --sensor-data FILE|-`).
#pragma once

#include <lens/detail/async_op.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <cstddef>
#include <optional>
#include <string>

namespace lens::cli {

/// A source of text lines. Regular files (and descriptors epoll refuses, like /dev/null)
/// are read with plain blocking reads, which are quick; pipes, FIFOs and terminals through
/// an Asio descriptor, so that events keep flowing while the writer is slow. Lines end in
/// LF (a CR before it is dropped); blank lines are skipped; a line is at most `max_line`
/// bytes. Move-only; used from one coroutine at a time.
class line_source {
public:
    /// Opens `path`, or stdin for "-". Throws std::runtime_error naming the path and the cause.
    line_source(boost::asio::any_io_executor ex, const std::string& path, std::size_t max_line = 1 << 20);
    line_source(line_source&&) = delete;
    /// Closes the descriptor (a duplicate for stdin), restoring its blocking mode first:
    /// the terminal or pipe is shared with the shell.
    ~line_source();

    /// The next non-blank line, nullopt at the end of the input. Throws std::runtime_error
    /// naming the source and the line for a read error or a line over `max_line`.
    task<std::optional<std::string>> next();

    /// The 1-based number of the line `next()` returned last.
    std::size_t line_number() const noexcept { return line_number_; }
    /// "stdin" or the path, for messages.
    const std::string& name() const noexcept { return name_; }

private:
    /// Reads more bytes into `buffer_`; false at the end of the input.
    task<bool> fill();

    std::string name_;
    std::size_t max_line_;
    int fd_ = -1;
    int original_flags_ = -1;
    std::optional<boost::asio::posix::stream_descriptor> async_;
    std::string buffer_;
    std::size_t scanned_ = 0; ///< bytes of buffer_ known to hold no LF
    bool eof_ = false;
    std::size_t line_number_ = 0;
};

} // namespace lens::cli
