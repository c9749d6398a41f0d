// The WHATWG event-stream parser (see include/lens/sse/parser.hpp).
//
// Two layers, one pass:
//   bytes ─run()→ valid UTF-8 text and line ends ─text()/line_end()→ fields and events
// run() strips the leading BOM, decodes UTF-8 incrementally (the WHATWG decoder,
// replacement mode) and splits lines; text() routes decoded text by the state of
// the current line straight into its destination (the data buffer, a value, or
// nowhere). No byte is examined twice and nothing is rescanned when a line
// spans many feeds.
#include <lens/sse/parser.hpp>

#include <lens/error.hpp>

#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace lens::sse {

namespace {

constexpr char replacement[] = "\xEF\xBF\xBD"; // U+FFFD in UTF-8
constexpr unsigned char bom[3] = {0xEF, 0xBB, 0xBF};

// Large buffers are released after use so that an idle stream does not keep
// the memory of the largest event it ever saw.
constexpr std::size_t keep_capacity = std::size_t(1) << 20;

void release_if_large(std::string& s) noexcept
{
    if (s.capacity() > keep_capacity)
        std::string().swap(s);
    else
        s.clear();
}

// The longest prefix of [p, end) that is complete, valid UTF-8 without CR or
// LF. Eight ASCII bytes at a time where possible.
const unsigned char* scan_text(const unsigned char* p, const unsigned char* end) noexcept
{
    constexpr std::uint64_t ones = 0x0101010101010101ull;
    constexpr std::uint64_t highs = 0x8080808080808080ull;
    for (;;) {
#if defined(__SSE2__)
        // Sixteen at a time: a byte stops the run if its high bit is set or it is CR or LF.
        const __m128i lf16 = _mm_set1_epi8('\n'), cr16 = _mm_set1_epi8('\r');
        while (end - p >= 16) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            const __m128i stop = _mm_or_si128(v, _mm_or_si128(_mm_cmpeq_epi8(v, lf16), _mm_cmpeq_epi8(v, cr16)));
            const int mask = _mm_movemask_epi8(stop);
            if (mask != 0) {
                p += __builtin_ctz(static_cast<unsigned>(mask));
                break;
            }
            p += 16;
        }
#endif
        while (end - p >= 8) {
            std::uint64_t v;
            std::memcpy(&v, p, 8);
            const std::uint64_t lf = v ^ (ones * '\n');
            const std::uint64_t cr = v ^ (ones * '\r');
            // High bit of a byte set: non-ASCII, or (borrow trick) a zero byte in lf / cr.
            if ((v | ((lf - ones) & ~lf) | ((cr - ones) & ~cr)) & highs)
                break;
            p += 8;
        }
        if (p == end)
            return p;
        const unsigned char b = *p;
        if (b < 0x80) {
            if (b == '\n' || b == '\r')
                return p;
            ++p;
            continue;
        }
        auto cont = [](unsigned char c) { return (c & 0xC0) == 0x80; };
        if (b >= 0xC2 && b <= 0xDF) {
            if (end - p < 2 || !cont(p[1]))
                return p;
            p += 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            const unsigned char lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
            if (end - p < 3 || p[1] < lo || p[1] > hi || !cont(p[2]))
                return p;
            p += 3;
        } else if (b >= 0xF0 && b <= 0xF4) {
            const unsigned char lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
            if (end - p < 4 || p[1] < lo || p[1] > hi || !cont(p[2]) || !cont(p[3]))
                return p;
            p += 4;
        } else {
            return p; // not a lead byte
        }
    }
}

} // namespace

parser::parser(limits lim) : limits_(lim) {}

void parser::throw_limit(boost::system::error_code ec) const
{
    throw lens::error(ec, "sse parse", failed_what_);
}

bool parser::fail(const char* what) noexcept
{
    failed_ = make_error_code(errc::limit_exceeded);
    failed_what_ = what;
    return false;
}

boost::system::error_code parser::feed_impl(std::string_view bytes, detail::event_sink sink)
{
    if (failed_)
        return failed_;
    auto p = reinterpret_cast<const unsigned char*>(bytes.data());
    const auto end = p + bytes.size();

    // One leading BOM, which may arrive a byte at a time.
    if (!bom_done_) {
        while (p != end && bom_matched_ < 3 && *p == bom[bom_matched_]) {
            ++bom_matched_;
            ++p;
        }
        if (bom_matched_ == 3) {
            bom_done_ = true;
            examined_ += 3;
        } else if (p == end) {
            return {}; // still undecided
        } else {
            // Not a BOM: what matched is ordinary input, decoded before the rest.
            bom_done_ = true;
            if (bom_matched_ != 0 && !run(bom, bom + bom_matched_, sink))
                return failed_;
        }
    }
    run(p, end, sink);
    return failed_;
}

