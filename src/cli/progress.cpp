#include "cli/progress.hpp"

#include <cstdio>
#include <unistd.h>

namespace lens::cli {

namespace {

/// "512 B", "12.3 KiB", "1.5 GiB".
std::string human_bytes(double bytes)
{
    static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    std::size_t unit = 0;
    while (bytes >= 1024 && unit + 1 < std::size(units)) {
        bytes /= 1024;
        ++unit;
    }
    char text[32];
    if (unit == 0)
        std::snprintf(text, sizeof text, "%.0f B", bytes);
    else
        std::snprintf(text, sizeof text, "%.1f %s", bytes, units[unit]);
    return text;
}

constexpr auto redraw_interval = std::chrono::milliseconds(100);

} // namespace

bool progress_wanted(bool no_progress) noexcept
{
    return !no_progress && ::isatty(STDERR_FILENO) == 1;
}

std::string format_progress(std::uint64_t done, std::optional<std::uint64_t> total, double seconds)
{
    std::string out;
    if (total) {
        const double percent = *total == 0 ? 100.0 : 100.0 * static_cast<double>(done) / static_cast<double>(*total);
        char text[16];
        std::snprintf(text, sizeof text, "%3.0f%%  ", percent);
        out += text;
        out += human_bytes(static_cast<double>(done)) + " / " + human_bytes(static_cast<double>(*total));
    } else {
        out += human_bytes(static_cast<double>(done));
    }
    if (seconds > 0)
        out += "  " + human_bytes(static_cast<double>(done) / seconds) + "/s";
    return out;
}

progress_line::progress_line(std::string label, bool enabled) : label_(std::move(label)), enabled_(enabled) {}

progress_line::~progress_line()
{
    if (open_)
        std::fputc('\n', stderr);
}

lens::transfer_progress progress_line::callback()
{
    if (!enabled_)
        return {};
    return [this](std::uint64_t done, std::optional<std::uint64_t> total) { report(done, total); };
}

void progress_line::report(std::uint64_t done, std::optional<std::uint64_t> total)
{
    done_ = done;
    total_ = total;
    reported_ = true;
    undrawn_ = true;
    const auto now = clock::now();
    const bool last = total && done >= *total;
    if (!open_ || last || now - last_draw_ >= redraw_interval) {
        last_draw_ = now;
        draw();
    }
}

void progress_line::show(std::string text)
{
    if (!enabled_)
        return;
    text_ = std::move(text);
    reported_ = true;
    undrawn_ = true;
    const auto now = clock::now();
    if (!open_ || now - last_draw_ >= redraw_interval) {
        last_draw_ = now;
        draw();
    }
}

void progress_line::draw()
{
    const double seconds = std::chrono::duration<double>(clock::now() - start_).count();
    std::string text = label_ + "  " + (text_ ? *text_ : format_progress(done_, total_, seconds));
    const std::size_t length = text.size();
    if (length < width_)
        text.append(width_ - length, ' ');
    width_ = length;
    std::fprintf(stderr, "\r%s", text.c_str());
    std::fflush(stderr);
    open_ = true;
    undrawn_ = false;
}

void progress_line::finish()
{
    if (!enabled_ || !reported_)
        return;
    if (undrawn_ || !open_) // the latest figures, unless they are on screen already
        draw();
    std::fputc('\n', stderr);
    open_ = false;
}

} // namespace lens::cli
