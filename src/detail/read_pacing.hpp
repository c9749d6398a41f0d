// When a session starts its next read after it wrote requests: at once, or one scheduler
// pass later.
//
// Asio tries every read on the spot first (a receive system call) and waits for the reactor only when
// that finds the socket empty. Right after a session writes, its replies are a round trip
// away, so that first attempt finds nothing: one system call wasted per write.
// - A session alone with requests in flight on its execution context starts the read at
//   once anyway. Nothing else runs on the thread meanwhile; a read started one pass later
//   would cost a non-blocking epoll_wait in place of the receive, and gain nothing.
// - When other sessions of the context wait for replies too, the thread has their replies
//   to handle in the meantime. A read started after that pass usually finds its reply
//   already there and takes it in one receive, as a raw read loop does (measured at 16
//   sessions with one request each: 2.0 → 1.0 receives per request).
//
// `read_pacing` is one session's place in its context's tally of sessions with requests
// in flight. The tally is shared (and atomic: sessions on strands of one multi-threaded
// context count together), and it outlives the context, which a session object may do.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <atomic>
#include <cstddef>
#include <memory>

namespace lens::detail {

/// How many sessions of one execution context have requests in flight.
using awaiting_tally = std::atomic<std::size_t>;

/// The tally of the execution context running `ex`, created on first use.
std::shared_ptr<awaiting_tally> awaiting_tally_of(const boost::asio::any_io_executor& ex);

/// One session's place in its context's tally. Not copyable: each place counts once.
class read_pacing {
public:
    explicit read_pacing(std::shared_ptr<awaiting_tally> tally) noexcept : tally_(std::move(tally)) {}
    read_pacing(const read_pacing&) = delete;
    read_pacing& operator=(const read_pacing&) = delete;
    ~read_pacing() { awaiting(false); }

    /// The session has requests in flight (`yes`) or none: the tally follows.
    void awaiting(bool yes) noexcept
    {
        if (yes == counted_)
            return;
        counted_ = yes;
        if (yes)
            tally_->fetch_add(1, std::memory_order_relaxed);
        else
            tally_->fetch_sub(1, std::memory_order_relaxed);
    }

    /// After the session wrote: its next read waits for a scheduler pass, because other
    /// sessions of the context await replies too (see the top of this file).
    bool defer_read() const noexcept { return counted_ && tally_->load(std::memory_order_relaxed) > 1; }

private:
    std::shared_ptr<awaiting_tally> tally_;
    bool counted_ = false;
};

} // namespace lens::detail
