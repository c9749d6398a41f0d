// See detail/tls_stream.hpp.
#include "detail/tls_stream.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <stdexcept>

#include <sys/socket.h>

namespace lens::detail::tls {

namespace {

/// How much one socket read may bring: four full records, so a bulk transfer costs
/// one system call per four records. Shared by every stream of the thread: it only
/// holds bytes during one SSL call, after which what is left moves to its stream.
constexpr std::size_t scratch_size = 64 * 1024;

unsigned char* thread_buffer(std::unique_ptr<unsigned char[]>& slot)
{
    if (!slot)
        slot = std::make_unique<unsigned char[]>(scratch_size);
    return slot.get();
}

unsigned char* read_scratch()
{
    thread_local std::unique_ptr<unsigned char[]> buffer;
    return thread_buffer(buffer);
}

/// Output buffers up to this capacity are kept after a write (a WebSocket ping, a
/// small request); larger ones are freed so that an idle stream holds little.
constexpr std::size_t kept_output_capacity = 1024;

int engine_index()
{
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

} // namespace

/// The custom BIO: reads from the engine's input view, appends to its pending output.
struct bio_access {
    static int write(BIO* bio, const char* data, int size)
    {
        BIO_clear_retry_flags(bio);
        if (size <= 0)
            return 0;
        auto* e = static_cast<engine*>(BIO_get_data(bio));
        auto* bytes = reinterpret_cast<const unsigned char*>(data);
        e->pending_.insert(e->pending_.end(), bytes, bytes + size);
        e->produced_ += static_cast<std::size_t>(size);
        return size;
    }

    static int read(BIO* bio, char* data, int size)
    {
        BIO_clear_retry_flags(bio);
        auto* e = static_cast<engine*>(BIO_get_data(bio));
        if (e->in_size_ == 0) {
            // "Not yet", never "end of file": a TCP EOF is the stream's to interpret
            // (eof or stream_truncated), as Asio does, not OpenSSL's.
            BIO_set_retry_read(bio);
            return -1;
        }
        const std::size_t n = std::min(e->in_size_, static_cast<std::size_t>(size > 0 ? size : 0));
        std::memcpy(data, e->in_, n);
        e->in_ += n;
        e->in_size_ -= n;
        return static_cast<int>(n);
    }

    static long ctrl(BIO*, int cmd, long, void*)
    {
        // Output is written by the stream after each SSL call: a flush has nothing to do.
        return cmd == BIO_CTRL_FLUSH ? 1 : 0;
    }

    static const BIO_METHOD* method()
    {
        // One method table for the process, never freed (OpenSSL holds it until exit).
        static BIO_METHOD* const m = [] {
            BIO_METHOD* made = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "lens tls_stream");
            if (!made || !BIO_meth_set_write(made, &write) || !BIO_meth_set_read(made, &read) ||
                !BIO_meth_set_ctrl(made, &ctrl))
                throw std::runtime_error("tls_stream: cannot create the BIO method");
            return made;
        }();
        return m;
    }

    static int verify(int preverified, X509_STORE_CTX* ctx)
    {
        auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
        auto* e = ssl ? static_cast<engine*>(SSL_get_ex_data(ssl, engine_index())) : nullptr;
        if (!e || !e->verify_)
            return 0;
        boost::asio::ssl::verify_context vc(ctx);
        return e->verify_(preverified != 0, vc) ? 1 : 0;
    }
};

engine::engine(SSL_CTX* ctx) : ssl_(SSL_new(ctx))
{
    if (!ssl_)
        throw boost::system::system_error(
            boost::system::error_code(static_cast<int>(ERR_get_error()), boost::asio::error::get_ssl_category()),
            "tls_stream");
    // Asio's modes: SSL_write may return after some records (write_some), retries may
    // pass another copy of the same bytes, idle buffers go back to the allocator.
    SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_set_ex_data(ssl_, engine_index(), this);
    BIO* bio = BIO_new(bio_access::method());
    if (!bio) {
        SSL_free(ssl_);
        throw std::bad_alloc();
    }
    BIO_set_data(bio, this);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl_, bio, bio); // the SSL object owns it
}

engine::~engine() { SSL_free(ssl_); }

void engine::set_verify_callback(std::function<bool(bool, boost::asio::ssl::verify_context&)> cb)
{
    verify_ = std::move(cb);
    SSL_set_verify(ssl_, SSL_get_verify_mode(ssl_), &bio_access::verify);
}

unsigned char* engine::write_scratch()
{
    thread_local std::unique_ptr<unsigned char[]> buffer;
    return thread_buffer(buffer);
}

