// A small multipart/form-data parser (RFC 7578 over RFC 2046), enough for the
// `files` uploads: parts with a Content-Disposition and an optional Content-Type.
#include "emulator/state.hpp"

#include <algorithm>
#include <cctype>

namespace lens::emulator::detail {
namespace {

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

/// Splits `value; a=b; c="d;e"` into its leading token and its parameters,
/// honouring quoted strings (a quoted filename may contain ';').
struct header_value {
    std::string token;
    std::vector<std::pair<std::string, std::string>> params;

    const std::string* param(std::string_view name) const
    {
        for (auto& [k, v] : params)
            if (iequals(k, name))
                return &v;
        return nullptr;
    }
};

header_value parse_header_value(std::string_view s)
{
    header_value out;
    auto semi = s.find(';');
    out.token = std::string(trim(s.substr(0, semi)));
    if (semi == std::string_view::npos)
        return out;
    s.remove_prefix(semi + 1);
    while (!s.empty()) {
        s = trim(s);
        auto eq = s.find('=');
        auto next_semi = s.find(';');
        if (eq == std::string_view::npos || (next_semi != std::string_view::npos && next_semi < eq)) {
            // A parameter without a value: skip it.
            if (next_semi == std::string_view::npos)
                break;
            s.remove_prefix(next_semi + 1);
            continue;
        }
        std::string name(trim(s.substr(0, eq)));
        s.remove_prefix(eq + 1);
        s = trim(s);
        std::string value;
        if (!s.empty() && s.front() == '"') {
            std::size_t i = 1;
            for (; i < s.size() && s[i] != '"'; ++i) {
                if (s[i] == '\\' && i + 1 < s.size())
                    ++i;
                value += s[i];
            }
            s.remove_prefix(std::min(i + 1, s.size()));
            auto after = s.find(';');
            s.remove_prefix(after == std::string_view::npos ? s.size() : after + 1);
        } else {
            auto end = s.find(';');
            value = std::string(trim(s.substr(0, end)));
            s.remove_prefix(end == std::string_view::npos ? s.size() : end + 1);
        }
        out.params.emplace_back(std::move(name), std::move(value));
    }
    return out;
}

} // namespace

std::optional<std::vector<form_part>> parse_multipart(std::string_view content_type_header, std::string_view body)
{
    header_value ct = parse_header_value(content_type_header);
    if (!iequals(ct.token, "multipart/form-data"))
        return std::nullopt;
    const std::string* boundary = ct.param("boundary");
    if (!boundary || boundary->empty() || boundary->size() > 70)
        return std::nullopt;

    const std::string delimiter = "--" + *boundary;
    const std::string inner_delimiter = "\r\n" + delimiter;

    // The first delimiter starts the body or follows a preamble's CRLF.
    std::size_t pos;
    if (body.starts_with(delimiter))
        pos = delimiter.size();
    else if (auto p = body.find(inner_delimiter); p != std::string_view::npos)
        pos = p + inner_delimiter.size();
    else
        return std::nullopt;

    std::vector<form_part> parts;
    for (;;) {
        if (body.substr(pos).starts_with("--"))
            return parts; // the close delimiter; an epilogue may follow
        // Transport padding, then the CRLF that ends the delimiter line.
        while (pos < body.size() && (body[pos] == ' ' || body[pos] == '\t'))
            ++pos;
        if (!body.substr(pos).starts_with("\r\n"))
            return std::nullopt;
        pos += 2;

        auto headers_end = body.find("\r\n\r\n", pos);
        std::string_view headers;
        std::size_t content_start;
        if (body.substr(pos).starts_with("\r\n")) { // a part without headers
            headers = {};
            content_start = pos + 2;
        } else if (headers_end != std::string_view::npos) {
            headers = body.substr(pos, headers_end - pos);
            content_start = headers_end + 4;
        } else {
            return std::nullopt;
        }

        auto content_end = body.find(inner_delimiter, content_start);
        if (content_end == std::string_view::npos)
            return std::nullopt;

        form_part part;
        part.body = std::string(body.substr(content_start, content_end - content_start));
        while (!headers.empty()) {
            auto eol = headers.find("\r\n");
            std::string_view line = headers.substr(0, eol);
            headers.remove_prefix(eol == std::string_view::npos ? headers.size() : eol + 2);
            auto colon = line.find(':');
            if (colon == std::string_view::npos)
                return std::nullopt;
            std::string_view name = trim(line.substr(0, colon));
            std::string_view value = trim(line.substr(colon + 1));
            if (iequals(name, "Content-Disposition")) {
                header_value cd = parse_header_value(value);
                if (auto* n = cd.param("name"))
                    part.name = *n;
                if (auto* f = cd.param("filename"))
                    part.file_name = *f;
            } else if (iequals(name, "Content-Type")) {
                part.content_type = std::string(value);
            }
        }
        parts.push_back(std::move(part));
        pos = content_end + inner_delimiter.size();
    }
}

} // namespace lens::emulator::detail
