// A TLS client stream whose buffers exist only while they hold bytes.
//
// `asio::ssl::stream` gives every stream, for its whole life, two 17 KiB transport
// buffers and a BIO pair with two more: some 70 KiB per connection, idle or not. With
// ten thousand idle wss sessions that is most of the client's memory. `tls_stream`
// is a drop-in replacement for the part of its interface lens uses (client handshake,
// read, write, shutdown, WebSocket teardown) in which:
//
// - encrypted input is read from the socket only when OpenSSL asks for it, into a
//   per-thread scratch buffer, without waiting (a non-blocking recv). Only when the
//   socket has nothing does the stream wait, by a ONE-byte read through the next layer
//   (so that `beast::tcp_stream`'s timeouts and cancellation apply exactly as they do
//   to any of its reads). What OpenSSL leaves unconsumed in the scratch buffer is moved
//   to a per-stream buffer, freed once consumed: an idle stream holds no input buffer.
// - encrypted output goes to a per-stream buffer that is handed to the socket at once
//   and released once written (a small one is kept for the next write).
// - the SSL object talks to a custom BIO over those buffers (no BIO pair).
//
// Concurrency is Asio's: one read and one write may be in flight at the same time (as
// Beast's WebSocket does), and any operation may need to read or to write the socket
// (a read that must answer a TLS 1.3 KeyUpdate, a write during a renegotiation). The
// stream allows one socket read and one socket write at a time; an operation that needs
// the one in progress waits for it to finish (a timer used as a condition variable),
// then looks again. Output is appended to one buffer in the order OpenSSL produced it,
// so records of a read and of a concurrent write can never interleave on the wire; an
// operation completes only once all the output it produced (and what came before) has
// been handed to the socket, so a writer faster than the socket waits (backpressure).
//
// Completion signatures and errors are Asio's: the peer's close_notify ends reads with
// `asio::error::eof`, a TCP EOF without it with `asio::ssl::error::stream_truncated`,
// OpenSSL's errors are `error_code(ERR_get_error(), asio::error::get_ssl_category())`.
// A closed socket completes what is pending with an error, as with Asio.
#pragma once

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/ssl/verify_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace lens::detail {

namespace tls {

/// What an SSL call needs next, as in Asio's engine.
enum class want { nothing, input_and_retry, output, output_and_retry };

struct step {
    want next = want::nothing;
    boost::system::error_code ec;
    std::size_t bytes = 0;
};

/// The outcome of reading the socket without waiting.
enum class receipt { data, would_block, failed };

/// The SSL object, its BIO and the stream's buffers: everything that does not depend
/// on the next layer. Not movable (OpenSSL holds pointers to it); streams own it on the heap.
class engine {
public:
    /// Plaintext handed to OpenSSL per write operation at most (four full records):
    /// larger writes complete partially, as `write_some` may.
    static constexpr std::size_t max_write = 64 * 1024;

    explicit engine(SSL_CTX* ctx);
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    SSL* native_handle() const noexcept { return ssl_; }

    void set_verify_callback(std::function<bool(bool, boost::asio::ssl::verify_context&)> cb);

    // ---- SSL calls: each maps OpenSSL's result to what the operation does next.
    step handshake();
    step read(boost::asio::mutable_buffer b);
    step write(boost::asio::const_buffer b);
    step shutdown();

    /// `ec` as the operation reports it: a TCP EOF is `stream_truncated` unless the peer
    /// closed TLS first (and all its input was consumed).
    boost::system::error_code map_error_code(boost::system::error_code ec) const;

    // ---- input
    /// Reads what socket `fd` holds into the thread's scratch buffer (after `byte_`, if
    /// `after_byte`) and makes it OpenSSL's input. `failed` carries the error (eof for
    /// an orderly TCP close).
    receipt receive(int fd, bool after_byte, boost::system::error_code& ec);
    bool reading = false;        ///< a socket read (the one-byte wait) is in flight
    unsigned char byte = 0;      ///< where that read puts its byte

    // ---- output
    std::uint64_t produced() const noexcept { return produced_; }
    std::uint64_t sent() const noexcept { return sent_; }
    bool sending() const noexcept { return sending_; }
    const boost::system::error_code& send_error() const noexcept { return send_error_; }
    /// Moves what OpenSSL produced to the buffer being written; returns it.
    boost::asio::const_buffer begin_send();
    /// The socket write of `begin_send`'s buffer completed.
    void end_send(boost::system::error_code ec, std::size_t n);

    /// The thread's scratch buffer for linearizing a gathered write (`max_write` bytes).
    static unsigned char* write_scratch();

    /// Bytes of buffer the stream itself holds (unconsumed input, output capacity):
    /// what an idle stream costs beyond the SSL object.
    std::size_t buffered() const noexcept
    {
        return leftover_size_ + pending_.capacity() + in_flight_.capacity();
    }

private:
    friend struct bio_access;
    step perform(int (*op)(SSL*, void*, std::size_t), void* data, std::size_t size);
    void settle_input();

    SSL* ssl_ = nullptr;
    std::function<bool(bool, boost::asio::ssl::verify_context&)> verify_;

    // Input OpenSSL has not consumed: a view of the thread's scratch buffer during an
    // SSL call, of `leftover_` between calls.
    const unsigned char* in_ = nullptr;
    std::size_t in_size_ = 0;
    bool in_scratch_ = false;
    std::unique_ptr<unsigned char[]> leftover_;
    std::size_t leftover_size_ = 0;

    // Output: `pending_` fills while `in_flight_` is being written.
    std::vector<unsigned char> pending_;
    std::vector<unsigned char> in_flight_;
    std::uint64_t produced_ = 0;
    std::uint64_t sent_ = 0;
    bool sending_ = false;
    boost::system::error_code send_error_;
};

/// The first non-empty buffer of a sequence (Asio's SSL stream reads into that one).
template <class Buffer, class Buffers>
Buffer first_buffer(const Buffers& buffers)
{
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
        Buffer b(*it);
        if (b.size() != 0)
            return b;
    }
    return Buffer();
}

struct handshake_op {
    static constexpr bool sized = false;
    step operator()(engine& e) const { return e.handshake(); }
};

struct shutdown_op {
    static constexpr bool sized = false;
    step operator()(engine& e) const { return e.shutdown(); }
};

template <class MutableBuffers>
struct read_op {
    static constexpr bool sized = true;
    MutableBuffers buffers;
    step operator()(engine& e) const { return e.read(first_buffer<boost::asio::mutable_buffer>(buffers)); }
};

template <class ConstBuffers>
struct write_op {
    static constexpr bool sized = true;
    ConstBuffers buffers;
    step operator()(engine& e) const
    {
        // One SSL_write per call: a gathered write (a WebSocket frame header and its
        // payload) is copied into one piece first, or it would cost a record per buffer.
        auto b = first_buffer<boost::asio::const_buffer>(buffers);
        if (b.size() < engine::max_write && boost::asio::buffer_size(buffers) > b.size()) {
            unsigned char* scratch = engine::write_scratch();
            b = boost::asio::const_buffer(
                scratch, boost::asio::buffer_copy(boost::asio::buffer(scratch, engine::max_write), buffers));
        }
        return e.write(b);
    }
};

/// One operation of a `tls_stream`, as an `async_compose` body: runs the SSL call, then
/// whatever it needs (output written, input read) until it is done.
template <class State, class Operation>
class io_op {
public:
    io_op(State& s, Operation op) : s_(s), op_(std::move(op)) {}

    template <class Self>
    void operator()(Self& self, boost::system::error_code ec = {}, std::size_t n = 0)
    {
        if (stage_ != stage::start)
            initiating_ = false;
        engine& e = s_.engine;
        switch (std::exchange(stage_, stage::running)) {
        case stage::start:
        case stage::running:
            return run(self);
        case stage::reading:
            e.reading = false;
            s_.wake.cancel(); // an operation waiting for input may look again
            if (ec)
                return finish(self, ec, 0);
            e.receive(socket_handle(), true, ec); // the byte, and whatever followed it
            return run(self);
        case stage::writing:
            e.end_send(ec, n);
            s_.wake.cancel();
            return flush(self);
        case stage::awaiting_input:
            if (self.cancelled() != boost::asio::cancellation_type::none)
                return finish(self, boost::asio::error::operation_aborted, 0);
            return run(self);
        case stage::awaiting_output:
            if (self.cancelled() != boost::asio::cancellation_type::none)
                return finish(self, boost::asio::error::operation_aborted, 0);
            return flush(self);
        case stage::posted:
            return complete(self, result_, bytes_);
        }
    }

private:
    enum class stage { start, running, reading, writing, awaiting_input, awaiting_output, posted };

    int socket_handle() { return boost::beast::get_lowest_layer(s_.next).socket().native_handle(); }

    template <class Self>
    void run(Self& self)
    {
        engine& e = s_.engine;
        for (;;) {
            const step st = op_(e);
            result_ = st.ec;
            bytes_ = st.bytes;
            switch (st.next) {
            case want::output:
            case want::output_and_retry:
                target_ = e.produced();
                retry_ = st.next == want::output_and_retry;
                return flush(self);
            case want::input_and_retry: {
                if (e.reading) { // another operation is reading the socket: its input is ours too
                    stage_ = stage::awaiting_input;
                    return s_.wake.async_wait(std::move(self));
                }
                if (!boost::beast::get_lowest_layer(s_.next).socket().is_open())
                    return finish(self, boost::asio::error::bad_descriptor, 0);
                boost::system::error_code ec;
                switch (e.receive(socket_handle(), false, ec)) {
                case receipt::data:
                    continue;
                case receipt::failed:
                    return finish(self, ec, 0);
                case receipt::would_block:
                    // Wait for the peer through the next layer, so that its timeout and
                    // cancellation apply; one byte is all the buffer the wait needs.
                    e.reading = true;
                    stage_ = stage::reading;
                    return s_.next.async_read_some(boost::asio::buffer(&e.byte, 1), std::move(self));
                }
                return;
            }
            case want::nothing:
                return finish(self, st.ec, st.bytes);
            }
        }
    }

    /// Until everything up to `target_` is written: the operation's own output and any
    /// produced before it, by itself or by a concurrent operation.
    template <class Self>
    void flush(Self& self)
    {
        engine& e = s_.engine;
        if (e.sent() >= target_) {
            if (retry_)
                return run(self);
            return finish(self, result_, bytes_);
        }
        if (e.send_error())
            return finish(self, result_ ? result_ : e.send_error(), 0);
        if (e.sending()) {
            stage_ = stage::awaiting_output;
            return s_.wake.async_wait(std::move(self));
        }
        stage_ = stage::writing;
        boost::asio::async_write(s_.next, e.begin_send(), std::move(self));
    }

    template <class Self>
    void finish(Self& self, boost::system::error_code ec, std::size_t n)
    {
        result_ = s_.engine.map_error_code(ec);
        bytes_ = result_ ? 0 : n;
        if (initiating_) { // never complete inside the initiating function
            stage_ = stage::posted;
            return boost::asio::post(std::move(self));
        }
        complete(self, result_, bytes_);
    }

    template <class Self>
    static void complete(Self& self, boost::system::error_code ec, std::size_t n)
    {
        if constexpr (Operation::sized)
            self.complete(ec, n);
        else
            self.complete(ec);
    }

    State& s_;
    Operation op_;
    stage stage_ = stage::start;
    bool initiating_ = true;
    bool retry_ = false;
    std::uint64_t target_ = 0;
    boost::system::error_code result_;
    std::size_t bytes_ = 0;
};

} // namespace tls

