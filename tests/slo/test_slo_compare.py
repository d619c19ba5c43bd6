"""`torchfaas-slo compare` (make compare): a canary that is slower, fails more and skews
the class mix is held; one drawn from the baseline's own distributions is promoted;
too few requests cannot be judged; the file and Loki backends give the same verdict
and figures, Loki being asked the very same LogQL."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import logslo
from logslo import compare
from logslo.file_backend import FileBackend
from test_slo_logql import T0, request
from test_slo_runner import REPO, loki_json

CONTRACTS = REPO / "slo" / "compare"
CLASSES = ["golden retriever", "lampshade", "tabby", "espresso", "Egyptian cat", "daisy", "moped", "tripod"]
WEIGHTS = [20, 15, 14, 13, 11, 10, 9, 8]


def traffic(version, seed, n=600, latency=(22.0, 4.0), fault_ratio=0.002, weights=WEIGHTS, start=T0 - 3000):
    """n requests over 40 minutes before T0: latency ~ N(mean, sd), 5xx with fault_ratio,
    classes drawn with weights, 2% bad requests (4xx)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        at = start + i * (2400 / n) + rng.random()
        roll = rng.random()
        ms = max(1.0, rng.gauss(*latency))
        if roll < fault_ratio:
            lines.append(request(at, version, status=500, latency=round(ms, 2), error="internal"))
        elif roll < fault_ratio + 0.02:
            lines.append(request(at, version, status=400, latency=round(ms / 10, 2), error="bad_image"))
        else:
            lines.append(request(at, version, latency=round(ms, 2), cls=rng.choices(CLASSES, weights)[0]))
    return lines


def baseline():
    return traffic("v1", seed=1)


def bad_canary():
    skew = [5, 15, 14, 13, 11, 30, 9, 8]  # golden retrievers vanish, daisies take over
    return traffic("v2", seed=2, latency=(30.0, 6.0), fault_ratio=0.03, weights=skew)


def good_canary():
    return traffic("v2", seed=3)  # the baseline's own distributions, another draw


def write(tmp_path, lines, name="merged.jsonl"):
    lines = sorted(lines, key=lambda line: json.loads(line)["timestamp"])
    path = tmp_path / name
    path.write_text("2026/11/21 04:00:00 Forked function has started\n" + "\n".join(lines) + "\n")
    return str(path)


def run_compare(env_extra, args=(), features=CONTRACTS):
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOKI_URL", "LOG_FILE", "SLO_AT", "SLO_TAGS", "COMPARE_BASELINE", "COMPARE_CANDIDATE",
                        "COMPARE_REPORT")}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(logslo.__file__).parents[1]), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "logslo", "compare", str(features), *args], env=env,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def compare_file(tmp_path, lines, name="out", **extra):
    out = tmp_path / name
    code, text = run_compare({"LOG_FILE": write(tmp_path, lines, f"{name}.jsonl"), "SLO_AT": str(T0),
                              "COMPARE_BASELINE": "v1", "COMPARE_CANDIDATE": "v2", "COMPARE_REPORT": str(out),
                              **extra})
    return code, text, out


def test_a_slower_faultier_skewed_canary_is_held(tmp_path):
    code, out, reports = compare_file(tmp_path, baseline() + bad_canary())
    assert code == 1, out
    assert "HOLD" in out
    doc = json.loads((reports / "report.json").read_text())
    assert doc["verdict"] == "hold"
    failed = {c["contract"] for c in doc["contracts"] if not c["passed"]}
    assert failed == {"p99 latency of the candidate vs the baseline",
                      "5xx ratio of the candidate minus the baseline's",
                      "class mix of the candidate vs the baseline (PSI)"}, out
    v1, v2 = doc["figures"]["v1"], doc["figures"]["v2"]
    assert v2["p99_ms"] > v1["p99_ms"] * 1.2 and v2["ratio_5xx"] > v1["ratio_5xx"] + 0.01
    assert v2["class_shares"]["golden retriever"] < 0.1 < v1["class_shares"]["golden retriever"]
    assert doc["deltas"]["class_mix_psi"] > 0.1
    assert set(doc["figures"]["v1"]) >= {"requests", "p50_ms", "p95_ms", "p99_ms", "ratio_5xx", "ratio_4xx",
                                         "class_shares"}
    assert all(c["logql"] for c in doc["contracts"])
    md = (reports / "report.md").read_text()
    assert "HOLD" in md and "| p99 latency |" in md and "**FAIL**" in md and "above the bound" in md
    assert (reports / "report.html").read_text().count('<svg class="chart"') >= 4


def test_a_canary_drawn_from_the_baseline_is_promoted(tmp_path):
    code, out, reports = compare_file(tmp_path, baseline() + good_canary())
    assert code == 0, out
    doc = json.loads((reports / "report.json").read_text())
    assert doc["verdict"] == "promote" and all(c["passed"] for c in doc["contracts"])
    assert abs(doc["deltas"]["p99_ms"]) < 0.1 * doc["figures"]["v1"]["p99_ms"]
    assert "PROMOTE" in (reports / "report.md").read_text()


