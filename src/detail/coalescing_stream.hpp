// A write-coalescing stream layer, placed UNDER Beast's WebSocket stream:
//
//     websocket::stream<coalescing_stream<beast::tcp_stream>>
//     websocket::stream<coalescing_stream<tls_stream<beast::tcp_stream>>>
//
// Beast writes one message per async_write and each one reaches the socket as its own
// write (one sendmsg, or one SSL_write, per frame). The session encodes its frames itself
// into this layer's buffer (`append`), and `async_flush()` hands the whole burst to the
// next layer in ONE write. An owner that lets Beast write a burst `cork()`s the layer: the
// frames Beast writes are then copied into the buffer and their writes complete at once
// (posted, never inline) without a system call, until the flush. Everything goes to the
// socket through this layer, so the order on the wire is the order of the writes.
//
// The rules:
// - Idle and not corked, a write goes straight to the next layer (no copy, no extra hop):
//   a lone request costs what it cost without the layer.
// - While corked, or while a write of the layer is in flight, writes are appended to the
//   buffer being filled; the one in flight is a second buffer (double buffering).
// - `cork()` holds writes until `async_flush()` (the owner knows a burst is queued).
// - The buffer is bounded (`max_buffered`): a write that would pass the bound starts the
//   write of the full buffer (even while corked) and goes into the other one; when that
//   one is full too, writers wait until the write in flight completes. So a writer faster
//   than the socket waits instead of growing the buffers. A write always fits an empty buffer.
// - A failed write of the layer fails every waiting writer and every later write and
//   flush with its error (the connection is broken: its owner drops it).
// - Over a plain socket the owner may write the buffer on the spot (`write_now`): what
//   the socket does not take leaves in the layer's async write, as with a flush.
// - Reads are forwarded untouched, with one exception: while `stop_reads_at_header_end()`
//   is in force (the WebSocket upgrade), a read ends at the end of the HTTP header block
//   and the bytes after it are held for the next read. Beast reads the upgrade's response
//   into a buffer of its own; frames a server sends right behind its 101 would stay there,
//   out of reach of the session's frame reader, which reads from this layer.
//
// Lifetimes: like any Asio stream, the layer must outlive its operations. Its own writes
// (a flush, a chained burst) have no caller's handler to keep it alive, so its owner may
// name a keep-alive (`keep_alive_with`): each of the layer's writes holds it while in flight.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace lens::detail {

template <class NextLayer>
class coalescing_stream {
public:
    using next_layer_type = NextLayer;
    using executor_type = typename NextLayer::executor_type;
    using error_code = boost::system::error_code;

    /// What `max_buffered` is unless set: far more than a burst of control frames, small
    /// enough that a big payload (an image) still leaves in a few large writes.
    static constexpr std::size_t default_max_buffered = 64 * 1024;

    template <class... Args>
    explicit coalescing_stream(Args&&... args)
        : next_(std::forward<Args>(args)...), wake_(next_.get_executor())
    {
        wake_.expires_at(std::chrono::steady_clock::time_point::max());
    }
    coalescing_stream(const coalescing_stream&) = delete;
    coalescing_stream& operator=(const coalescing_stream&) = delete;

    executor_type get_executor() noexcept { return next_.get_executor(); }
    NextLayer& next_layer() noexcept { return next_; }
    const NextLayer& next_layer() const noexcept { return next_; }

    /// Writes are held in the buffer from now until `async_flush`.
    void cork() noexcept { corked_ = true; }
    bool corked() const noexcept { return corked_; }

    /// Room for `n` more bytes at the end of the buffer being filled, for an owner that
    /// encodes its frames in place; they leave with the next write (`async_flush`, or the
    /// end of the write in flight). Call it only between the writes of the stream above
    /// (never in the middle of one of Beast's frames).
    char* append(std::size_t n)
    {
        const auto at = filling_.size();
        filling_.resize(at + n);
        return filling_.data() + at;
    }

    /// Bytes accepted and not yet handed to the next layer.
    std::size_t buffered() const noexcept { return filling_.size(); }
    /// A write to the next layer is in flight (one of the layer's or one passed through).
    bool writing() const noexcept { return writing_; }
    /// Writes issued to the next layer so far (a burst is one).
    std::size_t writes_issued() const noexcept { return writes_issued_; }