bool parser::run(const unsigned char* p, const unsigned char* end, detail::event_sink& sink)
{
    while (p != end) {
        if (skip_lf_) {
            skip_lf_ = false;
            if (*p == '\n') {
                ++p;
                ++examined_;
                continue;
            }
        }
        if (utf8_needed_ != 0) {
            // Inside a multi-byte sequence begun earlier (possibly in an earlier feed).
            const unsigned char b = *p;
            if (b < utf8_lower_ || b > utf8_upper_) {
                // Invalid: one U+FFFD for the bytes so far; `b` is looked at again.
                utf8_needed_ = utf8_seen_ = 0;
                utf8_lower_ = 0x80;
                utf8_upper_ = 0xBF;
                if (!text(replacement, 3))
                    return false;
                continue;
            }
            ++p;
            ++examined_;
            utf8_lower_ = 0x80;
            utf8_upper_ = 0xBF;
            utf8_bytes_[++utf8_seen_] = b;
            if (utf8_seen_ == utf8_needed_) {
                const std::size_t n = utf8_needed_ + 1u;
                utf8_needed_ = utf8_seen_ = 0;
                if (!text(reinterpret_cast<const char*>(utf8_bytes_), n))
                    return false;
            }
            continue;
        }

        const unsigned char* q = scan_text(p, end);
        if (q != p) {
            examined_ += static_cast<std::uint64_t>(q - p);
            if (!text(reinterpret_cast<const char*>(p), static_cast<std::size_t>(q - p)))
                return false;
            p = q;
            if (p == end)
                break;
        }

        // A line end, an invalid byte, or a sequence that is incomplete or bad.
        const unsigned char b = *p++;
        ++examined_;
        if (b == '\n') {
            if (!line_end(sink))
                return false;
        } else if (b == '\r') {
            skip_lf_ = true;
            if (!line_end(sink))
                return false;
        } else if (b >= 0xC2 && b <= 0xDF) {
            utf8_needed_ = 1;
            utf8_bytes_[0] = b;
        } else if (b >= 0xE0 && b <= 0xEF) {
            utf8_needed_ = 2;
            utf8_bytes_[0] = b;
            if (b == 0xE0)
                utf8_lower_ = 0xA0;
            if (b == 0xED)
                utf8_upper_ = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            utf8_needed_ = 3;
            utf8_bytes_[0] = b;
            if (b == 0xF0)
                utf8_lower_ = 0x90;
            if (b == 0xF4)
                utf8_upper_ = 0x8F;
        } else if (!text(replacement, 3)) {
            return false;
        }
    }
    return true;
}

bool parser::text(const char* s, std::size_t n)
{
    line_length_ += n;
    if (line_length_ > limits_.max_line)
        return fail("a line is longer than the parser's max_line limit");
    while (n != 0) {
        switch (state_) {
        case line_state::start:
            if (*s == ':') {
                state_ = line_state::comment;
                return true;
            }
            state_ = line_state::name;
            [[fallthrough]];
        case line_state::name: {
            const void* colon = std::memchr(s, ':', n);
            if (colon == nullptr) {
                name_.append(s, n);
                return true;
            }
            const auto k = static_cast<std::size_t>(static_cast<const char*>(colon) - s);
            // The usual case, a whole name in one piece, is not copied.
            std::string_view name(s, k);
            if (!name_.empty()) {
                name_.append(s, k);
                name = name_;
            }
            s += k + 1;
            n -= k + 1;
            if (name == "data") {
                state_ = line_state::data_first;
            } else {
                field_ = name == "event" ? field::event
                       : name == "id"    ? field::id
                       : name == "retry" ? field::retry
                                         : field::none;
                state_ = field_ == field::none ? line_state::ignore : line_state::value_first;
            }
            break;
        }
        case line_state::comment:
        case line_state::ignore:
            return true;
        case line_state::data_first:
            if (*s == ' ') {
                ++s;
                --n;
            }
            state_ = line_state::data;
            break;
        case line_state::data:
            // + 1: the LF this line will add
            if (current_.data.size() + n + 1 > limits_.max_event)
                return fail("an event's data is larger than the parser's max_event limit");
            current_.data.append(s, n);
            return true;
        case line_state::value_first:
            if (*s == ' ') {
                ++s;
                --n;
            }
            state_ = line_state::value;
            break;
        case line_state::value:
            value_.append(s, n);
            return true;
        }
    }
    return true;
}

