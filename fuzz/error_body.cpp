// Fuzz target: server error bodies and error messages (src/error.cpp, lens/error.hpp):
// lens::parse_server_errors, lens::body_reports_failure and lens::error's message.
//
// Invariants, for any body, operation, detail and status:
// - at most max_server_errors diagnostics, each field at most max_server_error_field
//   bytes and valid UTF-8 (a cut never splits a character);
// - what() names the operation first and is at most operation + max_error_message bytes;
//   valid UTF-8 whenever the operation and the detail are;
// - a caller-built list of any length and field size is held to the same bounds;
// - cost does not grow with the body: a body of about 1 MiB built from the input
//   (its value repeated in `errors`, `detail`, `error_messages`, or one huge `message`)
//   is read and formatted well within a (generous) time budget.
#include <lens/error.hpp>

#include "detail/bounded_json.hpp"
#include "fuzz_check.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace {

/// Well-formed UTF-8 (the WHATWG decoder's ranges: no overlongs, surrogates or > U+10FFFF).
bool valid_utf8(std::string_view s)
{
    for (std::size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        std::size_t n;
        unsigned lo = 0x80, hi = 0xBF;
        if (b < 0x80) n = 0;
        else if (b >= 0xC2 && b <= 0xDF) n = 1;
        else if (b >= 0xE0 && b <= 0xEF) { n = 2; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
        else if (b >= 0xF0 && b <= 0xF4) { n = 3; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
        else return false;
        if (s.size() - i <= n)
            return false;
        for (std::size_t k = 1; k <= n; ++k) {
            const auto c = static_cast<unsigned char>(s[i + k]);
            if (c < (k == 1 ? lo : 0x80u) || c > (k == 1 ? hi : 0xBFu))
                return false;
        }
        i += n + 1;
    }
    return true;
}

void check_errors(const std::vector<lens::server_error>& errors)
{
    FUZZ_REQUIRE(errors.size() <= lens::max_server_errors);
    for (const auto& e : errors)
        for (const std::string* f : {&e.code, &e.message, &e.suggestion, &e.error_uid}) {
            FUZZ_REQUIRE(f->size() <= lens::max_server_error_field);
            FUZZ_REQUIRE(valid_utf8(*f));
        }
}

void check_message(const std::string& operation, const std::string& detail, unsigned status,
                   std::vector<lens::server_error> errors)
{
    bool texts_valid = valid_utf8(operation) && valid_utf8(detail);
    for (const auto& s : errors)
        texts_valid = texts_valid && valid_utf8(s.code) && valid_utf8(s.message);
    const lens::error e(lens::errc::http_error, operation, detail, status, std::move(errors));
    const std::string what = e.what();
    FUZZ_REQUIRE(what.size() <= operation.size() + lens::max_error_message);
    FUZZ_REQUIRE(what.compare(0, operation.size() + 2, operation + ": ") == 0);
    if (texts_valid && !valid_utf8(what)) {
        std::fprintf(stderr, "message:");
        for (unsigned char c : what)
            std::fprintf(stderr, c >= 0x20 && c < 0x7f ? "%c" : "\\x%02X", c);
        std::fprintf(stderr, "\n");
        FUZZ_REQUIRE(valid_utf8(what));
    }
    FUZZ_REQUIRE(e.server_errors().size() <= lens::max_server_errors);
    for (const auto& s : e.server_errors())
        for (const std::string* f : {&s.code, &s.message, &s.suggestion, &s.error_uid})
            FUZZ_REQUIRE(f->size() <= lens::max_server_error_field);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    FuzzedDataProvider in(data, size);
    // what() is a C string: texts with NUL would be cut there by design, so none here.
    auto no_nul = [](std::string s) {
        std::replace(s.begin(), s.end(), '\0', '?');
        return s;
    };
    const std::string operation = no_nul(in.ConsumeRandomLengthString(24));
    const std::string detail = in.ConsumeBool() ? std::string() : no_nul(in.ConsumeRandomLengthString(64));
    const unsigned status = in.ConsumeIntegralInRange<unsigned>(0, 600);
    // One input in 200 also builds a 1 MiB body (slow under ASan: rarely, so the rest runs fast).
    const int amplify = in.ConsumeIntegralInRange<int>(0, 999) >= 995 ? in.ConsumeIntegralInRange<int>(0, 4) : -1;
    const bool callers_list = in.ConsumeIntegralInRange<int>(0, 7) == 0;
    const std::string body = in.ConsumeRemainingBytesAsString();

    boost::system::error_code ec;
    boost::json::value v = lens::detail::parse_bounded(body, 8 * body.size() + 4096, ec);
    std::vector<lens::server_error> errors;
    if (!ec) {
        errors = lens::parse_server_errors(v);
        (void)lens::body_reports_failure(v);
        check_errors(errors);
    }
    check_message(operation, detail, status, errors);

    if (callers_list) {
        // A list built by hand, of any length and field size (from pieces of the body).
        std::vector<lens::server_error> mine;
        for (std::size_t i = 0; i < body.size() % 97; ++i) {
            lens::server_error e;
            e.message = std::string((i * 131) % 3000, static_cast<char>('a' + i % 26)) + body;
            e.code = body.substr(0, i);
            e.omitted_after = i % 3 == 0 ? static_cast<std::size_t>(-1) - i : i;
            mine.push_back(std::move(e));
        }
        check_message(operation, detail, status, std::move(mine));
    }

    if (amplify >= 0) {
        // About 1 MiB of diagnostics made of the input's own value.
        const std::string item = ec ? boost::json::serialize(boost::json::value(boost::json::string(
                                          valid_utf8(body) ? body : std::string("x"))))
                                    : boost::json::serialize(v);
        const std::size_t target = std::size_t(1) << 20;
        std::string big;
        big.reserve(target + item.size() + 64);
        static const char* const heads[] = {R"({"errors":[)", R"({"detail":[)", R"({"is_valid":false,"error_messages":[)",
                                            R"({"errors":[{"code":"E","message":)", R"({"message":)"};
        big += heads[amplify];
        if (amplify <= 2) {
            while (big.size() < target) {
                big += item;
                big += ',';
            }
            big += "null]}";
        } else {
            // One huge string.
            big += '"';
            std::string text = valid_utf8(body) && body.find_first_of("\"\\") == std::string::npos && !body.empty()
                                   ? body : std::string("abc");
            for (char& c : text)
                if (static_cast<unsigned char>(c) < 0x20)
                    c = ' ';
            while (big.size() < target)
                big += text;
            big += amplify == 3 ? "\"}]}" : "\"}";
        }
        boost::system::error_code bec;
        const boost::json::value huge = lens::detail::parse_bounded(big, 64 * big.size(), bec);
        if (!bec) {
            const auto start = std::chrono::steady_clock::now();
            auto many = lens::parse_server_errors(huge);
            check_errors(many);
            check_message(operation, detail, status, std::move(many));
            const auto spent = std::chrono::steady_clock::now() - start;
            // Linear work over at most 3 x 1024 items of bounded size: a few ms. A second
            // is far beyond any machine's jitter and far below any superlinear cost.
            FUZZ_REQUIRE(spent < std::chrono::seconds(1));
        }
    }
    return 0;
}
