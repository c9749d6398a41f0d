// A small multipart/form-data parser (RFC 7578 over RFC 2046), enough for the
// `files` uploads: parts with a Content-Disposition and an optional Content-Type.
#include "emulator/state.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>

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

/// The headers of one part (Content-Disposition's name and filename, Content-Type) into
/// `part`; false for a line that is not a header.
template <class Part>
bool parse_part_headers(std::string_view headers, Part& part)
{
    while (!headers.empty()) {
        auto eol = headers.find("\r\n");
        std::string_view line = headers.substr(0, eol);
        headers.remove_prefix(eol == std::string_view::npos ? headers.size() : eol + 2);
        auto colon = line.find(':');
        if (colon == std::string_view::npos)
            return false;
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
    return true;
}

/// The boundary of a multipart/form-data content type; nullopt when it is not one.
std::optional<std::string> boundary_of(std::string_view content_type_header)
{
    header_value ct = parse_header_value(content_type_header);
    if (!iequals(ct.token, "multipart/form-data"))
        return std::nullopt;
    const std::string* boundary = ct.param("boundary");
    if (!boundary || boundary->empty() || boundary->size() > 70)
        return std::nullopt;
    return *boundary;
}

/// A file read through a window: bytes at any offset, and searches, without loading it.
class file_window {
public:
    explicit file_window(const std::filesystem::path& path) : in_(path, std::ios::binary)
    {
        std::error_code ec;
        size_ = std::filesystem::file_size(path, ec);
        if (ec)
            in_.setstate(std::ios::failbit);
    }
    bool ok() const { return static_cast<bool>(in_); }
    std::uint64_t size() const { return size_; }

    /// Up to `n` bytes from `at`.
    std::string read(std::uint64_t at, std::size_t n)
    {
        std::string out;
        if (at >= size_)
            return out;
        out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(n, size_ - at)));
        in_.clear();
        in_.seekg(static_cast<std::streamoff>(at));
        in_.read(out.data(), static_cast<std::streamsize>(out.size()));
        out.resize(static_cast<std::size_t>(in_.gcount()));
        return out;
    }

    /// The offset of the first `needle` at or after `from`, scanning 1 MiB at a time.
    std::optional<std::uint64_t> find(std::string_view needle, std::uint64_t from)
    {
        constexpr std::size_t window = 1 << 20;
        for (std::uint64_t at = from; at < size_;) {
            const std::string chunk = read(at, window + needle.size() - 1);
            if (chunk.empty())
                return std::nullopt;
            if (auto p = chunk.find(needle); p != std::string::npos)
                return at + p;
            if (chunk.size() < needle.size())
                return std::nullopt;
            at += chunk.size() - (needle.size() - 1);
        }
        return std::nullopt;
    }

private:
    std::ifstream in_;
    std::uint64_t size_ = 0;
};

} // namespace

std::optional<std::vector<spooled_part>> parse_multipart_file(std::string_view content_type_header,
                                                              const std::filesystem::path& path)
{
    const auto boundary = boundary_of(content_type_header);
    if (!boundary)
        return std::nullopt;
    file_window file(path);
    if (!file.ok())
        return std::nullopt;
    const std::string delimiter = "--" + *boundary;
    const std::string inner_delimiter = "\r\n" + delimiter;
    constexpr std::size_t max_headers = 16 * 1024;

    std::uint64_t pos;
    if (file.read(0, delimiter.size()) == delimiter)
        pos = delimiter.size();
    else if (auto p = file.find(inner_delimiter, 0))
        pos = *p + inner_delimiter.size();
    else
        return std::nullopt;

    std::vector<spooled_part> parts;
    for (;;) {
        // The rest of the delimiter line and the part's headers, from one window.
        const std::string head = file.read(pos, max_headers);
        std::string_view h = head;
        if (h.starts_with("--"))
            return parts;
        std::size_t i = 0;
        while (i < h.size() && (h[i] == ' ' || h[i] == '\t'))
            ++i;
        if (!h.substr(i).starts_with("\r\n"))
            return std::nullopt;
        i += 2;
        std::string_view headers;
        std::size_t content_start;
        if (h.substr(i).starts_with("\r\n")) {
            content_start = i + 2;
        } else if (auto end = h.find("\r\n\r\n", i); end != std::string_view::npos) {
            headers = h.substr(i, end - i);
            content_start = end + 4;
        } else {
            return std::nullopt;
        }
        spooled_part part;
        if (!parse_part_headers(headers, part))
            return std::nullopt;
        part.offset = pos + content_start;
        const auto content_end = file.find(inner_delimiter, part.offset);
        if (!content_end)
            return std::nullopt;
        part.size = *content_end - part.offset;
        parts.push_back(std::move(part));
        pos = *content_end + inner_delimiter.size();
    }
}

std::optional<std::vector<form_part>> parse_multipart(std::string_view content_type_header, std::string_view body)
{
    const auto boundary = boundary_of(content_type_header);
    if (!boundary)
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
        if (!parse_part_headers(headers, part))
            return std::nullopt;
        parts.push_back(std::move(part));
        pos = content_end + inner_delimiter.size();
    }
}

} // namespace lens::emulator::detail
