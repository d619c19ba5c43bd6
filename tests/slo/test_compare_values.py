"""A regression's canary contract: "the candidate's mean <field> is at most X% away from the
baseline's", decided by judge.mean_change and judge.magnitude, replayed on real predictions.

slo/calibration/diabetes-prediction-means.json holds the `prediction_mean` of every 200
answer of a real diabetes run (make load FUNCTION=diabetes, 16 users, 75 s: 3,788 answers
of 53 kinds of request). Two disjoint random halves of it are identical code; one half
scaled is a model that predicts higher or lower on the same traffic."""

import json
import math

import numpy as np
import pytest

from logslo import judge
from test_slo_compare import run_compare, write
from test_slo_logql import T0, request
from test_slo_runner import REPO

POOL = json.loads((REPO / "slo" / "calibration" / "diabetes-prediction-means.json").read_text())["prediction_mean"]
CONTRACTS = REPO / "functions" / "diabetes" / "compare"
BOUND = 0.05  # the diabetes canary's: "at most 5% away"


def replay(scale, n, trials=300, seed=0):
    """(share of trials whose signed interval holds the true change, {verdict: share})."""
    values, rng = np.asarray(POOL), np.random.default_rng(seed)
    covered, verdicts = 0, {}
    for _ in range(trials):
        order = rng.permutation(len(values))
        interval = judge.mean_change(values[order[:n]], values[order[n:2 * n]] * scale, 0.99)
        covered += interval.low <= scale - 1 <= interval.high
        verdict = judge.decide(judge.magnitude(interval), BOUND)
        verdicts[verdict] = verdicts.get(verdict, 0) + 1 / trials
    return covered / trials, verdicts


def test_the_pool_is_real_predictions():
    assert len(POOL) >= 3000 and len(set(POOL)) >= 40  # many requests of many kinds
    assert 25 <= min(POOL) and max(POOL) <= 346  # within the training targets' range


def test_identical_code_is_not_held_and_the_interval_covers_as_stated():
    coverage, verdicts = replay(1.0, 1800)
    assert coverage >= 0.96  # two one-sided 99% bounds: 98% nominal
    assert verdicts.get("hold", 0) == 0
    assert verdicts.get("promote", 0) >= 0.95


@pytest.mark.parametrize("scale, held_at_least", [(1.10, 0.95), (0.90, 0.95)])
def test_predictions_ten_percent_higher_or_lower_are_held(scale, held_at_least):
    coverage, verdicts = replay(scale, 1800)
    assert coverage >= 0.96
    assert verdicts.get("hold", 0) >= held_at_least


def test_a_change_within_the_bound_is_never_held():
    _coverage, verdicts = replay(1.03, 1800)
    assert verdicts.get("hold", 0) == 0


def test_magnitude_reads_the_signed_interval_either_way():
    up = judge.Interval(0.08, 0.06, 0.10, 0.99)
    down = judge.Interval(-0.08, -0.10, -0.06, 0.99)
    around = judge.Interval(0.01, -0.02, 0.04, 0.99)
    assert judge.magnitude(up) == judge.magnitude(down) == judge.Interval(0.08, 0.06, 0.10, 0.99)
    assert judge.magnitude(around) == judge.Interval(0.01, 0.0, 0.04, 0.99)
    with pytest.raises(ValueError):
        judge.mean_change([1.0], [1.0, 2.0], 0.99)


def diabetes_lines(version, values, start=T0 - 3000):
    """One 200 request line of the diabetes function per value, 0.5 s apart."""
    return [request(start + i * 0.5, version, latency=1.0 + (i % 7) * 0.1, function="diabetes",
                    prediction_mean=round(v, 3), instances=1) for i, v in enumerate(values)]


@pytest.mark.parametrize("scale, verdict, code", [(1.10, "hold", 1), (1.0, "promote", 0)])
def test_the_diabetes_canary_contract_through_the_command(tmp_path, scale, verdict, code):
    half = len(POOL) // 2
    lines = diabetes_lines("v1", POOL[:half]) + diabetes_lines("v2", [v * scale for v in POOL[half:2 * half]])
    out = tmp_path / "out"
    got, text = run_compare({"LOG_FILE": write(tmp_path, lines), "SLO_AT": str(T0), "COMPARE_BASELINE": "v1",
                             "COMPARE_CANDIDATE": "v2", "COMPARE_REPORT": str(out)}, features=CONTRACTS)
    doc = json.loads((out / "report.json").read_text())
    mean = [c for c in doc["contracts"] if c["contract"].startswith("mean prediction_mean")]
    assert len(mean) == 1, text[-2000:]
    assert mean[0]["verdict"] == verdict, mean[0]
    assert math.isclose(mean[0]["estimate"], abs(scale - 1), abs_tol=0.03), mean[0]
    assert doc["verdict"] == verdict and got == code, text[-2000:]
