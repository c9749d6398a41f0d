// What every connection of one client shares: the endpoint.
//
// One `endpoint` per `lens::client`, shared (by shared_ptr to const) with every REST
// call, session and event stream opened from it, so each rule below exists once:
// - the origin of the REST API (`config::endpoint`), parsed once;
// - one TLS client context, its trust store loaded once, created on first use;
// - the header builder: the API key, user agent and any other value that goes on the
//   wire is checked for CR, LF and other control characters before anything is sent;
// - secret redaction (detail/redactor.hpp) with the configured key;
// - the session endpoint rule: a control channel is opened only on the REST
//   endpoint's host, with wss when REST is https, or on a host the user listed in
//   `config::session_hosts`; anything else is errc::invalid_argument and the key
//   is never sent;
// - byte limits of replies;
// - the logging hook (`config::log`): every record goes out through `log()`, which
//   scrubs each of its texts of the key first.
#pragma once

#include "detail/origin.hpp"
#include "detail/redactor.hpp"

#include <lens/config.hpp>
#include <lens/logger.hpp>

#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/fields.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace lens::detail {

class endpoint {
public:
    /// Checks the configuration (URL, header values, CA file on first TLS use);
    /// throws lens::error (errc::invalid_argument) naming "client".
    explicit endpoint(config cfg);

    const config& settings() const noexcept { return cfg_; }
    const origin& rest() const noexcept { return rest_; }
    const redactor& secrets() const noexcept { return secrets_; }

    /// The TLS context every https/wss connection of this endpoint uses (created once:
    /// at construction for an https endpoint, else on first use; thread-safe).
    boost::asio::ssl::context& tls() const;
    /// `tls()` when `where` needs TLS, else null.
    boost::asio::ssl::context* tls_for(const origin& where) const { return where.tls ? &tls() : nullptr; }

    /// How a request carries the key.
    enum class auth { bearer_header, websocket_subprotocol };

    /// Sets Host, User-Agent and the key (`Authorization: Bearer <key>`, or for a
    /// WebSocket upgrade with `auth::websocket_subprotocol`,
    /// `Sec-WebSocket-Protocol: authenticationauthorization.bearer.<key>, event-protocol-v1`)
    /// for a request to `where`. The one header builder of every request lens sends.
    void set_common_headers(boost::beast::http::fields& f, const origin& where,
                            auth how = auth::bearer_header) const;

    /// Sets `name: value` after checking `value` (throws errc::invalid_argument naming
    /// `operation` for a control character).
    static void set_checked(boost::beast::http::fields& f, std::string_view name, std::string_view value,
                            std::string_view operation);
    /// Throws errc::invalid_argument naming `operation` and `what` when `value` holds a
    /// control character (CR, LF, NUL, DEL...), which would end or split the header.
    static void check_header_value(std::string_view what, std::string_view value, std::string_view operation);

    /// The origin of a session's control channel at `url`, checked against the session
    /// endpoint rule. Throws errc::invalid_argument naming `operation`.
    origin session_origin(std::string_view url, std::string_view operation) const;

    /// True when a record of `level` reaches the configured logger: the one comparison
    /// made before any record is built.
    bool logs(log_level level) const noexcept { return cfg_.log.enabled(level); }
    /// Hands `r` to the logger: every text of it (operation, target, event id, reason)
    /// scrubbed of the key, its `message` rendered from them (and scrubbed too).
    void log(const log_record& r) const;

private:
    config cfg_;
    origin rest_;
    redactor secrets_;
    mutable std::once_flag tls_once_;
    mutable std::shared_ptr<boost::asio::ssl::context> tls_;
};

} // namespace lens::detail
