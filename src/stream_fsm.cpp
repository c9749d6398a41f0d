// stream_fsm.cpp — the event stream's sans-I/O core (see detail/stream_fsm.hpp).
#include "detail/stream_fsm.hpp"

#include "detail/bounded_json.hpp"
#include "detail/byte_pair_search.hpp"
#include "detail/event_decoding.hpp"

#include <lens/detail/deadline.hpp>
#include <lens/retry.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cctype>
#include <limits>

namespace lens::detail {

namespace {

bool is_event_stream(std::string_view content_type)
{
    content_type = content_type.substr(0, content_type.find(';'));
    while (!content_type.empty() && std::isspace(static_cast<unsigned char>(content_type.back())))
        content_type.remove_suffix(1);
    while (!content_type.empty() && std::isspace(static_cast<unsigned char>(content_type.front())))
        content_type.remove_prefix(1);
    constexpr std::string_view want = "text/event-stream";
    return content_type.size() == want.size() &&
           std::equal(want.begin(), want.end(), content_type.begin(), [](char a, char b) {
               return a == std::tolower(static_cast<unsigned char>(b));
           });
}

/// The rule of endpoint::check_header_value (no control character but TAB), for ids the
/// server chose: such an id cannot go back out as `Last-Event-ID`.
bool sendable_as_header(std::string_view value) noexcept
{
    return std::none_of(value.begin(), value.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return (c < 0x20 && c != '\t') || c == 0x7f;
    });
}

/// Decodes one event into `out` (a default event) and removes the API key from all of it:
/// the id, the text (kept whole for malformed data), and the typed fields decoded from it.
void decode_scrubbed(std::string id, std::string_view text, const redactor& secrets, session_event& out)
{
    secrets.scrub(id);
    std::string scrubbed;
    if (secrets.leaks(text)) {
        scrubbed = secrets.scrubbed(text);
        text = scrubbed;
    }
    // Without an escape every decoded string is a piece of the scrubbed text, so only an
    // `api_key` member could still need scrubbing, and the streaming decoder decides no
    // event that has one. This spares the typical event the search for that name.
    if (!redactor::has_escape(text) && event_decoding::streaming(id, text, out))
        return;
    // Rare from here on (an escape, an `api_key` member, a shape the streaming decoder
    // leaves to the tree): one parse serves the scrub and the decoding.
    boost::json::error_code ec;
    boost::json::value tree = boost::json::parse(text, ec);
    if (ec) {
        out = event_decoding::malformed(std::move(id), text, ec);
    } else if (redactor::may_hide_secret(text)) {
        // The decoded strings may spell the key (escapes) or carry it in `api_key`
        // members: the event is the scrubbed tree, and its text that tree's.
        secrets.scrub(tree);
        out = event_decoding::from_parsed(std::move(id), boost::json::serialize(tree), tree);
    } else {
        out = event_decoding::from_parsed(std::move(id), text, tree);
    }
}

/// True when `data` may decode as `sse.stream.end`: it spells the type, or an escape could.
bool may_end_stream(std::string_view data) noexcept
{
    if (redactor::has_escape(data))
        return true;
    // "stream.end" found by its "." and "d" (detail/byte_pair_search.hpp): find("stream.end")
    // stops at every 's' of a payload.
    return find_word(data, "stream.end", 6, 9) != std::string_view::npos;
}

std::optional<std::chrono::milliseconds> longer(std::optional<std::chrono::milliseconds> a,
                                                std::optional<std::chrono::milliseconds> b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    return std::max(*a, *b);
}

} // namespace

stream_fsm::stream_fsm(const event_stream_options& opts, const config& cfg, redactor secrets,
                       backoff::random_source random)
    : idle_timeout_(std::max(opts.idle_timeout, std::chrono::milliseconds::zero()))
    , queue_capacity_(std::max<std::size_t>(1, opts.queue_capacity))
    , queue_max_bytes_(std::max<std::size_t>(1, opts.queue_max_bytes))
    , parse_slice_(std::max<std::size_t>(1, opts.parse_slice))
    , reconnect_(opts.reconnect)
    , first_connection_attempts_(std::max(1u, cfg.retry.max_attempts))
    , request_timeout_(cfg.timeout)
    , connect_timeout_(cfg.connect_timeout)
    , secrets_(std::move(secrets))
    , jitter_(opts.reconnect, std::move(random))
    , parser_(opts.limits)
    , delivered_id_(opts.last_event_id)
    , notes_(cfg.log.enabled(log_level::error)) // any level on
{
    parser_.set_last_event_id(opts.last_event_id);
}

