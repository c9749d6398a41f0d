// See detail/tls_resumption.hpp.
#include "detail/tls_resumption.hpp"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>

namespace lens::detail {

namespace {

/// The latest session of each origin. The context may be shared by the clients of a
/// runtime's threads' sessions, so it is locked (a handshake is far dearer than the lock).
struct session_cache {
    std::mutex mutex;
    std::map<std::string, SSL_SESSION*, std::less<>> latest;
    std::atomic<std::size_t> handshakes{0};
    std::atomic<std::size_t> resumed{0};

    ~session_cache()
    {
        for (auto& [origin, session] : latest)
            SSL_SESSION_free(session);
    }
};

void free_cache(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<session_cache*>(ptr); }
void free_origin(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<std::string*>(ptr); }

int cache_index()
{
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_cache);
    return index;
}

int origin_index()
{
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_origin);
    return index;
}

/// OpenSSL hands over every new session (TLS 1.3: each ticket, after the handshake).
/// Returning 1 keeps its reference.
int on_new_session(SSL* ssl, SSL_SESSION* session)
{
    auto* origin = static_cast<std::string*>(SSL_get_ex_data(ssl, origin_index()));
    auto* cache = static_cast<session_cache*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), cache_index()));
    if (!origin || !cache || !SSL_SESSION_is_resumable(session))
        return 0;
    std::lock_guard lock(cache->mutex);
    SSL_SESSION*& slot = cache->latest[*origin];
    if (slot)
        SSL_SESSION_free(slot);
    slot = session;
    return 1;
}

} // namespace

void enable_tls_resumption(SSL_CTX* ctx)
{
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    // Sessions live only in our cache: OpenSSL's internal client store is never looked up.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_set_ex_data(ctx, cache_index(), new session_cache);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
}

void prepare_tls_resumption(SSL* ssl, const std::string& origin_key)
{
    auto* cache = static_cast<session_cache*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), cache_index()));
    if (!cache)
        return;
    SSL_set_ex_data(ssl, origin_index(), new std::string(origin_key));
    std::lock_guard lock(cache->mutex);
    if (auto it = cache->latest.find(origin_key); it != cache->latest.end())
        SSL_set_session(ssl, it->second); // takes its own reference
}

void count_tls_handshake(SSL* ssl)
{
    if (auto* cache = static_cast<session_cache*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), cache_index()))) {
        cache->handshakes.fetch_add(1, std::memory_order_relaxed);
        if (SSL_session_reused(ssl))
            cache->resumed.fetch_add(1, std::memory_order_relaxed);
    }
}

tls_handshake_counts tls_handshakes(SSL_CTX* ctx)
{
    auto* cache = static_cast<session_cache*>(SSL_CTX_get_ex_data(ctx, cache_index()));
    if (!cache)
        return {};
    return {cache->handshakes.load(std::memory_order_relaxed), cache->resumed.load(std::memory_order_relaxed)};
}

} // namespace lens::detail