def test_too_few_requests_cannot_be_judged(tmp_path):
    code, out, reports = compare_file(tmp_path, baseline() + traffic("v2", seed=4, n=20))
    assert code == 2, out
    doc = json.loads((reports / "report.json").read_text())
    assert doc["verdict"] == "cannot judge"
    assert "too few requests to judge" in out


def test_a_version_absent_from_the_log_cannot_be_judged(tmp_path):
    code, out, _ = compare_file(tmp_path, baseline(), COMPARE_CANDIDATE="v9")
    assert code == 2, out


@pytest.mark.parametrize("log", ["missing", "empty"])
def test_missing_or_empty_log_is_one_line_and_exit_2(tmp_path, log):
    path = tmp_path / "x.jsonl"
    if log == "empty":
        path.write_text("")
    code, out = run_compare({"LOG_FILE": str(path), "COMPARE_BASELINE": "v1", "COMPARE_CANDIDATE": "v2",
                             "COMPARE_REPORT": str(tmp_path / "r")})
    assert code == 2 and len(out.strip().splitlines()) == 1, out


def test_unreachable_loki_cannot_be_judged(tmp_path):
    code, out = run_compare({"LOKI_URL": "http://127.0.0.1:9", "LOKI_TIMEOUT": "2", "SLO_AT": str(T0),
                             "COMPARE_BASELINE": "v1", "COMPARE_CANDIDATE": "v2", "COMPARE_REPORT": str(tmp_path)})
    assert code == 2 and "unreachable" in out, out


class Recording:
    """A backend that answers from the file and remembers every question, so a fake Loki
    can give exactly those answers (Loki's own format) to exactly those queries."""

    def __init__(self, path):
        self.file = FileBackend(path)
        self.instant_answers, self.range_answers = {}, {}

    def describe(self):
        return self.file.describe()

    def instant(self, query, at):
        vector = self.file.instant(query, at)
        self.instant_answers[query.render()] = loki_json(vector)
        return vector

    def range(self, query, start, end, step):
        matrix = self.file.range(query, start, end, step)
        self.range_answers[query.render()] = {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": dict(key), "values": [[t, repr(v)] for t, v in points]} for key, points in matrix.items()]}}
        return matrix


@pytest.mark.parametrize("canary,verdict", [(bad_canary, "hold"), (good_canary, "promote")])
def test_same_verdict_and_figures_from_the_file_and_from_loki(tmp_path, fake_loki, canary, verdict):
    log = write(tmp_path, baseline() + canary())
    recording = Recording(log)
    comparison = compare.Comparison(recording, "classifier", T0, 3600, "v1", "v2")
    assert comparison.figures["v1"]["requests"] == 600

    def answer(path, params):
        table = recording.range_answers if path.endswith("query_range") else recording.instant_answers
        return (200, table[params["query"]]) if params["query"] in table else (400, b"unexpected query")

    loki = fake_loki(answer)
    file_code, file_out, file_dir = compare_file(tmp_path, baseline() + canary(), name="file")
    loki_dir = tmp_path / "loki"
    loki_code, loki_out = run_compare({"LOKI_URL": loki.url, "SLO_AT": str(T0), "COMPARE_BASELINE": "v1",
                                       "COMPARE_CANDIDATE": "v2", "COMPARE_REPORT": str(loki_dir)})
    assert file_code == loki_code == compare.EXIT_CODES[verdict], file_out + loki_out
    from_file = json.loads((file_dir / "report.json").read_text())
    from_loki = json.loads((loki_dir / "report.json").read_text())
    assert from_loki["verdict"] == from_file["verdict"] == verdict
    for key in ("figures", "deltas", "contracts", "logql", "timeline"):
        assert from_loki[key] == from_file[key], key
    # Loki was asked exactly the LogQL the file backend evaluated, nothing else
    asked = {(r["path"].rsplit("/", 1)[1], r["params"]["query"]) for r in loki.requests}
    assert asked == ({("query", q) for q in recording.instant_answers}
                     | {("query_range", q) for q in recording.range_answers})
    assert all("| json event" in q for _, q in asked)


def test_thresholds_are_read_from_the_feature_text(tmp_path):
    strict = tmp_path / "strict.feature"
    strict.write_text(CONTRACTS.joinpath("canary.feature").read_text().replace("at most 10% above", "at most 0% above"))
    lines = baseline() + traffic("v2", seed=3, latency=(23.0, 4.0))
    code, out = run_compare({"LOG_FILE": write(tmp_path, lines), "SLO_AT": str(T0), "COMPARE_BASELINE": "v1",
                             "COMPARE_CANDIDATE": "v2", "COMPARE_REPORT": str(tmp_path / "r")}, features=strict)
    assert code == 1 and "FAIL  p99 latency of the candidate vs the baseline" in out, out
