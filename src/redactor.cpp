// redactor.cpp — removal of the API key from server data (see detail/redactor.hpp).
#include "detail/redactor.hpp"

#include "detail/byte_pair_search.hpp"

#include <boost/container/small_vector.hpp>
#include <boost/json/value.hpp>

namespace lens::detail {

std::size_t redactor::finder::find(std::string_view s) const noexcept
{
    return find_word(s, key, 0, key.size() - 1); // the key is never empty
}

bool redactor::leaks(std::string_view s) const noexcept
{
    return key_ && key_->find(s) != std::string_view::npos;
}

std::string redactor::replace_all(std::string_view s, std::string_view with) const
{
    std::string out;
    out.reserve(s.size());
    for (;;) {
        const std::size_t hit = key_->find(s);
        if (hit == std::string_view::npos)
            return out.append(s);
        out.append(s.substr(0, hit)).append(with);
        s.remove_prefix(hit + key_->key.size());
    }
}

void redactor::scrub(std::string& s) const
{
    if (!leaks(s))
        return;
    s = scrubbed(s);
}

std::string redactor::scrubbed(std::string_view s) const
{
    if (!leaks(s))
        return std::string(s);
    std::string out = replace_all(s, mask);
    if (!leaks(out))
        return out;
    // The mask spelled the key again, alone or with its neighbours: a key such as "e" or
    // "d]x" (never a real API key, but the promise is "never", whatever the key). A mask
    // made of a character the key lacks cannot: an occurrence in the result would lie
    // within the text between two replaced occurrences, where the search found none.
    for (char c : std::string_view("*#~^%"))
        if (key_->key.find(c) == std::string::npos)
            return replace_all(s, std::string(mask.size(), c));
    // The key holds every one of them: delete it until none is left (each pass shortens).
    out = replace_all(s, {});
    while (leaks(out))
        out = replace_all(out, {});
    return out;
}

bool redactor::may_hide_secret(std::string_view text) noexcept
{
    if (has_escape(text))
        return true;
    // "api_key" in any case, found by its "_k" (detail/byte_pair_search.hpp). A byte-wise
    // case-insensitive search with std::tolower cost more than the JSON parse of a typical event.
    return find_word(text, "api_key", 3, 4, true) != std::string_view::npos;
}

void redactor::scrub(boost::json::value& v, std::string_view text) const
{
    if (leaks(text) || may_hide_secret(text))
        scrub(v);
}

void redactor::scrub(boost::json::value& root) const
{
    // Up to 32 values waiting to be visited live on the stack: a reply's walk allocates nothing.
    boost::container::small_vector<boost::json::value*, 32> pending{&root};
    while (!pending.empty()) {
        boost::json::value* v = pending.back();
        pending.pop_back();
        if (auto* s = v->if_string()) {
            if (leaks(*s))
                *s = scrubbed(*s);
        } else if (auto* o = v->if_object()) {
            bool renamed = false;
            for (auto it = o->begin(); it != o->end();) {
                if (is_secret_member(it->key())) {
                    // Not erase(): it moves the last member into the hole, reordering the
                    // object. stable_erase() only disturbs members after `it`, none of
                    // which is on the stack yet.
                    it = o->stable_erase(it);
                    continue;
                }
                renamed = renamed || leaks(it->key());
                ++it;
            }
            if (renamed) {
                // Member names cannot be edited in place: rebuild the object in order.
                boost::json::object copy(o->storage());
                copy.reserve(o->size());
                for (auto& kv : *o)
                    copy.insert_or_assign(scrubbed(kv.key()), std::move(kv.value()));
                *o = std::move(copy);
            }
            for (auto& kv : *o)
                pending.push_back(&kv.value());
        } else if (auto* a = v->if_array()) {
            for (auto& item : *a)
                pending.push_back(&item);
        }
    }
}

} // namespace lens::detail
