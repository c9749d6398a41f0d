#!/usr/bin/env bash
# The benchmark suite in one command: lens beside raw Beast (the floors), Python aiohttp
# and websocket-client, all against one server process in the same run.
#
#   benchmarks/run.sh [--quick] [--out DIR] [-- extra suite.py options]
#
# Builds the release tree if the suite's binaries are missing (scripts/build.sh), else
# brings those binaries up to date; installs the Debian packages it needs (python3,
# python3-aiohttp, python3-websocket, gnuplot-nox); runs benchmarks/suite.py; writes
# results.json, results.md and *.png to DIR (default benchmarks/results/<UTC date-time>).
# --quick: about 2 minutes (smoke check); the full run: about 10-15 minutes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
quick=()
out=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick) ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--quick] [--out DIR] [-- suite.py options]" >&2; exit 2 ;;
  esac
  shift
done

# Debian's python3 (not a pyenv or venv one first on PATH): the Debian modules live there.
packages=(python3 python3-aiohttp python3-websocket gnuplot-nox)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bins=(bench_ws_clients bench_ws_responder)
if [ -f "$root/build/build.ninja" ] && [ -x "$root/build/bin/${bins[0]}" ] && [ -x "$root/build/bin/${bins[1]}" ]; then
  cmake --build "$root/build" --target "${bins[@]}" >&2
else
  "$root/scripts/build.sh" release >&2
fi

[ -n "$out" ] || out="$root/benchmarks/results/$(date -u +%Y-%m-%dT%H%M%SZ)"
mkdir -p "$out"
# Many idle sessions need as many descriptors, in the client and in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 "$root/benchmarks/suite.py" --bin "$root/build/bin" --out "$out" "${quick[@]}" "${extra[@]}"
