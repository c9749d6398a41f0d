#include <lens/detail/reply_matcher.hpp>

namespace lens::detail {

frame_class classify_frame(const boost::json::value& frame) noexcept
{
    const auto* obj = frame.if_object();
    if (!obj)
        return {};
    const auto* type = obj->if_contains("type");
    if (!type) {
        // session.status answers with the bare session record, no envelope.
        if (obj->contains("session_id"))
            return {frame_class::reply, "session.status"};
        return {};
    }
    const auto* name = type->if_string();
    if (!name)
        return {};
    const std::string_view t = *name;
    constexpr std::string_view suffix = ".response";
    if (t.size() > suffix.size() && t.substr(t.size() - suffix.size()) == suffix)
        return {frame_class::reply, t.substr(0, t.size() - suffix.size())};
    if (t == "error")
        return {frame_class::error, {}};
    return {};
}

} // namespace lens::detail
