// tests/chaos/fault_proxy.hpp — a TCP proxy on loopback that injects network faults.
//
// It sits between lens and the emulator and forwards bytes (so it works for http, ws,
// https and wss alike: it never looks inside). Each accepted connection draws, from a
// seeded generator, a fault plan for each direction:
//   latency     every forwarded chunk waits 0..max_latency
//   trickle     chunks are written in pieces of 1..7 bytes (partial writes)
//   reset       at a random byte offset both sockets are closed with SO_LINGER 0 (RST);
//               inside a TLS stream this is a TLS truncation (a record cut short)
//   half_close  at a random byte offset the destination's sending side is shut down
//               (FIN) while the other direction keeps flowing
//   stall       at a random byte offset nothing moves for stall_min..stall_max
//               (longer than a dead-peer timeout: the peer must notice by itself)
// Offsets are drawn up to max_fault_offset, so most faults hit established streams
// rather than handshakes, and some hit handshakes.
//
// Besides the per-connection plans, `drop_all()` resets every live connection at once
// (a restart of the path), and `refuse_for(d)` answers new connections with an
// immediate reset for a while (a server that is down).
//
// Everything runs on the executor given; call the members from it.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <memory>

namespace lens::chaos {

/// Probabilities (per connection and direction) and sizes of the faults.
struct fault_options {
    double reset = 0.15;       ///< a reset at a random offset
    double half_close = 0.08;  ///< a half-close at a random offset
    double stall = 0.10;       ///< a stall at a random offset
    double trickle = 0.15;     ///< partial writes for the whole connection
    std::chrono::milliseconds max_latency{5};   ///< per chunk, uniform in [0, max_latency]
    std::chrono::milliseconds stall_min{100};   ///< shortest stall
    std::chrono::milliseconds stall_max{2500};  ///< longest stall
    std::size_t max_fault_offset = 8 * 1024;   ///< faults strike within this many bytes
};

/// What the proxy did, for the run's report.
struct fault_stats {
    std::size_t connections = 0;   ///< accepted
    std::size_t refused = 0;       ///< reset at once (refuse_for)
    std::size_t resets = 0;        ///< planned resets that struck
    std::size_t half_closes = 0;   ///< planned half-closes that struck
    std::size_t stalls = 0;        ///< planned stalls that struck
    std::size_t trickled = 0;      ///< connections written in small pieces
    std::size_t dropped = 0;       ///< connections reset by drop_all
    std::size_t upstream_failures = 0; ///< upstream connects that failed
    std::uint64_t bytes = 0;       ///< forwarded, both directions
    std::size_t live = 0;          ///< connections open now
};

/// The proxy: listens on 127.0.0.1, an ephemeral port, and forwards to `upstream_port`.
class fault_proxy {
public:
    fault_proxy(boost::asio::any_io_executor ex, std::uint16_t upstream_port, std::uint32_t seed);
    ~fault_proxy();
    fault_proxy(const fault_proxy&) = delete;
    fault_proxy& operator=(const fault_proxy&) = delete;

    /// The port to connect to.
    std::uint16_t port() const noexcept;
    /// Starts accepting.
    void start();
    /// Stops accepting and resets every connection.
    void stop();

    /// The fault plans of connections accepted from now on; `enabled(false)` forwards
    /// new connections untouched (live ones keep their plans: call drop_all too).
    void set_faults(const fault_options& o);
    /// Whether new connections get fault plans.
    void enabled(bool on);
    /// Resets every live connection.
    void drop_all();
    /// Resets every connection accepted during the next `d`.
    void refuse_for(std::chrono::milliseconds d);

    /// Counters so far.
    fault_stats stats() const;

    struct impl;

private:
    std::shared_ptr<impl> impl_;
};

} // namespace lens::chaos
