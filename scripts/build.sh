#!/usr/bin/env bash
# Configures (once) and builds lens. Usage: scripts/build.sh [release|sanitize]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
flavour=${1:-release}
case "$flavour" in
  release)  dir="$root/build";          flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  sanitize) dir="$root/build-sanitize"; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DLENS_SANITIZE=ON) ;;
  *) echo "usage: $0 [release|sanitize]" >&2; exit 2 ;;
esac
[ -f "$dir/build.ninja" ] || cmake -S "$root" -B "$dir" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$dir"
