// Unit tests of lens configuration files (src/cli/config_file.cpp): the YAML -> JSON typing
// rules, the bounds on untrusted documents, error positions, and the three document shapes.
#include "cli/config_file.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace json = boost::json;
using lens::cli::config_error;
using lens::cli::config_limits;
using lens::cli::parse_json;
using lens::cli::parse_yaml;

namespace {

json::value yaml(std::string_view text) { return parse_yaml(text, "t.yaml"); }

/// The value of `key: <scalar>` in YAML.
json::value scalar(std::string_view scalar_text)
{
    return yaml("key: " + std::string(scalar_text)).as_object().at("key");
}

/// The message of the config_error `f` throws, or "" when it throws none.
template <class F>
std::string error_of(F f)
{
    try {
        f();
    } catch (const config_error& e) {
        return e.what();
    }
    return {};
}

/// A file in a fresh temporary directory, removed with it.
struct temp_file {
    std::filesystem::path dir;
    std::filesystem::path path;
    temp_file(const std::string& name, const std::string& contents)
    {
        std::string pattern = (std::filesystem::temp_directory_path() / "lens-config-test.XXXXXX").string();
        dir = ::mkdtemp(pattern.data());
        path = dir / name;
        std::ofstream(path, std::ios::binary) << contents;
    }
    ~temp_file() { std::filesystem::remove_all(dir); }
};

} // namespace