// ---- the reader ---------------------------------------------------------------

stream_fsm::step stream_fsm::start(time_point now)
{
    if (phase_ != phase::idle)
        return over() ? step::stop : step::wait;
    return begin_attempt(now);
}

stream_fsm::step stream_fsm::begin_attempt(time_point now)
{
    // The user's id was checked by the constructor of event_stream; the server's ids
    // are checked here, when one is about to be sent.
    if (!sendable_as_header(parser_.last_event_id()))
        return fail(errc::protocol_error,
                    "the server's event id holds a control character: it cannot be sent back as Last-Event-ID");
    phase_ = phase::connecting;
    if (attempts_in_run_ != std::numeric_limits<unsigned>::max())
        ++attempts_in_run_;
    ++stats_.attempts;
    head_deadline_ = deadline_after(now, request_timeout_);
    connect_deadline_ = std::min(head_deadline_, deadline_after(now, connect_timeout_));
    return step::connect;
}

stream_fsm::step stream_fsm::connect_failed(boost::system::error_code code, std::string detail, time_point now)
{
    if (phase_ != phase::connecting)
        return over() ? step::stop : step::wait;
    return retry_or_fail(code, std::nullopt, std::move(detail), 0, {}, now);
}

stream_fsm::step stream_fsm::accepted(std::string_view content_type, time_point now)
{
    if (phase_ != phase::connecting)
        return over() ? step::stop : step::wait;
    if (!is_event_stream(content_type)) {
        const std::string type = secrets_.scrubbed(content_type);
        return fail(errc::not_event_stream,
                    "the reply is '" + (type.empty() ? std::string("no content type") : type) +
                        "', not text/event-stream",
                    200);
    }
    phase_ = phase::streaming;
    ++stats_.connections;
    if (connected_once_)
        ++stats_.reconnects;
    connected_once_ = true;
    connected_at_ = now;
    idle_dropped_ = false;
    paused_ = false;
    kept_.clear();
    kept_pos_ = 0;
    pending_end_.reset();
    return start_read(now);
}

stream_fsm::step stream_fsm::refused(unsigned status, std::string_view retry_after, std::string_view body,
                                     time_point now)
{
    if (phase_ != phase::connecting)
        return over() ? step::stop : step::wait;
    boost::system::error_code code = status_condition(status);
    if (!code) // a 2xx other than 200: 204 means "stop reconnecting" to an EventSource
        code = errc::http_error;
    std::vector<server_error> said;
    boost::system::error_code jec;
    // The body is at most 64 KiB (the driver bounds it); its parsed tree is bounded too.
    auto json = parse_bounded(body, 8 * body.size() + 4096, jec);
    if (!jec) {
        secrets_.scrub(json);
        said = parse_server_errors(json);
    }
    return retry_or_fail(code, parse_retry_after(retry_after), "refused by the consumer endpoint", status,
                         std::move(said), now);
}

stream_fsm::step stream_fsm::retry_or_fail(boost::system::error_code code,
                                           std::optional<std::chrono::milliseconds> server_delay,
                                           std::string detail, unsigned status, std::vector<server_error> said,
                                           time_point now)
{
    // Before the first connection the stream is retried like a REST call; after it, as
    // often as the reconnect policy allows (0: for ever). Either way the count is of
    // attempts in a row without a stable connection.
    const unsigned limit = connected_once_ ? reconnect_.max_attempts : first_connection_attempts_;
    attempt_failure failure;
    failure.code = code;
    failure.request_sent = true; // a GET: idempotent, so this changes nothing
    // The SSE reconnection time (`retry:`) applies to every reconnection; `Retry-After`
    // to this one. The longer wins; decide_retry clamps it to max_server_delay.
    failure.server_delay = longer(parser_.retry(), server_delay);
    const auto decision = decide_retry(reconnect_, limit, failure, /*idempotent=*/true, attempts_in_run_, now,
                                       time_point::max(), jitter_.sample());
    if (!decision.retry) {
        if (is_retryable(decision.code))
            detail = "gave up after " + std::to_string(attempts_in_run_) +
                     (attempts_in_run_ == 1 ? " attempt: " : " attempts: ") + detail;
        return fail(decision.code, std::move(detail), status, std::move(said));
    }
    if (status != 0)
        ++stats_.retried_statuses;
    phase_ = phase::waiting;
    retry_at_ = decision.at;
    if (notes_) {
        reconnect_note n;
        n.code = code;
        n.reason = secrets_.scrubbed(lens::error(code, "events", std::move(detail), status, std::move(said)).what());
        n.http_status = status;
        n.server_delay = failure.server_delay;
        n.delay = std::chrono::ceil<std::chrono::milliseconds>(std::max(decision.at - now, clock::duration::zero()));
        n.attempt = attempts_in_run_;
        note_ = std::move(n);
    }
    return step::wait;
}

