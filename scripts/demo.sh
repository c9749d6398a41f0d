#!/usr/bin/env bash
# Builds if needed, then runs `lens demo` against an in-process emulator.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh" release >/dev/null
exec "$root/build/bin/lens" demo "$@"