TEST_SUITE("config file")
{
    TEST_CASE("plain YAML scalars follow the core schema")
    {
        CHECK(scalar("42") == json::value(std::int64_t(42)));
        CHECK(scalar("-7") == json::value(std::int64_t(-7)));
        CHECK(scalar("+7") == json::value(std::int64_t(7)));
        CHECK(scalar("0x1F") == json::value(std::int64_t(31)));
        CHECK(scalar("0o17") == json::value(std::int64_t(15)));
        CHECK(scalar("18446744073709551615") == json::value(std::uint64_t(18446744073709551615ull)));
        CHECK(scalar("-9223372036854775808").as_int64() == INT64_MIN);
        CHECK(scalar("1.5") == json::value(1.5));
        CHECK(scalar(".5") == json::value(0.5));
        CHECK(scalar("1e3") == json::value(1000.0));
        CHECK(scalar("-2.5E-1") == json::value(-0.25));
        CHECK(scalar("true") == json::value(true));
        CHECK(scalar("False") == json::value(false));
        CHECK(scalar("null").is_null());
        CHECK(scalar("~").is_null());
        CHECK(yaml("key:").as_object().at("key").is_null());
    }

    TEST_CASE("other plain scalars stay text, YAML 1.1 booleans included")
    {
        for (const char* text : {"yes", "no", "on", "off", "Newton::c2_4_7b_251215a172f6d7", "1.2.3", "0x", "12abc",
                                 "2024-01-01", "tRUE", "nULL", "1_000"}) {
            CAPTURE(text);
            CHECK(scalar(text) == json::value(text));
        }
        CHECK(scalar("Describe the pump's state.") == json::value("Describe the pump's state."));
    }

    TEST_CASE("quoted and block scalars are always strings")
    {
        CHECK(scalar("\"42\"") == json::value("42"));
        CHECK(scalar("'true'") == json::value("true"));
        CHECK(scalar("'null'") == json::value("null"));
        CHECK(scalar("\"\"") == json::value(""));
        auto block = yaml("key: |\n  line one\n  line two\n").as_object().at("key");
        CHECK(block == json::value("line one\nline two\n"));
        auto folded = yaml("key: >\n  42\n").as_object().at("key");
        CHECK(folded == json::value("42\n"));
    }

    TEST_CASE("explicit core tags force the type")
    {
        CHECK(scalar("!!str 42") == json::value("42"));
        CHECK(scalar("!!str true") == json::value("true"));
        CHECK(scalar("!!int \"42\"") == json::value(std::int64_t(42)));
        CHECK(scalar("!!float 3") == json::value(3.0));
        CHECK(scalar("!!bool 'true'") == json::value(true));
        CHECK(scalar("!!null ''").is_null());
        CHECK(scalar("! 42") == json::value("42"));
        CHECK(error_of([] { scalar("!!int abc"); }).find("'abc' is not a valid !!int") != std::string::npos);
        CHECK(error_of([] { scalar("!!binary aGVsbG8="); }).find("unsupported YAML tag") != std::string::npos);
        CHECK(error_of([] { scalar("!custom 1"); }).find("unsupported YAML tag !custom") != std::string::npos);
    }

    TEST_CASE("sequences, mappings and nesting map to arrays and objects in order")
    {
        auto v = yaml("lens_name: pump\n"
                      "lens_config:\n"
                      "  model_pipeline:\n"
                      "    - processor_name: lens_sensor_logs_processor\n"
                      "  model_parameters: {max_new_tokens: 256, focus: \"vibration\"}\n"
                      "  output_streams:\n"
                      "    - stream_type: server_sent_events_writer\n"
                      "  sizes: [1, 2.5, x]\n");
        auto expected = json::parse(R"({"lens_name":"pump","lens_config":{
            "model_pipeline":[{"processor_name":"lens_sensor_logs_processor"}],
            "model_parameters":{"max_new_tokens":256,"focus":"vibration"},
            "output_streams":[{"stream_type":"server_sent_events_writer"}],
            "sizes":[1,2.5,"x"]}})");
        CHECK(json::serialize(v) == json::serialize(expected));
    }

    TEST_CASE("JSON text is valid YAML and keeps its types")
    {
        auto v = yaml(R"({"a": "42", "b": 42, "c": [true, null, "x"], "d": 1.25})");
        CHECK(json::serialize(v) == R"({"a":"42","b":42,"c":[true,null,"x"],"d":1.25E0})");
    }

    TEST_CASE("merge keys merge mappings, explicit keys winning")
    {
        auto v = yaml("base: &base {a: 1, b: 2}\n"
                      "other: &other {b: 3, c: 4}\n"
                      "derived:\n"
                      "  <<: [*base, *other]\n"
                      "  a: 10\n");
        CHECK(json::serialize(v.as_object().at("derived")) == R"({"a":10,"b":2,"c":4})");
        // A quoted "<<" is an ordinary key.
        CHECK(json::serialize(yaml("'<<': 1")) == R"({"<<":1})");
        CHECK(error_of([] { yaml("<<: 5\n"); }).find("merge key") != std::string::npos);
    }

    TEST_CASE("errors name the file, the line and the column")
    {
        auto e = error_of([] { yaml("lens_name: x\nlens_config:\n  focus: [unclosed\n"); });
        CHECK(e.starts_with("t.yaml:"));
        CHECK(e.find("YAML: ") != std::string::npos);
        e = error_of([] { yaml("a: 1\nb: 2\na: 3\n"); });
        CHECK(e == "t.yaml:3:1: duplicate key 'a'");
        e = error_of([] { yaml("a:\n  - x\n  - .inf\n"); });
        CHECK(e == "t.yaml:3:5: .inf cannot be represented in JSON");
        CHECK(error_of([] { scalar(".nan"); }).find("cannot be represented in JSON") != std::string::npos);
        CHECK(error_of([] { scalar("99999999999999999999"); }).find("out of range") != std::string::npos);
        CHECK(error_of([] { scalar("-9223372036854775809"); }).find("out of range") != std::string::npos);
        CHECK(error_of([] { scalar("1e999"); }).find("out of range") != std::string::npos);
        CHECK(error_of([] { yaml("? [a, b]\n: 1\n"); }).find("mapping key that is not a plain text") != std::string::npos);
        CHECK(error_of([] { yaml(""); }) == "t.yaml: the document is empty");
        CHECK(error_of([] { yaml("# only a comment\n"); }) == "t.yaml: the document is empty");
        CHECK(error_of([] { yaml("a: 1\n---\nb: 2\n"); }).find("more than one YAML document") != std::string::npos);
        CHECK(error_of([] { yaml("a: \"\xC3\x28\"\n"); }).find("not UTF-8") != std::string::npos);

        e = error_of([] { parse_json("{\n  \"a\": 1,\n  \"b\": ]\n}", "t.json"); });
        CHECK(e.starts_with("t.json:3:8: JSON: "));
        CHECK(error_of([] { parse_json("{} {}", "t.json"); }).starts_with("t.json:1:4: JSON: "));
        CHECK(error_of([] { parse_json("", "t.json"); }).starts_with("t.json:1:1: JSON: "));
        CHECK(parse_json("\xEF\xBB\xBF{\"a\": 1}", "t.json") == json::parse(R"({"a":1})"));
    }

    TEST_CASE("untrusted documents are bounded: size, depth and aliases")
    {
        config_limits small;
        small.max_file_bytes = 16;
        CHECK(error_of([&] { parse_yaml("a: 0123456789abcdef", "t.yaml", small); }).find("larger than 16 bytes") !=
              std::string::npos);
        CHECK(error_of([&] { parse_json("[0123456789abcdef]", "t.json", small); }).find("larger than 16 bytes") !=
              std::string::npos);

        const std::string deep = std::string(100, '[') + std::string(100, ']');
        CHECK(error_of([&] { yaml(deep); }).find("nested deeper than 64 levels") != std::string::npos);
        CHECK_FALSE(error_of([&] { parse_json(deep, "t.json"); }).empty());

        // A billion laughs: ten levels of ten aliases each would be 10^10 values.
        std::string laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
        for (char c = 'b'; c <= 'k'; ++c) {
            const char prev = static_cast<char>(c - 1);
            laughs += std::string(1, c) + ": &" + c + " [";
            for (int i = 0; i < 10; ++i)
                laughs += std::string(i ? ", " : "") + "*" + prev;
            laughs += "]\n";
        }
        CHECK(error_of([&] { yaml(laughs); }).find("aliases expanding") != std::string::npos);
    }

    TEST_CASE("load_config_file chooses JSON or YAML by name, else by content")
    {
        temp_file as_json("lens.json", R"({"lens_name": "n", "lens_config": {"focus": "42"}})");
        CHECK(lens::cli::load_config_file(as_json.path).at("lens_config").at("focus") == json::value("42"));

        temp_file as_yaml("lens.yml", "lens_name: n\nlens_config: {max_new_tokens: 256}\n");
        CHECK(lens::cli::load_config_file(as_yaml.path).at("lens_config").at("max_new_tokens") ==
              json::value(std::int64_t(256)));

        temp_file sniffed_json("lens.conf", "  {\"a\": \"1\"}");
        CHECK(lens::cli::load_config_file(sniffed_json.path).at("a") == json::value("1"));
        temp_file sniffed_yaml("lens.conf", "a: 1\n");
        CHECK(lens::cli::load_config_file(sniffed_yaml.path).at("a") == json::value(std::int64_t(1)));

        // .json is JSON even when it would be valid YAML.
        temp_file yaml_in_json("lens.json", "a: 1\n");
        CHECK(error_of([&] { lens::cli::load_config_file(yaml_in_json.path); }).find(": JSON: ") != std::string::npos);

        const auto missing = as_json.dir / "missing.yaml";
        CHECK(error_of([&] { lens::cli::load_config_file(missing); }) ==
              missing.string() + ": cannot open: No such file or directory");
        CHECK(error_of([&] { lens::cli::load_config_file(as_json.dir); }).find("it is a directory") !=
              std::string::npos);
    }

    TEST_CASE("lens_definition_of accepts the SDK document, the register body and a bare configuration")
    {
        using lens::cli::lens_definition_of;
        auto sdk = lens_definition_of(json::parse(R"({"lens_name":"a","lens_config":{"model_parameters":{}}})"), "f");
        CHECK(sdk.lens_name == "a");
        CHECK(json::serialize(sdk.lens_config) == R"({"model_parameters":{}})");

        auto body = lens_definition_of(
            json::parse(R"({"lens_config":{"lens_name":"b","lens_config":{"output_streams":[]}}})"), "f");
        CHECK(body.lens_name == "b");
        CHECK(json::serialize(body.lens_config) == R"({"output_streams":[]})");

        auto bare = lens_definition_of(json::parse(R"({"model_pipeline":[],"lens_name":"c"})"), "f");
        CHECK(bare.lens_name == "c");
        CHECK(json::serialize(bare.lens_config) == R"({"model_pipeline":[]})");

        auto unnamed = lens_definition_of(json::parse(R"({"lens_config":{}})"), "f");
        CHECK(unnamed.lens_name.empty());

        CHECK(error_of([] { lens_definition_of(json::parse("[1]"), "f"); }).starts_with("f: a lens configuration is"));
        CHECK(error_of([] { lens_definition_of(json::parse(R"({"lens_confg":{}})"), "f"); }).starts_with("f: no lens_config"));
        CHECK(error_of([] { lens_definition_of(json::parse(R"({"lens_config":[]})"), "f"); })
                  .starts_with("f: lens_config must be a mapping"));
        CHECK(error_of([] { lens_definition_of(json::parse(R"({"lens_name":1,"lens_config":{}})"), "f"); }) ==
              "f: lens_name must be a string");
    }
}
