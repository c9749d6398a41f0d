#!/usr/bin/env bash
# Configures (once) and builds lens. Usage: scripts/build.sh [release|sanitize|tsan]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
flavour=${1:-release}
targets=()
case "$flavour" in
  release)  dir="$root/build";          flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  # The sanitizer build runs the tests, so it builds what they run; the benchmarks are
  # built (and so compile-checked) by the release flavour.
  sanitize) dir="$root/build-sanitize"; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DLENS_SANITIZE=ON -DLENS_BUILD_BENCHMARKS=OFF) ;;
  # ThreadSanitizer: only what the multi-thread tests need (scripts/test.sh tsan).
  tsan)     dir="$root/build-tsan";     flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DLENS_TSAN=ON
              -DLENS_BUILD_BENCHMARKS=OFF -DLENS_BUILD_EXAMPLES=OFF -DLENS_BUILD_CLI=OFF
              -DLENS_BUILD_DOCS=OFF -DLENS_INSTALL=OFF)
            targets=(--target lens_integration_tests) ;;
  *) echo "usage: $0 [release|sanitize|tsan]" >&2; exit 2 ;;
esac
[ -f "$dir/build.ninja" ] || cmake -S "$root" -B "$dir" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$dir" "${targets[@]}"
