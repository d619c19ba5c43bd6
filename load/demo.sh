#!/usr/bin/env bash
# `make demo`: the whole loop on one machine, no cluster.
#
#   1. start the classifier locally, its stdout (the JSON log) in reports/demo/function.log
#   2. load it for DEMO_SECONDS (default 30) with DEMO_USERS (default 6) Locust users
#      posting real photos plus a few bad requests; CSV + HTML reports in reports/demo/
#   3. stop the function (SIGTERM: it drains and logs its shutdown)
#   4. summarise the log and check every request sent has its log line
#   5. run the SLO contracts (slo/features, `make slo`) on the log file
#
# Exits non-zero if an SLO failed, a load threshold was broken, or a request has
# no log line. Nothing is left running (load/with_function.sh stops the function
# on any exit). Needs PY, FN_BUILD, PORT, FN_ENV from the Makefile.
set -uo pipefail
cd "$(dirname "$0")/.."

out=${DEMO_DIR:-reports/demo}
users=${DEMO_USERS:-6}
seconds=${DEMO_SECONDS:-30}
make_cmd=${MAKE:-make}
rm -rf "$out" && mkdir -p "$out"

echo "== torchfaas demo: classifier on http://127.0.0.1:$PORT, $users users for ${seconds}s"
load/with_function.sh "$out" \
    "$PY" -m locust -f load/locustfile.py --headless --only-summary \
    --host "http://127.0.0.1:$PORT" --profile steady --peak-users "$users" --duration "$seconds" \
    --csv "$out/locust" --html "$out/locust.html" --sent-log "$out/sent.jsonl"
load_code=$?
if [ "$load_code" -ge 128 ]; then
    echo "demo: interrupted; the function is stopped" >&2
    exit "$load_code"
elif [ "$load_code" -ge 2 ]; then
    echo "demo: the function or the load run failed (exit $load_code); see $out/function.stderr.log" >&2
    exit "$load_code"
fi

echo
echo "== the function's log"
"$PY" load/logsummary.py "$out/function.log" --sent "$out/sent.jsonl"
log_code=$?

echo
# @production-mix bands describe production traffic, not six demo photos;
# @needs-history scenarios compare with an earlier window a fresh log lacks
echo "== SLO contracts on $out/function.log (make slo)"
"$make_cmd" --no-print-directory slo LOG_FILE="$out/function.log" SLO_REPORT="$out/slo.json" \
    SLO_TAGS="${SLO_TAGS:-not @production-mix and not @needs-history}"
slo_code=$?

echo
echo "== where everything is"
echo "  function log (JSONL):    $out/function.log   (stderr: $out/function.stderr.log)"
echo "  requests sent:           $out/sent.jsonl"
echo "  Locust reports:          $out/locust.html, $out/locust_stats.csv, $out/locust_stats_history.csv"
[ -f "$out/slo.json" ] && echo "  SLO report:              $out/slo.json"

code=0
[ "$load_code" -ne 0 ] && { echo "demo: FAILED - a load threshold was broken (see the Locust output above)"; code=1; }
[ "$log_code" -ne 0 ] && { echo "demo: FAILED - the log does not account for every request"; code=1; }
[ "$slo_code" -ne 0 ] && { echo "demo: FAILED - an SLO contract is violated (see the report above)"; code=1; }
[ "$code" -eq 0 ] && echo "demo: OK - every request logged, load thresholds met, SLO contracts hold"
exit "$code"
