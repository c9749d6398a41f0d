# Shared by the command line tests (run_cli_tests.sh, run_config_tests.sh, run_bench_tests.sh):
# counting checks and failures, reading JSON (with python3 when it is there, else roughly
# with grep and sed), and starting an emulator. The sourcing script sets failures=0 and
# checks=0 (and LENS, TMP and EMU_PIDS=() to start emulators).

# fail MESSAGE...: one FAIL line on stderr, counted.
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
# pass: one check held.
pass() { checks=$((checks + 1)); }

if command -v python3 >/dev/null 2>&1; then
    is_json() { python3 -c 'import json,sys; json.load(sys.stdin)' 2>/dev/null; }
    # json_field FIELD < json: the top-level string field of an object
    json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
else
    is_json() { grep -Eq '^[[:space:]]*[[{].*[]}][[:space:]]*$'; }
    json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" | head -n1; }
fi

if command -v python3 >/dev/null 2>&1; then
    # json_len < json: the number of items of a top-level array
    json_len() { python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
    # is_json_lines < text: every line is one JSON document (and there is at least one)
    is_json_lines() { python3 -c '
import json,sys
lines = sys.stdin.read().splitlines()
assert lines
for l in lines: json.loads(l)' 2>/dev/null; }
    # all_json_lines < text: every line is a JSON object
    all_json_lines() { python3 -c '
import json,sys
for line in sys.stdin:
    assert isinstance(json.loads(line), dict), line' 2>/dev/null; }
else
    # (without python: the records of a list of sessions, else of lenses)
    json_len() {
        local text
        text=$(cat)
        if grep -qF '"session_id"' <<<"$text"; then grep -oF '"session_id"' <<<"$text" | wc -l | tr -d ' '
        else grep -oF '"lens_id"' <<<"$text" | wc -l | tr -d ' '; fi
    }
    is_json_lines() { ! grep -vq '^[[{]'; }
    all_json_lines() { ! grep -Evq '^\{.*\}$'; }
fi

# start_emulator NAME ARGS...: starts `$LENS emulator ARGS` in the background; sets EMU_PID
# (also added to EMU_PIDS, for the script's cleanup) and EMU_LINE (its first stdout line).
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
