#!/usr/bin/env bash
# End-to-end tests of `lens run --config`, `lens lenses register` and `lens lenses modify`
# against `lens emulator`: lens configurations in YAML and JSON (examples/lenses), a run fed
# by session.update readings (file and stdin), by an uploaded video (--input) and by the
# lens's own input stream; each way a run ends (--max-events, --duration, SIGINT, SIGTERM,
# an invalid session, a bad reading); and after every run, that no session is left running
# and the lens is deleted. The API key never appears in any output.
#
#   tests/cli/run_config_tests.sh path/to/lens
#
# No sleeps: the emulator's first line and a background run's first event are read from
# FIFOs with a timeout; every lens invocation runs under `timeout`.
# CLI_TRACE=1 prints a timestamped line per lens invocation on stderr.
set -u

LENS=${1:?usage: run_config_tests.sh path/to/lens}
[[ -x "$LENS" ]] || { echo "FAIL: $LENS is not an executable" >&2; exit 1; }
unset ARCHETYPE_API_KEY ARCHETYPE_API_ENDPOINT
EXAMPLES=$(cd "$(dirname "$0")/../../examples/lenses" && pwd)

KEY=${LENS_TEST_API_KEY:-emulator-key-run-config} # scripts/secret_canary.sh sets a marker
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lens-run-config-test.XXXXXX")
EMU_PID=
failures=0
checks=0

