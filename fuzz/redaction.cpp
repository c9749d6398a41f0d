// Fuzz target: removal of the API key from server data (src/detail/redactor.hpp) and the
// records built from server replies (lens/records.hpp, src/records.cpp).
//
// The redactor's contract: every occurrence of the key, in every string and member name
// at any depth, is replaced, and every member named `api_key` (any case) is removed;
// it works on decoded JSON, so escapes cannot hide the key. Here the input chooses a
// key and a JSON document; the key (with input-chosen text around it) is then planted
// at input-chosen places: values, member names, `api_key` members in odd case, and the
// same written with \u escapes in the JSON text, which is parsed again.
// Invariants:
// - after scrub(), no string and no member name anywhere holds the key, and no member
//   is named api_key in any case; scrubbed(text) never holds the key, whatever the key;
// - scrub(v, text), which skips the walk when the text shows nothing to remove, leaves
//   the tree parsed from `text` exactly as scrub(v) does;
// - records (session, lens, file) decode any object without throwing, a non-object with
//   lens::error(invalid_response) only, and neither their `raw` nor value_from() of them
//   has an api_key member at any depth.
#include <lens/error.hpp>
#include <lens/records.hpp>

#include "detail/redactor.hpp"
#include "fuzz_check.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cctype>
#include <string>
#include <vector>

namespace {

namespace json = boost::json;

bool is_api_key_name(std::string_view s)
{
    if (s.size() != 7)
        return false;
    for (std::size_t i = 0; i < 7; ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != "api_key"[i])
            return false;
    return true;
}

/// Every value of the tree, without recursion.
template <class F>
void walk(json::value& root, F&& f)
{
    std::vector<json::value*> todo{&root};
    while (!todo.empty()) {
        json::value* v = todo.back();
        todo.pop_back();
        f(*v);
        if (auto* o = v->if_object())
            for (auto& kv : *o)
                todo.push_back(&kv.value());
        else if (auto* a = v->if_array())
            for (auto& e : *a)
                todo.push_back(&e);
    }
}

bool has_api_key_member(json::value v)
{
    bool found = false;
    walk(v, [&](json::value& x) {
        if (auto* o = x.if_object())
            for (auto& kv : *o)
                found = found || is_api_key_name(kv.key());
    });
    return found;
}

/// `s` as a JSON string literal, each ASCII character escaped as \uXXXX or not as `pick` says.
std::string escaped_literal(std::string_view s, FuzzedDataProvider& in)
{
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c < 0x80 && (c < 0x20 || c == '"' || c == '\\' || in.ConsumeBool())) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04X", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    FuzzedDataProvider in(data, size);
    std::string key = in.ConsumeRandomLengthString(24);
    if (key.empty())
        key = "sk-live-0123456789";
    const lens::detail::redactor secrets(key);

    boost::system::error_code ec;
    json::value doc = json::parse(in.ConsumeRandomLengthString(512), ec);
    if (ec)
        doc = json::object{{"session_id", "lsn-1"}};

    // Plant the key.
    std::vector<std::pair<std::string, std::string>> placeholders; // serialized placeholder -> text
    const int plants = in.ConsumeIntegralInRange<int>(0, 8);
    for (int p = 0; p < plants; ++p) {
        std::vector<json::value*> containers;
        walk(doc, [&](json::value& v) {
            if (v.is_object() || v.is_array())
                containers.push_back(&v);
        });
        if (containers.empty()) { // a scalar document: wrap it
            doc = json::array{std::move(doc)};
            containers.push_back(&doc);
        }
        json::value& c = *containers[in.ConsumeIntegralInRange<std::size_t>(0, containers.size() - 1)];
        const std::string around = in.ConsumeRandomLengthString(6);
        const std::string text = around.substr(0, around.size() / 2) + key + around.substr(around.size() / 2);
        const std::string ph = "\x01" "P" + std::to_string(p);
        json::value planted;
        std::string name = "m" + std::to_string(p);
        switch (in.ConsumeIntegralInRange<int>(0, 5)) {
        case 0: planted = json::string(text); break;                          // a value
        case 1: name = text; planted = p; break;                              // a member name
        case 2: {                                                             // api_key, odd case
            name = "api_key";
            for (char& ch : name)
                if (in.ConsumeBool())
                    ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
            planted = json::string(in.ConsumeBool() ? key : text);
            break;
        }
        case 3: // a value written with escapes
            planted = json::string(ph);
            placeholders.emplace_back(json::serialize(json::value(json::string(ph))), escaped_literal(text, in));
            break;
        case 4: // a member name written with escapes
            name = ph;
            planted = nullptr;
            placeholders.emplace_back(json::serialize(json::value(json::string(ph))), escaped_literal(text, in));
            break;
        default: // an api_key member written with escapes
            name = ph;
            planted = json::string(key);
            placeholders.emplace_back(json::serialize(json::value(json::string(ph))), escaped_literal("api_key", in));
            break;
        }
        if (auto* o = c.if_object())
            (*o)[name] = std::move(planted);
        else
            c.get_array().emplace_back(std::move(planted));
    }
    std::string text = json::serialize(doc);
    for (const auto& [ph, literal] : placeholders)
        if (const auto at = text.find(ph); at != std::string::npos)
            text.replace(at, ph.size(), literal);
    json::value v = json::parse(text, ec);
    if (ec)
        return 0; // the planted text was not UTF-8: no server sends that as JSON

    // The text path, whatever the key.
    FUZZ_REQUIRE(!secrets.leaks(secrets.scrubbed(text)));
    std::string copy = text;
    secrets.scrub(copy);
    FUZZ_REQUIRE(!secrets.leaks(copy));

    // The tree path.
    json::value scrubbed = v;
    secrets.scrub(scrubbed);
    walk(scrubbed, [&](json::value& x) {
        if (auto* s = x.if_string())
            FUZZ_REQUIRE(!secrets.leaks(*s));
        else if (auto* o = x.if_object())
            for (auto& kv : *o) {
                FUZZ_REQUIRE(!secrets.leaks(kv.key()));
                FUZZ_REQUIRE(!is_api_key_name(kv.key()));
            }
    });

    // The gated tree path (WebSocket frames): skipping the walk because of what the text
    // shows never changes the result.
    json::value gated = v;
    secrets.scrub(gated, text);
    FUZZ_REQUIRE(gated == scrubbed);

    // Records.
    try {
        const auto s = json::value_to<lens::session_record>(v);
        FUZZ_REQUIRE(!has_api_key_member(s.raw) && !has_api_key_member(json::value_from(s)));
        (void)lens::to_string(s.status);
        const auto l = json::value_to<lens::lens_record>(v);
        FUZZ_REQUIRE(!has_api_key_member(l.raw) && !has_api_key_member(json::value_from(l)));
        const auto f = json::value_to<lens::file_record>(v);
        FUZZ_REQUIRE(!has_api_key_member(f.raw) && !has_api_key_member(json::value_from(f)));
        FUZZ_REQUIRE(v.is_object());
    } catch (const lens::error& e) {
        FUZZ_REQUIRE(!v.is_object() && e.code() == lens::errc::invalid_response);
    }
    lens::scrub_secrets(v);
    FUZZ_REQUIRE(!has_api_key_member(v));
    return 0;
}
