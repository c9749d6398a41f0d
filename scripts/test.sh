#!/usr/bin/env bash
# Builds if needed, then runs the whole test suite (unit, integration, command line).
# Usage: scripts/test.sh [release|sanitize|tsan]
#   sanitize: AddressSanitizer + UBSan build, whole suite.
#   tsan:     ThreadSanitizer build (build-tsan) of the integration tests; runs the
#             multi-thread ones (the runtime's), halting on the first report.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
flavour=${1:-release}
"$root/scripts/build.sh" "$flavour"
if [ "$flavour" = tsan ]; then
    # second_deadlock_stack: both stacks of a lock-order inversion.
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
    # Without address randomization: GCC 12's ThreadSanitizer fails at start ("unexpected
    # memory mapping") on kernels that randomize mmap with more bits than it expects.
    norandom=()
    if setarch "$(uname -m)" -R true 2>/dev/null; then norandom=(setarch "$(uname -m)" -R); fi
    # The runtime's tests, and the other tests that use more than one thread.
    "${norandom[@]}" "$root/build-tsan/bin/lens_integration_tests" \
        -tc="runtime:*,completion tokens: use_future from another thread,completion tokens: plain callbacks*,an emulator on its own thread*,stop() ends a request waiting*"
    exit
fi
dir="$root/build"; [ "$flavour" = sanitize ] && dir="$root/build-sanitize"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [ "$flavour" = release ]; then
    # The release suite runs under the secret canary: the API key is a random marker that
    # must appear in no output and no file (scripts/secret_canary.sh).
    "$root/scripts/secret_canary.sh" "$dir"
else
    (cd "$dir" && ctest --output-on-failure -j2)
fi
# Every doctest case ran under ctest, exactly once (names with ";" would silently run nothing).
"$root/scripts/check_ctest_cases.sh" "$dir"
