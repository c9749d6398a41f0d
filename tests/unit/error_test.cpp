// Unit tests of the error model: the category, every server error body shape and the message.
#include <lens/error.hpp>

#include <boost/json/parse.hpp>

#include <doctest/doctest.h>

#include <string>

namespace {

boost::json::value json(const char* text)
{
    return boost::json::parse(text);
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
}
