// lens/detail/frame_reader.hpp — the frames a WebSocket server sends, parsed from bytes.
//
// Sans-I/O (RFC 6455 §5): the session reads whatever the socket has into one buffer and
// asks this reader for frame after frame until it needs more bytes. A burst of replies
// read at once is then handled in one go. Reading them through Beast costs a scheduler
// pass per frame (a message already buffered completes through a post), and with it an
// epoll_wait: one system call per reply on a busy session.
//
// Beast still performs the upgrade and writes the client's frames; this reader replaces
// only its reading side, with the same checks and the same error codes
// (`websocket::error`), so a broken server is reported as it was:
// - frames from the server are unmasked, with no reserved bits (no extension is
//   negotiated), known opcodes, lengths in their shortest form;
// - control frames are unfragmented and at most 125 bytes; a close frame carries
//   nothing, or a valid code and a UTF-8 reason;
// - a fragmented message is continued by continuation frames only (control frames may
//   come between its fragments), and a text message is UTF-8;
// - a message longer than `max_message` fails as soon as a header announces it, before
//   its payload is read: an oversized frame never costs its size in memory.
#pragma once

#include <boost/beast/websocket/detail/utf8_checker.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lens::detail {

class frame_reader {
public:
    enum class kind {
        need_more, ///< no complete frame yet: read more, then call `next` again
        fragment,  ///< a fragment of a message was collected: call `next` again
        message,   ///< a whole data message (`payload`, `text`)
        ping,      ///< `payload`: to be echoed in a pong
        pong,
        close,     ///< `close_code` (1005 if none was sent) and `payload` (the reason)
        failed,    ///< `error`: the connection must end
    };

    struct result {
        kind what = kind::need_more;
        std::string_view payload; ///< valid until the next call (into the input, or the reader's own buffer)
        bool text = false;
        std::uint16_t close_code = 0;
        std::size_t consumed = 0; ///< bytes of the input this call used up: the caller discards them
        boost::system::error_code error;
    };

    /// 1005: "no status code was present" (RFC 6455 §7.4.1), never sent on the wire.
    static constexpr std::uint16_t no_status = 1005;

    explicit frame_reader(std::size_t max_message) noexcept : max_message_(max_message) {}

    /// The next frame found at the start of `in` (the bytes not yet consumed). A frame is
    /// returned only once complete; fragments of a message are collected and returned as
    /// one message. After `failed`, the reader stays failed.
    result next(std::string_view in);

    /// Bytes still missing before the frame at the start of `in` is complete (at least 1
    /// when `next` said need_more): how much the next read should at least make room for.
    std::size_t missing(std::string_view in) const noexcept;

    /// Starts over for a new connection.
    void reset() noexcept;

    /// Bytes held for a fragmented message in progress (bounded by max_message).
    std::size_t buffered() const noexcept { return fragments_.size(); }

private:
    struct header {
        std::size_t size = 0; ///< header bytes (2 to 10)
        std::uint64_t length = 0;
        std::uint8_t opcode = 0;
        bool fin = false;
    };
    /// Parses a header at the start of `in`: false if incomplete, or sets `ec`.
    bool parse_header(std::string_view in, header& h, boost::system::error_code& ec) const noexcept;
    result fail(boost::system::error_code ec);

    std::size_t max_message_;
    std::string fragments_;   ///< the fragmented message so far
    bool in_message_ = false; ///< a data frame without FIN was seen: continuations expected
    bool message_text_ = false;
    bool assembled_ = false;  ///< fragments_ was last returned as a message: cleared on the next call
    boost::beast::websocket::detail::utf8_checker utf8_;
    boost::system::error_code failed_;
};

} // namespace lens::detail
