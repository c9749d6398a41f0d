// A one-line progress display on stderr for `lens files upload|download` and `lens bench`.
#pragma once

#include <lens/transfer.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace lens::cli {

/// True when progress should be drawn: stderr is a terminal and --no-progress was not given.
bool progress_wanted(bool no_progress) noexcept;

/// "  45%  12.3 MiB / 27.0 MiB  5.1 MiB/s" (without a known total: "12.3 MiB  5.1 MiB/s").
std::string format_progress(std::uint64_t done, std::optional<std::uint64_t> total, double seconds);

/// Redraws "LABEL  45%  ..." in place on stderr ('\r', padded over the previous text), at
/// most ten times a second (a steady clock), always for the last report (done == total).
/// The line is ended with a newline by `finish()` or, on failure, by the destructor, so
/// an error message that follows starts on a line of its own. Disabled, it prints nothing.
class progress_line {
public:
    progress_line(std::string label, bool enabled);
    ~progress_line();
    progress_line(const progress_line&) = delete;
    progress_line& operator=(const progress_line&) = delete;

    /// The `transfer_options::progress` callback feeding this line (empty when disabled).
    /// It refers to this object, which must outlive the transfer.
    lens::transfer_progress callback();
    /// Shows "LABEL  TEXT" instead of transfer figures (`lens bench`'s rate, errors and
    /// latency), throttled like transfer reports. Disabled, it does nothing.
    void show(std::string text);
    /// Draws the final figures and ends the line (when anything was reported).
    void finish();

private:
    void report(std::uint64_t done, std::optional<std::uint64_t> total);
    void draw();

    using clock = std::chrono::steady_clock;
    std::string label_;
    bool enabled_;
    bool open_ = false; ///< a line was drawn and not yet ended
    bool reported_ = false;
    bool undrawn_ = false; ///< a report came after the last draw (throttled)
    clock::time_point start_ = clock::now();
    clock::time_point last_draw_{};
    std::uint64_t done_ = 0;
    std::optional<std::uint64_t> total_;
    std::optional<std::string> text_; ///< set by show(): drawn instead of the transfer figures
    std::size_t width_ = 0; ///< length of the text drawn last, to pad over it
};

} // namespace lens::cli
