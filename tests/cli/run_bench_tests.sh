#!/usr/bin/env bash
# End-to-end tests of `lens bench` (the load generator) and `lens bench merge`.
#
#   tests/cli/run_bench_tests.sh path/to/lens
#
# A fixed request budget against the emulator bench starts itself (a child process), a
# short --duration run with --sse, a run against an emulator started here (--endpoint),
# merging the histograms of two runs, usage errors, and Ctrl-C: SIGINT once the live
# line shows the run going, then exit status 130 and no session left on the server.
# No sleeps: the live line is read from a FIFO (with a timeout). Each run takes a second
# or two; the key (LENS_TEST_API_KEY under the secret canary) must never be printed.
set -u

LENS=${1:?usage: run_bench_tests.sh path/to/lens}
[[ -x "$LENS" ]] || { echo "FAIL: $LENS is not an executable" >&2; exit 1; }
unset ARCHETYPE_API_KEY ARCHETYPE_API_ENDPOINT

KEY=${LENS_TEST_API_KEY:-emulator-key}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lens-bench-test.XXXXXX")
EMU_PIDS=()
BENCH_PID=
failures=0
checks=0

cleanup() {
    [[ -n $BENCH_PID ]] && kill -9 "$BENCH_PID" 2>/dev/null
    for pid in "${EMU_PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# shellcheck source=tests/cli/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
command -v python3 >/dev/null 2>&1 || { echo "SKIP: bench tests need python3 to read JSON"; exit 0; }

# run_lens NAME ARGS...: runs lens, leaving $TMP/NAME.out, $TMP/NAME.err and $TMP/NAME.rc.
run_lens() {
    local name=$1
    shift
    timeout 60 "$LENS" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    echo $? >"$TMP/$name.rc"
}

# no_secret NAME: the key appears in neither stream.
no_secret() {
    if grep -qF -- "$KEY" "$TMP/$1.out" "$TMP/$1.err"; then fail "$1: the API key appears in the output"; else pass; fi
}

# check_result NAME PYTHON-CONDITION...: NAME's stdout is one JSON line with every field of
# the result, and each condition (a Python expression over `r`, the parsed line) holds.
check_result() {
    local name=$1
    shift
    local rc
    rc=$(cat "$TMP/$name.rc")
    if [[ $rc != 0 ]]; then
        fail "$name: exit status $rc: $(head -c 500 "$TMP/$name.err")"
        return 1
    fi
    no_secret "$name"
    local verdict
    verdict=$(python3 - "$TMP/$name.out" "$@" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
if len(lines) != 1:
    print(f"expected one line on stdout, got {len(lines)}"); sys.exit()
r = json.loads(lines[0])
fields = ["sessions", "requests", "errors", "errors_by_code", "rps", "p50_us", "p90_us", "p99_us",
          "p999_us", "max_us", "connect_s", "cpu_us_per_request", "rss_kb", "rss_per_session_kb"]
missing = [f for f in fields if f not in r]
if missing:
    print(f"missing fields {missing} in {lines[0]}"); sys.exit()
if not isinstance(r["errors_by_code"], dict) or sum(r["errors_by_code"].values()) != r["errors"]:
    print(f"errors_by_code does not add up to errors: {lines[0]}"); sys.exit()
if r["requests"] > r["errors"] and not (0 < r["p50_us"] <= r["p90_us"] <= r["p99_us"] <= r["p999_us"] <= r["max_us"]):
    print(f"percentiles out of order: {lines[0]}"); sys.exit()
for cond in sys.argv[2:]:
    if not eval(cond):
        print(f"{cond} does not hold: {lines[0]}"); sys.exit()
print("ok")
EOF
)
    if [[ $verdict == ok ]]; then pass; else fail "$name: $verdict"; fi
}

# expect_usage_error NAME NEEDLE ARGS...: exit status 2, nothing on stdout, NEEDLE on stderr.
expect_usage_error() {
    local name=$1 needle=$2
    shift 2
    run_lens "$name" "$@"
    local rc
    rc=$(cat "$TMP/$name.rc")
    [[ $rc == 2 ]] || fail "$name: exit status $rc, expected 2 (usage): $(head -c 300 "$TMP/$name.err")"
    [[ -s "$TMP/$name.out" ]] && fail "$name: unexpected stdout: $(head -c 300 "$TMP/$name.out")"
    grep -qF -- "$needle" "$TMP/$name.err" || fail "$name: stderr lacks '$needle': $(head -c 300 "$TMP/$name.err")"
    pass
}

# sessions_left NAME: no live session on the emulator at $ENDPOINT (a destroyed one stays
# listed, as STALE).
sessions_left() {
    run_lens "$1" --endpoint "$ENDPOINT" --api-key "$KEY" sessions list
    local live
    live=$(python3 -c '
import json, sys
print(sum(1 for s in json.load(sys.stdin) if "STALE" not in s["session_status"]))' <"$TMP/$1.out" 2>/dev/null)
    if [[ $(cat "$TMP/$1.rc") == 0 && $live == 0 ]]; then pass; else fail "$1: live sessions left on the server: $(head -c 300 "$TMP/$1.out")"; fi
}

# ---- its own emulator (a child process): a fixed budget of requests ---------------------
run_lens own bench --no-progress --sessions 4 --inflight 8 --requests 2000 --histogram-out "$TMP/own.hist"
check_result own 'r["sessions"] == 4' 'r["requests"] == 2000' 'r["errors"] == 0' 'r["rps"] > 0' \
    'r["connect_s"] > 0' 'r["cpu_us_per_request"] > 0' 'r["rss_kb"] > 0'
[[ -s "$TMP/own.err" ]] && fail "own: unexpected stderr (no terminal, so no live line): $(head -c 300 "$TMP/own.err")"
[[ -s "$TMP/own.hist" ]] && pass || fail "own: --histogram-out wrote nothing"

# ---- --duration with --sse: session.update makes the activity monitor emit results ------
run_lens sse bench --sessions 2 --inflight 4 --duration 1 --sse --event session.update
check_result sse 'r["errors"] == 0' 'r["requests"] > 0' 'r["events"] > 0' 'r["events_per_s"] > 0' \
    'r["sse_errors"] == 0' '0.9 <= r["duration_s"] < 5'

# ---- --endpoint: an emulator started here ------------------------------------------------
start_emulator emu --port 0 --api-key "$KEY"
ENDPOINT=$(echo "$EMU_LINE" | json_field endpoint)
G=(--endpoint "$ENDPOINT" --api-key "$KEY")
printf '\x89PNG bench test image' >"$TMP/image.png"
run_lens endpoint "${G[@]}" bench --sessions 2 --inflight 4 --requests 300 --event model.query \
    --image "$TMP/image.png" --histogram-out "$TMP/endpoint.hist"
check_result endpoint 'r["sessions"] == 2' 'r["requests"] == 300' 'r["errors"] == 0'
sessions_left endpoint_cleaned

run_lens status "${G[@]}" bench --sessions 1 --inflight 2 --requests 50 --event session.status --threads 2
check_result status 'r["requests"] == 50' 'r["errors"] == 0'

# Errors are counted by name, not fatal: an unknown lens fails at creation (exit 1).
run_lens unknown_lens "${G[@]}" bench --sessions 1 --requests 10 --lens-id lns-no-such-lens
[[ $(cat "$TMP/unknown_lens.rc") == 1 ]] && pass || fail "unknown_lens: exit status $(cat "$TMP/unknown_lens.rc"), expected 1"
[[ $(wc -l <"$TMP/unknown_lens.err") == 1 ]] && pass || fail "unknown_lens: expected one line on stderr: $(cat "$TMP/unknown_lens.err")"
no_secret unknown_lens

# ---- merge: two runs add up ---------------------------------------------------------------
run_lens merged bench merge "$TMP/own.hist" "$TMP/endpoint.hist"
check_result merged 'r["sessions"] == 6' 'r["requests"] == 2300' 'r["errors"] == 0'
echo '{"format":"lens-bench","version":1,"result":{},"histogram":{"format":"lens-histogram"}}' >"$TMP/bad.hist"
run_lens merge_bad bench merge "$TMP/bad.hist"
[[ $(cat "$TMP/merge_bad.rc") == 1 ]] && grep -qF "bad.hist" "$TMP/merge_bad.err" && pass ||
    fail "merge_bad: expected exit 1 naming the file: $(cat "$TMP/merge_bad.rc") $(cat "$TMP/merge_bad.err")"

# ---- usage errors and help ----------------------------------------------------------------
expect_usage_error both_budgets "--duration" bench --duration 1 --requests 10
expect_usage_error image_needs_query "--image" bench --image "$TMP/image.png" --requests 10
expect_usage_error zero_sessions "--sessions" bench --sessions 0
run_lens help bench --help
grep -qF "p99_us" "$TMP/help.out" && grep -qF "merge" "$TMP/help.out" && pass || fail "help: bench --help lacks the fields or merge"

# ---- Ctrl-C: sessions destroyed, exit status 130 -------------------------------------------
mkfifo "$TMP/interrupted.fifo"
"$LENS" "${G[@]}" bench --sessions 3 --inflight 2 --duration 60 --progress \
    >"$TMP/interrupted.out" 2>"$TMP/interrupted.fifo" &
BENCH_PID=$!
exec {BENCH_FD}<"$TMP/interrupted.fifo"
running=
while IFS= read -r -d $'\r' -t 20 chunk <&"$BENCH_FD"; do
    if [[ $chunk == *"req/s"* ]]; then running=1; break; fi
done
if [[ -z $running ]]; then
    fail "interrupted: no live line showing the run within 20 s"
else
    pass
fi
kill -INT "$BENCH_PID"
cat <&"$BENCH_FD" >"$TMP/interrupted.err" & # drain stderr: the bench must never block on it
status=0
wait "$BENCH_PID" || status=$?
BENCH_PID=
[[ $status == 130 ]] && pass || fail "interrupted: exit status $status, expected 130"
[[ -s "$TMP/interrupted.out" ]] && fail "interrupted: unexpected stdout: $(head -c 300 "$TMP/interrupted.out")"
sessions_left interrupted_cleaned

# ---- verdict ------------------------------------------------------------------------------
if ((failures > 0)); then
    echo "bench tests: $failures failed, $checks checks passed" >&2
    exit 1
fi
echo "bench tests: all $checks checks passed"
