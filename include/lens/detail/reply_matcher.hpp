// The reply matcher of the WebSocket multiplexer (sans-I/O).
//
// The Lens control channel has no request ids: a reply is matched to the
// OLDEST outstanding request expecting that reply type. Entries of callers
// that gave up stay in place, so that their late replies are consumed by them
// (and dropped) instead of being handed to the next caller of the same type.
//
// The matcher does not own its entries: they are linked intrusively (no
// allocation per request beyond the request itself) and the session keeps them
// alive while linked.
#pragma once

#include <boost/intrusive/list.hpp>
#include <boost/json/value.hpp>

#include <string>
#include <string_view>

namespace lens::detail {

/// What a frame received from the server is.
struct frame_class {
    enum kind_type {
        reply,        ///< answers the oldest pending request of type `request_type`
        error,        ///< `{"type": "error", ...}`: answers the oldest pending request of any type
        unsolicited,  ///< answers nothing: goes to the session's inbox
    } kind = unsolicited;
    std::string_view request_type; ///< for replies: "session.validate" for "session.validate.response"
};

/// Classifies a decoded frame:
/// - `{"type": "T.response", ...}` is a reply to a request of type T;
/// - an object without `type` that carries `session_id` is the bare record
///   `session.status` replies with;
/// - `{"type": "error", ...}` is an error of the oldest pending request;
/// - anything else (other types, non-objects) is unsolicited.
frame_class classify_frame(const boost::json::value& frame) noexcept;

/// An entry: derive from this and set `request_type`.
struct matcher_entry : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>> {
    std::string request_type;
};

template <class Entry>
class reply_matcher {
public:
    /// Records that `e` was sent and awaits a reply. Order of calls is send order.
    void expect(Entry& e) noexcept { list_.push_back(e); }

    /// Removes and returns the oldest entry awaiting a reply to `request_type`, or null.
    Entry* match(std::string_view request_type) noexcept
    {
        for (auto it = list_.begin(); it != list_.end(); ++it)
            if (it->request_type == request_type) {
                Entry& e = *it;
                list_.erase(it);
                return &e;
            }
        return nullptr;
    }

    /// Removes and returns the oldest entry of any type, or null.
    Entry* oldest() noexcept
    {
        if (list_.empty())
            return nullptr;
        Entry& e = list_.front();
        list_.pop_front();
        return &e;
    }

    /// Removes every entry, oldest first, handing each to `f` (connection lost).
    template <class F>
    void drain(F&& f)
    {
        while (!list_.empty()) {
            Entry& e = list_.front();
            list_.pop_front();
            f(e);
        }
    }

    std::size_t size() const noexcept { return list_.size(); }
    bool empty() const noexcept { return list_.empty(); }

private:
    boost::intrusive::list<Entry, boost::intrusive::constant_time_size<true>> list_;
};

} // namespace lens::detail