    void max_buffered(std::size_t bytes) noexcept { max_buffered_ = bytes; }
    std::size_t max_buffered() const noexcept { return max_buffered_; }

    /// Each write of the layer holds `owner` while in flight (the object owning this stream).
    void keep_alive_with(std::weak_ptr<void> owner) noexcept { owner_ = std::move(owner); }

    /// Ends the cork and writes what is buffered. Completes (`void(error_code)`) once
    /// what was buffered is written (no write in flight), or with the error of the
    /// write that failed.
    template <class Token>
    auto async_flush(Token&& token)
    {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) {
                corked_ = false;
                if (failed_ || (!writing_ && filling_.empty())) {
                    const auto ex = boost::asio::get_associated_executor(handler, get_executor());
                    boost::asio::post(ex, boost::beast::bind_front_handler(std::move(handler), failed_));
                    return;
                }
                flushes_.emplace_back(std::move(handler));
                if (!writing_)
                    start_write();
            },
            token);
    }

    template <class ConstBufferSequence, class Token>
    auto async_write_some(const ConstBufferSequence& buffers, Token&& token)
    {
        return boost::asio::async_compose<Token, void(error_code, std::size_t)>(
            write_op<ConstBufferSequence>{*this, buffers}, token, next_);
    }

    /// Until the end of the next HTTP header block ("\r\n\r\n"), reads stop there; what
    /// follows it is held and given to the next read.
    void stop_reads_at_header_end() noexcept
    {
        header_scan_ = 0;
        scanning_header_ = true;
    }
    /// Bytes read past the header block and not yet given to a reader.
    std::size_t held() const noexcept { return held_.size(); }

    // ---- direct socket access (a plain TCP next layer only) ------------------------
    //
    // Every async operation completes through a scheduler pass, and each pass may cost an
    // epoll_wait. A socket is rarely full, so a write can usually be done on the spot:
    // with one request in flight that saves a pass (and an epoll_wait) per round trip.

    /// The next layer is a plain socket: `write_now` works.
    static constexpr bool direct = requires(NextLayer& n) { n.socket().non_blocking(true); };

    /// Writes what is buffered at once, without blocking: true when all of it went to the
    /// socket (no write in flight, nothing to complete). Otherwise the rest leaves in an
    /// async write, as `async_flush` would start it (false, `ec` clear), or the socket
    /// failed (false, `ec` set; the layer is failed as by a failed write).
    bool write_now(error_code& ec)
        requires direct
    {
        ec = failed_;
        if (failed_ || writing_ || corked_)
            return false;
        if (filling_.empty())
            return true;
        auto& sock = next_.socket();
        if (!sock.non_blocking())
            sock.non_blocking(true, ec);
        std::size_t n = 0;
        if (!ec)
            n = sock.write_some(boost::asio::buffer(filling_), ec);
        if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
            ec = {};
            n = 0;
        } else if (ec) {
            failed_ = ec;
            filling_.clear();
            return false;
        }
        ++writes_issued_;
        if (n == filling_.size()) {
            filling_.clear();
            return true;
        }
        filling_.erase(filling_.begin(), filling_.begin() + static_cast<std::ptrdiff_t>(n));
        start_write();
        return false;
    }

    /// For an owner that sets the next layer no read timeout: over a plain socket the read
    /// goes straight to it, past the next layer's own read operation (basic_stream's timer
    /// bookkeeping is then work for nothing, on every read); over anything else (TLS) it
    /// is `async_read_some`. Bytes held from a header scan come first either way.
    template <class MutableBufferSequence, class Token>
    auto async_read_some_untimed(const MutableBufferSequence& buffers, Token&& token)
    {
        if constexpr (direct) {
            if (!scanning_header_ && held_.empty())
                return next_.socket().async_read_some(buffers, std::forward<Token>(token));
        }
        return async_read_some(buffers, std::forward<Token>(token));
    }

    /// Reads are forwarded untouched (but see `stop_reads_at_header_end`).
    template <class MutableBufferSequence, class Token>
    auto async_read_some(const MutableBufferSequence& buffers, Token&& token)
    {
        if (scanning_header_ || !held_.empty())
            return boost::asio::async_compose<Token, void(error_code, std::size_t)>(
                read_op<MutableBufferSequence>{*this, buffers}, token, next_);
        return next_.async_read_some(buffers, std::forward<Token>(token));
    }

