#include "detail/client_frames.hpp"

#include <openssl/rand.h>

#include <array>
#include <cstring>

namespace lens::detail {

namespace {

/// Masking keys: OpenSSL's generator, a block of keys at a time (one call per 512 frames).
std::array<unsigned char, 4> next_mask() noexcept
{
    thread_local std::array<unsigned char, 2048> pool;
    thread_local std::size_t used = pool.size();
    if (used == pool.size()) {
        if (RAND_bytes(pool.data(), static_cast<int>(pool.size())) != 1) {
            // The generator failed (it does not, once seeded): keys from the clock and
            // an address are weaker against cache poisoning, never a crash.
            std::uint64_t seed = reinterpret_cast<std::uintptr_t>(&used) ^ static_cast<std::uint64_t>(used * 0x9e3779b97f4a7c15ull);
            for (auto& b : pool) {
                seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
                b = static_cast<unsigned char>(seed);
            }
        }
        used = 0;
    }
    std::array<unsigned char, 4> key;
    std::memcpy(key.data(), pool.data() + used, 4);
    used += 4;
    return key;
}

} // namespace

void encode_client_frame(char* out, ws_opcode op, std::string_view payload) noexcept
{
    auto* p = reinterpret_cast<unsigned char*>(out);
    const std::size_t n = payload.size();
    *p++ = static_cast<unsigned char>(0x80 | static_cast<unsigned char>(op)); // FIN
    if (n < 126) {
        *p++ = static_cast<unsigned char>(0x80 | n);
    } else if (n <= 0xffff) {
        *p++ = 0x80 | 126;
        *p++ = static_cast<unsigned char>(n >> 8);
        *p++ = static_cast<unsigned char>(n);
    } else {
        *p++ = 0x80 | 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            *p++ = static_cast<unsigned char>(static_cast<std::uint64_t>(n) >> shift);
    }
    const auto key = next_mask();
    std::memcpy(p, key.data(), 4);
    p += 4;
    const auto* in = reinterpret_cast<const unsigned char*>(payload.data());
    // Eight bytes at a time with the key repeated, then the tail.
    std::uint64_t wide;
    unsigned char key8[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
    std::memcpy(&wide, key8, 8);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, in + i, 8);
        w ^= wide;
        std::memcpy(p + i, &w, 8);
    }
    for (; i < n; ++i)
        p[i] = in[i] ^ key[i & 3];
}

std::string client_close_frame(std::uint16_t code)
{
    std::string payload;
    if (code != 1005) {
        payload.push_back(static_cast<char>(code >> 8));
        payload.push_back(static_cast<char>(code & 0xff));
    }
    std::string f(client_frame_size(payload.size()), '\0');
    encode_client_frame(f.data(), ws_opcode::close, payload);
    return f;
}

} // namespace lens::detail
