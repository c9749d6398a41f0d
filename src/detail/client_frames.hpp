// lens/detail/client_frames.hpp — the frames a WebSocket client writes (RFC 6455 §5.2-5.3).
//
// The session encodes its frames itself, straight into the coalescing layer's buffer: a
// burst of queued requests becomes one buffer and one write without a composed operation
// (and a scheduler pass) per frame, which is what writing them one by one through Beast
// costs. Beast still writes the rare frame too large to copy (see session's write_next).
//
// Every frame a client sends is masked with a fresh key the server cannot predict
// (§10.3): the keys come from OpenSSL's generator, drawn in blocks per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lens::detail {

enum class ws_opcode : std::uint8_t { text = 1, binary = 2, close = 8, ping = 9, pong = 10 };

/// Bytes a masked frame of `payload_size` bytes takes on the wire.
constexpr std::size_t client_frame_size(std::size_t payload_size) noexcept
{
    return payload_size + 4 + (payload_size < 126 ? 2 : payload_size <= 0xffff ? 4 : 10);
}

/// Writes one final, masked frame of `payload` to `out`, which has room for
/// `client_frame_size(payload.size())` bytes.
void encode_client_frame(char* out, ws_opcode op, std::string_view payload) noexcept;

/// The close frame a client sends: `code` (none when it is 1005, "no status") and no reason.
std::string client_close_frame(std::uint16_t code);

} // namespace lens::detail
