// Base64 through OpenSSL's EVP encoder (no line breaks).
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace lens::detail {
std::string base64_encode(std::string_view bytes);
/// nullopt when `text` is not valid base64.
std::optional<std::string> base64_decode(std::string_view text);
} // namespace lens::detail
