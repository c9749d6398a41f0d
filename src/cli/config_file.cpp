// Lens configuration files: YAML or JSON into Boost.JSON (see config_file.hpp).
#include "cli/config_file.hpp"

#include <boost/json/parse_options.hpp>
#include <boost/json/stream_parser.hpp>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include <sys/stat.h>

namespace lens::cli {

namespace json = boost::json;

namespace {

constexpr std::string_view utf8_bom = "\xEF\xBB\xBF";
constexpr std::string_view core_tag = "tag:yaml.org,2002:";

/// "origin:line:column: cause" (line and column 1-based; left out when unknown).
[[noreturn]] void fail_at(std::string_view origin, std::optional<std::pair<std::size_t, std::size_t>> where,
                          std::string_view cause)
{
    std::string m(origin);
    if (where)
        m += ':' + std::to_string(where->first) + ':' + std::to_string(where->second);
    m += ": ";
    m += cause;
    throw config_error(m);
}

std::optional<std::pair<std::size_t, std::size_t>> position_of(const YAML::Mark& mark)
{
    if (mark.is_null() || mark.line < 0 || mark.column < 0)
        return std::nullopt;
    return std::pair<std::size_t, std::size_t>(static_cast<std::size_t>(mark.line) + 1,
                                               static_cast<std::size_t>(mark.column) + 1);
}

/// Line and column (1-based) of byte `offset` of `text`.
std::pair<std::size_t, std::size_t> position_in(std::string_view text, std::size_t offset)
{
    offset = std::min(offset, text.size());
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < offset; ++i) {
        if (text[i] == '\n') {
            ++line;
            column = 1;
        } else {
            ++column;
        }
    }
    return {line, column};
}

/// True when `s` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view s)
{
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t extra = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            extra = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (s.size() - i <= extra) // the sequence is cut short
            return false;
        for (std::size_t k = 1; k <= extra; ++k) {
            const auto d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (d & 0x3F);
        }
        static constexpr std::uint32_t smallest[] = {0, 0x80, 0x800, 0x10000};
        if (cp < smallest[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += extra + 1;
    }
    return true;
}

bool all_of_digits(std::string_view s, bool (*digit)(char))
{
    return !s.empty() && std::all_of(s.begin(), s.end(), digit);
}

bool decimal_digit(char c) { return c >= '0' && c <= '9'; }
bool octal_digit(char c) { return c >= '0' && c <= '7'; }
bool hex_digit(char c) { return decimal_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/// What a scalar's text means under the core schema (or an explicit tag).
enum class scalar_kind { null, boolean, integer, floating, infinite_or_nan, string };

bool is_null_text(std::string_view s) { return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL"; }
bool is_true_text(std::string_view s) { return s == "true" || s == "True" || s == "TRUE"; }
bool is_false_text(std::string_view s) { return s == "false" || s == "False" || s == "FALSE"; }

bool is_integer_text(std::string_view s)
{
    if (s.starts_with("0o"))
        return all_of_digits(s.substr(2), octal_digit);
    if (s.starts_with("0x"))
        return all_of_digits(s.substr(2), hex_digit);
    if (!s.empty() && (s.front() == '-' || s.front() == '+'))
        s.remove_prefix(1);
    return all_of_digits(s, decimal_digit);
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
bool is_float_text(std::string_view s)
{
    std::size_t i = 0;
    auto digits = [&] {
        const std::size_t from = i;
        while (i < s.size() && decimal_digit(s[i]))
            ++i;
        return i - from;
    };
    if (i < s.size() && (s[i] == '-' || s[i] == '+'))
        ++i;
    if (i < s.size() && s[i] == '.') {
        ++i;
        if (digits() == 0)
            return false;
    } else {
        if (digits() == 0)
            return false;
        if (i < s.size() && s[i] == '.') {
            ++i;
            digits();
        }
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        ++i;
        if (i < s.size() && (s[i] == '-' || s[i] == '+'))
            ++i;
        if (digits() == 0)
            return false;
    }
    return i == s.size();
}

bool is_inf_or_nan_text(std::string_view s)
{
    if (s == ".nan" || s == ".NaN" || s == ".NAN")
        return true;
    if (!s.empty() && (s.front() == '-' || s.front() == '+'))
        s.remove_prefix(1);
    return s == ".inf" || s == ".Inf" || s == ".INF";
}

scalar_kind kind_of_plain(std::string_view s)
{
    if (is_null_text(s))
        return scalar_kind::null;
    if (is_true_text(s) || is_false_text(s))
        return scalar_kind::boolean;
    if (is_integer_text(s))
        return scalar_kind::integer;
    if (is_float_text(s))
        return scalar_kind::floating;
    if (is_inf_or_nan_text(s))
        return scalar_kind::infinite_or_nan;
    return scalar_kind::string;
}

/// Converts one YAML document's node tree, counting and bounding what it produces.
class converter {
public:
    converter(std::string_view origin, const config_limits& limits) : origin_(origin), limits_(limits) {}

    json::value convert(const YAML::Node& n, std::size_t depth)
    {
        if (++nodes_ > limits_.max_nodes)
            fail(n, "more than " + std::to_string(limits_.max_nodes) + " values (aliases expanding?)");
        if (depth > limits_.max_depth)
            fail(n, "nested deeper than " + std::to_string(limits_.max_depth) + " levels");
        switch (n.Type()) {
        case YAML::NodeType::Null:
            if (n.Tag() == std::string(core_tag) + "str")
                return json::string();
            return nullptr;
        case YAML::NodeType::Scalar:
            return scalar(n);
        case YAML::NodeType::Sequence: {
            check_collection_tag(n, "seq");
            json::array out;
            for (const auto& item : n)
                out.push_back(convert(item, depth + 1));
            return out;
        }
        case YAML::NodeType::Map:
            check_collection_tag(n, "map");
            return mapping(n, depth);
        case YAML::NodeType::Undefined:
            break;
        }
        fail(n, "undefined YAML node");
    }

private:
    [[noreturn]] void fail(const YAML::Node& n, std::string_view cause) const
    {
        fail_at(origin_, position_of(n.Mark()), cause);
    }

    void check_collection_tag(const YAML::Node& n, std::string_view kind) const
    {
        const std::string& tag = n.Tag();
        if (tag.empty() || tag == "?" || tag == "!" || tag == std::string(core_tag) + std::string(kind))
            return;
        fail(n, "unsupported YAML tag " + tag);
    }

    std::string checked_text(const YAML::Node& n) const
    {
        const std::string& s = n.Scalar();
        if (!valid_utf8(s))
            fail(n, "text that is not UTF-8");
        return s;
    }

    json::value mapping(const YAML::Node& n, std::size_t depth)
    {
        json::object out;
        std::vector<YAML::Node> merges;
        for (const auto& kv : n) {
            const YAML::Node& key = kv.first;
            if (!key.IsScalar())
                fail(key, "a mapping key that is not a plain text (JSON keys are strings)");
            std::string name = checked_text(key);
            if (name == "<<" && key.Tag() == "?") { // a merge key: applied after the explicit keys
                merges.push_back(kv.second);
                continue;
            }
            if (out.contains(name))
                fail(key, "duplicate key '" + name + "'");
            out[name] = convert(kv.second, depth + 1);
        }
        // Merge keys: explicit keys win, then earlier mappings over later ones.
        auto merge_from = [&](const YAML::Node& source) {
            if (!source.IsMap())
                fail(source, "a merge key (<<) takes a mapping or a list of mappings");
            json::value merged = convert(source, depth + 1);
            for (auto& [k, v] : merged.as_object())
                if (!out.contains(k))
                    out[k] = std::move(v);
        };
        for (const auto& m : merges) {
            if (m.IsSequence()) {
                for (const auto& item : m)
                    merge_from(item);
            } else {
                merge_from(m);
            }
        }
        return out;
    }

    json::value scalar(const YAML::Node& n)
    {
        const std::string text = checked_text(n);
        const std::string& tag = n.Tag();
        if (tag == "!") // quoted, block or `!`-tagged: always text
            return json::string(text);
        if (tag == "?")
            return typed(n, text, kind_of_plain(text));
        if (tag.starts_with(core_tag)) {
            const std::string_view type = std::string_view(tag).substr(core_tag.size());
            if (type == "str")
                return json::string(text);
            if (type == "null" && is_null_text(text))
                return nullptr;
            if (type == "bool" && (is_true_text(text) || is_false_text(text)))
                return is_true_text(text);
            if (type == "int" && is_integer_text(text))
                return typed(n, text, scalar_kind::integer);
            if (type == "float") {
                if (is_integer_text(text) && !text.starts_with("0o") && !text.starts_with("0x"))
                    return json::value(typed(n, text, scalar_kind::integer).to_number<double>());
                if (is_float_text(text) || is_inf_or_nan_text(text))
                    return typed(n, text, kind_of_plain(text));
            }
            if (type == "null" || type == "bool" || type == "int" || type == "float")
                fail(n, "'" + text + "' is not a valid !!" + std::string(type));
        }
        fail(n, "unsupported YAML tag " + tag);
    }

    json::value typed(const YAML::Node& n, const std::string& text, scalar_kind kind) const
    {
        switch (kind) {
        case scalar_kind::null:
            return nullptr;
        case scalar_kind::boolean:
            return is_true_text(text);
        case scalar_kind::integer:
            return integer(n, text);
        case scalar_kind::floating: {
            std::string_view s = text;
            if (s.front() == '+')
                s.remove_prefix(1);
            double d = 0;
            auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
            if (ec != std::errc() || end != s.data() + s.size())
                fail(n, "the number " + text + " is out of range");
            return d;
        }
        case scalar_kind::infinite_or_nan:
            fail(n, text + " cannot be represented in JSON");
        case scalar_kind::string:
            break;
        }
        return json::string(text);
    }

    json::value integer(const YAML::Node& n, const std::string& text) const
    {
        std::string_view s = text;
        int base = 10;
        bool negative = false;
        if (s.starts_with("0o") || s.starts_with("0x")) {
            base = s[1] == 'o' ? 8 : 16;
            s.remove_prefix(2);
        } else if (s.front() == '-' || s.front() == '+') {
            negative = s.front() == '-';
            s.remove_prefix(1);
        }
        std::uint64_t magnitude = 0;
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), magnitude, base);
        if (ec != std::errc() || end != s.data() + s.size())
            fail(n, "the integer " + text + " is out of range");
        constexpr auto max_signed = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        if (!negative)
            return magnitude <= max_signed ? json::value(static_cast<std::int64_t>(magnitude)) : json::value(magnitude);
        if (magnitude <= max_signed)
            return -static_cast<std::int64_t>(magnitude);
        if (magnitude == max_signed + 1)
            return std::numeric_limits<std::int64_t>::min();
        fail(n, "the integer " + text + " is out of range");
    }

    std::string_view origin_;
    const config_limits& limits_;
    std::size_t nodes_ = 0;
};

bool ends_with_ci(std::string_view s, std::string_view suffix)
{
    if (s.size() < suffix.size())
        return false;
    return std::equal(suffix.begin(), suffix.end(), s.end() - static_cast<std::ptrdiff_t>(suffix.size()),
                      [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
}

std::string read_bounded(const std::filesystem::path& path, std::size_t max_bytes)
{
    const std::string name = path.string();
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(name.c_str(), "rb"), &std::fclose);
    if (!f)
        fail_at(name, std::nullopt, std::string("cannot open: ") + std::strerror(errno));
    struct ::stat st {};
    if (::fstat(::fileno(f.get()), &st) == 0 && S_ISDIR(st.st_mode))
        fail_at(name, std::nullopt, "cannot read: it is a directory");
    std::string text;
    char buffer[64 * 1024];
    for (;;) {
        const std::size_t n = std::fread(buffer, 1, sizeof buffer, f.get());
        text.append(buffer, n);
        if (text.size() > max_bytes)
            fail_at(name, std::nullopt, "larger than " + std::to_string(max_bytes) + " bytes");
        if (n < sizeof buffer) {
            if (std::ferror(f.get()))
                fail_at(name, std::nullopt, std::string("cannot read: ") + std::strerror(errno));
            break;
        }
    }
    return text;
}

} // namespace

json::value parse_yaml(std::string_view text, std::string_view origin, const config_limits& limits)
{
    if (text.size() > limits.max_file_bytes)
        fail_at(origin, std::nullopt, "larger than " + std::to_string(limits.max_file_bytes) + " bytes");
    std::vector<YAML::Node> documents;
    try {
        documents = YAML::LoadAll(std::string(text));
    } catch (const YAML::Exception& e) {
        fail_at(origin, position_of(e.mark), "YAML: " + e.msg);
    }
    if (documents.empty() || (documents.size() == 1 && documents.front().IsNull() && documents.front().Tag().empty()))
        fail_at(origin, std::nullopt, "the document is empty");
    if (documents.size() > 1)
        fail_at(origin, position_of(documents[1].Mark()), "more than one YAML document (one lens configuration per file)");
    try {
        converter c(origin, limits);
        return c.convert(documents.front(), 0);
    } catch (const YAML::Exception& e) {
        fail_at(origin, position_of(e.mark), "YAML: " + e.msg);
    }
}

json::value parse_json(std::string_view text, std::string_view origin, const config_limits& limits)
{
    if (text.size() > limits.max_file_bytes)
        fail_at(origin, std::nullopt, "larger than " + std::to_string(limits.max_file_bytes) + " bytes");
    const std::size_t skipped = text.starts_with(utf8_bom) ? utf8_bom.size() : 0;
    const std::string_view body = text.substr(skipped);
    json::parse_options opts;
    opts.max_depth = limits.max_depth;
    json::stream_parser p({}, opts);
    boost::system::error_code ec;
    const std::size_t used = p.write_some(body.data(), body.size(), ec);
    if (!ec && used < body.size())
        ec = json::error::extra_data;
    if (!ec)
        p.finish(ec);
    if (ec)
        fail_at(origin, position_in(text, skipped + used), "JSON: " + ec.message());
    return p.release();
}

json::value load_config_file(const std::filesystem::path& path, const config_limits& limits)
{
    const std::string text = read_bounded(path, limits.max_file_bytes);
    const std::string name = path.string();
    const std::string file_name = path.filename().string();
    if (ends_with_ci(file_name, ".json"))
        return parse_json(text, name, limits);
    if (ends_with_ci(file_name, ".yaml") || ends_with_ci(file_name, ".yml"))
        return parse_yaml(text, name, limits);
    std::string_view start(text);
    if (start.starts_with(utf8_bom))
        start.remove_prefix(utf8_bom.size());
    const auto first = start.find_first_not_of(" \t\r\n");
    if (first != std::string_view::npos && start[first] == '{')
        return parse_json(text, name, limits);
    return parse_yaml(text, name, limits);
}

lens_definition lens_definition_of(const json::value& doc, std::string_view origin)
{
    const auto fail = [&](std::string_view cause) { fail_at(origin, std::nullopt, cause); };
    const json::object* o = doc.if_object();
    if (!o)
        fail_at(origin, std::nullopt, "a lens configuration is a mapping with lens_name and lens_config");
    auto name_in = [&](const json::object& holder) -> std::string {
        const json::value* name = holder.if_contains("lens_name");
        if (!name || name->is_null())
            return {};
        if (!name->is_string())
            fail("lens_name must be a string");
        return std::string(name->get_string());
    };
    lens_definition out;
    if (const json::value* config = o->if_contains("lens_config")) {
        if (!config->is_object())
            fail("lens_config must be a mapping (model_parameters, model_pipeline, input_streams, output_streams)");
        const json::object& c = config->get_object();
        // The register body's double nesting: {lens_config: {lens_name, lens_config: {...}}}.
        if (const json::value* inner = c.if_contains("lens_config"); inner && inner->is_object()) {
            out.lens_name = name_in(c);
            if (out.lens_name.empty())
                out.lens_name = name_in(*o);
            out.lens_config = inner->get_object();
            return out;
        }
        out.lens_name = name_in(*o);
        out.lens_config = c;
        return out;
    }
    static constexpr std::string_view parts[] = {"model_parameters", "model_pipeline", "input_streams",
                                                 "output_streams"};
    if (std::any_of(std::begin(parts), std::end(parts), [&](std::string_view k) { return o->contains(k); })) {
        out.lens_name = name_in(*o);
        out.lens_config = *o;
        out.lens_config.erase("lens_name");
        return out;
    }
    fail_at(origin, std::nullopt,
            "no lens_config (expected lens_name and lens_config, as the SDK's lens configurations have)");
}

} // namespace lens::cli
