#!/usr/bin/env bash
# End-to-end tests of the `lens` command line tool against `lens emulator`.
#
#   tests/cli/run_cli_tests.sh path/to/lens
#
# Starts the emulator (http, then https) in the background on an ephemeral
# loopback port, reads its first JSON line for the endpoint, runs the REST and the
# WebSocket session subcommands and checks: exit status, JSON on stdout, one line on stderr for
# errors, and that the API key never appears in any output. Then `--help` on
# every level, `lens demo`, and a clean shutdown on SIGTERM / SIGINT.
# No sleeps: the emulator's first line is read from a FIFO (with a timeout).
# CLI_TRACE=1 prints a timestamped line per lens invocation on stderr.
set -u

LENS=${1:?usage: run_cli_tests.sh path/to/lens}
[[ -x "$LENS" ]] || { echo "FAIL: $LENS is not an executable" >&2; exit 1; }
unset ARCHETYPE_API_KEY ARCHETYPE_API_ENDPOINT

# The key the emulator accepts; scripts/secret_canary.sh sets a random marker.
KEY=${LENS_TEST_API_KEY:-emulator-key}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lens-cli-test.XXXXXX")
EMU_PIDS=()
failures=0
checks=0

cleanup() {
    for pid in "${EMU_PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
pass() { checks=$((checks + 1)); }

if command -v python3 >/dev/null 2>&1; then
    is_json() { python3 -c 'import json,sys; json.load(sys.stdin)' 2>/dev/null; }
    # json_field FIELD < json: the top-level string field of an object
    json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
else
    is_json() { grep -Eq '^[[:space:]]*[[{].*[]}][[:space:]]*$'; }
    json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" | head -n1; }
fi

# run_lens NAME ARGS...: runs lens, leaving $TMP/NAME.out, $TMP/NAME.err and $TMP/NAME.rc.
run_lens() {
    [[ -n ${CLI_TRACE:-} ]] && echo "$(date +%s.%N) $*" >&2
    local name=$1
    shift
    timeout 60 "$LENS" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    echo $? >"$TMP/$name.rc"
}

# no_secret NAME: the key appears in neither stream.
no_secret() {
    local name=$1 secret=${2:-$KEY}
    if grep -qF -- "$secret" "$TMP/$name.out" "$TMP/$name.err"; then
        fail "$name: the API key '$secret' appears in the output"
    else
        pass
    fi
}

# expect_ok NAME ARGS...: exit 0, stdout is JSON, stderr empty, no key anywhere.
expect_ok() {
    local name=$1
    shift
    run_lens "$name" "$@"
    local rc
    rc=$(cat "$TMP/$name.rc")
    if [[ $rc != 0 ]]; then
        fail "$name: 'lens $*' exited with $rc: $(head -c 500 "$TMP/$name.err")"
        return 1
    fi
    if ! is_json <"$TMP/$name.out"; then
        fail "$name: stdout is not JSON: $(head -c 300 "$TMP/$name.out")"
        return 1
    fi
    if [[ -s "$TMP/$name.err" ]]; then
        fail "$name: unexpected stderr: $(head -c 300 "$TMP/$name.err")"
    fi
    no_secret "$name"
    pass
}

# expect_error NAME NEEDLE ARGS...: non-zero exit, nothing on stdout, exactly one line on
# stderr, containing NEEDLE.
expect_error() {
    local name=$1 needle=$2
    shift 2
    run_lens "$name" "$@"
    local rc lines
    rc=$(cat "$TMP/$name.rc")
    lines=$(wc -l <"$TMP/$name.err")
    if [[ $rc == 0 ]]; then
        fail "$name: 'lens $*' succeeded but should have failed"
        return 1
    fi
    if [[ $rc == 124 ]]; then
        fail "$name: 'lens $*' hung (killed by timeout)"
        return 1
    fi
    [[ $lines == 1 ]] || fail "$name: expected one line on stderr, got $lines: $(cat "$TMP/$name.err")"
    grep -qF -- "$needle" "$TMP/$name.err" || fail "$name: stderr does not mention '$needle': $(cat "$TMP/$name.err")"
    [[ -s "$TMP/$name.out" ]] && fail "$name: unexpected stdout: $(head -c 300 "$TMP/$name.out")"
    pass
}

# contains NAME TEXT: stdout of NAME contains TEXT.
contains() {
    if grep -qF -- "$2" "$TMP/$1.out"; then pass; else fail "$1: stdout lacks '$2': $(head -c 500 "$TMP/$1.out")"; fi
}

# start_emulator NAME ARGS...: starts `lens emulator ARGS` in the background; sets EMU_PID
# and EMU_LINE (its first stdout line).
start_emulator() {
    local name=$1
    shift
    local fifo="$TMP/$name.fifo"
    mkfifo "$fifo"
    "$LENS" emulator "$@" >"$fifo" 2>"$TMP/$name.err" &
    EMU_PID=$!
    EMU_PIDS+=("$EMU_PID")
    # Keep the FIFO open for reading until the end so the emulator never blocks on stdout.
    exec {EMU_FD}<"$fifo"
    EMU_LINE=
    if ! IFS= read -r -t 20 EMU_LINE <&"$EMU_FD"; then
        echo "FAIL: $name: the emulator printed no first line within 20 s: $(cat "$TMP/$name.err")" >&2
        exit 1
    fi
    echo "$EMU_LINE" | is_json || { echo "FAIL: $name: first line is not JSON: $EMU_LINE" >&2; exit 1; }
}

# stop_emulator NAME PID SIGNAL: signals the emulator, expects a clean exit with status 0.
stop_emulator() {
    local name=$1 pid=$2 sig=$3
    kill -s "$sig" "$pid" || { fail "$name: cannot signal the emulator (already dead?)"; return; }
    local status=0
    wait "$pid" || status=$?
    EMU_PIDS=("${EMU_PIDS[@]/$pid/}")
    if [[ $status == 0 ]]; then pass; else fail "$name: emulator exited with status $status after SIG$sig"; fi
    if grep -qF -- "$KEY" "$TMP/$name.err"; then fail "$name: the emulator printed the key on stderr"; fi
}

# ---- http: the REST subcommands -------------------------------------------------------
start_emulator emu_http --port 0 --api-key "$KEY"
HTTP_PID=$EMU_PID
ENDPOINT=$(echo "$EMU_LINE" | json_field endpoint)
[[ $ENDPOINT == http://127.0.0.1:*/v0.5 ]] || fail "emulator endpoint looks wrong: $ENDPOINT"
grep -qF -- "$KEY" <<<"$EMU_LINE" && fail "the emulator's first line contains the key"
G=(--endpoint "$ENDPOINT" --api-key "$KEY")

expect_ok lenses_list "${G[@]}" lenses list && {
    contains lenses_list lns-emu-mailbox
    contains lenses_list lns-emu-activity-monitor
    contains lenses_list lns-emu-query
}
expect_ok lenses_get "${G[@]}" lenses get lns-emu-mailbox && contains lenses_get '"lens_id":"lns-emu-mailbox"'
expect_error lenses_get_unknown "lens/metadata" "${G[@]}" lenses get lns-no-such-lens

expect_ok sessions_create "${G[@]}" sessions create --lens-id lns-emu-mailbox
SESSION=$(json_field session_id <"$TMP/sessions_create.out")
[[ $SESSION == lsn-* ]] || fail "sessions create: no session_id in $(cat "$TMP/sessions_create.out")"
expect_ok sessions_list "${G[@]}" sessions list && contains sessions_list "$SESSION"
expect_ok sessions_get "${G[@]}" sessions get "$SESSION" && {
    contains sessions_get "\"session_id\":\"$SESSION\""
    contains sessions_get RUNNING
}
expect_ok sessions_destroy "${G[@]}" sessions destroy "$SESSION" && contains sessions_destroy STALE
expect_error sessions_get_unknown "sessions/metadata" "${G[@]}" sessions get lsn-no-such-session

printf 't,a,b\n0,1,2\n1,2,3\n' >"$TMP/cli_upload.csv"
expect_ok files_upload "${G[@]}" files upload "$TMP/cli_upload.csv" && contains files_upload '"file_id":"cli_upload.csv"'
expect_ok files_list "${G[@]}" files list && contains files_list cli_upload.csv
printf 'GIF89a' >"$TMP/picture.gif"
expect_error files_upload_gif "files/upload" "${G[@]}" files upload "$TMP/picture.gif"

# ---- WebSocket session commands: status, validate, read, query, input -------------------
# new_session VAR NAME LENS_ID: `sessions create`; sets VAR to the new session id.
new_session() {
    printf -v "$1" '%s' ""
    expect_ok "$2" "${G[@]}" sessions create --lens-id "$3" || return
    printf -v "$1" '%s' "$(json_field session_id <"$TMP/$2.out")"
    [[ ${!1} == lsn-* ]] || fail "$2: no session_id in $(cat "$TMP/$2.out")"
}
# lacks NAME TEXT: stdout of NAME does not contain TEXT.
lacks() {
    if grep -qF -- "$2" "$TMP/$1.out"; then fail "$1: stdout unexpectedly has '$2': $(head -c 500 "$TMP/$1.out")"; else pass; fi
}
# usage_error NAME NEEDLE ARGS...: rejected before any request (CLI11's message): non-zero
# exit, no stdout, the first stderr line names the problem (NEEDLE), no key anywhere.
usage_error() {
    local name=$1 needle=$2
    shift 2
    run_lens "$name" "$@"
    local rc
    rc=$(cat "$TMP/$name.rc")
    if [[ $rc == 0 || $rc == 124 ]]; then
        fail "$name: 'lens $*' exited with $rc, expected a usage error"
        return 1
    fi
    head -n1 "$TMP/$name.err" | grep -qF -- "$needle" ||
        fail "$name: the first stderr line does not mention '$needle': $(cat "$TMP/$name.err")"
    [[ -s "$TMP/$name.out" ]] && fail "$name: unexpected stdout: $(head -c 300 "$TMP/$name.out")"
    no_secret "$name"
    pass
}

new_session MAILBOX ws_create_mailbox lns-emu-mailbox
new_session QUERY ws_create_query lns-emu-query
new_session MONITOR ws_create_monitor lns-emu-activity-monitor

expect_ok ws_status "${G[@]}" status "$MAILBOX" && {
    contains ws_status "\"session_id\":\"$MAILBOX\""
    contains ws_status '"lens_id":"lns-emu-mailbox"'
}
expect_ok ws_validate "${G[@]}" validate "$MAILBOX" && {
    contains ws_validate '"type":"session.validate.response"'
    contains ws_validate '"is_valid":true'
}

# input_stream.set: an uploaded CSV is accepted, an unknown file id is the server's error.
expect_ok ws_input_csv "${G[@]}" input "$MONITOR" --csv cli_upload.csv && {
    contains ws_input_csv '"type":"input_stream.set.response"'
    contains ws_input_csv '"is_valid":true'
}
expect_error ws_input_csv_unknown "File not found: no-such-file.csv" "${G[@]}" input "$MONITOR" \
    --csv no-such-file.csv
no_secret ws_input_csv_unknown
usage_error ws_input_bad_size "--size" "${G[@]}" input "$MONITOR" --rtsp rtsp://127.0.0.1/cam --size 12by34

# session.read: each client id is a cursor. The mailbox lens logs "session started" and one
# line per input_stream.set; a new id replays them all, a drained id gets event_data null.
expect_ok ws_input_mailbox "${G[@]}" input "$MAILBOX" --csv cli_upload.csv &&
    contains ws_input_mailbox '"is_valid":true'
expect_ok ws_read_a "${G[@]}" read "$MAILBOX" --client-id cli-reader-a && {
    contains ws_read_a '"type":"session.read.response"'
    contains ws_read_a '"client_id":"cli-reader-a"'
    contains ws_read_a '"message":"session started"'
    contains ws_read_a '"message":"input stream set: csv_file_reader"'
}
expect_ok ws_read_a_again "${G[@]}" read "$MAILBOX" --client-id cli-reader-a && {
    contains ws_read_a_again '"type":"session.read.response"'
    contains ws_read_a_again '"event_data":null'
    lacks ws_read_a_again 'session started'
}
expect_ok ws_read_b "${G[@]}" read "$MAILBOX" --client-id cli-reader-b && {
    contains ws_read_b '"client_id":"cli-reader-b"'
    contains ws_read_b '"message":"session started"'
    contains ws_read_b '"message":"input stream set: csv_file_reader"'
}
expect_ok ws_input_rtsp "${G[@]}" input "$MAILBOX" --rtsp rtsp://127.0.0.1/cam --size 360x640 --fps 5 &&
    contains ws_input_rtsp '"is_valid":true'
expect_ok ws_read_a_new "${G[@]}" read "$MAILBOX" --client-id cli-reader-a && {
    contains ws_read_a_new '"message":"input stream set: rtsp_video_streamer"'
    lacks ws_read_a_new 'session started'
}
# Without --client-id: a random cursor, which replays from the start.
expect_ok ws_read_default "${G[@]}" read "$MAILBOX" && contains ws_read_default '"message":"session started"'

# model.query: the emulator's query lens answers "<focus> — image <hash> (<size> bytes)".
base64 -d >"$TMP/pixel.png" <<<'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=='
expect_ok ws_query "${G[@]}" query "$QUERY" --image "$TMP/pixel.png" --focus "What is in the picture?" && {
    grep -Eq '^"[^"]+' "$TMP/ws_query.out" || fail "ws_query: the answer is empty: $(cat "$TMP/ws_query.out")"
    contains ws_query 'What is in the picture?'
    contains ws_query '(67 bytes)'
}
expect_ok ws_query_options "${G[@]}" query "$QUERY" --image "$TMP/pixel.png" --focus "count the cats" \
    --instruction "Answer briefly" --template image_qa --model-version Newton::emulator --max-new-tokens 32 &&
    contains ws_query_options 'count the cats'
expect_ok ws_query_bbox "${G[@]}" query "$QUERY" --image "$TMP/pixel.png" --focus cat --template bbox && {
    contains ws_query_bbox '"box":['
    contains ws_query_bbox '"label":'
}
usage_error ws_query_no_image "$TMP/no-such-image.png" "${G[@]}" query "$QUERY" --image "$TMP/no-such-image.png" --focus x
# --timeout bounds model.query too: the mailbox lens never answers queries itself (the
# emulator's model-timeout reply comes after 60 s), so two seconds must end it.
expect_error ws_query_timeout "model.query" "${G[@]}" --timeout 2 query "$MAILBOX" --image "$TMP/pixel.png" --focus x &&
    grep -qF "no reply within 2000 ms" "$TMP/ws_query_timeout.err" ||
    fail "ws_query_timeout: not the request deadline: $(cat "$TMP/ws_query_timeout.err")"
no_secret ws_query_timeout
grep -qF "does not exist" "$TMP/ws_query_no_image.err" ||
    fail "ws_query_no_image: the error does not say the file does not exist: $(cat "$TMP/ws_query_no_image.err")"

# An unknown session: the REST look-up fails at once (bounded by --timeout, not a hang).
expect_error ws_status_unknown "Unknown session id: lsn-no-such-session" "${G[@]}" --timeout 5 \
    status lsn-no-such-session
no_secret ws_status_unknown

# The environment variables work in place of the options.
ARCHETYPE_API_ENDPOINT=$ENDPOINT ARCHETYPE_API_KEY=$KEY expect_ok env_config lenses list

# A huge --timeout saturates ("practically never"); it used to wrap into the past and
# fail at once with "deadline expired".
expect_ok huge_timeout "${G[@]}" --timeout 1e10 lenses list
# Header values with CR or LF are refused before anything is sent.
expect_error header_injection "Last-Event-ID" "${G[@]}" events "$MAILBOX" --last-event-id $'7\r\nX-Injected: yes'
expect_error key_injection "API key" --endpoint "$ENDPOINT" --api-key $'k\r\nX-Injected: yes' lenses list

# ---- errors: one line on stderr naming the operation, non-zero status, no key -----------
WRONG=wrong-key-CLI-0123456789
expect_error wrong_key "sessions/metadata" --endpoint "$ENDPOINT" --api-key "$WRONG" sessions list
grep -qF 401 "$TMP/wrong_key.err" || fail "wrong_key: the error does not say 401: $(cat "$TMP/wrong_key.err")"
no_secret wrong_key "$WRONG"
no_secret wrong_key "$KEY"
expect_error wrong_key_create "sessions/create" --endpoint "$ENDPOINT" --api-key "$WRONG" \
    sessions create --lens-id lns-emu-mailbox
no_secret wrong_key_create "$WRONG"

# An endpoint nobody listens on (the port of an emulator stopped below is reused later).
expect_error unreachable "lens/metadata" --endpoint "http://127.0.0.1:1/v0.5" --api-key "$KEY" --timeout 5 lenses list

# Usage errors: exit status 2 (CLI11's message; its own code would be 106), nothing on stdout.
# expect_status NAME STATUS: the exit status of the run NAME.
expect_status() {
    local rc
    rc=$(cat "$TMP/$1.rc")
    if [[ $rc == "$2" ]]; then pass; else fail "$1: exit status $rc, expected $2: $(head -c 300 "$TMP/$1.err")"; fi
}
run_lens no_subcommand
expect_status no_subcommand 2
run_lens lenses_no_subcommand "${G[@]}" lenses
expect_status lenses_no_subcommand 2
run_lens bad_timeout "${G[@]}" --timeout 0 lenses list
expect_status bad_timeout 2
run_lens unknown_option "${G[@]}" --no-such-option lenses list
expect_status unknown_option 2
[[ -s "$TMP/unknown_option.out" ]] && fail "unknown_option: unexpected stdout: $(head -c 300 "$TMP/unknown_option.out")"
grep -qF -- "--no-such-option" "$TMP/unknown_option.err" || fail "unknown_option: stderr does not name the option"
no_secret unknown_option
run_lens unknown_subcommand "${G[@]}" no-such-subcommand
expect_status unknown_subcommand 2
run_lens missing_value "${G[@]}" sessions get
expect_status missing_value 2
# The exit status of usage errors checked above by usage_error is 2 too.
expect_status ws_input_bad_size 2
expect_status ws_query_no_image 2
# An operation that fails is 1.
expect_status wrong_key 1
expect_status unreachable 1

# --version: "lens <version>" on stdout, exit 0, whatever else is on the command line.
run_lens version --version
expect_status version 0
grep -Eqx 'lens [0-9]+\.[0-9]+\.[0-9]+' "$TMP/version.out" ||
    fail "version: stdout is not 'lens <major>.<minor>.<patch>': $(cat "$TMP/version.out")"
[[ -s "$TMP/version.err" ]] && fail "version: unexpected stderr: $(cat "$TMP/version.err")"
# --help documents the exit statuses.
run_lens help_exit "${G[@]}" --help
expect_status help_exit 0
for code in "0  success" "1  the operation failed" "2  usage error"; do
    contains help_exit "$code"
done

# The environment supplies --endpoint and --api-key (CLI11 envname) ...
ARCHETYPE_API_ENDPOINT=$ENDPOINT ARCHETYPE_API_KEY=$KEY expect_ok env_endpoint lenses get lns-emu-query &&
    contains env_endpoint '"lens_id":"lns-emu-query"'
# ... the command line wins over it ...
ARCHETYPE_API_ENDPOINT=http://127.0.0.1:1/v0.5 expect_ok env_overridden "${G[@]}" lenses list
# ... an empty variable is no value (no key: the call fails, status 1) ...
ARCHETYPE_API_ENDPOINT=$ENDPOINT ARCHETYPE_API_KEY= run_lens env_empty_key --timeout 5 lenses list
expect_status env_empty_key 1
[[ -s "$TMP/env_empty_key.out" ]] && fail "env_empty_key: unexpected stdout: $(head -c 300 "$TMP/env_empty_key.out")"
# ... and --help names the variables but never shows the key's value.
ARCHETYPE_API_ENDPOINT=$ENDPOINT ARCHETYPE_API_KEY=$KEY run_lens env_help --help
contains env_help ARCHETYPE_API_KEY
contains env_help ARCHETYPE_API_ENDPOINT
no_secret env_help
ARCHETYPE_API_KEY=$KEY run_lens env_usage_error --no-such-option lenses list
expect_status env_usage_error 2
no_secret env_usage_error

stop_emulator emu_http "$HTTP_PID" TERM

# ---- --help on every level ----------------------------------------------------------------
# subcommands_of ARGS...: the subcommand names `lens ARGS --help` lists.
subcommands_of() {
    "$LENS" "$@" --help 2>/dev/null | awk '/^Subcommands:/ {on = 1; next} on && /^  [^ ]/ {print $1} on && /^$/ {on = 0}'
}
help_ok() {
    local name="help:$*"
    if timeout 20 "$LENS" "$@" --help >"$TMP/help.out" 2>"$TMP/help.err" && [[ -s "$TMP/help.out" ]] &&
        grep -q "Usage:" "$TMP/help.out"; then
        pass
    else
        fail "$name: 'lens $* --help' failed or printed no usage: $(head -c 300 "$TMP/help.err")"
    fi
}
help_ok
top=$(subcommands_of)
for needed in lenses sessions files emulator demo; do
    grep -qx "$needed" <<<"$top" || fail "'lens --help' does not list '$needed'"
done
for sub in $top; do
    help_ok "$sub"
    for subsub in $(subcommands_of "$sub"); do
        help_ok "$sub" "$subsub"
    done
done
for path in "lenses list" "lenses get" "sessions create" "sessions list" "sessions get" "sessions destroy" \
    "files upload" "files list"; do
    # shellcheck disable=SC2086
    help_ok $path
done

# ---- lens demo ------------------------------------------------------------------------------
run_lens demo demo
if [[ $(cat "$TMP/demo.rc") == 0 ]]; then pass; else fail "lens demo exited with $(cat "$TMP/demo.rc"): $(cat "$TMP/demo.err")"; fi
no_secret demo
run_lens demo_tls demo --tls
if [[ $(cat "$TMP/demo_tls.rc") == 0 ]]; then pass; else fail "lens demo --tls exited with $(cat "$TMP/demo_tls.rc"): $(cat "$TMP/demo_tls.err")"; fi
no_secret demo_tls

# ---- https: the CA file the emulator prints ----------------------------------------------
start_emulator emu_tls --port 0 --tls --api-key "$KEY"
TLS_PID=$EMU_PID
TLS_ENDPOINT=$(echo "$EMU_LINE" | json_field endpoint)
CA_FILE=$(echo "$EMU_LINE" | json_field ca_file)
[[ $TLS_ENDPOINT == https://127.0.0.1:*/v0.5 ]] || fail "TLS emulator endpoint looks wrong: $TLS_ENDPOINT"
if [[ -n $CA_FILE && -s $CA_FILE ]] && grep -q "BEGIN CERTIFICATE" "$CA_FILE"; then pass; else
    fail "TLS emulator: ca_file '$CA_FILE' is missing or not a PEM certificate"
fi
T=(--endpoint "$TLS_ENDPOINT" --api-key "$KEY")
expect_ok tls_lenses_list "${T[@]}" --ca-file "$CA_FILE" lenses list && contains tls_lenses_list lns-emu-query
expect_ok tls_sessions_create "${T[@]}" --ca-file "$CA_FILE" sessions create --lens-id lns-emu-query
TLS_SESSION=$(json_field session_id <"$TMP/tls_sessions_create.out")
expect_ok tls_sessions_destroy "${T[@]}" --ca-file "$CA_FILE" sessions destroy "$TLS_SESSION" &&
    contains tls_sessions_destroy STALE
expect_error tls_no_ca "certificate" "${T[@]}" --timeout 5 lenses list
expect_error tls_bad_ca "$TMP/missing-ca.pem" "${T[@]}" --ca-file "$TMP/missing-ca.pem" lenses list

stop_emulator emu_tls "$TLS_PID" INT
if [[ -e $CA_FILE ]]; then fail "the TLS emulator left its temporary CA file $CA_FILE behind"; else pass; fi

# ---- verdict ----------------------------------------------------------------------------------
if ((failures > 0)); then
    echo "cli tests: $failures failed, $checks checks passed" >&2
    exit 1
fi
echo "cli tests: all $checks checks passed"
