#!/usr/bin/env bash
# `make review BASE=<git ref>`: the pre-merge check, on one machine, no cluster.
#
#   1. a git worktree of BASE in a temporary folder; both BASE and the working tree are
#      shrinkwrapped (each with its own load/localrun.py and template) and their model
#      artifacts prepared (the compile is reused when the recipe did not change)
#   2. each runs locally under the same Locust traffic, one after the other (same seed,
#      same users, same duration), with MODEL_VERSION=base-<sha> / candidate-<sha>
#   3. the two logs are merged and `make compare` judges the candidate against the base
#      (slo/compare); report.md, report.json, report.html in REVIEW_DIR (reports/review)
#
# Exit: compare's (0 promote, 1 hold, 2 cannot judge), or 3 if a side could not be
# built or run. Needs PY, PORT, FUNCTION, MAKE from the Makefile; REVIEW_USERS (4),
# REVIEW_SECONDS (30), REVIEW_SEED (7).
set -uo pipefail
cd "$(dirname "$0")/.."

base_ref=${BASE:?set BASE=<git ref>, e.g. make review BASE=origin/main}
out=${REVIEW_DIR:-reports/review}
users=${REVIEW_USERS:-4}
seconds=${REVIEW_SECONDS:-30}
seed=${REVIEW_SEED:-7}
fn=${FUNCTION:-classifier}
make_cmd=${MAKE:-make}

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
    if [ -f "$tree/load/localrun.py" ]; then
        "$PY" "$tree/load/localrun.py" shrinkwrap "$tree/functions/$fn" "$dest" || return 1
    else  # an older tree without localrun.py: the same layout by hand
        cp -r "$tree/template/python3-http-torch" "$dest" && cp -r "$tree/functions/$fn/." "$dest/function/" || return 1
    fi
    [ -d "artifacts/$fn" ] && cp -r "artifacts/$fn" "$artifacts"
    (cd "$dest" && ARTIFACTS_DIR="$artifacts" "$PY" -m torchfaas.prepare) > "$out/$side-prepare.log" 2>&1 \
        || { echo "review: preparing the $side's model failed; see $out/$side-prepare.log" >&2; return 1; }
}

# load SIDE VERSION: run the side's build under the shared traffic; its log in $out/SIDE/
load() {
    local side=$1 version=$2
    echo
    echo "== $side ($version): $users users for ${seconds}s, seed $seed"
    PY="$PY" FN_BUILD="$tmp/$side-build" PORT="$PORT" \
    FN_ENV="PORT=$PORT HOST=127.0.0.1 FUNCTION_NAME=$fn ARTIFACTS_DIR=$tmp/$side-artifacts MODEL_VERSION=$version" \
        load/with_function.sh "$out/$side" \
        "$PY" -m locust -f load/locustfile.py --headless --only-summary \
        --host "http://127.0.0.1:$PORT" --profile steady --peak-users "$users" --duration "$seconds" \
        --seed "$seed" --max-p95-ms 0 --max-p99-ms 0 --max-fail-ratio 1 \
        --csv "$out/$side/locust" --sent-log "$out/$side/sent.jsonl"
    local code=$?
    [ "$code" -lt 2 ] || { echo "review: the $side run failed (exit $code); see $out/$side/function.stderr.log" >&2; return 1; }
}

echo "== building base and candidate"
build base "$tmp/base" || exit 3
build candidate "$PWD" || exit 3
load base "$base_version" || exit 3
load candidate "$cand_version" || exit 3

cat "$out/base/function.log" "$out/candidate/function.log" > "$out/merged.log"
at=$(date +%s)
echo
echo "== compare (make compare) over $out/merged.log"
"$make_cmd" --no-print-directory compare BASELINE="$base_version" CANDIDATE="$cand_version" \
    LOG_FILE="$out/merged.log" SLO_AT="$at" COMPARE_REPORT="$out"
code=$?
echo
echo "review: $out/report.md, $out/report.html (exit $code: 0 promote, 1 hold, 2 cannot judge)"
exit "$code"
