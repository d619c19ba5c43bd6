#!/usr/bin/env bash
# `make review BASE=<git ref>`: the pre-merge check, on one machine, no cluster.
#
#   1. a git worktree of BASE in a temporary folder; both BASE and the working tree are
#      shrinkwrapped (each with its own shrinkwrap command and template) and their model
#      artifacts prepared (the compile is reused when the recipe did not change)
#   2. both run locally AT THE SAME TIME (base on PORT, candidate on PORT+1), with
#      MODEL_VERSION=base-<sha> / candidate-<sha>, and one Locust traffic is split
#      between them request by request (each kind of payload alternating between the
#      sides in random order, seeded, so both get the same mix):
#      a real canary shares its window with the stable version, so whatever the
#      machine does during the run (another job, a slow minute) hits both sides alike
#   3. the two logs are merged and `make compare` judges the candidate against the base
#      (COMPARE_FEATURES: the function's functions/<name>/compare); report.md, report.json, report.html in REVIEW_DIR (reports/review)
#
# REVIEW_MODE=canary (make canary BASE=<git ref>): instead of step 3, the watch
# (`torchfaas-slo watch`) judges the candidate WHILE the split traffic runs, a look every
# INTERVAL seconds (default 10) until DEADLINE (default 180), reading both logs as they
# grow; the traffic stops when the watch decides; reports in REVIEW_DIR (reports/canary).
#
# Exit: compare's (0 promote, 1 hold, 2 inconclusive, 3 broken), or 3 if a side could
# not be built or run. Needs PY, PORT, FUNCTION from the Makefile; REVIEW_USERS
# (16), REVIEW_SECONDS (90), REVIEW_SEED (7): about 2,000 requests a version on a 2-core
# machine, the size the calibration (make judge-calibration) measures the judge at;
# REVIEW_PROCESS_SD (0.02): the latency shift's sd between process starts (docs/review.md).
set -uo pipefail
cd "$(dirname "$0")/.."

base_ref=${BASE:?set BASE=<git ref>, e.g. make review BASE=origin/main}
out=${REVIEW_DIR:-reports/review}
users=${REVIEW_USERS:-16}
seconds=${REVIEW_SECONDS:-90}
seed=${REVIEW_SEED:-7}
# each side is one process start, and starts of the same code differ in speed: 13 reviews
# of identical code on a 2-core machine spread their latency estimates with sd 3.3% where
# each run's own interval accounted for 2.5%, leaving ~2% between starts (docs/review.md)
process_sd=${REVIEW_PROCESS_SD:-0.02}
fn=${FUNCTION:-classifier}
compare_features=${COMPARE_FEATURES:-functions/$fn/compare}
# the SLO line on the report's latency chart: SLO_P99_MS (the Makefile passes the function's
# latency contract, `torchfaas-slo objective`), else read here from the function's SLO
# contracts (functions/<name>/slo); none: no line
slo_p99_ms=${SLO_P99_MS:-}
if [ -z "$slo_p99_ms" ]; then
    slo_p99_ms=$("$PY" -m logslo objective "functions/$fn/slo" 2>/dev/null)
fi

