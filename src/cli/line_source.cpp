#include "cli/line_source.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <tuple>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lens::cli {

namespace asio = boost::asio;

line_source::line_source(asio::any_io_executor ex, const std::string& path, std::size_t max_line)
    : name_(path == "-" ? std::string("stdin") : path), max_line_(max_line)
{
    fd_ = path == "-" ? ::fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 0) : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0)
        throw std::runtime_error(name_ + ": cannot open: " + std::strerror(errno));
    struct ::stat st {};
    if (::fstat(fd_, &st) == 0 && S_ISDIR(st.st_mode)) {
        ::close(fd_);
        throw std::runtime_error(name_ + ": cannot read: it is a directory");
    }
    if (S_ISREG(st.st_mode))
        return; // plain reads: a file never makes us wait for a writer
    original_flags_ = ::fcntl(fd_, F_GETFL);
    async_.emplace(ex);
    boost::system::error_code ec;
    async_->assign(fd_, ec);
    if (ec) // epoll refuses it (e.g. /dev/null): plain reads, which do not wait either
        async_.reset();
}

line_source::~line_source()
{
    if (original_flags_ != -1)
        ::fcntl(fd_, F_SETFL, original_flags_); // Asio made it non-blocking; the shell shares it
    if (async_) {
        boost::system::error_code ignored;
        async_->close(ignored);
    } else if (fd_ >= 0) {
        ::close(fd_);
    }
}

task<bool> line_source::fill()
{
    if (eof_)
        co_return false;
    char chunk[64 * 1024];
    std::size_t n = 0;
    if (async_) {
        auto [ec, got] = co_await async_->async_read_some(asio::buffer(chunk), asio::as_tuple(asio::use_awaitable));
        if (ec == asio::error::eof) {
            eof_ = true;
            co_return false;
        }
        if (ec)
            throw std::runtime_error(name_ + ": cannot read: " + ec.message());
        n = got;
    } else {
        ssize_t got = 0;
        do
            got = ::read(fd_, chunk, sizeof chunk);
        while (got < 0 && errno == EINTR);
        if (got < 0)
            throw std::runtime_error(name_ + ": cannot read: " + std::strerror(errno));
        if (got == 0) {
            eof_ = true;
            co_return false;
        }
        n = static_cast<std::size_t>(got);
    }
    buffer_.append(chunk, n);
    co_return true;
}

task<std::optional<std::string>> line_source::next()
{
    for (;;) {
        const auto lf = buffer_.find('\n', scanned_);
        std::string line;
        if (lf != std::string::npos) {
            line = buffer_.substr(0, lf);
            buffer_.erase(0, lf + 1);
            scanned_ = 0;
        } else {
            scanned_ = buffer_.size();
            if (buffer_.size() > max_line_)
                throw std::runtime_error(name_ + ":" + std::to_string(line_number_ + 1) + ": a line longer than " +
                                         std::to_string(max_line_) + " bytes");
            if (co_await fill())
                continue;
            if (buffer_.empty())
                co_return std::nullopt;
            line = std::move(buffer_); // the last line, without a final LF
            buffer_.clear();
            scanned_ = 0;
        }
        ++line_number_;
        if (line.size() > max_line_)
            throw std::runtime_error(name_ + ":" + std::to_string(line_number_) + ": a line longer than " +
                                     std::to_string(max_line_) + " bytes");
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos)
            continue; // blank
        co_return line;
    }
}

} // namespace lens::cli
