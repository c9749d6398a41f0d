// Unit tests of the error model: the category, every server error body shape and the message.
#include <lens/error.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "unit/support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

namespace {

using lens::test::occurrences;
using lens::test::dismantle;
using lens::test::nested_arrays;


boost::json::value json(const char* text)
{
    return boost::json::parse(text);
}

// {"errors": [item(0), item(1), ...]}, built directly: parsing megabytes of text would
// only slow the test down.
template <class Item>
boost::json::value errors_body(std::size_t n, Item item)
{
    boost::json::array a;
    a.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        a.emplace_back(item(i));
    return boost::json::object{{"errors", std::move(a)}};
}

// prefix + i, built by appending (GCC 12 warns falsely about "literal" + std::string).
std::string labelled(std::string_view prefix, std::size_t i, std::string_view suffix = {})
{
    std::string s(prefix);
    s += std::to_string(i);
    s += suffix;
    return s;
}

// The N of a message ending in " (N more)", or 0 when there is no such note.
std::size_t more_of(std::string_view text)
{
    constexpr std::string_view tail = " more)";
    if (text.size() < tail.size() || text.substr(text.size() - tail.size()) != tail)
        return 0;
    const auto open = text.rfind(" (");
    return open == std::string_view::npos ? 0 : std::stoul(std::string(text.substr(open + 2)));
}

} // namespace

