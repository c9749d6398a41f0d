// tests/chaos/fault_proxy.cpp — see fault_proxy.hpp.
#include "fault_proxy.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <list>
#include <random>

namespace lens::chaos {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock = std::chrono::steady_clock;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

namespace {

enum class fault_kind { none, reset, half_close, stall };

/// One direction's plan, drawn when the connection is accepted.
struct direction_plan {
    fault_kind fault = fault_kind::none;
    std::uint64_t offset = 0;               ///< bytes forwarded before the fault strikes
    std::chrono::milliseconds stall{0};
};

/// Both sockets of one proxied connection and its plans.
struct link {
    explicit link(const asio::any_io_executor& ex) : client(ex), upstream(ex), to_upstream_timer(ex), to_client_timer(ex) {}
    tcp::socket client;
    tcp::socket upstream;
    asio::steady_timer to_upstream_timer, to_client_timer; ///< latency and stalls of each direction
    direction_plan to_upstream, to_client;
    bool trickle = false;
    std::chrono::milliseconds max_latency{0};
    bool closed = false;
    int stalled = 0; ///< directions in a stall now

    /// Both sockets closed with an RST (SO_LINGER 0), so the peers see a reset, not a FIN.
    void reset() noexcept
    {
        if (closed)
            return;
        closed = true;
        boost::system::error_code ignored;
        for (tcp::socket* s : {&client, &upstream})
            if (s->is_open()) {
                s->set_option(asio::socket_base::linger(true, 0), ignored);
                s->close(ignored);
            }
        to_upstream_timer.cancel(); // a stalled direction ends now, not when its stall would
        to_client_timer.cancel();
    }
};

} // namespace

struct fault_proxy::impl : std::enable_shared_from_this<impl> {
    impl(asio::any_io_executor ex, std::uint16_t upstream_port, std::uint32_t seed)
        : executor(ex), acceptor(ex, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
          upstream(asio::ip::make_address("127.0.0.1"), upstream_port), rng(seed)
    {
    }

    asio::any_io_executor executor;
    tcp::acceptor acceptor;
    tcp::endpoint upstream;
    std::mt19937 rng;
    fault_options faults;
    bool enabled = true;
    bool stopped = false;
    clock::time_point refuse_until{};
    std::list<std::weak_ptr<link>> links;
    fault_stats counters;

    double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }
    std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng); }
    std::chrono::milliseconds between(std::chrono::milliseconds lo, std::chrono::milliseconds hi)
    {
        return lo + std::chrono::milliseconds(below(static_cast<std::uint64_t>(std::max<long long>(hi.count() - lo.count(), 0)) + 1));
    }

    direction_plan draw_plan()
    {
        direction_plan p;
        if (!enabled)
            return p;
        const double u = uniform();
        double edge = faults.reset;
        if (u < edge)
            p.fault = fault_kind::reset;
        else if (u < (edge += faults.half_close))
            p.fault = fault_kind::half_close;
        else if (u < (edge += faults.stall)) {
            p.fault = fault_kind::stall;
            p.stall = between(faults.stall_min, faults.stall_max);
        }
        p.offset = below(faults.max_fault_offset);
        return p;
    }

    static asio::awaitable<void> accept_loop(std::shared_ptr<impl> self)
    {
        while (!self->stopped) {
            auto [ec, socket] = co_await self->acceptor.async_accept(nothrow);
            if (self->stopped)
                break;
            if (ec)
                continue; // EMFILE and friends: keep serving the others
            auto l = std::make_shared<link>(self->executor);
            l->client = std::move(socket);
            boost::system::error_code ignored;
            l->client.set_option(tcp::no_delay(true), ignored);
            ++self->counters.connections;
            if (clock::now() < self->refuse_until) {
                ++self->counters.refused;
                l->reset();
                continue;
            }
            l->to_upstream = self->draw_plan();
            l->to_client = self->draw_plan();
            l->trickle = self->enabled && self->uniform() < self->faults.trickle;
            l->max_latency = self->enabled ? self->faults.max_latency : std::chrono::milliseconds(0);
            if (l->trickle)
                ++self->counters.trickled;
            self->track(l);
            asio::co_spawn(self->executor, serve(self, l), asio::detached);
        }
    }

    void track(const std::shared_ptr<link>& l)
    {
        links.remove_if([](const std::weak_ptr<link>& w) { return w.expired(); });
        links.push_back(l);
    }

    static asio::awaitable<void> serve(std::shared_ptr<impl> self, std::shared_ptr<link> l)
    {
        auto [ec] = co_await l->upstream.async_connect(self->upstream, nothrow);
        if (ec || l->closed) {
            if (ec)
                ++self->counters.upstream_failures;
            l->reset();
            co_return;
        }
        boost::system::error_code ignored;
        l->upstream.set_option(tcp::no_delay(true), ignored);
        ++self->counters.live;
        // Both directions pump concurrently; the connection ends when both are done.
        auto done = std::make_shared<int>(2);
        auto finish = [self, l, done] {
            if (--*done == 0) {
                --self->counters.live;
                l->reset();
            }
        };
        asio::co_spawn(self->executor, pump(self, l, l->client, l->upstream, l->to_upstream_timer, l->to_upstream),
                       [finish](std::exception_ptr) { finish(); });
        asio::co_spawn(self->executor, pump(self, l, l->upstream, l->client, l->to_client_timer, l->to_client),
                       [finish](std::exception_ptr) { finish(); });
    }

    /// Forwards `from` → `to` under `plan` until either side ends or the plan resets it.
    static asio::awaitable<void> pump(std::shared_ptr<impl> self, std::shared_ptr<link> l, tcp::socket& from,
                                      tcp::socket& to, asio::steady_timer& timer, direction_plan plan)
    {
        std::array<char, 16 * 1024> buffer;
        std::uint64_t forwarded = 0;
        bool struck = false;
        while (!l->closed) {
            auto [rec, n] = co_await from.async_read_some(asio::buffer(buffer), nothrow);
            if (l->closed)
                co_return;
            if (rec) {
                // The source ended (FIN) or failed: pass a FIN on, or the reset.
                // A peer that leaves while the other direction is stalled would otherwise
                // leave the connection open until the stall ends.
                if (rec == asio::error::eof && l->stalled == 0) {
                    boost::system::error_code ignored;
                    to.shutdown(tcp::socket::shutdown_send, ignored);
                } else {
                    l->reset();
                }
                co_return;
            }
            std::size_t start = 0;
            while (start < n && !l->closed) {
                std::size_t take = n - start;
                // The fault strikes inside this chunk: forward up to its offset first.
                const bool strikes_here = !struck && plan.fault != fault_kind::none && forwarded + take > plan.offset;
                if (strikes_here)
                    take = static_cast<std::size_t>(plan.offset - forwarded);
                if (l->max_latency.count() > 0) {
                    timer.expires_after(self->between(std::chrono::milliseconds(0), l->max_latency));
                    co_await timer.async_wait(nothrow);
                    if (l->closed)
                        co_return;
                }
                std::size_t written = 0;
                while (written < take) {
                    const std::size_t piece = l->trickle ? std::min<std::size_t>(take - written, 1 + self->below(7))
                                                         : take - written;
                    auto [wec, w] = co_await asio::async_write(to, asio::buffer(buffer.data() + start + written, piece),
                                                               nothrow);
                    if (wec || l->closed) {
                        l->reset();
                        co_return;
                    }
                    written += w;
                }
                forwarded += take;
                self->counters.bytes += take;
                start += take;
                if (!strikes_here)
                    continue;
                struck = true;
                switch (plan.fault) {
                case fault_kind::reset:
                    ++self->counters.resets;
                    l->reset();
                    co_return;
                case fault_kind::half_close: {
                    ++self->counters.half_closes;
                    boost::system::error_code ignored;
                    to.shutdown(tcp::socket::shutdown_send, ignored);
                    co_return; // this direction is over; the other keeps flowing
                }
                case fault_kind::stall:
                    ++self->counters.stalls;
                    timer.expires_after(plan.stall);
                    ++l->stalled;
                    co_await timer.async_wait(nothrow);
                    --l->stalled;
                    break;
                case fault_kind::none:
                    break;
                }
            }
        }
    }

    void drop_all()
    {
        for (auto& w : links)
            if (auto l = w.lock(); l && !l->closed) {
                ++counters.dropped;
                l->reset();
            }
        links.clear();
    }
};

fault_proxy::fault_proxy(asio::any_io_executor ex, std::uint16_t upstream_port, std::uint32_t seed)
    : impl_(std::make_shared<impl>(std::move(ex), upstream_port, seed))
{
}

fault_proxy::~fault_proxy() { stop(); }

std::uint16_t fault_proxy::port() const noexcept { return impl_->acceptor.local_endpoint().port(); }

void fault_proxy::start() { asio::co_spawn(impl_->executor, impl::accept_loop(impl_), asio::detached); }

void fault_proxy::stop()
{
    if (impl_->stopped)
        return;
    impl_->stopped = true;
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
    impl_->drop_all();
}

void fault_proxy::set_faults(const fault_options& o) { impl_->faults = o; }
void fault_proxy::enabled(bool on) { impl_->enabled = on; }
void fault_proxy::drop_all() { impl_->drop_all(); }
void fault_proxy::refuse_for(std::chrono::milliseconds d) { impl_->refuse_until = clock::now() + d; }
fault_stats fault_proxy::stats() const { return impl_->counters; }

} // namespace lens::chaos