cleanup() {
    [[ -n $EMU_PID ]] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

# Counting checks and the JSON helpers.
# shellcheck source=tests/cli/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# run_lens NAME ARGS...: runs lens, leaving $TMP/NAME.out, $TMP/NAME.err and $TMP/NAME.rc.
run_lens() {
    [[ -n ${CLI_TRACE:-} ]] && echo "$(date +%s.%N) $*" >&2
    local name=$1
    shift
    timeout 60 "$LENS" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null
    echo $? >"$TMP/$name.rc"
}

# no_secret NAME: the key appears in neither stream.
no_secret() {
    if grep -qF -- "$KEY" "$TMP/$1.out" "$TMP/$1.err"; then fail "$1: the API key appears in the output"; else pass; fi
}

# check_ok NAME: exit 0, stdout is JSON lines, stderr empty, no key anywhere.
check_ok() {
    local name=$1 rc
    rc=$(cat "$TMP/$name.rc")
    if [[ $rc != 0 ]]; then
        fail "$name: exited with $rc: $(head -c 500 "$TMP/$name.err")"
        return 1
    fi
    if [[ ! -s "$TMP/$name.out" ]] || ! all_json_lines <"$TMP/$name.out"; then
        fail "$name: stdout is not JSON lines: $(head -c 300 "$TMP/$name.out")"
        return 1
    fi
    [[ -s "$TMP/$name.err" ]] && fail "$name: unexpected stderr: $(head -c 300 "$TMP/$name.err")"
    no_secret "$name"
    pass
}

# expect_ok NAME ARGS...: run_lens, then check_ok.
expect_ok() {
    local name=$1
    shift
    run_lens "$name" "$@"
    check_ok "$name"
}

# check_error NAME STATUS NEEDLE: exit STATUS, nothing on stdout, the first stderr line
# mentions NEEDLE, one line on stderr for status 1 (CLI11 adds a hint line to usage errors).
check_error() {
    local name=$1 status=$2 needle=$3 rc lines
    rc=$(cat "$TMP/$name.rc")
    lines=$(wc -l <"$TMP/$name.err")
    if [[ $rc != "$status" ]]; then
        fail "$name: exited with $rc, expected $status: $(head -c 500 "$TMP/$name.err")"
        return 1
    fi
    [[ $status != 1 || $lines == 1 ]] || fail "$name: expected one line on stderr, got $lines: $(cat "$TMP/$name.err")"
    head -n1 "$TMP/$name.err" | grep -qF -- "$needle" ||
        fail "$name: stderr does not mention '$needle': $(cat "$TMP/$name.err")"
    no_secret "$name"
    pass
}

# expect_error NAME STATUS NEEDLE ARGS...: run_lens, then check_error, and no stdout.
expect_error() {
    local name=$1 status=$2 needle=$3
    shift 3
    run_lens "$name" "$@"
    check_error "$name" "$status" "$needle"
    [[ -s "$TMP/$name.out" ]] && fail "$name: unexpected stdout: $(head -c 300 "$TMP/$name.out")"
}

# contains NAME TEXT / lacks NAME TEXT: about stdout of NAME.
contains() {
    if grep -qF -- "$2" "$TMP/$1.out"; then pass; else fail "$1: stdout lacks '$2': $(head -c 500 "$TMP/$1.out")"; fi
}
lacks() {
    if grep -qF -- "$2" "$TMP/$1.out"; then fail "$1: stdout unexpectedly has '$2'"; else pass; fi
}

# count_type NAME TYPE: how many event lines of NAME have that type.
count_type() { grep -cF "\"type\":\"$2\"" "$TMP/$1.out"; }

# no_leftovers NAME LENS_NAME: no session is running any more and no lens is named
# LENS_NAME (every test's lens has a unique name).
no_leftovers() {
    local name=$1 lens_name=$2
    run_lens "$name.sessions" "${G[@]}" sessions list
    if [[ $(cat "$TMP/$name.sessions.rc") != 0 ]]; then
        fail "$name: sessions list failed: $(cat "$TMP/$name.sessions.err")"
    elif grep -qF RUNNING "$TMP/$name.sessions.out"; then
        fail "$name: a session is still running: $(cat "$TMP/$name.sessions.out")"
    else
        pass
    fi
    run_lens "$name.lenses" "${G[@]}" lenses list
    if [[ $(cat "$TMP/$name.lenses.rc") != 0 ]]; then
        fail "$name: lenses list failed: $(cat "$TMP/$name.lenses.err")"
    elif grep -qF -- "\"lens_name\":\"$lens_name\"" "$TMP/$name.lenses.out"; then
        fail "$name: the lens '$lens_name' was not deleted"
    else
        pass
    fi
}

# ---- the emulator -------------------------------------------------------------------
mkfifo "$TMP/emulator.fifo"
"$LENS" emulator --port 0 --api-key "$KEY" >"$TMP/emulator.fifo" 2>"$TMP/emulator.err" &
EMU_PID=$!
exec {EMU_FD}<"$TMP/emulator.fifo" # kept open: the emulator never blocks on stdout
EMU_LINE=
if ! IFS= read -r -t 20 EMU_LINE <&"$EMU_FD"; then
    echo "FAIL: the emulator printed no first line within 20 s: $(cat "$TMP/emulator.err")" >&2
    exit 1
fi
ENDPOINT=$(echo "$EMU_LINE" | json_field endpoint)
[[ $ENDPOINT == http://127.0.0.1:*/v0.5 ]] || { echo "FAIL: emulator endpoint looks wrong: $EMU_LINE" >&2; exit 1; }
G=(--endpoint "$ENDPOINT" --api-key "$KEY")

# ---- lenses register / modify -----------------------------------------------------------
# The YAML and JSON examples are the same configuration: the same document is registered.
expect_ok dry_yaml lenses register --config "$EXAMPLES/sensor_logs.yaml" --dry-run
expect_ok dry_json lenses register --config "$EXAMPLES/sensor_logs.json" --dry-run
if cmp -s "$TMP/dry_yaml.out" "$TMP/dry_json.out"; then pass; else
    fail "the YAML and JSON sensor_logs examples differ: $(cat "$TMP/dry_yaml.out") vs $(cat "$TMP/dry_json.out")"
fi
contains dry_yaml '"max_new_tokens":256,' # a number, not the text "256"
contains dry_yaml '"processor_name":"lens_sensor_logs_processor"'
expect_ok dry_name lenses register --config "$EXAMPLES/sensor_logs.yaml" --name "another name" --dry-run &&
    contains dry_name '"lens_name":"another name"'

expect_ok register_yaml "${G[@]}" lenses register --config "$EXAMPLES/sensor_logs.yaml" --name cfg-register-yaml
YAML_LENS=$(json_field lens_id <"$TMP/register_yaml.out")
[[ $YAML_LENS == lns-* ]] || fail "register_yaml: no lens_id in $(cat "$TMP/register_yaml.out")"
expect_ok register_yaml_get "${G[@]}" lenses get "$YAML_LENS" && {
    contains register_yaml_get '"lens_name":"cfg-register-yaml"'
    contains register_yaml_get '"model_pipeline":[{"processor_name":"lens_sensor_logs_processor"}]'
    contains register_yaml_get '"sensor_buffer_size":5'
}
expect_ok register_json "${G[@]}" lenses register --config "$EXAMPLES/camera.json"
JSON_LENS=$(json_field lens_id <"$TMP/register_json.out")
[[ $JSON_LENS == lns-* ]] || fail "register_json: no lens_id in $(cat "$TMP/register_json.out")"
contains register_json '"lens_name":"Camera description"'
contains register_json '"processor_name":"lens_camera_processor"'

expect_ok modify_config "${G[@]}" lenses modify "$YAML_LENS" --config "$EXAMPLES/camera.json" --name cfg-modified && {
    contains modify_config '"lens_name":"cfg-modified"'
    contains modify_config '"processor_name":"lens_camera_processor"'
}
expect_ok modify_data "${G[@]}" lenses modify "$YAML_LENS" --data '{"lens_name": "cfg-renamed"}' &&
    contains modify_data '"lens_name":"cfg-renamed"'
expect_ok modify_get "${G[@]}" lenses get "$YAML_LENS" && {
    contains modify_get '"lens_name":"cfg-renamed"'
    contains modify_get lens_camera_processor
}
expect_error modify_unknown 1 "lens/modify" "${G[@]}" lenses modify lns-no-such-lens --data '{"lens_name": "x"}'
expect_error modify_neither 2 "--config or --data" "${G[@]}" lenses modify "$YAML_LENS"
expect_error modify_both 2 "excludes" "${G[@]}" lenses modify "$YAML_LENS" --data '{}' --config "$EXAMPLES/camera.json"
expect_error modify_bad_data 1 "--data: not a JSON object" "${G[@]}" lenses modify "$YAML_LENS" --data '[1]'

# ---- lens run: session.update readings ---------------------------------------------------
printf '%s\n' '{"sensor_id":"pump-7","vibration_mm_s":4.2}' '' '{"sensor_id":"pump-7","vibration_mm_s":0.5}' \
    '{"sensor_id":"pump-7","vibration_mm_s":9.9}' >"$TMP/readings.jsonl"
expect_ok run_file "${G[@]}" run --config "$EXAMPLES/sensor_logs.yaml" --name cfg-run-file \
    --sensor-data "$TMP/readings.jsonl" --max-events 3 && {
    head -n1 "$TMP/run_file.out" | grep -qF '"type":"sse.stream.start"' ||
        fail "run_file: the first line is not sse.stream.start: $(head -n1 "$TMP/run_file.out")"
    n=$(count_type run_file inference.result)
    [[ $n == 3 ]] && pass || fail "run_file: $n inference.result lines, expected 3"
    contains run_file 'vibration spikes: {\"sensor_id\":\"pump-7\",\"vibration_mm_s\":9.9E0}'
    contains run_file '"id":"'
}
no_leftovers run_file cfg-run-file

printf '{"reading": %d}\n' 1 2 | timeout 60 "$LENS" "${G[@]}" run --config "$EXAMPLES/sensor_logs.json" \
    --name cfg-run-stdin --sensor-data - --max-events 2 >"$TMP/run_stdin.out" 2>"$TMP/run_stdin.err"
echo $? >"$TMP/run_stdin.rc"
check_ok run_stdin && {
    n=$(count_type run_stdin inference.result)
    [[ $n == 2 ]] && pass || fail "run_stdin: $n inference.result lines, expected 2"
    contains run_stdin '{\"reading\":2}'
}
no_leftovers run_stdin cfg-run-stdin

# ---- lens run: input streams -------------------------------------------------------------
# The emulator's video reader makes one frame per 4 KiB of the file, whatever its bytes.
head -c 12288 /dev/zero >"$TMP/clip.mp4"
expect_ok run_video "${G[@]}" run --config "$EXAMPLES/camera.json" --name cfg-run-video --input "$TMP/clip.mp4" \
    --max-events 7 && {
    contains run_video '"message":"video_file_reader: clip.mp4, 3 frames"'
    n=$(count_type run_video frame.processed)
    [[ $n == 3 ]] && pass || fail "run_video: $n frame.processed lines, expected 3"
    contains run_video '"stream_type":"video_file_reader"'
}
no_leftovers run_video cfg-run-video

# The lens's own input stream (video_file_reader of an uploaded file) starts with the session.
head -c 4096 /dev/zero >"$TMP/example_clip.mp4"
expect_ok upload_clip "${G[@]}" files upload "$TMP/example_clip.mp4"
expect_ok run_configured_input "${G[@]}" run --config "$EXAMPLES/video_file_reader.yaml" --name cfg-run-configured \
    --max-events 3 && {
    contains run_configured_input '"message":"video_file_reader: example_clip.mp4, 1 frames"'
    contains run_configured_input '"type":"inference.result"'
}
no_leftovers run_configured_input cfg-run-configured

# An input stream type the emulator does not know passes through as its log line.
cat >"$TMP/unknown_stream.yaml" <<'EOF'
lens_name: cfg-unknown-stream
lens_config:
  input_streams:
    - stream_type: no_such_reader
      stream_config: {file_id: x}
  output_streams:
    - stream_type: server_sent_events_writer
EOF
expect_ok run_unknown_stream "${G[@]}" run --config "$TMP/unknown_stream.yaml" --max-events 1 &&
    contains run_unknown_stream 'input stream type not emulated: no_such_reader'
no_leftovers run_unknown_stream cfg-unknown-stream

# A configuration without the SSE writer runs, with a warning: lens run reads only SSE.
printf 'lens_name: cfg-no-sse\nlens_config:\n  model_parameters: {focus: x}\n' >"$TMP/no_sse.yaml"
run_lens run_no_sse "${G[@]}" run --config "$TMP/no_sse.yaml" --duration 0.2
if [[ $(cat "$TMP/run_no_sse.rc") == 0 ]] && grep -qF "warning: $TMP/no_sse.yaml: no output_streams entry" \
    "$TMP/run_no_sse.err" && [[ $(wc -l <"$TMP/run_no_sse.err") == 1 ]]; then pass; else
    fail "run_no_sse: expected exit 0 and one warning line: rc $(cat "$TMP/run_no_sse.rc"), $(cat "$TMP/run_no_sse.err")"
fi
no_secret run_no_sse
no_leftovers run_no_sse cfg-no-sse

# ---- lens run: how it ends -----------------------------------------------------------------
expect_ok run_duration "${G[@]}" run --config "$EXAMPLES/sensor_logs.yaml" --name cfg-run-duration --duration 0.5 && {
    contains run_duration '"type":"sse.stream.start"'
    lacks run_duration inference.result
}
no_leftovers run_duration cfg-run-duration

# run_until_signal NAME SIGNAL STATUS: a run with nothing to read; SIGNAL after its first
# event line; it must exit STATUS and leave nothing behind.
run_until_signal() {
    local name=$1 sig=$2 status=$3 fifo="$TMP/$1.fifo" first= pid rc
    mkfifo "$fifo"
    timeout 60 "$LENS" "${G[@]}" run --config "$EXAMPLES/sensor_logs.yaml" --name "cfg-$name" \
        >"$fifo" 2>"$TMP/$name.err" </dev/null &
    pid=$!
    exec {fd}<"$fifo"
    if IFS= read -r -t 20 first <&"$fd"; then
        grep -qF '"type":"sse.stream.start"' <<<"$first" && pass || fail "$name: first line: $first"
        kill -s "$sig" "$pid"
    else
        fail "$name: no event within 20 s: $(cat "$TMP/$name.err")"
        kill "$pid"
    fi
    cat <&"$fd" >"$TMP/$name.out" # until lens exits and closes its end
    exec {fd}<&-
    wait "$pid"
    rc=$?
    echo "$rc" >"$TMP/$name.rc"
    [[ $rc == "$status" ]] && pass || fail "$name: exited with $rc after SIG$sig, expected $status: $(cat "$TMP/$name.err")"
    [[ -s "$TMP/$name.err" ]] && fail "$name: unexpected stderr: $(cat "$TMP/$name.err")"
    no_secret "$name"
    no_leftovers "$name" "cfg-$name"
}
run_until_signal run_sigint INT 130
run_until_signal run_sigterm TERM 143

# ---- lens run: errors ----------------------------------------------------------------------
expect_error run_missing_config 1 "$TMP/no-such-lens.yaml: cannot open: No such file or directory" \
    "${G[@]}" run --config "$TMP/no-such-lens.yaml"
printf 'lens_name: broken\nlens_config:\n  model_parameters: [unclosed\n  focus: x\n' >"$TMP/broken.yaml"
expect_error run_malformed_yaml 1 "$TMP/broken.yaml:4:" "${G[@]}" run --config "$TMP/broken.yaml"
printf '{"lens_name": "broken",\n "lens_config": {,}}\n' >"$TMP/broken.json"
expect_error run_malformed_json 1 "$TMP/broken.json:2:18: JSON: " "${G[@]}" run --config "$TMP/broken.json"
expect_error register_malformed_yaml 1 "$TMP/broken.yaml:4:" "${G[@]}" lenses register --config "$TMP/broken.yaml"
printf 'lens_config:\n  output_streams: []\n' >"$TMP/unnamed.yaml"
expect_error run_unnamed 1 "no lens_name" "${G[@]}" run --config "$TMP/unnamed.yaml"
printf 'lens_name: x\nfocus: y\n' >"$TMP/not_a_lens.yaml"
expect_error run_not_a_lens 1 "no lens_config" "${G[@]}" run --config "$TMP/not_a_lens.yaml"

# The server's verdict on the configuration: session.validate fails, and the session and
# the lens are still cleaned up.
cat >"$TMP/unknown_processor.yaml" <<'EOF'
lens_name: cfg-unknown-processor
lens_config:
  model_pipeline:
    - processor_name: lens_no_such_processor
  output_streams:
    - stream_type: server_sent_events_writer
EOF
expect_error run_unknown_processor 1 "session.validate: the session is not valid: " \
    "${G[@]}" run --config "$TMP/unknown_processor.yaml"
grep -qF "lens_no_such_processor" "$TMP/run_unknown_processor.err" && pass ||
    fail "run_unknown_processor: the error does not name the processor: $(cat "$TMP/run_unknown_processor.err")"
no_leftovers run_unknown_processor cfg-unknown-processor
# --no-validate skips the check: the session runs (and produces nothing).
expect_ok run_no_validate "${G[@]}" run --config "$TMP/unknown_processor.yaml" --no-validate --duration 0.2
no_leftovers run_no_validate cfg-unknown-processor

# A configured input stream of a file that was never uploaded.
sed 's/example_clip.mp4/never-uploaded.mp4/' "$EXAMPLES/video_file_reader.yaml" >"$TMP/missing_file.yaml"
expect_error run_missing_stream_file 1 "File not found: never-uploaded.mp4" \
    "${G[@]}" run --config "$TMP/missing_file.yaml" --name cfg-missing-stream-file
no_leftovers run_missing_stream_file cfg-missing-stream-file

# --input: a missing file fails before anything is registered; an unknown kind is a usage error.
expect_error run_missing_input 1 "--input $TMP/no-such-clip.mp4: No such file or directory" \
    "${G[@]}" run --config "$EXAMPLES/camera.json" --name cfg-missing-input --input "$TMP/no-such-clip.mp4"
no_leftovers run_missing_input cfg-missing-input
printf 'hello' >"$TMP/notes.txt"
expect_error run_input_kind 2 "expected a .mp4, .csv or .jsonl file" \
    "${G[@]}" run --config "$EXAMPLES/camera.json" --input "$TMP/notes.txt"

# --sensor-data: a missing file fails before anything is registered; a line that is not JSON
# ends the run (after the lines before it) and names the line.
expect_error run_missing_sensor 1 "$TMP/no-such-readings.jsonl: cannot open" \
    "${G[@]}" run --config "$EXAMPLES/sensor_logs.yaml" --sensor-data "$TMP/no-such-readings.jsonl"
printf '{"ok": 1}\nnot json\n' >"$TMP/bad_readings.jsonl"
run_lens run_bad_reading "${G[@]}" run --config "$EXAMPLES/sensor_logs.yaml" --name cfg-bad-reading \
    --sensor-data "$TMP/bad_readings.jsonl"
check_error run_bad_reading 1 "--sensor-data $TMP/bad_readings.jsonl:2: not JSON"
no_leftovers run_bad_reading cfg-bad-reading

# A line over 1 MiB is refused (after the lines before it), without reading it whole.
{ echo '{"ok": 1}'; head -c 1100000 /dev/zero | tr '\0' 'a'; echo; } >"$TMP/long_line.jsonl"
run_lens run_long_line "${G[@]}" run --config "$EXAMPLES/sensor_logs.yaml" --name cfg-long-line \
    --sensor-data "$TMP/long_line.jsonl"
check_error run_long_line 1 "$TMP/long_line.jsonl:2: a line longer than 1048576 bytes"
no_leftovers run_long_line cfg-long-line

# A wrong key: refused at registration, and the key is never echoed.
WRONG=wrong-key-run-config
run_lens run_wrong_key --endpoint "$ENDPOINT" --api-key "$WRONG" run --config "$EXAMPLES/sensor_logs.yaml"
check_error run_wrong_key 1 "lens/register: 401"
grep -qF -- "$WRONG" "$TMP/run_wrong_key.out" "$TMP/run_wrong_key.err" && fail "run_wrong_key: the wrong key is echoed"

run_lens run_help run --help
grep -qF -- "--sensor-data" "$TMP/run_help.out" && grep -qF -- "128+N" "$TMP/run_help.out" && pass ||
    fail "run --help lacks --sensor-data or the exit statuses: $(cat "$TMP/run_help.out")"

# ---- done ----------------------------------------------------------------------------------
kill "$EMU_PID" && wait "$EMU_PID"
EMU_PID=
if ((failures > 0)); then
    echo "run_config_tests: $failures failure(s), $checks check(s) passed" >&2
    exit 1
fi
echo "run_config_tests: all $checks checks passed"