private:
    template <class Buffers>
    struct read_op {
        coalescing_stream& s;
        Buffers buffers;
        bool started = false;
        std::size_t given = 0;

        template <class Self>
        void operator()(Self& self, error_code ec = {}, std::size_t n = 0)
        {
            if (!started) {
                started = true;
                if (!s.held_.empty()) { // held bytes first, without touching the socket
                    given = boost::asio::buffer_copy(buffers, boost::asio::buffer(s.held_));
                    s.held_.erase(s.held_.begin(), s.held_.begin() + static_cast<std::ptrdiff_t>(given));
                    if (s.held_.empty())
                        std::vector<char>().swap(s.held_);
                    boost::asio::post(boost::beast::bind_front_handler(std::move(self), error_code{}, given));
                    return;
                }
                s.next_.async_read_some(buffers, std::move(self));
                return;
            }
            if (given > 0 || ec || !s.scanning_header_) {
                self.complete(ec, given > 0 ? given : n);
                return;
            }
            self.complete(ec, s.hold_after_header(buffers, n));
        }
    };

    /// Looks for the end of the header block in the `n` bytes just read into `buffers`;
    /// moves what follows it into held_ and returns the bytes that stay with the reader.
    template <class Buffers>
    std::size_t hold_after_header(const Buffers& buffers, std::size_t n)
    {
        std::size_t at = 0;
        for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers);
             ++it) {
            const auto* p = static_cast<const char*>((*it).data());
            const std::size_t len = std::min((*it).size(), n - at);
            for (std::size_t i = 0; i < len; ++i) {
                static constexpr char end[] = "\r\n\r\n";
                header_scan_ = p[i] == end[header_scan_] ? header_scan_ + 1 : (p[i] == '\r' ? 1 : 0);
                if (header_scan_ == 4) {
                    scanning_header_ = false;
                    const std::size_t keep = at + i + 1;
                    // Everything after `keep`, across the rest of the buffers, is held.
                    std::size_t skipped = 0;
                    for (auto jt = boost::asio::buffer_sequence_begin(buffers);
                         jt != boost::asio::buffer_sequence_end(buffers) && skipped < n; ++jt) {
                        const auto* q = static_cast<const char*>((*jt).data());
                        const std::size_t qlen = std::min((*jt).size(), n - skipped);
                        const std::size_t from = keep > skipped ? std::min(keep - skipped, qlen) : 0;
                        held_.insert(held_.end(), q + from, q + qlen);
                        skipped += qlen;
                    }
                    return keep;
                }
            }
            at += len;
            if (at == n)
                break;
        }
        return n;
    }

    template <class Buffers>
    struct write_op {
        coalescing_stream& s;
        Buffers buffers;
        enum { start, passed_through, waited, posted } state = start;
        error_code result{};
        std::size_t accepted = 0;

        template <class Self>
        void operator()(Self& self, error_code ec = {}, std::size_t transferred = 0)
        {
            switch (state) {
            case passed_through:
                s.writing_ = false;
                s.after_write(ec);
                self.complete(ec, transferred);
                return;
            case posted:
                self.complete(result, accepted);
                return;
            case waited:
                --s.waiters_;
                if (self.cancelled() != boost::asio::cancellation_type::none) {
                    self.complete(boost::asio::error::operation_aborted, 0);
                    return;
                }
                break; // woken by the write's end: try again
            case start:
                break;
            }
            if (s.failed_) {
                result = s.failed_;
                post(self);
                return;
            }
            const std::size_t size = boost::asio::buffer_size(buffers);
            if (!s.holding() && !s.writing_ && s.filling_.empty()) {
                // Nothing to coalesce with: straight to the next layer.
                state = passed_through;
                s.writing_ = true;
                ++s.writes_issued_;
                s.next_.async_write_some(buffers, std::move(self));
                return;
            }
            const bool fits = s.filling_.empty() || s.filling_.size() + size <= s.max_buffered_;
            if (!fits && !s.writing_)
                s.start_write(); // the full buffer leaves, and this write starts the next one
            if (s.filling_.empty() || s.filling_.size() + size <= s.max_buffered_) {
                const auto at = s.filling_.size();
                s.filling_.resize(at + size);
                boost::asio::buffer_copy(boost::asio::buffer(s.filling_.data() + at, size), buffers);
                accepted = size;
                if (!s.holding() && !s.writing_)
                    s.start_write();
                post(self);
                return;
            }
            // Both buffers full (one in flight, one at the bound): wait for the write.
            state = waited;
            ++s.waiters_;
            s.wake_.async_wait(std::move(self));
        }

        template <class Self>
        void post(Self& self)
        {
            state = posted;
            boost::asio::post(std::move(self));
        }
    };

    /// Hands the buffer being filled to the next layer as one write.
    void start_write()
    {
        std::swap(filling_, sending_);
        writing_ = true;
        ++writes_issued_;
        boost::asio::async_write(next_, boost::asio::buffer(sending_),
                                 [this, keep = owner_.lock()](error_code ec, std::size_t) {
                                     writing_ = false;
                                     sending_.clear();
                                     after_write(ec);
                                 });
    }

    /// A write to the next layer ended: on an error everyone waiting fails; otherwise
    /// what accumulated meanwhile follows unless corked, and waiting writers retry.
    void after_write(error_code ec)
    {
        if (ec && !failed_) {
            failed_ = ec;
            filling_.clear();
        }
        if (!failed_ && !holding() && !filling_.empty())
            start_write();
        if (waiters_ > 0)
            wake_.cancel(); // waiting writers look again
        // Flushes complete when the writes they started end: bytes held since by a new
        // cork belong to the next flush (so no handler, and what it keeps alive, waits
        // for a flush that may never come).
        if (failed_ || !writing_) {
            if (!writing_ && sending_.capacity() > max_buffered_)
                std::vector<char>().swap(sending_); // an idle stream keeps no burst-sized buffer
            auto done = std::move(flushes_);
            flushes_.clear();
            for (auto& h : done) {
                const auto ex = boost::asio::get_associated_executor(h, get_executor());
                boost::asio::dispatch(ex, boost::beast::bind_front_handler(std::move(h), failed_));
            }
        }
    }

    bool holding() const noexcept { return corked_; }

    NextLayer next_;
    std::vector<char> filling_; ///< accepted, waiting for the next write
    std::vector<char> sending_; ///< the layer's write in flight
    bool corked_ = false; ///< cork() until async_flush
    bool writing_ = false;
    error_code failed_;
    std::size_t max_buffered_ = default_max_buffered;
    std::size_t writes_issued_ = 0;
    boost::asio::steady_timer wake_; ///< writers over the bound wait on it; cancelled when a write ends
    std::size_t waiters_ = 0;
    std::vector<boost::asio::any_completion_handler<void(error_code)>> flushes_;
    std::weak_ptr<void> owner_;
    std::vector<char> held_;       ///< read past the end of a header block, for the next read
    bool scanning_header_ = false; ///< stop_reads_at_header_end() in force
    int header_scan_ = 0;          ///< how much of "\r\n\r\n" the last bytes matched
};

/// Beast's closing handshake ends with a teardown of the next layer: what is still
/// buffered (the close frame, when corked) is written first.
template <class NextLayer, class TeardownHandler>
void async_teardown(boost::beast::role_type role, coalescing_stream<NextLayer>& stream, TeardownHandler&& handler)
{
    stream.async_flush([role, &stream, h = std::forward<TeardownHandler>(handler)](boost::system::error_code) mutable {
        using boost::beast::websocket::async_teardown;
        async_teardown(role, stream.next_layer(), std::move(h));
    });
}

template <class NextLayer>
void teardown(boost::beast::role_type role, coalescing_stream<NextLayer>& stream, boost::system::error_code& ec)
{
    using boost::beast::websocket::teardown;
    teardown(role, stream.next_layer(), ec);
}

} // namespace lens::detail
