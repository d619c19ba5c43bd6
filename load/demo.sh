#!/usr/bin/env bash
# `make demo`: the whole loop on one machine, no cluster.
#
#   1. start the function (FUNCTION, default classifier) locally, its stdout (the JSON log)
#      in reports/demo/function.log
#   2. size the load from what the machine serves now (load/sizing.py: one client back to
#      back for 4 s; the most users, up to 6, that offer at most half of that), unless
#      DEMO_USERS=n asks for n users
#   3. load it for DEMO_SECONDS (default 30) with those Locust users posting its own load
#      inputs (functions/<name>/load_inputs.py: real photos for the classifier, real rows
#      for diabetes) plus a few bad requests; CSV + HTML reports in reports/demo/
#   4. stop the function (SIGTERM: it drains and logs its shutdown)
#   5. summarise the log and check every request sent has its log line
#   6. run the function's SLO contracts (functions/<name>/slo; `make slo`) on the log file, with the
#      HTML report in reports/demo/report.html
#   7. say whether the machine was busy during the load (load/machine.py: CPU used by
#      other processes), so that a failed latency contract names its likely cause
#
# The function is judged by its SLO contracts, measured server-side from its log.
# Locust's latency figures are measured by the client (they include the client's own
# queueing on a busy machine): they are printed, labelled as such, and judge nothing.
# Exits non-zero if an SLO failed, the client got answers it did not expect (wrong
# status codes), or a request has no log line. Nothing is left running
# (load/with_function.sh stops the function on any exit). Needs PY, FUNCTION, FN_BUILD,
# PORT, FN_ENV from the Makefile.
set -uo pipefail
cd "$(dirname "$0")/.."

out=${DEMO_DIR:-reports/demo}
users=${DEMO_USERS:-}  # empty: sized by load/sizing.py
seconds=${DEMO_SECONDS:-30}
make_cmd=${MAKE:-make}
fn=${FUNCTION:-classifier}
rm -rf "$out" && mkdir -p "$out"

echo "== torchfaas demo: $fn on http://127.0.0.1:$PORT, ${users:-as many users as the machine serves now (up to 6)} for ${seconds}s"
"$PY" load/machine.py snapshot $$ > "$out/machine-before.json"
# sizing and load in one start of the function: the sizing's requests warm it up, and
# they are real requests with their log lines (request ids size-...)
load/with_function.sh "$out" bash -c '
    users=$1
    if [ -z "$users" ]; then
        users=$("$PY" load/sizing.py --url "$FUNCTION_URL" --function "$2" --json "$3/sizing.json") || exit 3
    fi
    echo "== load: $users users for $4 s"
    exec "$PY" -m locust -f load/locustfile.py --headless --only-summary \
        --host "$FUNCTION_URL" --function "$2" --profile steady --peak-users "$users" --duration "$4" \
        --csv "$3/locust" --html "$3/locust.html" --sent-log "$3/sent.jsonl" \
        --max-p95-ms 0 --max-p99-ms 0' _ "$users" "$fn" "$out" "$seconds"
load_code=$?
machine=$("$PY" load/machine.py report "$out/machine-before.json" $$ "$out/machine.json")
machine_code=$?
if [ "$load_code" -ge 128 ]; then
    echo "demo: interrupted; the function is stopped" >&2
    exit "$load_code"
elif [ "$load_code" -ge 2 ]; then
    echo "demo: the function or the load run failed (exit $load_code); see $out/function.stderr.log" >&2
    exit "$load_code"
fi

echo
echo "== measured by the client (Locust; informational, the SLO contracts below judge the function)"
"$PY" - "$out/sent.jsonl" <<'PYEOF'
import json, sys
ms, bad = [], 0
with open(sys.argv[1], encoding="utf-8") as sent:
    for raw in sent:
        line = json.loads(raw)
        if str(line.get("name", "")).startswith("bad: "):
            bad += 1
        elif line.get("ms") is not None:
            ms.append(float(line["ms"]))
def pct(phi):  # rank phi*(n-1), interpolated, as the SLO contracts compute it server-side
    if not ms:
        return float("nan")
    ordered, rank = sorted(ms), phi * (len(ms) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
print(f"  client-measured latency of the {len(ms)} good requests (all kinds pooled; "
      f"{bad} bad requests left out): p50 {pct(0.5):.0f} ms, p95 {pct(0.95):.0f} ms, p99 {pct(0.99):.0f} ms")
print("  (round trip seen by Locust on this machine, including its own queueing; the server-side")
print("   figures in the function's log below are what the SLO contracts judge)")
PYEOF

echo
echo "== the machine during the load"
echo "  $machine"

echo
echo "== the function's log"
"$PY" load/logsummary.py "$out/function.log" --sent "$out/sent.jsonl"
log_code=$?

echo
# @production-mix bands describe production traffic, not six demo photos;
# @needs-history scenarios compare with an earlier window a fresh log lacks
echo "== SLO contracts on $out/function.log (make slo)"
slo_at=$(date +%s)
slo_tags=${SLO_TAGS:-not @production-mix and not @needs-history}
"$make_cmd" --no-print-directory slo FUNCTION="$fn" LOG_FILE="$out/function.log" SLO_REPORT="$out/slo.json" \
    SLO_HTML="$out/report.html" SLO_AT="$slo_at" SLO_TAGS="$slo_tags"
slo_code=$?

echo
echo "== where everything is"
echo "  function log (JSONL):    $out/function.log   (stderr: $out/function.stderr.log)"
echo "  requests sent:           $out/sent.jsonl"
echo "  Locust reports:          $out/locust.html, $out/locust_stats.csv, $out/locust_stats_history.csv"
[ -f "$out/slo.json" ] && echo "  SLO report:              $out/slo.json"
[ -f "$out/report.html" ] && echo "  HTML report:             $out/report.html"
echo "  the same SLO check again: make slo FUNCTION=$fn LOG_FILE=$out/function.log SLO_AT=$slo_at SLO_TAGS=\"$slo_tags\""

code=0
if [ "$slo_code" -ne 0 ]; then
    echo "demo: FAILED - an SLO contract is violated (see the SLO report above)"
    if [ "$machine_code" -eq 10 ]; then
        echo "demo: $machine: a latency contract may have failed for the machine, not the function;" \
             "run make demo again when the machine is quieter"
    else
        echo "demo: $machine: the failure is the function's"
    fi
    code=1
fi
[ "$load_code" -ne 0 ] && { echo "demo: FAILED - the client got answers it did not expect (see 'threshold broken' in the Locust output above)"; code=1; }
[ "$log_code" -ne 0 ] && { echo "demo: FAILED - the log does not account for every request"; code=1; }
[ "$code" -eq 0 ] && echo "demo: OK - the SLO contracts hold, every request is logged, every answer was the one expected"
exit "$code"