stream_fsm::step stream_fsm::fail(boost::system::error_code code, std::string detail, unsigned status,
                                  std::vector<server_error> said)
{
    phase_ = phase::failed;
    failure_.code = code ? code : make_error_code(errc::connection_failed);
    failure_.detail = secrets_.scrubbed(detail);
    failure_.http_status = status;
    failure_.said = std::move(said);
    read_pending_ = false;
    paused_ = false;
    return step::stop;
}

void stream_fsm::abort(boost::system::error_code code, std::string detail)
{
    if (!over())
        fail(code, std::move(detail));
}

stream_fsm::step stream_fsm::start_read(time_point now)
{
    read_pending_ = true;
    read_since_ = now;
    return step::read;
}

stream_fsm::step stream_fsm::received(std::string_view bytes, time_point now)
{
    if (phase_ != phase::streaming)
        return over() ? step::stop : step::wait;
    read_pending_ = false;
    ++stats_.reads;
    stats_.bytes_received += bytes.size();
    std::size_t used = 0;
    while (used < bytes.size() && !queue_full()) {
        // Slices: the queue is checked between them, so one read cannot overfill it.
        const std::size_t n = std::min(parse_slice_, bytes.size() - used);
        boost::system::error_code ec;
        parser_.feed(bytes.substr(used, n), [this](sse::event&& e) { on_event(std::move(e)); }, ec);
        used += n;
        if (ec)
            return fail(ec, ec.message());
        if (phase_ == phase::ended)
            return step::stop;
    }
    if (used < bytes.size()) {
        kept_.assign(bytes.substr(used));
        kept_pos_ = 0;
    }
    return parse_kept(now);
}

stream_fsm::step stream_fsm::parse_kept(time_point now)
{
    while (kept_pos_ < kept_.size()) {
        if (queue_full()) {
            if (!paused_) {
                paused_ = true;
                ++stats_.reader_pauses;
            }
            return step::wait;
        }
        const std::size_t n = std::min(parse_slice_, kept_.size() - kept_pos_);
        boost::system::error_code ec;
        parser_.feed(std::string_view(kept_).substr(kept_pos_, n), [this](sse::event&& e) { on_event(std::move(e)); },
                     ec);
        kept_pos_ += n;
        if (ec)
            return fail(ec, ec.message());
        if (phase_ == phase::ended)
            return step::stop;
    }
    kept_.clear();
    kept_pos_ = 0;
    if (pending_end_) // every byte of the connection is parsed: now its end counts
        return end_connection(now);
    if (queue_full()) {
        if (!paused_) {
            paused_ = true;
            ++stats_.reader_pauses;
        }
        return step::wait;
    }
    paused_ = false;
    return start_read(now);
}

stream_fsm::step stream_fsm::connection_ended(boost::system::error_code code, std::string detail, time_point now)
{
    if (phase_ != phase::streaming)
        return over() ? step::stop : step::wait;
    read_pending_ = false;
    pending_end_ = connection_end{code, std::move(detail)};
    if (kept_pos_ < kept_.size())
        return step::wait; // paused: the kept bytes come first
    return end_connection(now);
}

stream_fsm::step stream_fsm::end_connection(time_point now)
{
    connection_end end = pending_end_ ? std::move(*pending_end_) : connection_end{};
    pending_end_.reset();
    read_pending_ = false;
    paused_ = false;
    // An event cut in half is discarded; the server resends it after Last-Event-ID.
    if (parser_.finish())
        ++stats_.half_events_discarded;
    if (idle_dropped_) {
        ++stats_.idle_timeouts;
        end.code = errc::timeout;
        end.detail = "no bytes for " + std::to_string(idle_timeout_.count()) + " ms";
    } else if (!end.code) {
        end.code = errc::connection_lost;
    }
    // Only a connection that stayed up `reset_after` starts the schedule over (it is the
    // first attempt of the new run). Events received do not count: a server that sends
    // one event and closes would otherwise be reconnected to at the initial delay for ever.
    if (now >= deadline_after(connected_at_, reconnect_.reset_after))
        attempts_in_run_ = 1;
    return retry_or_fail(end.code, std::nullopt, std::move(end.detail), 0, {}, now);
}

