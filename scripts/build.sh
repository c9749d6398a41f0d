#!/usr/bin/env bash
# Configures (once) and builds lens. Usage: scripts/build.sh [release|sanitize|tsan]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
flavour=${1:-release}
targets=()
# The sanitizer flavours compile at -O1 with line tables only (-g1): what the sanitizers
# recommend, enough for symbolized reports, and half the compile time of -O2 -g (session.cpp
# under ASan: 138 s against 266 s), which is most of CI's time on a cold machine.
checked=("-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
case "$flavour" in
  release)  dir="$root/build";          flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  # The sanitizer build runs the tests, so it builds what they run; the benchmarks are
  # built (and so compile-checked) by the release flavour.
  sanitize) dir="$root/build-sanitize"; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "${checked[@]}" -DLENS_SANITIZE=ON -DLENS_BUILD_BENCHMARKS=OFF) ;;
  # ThreadSanitizer: only what the multi-thread tests need (scripts/test.sh tsan).
  tsan)     dir="$root/build-tsan";     flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "${checked[@]}" -DLENS_TSAN=ON
              -DLENS_BUILD_BENCHMARKS=OFF -DLENS_BUILD_EXAMPLES=OFF -DLENS_BUILD_CLI=OFF
              -DLENS_BUILD_DOCS=OFF -DLENS_INSTALL=OFF)
            targets=(--target lens_integration_tests) ;;
  *) echo "usage: $0 [release|sanitize|tsan]" >&2; exit 2 ;;
esac
[ -f "$dir/build.ninja" ] || cmake -S "$root" -B "$dir" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$dir" "${targets[@]}"
