// Lens configuration files for `lens run --config` and `lens lenses register|modify`:
// YAML (as the official SDK's examples write them) or JSON, read into Boost.JSON.
//
// The file is untrusted input: its size, nesting depth and node count (aliases
// included) are bounded, and every error is one line naming the file, the line and
// column when known, and the cause:
//
//     lens.yaml:4:13: YAML: illegal map value
//     lens.json:2:5: JSON: syntax error
//     lens.yaml: cannot open: No such file or directory
//
// YAML scalars are typed by the YAML 1.2 core schema, the rules JSON users expect:
// plain `42`, `-0x1F`, `0o17` are integers, `1.5`, `1e3`, `.5` numbers, `true`/`false`
// (any case variant the spec lists) booleans, `null`, `~` and an empty value null; a
// quoted or block scalar (`"42"`, `'true'`, `|`) is always a string, and so is
// every other plain scalar (`yes`, `no`, `on` and `off` too, unlike YAML 1.1). Explicit
// tags `!!str`, `!!int`, `!!float`, `!!bool`, `!!null` force a type; other tags, `.inf`
// and `.nan` (not representable in JSON), non-scalar keys and duplicate keys are errors.
// Merge keys (`<<: *base`) merge a mapping or a list of mappings, keys already present
// winning.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lens::cli {

/// A configuration file that cannot be used; `what()` is one line naming the file.
class config_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Bounds applied to every configuration document.
struct config_limits {
    std::size_t max_file_bytes = std::size_t(1) << 20; ///< the file itself (1 MiB)
    std::size_t max_depth = 64;                        ///< nested mappings and sequences
    std::size_t max_nodes = 100000;                    ///< values produced, aliases expanded
};

/// Parses YAML `text` into JSON (see the file comment for the typing rules). `origin`
/// names the text in errors. Exactly one document is accepted; an empty one is an error.
boost::json::value parse_yaml(std::string_view text, std::string_view origin, const config_limits& limits = {});

/// Parses JSON `text` (a leading UTF-8 BOM is skipped); errors give the line and column.
boost::json::value parse_json(std::string_view text, std::string_view origin, const config_limits& limits = {});

/// Reads `path` (at most `limits.max_file_bytes`) as JSON when it is named `*.json`,
/// as YAML when it is named `*.yaml` or `*.yml`, else by content: JSON when its first
/// non-blank character is `{`, YAML otherwise.
boost::json::value load_config_file(const std::filesystem::path& path, const config_limits& limits = {});

/// What `lens/register` needs: the name and the inner `lens_config`.
struct lens_definition {
    std::string lens_name;          ///< empty when the document has none
    boost::json::object lens_config; ///< `model_parameters`, `model_pipeline`, `input_streams`, `output_streams`
};

/// The lens definition in `doc`, which may take any of three shapes:
/// - the SDK's document: `{lens_name, lens_config: {model_parameters, ...}}`;
/// - the `lens/register` request body: `{lens_config: {lens_name, lens_config: {...}}}`;
/// - a bare configuration: `{model_parameters, model_pipeline, input_streams, output_streams}`.
/// Throws config_error naming `origin` for anything else, or a `lens_name` that is not a string.
lens_definition lens_definition_of(const boost::json::value& doc, std::string_view origin);

} // namespace lens::cli
