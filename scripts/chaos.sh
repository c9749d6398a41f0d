#!/usr/bin/env bash
# lens under fire, the long version (the short one is part of ctest):
#   100 sessions querying and streaming for 30 s through the fault proxy, over ws and wss;
#   a 60 s soak (silent peers, abandoned large queries, a stream resume per event).
# Each run prints one JSON line of figures; the script fails if any run fails.
# Usage: scripts/chaos.sh [SECONDS]   (default 30; the soak runs twice as long)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-30}
"$root/scripts/setup.sh"
[ -f "$root/build/build.ninja" ] || cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" --target lens_chaos
bin="$root/build/bin/lens_chaos"
status=0
run() { echo "== lens_chaos $*" >&2; "$bin" "$@" || status=1; }
run chaos --sessions 100 --seconds "$seconds" --seed 1
run chaos --sessions 100 --seconds "$seconds" --seed 2 --tls
run soak --sessions 50 --seconds $((seconds * 2)) --seed 3
[ $status -eq 0 ] && echo "chaos: every run passed" >&2 || echo "chaos: FAILED" >&2
exit $status