/// See the top of this file. `NextLayer` is `beast::tcp_stream` (anything whose lowest
/// layer is a TCP socket).
template <class NextLayer>
class tls_stream : public boost::asio::ssl::stream_base {
    struct state {
        state(NextLayer&& n, SSL_CTX* ctx)
            : next(std::move(n)), engine(ctx), wake(next.get_executor())
        {
            wake.expires_at(boost::asio::steady_timer::time_point::max());
        }
        NextLayer next;
        tls::engine engine;
        boost::asio::steady_timer wake; ///< cancelled whenever a socket read or write ends
    };

public:
    using next_layer_type = NextLayer;
    using lowest_layer_type = typename boost::beast::lowest_layer_type<NextLayer>;
    using executor_type = typename NextLayer::executor_type;
    using native_handle_type = SSL*;

    tls_stream(NextLayer&& next, boost::asio::ssl::context& ctx)
        : s_(std::make_unique<state>(std::move(next), ctx.native_handle()))
    {
    }
    tls_stream(tls_stream&&) noexcept = default;
    tls_stream& operator=(tls_stream&&) noexcept = default;

    executor_type get_executor() noexcept { return s_->next.get_executor(); }
    SSL* native_handle() noexcept { return s_->engine.native_handle(); }
    NextLayer& next_layer() noexcept { return s_->next; }
    const NextLayer& next_layer() const noexcept { return s_->next; }
    lowest_layer_type& lowest_layer() noexcept { return boost::beast::get_lowest_layer(s_->next); }

