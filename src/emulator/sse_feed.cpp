// Stub of the emulator's SSE surface: the SSE work replaces this file. It keeps
// the emulator linking and answers every consumer with 501.
#include "emulator/sse_feed.hpp"

namespace lens::emulator::detail {

class sse_feed {
public:
    explicit sse_feed(std::string session_id) : session_id_(std::move(session_id)) {}

private:
    std::string session_id_;
};

std::shared_ptr<sse_feed> make_sse_feed(boost::asio::any_io_executor, const options&, std::string session_id)
{
    return std::make_shared<sse_feed>(std::move(session_id));
}

void sse_input_stream(sse_feed&, std::string_view, const boost::json::object&, const std::string*) {}
void sse_session_destroyed(sse_feed&) {}
void sse_stop(sse_feed&) {}

boost::asio::awaitable<void> sse_serve(std::shared_ptr<sse_feed>, byte_sink& sink, std::string)
{
    co_await sink.write("HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    sink.close();
}

} // namespace lens::emulator::detail
