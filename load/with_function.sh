#!/usr/bin/env bash
# Run a command against the function started locally, then stop the function.
#
#   load/with_function.sh LOG_DIR COMMAND [ARGS...]
#
# The function is started as `make run` starts it (python index.py in the
# shrinkwrapped build folder, with FN_ENV, the Makefile's RUN_ENV), with its
# stdout - the JSON log - in LOG_DIR/function.log and its stderr in
# LOG_DIR/function.stderr.log. COMMAND runs once /ready answers 200; it finds
# the function at $FUNCTION_URL. Whatever happens (COMMAND fails, Ctrl-C, this
# script is killed with TERM) the function is stopped: SIGTERM, then SIGKILL
# after STOP_TIMEOUT seconds. Exit status: COMMAND's, or 3 if the function
# could not be started.
#
# Needs PY (the venv's python), FN_BUILD (build/<fn>), PORT, FN_ENV. Locally
# nothing routes to the process after SIGTERM, so DRAIN_SECONDS defaults to
# 0.5 here instead of the container's 5.
set -uo pipefail

log_dir=${1:?usage: with_function.sh LOG_DIR COMMAND [ARGS...]}
shift
: "${PY:?set PY}" "${FN_BUILD:?set FN_BUILD}" "${PORT:?set PORT}" "${FN_ENV:=}"
READY_TIMEOUT=${READY_TIMEOUT:-180}
STOP_TIMEOUT=${STOP_TIMEOUT:-30}
export FUNCTION_URL=http://127.0.0.1:$PORT
fn_pid=""
cmd_pid=""

stop_command() {
    [ -n "$cmd_pid" ] || return 0
    if kill -0 "$cmd_pid" 2>/dev/null; then
        echo "stopping the command (pid $cmd_pid, SIGTERM)"
        kill -TERM "$cmd_pid" 2>/dev/null
        wait "$cmd_pid" 2>/dev/null
    fi
    cmd_pid=""
}

stop_function() {
    stop_command
    [ -n "$fn_pid" ] || return 0
    if kill -0 "$fn_pid" 2>/dev/null; then
        echo "stopping the function (pid $fn_pid, SIGTERM)"
        kill -TERM "$fn_pid" 2>/dev/null
        local waited=0
        while kill -0 "$fn_pid" 2>/dev/null && [ "$waited" -lt $((STOP_TIMEOUT * 10)) ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$fn_pid" 2>/dev/null; then
            echo "the function did not stop within ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$fn_pid" 2>/dev/null
        fi
    fi
    wait "$fn_pid" 2>/dev/null
    local code=$?
    echo "function stopped (exit $code); its log: $log_dir/function.log"
    fn_pid=""
}
trap stop_function EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

probe() {  # probe URL -> 0 when it answers 200
    "$PY" -c 'import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)' "$1"
}

if "$PY" -c 'import socket, sys; s = socket.socket(); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0)' "$PORT"; then
    echo "port $PORT is already in use (a \`make run\` still going?): stop it, pass PORT=... for another port, or HOST=http://127.0.0.1:$PORT to load what is running there" >&2
    exit 3
fi

mkdir -p "$log_dir"
: > "$log_dir/function.log"
echo "starting the function on $FUNCTION_URL (log: $log_dir/function.log)"
# shellcheck disable=SC2086  # FN_ENV is a list of NAME=value words
(cd "$FN_BUILD" && exec env DRAIN_SECONDS="${DRAIN_SECONDS:-0.5}" $FN_ENV "$PY" index.py) \
    > "$log_dir/function.log" 2> "$log_dir/function.stderr.log" < /dev/null &
fn_pid=$!

started=$SECONDS
until probe "$FUNCTION_URL/ready"; do
    if ! kill -0 "$fn_pid" 2>/dev/null; then
        echo "the function exited during start-up; last lines of its stderr:" >&2
        tail -n 20 "$log_dir/function.stderr.log" >&2
        exit 3
    fi
    if [ $((SECONDS - started)) -ge "$READY_TIMEOUT" ]; then
        echo "the function was not ready after ${READY_TIMEOUT}s" >&2
        exit 3
    fi
    sleep 0.5
done
echo "function ready after $((SECONDS - started))s"

# In the background so that a TERM/INT to this script is handled at once (bash
# runs traps only between commands, and `wait` is interruptible).
"$@" <&0 &  # keep stdin: a background command would get /dev/null
cmd_pid=$!
wait "$cmd_pid"
code=$?
cmd_pid=""
stop_function
exit "$code"
