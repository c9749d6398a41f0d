#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang 14, ASan + UBSan) in build-fuzz/ and runs them.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   fuzz each target that long (default 30), starting
#                                               from a copy of its seed corpus (fuzz/corpus/<target>)
#        scripts/fuzz.sh regress                replay every corpus input once (the regression check)
# FUZZ_TARGETS="sse_parser origin" limits the run to those targets; JOBS sets build parallelism.
#
# A crash or a broken invariant fails the run and names the reproducer, which replays with
#     build-fuzz/bin/fuzz_<target> <reproducer>
# Keep it as fuzz/corpus/<target>/regression-<what> once the bug is fixed (with a unit test).
# New inputs found while fuzzing stay in build-fuzz/corpus/<target>, not in the repository.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-30}
build="$root/build-fuzz"

# Dependencies: lens's own, then clang 14 and its libFuzzer runtime (Debian 12).
"$root/scripts/setup.sh"
missing=()
for p in clang-14 libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -ne 0 ]; then
  echo "fuzz: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f "$build/build.ninja" ]; then
  CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DLENS_BUILD_FUZZERS=ON -DLENS_BUILD_TESTS=OFF -DLENS_BUILD_BENCHMARKS=OFF -DLENS_BUILD_EXAMPLES=OFF \
    -DLENS_BUILD_CLI=OFF -DLENS_BUILD_DOCS=OFF -DLENS_INSTALL=OFF >/dev/null
fi
nice cmake --build "$build" --target lens_fuzzers -j"${JOBS:-2}"

targets=${FUZZ_TARGETS:-$(cd "$root/fuzz" && ls -- *.cpp | sed 's/\.cpp$//')}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1}
mkdir -p "$build/artifacts"
failed=()
for t in $targets; do
  bin="$build/bin/fuzz_$t"
  seeds="$root/fuzz/corpus/$t"
  mkdir -p "$seeds"
  if [ "$mode" = regress ]; then
    echo "== $t: replaying $(ls "$seeds" | wc -l) corpus inputs"
    if ! "$bin" -runs=0 -timeout=10 -rss_limit_mb=2048 "$seeds" >"$build/artifacts/$t.log" 2>&1; then
      tail -n 30 "$build/artifacts/$t.log" >&2
      failed+=("$t")
    fi
    continue
  fi
  work="$build/corpus/$t"
  mkdir -p "$work"
  cp "$seeds"/* "$work"/ 2>/dev/null || true   # the current seeds (the work copy keeps what was found)
  echo "== $t: fuzzing for $mode s"
  if ! "$bin" -max_total_time="$mode" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$t-" "$work" >"$build/artifacts/$t.log" 2>&1; then
    tail -n 40 "$build/artifacts/$t.log" >&2
    reproducer=$(grep -o "Test unit written to .*" "$build/artifacts/$t.log" | tail -1 | sed 's/Test unit written to //')
    echo "fuzz: $t FAILED; reproducer: ${reproducer:-see $build/artifacts/$t.log}" >&2
    echo "      replay: $bin ${reproducer:-<input>}" >&2
    failed+=("$t")
  else
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$build/artifacts/$t.log" | tail -1 || true
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all targets passed ($mode)"
