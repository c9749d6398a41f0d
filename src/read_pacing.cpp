// The per-context tally behind detail::read_pacing (see src/detail/read_pacing.hpp).
#include "detail/read_pacing.hpp"

#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/query.hpp>

namespace lens::detail {
namespace {

/// Holds the tally of its execution context. Sessions hold it too: a session object may
/// outlive the context and its services.
class awaiting_tally_service : public boost::asio::execution_context::service {
public:
    static inline boost::asio::execution_context::id id;

    explicit awaiting_tally_service(boost::asio::execution_context& ctx)
        : boost::asio::execution_context::service(ctx), tally(std::make_shared<awaiting_tally>(0))
    {
    }

    const std::shared_ptr<awaiting_tally> tally;

private:
    void shutdown() override {}
};

} // namespace

std::shared_ptr<awaiting_tally> awaiting_tally_of(const boost::asio::any_io_executor& ex)
{
    auto& ctx = boost::asio::query(ex, boost::asio::execution::context);
    return boost::asio::use_service<awaiting_tally_service>(ctx).tally;
}

} // namespace lens::detail
