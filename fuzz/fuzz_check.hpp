// What every fuzz target shares: invariant checks that end the run (a finding, with a
// reproducer written by libFuzzer), and a deterministic stream of choices.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>

/// Checks an invariant of the code under test: on violation prints what and where,
/// then aborts (libFuzzer keeps the input as crash-<sha1>). Not `assert`: active in
/// every build type.
#define FUZZ_REQUIRE(cond)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            std::fprintf(stderr, "fuzz invariant violated: %s\n  at %s:%d\n", #cond,        \
                         __FILE__, __LINE__);                                              \
            std::abort();                                                                  \
        }                                                                                  \
    } while (false)

namespace lens::fuzz {

/// SplitMix64: the same choices for the same seed on every platform (the input, not a
/// global generator, decides everything, so every finding reproduces).
class choices {
public:
    explicit choices(std::uint64_t seed) noexcept : state_(seed) {}
    std::uint64_t next() noexcept
    {
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    /// Uniform enough in [0, n) (n > 0).
    std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }

private:
    std::uint64_t state_;
};

} // namespace lens::fuzz
