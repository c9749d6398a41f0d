#!/usr/bin/env bash
# Fails unless ctest ran every doctest case exactly once, and nothing else.
#
# doctest_discover_tests turns each case into a ctest entry that runs the binary with
# `--test-case=<name>`. A name with ';' is split by CMake into two entries whose filters
# match nothing: doctest then runs 0 cases and exits 0, and ctest reports "Passed". This
# check compares the cases each test binary lists with the entries ctest knows, and
# reads ctest's last log to see that every entry ran exactly one case.
#
# Usage: scripts/check_ctest_cases.sh BUILD_DIR   (after ctest has run in BUILD_DIR)
set -euo pipefail
dir=${1:?usage: $0 BUILD_DIR}
cd "$dir"
status=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# First: every ctest invocation, `ctest -N` included, rewrites the log.
log=Testing/Temporary/LastTest.log
[ -f "$log" ] && cp "$log" "$tmp/last.log"

# prefix:binary pairs, as CMakeLists.txt registers them
for pair in "unit:lens_unit_tests" "integration:lens_integration_tests"; do
  prefix=${pair%%:*}:   # CMake drops the space of TEST_PREFIX "unit: "
  binary=bin/${pair##*:}
  [ -x "$binary" ] || { echo "check_ctest_cases: $binary missing" >&2; exit 1; }
  "$binary" --list-test-cases --no-version | sed -n 's/^\(.*\)$/\1/p' \
    | grep -vE '^\[doctest\]|^=+$' | sed '/^$/d' | sort > "$tmp/listed"
  ctest -N | sed -n "s/^ *Test *#[0-9]*: ${prefix} \{0,1\}//p" | sort > "$tmp/registered"
  if ! diff -u "$tmp/listed" "$tmp/registered" > "$tmp/diff"; then
    echo "check_ctest_cases: the cases of $binary and the ctest entries '${prefix}*' differ:" >&2
    cat "$tmp/diff" >&2
    status=1
  fi
  bad=$(grep -c ';' "$tmp/listed" || true)
  if [ "$bad" != 0 ]; then
    echo "check_ctest_cases: $bad case names of $binary contain ';'" >&2
    status=1
  fi
done

# Every doctest run in the last ctest log ran exactly one case.
if [ -f "$tmp/last.log" ]; then
  runs=$(grep -cE '^\[doctest\] test cases: *[0-9]+ ' "$tmp/last.log" || true)
  ones=$(grep -cE '^\[doctest\] test cases: *1 \| *1 passed' "$tmp/last.log" || true)
  entries=$(ctest -N | grep -cE '^ *Test *#[0-9]+: (unit|integration):' || true)
  if [ "$runs" != "$entries" ] || [ "$ones" != "$entries" ]; then
    echo "check_ctest_cases: $entries doctest entries, $runs doctest runs in $log, $ones ran and passed exactly one case" >&2
    grep -nE '^\[doctest\] test cases: *(0|[2-9]|[0-9]{2,}) ' "$tmp/last.log" | head -20 >&2 || true
    status=1
  else
    echo "check_ctest_cases: $entries ctest entries, each ran exactly one doctest case"
  fi
else
  echo "check_ctest_cases: no $log (run ctest first)" >&2
  status=1
fi
exit $status
