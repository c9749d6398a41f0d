// The secret canary's own premise: under scripts/secret_canary.sh the suite's clients really
// hold the marker as their key (and the emulators accept it), so a leak of the key anywhere
// would show the marker in the output the script scans.
#include "integration/fixture.hpp"

#include <cstdlib>

namespace {

using lens::test::fixture;

TEST_CASE("secret canary: the fixture's clients hold the suite's key and the emulator accepts it")
{
    fixture f;
    CHECK(f.cfg.api_key == lens::test::test_key());
    CHECK(f.server.api_key() == lens::test::test_key());
    if (lens::test::canary_mode()) {
        CHECK(f.cfg.api_key == std::getenv("LENS_TEST_API_KEY"));
        CHECK(lens::test::test_key("wrong").starts_with(f.cfg.api_key));
    } else {
        CHECK(f.cfg.api_key == lens::emulator::options{}.api_key);
        CHECK(lens::test::test_key("wrong") == "wrong");
    }
    f.run([&]() -> lens::task<void> {
        auto c = f.make_client();
        auto lenses = co_await c.list_lenses(); // authenticated with the key above
        CHECK_FALSE(lenses.empty());
    });
}

} // namespace
