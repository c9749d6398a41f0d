// The secret boundary: the literal API key is removed from everything that comes
// from the server before lens hands it to anyone.
//
// Servers echo the key (session records carry `api_key`; error bodies quote
// "invalid token <key>"; a hostile server can put it anywhere, under any name, in
// any escape form). Every string lens takes from the server — JSON replies, records,
// error bodies and diagnostics, WebSocket frames, SSE events and ids — passes through
// a redactor first, after JSON decoding, so escapes cannot hide the key.
#pragma once

#include <boost/json/fwd.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace lens::detail {

class redactor {
public:
    /// What replaces each occurrence of the key. (A key that the mask could spell again
    /// with its neighbours, such as "e", is replaced by as many `*` instead, so that the
    /// result never holds the key whatever it is.)
    static constexpr std::string_view mask = "[redacted]";

    redactor() = default;
    explicit redactor(std::string secret)
        : key_(secret.empty() ? nullptr : std::make_shared<const finder>(std::move(secret)))
    {
    }

    /// Replaces every occurrence of the key in `s` with `mask`: afterwards `s` never holds it.
    void scrub(std::string& s) const;
    /// `s` with every occurrence of the key replaced.
    std::string scrubbed(std::string_view s) const;
    /// True when `s` holds the key.
    bool leaks(std::string_view s) const noexcept;
    /// Removes every member named `api_key` (any case) and replaces the key in every
    /// string and member name, at any depth (an explicit stack: no recursion limit).
    void scrub(boost::json::value& v) const;
    /// `v`, parsed from the JSON `text`, scrubbed: the tree is walked only when the text
    /// shows that it may need it (it holds the key, or may_hide_secret).
    void scrub(boost::json::value& v, std::string_view text) const;

    /// True when the decoded form of the JSON `text` may hold what the raw text does not
    /// show: an escape (`\u0073k-...` spells a key) or an `api_key` member (any case),
    /// which scrub removes. False proves that, when `text` does not leak the key, a tree
    /// parsed from it holds neither: its strings and names are pieces of the text.
    static bool may_hide_secret(std::string_view text) noexcept;
    /// True when the JSON `text` holds an escape, which may spell anything once decoded.
    static bool has_escape(std::string_view text) noexcept { return text.find('\\') != std::string_view::npos; }
    /// True for a member that scrub removes whatever it holds: `api_key`, in any case.
    /// (Inline: every member name of every event is asked.)
    static bool is_secret_member(std::string_view name) noexcept
    {
        constexpr std::string_view want = "api_key";
        if (name.size() != want.size())
            return false;
        for (std::size_t i = 0; i < want.size(); ++i) {
            const auto c = static_cast<unsigned char>(name[i]);
            if ((c >= 'A' && c <= 'Z' ? c | 0x20 : c) != static_cast<unsigned char>(want[i]))
                return false;
        }
        return true;
    }

private:
    /// The key, shared by a redactor's copies (a copy costs no string). Every frame and
    /// event is searched for it: by its first and last bytes, sixteen places at a time
    /// (detail/byte_pair_search.hpp), then in full where both stand.
    struct finder {
        explicit finder(std::string k) : key(std::move(k)) {}
        std::string key;
        /// The first occurrence of `key` in `s`: its offset, or std::string_view::npos.
        std::size_t find(std::string_view s) const noexcept;
    };
    /// `s` with each occurrence of the key, left to right and without overlap, replaced by
    /// `with` (the same search as `leaks`). Only for a redactor with a key.
    std::string replace_all(std::string_view s, std::string_view with) const;

    std::shared_ptr<const finder> key_; ///< null: no key, nothing to hide
};

} // namespace lens::detail
