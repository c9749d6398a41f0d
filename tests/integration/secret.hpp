// The API key the integration tests use, and the emulator options that accept it.
//
// Normally the emulator's default key. Under scripts/secret_canary.sh, $LENS_TEST_API_KEY
// holds a random marker: every client of the suite then holds the marker as its key (and
// the emulator accepts only it), error texts and log records are echoed to stderr
// (see `canary_mode`), and the script fails if the marker appears in any output or any
// file the tests leave behind. Keys a test deliberately gets wrong or hands to a hostile
// peer come from `test_key(role)`: the marker with a suffix, so a leak of those shows too.
#pragma once

#include <lens/emulator.hpp>

#include <cstdlib>
#include <string>
#include <string_view>

namespace lens::test {

/// True under the secret canary ($LENS_TEST_API_KEY set and not empty).
inline bool canary_mode()
{
    const char* v = std::getenv("LENS_TEST_API_KEY");
    return v != nullptr && *v != '\0';
}

/// The key the emulators of the suite accept: the canary's marker, else the emulator's default.
inline std::string test_key()
{
    return canary_mode() ? std::string(std::getenv("LENS_TEST_API_KEY")) : lens::emulator::options{}.api_key;
}

/// Another secret a test needs (a wrong key, a hostile peer's key), named by its `role`:
/// `role` itself normally, the canary's marker followed by "-" and `role` under the canary.
inline std::string test_key(std::string_view role)
{
    return canary_mode() ? test_key() + "-" + std::string(role) : std::string(role);
}

/// Default emulator options, accepting `test_key()`.
inline lens::emulator::options emulator_options()
{
    lens::emulator::options o;
    o.api_key = test_key();
    return o;
}

} // namespace lens::test