TEST_SUITE("error")
{
    TEST_CASE("the category is named lens and describes every condition")
    {
        CHECK(std::string(lens::error_category().name()) == "lens");
        for (int e = static_cast<int>(lens::errc::timeout); e <= static_cast<int>(lens::errc::closed); ++e) {
            CAPTURE(e);
            auto msg = lens::error_category().message(e);
            CHECK_FALSE(msg.empty());
            CHECK(msg != "unknown lens error");
        }
        CHECK(lens::error_category().message(9999) == "unknown lens error");

        boost::system::error_code ec = lens::errc::timeout;  // is_error_code_enum
        CHECK(ec.category() == lens::error_category());
        CHECK(ec == lens::errc::timeout);
        CHECK(ec != lens::errc::closed);
        CHECK(ec.message() == "the operation timed out");
    }

    TEST_CASE("errors array of objects")
    {
        auto errs = lens::parse_server_errors(json(R"({"errors": [
            {"code": "E401", "message": "Invalid API key", "suggestion": "Check the key",
             "error_uid": "u-1"},
            {"code": "E999", "message": "Second"}]})"));
        REQUIRE(errs.size() == 2);
        CHECK(errs[0].code == "E401");
        CHECK(errs[0].message == "Invalid API key");
        CHECK(errs[0].suggestion == "Check the key");
        CHECK(errs[0].error_uid == "u-1");
        CHECK(errs[1].code == "E999");
        CHECK(errs[1].message == "Second");
        CHECK(errs[1].suggestion.empty());
    }

    TEST_CASE("errors array of plain strings")
    {
        auto errs = lens::parse_server_errors(
            json(R"({"errors": ["Failed to allocate lens runner - try stopping an older session!"]})"));
        REQUIRE(errs.size() == 1);
        CHECK(errs[0].code.empty());
        CHECK(errs[0].message == "Failed to allocate lens runner - try stopping an older session!");
    }

    TEST_CASE("detail as text and as FastAPI validation items")
    {
        auto errs = lens::parse_server_errors(json(R"({"detail": "Not Found"})"));
        REQUIRE(errs.size() == 1);
        CHECK(errs[0].message == "Not Found");

        errs = lens::parse_server_errors(json(R"({"detail": [
            {"loc": ["body", "lens_id"], "msg": "field required", "type": "value_error.missing"},
            {"loc": ["body"], "msg": "bad json"}]})"));
        REQUIRE(errs.size() == 2);
        CHECK(errs[0].message == "field required");
        CHECK(errs[0].code == "value_error.missing");
        CHECK(errs[1].message == "bad json");
    }

    TEST_CASE("is_valid false with error_messages")
    {
        auto body = json(R"({"is_valid": false, "error_messages": ["bad stream", "no model"]})");
        auto errs = lens::parse_server_errors(body);
        REQUIRE(errs.size() == 2);
        CHECK(errs[0].message == "bad stream");
        CHECK(errs[1].message == "no model");
        CHECK(lens::body_reports_failure(body));

        // error_messages beside is_valid: true is not a failure.
        body = json(R"({"is_valid": true, "error_messages": ["just a warning"]})");
        CHECK(lens::parse_server_errors(body).empty());
        CHECK_FALSE(lens::body_reports_failure(body));
    }

    TEST_CASE("message alone, and repeats across keys dropped")
    {
        auto errs = lens::parse_server_errors(
            json(R"({"type": "error", "message": "Unknown session id: lsn-1"})"));
        REQUIRE(errs.size() == 1);
        CHECK(errs[0].message == "Unknown session id: lsn-1");

        errs = lens::parse_server_errors(json(R"({"detail": "same", "message": "same"})"));
        CHECK(errs.size() == 1);
    }

    TEST_CASE("non-string values are kept as JSON text")
    {
        auto errs = lens::parse_server_errors(json(R"({"errors": [{"code": 42, "message": 7}, 13, {"x": 1}]})"));
        REQUIRE(errs.size() == 3);
        CHECK(errs[0].code == "42");
        CHECK(errs[0].message == "7");
        CHECK(errs[1].message == "13");
        CHECK(errs[2].message == R"({"x":1})");
    }

    TEST_CASE("odd JSON yields nothing and never throws")
    {
        for (const char* text : {"null", "[]", "[1, 2]", "42", "\"text\"", "true", "{}",
                                 R"({"errors": null})", R"({"errors": []})", R"({"errors": [null, {}]})",
                                 R"({"detail": null})", R"({"detail": {}})", R"({"message": null})",
                                 R"({"is_valid": "false"})", R"({"unrelated": {"errors": ["x"]}})"}) {
            CAPTURE(text);
            auto body = json(text);
            std::vector<lens::server_error> errs;
            CHECK_NOTHROW(errs = lens::parse_server_errors(body));
            CHECK(errs.empty());
            CHECK_NOTHROW((void)lens::body_reports_failure(body));
        }
    }

    TEST_CASE("body_reports_failure on 2xx bodies")
    {
        CHECK(lens::body_reports_failure(json(R"({"errors": ["Failed to allocate lens runner"]})")));
        CHECK(lens::body_reports_failure(json(R"({"errors": [{"message": "x"}], "session_id": "lsn-1"})")));
        CHECK(lens::body_reports_failure(json(R"({"is_valid": false, "file_id": "a.csv"})")));
        CHECK(lens::body_reports_failure(json(R"({"is_valid": false})")));
        CHECK_FALSE(lens::body_reports_failure(json(R"({"is_valid": true, "file_id": "a.csv"})")));
        CHECK_FALSE(lens::body_reports_failure(json(R"({"errors": [], "session_id": "lsn-1"})")));
        CHECK_FALSE(lens::body_reports_failure(json(R"({"errors": null})")));
        CHECK_FALSE(lens::body_reports_failure(json(R"({"session_id": "lsn-1"})")));
        CHECK_FALSE(lens::body_reports_failure(json("null")));
        CHECK_FALSE(lens::body_reports_failure(json("[{\"errors\": [1]}]")));
    }

    TEST_CASE("the message names the operation, the status and the server's words")
    {
        auto errs = lens::parse_server_errors(json(R"({"errors": [{"code": "E", "message": "Invalid API key"}]})"));
        lens::error e(lens::errc::unauthorized, "sessions/create", {}, 401, errs);
        CHECK(std::string(e.what()) == "sessions/create: 401 unauthorized: Invalid API key");
        CHECK(e.code() == lens::errc::unauthorized);
        CHECK(e.operation() == "sessions/create");
        CHECK(e.http_status() == 401);
        REQUIRE(e.server_errors().size() == 1);
        CHECK(e.server_errors()[0].code == "E");

        // A 2xx failure.
        lens::error api(lens::errc::api_error, "sessions/create", {}, 200,
                        lens::parse_server_errors(json(R"({"errors": ["no runner", "try later"]})")));
        CHECK(std::string(api.what()) == "sessions/create: 200 ok: no runner; try later");

        // Detail first, then the server's words.
        lens::error both(lens::errc::not_found, "files/delete", "file a.csv", 404,
                         lens::parse_server_errors(json(R"({"detail": "Not Found"})")));
        CHECK(std::string(both.what()) == "files/delete: 404 not found: file a.csv: Not Found");

        // A status lens does not name is shown as a number.
        lens::error odd(lens::errc::http_error, "lens/info", "", 418);
        CHECK(std::string(odd.what()) == "lens/info: 418: the server replied with an error status");

        // Without status or diagnostics the condition's own message is used.
        lens::error bare(lens::errc::timeout, "session.validate");
        CHECK(std::string(bare.what()) == "session.validate: the operation timed out");

        // A server error with only a code still says something.
        lens::error coded(lens::errc::server_error, "lens/register", {}, 503,
                          {lens::server_error{"E503", "", "", ""}});
        CHECK(std::string(coded.what()) == "lens/register: 503 service unavailable: E503");
    }

    TEST_CASE("throw_error throws a lens::error caught as system_error")
    {
        try {
            lens::throw_error(lens::errc::invalid_argument, "files/upload", "unsupported extension .exe");
            FAIL("throw_error returned");
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == lens::errc::invalid_argument);
            CHECK(std::string(e.what()) == "files/upload: unsupported extension .exe");
            const auto* le = dynamic_cast<const lens::error*>(&e);
            REQUIRE(le != nullptr);
            CHECK(le->http_status() == 0);
        }
    }

    TEST_CASE("foreign error codes pass through")
    {
        lens::error e(boost::system::errc::make_error_code(boost::system::errc::connection_refused),
                      "lens/info");
        CHECK(e.code() == boost::system::errc::connection_refused);
        CHECK(std::string(e.what()).rfind("lens/info: ", 0) == 0);
    }

    TEST_CASE("80000 distinct errors keep the first max_server_errors and count the rest")
    {
        auto body = errors_body(80'000, [](std::size_t i) { return labelled("error ", i); });
        auto errs = lens::parse_server_errors(body);
        REQUIRE(errs.size() == lens::max_server_errors);
        for (std::size_t i = 0; i < errs.size(); ++i)
            CHECK(errs[i].message == labelled("error ", i));  // the first ones, in order
        CHECK(errs.back().omitted_after == 80'000 - lens::max_server_errors);
        for (std::size_t i = 0; i + 1 < errs.size(); ++i)
            CHECK(errs[i].omitted_after == 0);

        lens::error e(lens::errc::http_error, "sessions/create", {}, 400, errs);
        const std::string what = e.what();
        CHECK(what.size() <= e.operation().size() + lens::max_error_message);
        CHECK(what.rfind("sessions/create: 400 bad request: error 0; error 1; ", 0) == 0);
        CHECK(what.find("error 31 (79968 more)") != std::string::npos);
        CHECK(more_of(what) == 79'968);
    }

    TEST_CASE("only a bounded prefix of a 200000 item array is examined")
    {
        // The first max_examined_server_errors items repeat one diagnostic and every later
        // one is new: a parser reading past the bound would keep max_server_errors of them.
        const std::size_t n = 200'000;
        auto body = errors_body(n, [](std::size_t i) {
            return i < lens::max_examined_server_errors ? std::string("same") : labelled("new ", i);
        });
        auto errs = lens::parse_server_errors(body);
        REQUIRE(errs.size() == 1);
        CHECK(errs[0].message == "same");
        CHECK(errs[0].omitted_after == n - lens::max_examined_server_errors);  // counted, not read

        lens::error e(lens::errc::http_error, "files/upload", {}, 400, errs);
        CHECK(std::string(e.what()) == "files/upload: 400 bad request: same (198976 more)");

        // Each array has its own bound: a flood in `errors` does not hide `detail` or `message`.
        auto& o = body.as_object();
        o["detail"] = "the detail";
        o["message"] = "the message";
        errs = lens::parse_server_errors(body);
        REQUIRE(errs.size() == 3);
        CHECK(errs[0].message == "same");
        CHECK(errs[1].message == "the detail");
        CHECK(errs[2].message == "the message");
        CHECK(errs[2].omitted_after == n - lens::max_examined_server_errors);
    }

    TEST_CASE("repeats collapse and the first occurrence keeps its place")
    {
        auto errs = lens::parse_server_errors(json(R"({"errors": ["b", "a", "b", "c", "a", "c", "b"],
                                                       "detail": ["a", "d"], "message": "b"})"));
        REQUIRE(errs.size() == 4);
        CHECK(errs[0].message == "b");
        CHECK(errs[1].message == "a");
        CHECK(errs[2].message == "c");
        CHECK(errs[3].message == "d");
        CHECK(errs[3].omitted_after == 0);

        // The code is part of a diagnostic's identity.
        errs = lens::parse_server_errors(json(R"({"errors": [{"code": "E1", "message": "m"},
            {"code": "E2", "message": "m"}, {"code": "E1", "message": "m"}, "m"]})"));
        REQUIRE(errs.size() == 3);
        CHECK(errs[0].code == "E1");
        CHECK(errs[1].code == "E2");
        CHECK(errs[2].code.empty());

        // Repeats past the cap are counted once: 40 distinct diagnostics, each sent 20 times.
        auto body = errors_body(800, [](std::size_t i) { return labelled("d", i % 40); });
        errs = lens::parse_server_errors(body);
        REQUIRE(errs.size() == lens::max_server_errors);
        CHECK(errs.back().omitted_after == 40 - lens::max_server_errors);
    }

    TEST_CASE("a 1 MB field is cut to max_server_error_field with an ellipsis")
    {
        const std::string huge(1 << 20, 'x');
        boost::json::value body = {{"errors", {{{"code", huge}, {"message", huge}, {"suggestion", huge},
                                                 {"error_uid", huge}}}}};
        auto errs = lens::parse_server_errors(body);
        REQUIRE(errs.size() == 1);
        for (const std::string* field : {&errs[0].code, &errs[0].message, &errs[0].suggestion, &errs[0].error_uid}) {
            CHECK(field->size() == lens::max_server_error_field);
            CHECK(field->substr(field->size() - 3) == "...");
            CHECK(field->find_first_not_of('x') == field->size() - 3);
        }

        // The cut never splits a UTF-8 sequence: "é" is two bytes.
        std::string accents;
        for (std::size_t i = 0; i < lens::max_server_error_field; ++i)
            accents += "\xc3\xa9";
        errs = lens::parse_server_errors(boost::json::value{{"detail", accents}});
        REQUIRE(errs.size() == 1);
        const std::string& m = errs[0].message;
        REQUIRE(m.size() <= lens::max_server_error_field);
        REQUIRE(m.size() > 3);
        CHECK(m.substr(m.size() - 3) == "...");
        const std::string kept = m.substr(0, m.size() - 3);
        CHECK(kept.size() % 2 == 0);
        CHECK(kept == accents.substr(0, kept.size()));

        // A string just at the bound is kept whole.
        const std::string exact(lens::max_server_error_field, 'y');
        errs = lens::parse_server_errors(boost::json::value{{"message", exact}});
        REQUIRE(errs.size() == 1);
        CHECK(errs[0].message == exact);
    }

    TEST_CASE("huge non-string values are serialised only up to the field bound")
    {
        boost::json::object wide;
        for (std::size_t i = 0; i < 100'000; ++i)
            wide[labelled("member", i)] = i;
        boost::json::value body = {{"detail", wide}, {"errors", {{{"code", wide}, {"message", "m"}}}}};
        auto errs = lens::parse_server_errors(body);
        REQUIRE(errs.size() == 2);
        CHECK(errs[0].code.size() <= lens::max_server_error_field);
        CHECK(errs[0].code.rfind(R"({"member0":0,)", 0) == 0);
        CHECK(errs[0].message == "m");
        // An object of unknown shape is kept as its (cut) JSON text.
        CHECK(errs[1].message.size() == lens::max_server_error_field);
        CHECK(errs[1].message.rfind(R"({"member0":0,)", 0) == 0);
        CHECK(errs[1].message.substr(errs[1].message.size() - 3) == "...");

        // 10,000 levels deep: only the first bytes are produced, and without recursion.
        boost::json::value deep(boost::json::object_kind);
        deep.as_object()["detail"].emplace_object()["nested"] = nested_arrays(10'000, "leaf");
        errs = lens::parse_server_errors(deep);
        REQUIRE(errs.size() == 1);
        CHECK(errs[0].message.size() == lens::max_server_error_field);
        CHECK(errs[0].message.rfind(R"({"nested":[[[[)", 0) == 0);
        dismantle(deep);
    }

    TEST_CASE("the message is bounded whatever diagnostics the caller passes")
    {
        // 100 distinct diagnostics of 1000 bytes each, as a caller may build them by hand.
        std::vector<lens::server_error> many;
        for (std::size_t i = 0; i < 100; ++i)
            many.push_back({{}, labelled("[", i, "]") + std::string(1000, 'z'), {}, {}});
        lens::error e(lens::errc::api_error, "input_stream.set", {}, 0, many);
        const std::string what = e.what();
        CHECK(what.size() <= e.operation().size() + lens::max_error_message);
        CHECK(what.rfind("input_stream.set: [0]zzz", 0) == 0);
        const std::size_t shown = occurrences(what, "[");
        CHECK(shown >= 1);
        CHECK(what.find(labelled("[", shown - 1, "]")) != std::string::npos);  // the first ones, in order
        CHECK(shown + more_of(what) == 100);

        // The error keeps at most max_server_errors of them, the rest counted on the last.
        REQUIRE(e.server_errors().size() == lens::max_server_errors);
        CHECK(e.server_errors().back().omitted_after == 100 - lens::max_server_errors);

        // Fields longer than the bound are cut there too.
        lens::error cut(lens::errc::api_error, "input_stream.set", {}, 0,
                        {lens::server_error{"E", std::string(5000, 'q'), std::string(5000, 's'), {}}});
        REQUIRE(cut.server_errors().size() == 1);
        CHECK(cut.server_errors()[0].message.size() == lens::max_server_error_field);
        CHECK(cut.server_errors()[0].suggestion.size() == lens::max_server_error_field);
        CHECK(std::string(cut.what()).size() <= cut.operation().size() + lens::max_error_message);

        // A detail too long for the bound is cut, and the diagnostics after it are counted.
        lens::error long_detail(lens::errc::not_found, "files/delete", std::string(10'000, 'd'), 404,
                                {lens::server_error{{}, "Not Found", {}, {}}});
        const std::string w = long_detail.what();
        CHECK(w.size() <= long_detail.operation().size() + lens::max_error_message);
        CHECK(w.rfind("files/delete: 404 not found: ddd", 0) == 0);
        CHECK(w.find("...") != std::string::npos);
        CHECK(more_of(w) == 1);
    }

    TEST_CASE("a short list has no note and an exact message")
    {
        auto errs = lens::parse_server_errors(json(R"({"errors": ["one", "two"]})"));
        REQUIRE(errs.size() == 2);
        CHECK(errs.back().omitted_after == 0);
        lens::error e(lens::errc::api_error, "sessions/create", {}, 200, errs);
        CHECK(std::string(e.what()) == "sessions/create: 200 ok: one; two");
    }
}
