// redactor.cpp — removal of the API key from server data (see detail/redactor.hpp).
#include "detail/redactor.hpp"

#include <boost/json/value.hpp>

#include <cctype>
#include <vector>

namespace lens::detail {

namespace {

bool is_api_key_name(std::string_view name) noexcept
{
    constexpr std::string_view want = "api_key";
    if (name.size() != want.size())
        return false;
    for (std::size_t i = 0; i < want.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(name[i])) != want[i])
            return false;
    return true;
}

} // namespace

bool redactor::leaks(std::string_view s) const noexcept
{
    return !secret_.empty() && s.find(secret_) != std::string_view::npos;
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
    std::string out;
    out.reserve(s.size());
    for (std::size_t pos = 0;;) {
        const auto hit = s.find(secret_, pos);
        if (hit == std::string_view::npos) {
            out.append(s.substr(pos));
            return out;
        }
        out.append(s.substr(pos, hit - pos));
        out.append(mask);
        pos = hit + secret_.size();
    }
}

void redactor::scrub(boost::json::value& root) const
{
    std::vector<boost::json::value*> pending{&root};
    while (!pending.empty()) {
        boost::json::value* v = pending.back();
        pending.pop_back();
        if (auto* s = v->if_string()) {
            if (leaks(*s))
                *s = scrubbed(*s);
        } else if (auto* o = v->if_object()) {
            bool renamed = false;
            for (auto it = o->begin(); it != o->end();) {
                if (is_api_key_name(it->key())) {
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
