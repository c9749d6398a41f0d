#!/usr/bin/env bash
# Builds if needed, then runs the whole test suite (unit, integration, command line).
# Usage: scripts/test.sh [release|sanitize]   — sanitize: AddressSanitizer + UBSan build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
flavour=${1:-release}
"$root/scripts/build.sh" "$flavour"
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
