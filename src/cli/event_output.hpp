// How `lens events` and `lens run` print a session's SSE events: one JSON line each.
#pragma once

#include <lens/events.hpp>

#include <boost/json/object.hpp>

namespace lens::cli {

/// The line printed for `ev`: `{"id": last event id, "type": payload type, "data": raw payload}`.
boost::json::object event_line(lens::session_event&& ev);

} // namespace lens::cli
