// logger.cpp — the logging hook's level filter and one-line rendering (see lens/logger.hpp).
#include <lens/logger.hpp>

namespace lens {

std::string_view to_string(log_level level) noexcept
{
    switch (level) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
    }
    return "unknown";
}

namespace {

void append_ms(std::string& out, std::string_view label, std::chrono::milliseconds d)
{
    out += label;
    out += std::to_string(d.count());
    out += " ms";
}

} // namespace

std::string format(const log_record& r)
{
    std::string out = "lens ";
    out += to_string(r.level);
    out += ' ';
    out += r.event;
    if (!r.operation.empty()) {
        out += ' ';
        out += r.operation;
    }
    if (!r.target.empty()) {
        out += " [";
        out += r.target;
        out += ']';
    }
    std::string fields;
    auto field = [&]() -> std::string& {
        fields += fields.empty() ? " " : ", ";
        return fields;
    };
    if (r.http_status != 0)
        field() += "HTTP " + std::to_string(r.http_status);
    if (r.code)
        field() += r.code.message();
    if (r.attempt != 0)
        field() += "attempt " + std::to_string(r.attempt);
    if (r.delay)
        append_ms(field(), "next in ", *r.delay);
    if (r.server_delay)
        append_ms(field(), "server asked ", *r.server_delay);
    if (r.count != 0)
        field() += std::to_string(r.count) + " dropped";
    if (!r.last_event_id.empty()) {
        field() += "Last-Event-ID ";
        fields += r.last_event_id;
    }
    if (!r.reason.empty()) {
        fields += fields.empty() ? " " : " - ";
        fields += r.reason;
    }
    if (!fields.empty()) {
        out += ':';
        out += fields;
    }
    // One line: a server's text may hold line breaks.
    for (auto& c : out)
        if (c == '\n' || c == '\r')
            c = ' ';
    return out;
}

logger::logger(sink_type sink, log_level min_level)
    : sink_(std::move(sink)), threshold_(sink_ ? static_cast<int>(min_level) : off)
{
}

log_level logger::min_level() const noexcept
{
    return threshold_ == off ? log_level::error : static_cast<log_level>(threshold_);
}

void logger::write(const log_record& record) const noexcept
{
    if (!enabled(record.level))
        return;
    try {
        sink_(record);
    } catch (...) {
        // Logging never fails an operation.
    }
}

} // namespace lens
