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

# Counting checks and the JSON helpers.
# shellcheck source=tests/cli/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# run_lens NAME ARGS...: runs lens, leaving $TMP/NAME.out, $TMP/NAME.err and $TMP/NAME.rc.
run_lens() {
    [[ -n ${CLI_TRACE:-} ]] && echo "$(date +%s.%N) $*" >&2
    local name=$1
    shift
    timeout 60 "$LENS" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    echo $? >"$TMP/$name.rc"
}

# expect_status NAME STATUS: the exit status of the run NAME.
expect_status() {
    local rc
    rc=$(cat "$TMP/$1.rc")
    if [[ $rc == "$2" ]]; then pass; else fail "$1: exit status $rc, expected $2: $(head -c 300 "$TMP/$1.err")"; fi
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

# ---- the rest of the API: lenses, sessions and files over REST ------------------------
expect_ok lenses_info "${G[@]}" lenses info && contains lenses_info '"num_lenses":3'
# Paging: shard i of size n is items [i*n, (i+1)*n); the three built-in lenses make 2 + 1.
expect_ok lenses_page0 "${G[@]}" lenses list --shard-index 0 --max-items-per-shard 2 &&
    [[ $(json_len <"$TMP/lenses_page0.out") == 2 ]] || fail "lenses_page0: not 2 lenses: $(cat "$TMP/lenses_page0.out")"
expect_ok lenses_page1 "${G[@]}" lenses list --shard-index 1 --max-items-per-shard 2 && {
    [[ $(json_len <"$TMP/lenses_page1.out") == 1 ]] || fail "lenses_page1: not 1 lens: $(cat "$TMP/lenses_page1.out")"
    contains lenses_page1 lns-emu-query
}
expect_ok lenses_page_past "${G[@]}" lenses list --shard-index 7 --max-items-per-shard 2 &&
    [[ $(tr -d '[:space:]' <"$TMP/lenses_page_past.out") == "[]" ]] || fail "lenses_page_past: not []"
usage_error lenses_page_half "--max-items-per-shard" "${G[@]}" lenses list --shard-index 1
expect_status lenses_page_half 2
usage_error lenses_page_zero "--max-items-per-shard" "${G[@]}" lenses list --shard-index 0 --max-items-per-shard 0
expect_ok lenses_clone "${G[@]}" lenses clone lns-emu-mailbox && contains lenses_clone '(clone)'
CLONE=$(json_field lens_id <"$TMP/lenses_clone.out")
[[ $CLONE == lns-* && $CLONE != lns-emu-mailbox ]] || fail "lenses clone: no new lens_id in $(cat "$TMP/lenses_clone.out")"
expect_ok lenses_get_clone "${G[@]}" lenses get "$CLONE" && contains lenses_get_clone "\"lens_id\":\"$CLONE\""
expect_ok lenses_delete "${G[@]}" lenses delete "$CLONE" && contains lenses_delete '"deleted":true'
expect_error lenses_delete_again "lens/delete" "${G[@]}" lenses delete "$CLONE"
expect_error lenses_clone_unknown "lens/clone" "${G[@]}" lenses clone lns-no-such-lens

expect_ok sessions_info "${G[@]}" sessions info && contains sessions_info '"max_sessions"'
# Four sessions exist by now (one destroyed, three running).
expect_ok sessions_page "${G[@]}" sessions list --shard-index 1 --max-items-per-shard 3 &&
    [[ $(json_len <"$TMP/sessions_page.out") == 1 ]] || fail "sessions_page: not 1 session: $(cat "$TMP/sessions_page.out")"
expect_ok sessions_page_all "${G[@]}" sessions list &&
    [[ $(json_len <"$TMP/sessions_page_all.out") == 4 ]] || fail "sessions list: not 4 sessions"
expect_ok sessions_process_status "${G[@]}" sessions process "$MAILBOX" session.status &&
    contains sessions_process_status "\"session_id\":\"$MAILBOX\""
expect_ok sessions_process_update "${G[@]}" sessions process "$MAILBOX" session.update \
    --data '{"type":"data.json","event_data":{"via":"rest"}}' && {
    contains sessions_process_update '"type":"session.update.response"'
    contains sessions_process_update '"is_valid":true'
}
usage_error sessions_process_bad_data "--data" "${G[@]}" sessions process "$MAILBOX" session.update --data '{nope'
expect_status sessions_process_bad_data 2
expect_error sessions_process_unknown "Unknown session id: lsn-no-such-session" "${G[@]}" \
    sessions process lsn-no-such-session session.status

expect_ok files_info "${G[@]}" files info && contains files_info '"num_files"'
expect_ok files_get "${G[@]}" files get cli_upload.csv && contains files_get '"file_id":"cli_upload.csv"'
expect_error files_get_unknown "files/metadata" "${G[@]}" files get no-such-file.csv
# Round trip of a file of several chunks: upload (streamed), download to a file and to stdout.
# stderr is not a terminal here, so no progress line: expect_ok insists on an empty stderr.
head -c 300000 /dev/urandom | base64 >"$TMP/round.txt"
expect_ok files_upload_round "${G[@]}" files upload "$TMP/round.txt" && contains files_upload_round '"file_id":"round.txt"'
expect_ok files_download_out "${G[@]}" files download round.txt --output "$TMP/round.out" && {
    contains files_download_out "\"bytes\":$(wc -c <"$TMP/round.txt" | tr -d ' ')"
    contains files_download_out '"file_id":"round.txt"'
}
cmp -s "$TMP/round.txt" "$TMP/round.out" && pass || fail "files download --output: the file differs from the upload"
[[ -e "$TMP/round.out.part" ]] && fail "files download --output: left round.out.part behind"
run_lens files_download_stdout "${G[@]}" files download round.txt
expect_status files_download_stdout 0
cmp -s "$TMP/round.txt" "$TMP/files_download_stdout.out" && pass ||
    fail "files download to stdout: the bytes differ from the upload (or something else went to stdout)"
[[ -s "$TMP/files_download_stdout.err" ]] && fail "files download to stdout: unexpected stderr: $(head -c 300 "$TMP/files_download_stdout.err")"
expect_ok files_upload_no_progress "${G[@]}" files upload --no-progress "$TMP/round.txt"
# The base64 endpoint stores the decoded bytes.
printf 'x,y\n3,4\n' >"$TMP/b64.csv"
expect_ok files_upload_base64 "${G[@]}" files upload "$TMP/b64.csv" --base64 && contains files_upload_base64 '"file_id":"b64.csv"'
run_lens files_download_b64 "${G[@]}" files download b64.csv
expect_status files_download_b64 0
cmp -s "$TMP/b64.csv" "$TMP/files_download_b64.out" && pass || fail "files upload --base64: downloaded bytes differ"
expect_ok files_delete "${G[@]}" files delete b64.csv && contains files_delete '"deleted":true'
expect_error files_get_deleted "files/metadata" "${G[@]}" files get b64.csv
expect_error files_delete_again "files/delete" "${G[@]}" files delete b64.csv
# Bad input: a missing file and a missing directory are refused before sending (status 2);
# an unknown file id is the server's 404 (status 1), with nothing on stdout and no file left.
usage_error files_upload_missing "does not exist" "${G[@]}" files upload "$TMP/no-such-file.csv"
expect_status files_upload_missing 2
usage_error files_upload_missing_b64 "does not exist" "${G[@]}" files upload --base64 "$TMP/no-such-file.csv"
expect_error files_download_unknown "files/download" "${G[@]}" files download no-such-file.csv
expect_status files_download_unknown 1
expect_error files_download_unknown_out "files/download" "${G[@]}" files download no-such-file.csv \
    --output "$TMP/unknown.out"
[[ -e "$TMP/unknown.out" || -e "$TMP/unknown.out.part" ]] && fail "files download of an unknown id left a file behind"
usage_error files_download_no_dir "--output" "${G[@]}" files download round.txt --output "$TMP/no-such-dir/round.out"
expect_status files_download_no_dir 2
grep -qF "does not exist" "$TMP/files_download_no_dir.err" ||
    fail "files_download_no_dir: the error does not say the directory does not exist: $(cat "$TMP/files_download_no_dir.err")"

# Progress lines under a pseudo-terminal (util-linux `script`; skipped without it):
# "upload round.txt ... 100% ..." on the terminal, none with --no-progress.
if command -v script >/dev/null 2>&1 && script -qec true /dev/null >/dev/null 2>&1; then
    pty_run() { # pty_run NAME ARGS...: lens ARGS with stdout and stderr on a pty
        local name=$1
        shift
        timeout 60 script -qec "$(printf '%q ' "$LENS" "$@")" /dev/null >"$TMP/$name.pty" 2>&1 </dev/null
    }
    pty_run pty_upload "${G[@]}" files upload "$TMP/round.txt"
    grep -q 'upload round.txt .*100%' "$TMP/pty_upload.pty" && pass ||
        fail "pty_upload: no progress line on a terminal: $(head -c 300 "$TMP/pty_upload.pty" | tr '\r' '|')"
    grep -qF -- "$KEY" "$TMP/pty_upload.pty" && fail "pty_upload: the key appears in the output"
    pty_run pty_download "${G[@]}" files download round.txt --output "$TMP/round.pty.out"
    grep -q 'download round.txt .*100%' "$TMP/pty_download.pty" && pass ||
        fail "pty_download: no progress line on a terminal: $(head -c 300 "$TMP/pty_download.pty" | tr '\r' '|')"
    pty_run pty_quiet "${G[@]}" files upload --no-progress "$TMP/round.txt"
    grep -q '%' "$TMP/pty_quiet.pty" && fail "pty_quiet: --no-progress still drew progress" || pass
else
    echo "note: util-linux 'script' not available: progress lines on a terminal not checked" >&2
fi

# ---- the rest of the API over the WebSocket: update, call, input, destroy ----------------
expect_ok ws_update "${G[@]}" update "$MAILBOX" --json '{"cli":"update"}' && {
    contains ws_update '"type":"session.update.response"'
    contains ws_update '"is_valid":true'
}
printf '{"line":1}\n\n{"line":2}\n' >"$TMP/updates.jsonl"
run_lens ws_update_jsonl "${G[@]}" update "$MAILBOX" --jsonl "$TMP/updates.jsonl"
expect_status ws_update_jsonl 0
[[ $(wc -l <"$TMP/ws_update_jsonl.out") == 2 ]] && is_json_lines <"$TMP/ws_update_jsonl.out" && pass ||
    fail "ws_update_jsonl: expected two JSON reply lines: $(cat "$TMP/ws_update_jsonl.out" "$TMP/ws_update_jsonl.err")"
no_secret ws_update_jsonl
printf '{"line":3}\n' | run_lens ws_update_stdin "${G[@]}" update "$MAILBOX" --jsonl -
expect_status ws_update_stdin 0
contains ws_update_stdin '"type":"session.update.response"'
expect_ok ws_read_updates "${G[@]}" read "$MAILBOX" --client-id cli-reader-updates && {
    contains ws_read_updates '"cli":"update"'
    contains ws_read_updates '"line":1'
    contains ws_read_updates '"line":2'
    contains ws_read_updates '"line":3'
    contains ws_read_updates '"via":"rest"'
}
usage_error ws_update_bad_json "--json" "${G[@]}" update "$MAILBOX" --json '{nope'
expect_status ws_update_bad_json 2
printf '{"line":1}\nnot json\n' >"$TMP/bad.jsonl"
usage_error ws_update_bad_line "line 2" "${G[@]}" update "$MAILBOX" --jsonl "$TMP/bad.jsonl"
usage_error ws_update_missing_file "--jsonl" "${G[@]}" update "$MAILBOX" --jsonl "$TMP/no-such.jsonl"
usage_error ws_update_nothing "--json" "${G[@]}" update "$MAILBOX"
expect_error ws_update_unknown "Unknown session id: lsn-no-such-session" "${G[@]}" update lsn-no-such-session --json '{}'

expect_ok ws_call "${G[@]}" call "$MAILBOX" session.heartbeat && contains ws_call '"type":"session.heartbeat.response"'
expect_ok ws_call_data "${G[@]}" call "$MAILBOX" session.read --data '{"client_id":"cli-call"}' &&
    contains ws_call_data '"client_id":"cli-call"'
usage_error ws_call_bad_data "--data" "${G[@]}" call "$MAILBOX" session.read --data '[1,'
expect_status ws_call_bad_data 2
expect_error ws_call_unknown_type "Unknown event type: session.no-such-event" "${G[@]}" call "$MAILBOX" session.no-such-event

printf '{"t":0,"v":1}\n{"t":1,"v":2}\n' >"$TMP/cli_lines.jsonl"
expect_ok files_upload_jsonl "${G[@]}" files upload "$TMP/cli_lines.jsonl"
expect_ok ws_input_jsonl "${G[@]}" input "$MONITOR" --jsonl cli_lines.jsonl && contains ws_input_jsonl '"is_valid":true'
expect_ok ws_input_raw "${G[@]}" input "$MONITOR" --stream-type csv_file_reader --stream-config '{"file_id":"cli_upload.csv"}' &&
    contains ws_input_raw '"is_valid":true'
usage_error ws_input_bad_config "--stream-config" "${G[@]}" input "$MONITOR" --stream-type x --stream-config '{'
usage_error ws_input_config_array "--stream-config" "${G[@]}" input "$MONITOR" --stream-type x --stream-config '[]'
usage_error ws_input_two_sources "excludes" "${G[@]}" input "$MONITOR" --jsonl a.jsonl --csv b.csv

# Sec-WebSocket-Protocol authentication, as a global flag and on the subcommand.
expect_ok ws_subprotocol "${G[@]}" --subprotocol-auth status "$MAILBOX" && contains ws_subprotocol "\"session_id\":\"$MAILBOX\""
expect_ok ws_subprotocol_sub "${G[@]}" call "$MAILBOX" session.heartbeat --subprotocol-auth

# session.destroy over the WebSocket (lens destroy), distinct from REST `sessions destroy`.
new_session DOOMED ws_create_doomed lns-emu-mailbox
expect_ok ws_destroy "${G[@]}" destroy "$DOOMED" && {
    contains ws_destroy '"type":"session.destroy.response"'
    contains ws_destroy STALE
}
expect_ok ws_destroyed_get "${G[@]}" sessions get "$DOOMED" && contains ws_destroyed_get STALE
expect_error ws_destroy_again "$DOOMED" "${G[@]}" --timeout 5 destroy "$DOOMED"
expect_error ws_destroy_unknown "Unknown session id: lsn-no-such-session" "${G[@]}" destroy lsn-no-such-session

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
for needed in lenses sessions files emulator demo status validate read query input destroy update call; do
    grep -qx "$needed" <<<"$top" || fail "'lens --help' does not list '$needed'"
done
for sub in $top; do
    help_ok "$sub"
    for subsub in $(subcommands_of "$sub"); do
        help_ok "$sub" "$subsub"
    done
done
for path in "lenses list" "lenses get" "lenses info" "lenses clone" "lenses delete" "sessions create" \
    "sessions list" "sessions get" "sessions destroy" "sessions info" "sessions process" "files upload" \
    "files list" "files info" "files get" "files delete" "files download" destroy update call input; do
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
