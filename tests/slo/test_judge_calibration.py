"""The judge's error rates at make review's default size, replayed from real request lines
of identical code (slo/calibration; make judge-calibration prints the same table)."""
from collections import Counter

import pytest

from logslo import calibration
from logslo.compare import feature
from test_slo_runner import REPO

POOL = REPO / "slo" / "calibration" / "identical-code.jsonl.gz"
FEATURE = REPO / "functions" / "classifier" / "compare" / "canary.feature"


@pytest.fixture(scope="module")
def pool():
    return calibration.read_pool(str(POOL))


def test_the_pool_is_one_review_run_of_identical_code(pool):
    versions = Counter(line["model_version"] for line in pool)
    assert len(versions) == 2 and min(versions.values()) > 5000  # both sides of one make review run
    assert {"200", "400", "415"} <= {str(line["status"]) for line in pool}  # photos and bad requests, as sent
    assert len({line["top1_class"] for line in pool if line["status"] == 200}) >= 5


def test_the_shipped_contracts_meet_their_targets_at_the_default_review_size(pool):
    """False holds of identical code at most 2.5%; a +25% latency, +3 points of 5xx and 20% of
    answers moved to one class held at least 97.5% of the time (400 and 200 trials)."""
    trials = {s: 400 if s == "identical" else 200 for s in calibration.SCENARIOS}
    tallies = calibration.run(pool, feature.read(str(FEATURE)), 2000, trials)
    print("\n" + calibration.table(tallies, 2000, len(pool)))
    assert calibration.missed_targets(tallies) == []
    assert tallies["identical"].rate("promote") >= 0.9  # and identical code is mostly decided, not left open


def test_the_calibration_catches_a_judge_that_holds_too_easily(pool, tmp_path):
    """The same replay with a careless contract (a p50 within 2% at 60% confidence) misses
    the false-hold target: the check can fail."""
    careless = tmp_path / "careless.feature"
    careless.write_text("Feature: careless\n  Background:\n    Given a confidence level of 60%\n"
                        "  Scenario: p50\n    Then the candidate's p50 latency is at most 2% above the baseline's\n")
    tallies = calibration.run(pool, feature.read(str(careless)), 2000, {"identical": 60})
    missed = calibration.missed_targets(tallies)
    assert missed and missed[0].startswith("identical: held in"), calibration.table(tallies, 2000, len(pool))