bool parser::line_end(detail::event_sink& sink)
{
    // Pending bytes of an unfinished UTF-8 sequence cannot be pending here: the
    // decoder turned them into U+FFFD before the CR or LF was taken.
    const line_state st = state_;
    const field f = field_;
    state_ = line_state::start;
    field_ = field::none;
    line_length_ = 0;

    bool data_line = false;
    switch (st) {
    case line_state::start:
        dispatch(sink);
        return true;
    case line_state::comment:
    case line_state::ignore:
        break;
    case line_state::name:
        // A field name without a colon: the value is empty.
        if (name_ == "data")
            data_line = true;
        else if (name_ == "event")
            set_field(field::event, {});
        else if (name_ == "id")
            set_field(field::id, {});
        else if (name_ == "retry")
            set_field(field::retry, {});
        break;
    case line_state::data_first:
    case line_state::data:
        data_line = true;
        break;
    case line_state::value_first:
    case line_state::value:
        set_field(f, value_);
        break;
    }
    name_.clear();
    release_if_large(value_);
    if (data_line) {
        if (current_.data.size() + 1 > limits_.max_event)
            return fail("an event's data is larger than the parser's max_event limit");
        current_.data.push_back('\n');
    }
    return true;
}

void parser::set_field(field f, std::string_view value)
{
    switch (f) {
    case field::none:
        break;
    case field::event:
        type_.assign(value);
        break;
    case field::id:
        if (value.find('\0') == std::string_view::npos)
            id_buffer_.assign(value);
        break;
    case field::retry: {
        if (value.empty())
            break;
        using rep = std::chrono::milliseconds::rep;
        constexpr rep max = std::numeric_limits<rep>::max();
        rep v = 0;
        for (char c : value) {
            if (c < '0' || c > '9')
                return;
            const rep d = c - '0';
            v = v > (max - d) / 10 ? max : v * 10 + d;
        }
        retry_ = std::chrono::milliseconds(v);
        break;
    }
    }
}

void parser::dispatch(detail::event_sink& sink)
{
    last_event_id_ = id_buffer_;
    if (current_.data.empty()) {
        type_.clear();
        return;
    }
    if (current_.data.back() == '\n')
        current_.data.pop_back();
    if (type_.empty())
        current_.type.assign("message");
    else
        current_.type.assign(type_);
    current_.last_event_id.assign(last_event_id_);

    // Whatever the handler does (takes the strings, throws), the buffers are
    // empty and usable afterwards.
    struct cleanup {
        parser& self;
        ~cleanup()
        {
            release_if_large(self.current_.data);
            self.current_.type.clear();
            self.type_.clear();
        }
    } guard{*this};
    sink(std::move(current_));
}

bool parser::mid_event() const noexcept
{
    return state_ != line_state::start || line_length_ != 0 || !current_.data.empty() ||
           !type_.empty() || id_buffer_ != last_event_id_ || utf8_needed_ != 0 ||
           (!bom_done_ && bom_matched_ != 0);
}

void parser::clear_stream_state()
{
    release_if_large(current_.data);
    current_.type.clear();
    type_.clear();
    name_.clear();
    release_if_large(value_);
    line_length_ = 0;
    state_ = line_state::start;
    field_ = field::none;
    skip_lf_ = false;
    bom_matched_ = 0;
    bom_done_ = false;
    utf8_needed_ = utf8_seen_ = 0;
    utf8_lower_ = 0x80;
    utf8_upper_ = 0xBF;
    failed_.clear();
    failed_what_ = "";
    // Only a dispatched id survives the end of a stream.
    id_buffer_ = last_event_id_;
}

void parser::set_last_event_id(std::string_view id)
{
    last_event_id_.assign(id);
    id_buffer_.assign(id);
}

bool parser::finish()
{
    const bool discarded = mid_event();
    clear_stream_state();
    return discarded;
}

void parser::reset()
{
    clear_stream_state();
    last_event_id_.clear();
    id_buffer_.clear();
    retry_.reset();
    examined_ = 0;
}

} // namespace lens::sse
