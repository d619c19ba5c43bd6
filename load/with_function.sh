#!/usr/bin/env bash
# Run a command against the function started locally, then stop the function.
#
#   load/with_function.sh LOG_DIR COMMAND [ARGS...]
#
# The Makefile's and the shell scripts' way to call `load/local_function.py run`, which
# does the work (FunctionProcess): the function is started as `make run` starts
# it (python index.py in the shrinkwrapped build folder, with FN_ENV, the
# Makefile's RUN_ENV), with its stdout - the JSON log - in LOG_DIR/function.log
# and its stderr in LOG_DIR/function.stderr.log. COMMAND runs once /ready
# answers 200; it finds the function at $FUNCTION_URL. Whatever happens (COMMAND
# fails, Ctrl-C, this script is killed with TERM) the function is stopped:
# SIGTERM, then SIGKILL after STOP_TIMEOUT seconds. Exit status: COMMAND's, or 3
# if the function could not be started.
#
# Needs PY (the venv's python), FN_BUILD (build/<fn>), PORT, FN_ENV. Locally
# nothing routes to the process after SIGTERM, so DRAIN_SECONDS defaults to
# 0.5 here instead of the container's 5.
set -euo pipefail

log_dir=${1:?usage: with_function.sh LOG_DIR COMMAND [ARGS...]}
shift
: "${PY:?set PY}" "${FN_BUILD:?set FN_BUILD}" "${PORT:?set PORT}"
exec "$PY" "$(dirname "$0")/local_function.py" run --port "$PORT" --env "${FN_ENV:-}" "$FN_BUILD" "$log_dir" "$@"
