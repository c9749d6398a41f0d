// Client-side TLS session resumption and idle buffer release for one TLS context.
//
// Every connection a client makes (REST, WebSocket, SSE) goes to the same few hosts, so
// after the first full handshake the others can resume: the server's session ticket is
// kept per origin (host:port) in a cache owned by the SSL_CTX, and handed to the next
// handshake with that origin. A resumed handshake skips the certificate chain and its
// verification (the session was verified when it was made, for that host name), which
// is most of a TLS connect's CPU on both sides.
//
// The context also gets SSL_MODE_RELEASE_BUFFERS: an idle connection gives its TLS read
// and write buffers (about 34 KiB) back until it next reads or writes, which is what
// lets thousands of idle wss sessions fit in a few tens of KiB each.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <string>

namespace lens::detail {

/// Installs the session cache and the buffer mode on `ctx` (a client context). Once.
void enable_tls_resumption(SSL_CTX* ctx);

/// Before the handshake of `ssl` with `origin_key`: offers the cached session of that
/// origin, if any, and tags `ssl` so that the tickets it receives are cached under it.
void prepare_tls_resumption(SSL* ssl, const std::string& origin_key);

/// After a successful handshake of `ssl`: counts it, and whether it resumed.
void count_tls_handshake(SSL* ssl);

/// Handshakes completed with a context, and how many of them resumed a session.
struct tls_handshake_counts {
    std::size_t handshakes = 0;
    std::size_t resumed = 0;
};
/// The counts of `ctx` (zero when resumption was never enabled on it).
tls_handshake_counts tls_handshakes(SSL_CTX* ctx);

} // namespace lens::detail