namespace {

int do_connect(SSL* ssl, void*, std::size_t) { return SSL_connect(ssl); }

int do_read(SSL* ssl, void* data, std::size_t size)
{
    return SSL_read(ssl, data, static_cast<int>(std::min<std::size_t>(size, INT_MAX)));
}

int do_write(SSL* ssl, void* data, std::size_t size)
{
    return SSL_write(ssl, data, static_cast<int>(std::min(size, engine::max_write)));
}

int do_shutdown(SSL* ssl, void*, std::size_t)
{
    // The first call sends close_notify (0: the peer's is still to come); the second
    // waits for the peer's, as Asio's shutdown does.
    int result = SSL_shutdown(ssl);
    if (result == 0)
        result = SSL_shutdown(ssl);
    return result;
}

} // namespace

step engine::handshake() { return perform(&do_connect, nullptr, 0); }

step engine::read(boost::asio::mutable_buffer b)
{
    if (b.size() == 0)
        return {};
    return perform(&do_read, b.data(), b.size());
}

step engine::write(boost::asio::const_buffer b)
{
    if (b.size() == 0)
        return {};
    return perform(&do_write, const_cast<void*>(b.data()), b.size());
}

step engine::shutdown() { return perform(&do_shutdown, nullptr, 0); }

step engine::perform(int (*op)(SSL*, void*, std::size_t), void* data, std::size_t size)
{
    // The same decisions as Asio's engine, with "output pending" measured by what this
    // call appended to the output buffer.
    const std::uint64_t produced_before = produced_;
    ERR_clear_error();
    const int result = op(ssl_, data, size);
    const int ssl_error = SSL_get_error(ssl_, result);
    const int sys_error = static_cast<int>(ERR_get_error());
    settle_input();
    const bool output = produced_ > produced_before;

    step s;
    if (ssl_error == SSL_ERROR_SSL || ssl_error == SSL_ERROR_SYSCALL) {
        if (ssl_error == SSL_ERROR_SYSCALL && sys_error == 0)
            s.ec = boost::asio::ssl::error::unspecified_system_error;
        else
            s.ec = boost::system::error_code(sys_error, boost::asio::error::get_ssl_category());
        s.next = output ? want::output : want::nothing; // an alert to send first
        return s;
    }
    if (result > 0)
        s.bytes = static_cast<std::size_t>(result);
    if (ssl_error == SSL_ERROR_WANT_WRITE) // cannot happen with this BIO; kept for parity
        s.next = want::output_and_retry;
    else if (output)
        s.next = result > 0 ? want::output : want::output_and_retry;
    else if (ssl_error == SSL_ERROR_WANT_READ)
        s.next = want::input_and_retry;
    else if (ssl_error == SSL_ERROR_ZERO_RETURN)
        s.ec = boost::asio::error::eof;
    else if (ssl_error != SSL_ERROR_NONE)
        s.ec = boost::asio::ssl::error::unexpected_result;
    return s;
}

boost::system::error_code engine::map_error_code(boost::system::error_code ec) const
{
    if (ec != boost::asio::error::eof)
        return ec;
    // Records cut short, or a TCP EOF the peer did not announce with close_notify.
    if (in_size_ != 0 || (SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN) == 0)
        return boost::asio::ssl::error::stream_truncated;
    return ec;
}

void engine::settle_input()
{
    if (in_size_ == 0) {
        leftover_.reset();
        leftover_size_ = 0;
        in_ = nullptr;
        in_scratch_ = false;
    } else if (in_scratch_) {
        // The scratch buffer is the thread's: keep what OpenSSL has not read yet.
        auto kept = std::make_unique<unsigned char[]>(in_size_);
        std::memcpy(kept.get(), in_, in_size_);
        leftover_ = std::move(kept);
        leftover_size_ = in_size_;
        in_ = leftover_.get();
        in_scratch_ = false;
    }
}

receipt engine::receive(int fd, bool after_byte, boost::system::error_code& ec)
{
    unsigned char* scratch = read_scratch();
    std::size_t got = 0;
    if (after_byte)
        scratch[got++] = byte;
    ssize_t n;
    do
        n = ::recv(fd, scratch + got, scratch_size - got, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        got += static_cast<std::size_t>(n);
    if (got > 0) {
        // An EOF or error after the data shows at the next read, as it would to Asio.
        in_ = scratch;
        in_size_ = got;
        in_scratch_ = true;
        return receipt::data;
    }
    if (n == 0) {
        ec = boost::asio::error::eof;
        return receipt::failed;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return receipt::would_block;
    ec = boost::system::error_code(errno, boost::asio::error::get_system_category());
    return receipt::failed;
}

boost::asio::const_buffer engine::begin_send()
{
    in_flight_.swap(pending_);
    sending_ = true;
    return boost::asio::buffer(in_flight_);
}

void engine::end_send(boost::system::error_code ec, std::size_t n)
{
    sending_ = false;
    sent_ += n;
    if (ec && !send_error_)
        send_error_ = ec;
    if (in_flight_.capacity() > kept_output_capacity)
        std::vector<unsigned char>().swap(in_flight_);
    else
        in_flight_.clear();
}

} // namespace lens::detail::tls
