#!/usr/bin/env bash
# The secret canary: runs the whole ctest suite (unit, integration, command line, examples)
# with the API key set to a random marker, then fails if the marker appears in any output,
# log line or error text, or in any file the tests left in their temporary directory or
# the build tree.
#
#   scripts/secret_canary.sh [BUILD_DIR] [ctest args...]     (default: build)
#
# $LENS_TEST_API_KEY carries the marker: the integration tests' emulators accept only it and
# their clients hold it (tests/integration/secret.hpp), keys a test gets wrong on purpose
# or hands to a hostile peer are the marker plus a suffix, every log record and every
# expected error's text is echoed to stderr, and the examples and `tests/cli` use it too.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
[[ -f $build/CTestTestfile.cmake ]] || { echo "secret_canary: no ctest tree in $build" >&2; exit 2; }

marker="lens-canary-$(openssl rand -hex 16)"
work=$(mktemp -d "${TMPDIR:-/tmp}/lens-canary.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tmp"
touch "$work/start"

# The scanner must find what it looks for: a planted file is its own first test.
printf 'x%sx\n' "$marker" >"$work/tmp/planted"
grep -rqF -- "$marker" "$work/tmp" || { echo "secret_canary: the scanner finds nothing (grep broken?)" >&2; exit 2; }
rm "$work/tmp/planted"

echo "secret canary: ctest with LENS_TEST_API_KEY set to a random marker"
(cd "$build" && LENS_TEST_API_KEY=$marker TMPDIR=$work/tmp ctest --output-on-failure -j2 "$@") 2>&1 |
    tee "$work/ctest.log"
status=${PIPESTATUS[0]}

# Everything written: the output, what is left in the temporary directory, the build tree's
# files written during the run (ctest's own logs included).
leaks=$( {
    grep -lF -- "$marker" "$work/ctest.log"
    grep -rlF -- "$marker" "$work/tmp"
    find "$build" -type f -newer "$work/start" -size -64M -print0 | xargs -0r grep -lF -- "$marker"
} 2>/dev/null | sort -u)

if [[ -n $leaks ]]; then
    echo "secret canary: FAIL - the API key appears in:" >&2
    while IFS= read -r file; do
        echo "  $file" >&2
        grep -nF -- "$marker" "$file" | head -n 5 | sed "s/$marker/<KEY>/g; s/^/      /" >&2
    done <<<"$leaks"
    exit 1
fi
echo "secret canary: the key appears in no output and no file ($(wc -l <"$work/ctest.log") lines scanned)"
exit "$status"
