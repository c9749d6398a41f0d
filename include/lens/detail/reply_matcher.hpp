// The reply matcher of the WebSocket multiplexer (sans-I/O).
//
// The Lens control channel has no request ids: a reply is matched to the
// OLDEST outstanding request expecting that reply type (which reply type a frame
// carries: classify_frame, src/detail/frame_fields.hpp). Entries of callers
// that gave up stay in place, so that their late replies are consumed by them
// (and dropped) instead of being handed to the next caller of the same type.
//
// The matcher does not own its entries: they are linked intrusively (no
// allocation per request beyond the request itself) and the session keeps them
// alive while linked.
#pragma once

#include <boost/intrusive/list.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace lens::detail {

/// An entry: derive from this and set `request_type` (before `expect`, unchanged while linked).
struct matcher_entry : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>> {
    std::string request_type;
    /// Links the entry into the list of its type (reply_matcher's per-type index).
    boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> type_hook;
};

/// Send order is kept twice: one list of every pending entry (the order `error`
/// replies and a lost connection use) and one list per request type (the order
/// `match` uses). So a reply costs one hash look-up and two unlinks, however many
/// requests of other types are pending.
template <class Entry>
class reply_matcher {
public:
    reply_matcher() = default;
    reply_matcher(const reply_matcher&) = delete;
    reply_matcher& operator=(const reply_matcher&) = delete;

    /// Records that `e` was sent and awaits a reply. Order of calls is send order.
    void expect(Entry& e)
    {
        auto it = by_type_.find(std::string_view(e.request_type));
        if (it == by_type_.end())
            it = by_type_.emplace(e.request_type, type_list()).first;
        it->second.push_back(e);
        list_.push_back(e);
    }

    /// Removes and returns the oldest entry awaiting a reply to `request_type`, or null.
    Entry* match(std::string_view request_type) noexcept
    {
        const auto it = by_type_.find(request_type);
        if (it == by_type_.end() || it->second.empty())
            return nullptr;
        Entry& e = static_cast<Entry&>(it->second.front());
        it->second.pop_front();
        list_.erase(list_.iterator_to(e));
        forget_if_empty(it);
        return &e;
    }

    /// Removes and returns the oldest entry of any type, or null.
    Entry* oldest() noexcept
    {
        if (list_.empty())
            return nullptr;
        Entry& e = list_.front();
        list_.pop_front();
        e.type_hook.unlink();
        if (by_type_.size() > kept_types)
            forget_if_empty(by_type_.find(std::string_view(e.request_type)));
        return &e;
    }

    /// Removes every entry, oldest first, handing each to `f` (connection lost).
    template <class F>
    void drain(F&& f)
    {
        while (!list_.empty()) {
            Entry& e = list_.front();
            list_.pop_front();
            e.type_hook.unlink();
            f(e);
        }
        if (by_type_.size() > kept_types)
            by_type_.clear(); // every list is empty now
    }

    std::size_t size() const noexcept { return list_.size(); }
    bool empty() const noexcept { return list_.empty(); }

    /// For tests: how many per-type lists are kept.
    std::size_t type_lists() const noexcept { return by_type_.size(); }

private:
    using type_list = boost::intrusive::list<
        matcher_entry, boost::intrusive::member_hook<matcher_entry, decltype(matcher_entry::type_hook), &matcher_entry::type_hook>,
        boost::intrusive::constant_time_size<false>>;
    struct type_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    using type_map = std::unordered_map<std::string, type_list, type_hash, std::equal_to<>>;

    /// The lists of the few request types in use stay (no allocation per request);
    /// past `kept_types` distinct types (call() takes any type) empty lists go.
    void forget_if_empty(typename type_map::iterator it) noexcept
    {
        if (it != by_type_.end() && it->second.empty() && by_type_.size() > kept_types)
            by_type_.erase(it);
    }
    static constexpr std::size_t kept_types = 16;

    boost::intrusive::list<Entry, boost::intrusive::constant_time_size<true>> list_;
    type_map by_type_;
};

} // namespace lens::detail