stream_fsm::step stream_fsm::resume(time_point now)
{
    switch (phase_) {
    case phase::idle:
        return start(now);
    case phase::waiting:
        return now >= retry_at_ ? begin_attempt(now) : step::wait;
    case phase::streaming:
        return read_pending_ ? step::read : parse_kept(now);
    case phase::connecting:
        return step::connect;
    default:
        return step::stop;
    }
}

// ---- the timer --------------------------------------------------------------------

stream_fsm::time_point stream_fsm::wake_at() const noexcept
{
    if (phase_ == phase::waiting)
        return retry_at_;
    if (phase_ == phase::streaming && read_pending_ && idle_timeout_.count() > 0 && !idle_dropped_)
        return deadline_after(read_since_, idle_timeout_);
    return time_point::max();
}

stream_fsm::timer_step stream_fsm::on_timer(time_point now)
{
    if (phase_ == phase::waiting)
        return now >= retry_at_ ? timer_step::wake_reader : timer_step::none;
    const auto due = wake_at();
    if (phase_ == phase::streaming && due != time_point::max() && now >= due) {
        idle_dropped_ = true;
        return timer_step::drop_connection;
    }
    return timer_step::none;
}

// ---- the consumer -------------------------------------------------------------------

std::optional<session_event> stream_fsm::take()
{
    if (queue_.empty())
        return std::nullopt;
    queued_event q = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= q.bytes;
    // Decoded in place, in the optional returned (a session_event's move is a few
    // hundred instructions, and each layer between the decoder and the caller added one).
    std::optional<session_event> out(std::in_place);
    session_event& ev = *out;
    if (q.decoded)
        ev = std::move(*q.decoded);
    else
        decode_scrubbed(std::move(q.id), std::string_view(texts_).substr(q.at - texts_base_, q.size), secrets_, ev);
    // The texts taken are dropped: all of them once the queue is empty, else the taken
    // front once it is over half of the buffer (a move of less than what was taken).
    if (queue_.empty()) {
        // An idle stream does not keep a burst's buffer (a few KiB is what 64 events
        // of a typical stream take; the benchmark's fill 19 KiB).
        constexpr std::size_t keep_capacity = 32 * 1024;
        if (texts_.capacity() > keep_capacity)
            std::string().swap(texts_);
        else
            texts_.clear();
        texts_base_ = 0;
    } else if (const std::size_t taken = queue_.front().at - texts_base_; taken > texts_.size() / 2) {
        texts_.erase(0, taken);
        texts_base_ += taken;
    }
    if (ev.kind() == event_kind::malformed)
        ++stats_.malformed;
    ++stats_.events_delivered;
    delivered_id_ = ev.id;
    return out;
}

bool stream_fsm::reader_may_continue() const noexcept
{
    // Hysteresis: the reader goes on once the consumer has drained half the queue, so it
    // parses a batch per wake-up. Woken as soon as one place was free, it would parse one
    // slice, fill the queue again and sleep: a scheduler pass (and an epoll_wait) for
    // every few events of a fast stream.
    return phase_ == phase::streaming && paused_ && queue_.size() <= queue_capacity_ / 2 &&
           queued_bytes_ <= queue_max_bytes_ / 2;
}

void stream_fsm::close() noexcept
{
    if (!over())
        phase_ = phase::closed;
    read_pending_ = false;
    paused_ = false;
}

// ---- the queue ------------------------------------------------------------------------

bool stream_fsm::queue_full() const noexcept
{
    return queue_.size() >= queue_capacity_ || queued_bytes_ >= queue_max_bytes_;
}

void stream_fsm::on_event(sse::event&& e)
{
    if (phase_ == phase::ended)
        return; // nothing after the end
    ++stats_.events_received;
    const std::size_t bytes = e.data.size() + e.last_event_id.size();
    queued_event q{std::move(e.last_event_id), texts_base_ + texts_.size(), 0, nullptr, bytes};
    if (!may_end_stream(e.data)) {
        // Copied, not moved out: the parser keeps its buffer for the next event.
        q.size = e.data.size();
        texts_.append(e.data);
    } else {
        q.decoded = std::make_unique<session_event>();
        decode_scrubbed(std::move(q.id), e.data, secrets_, *q.decoded);
        if (q.decoded->kind() == event_kind::stream_end)
            phase_ = phase::ended;
    }
    queue_.push_back(std::move(q));
    queued_bytes_ += bytes;
    stats_.max_queued = std::max(stats_.max_queued, queue_.size());
    stats_.max_queued_bytes = std::max(stats_.max_queued_bytes, queued_bytes_);
}

event_stream_stats stream_fsm::statistics() const noexcept
{
    auto s = stats_;
    s.queued = queue_.size();
    return s;
}

} // namespace lens::detail
