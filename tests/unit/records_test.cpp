// Unit tests of record decoding: status spellings, tolerance, and the api_key scrub.
#include <lens/records.hpp>

#include <lens/error.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace json = boost::json;
using lens::session_status;

namespace {

// The session.status reply from the Lens Events documentation, with the echoed key.
constexpr const char* documented_session = R"({
  "session_id": "lsn-250313c2177253cbaa7a73542edd90",
  "lens_id": "lns-fd669361822b07e2-bc608aa3fdf8b4f9",
  "lens_name": "Activity Monitor",
  "session_status": "LensSessionStatus.SESSION_STATUS_RUNNING",
  "session_endpoint": "wss://api.u1.archetypeai.app/v0.5/lens/sessions/lsn-250313c2177253cbaa7a73542edd90",
  "session_ttl_sec": 86400,
  "registration_timestamp": 1779430869.7525718,
  "last_event_timestamp": 1779430869.7525718,
  "last_update_timestamp": 1779430869.9271567,
  "session_start_timestamp": 1779430869.8115742,
  "session_destroyed_timestamp": null,
  "num_active_connections": 0,
  "num_updates": 1,
  "num_inputs": 0,
  "num_outputs": 2,
  "num_events": 5,
  "input_data_stream_id": null,
  "output_data_stream_id": null,
  "lens_config": {"model_pipeline": [{"processor_name": "x", "api_key": "nested-secret"}]},
  "api_key": "SECRET-KEY-123"
})";

bool mentions_secret(const json::value& v)
{
    auto text = json::serialize(v);
    return text.find("api_key") != std::string::npos || text.find("SECRET") != std::string::npos ||
           text.find("secret") != std::string::npos;
}

} // namespace

