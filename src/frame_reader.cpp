#include "detail/frame_reader.hpp"

#include <boost/beast/websocket/error.hpp>

namespace lens::detail {

namespace {

using boost::beast::websocket::error;

enum opcode : std::uint8_t { cont = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 };

bool is_control(std::uint8_t op) noexcept { return op >= 8; }

/// RFC 6455 §7.4: codes a peer may send (1004-1006 and 1015 are reserved for reports,
/// 1012-2999 unassigned or for extensions, 3000-4999 for libraries and applications).
bool valid_close_code(std::uint16_t code) noexcept
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) || (code >= 3000 && code <= 4999);
}

std::uint64_t big_endian(const unsigned char* p, int bytes) noexcept
{
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i)
        v = (v << 8) | p[i];
    return v;
}

} // namespace

void frame_reader::reset() noexcept
{
    fragments_.clear();
    fragments_.shrink_to_fit();
    in_message_ = false;
    message_text_ = false;
    assembled_ = false;
    utf8_.reset();
    failed_ = {};
}

frame_reader::result frame_reader::fail(boost::system::error_code ec)
{
    failed_ = ec;
    fragments_.clear();
    fragments_.shrink_to_fit();
    result r;
    r.what = kind::failed;
    r.error = ec;
    return r;
}

bool frame_reader::parse_header(std::string_view in, header& h, boost::system::error_code& ec) const noexcept
{
    if (in.size() < 2)
        return false;
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    h.fin = (p[0] & 0x80) != 0;
    h.opcode = p[0] & 0x0f;
    const bool masked = (p[1] & 0x80) != 0;
    const std::uint8_t len7 = p[1] & 0x7f;
    if (p[0] & 0x70) { // RSV1-3: no extension was negotiated
        ec = error::bad_reserved_bits;
        return false;
    }
    if (h.opcode != cont && h.opcode != text && h.opcode != binary && h.opcode != close && h.opcode != ping &&
        h.opcode != pong) {
        ec = error::bad_opcode;
        return false;
    }
    if (masked) { // a server never masks (RFC 6455 §5.1)
        ec = error::bad_masked_frame;
        return false;
    }
    if (is_control(h.opcode)) {
        if (!h.fin) {
            ec = error::bad_control_fragment;
            return false;
        }
        if (len7 > 125) {
            ec = error::bad_control_size;
            return false;
        }
    }
    if (len7 < 126) {
        h.size = 2;
        h.length = len7;
    } else if (len7 == 126) {
        if (in.size() < 4)
            return false;
        h.size = 4;
        h.length = big_endian(p + 2, 2);
        if (h.length < 126) { // not the shortest form
            ec = error::bad_size;
            return false;
        }
    } else {
        if (in.size() < 10)
            return false;
        h.size = 10;
        h.length = big_endian(p + 2, 8);
        if (h.length < 65536 || (h.length >> 63) != 0) {
            ec = error::bad_size;
            return false;
        }
    }
    return true;
}

std::size_t frame_reader::missing(std::string_view in) const noexcept
{
    header h;
    boost::system::error_code ec;
    if (!parse_header(in, h, ec))
        return ec ? 1 : (in.size() < 2 ? 2 - in.size() : 8); // up to the longest header
    const std::uint64_t whole = h.size + h.length;
    return whole > in.size() ? static_cast<std::size_t>(whole - in.size()) : 1;
}

frame_reader::result frame_reader::next(std::string_view in)
{
    if (failed_)
        return fail(failed_);
    if (assembled_) {
        assembled_ = false;
        fragments_.clear();
        if (fragments_.capacity() > 64 * 1024)
            fragments_.shrink_to_fit(); // one big message does not stay with the session
    }
    header h;
    boost::system::error_code ec;
    if (!parse_header(in, h, ec)) {
        if (ec)
            return fail(ec);
        return {};
    }
    // Sequence rules and the size bound, decided on the header alone.
    if (h.opcode == cont && !in_message_)
        return fail(error::bad_continuation);
    if ((h.opcode == text || h.opcode == binary) && in_message_)
        return fail(error::bad_data_frame);
    if (!is_control(h.opcode)) {
        const std::uint64_t so_far = h.opcode == cont ? fragments_.size() : 0;
        if (h.length > max_message_ || so_far + h.length > max_message_)
            return fail(error::message_too_big);
    }
    if (in.size() - h.size < h.length)
        return {}; // the payload is not all here yet

    const std::string_view payload = in.substr(h.size, static_cast<std::size_t>(h.length));
    result r;
    r.consumed = h.size + payload.size();
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(payload.data());
    switch (h.opcode) {
    case ping:
        r.what = kind::ping;
        r.payload = payload;
        return r;
    case pong:
        r.what = kind::pong;
        r.payload = payload;
        return r;
    case close: {
        r.what = kind::close;
        r.close_code = no_status;
        if (payload.size() == 1)
            return fail(error::bad_close_size);
        if (payload.size() >= 2) {
            r.close_code = static_cast<std::uint16_t>(big_endian(bytes, 2));
            if (!valid_close_code(r.close_code))
                return fail(error::bad_close_code);
            r.payload = payload.substr(2);
            boost::beast::websocket::detail::utf8_checker reason;
            if (!reason.write(bytes + 2, payload.size() - 2) || !reason.finish())
                return fail(error::bad_close_payload);
        }
        return r;
    }
    default:
        break;
    }

    // A data frame: a whole message, or a fragment of one.
    if (h.opcode != cont) {
        message_text_ = h.opcode == text;
        utf8_.reset();
    }
    if (message_text_ && !utf8_.write(bytes, payload.size()))
        return fail(error::bad_frame_payload);
    if (!h.fin) {
        in_message_ = true;
        fragments_.append(payload);
        r.what = kind::fragment;
        return r;
    }
    if (message_text_ && !utf8_.finish())
        return fail(error::bad_frame_payload);
    r.what = kind::message;
    r.text = message_text_;
    if (in_message_) {
        fragments_.append(payload);
        r.payload = fragments_; // valid until the next call, which clears it
        in_message_ = false;
        assembled_ = true;
    } else {
        r.payload = payload;
    }
    return r;
}

} // namespace lens::detail
