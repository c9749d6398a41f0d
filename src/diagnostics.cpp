#include <lens/detail/async_op.hpp>
#include <lens/diagnostics.hpp>

#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/system_executor.hpp>

namespace lens {

diagnostics::diagnostics(const lens::error& e)
    : operation_(e.operation()), http_status_(e.http_status()), server_errors_(e.server_errors()), message_(e.what())
{
}

diagnostics::diagnostics(const boost::system::system_error& e) : message_(e.what()) {}

void diagnostics::clear() noexcept
{
    operation_.clear();
    http_status_ = 0;
    server_errors_.clear();
    message_.clear();
}

namespace detail {

boost::system::error_code error_code_of(const std::exception_ptr& failure, diagnostics* diag)
{
    try {
        std::rethrow_exception(failure);
    } catch (const lens::error& e) {
        if (diag)
            *diag = diagnostics(e);
        return e.code();
    } catch (const boost::system::system_error& e) {
        if (diag)
            *diag = diagnostics(e);
        return e.code();
    }
}

bool on_system_context(const boost::asio::any_io_executor& ex) noexcept
{
    namespace asio = boost::asio;
    return !ex || &asio::query(ex, asio::execution::context) ==
                      &asio::query(asio::system_executor(), asio::execution::context);
}

std::exception_ptr no_handler_executor(const char* operation)
{
    return std::make_exception_ptr(
        lens::error(errc::invalid_argument, operation,
                    "the completion handler has no associated executor to run on (use boost::asio::bind_executor)"));
}

} // namespace detail
} // namespace lens
