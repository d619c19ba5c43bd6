"""A regression's drift contract: the PSI of a numeric prediction field over fixed bins,
this window against an earlier one (contracts.value_shift and its step), and `make slo
FUNCTION=diabetes` judging diabetes' own contracts (functions/diabetes/slo)."""
import json
import math
import random
import subprocess

import pytest

from logslo import contracts
from logslo.file_backend import FileBackend
from logslo.psi import psi
from test_slo_logql import T0, stamp
from test_slo_runner import REPO, run_slo

DIABETES_SLO = REPO / "functions" / "diabetes" / "slo"
EDGES = (100, 150, 200, 250)


def diabetes_line(at, value, status=200, latency=3.0, version="v1"):
    line = {"timestamp": stamp(at), "level": "INFO", "message": "inference", "event": "inference",
            "request_id": f"r{at}", "function": "diabetes", "model_name": "diabetes-linear",
            "model_version": version, "status": status, "latency_ms": latency}
    if status == 200:
        line.update(instances=1, prediction_mean=round(value, 3))
    return json.dumps(line)


def hour(shift_recent=0.0, seed=1, faults=0):
    """One request every 5 s over the hour before T0; predictions ~ N(152, 55), the
    last 30 minutes moved by `shift_recent`; `faults` of them answered 500."""
    rng = random.Random(seed)
    lines = []
    for i in range(720):
        at = T0 - 2 - i * 5
        value = rng.gauss(152, 55) + (shift_recent if i < 360 else 0.0)
        lines.append(diabetes_line(at, value, status=500 if i % 720 < faults else 200))
    return lines


def backend(tmp_path, lines):
    path = tmp_path / "diabetes.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return FileBackend(str(path)), str(path)


def test_same_distribution_passes_and_a_shift_fails_naming_the_bins(tmp_path):
    steady, _ = backend(tmp_path, hour())
    ok = contracts.value_shift(steady, "diabetes", T0, 1800, 1800, "prediction_mean", EDGES, 0.2)
    assert ok.passed and ok.measured < 0.1, ok.line()
    (tmp_path / "b").mkdir()
    moved, _ = backend(tmp_path / "b", hour(shift_recent=60))
    bad = contracts.value_shift(moved, "diabetes", T0, 1800, 1800, "prediction_mean", EDGES, 0.2)
    assert not bad.passed and bad.measured > 0.2 and "[250, inf)" in bad.note, bad.line()
    assert "prediction_mean >= 250" in bad.logql[-1] and 'status = 200 | prediction_mean < 100' in bad.logql[0]


def test_bin_shares_match_a_direct_count(tmp_path):
    lines = hour(shift_recent=30, seed=7)
    file_backend, _ = backend(tmp_path, lines)
    shares, _ = contracts.value_bin_shares(file_backend, "diabetes", T0, 1800, "prediction_mean", EDGES)
    recent = [json.loads(line)["prediction_mean"] for line in lines[:360]]  # (T0-1800, T0]
    bounds = [-math.inf, *EDGES, math.inf]
    expected = [sum(lo <= v < hi for v in recent) / len(recent) for lo, hi in zip(bounds, bounds[1:])]
    assert list(shares.values()) == pytest.approx(expected)
    assert list(shares) == ["[-inf, 100)", "[100, 150)", "[150, 200)", "[200, 250)", "[250, inf)"]
    assert psi(shares, shares) == 0


def test_no_prediction_in_a_window_fails_instead_of_passing(tmp_path):
    only_recent, _ = backend(tmp_path, hour()[:300])
    result = contracts.value_shift(only_recent, "diabetes", T0, 1800, 1800, "prediction_mean", EDGES, 0.2)
    assert not result.passed and "baseline window" in result.miss


def test_diabetes_contracts_judge_a_diabetes_log(tmp_path):
    _, healthy = backend(tmp_path, hour())
    code, out = run_slo({"LOG_FILE": healthy, "SLO_AT": str(T0)}, features=DIABETES_SLO)
    assert code == 0, out
    assert "prediction_mean distribution shift" in out and "p99 latency of diabetes" in out
    (tmp_path / "bad").mkdir()
    _, drifted = backend(tmp_path / "bad", hour(shift_recent=80, faults=20))
    code, out = run_slo({"LOG_FILE": drifted, "SLO_AT": str(T0)}, features=DIABETES_SLO)
    assert code != 0
    assert "FAIL  prediction_mean distribution shift" in out and "FAIL  5xx ratio of diabetes" in out


def test_make_slo_function_diabetes_picks_its_own_contracts(tmp_path):
    _, healthy = backend(tmp_path, hour())
    done = subprocess.run(["make", "--no-print-directory", "slo", "FUNCTION=diabetes", f"LOG_FILE={healthy}",
                           f"SLO_AT={T0}", f"SLO_HTML={tmp_path / 'report.html'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "diabetes" in done.stdout and "top1" not in done.stdout and "class" not in done.stdout
    assert (tmp_path / "report.html").is_file()
