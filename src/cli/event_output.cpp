#include "cli/event_output.hpp"

namespace lens::cli {

boost::json::object event_line(lens::session_event&& ev)
{
    boost::json::object line;
    line["id"] = std::move(ev.id);
    line["type"] = std::move(ev.type);
    line["data"] = ev.raw();
    return line;
}

} // namespace lens::cli