    /// Bytes of buffer held by the stream beyond OpenSSL's own (diagnostics, tests):
    /// none, or a small output buffer, while no operation is in progress.
    std::size_t buffered() const noexcept { return s_->engine.buffered(); }

    /// Replaces the peer verification callback (as `asio::ssl::stream::set_verify_callback`).
    template <class VerifyCallback>
    void set_verify_callback(VerifyCallback cb, boost::system::error_code& ec)
    {
        s_->engine.set_verify_callback(std::move(cb));
        ec = {};
    }
    template <class VerifyCallback>
    void set_verify_callback(VerifyCallback cb)
    {
        s_->engine.set_verify_callback(std::move(cb));
    }

    /// Client handshakes only (lens is a client). Signature: void(error_code).
    template <class CompletionToken>
    auto async_handshake(handshake_type type, CompletionToken&& token)
    {
        if (type != client)
            throw boost::system::system_error(boost::asio::error::operation_not_supported, "tls_stream");
        return start<void(boost::system::error_code)>(tls::handshake_op{}, std::forward<CompletionToken>(token));
    }

    /// Signature: void(error_code, std::size_t). Reads into the first non-empty buffer.
    template <class MutableBuffers, class CompletionToken>
    auto async_read_some(const MutableBuffers& buffers, CompletionToken&& token)
    {
        return start<void(boost::system::error_code, std::size_t)>(tls::read_op<MutableBuffers>{buffers},
                                                                   std::forward<CompletionToken>(token));
    }