base_sha=$(git rev-parse --short=12 "$base_ref^{commit}") || { echo "review: no commit $base_ref" >&2; exit 3; }
cand_sha=$(git rev-parse --short=12 HEAD)
git diff --quiet HEAD -- . 2>/dev/null || cand_sha="$cand_sha-dirty"
base_version="base-$base_sha"
cand_version="candidate-$cand_sha"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/torchfaas-review.XXXXXX")
cleanup() {
    git worktree remove --force "$tmp/base" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
rm -rf "$out" && mkdir -p "$out"

echo "== review: candidate (working tree, $cand_version) vs base ($base_ref, $base_version)"
git worktree add --quiet --detach "$tmp/base" "$base_sha" || { echo "review: cannot check out $base_ref" >&2; exit 3; }

# build SIDE SRC_TREE: shrinkwrap SRC_TREE's function with SRC_TREE's own template, then
# prepare its artifacts (starting from this tree's, so an unchanged compile is reused)
build() {
    local side=$1 tree=$2
    local dest="$tmp/$side-build" artifacts="$tmp/$side-artifacts"
    if [ -f "$tree/load/local_function.py" ]; then
        "$PY" "$tree/load/local_function.py" shrinkwrap "$tree/functions/$fn" "$dest" || return 1
    elif [ -f "$tree/load/localrun.py" ]; then  # a tree whose shrinkwrap command is load/localrun.py
        "$PY" "$tree/load/localrun.py" shrinkwrap "$tree/functions/$fn" "$dest" || return 1
    else  # an older tree without either: the same layout by hand
        cp -r "$tree/template/python3-http-torch" "$dest" && cp -r "$tree/functions/$fn/." "$dest/function/" || return 1
    fi
    [ -d "artifacts/$fn" ] && cp -r "artifacts/$fn" "$artifacts"
    (cd "$dest" && ARTIFACTS_DIR="$artifacts" "$PY" -m torchfaas.prepare) > "$out/$side-prepare.log" 2>&1 \
        || { echo "review: preparing the $side's model failed; see $out/$side-prepare.log" >&2; return 1; }
}

# serving SIDE PORT VERSION: sets `serving` to the command that starts the side's build on
# PORT (its log in $out/SIDE/), runs the command given after it, then stops the side
serving() {
    local side=$1 port=$2 version=$3
    serving=(env PY="$PY" FN_BUILD="$tmp/$side-build" PORT="$port"
        FN_ENV="PORT=$port HOST=127.0.0.1 FUNCTION_NAME=$fn ARTIFACTS_DIR=$tmp/$side-artifacts MODEL_VERSION=$version"
        load/with_function.sh "$out/$side")
}

# both sides up, then one Locust run whose requests are split between them at random
load_both() {
    local base_port=$PORT cand_port=$((PORT + 1))
    local base_url="http://127.0.0.1:$base_port" cand_url="http://127.0.0.1:$cand_port"
    echo
    echo "== base ($base_version) on $base_url and candidate ($cand_version) on $cand_url, side by side:"
    echo "   $users users for ${seconds}s, each kind of payload alternating between them (seed $seed)"
    serving base "$base_port" "$base_version"
    local base_cmd=("${serving[@]}")
    serving candidate "$cand_port" "$cand_version"
    "${base_cmd[@]}" "${serving[@]}" \
        "$PY" -m locust -f load/locustfile.py --headless --only-summary \
        --host "$base_url" --split-hosts "$base_url,$cand_url" --function "$fn" --profile steady --peak-users "$users" \
        --duration "$seconds" --seed "$seed" --max-p95-ms 0 --max-p99-ms 0 --max-fail-ratio 1 \
        --csv "$out/locust" --sent-log "$out/sent.jsonl"
    local code=$?
    [ "$code" -lt 2 ] || { echo "review: the run failed (exit $code); see $out/*/function.stderr.log" >&2; return 1; }
}

# both sides up, the split traffic in the background, and the watch in the foreground
# reading both logs as they grow; the traffic stops when the watch ends
watch_both() {
    local base_port=$PORT cand_port=$((PORT + 1)) interval=${INTERVAL:-10} deadline=${DEADLINE:-180}
    local base_url="http://127.0.0.1:$base_port" cand_url="http://127.0.0.1:$cand_port"
    echo
    echo "== canary: base ($base_version) on $base_url and candidate ($cand_version) on $cand_url, side by side,"
    echo "   $users users split between them (seed $seed), watched every ${interval}s for up to ${deadline}s"
    serving base "$base_port" "$base_version"
    local base_cmd=("${serving[@]}")
    serving candidate "$cand_port" "$cand_version"
    "${base_cmd[@]}" "${serving[@]}" bash -c '
        "$PY" -m locust -f load/locustfile.py --headless --only-summary --host "$1" --split-hosts "$1,$2" \
            --function "$3" --profile steady --peak-users "$4" --duration "$((${6} + ${5} + 5))" --seed "$7" \
            --max-p95-ms 0 --max-p99-ms 0 --max-fail-ratio 1 --csv "$8/locust" --sent-log "$8/sent.jsonl" \
            > "$8/locust.log" 2>&1 &
        traffic=$!
        SLO_FUNCTION="$3" COMPARE_PROCESS_SD="$9" "$PY" -m logslo watch "${10}" --baseline "${11}" \
            --candidate "${12}" --log-file "$8/base/function.log" --log-file "$8/candidate/function.log" \
            --interval "$5" --deadline "$6" --report-dir "$8"
        code=$?
        kill -TERM "$traffic" 2>/dev/null; wait "$traffic" 2>/dev/null
        exit "$code"' canary "$base_url" "$cand_url" "$fn" "$users" "$interval" "$deadline" "$seed" "$out" \
        "$process_sd" "$compare_features" "$base_version" "$cand_version"
}

echo "== building base and candidate"
build base "$tmp/base" || exit 3
build candidate "$PWD" || exit 3
if [ "${REVIEW_MODE:-}" = canary ]; then
    export PY
    watch_both
    code=$?
    echo
    echo "canary: $out/watch.html, $out/report.md (exit $code: 0 promote, 1 hold, 2 inconclusive, 3 broken)"
    exit "$code"
fi
load_both || exit 3

cat "$out/base/function.log" "$out/candidate/function.log" > "$out/merged.log"
at=$(date +%s)
echo
echo "== compare (make compare) over $out/merged.log"
COMPARE_PROCESS_SD="$process_sd" COMPARE_REVIEW_SECONDS="$seconds" COMPARE_CONTEXT="one Locust run ($users users, ${seconds} s, seed $seed) split request by request between the base and the candidate served side by side, each kind of payload alternating between them in random order" \
SLO_FUNCTION="$fn" SLO_P99_MS="$slo_p99_ms" "$PY" -m logslo compare "$compare_features" \
    --baseline "$base_version" --candidate "$cand_version" --log-file "$out/merged.log" --at "$at" --report-dir "$out"
code=$?
echo
echo "review: $out/report.md, $out/report.html (exit $code: 0 promote, 1 hold, 2 inconclusive, 3 broken)"
exit "$code"
