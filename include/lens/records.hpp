/// \file
/// lens/records.hpp — typed views of the records the Lens API returns (docs/protocol.md §2.2).
///
/// The server adds and drops fields between releases, so every record is a few
/// typed fields for convenience plus `raw`, the whole reply as received (minus
/// the secret `api_key`). Decoding is tolerant: a missing field leaves its
/// default, a number sent as a string is still read as a number, and unknown
/// fields stay in `raw`. Only a record that is not a JSON object is an error
/// (`lens::error` with `errc::invalid_response`).
///
///     auto rec = boost::json::value_to<lens::session_record>(reply);
///     if (rec.status == lens::session_status::running) ...
///     boost::json::value_from(rec);   // == rec.raw, never with an api_key
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lens {

/// The life cycle of a session, normalised from the server's several spellings.
enum class session_status { unknown, registered, running, failed, stale };

/// Reads every spelling the server uses for a session status:
/// `"LensSessionStatus.SESSION_STATUS_RUNNING"`, `"SESSION_STATUS_RUNNING"`, `"RUNNING"`
/// (any case, surrounding white space ignored), or a bare number. Only the numbers seen
/// from the server are mapped: `"3"` running and `"6"` failed; the upstream enum is not
/// public, so every other number (and every other text) is `unknown` rather than a guess.
session_status parse_session_status(std::string_view raw) noexcept;

/// "unknown", "registered", "running", "failed" or "stale".
std::string_view to_string(session_status s) noexcept;

/// Removes every member named `api_key` (compared without regard to case), in `v` and in
/// every object or array nested in it. The server echoes the caller's real key in session
/// records; lens never hands it out.
void scrub_secrets(boost::json::value& v);
/// \overload
void scrub_secrets(boost::json::object& o);

/// A session, as returned by sessions/create, sessions/metadata, sessions/destroy and
/// the WebSocket `session.status` event.
struct session_record {
    std::string session_id;                 ///< "lsn-..."
    std::string lens_id;                    ///< the lens the session runs, "lns-..."
    std::string lens_name;                  ///< the lens's display name
    std::string session_endpoint;           ///< the WebSocket URL of the session
    session_status status = session_status::unknown; ///< `session_status`, normalised
    std::string status_raw;                 ///< `session_status` as sent (numbers as their text)
    std::optional<double> session_ttl_sec;  ///< how long the server keeps the session, in seconds
    /// Seconds since the Unix epoch, as the server sends them (so are the other timestamps).
    std::optional<double> registration_timestamp;
    std::optional<double> session_start_timestamp;     ///< when the session started running
    std::optional<double> last_event_timestamp;        ///< the latest event the session handled
    std::optional<double> session_destroyed_timestamp; ///< null until the session is destroyed
    std::uint64_t num_active_connections = 0;  ///< connections to the session now
    std::uint64_t num_updates = 0;          ///< the server's counters, as sent
    std::uint64_t num_inputs = 0;           ///< see `num_updates`
    std::uint64_t num_outputs = 0;          ///< see `num_updates`
    std::uint64_t num_events = 0;           ///< see `num_updates`
    boost::json::object raw;                ///< the full record, `api_key` removed
};

/// A lens, as returned by lens/metadata, lens/register, lens/clone and lens/modify.
struct lens_record {
    std::string lens_id;                    ///< "lns-..."
    std::string lens_name;                  ///< the display name
    boost::json::object raw;                ///< the full record (`lens_config` and the rest)
};

/// A file: an upload reply `{is_valid, file_id, file_uid}` or a files/metadata entry.
struct file_record {
    /// The name stream configurations take; falls back to `file_name` when `file_id` is absent.
    std::string file_id;
    std::string file_uid;                    ///< the server's unique id of the upload
    std::optional<std::uint64_t> file_size;  ///< bytes, when the server says
    boost::json::object raw;                 ///< the full record (`file_name` and the rest)
};

// Boost.JSON conversions, found by argument-dependent lookup.

/// `boost::json::value_to<session_record>(v)`: decodes tolerantly; throws `lens::error`
/// (errc::invalid_response) when `v` is not an object.
session_record tag_invoke(boost::json::value_to_tag<session_record>, const boost::json::value& v);
/// `boost::json::value_to<lens_record>(v)`, as for session_record.
lens_record tag_invoke(boost::json::value_to_tag<lens_record>, const boost::json::value& v);
/// `boost::json::value_to<file_record>(v)`, as for session_record.
file_record tag_invoke(boost::json::value_to_tag<file_record>, const boost::json::value& v);
/// `boost::json::value_from(record)`: emits `raw`, scrubbed again in case it was edited.
void tag_invoke(boost::json::value_from_tag, boost::json::value& v, const session_record& r);
/// `boost::json::value_from(record)`: emits `raw`, scrubbed again.
void tag_invoke(boost::json::value_from_tag, boost::json::value& v, const lens_record& r);
/// `boost::json::value_from(record)`: emits `raw`, scrubbed again.
void tag_invoke(boost::json::value_from_tag, boost::json::value& v, const file_record& r);

} // namespace lens