TEST_SUITE("records")
{
    TEST_CASE("every session status spelling")
    {
        struct row { const char* raw; session_status want; };
        const row rows[] = {
            {"LensSessionStatus.SESSION_STATUS_REGISTERED", session_status::registered},
            {"LensSessionStatus.SESSION_STATUS_RUNNING", session_status::running},
            {"LensSessionStatus.SESSION_STATUS_FAILED", session_status::failed},
            {"LensSessionStatus.SESSION_STATUS_STALE", session_status::stale},
            {"SESSION_STATUS_REGISTERED", session_status::registered},
            {"SESSION_STATUS_RUNNING", session_status::running},
            {"SESSION_STATUS_FAILED", session_status::failed},
            {"SESSION_STATUS_STALE", session_status::stale},
            {"REGISTERED", session_status::registered},
            {"RUNNING", session_status::running},
            {"FAILED", session_status::failed},
            {"STALE", session_status::stale},
            {"running", session_status::running},
            {"Running", session_status::running},
            {"session_status_failed", session_status::failed},
            {"lenssessionstatus.session_status_stale", session_status::stale},
            {"  RUNNING\n", session_status::running},
            {"3", session_status::running},
            {"6", session_status::failed},
            {"LensSessionStatus.3", session_status::running},
            {"0", session_status::unknown},
            {"1", session_status::unknown},
            {"99999999999999999999999", session_status::unknown},
            {"", session_status::unknown},
            {"garbage", session_status::unknown},
            {"SESSION_STATUS_", session_status::unknown},
            {"SESSION_STATUS_UNSPECIFIED", session_status::unknown},
            {"RUNNINGX", session_status::unknown},
            {"-3", session_status::unknown},
            {"3.0", session_status::unknown},
            {".", session_status::unknown},
        };
        for (const auto& r : rows) {
            CAPTURE(r.raw);
            CHECK(lens::parse_session_status(r.raw) == r.want);
        }
    }

    TEST_CASE("status names")
    {
        CHECK(lens::to_string(session_status::unknown) == "unknown");
        CHECK(lens::to_string(session_status::registered) == "registered");
        CHECK(lens::to_string(session_status::running) == "running");
        CHECK(lens::to_string(session_status::failed) == "failed");
        CHECK(lens::to_string(session_status::stale) == "stale");
        CHECK(lens::to_string(static_cast<session_status>(42)) == "unknown");
    }

    TEST_CASE("the documented session record decodes, without its key")
    {
        auto v = json::parse(documented_session);
        auto r = json::value_to<lens::session_record>(v);
        CHECK(r.session_id == "lsn-250313c2177253cbaa7a73542edd90");
        CHECK(r.lens_id == "lns-fd669361822b07e2-bc608aa3fdf8b4f9");
        CHECK(r.lens_name == "Activity Monitor");
        CHECK(r.session_endpoint.rfind("wss://", 0) == 0);
        CHECK(r.status == session_status::running);
        CHECK(r.status_raw == "LensSessionStatus.SESSION_STATUS_RUNNING");
        REQUIRE(r.session_ttl_sec.has_value());
        CHECK(*r.session_ttl_sec == 86400);
        REQUIRE(r.registration_timestamp.has_value());
        CHECK(*r.registration_timestamp == doctest::Approx(1779430869.7525718));
        CHECK_FALSE(r.session_destroyed_timestamp.has_value());  // null
        CHECK(r.num_updates == 1);
        CHECK(r.num_outputs == 2);
        CHECK(r.num_events == 5);

        CHECK_FALSE(r.raw.contains("api_key"));
        CHECK(r.raw.contains("last_update_timestamp"));  // no typed field, kept in raw
        CHECK_FALSE(mentions_secret(r.raw));
        CHECK_FALSE(mentions_secret(json::value_from(r)));
        CHECK(json::value_from(r).as_object().size() == v.as_object().size() - 1);
    }

    TEST_CASE("the create reply and odd field types")
    {
        auto r = json::value_to<lens::session_record>(json::parse(R"({
            "session_id": "lsn-1", "lens_id": "lns-1", "session_status": 3,
            "session_ttl_sec": "3600", "num_events": "12", "num_inputs": -4,
            "num_outputs": 2.9, "lens_name": null, "session_endpoint": ["not", "a", "string"],
            "registration_timestamp": "yesterday"})"));
        CHECK(r.session_id == "lsn-1");
        CHECK(r.status == session_status::running);
        CHECK(r.status_raw == "3");
        CHECK(r.session_ttl_sec == 3600.0);
        CHECK(r.num_events == 12);
        CHECK(r.num_inputs == 0);
        CHECK(r.num_outputs == 2);
        CHECK(r.lens_name.empty());
        CHECK(r.session_endpoint.empty());
        CHECK_FALSE(r.registration_timestamp.has_value());
        CHECK(r.raw.at("session_endpoint").is_array());  // the raw field is untouched

        auto empty = json::value_to<lens::session_record>(json::parse("{}"));
        CHECK(empty.session_id.empty());
        CHECK(empty.status == session_status::unknown);
        CHECK(empty.status_raw.empty());
        CHECK_FALSE(empty.session_ttl_sec.has_value());
        CHECK(empty.num_events == 0);
    }

    TEST_CASE("garbage status is unknown with the raw text kept")
    {
        auto r = json::value_to<lens::session_record>(
            json::parse(R"({"session_status": "LensSessionStatus.SESSION_STATUS_HIBERNATING"})"));
        CHECK(r.status == session_status::unknown);
        CHECK(r.status_raw == "LensSessionStatus.SESSION_STATUS_HIBERNATING");
    }

    TEST_CASE("unknown fields are kept, and survive value_from")
    {
        auto r = json::value_to<lens::session_record>(json::parse(
            R"({"session_id": "lsn-1", "future_field": {"a": [1, 2]}, "num_widgets": 3})"));
        REQUIRE(r.raw.contains("future_field"));
        CHECK(r.raw.at("future_field").at("a").as_array().size() == 2);
        auto out = json::value_from(r);
        CHECK(out.at("num_widgets") == 3);
        CHECK(out.at("session_id") == "lsn-1");
    }

    TEST_CASE("a non-object record is an invalid_response error")
    {
        for (const char* text : {"null", "[]", "[{\"session_id\": \"lsn-1\"}]", "42", "\"lsn-1\"", "true"}) {
            CAPTURE(text);
            auto v = json::parse(text);
            try {
                (void)json::value_to<lens::session_record>(v);
                FAIL("no exception");
            } catch (const lens::error& e) {
                CHECK(e.code() == lens::errc::invalid_response);
                CHECK(e.operation() == "decode session record");
                CHECK(std::string(e.what()).rfind("decode session record: expected a JSON object", 0) == 0);
            }
            CHECK_THROWS_AS((void)json::value_to<lens::lens_record>(v), lens::error);
            CHECK_THROWS_AS((void)json::value_to<lens::file_record>(v), lens::error);
        }
    }

    TEST_CASE("scrub_secrets removes api_key at every depth and keeps the rest in order")
    {
        auto v = json::parse(R"({
            "a": 1, "api_key": "k1", "b": 2,
            "nested": {"API_KEY": "k2", "keep": true, "deeper": {"Api_Key": "k3", "x": null}},
            "list": [{"api_key": "k4", "y": 1}, [{"api_key": "k5"}], "api_key"],
            "c": 3})");
        lens::scrub_secrets(v);
        CHECK(json::serialize(v) ==
              R"({"a":1,"b":2,"nested":{"keep":true,"deeper":{"x":null}},)"
              R"("list":[{"y":1},[{}],"api_key"],"c":3})");

        json::value scalar = 5;
        lens::scrub_secrets(scalar);
        CHECK(scalar == 5);

        json::object o{{"api_key", "k"}, {"z", 1}};
        lens::scrub_secrets(o);
        CHECK(o.size() == 1);
        CHECK(o.contains("z"));
    }

    TEST_CASE("scrub_secrets copes with deep nesting")
    {
        // Deeper than any call stack would survive if the scrub recursed.
        constexpr int depth = 100000;
        json::value v = json::object{{"api_key", "k"}};
        for (int i = 0; i < depth; ++i) {
            json::object o;
            o["api_key"] = "k";
            o["inner"] = std::move(v);
            json::array a;
            a.emplace_back(std::move(o));
            v = std::move(a);
        }
        lens::scrub_secrets(v);
        // Walk down and take it apart level by level (the destructor would recurse).
        int levels = 0, secrets = 0;
        while (v.is_array()) {
            auto& o = v.as_array().front().as_object();
            secrets += o.contains("api_key");
            json::value inner = std::move(o["inner"]);
            v = std::move(inner);
            ++levels;
        }
        CHECK(levels == depth);
        CHECK(secrets == 0);
        CHECK(v.as_object().empty());
    }

    TEST_CASE("value_from scrubs a raw edited after decoding")
    {
        auto r = json::value_to<lens::session_record>(json::parse(R"({"session_id": "lsn-1"})"));
        r.raw["api_key"] = "added-later";
        CHECK_FALSE(mentions_secret(json::value_from(r)));
    }

    TEST_CASE("lens records")
    {
        auto r = json::value_to<lens::lens_record>(json::parse(R"({
            "lens_id": "lns-1", "lens_name": "Activity Monitor",
            "lens_config": {"model_pipeline": []}, "api_key": "x"})"));
        CHECK(r.lens_id == "lns-1");
        CHECK(r.lens_name == "Activity Monitor");
        CHECK(r.raw.contains("lens_config"));
        CHECK_FALSE(r.raw.contains("api_key"));

        auto list = json::value_to<std::vector<lens::lens_record>>(
            json::parse(R"([{"lens_id": "a"}, {"lens_id": "b", "extra": 1}])"));
        REQUIRE(list.size() == 2);
        CHECK(list[1].lens_id == "b");
        CHECK(json::value_from(list).as_array()[1].at("extra") == 1);
    }

    TEST_CASE("file records: upload replies and metadata entries")
    {
        auto up = json::value_to<lens::file_record>(
            json::parse(R"({"is_valid": true, "file_id": "data.csv", "file_uid": "fil-123"})"));
        CHECK(up.file_id == "data.csv");
        CHECK(up.file_uid == "fil-123");
        CHECK_FALSE(up.file_size.has_value());
        CHECK(up.raw.at("is_valid") == true);

        auto meta = json::value_to<lens::file_record>(json::parse(
            R"({"file_name": "clip.mp4", "file_size": 1048576, "file_uid": "fil-9", "mime": "video/mp4"})"));
        CHECK(meta.file_id == "clip.mp4");  // falls back to file_name
        REQUIRE(meta.file_size.has_value());
        CHECK(*meta.file_size == 1048576);
        CHECK(meta.raw.at("mime") == "video/mp4");

        auto both = json::value_to<lens::file_record>(
            json::parse(R"({"file_id": "a.csv", "file_name": "other.csv", "file_size": "77"})"));
        CHECK(both.file_id == "a.csv");
        CHECK(both.file_size == std::uint64_t(77));
    }
}