    /// Signature: void(error_code, std::size_t). Completes once the records are handed
    /// to the socket; at most `tls::engine::max_write` bytes per call.
    template <class ConstBuffers, class CompletionToken>
    auto async_write_some(const ConstBuffers& buffers, CompletionToken&& token)
    {
        return start<void(boost::system::error_code, std::size_t)>(tls::write_op<ConstBuffers>{buffers},
                                                                   std::forward<CompletionToken>(token));
    }

    /// Sends close_notify and waits for the peer's. Signature: void(error_code).
    template <class CompletionToken>
    auto async_shutdown(CompletionToken&& token)
    {
        return start<void(boost::system::error_code)>(tls::shutdown_op{}, std::forward<CompletionToken>(token));
    }

    /// Sends close_notify, blocking, without waiting for the peer's (a synchronous
    /// WebSocket teardown then waits for the TCP EOF). Only while no operation is pending.
    void shutdown(boost::system::error_code& ec)
    {
        auto st = s_->engine.shutdown();
        ec = st.ec;
        while (!ec && s_->engine.sent() < s_->engine.produced()) {
            auto out = s_->engine.begin_send();
            std::size_t n = boost::asio::write(s_->next, out, ec);
            s_->engine.end_send(ec, n);
        }
        ec = s_->engine.map_error_code(ec);
    }

private:
    template <class Signature, class Operation, class CompletionToken>
    auto start(Operation op, CompletionToken&& token)
    {
        return boost::asio::async_compose<CompletionToken, Signature>(
            tls::io_op<state, Operation>(*s_, std::move(op)), token, s_->next);
    }

    std::unique_ptr<state> s_;
};

// ---- WebSocket teardown (found by argument-dependent lookup from Beast's websocket)

template <class NextLayer>
void teardown(boost::beast::role_type role, tls_stream<NextLayer>& stream, boost::system::error_code& ec)
{
    stream.shutdown(ec);
    using boost::beast::websocket::teardown;
    boost::system::error_code tcp_ec;
    teardown(role, stream.next_layer(), ec ? tcp_ec : ec); // the TLS error wins
}

namespace tls {

/// A WebSocket's closing handshake ends with the TLS one, then the TCP one.
template <class NextLayer>
class teardown_op {
public:
    teardown_op(tls_stream<NextLayer>& s, boost::beast::role_type role) : s_(s), role_(role) {}

    template <class Self>
    void operator()(Self& self, boost::system::error_code ec = {})
    {
        switch (step_++) {
        case 0:
            // Beast's teardown of Asio's stream lets a close be cancelled (total
            // cancellation) between the two; so does this one.
            self.reset_cancellation_state(boost::asio::enable_total_cancellation());
            return s_.async_shutdown(std::move(self));
        case 1: {
            tls_ec_ = ec;
            using boost::beast::websocket::async_teardown;
            return async_teardown(role_, s_.next_layer(), std::move(self));
        }
        default:
            self.complete(tls_ec_ ? tls_ec_ : ec);
        }
    }

private:
    tls_stream<NextLayer>& s_;
    boost::beast::role_type role_;
    int step_ = 0;
    boost::system::error_code tls_ec_;
};

} // namespace tls

template <class NextLayer, class TeardownHandler>
void async_teardown(boost::beast::role_type role, tls_stream<NextLayer>& stream, TeardownHandler&& handler)
{
    boost::asio::async_compose<TeardownHandler, void(boost::system::error_code)>(
        tls::teardown_op<NextLayer>(stream, role), handler, stream);
}

} // namespace lens::detail
