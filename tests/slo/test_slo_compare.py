"""`torchfaas-slo compare` (make compare): each contract decided by an interval that knows
both sample sizes. A canary that is slower, fails more and skews the class mix is held;
one drawn from the baseline's own distributions is promoted; too little data is
inconclusive and says how much would decide; a broken run exits 3; the file and Loki
backends give the same verdict and figures, Loki being asked the very same LogQL; and
make passes every exit code through."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import logslo
from logslo import compare
from logslo.compare.sampling import Comparison
from logslo.file_backend import FileBackend
from test_slo_logql import T0, request
from test_slo_runner import REPO, loki_json

CONTRACTS = REPO / "functions" / "classifier" / "compare"
CLASSES = ["golden retriever", "lampshade", "tabby", "espresso", "Egyptian cat", "daisy", "moped", "tripod"]
WEIGHTS = [20, 15, 14, 13, 11, 10, 9, 8]


def traffic(version, seed, n=2000, latency=(3.0, 0.4), fault_ratio=0.0, weights=WEIGHTS, start=T0 - 3000):
    """n requests over 40 minutes before T0: log-normal latency (mu, sigma of log ms, median
    e^mu = 20 ms), 5xx with fault_ratio, classes drawn with weights, 2% bad requests (4xx)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        at = start + i * (2400 / n) + rng.random()
        roll = rng.random()
        ms = rng.lognormvariate(*latency)
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
    return traffic("v2", seed=2, latency=(3.3, 0.4), fault_ratio=0.03, weights=skew)


def good_canary():
    return traffic("v2", seed=3)  # the baseline's own distributions, another draw


def write(tmp_path, lines, name="merged.jsonl"):
    lines = sorted(lines, key=lambda line: json.loads(line)["timestamp"])
    path = tmp_path / name
    path.write_text("2026/11/21 04:00:00 Forked function has started\n" + "\n".join(lines) + "\n")
    return str(path)


def clean_env(extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOKI_URL", "LOG_FILE", "SLO_AT", "SLO_TAGS", "COMPARE_BASELINE", "COMPARE_CANDIDATE",
                        "COMPARE_REPORT", "MAKEFLAGS", "MAKELEVEL")}
    env.update(extra)
    return env


def run_compare(env_extra, args=(), features=CONTRACTS):
    env = clean_env(env_extra)
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


def verdicts(doc):
    return {c["contract"].split(" (")[0]: c["verdict"] for c in doc["contracts"]}


def test_a_slower_faultier_skewed_canary_is_held(tmp_path):
    code, out, reports = compare_file(tmp_path, baseline() + bad_canary())
    assert code == 1, out
    doc = json.loads((reports / "report.json").read_text())
    assert doc["verdict"] == "hold"
    held = {name for name, verdict in verdicts(doc).items() if verdict == "hold"}
    assert held == {"latency of the candidate vs the baseline", "5xx ratio of the candidate minus the baseline's",
                    "answers whose class differs between the mixes"}, out
    latency = next(c for c in doc["contracts"] if c["contract"].startswith("latency of"))
    assert 0.2 < latency["low"] < latency["estimate"] < latency["high"] < 0.5  # e^0.3 - 1 = +35%
    assert latency["confidence"] == 0.99 and latency["detectable"] < 0.25
    assert all(c["logql"] for c in doc["contracts"])
    md = (reports / "report.md").read_text()
    assert "HOLD" in md and "**HOLD**: the whole interval is above the bound" in md
    assert "| latency of the candidate vs the baseline" in md and "(99% interval)" in md
    page = (reports / "report.html").read_text()
    assert page.count('<svg class="chart"') >= 4 and 'data-chart="intervals"' in page


def test_a_canary_drawn_from_the_baseline_is_promoted(tmp_path):
    code, out, reports = compare_file(tmp_path, baseline() + good_canary())
    assert code == 0, out
    doc = json.loads((reports / "report.json").read_text())
    assert doc["verdict"] == "promote" and set(verdicts(doc).values()) == {"promote"}
    for contract in doc["contracts"]:
        if contract["unit"] != "requests":
            assert contract["low"] <= contract["estimate"] <= contract["high"] <= contract["bound"]
    assert "PROMOTE" in (reports / "report.md").read_text()


def test_too_few_requests_are_inconclusive_and_say_how_many_would_decide(tmp_path):
    code, out, reports = compare_file(tmp_path, baseline() + traffic("v2", seed=4, n=60),
                                      COMPARE_REVIEW_SECONDS="90")
    assert code == 2, out
    doc = json.loads((reports / "report.json").read_text())
    assert doc["verdict"] == "inconclusive"
    gate = doc["contracts"][0]
    assert gate["verdict"] == "inconclusive" and gate["needed_requests"] == 100
    md = (reports / "report.md").read_text()
    assert "INCONCLUSIVE" in md and "about 100 requests a version would decide it" in md
    assert "make review REVIEW_SECONDS=" in md  # what to raise, in the pull-request comment


def test_a_change_near_its_bound_is_inconclusive_with_the_traffic_that_would_decide(tmp_path):
    """+8% latency against a 10% bound, 300 requests a side: the interval straddles it."""
    lines = traffic("v1", seed=5, n=300) + traffic("v2", seed=6, n=300, latency=(3.08, 0.4))
    code, out, reports = compare_file(tmp_path, lines)
    assert code == 2, out
    doc = json.loads((reports / "report.json").read_text())
    latency = next(c for c in doc["contracts"] if c["contract"].startswith("latency of"))
    assert latency["verdict"] == "inconclusive" and latency["low"] < 0.10 < latency["high"]
    assert latency["needed_requests"] > 300
    assert doc["requests_per_second"] == pytest.approx(300 / 2400, rel=0.05)
    assert f"about {latency['needed_requests']} requests a version would decide it (~" in out


def test_a_version_absent_from_the_log_is_a_broken_run(tmp_path):
    code, out, reports = compare_file(tmp_path, baseline(), COMPARE_CANDIDATE="v9")
    assert code == 3, out
    assert "no request of model version v9" in out
    assert json.loads((reports / "report.json").read_text())["verdict"] == "broken"


@pytest.mark.parametrize("log", ["missing", "empty"])
def test_missing_or_empty_log_is_one_line_and_exit_3(tmp_path, log):
    path = tmp_path / "x.jsonl"
    if log == "empty":
        path.write_text("")
    code, out = run_compare({"LOG_FILE": str(path), "COMPARE_BASELINE": "v1", "COMPARE_CANDIDATE": "v2",
                             "COMPARE_REPORT": str(tmp_path / "r")})
    assert code == 3 and len(out.strip().splitlines()) == 1, out


def test_unreachable_loki_is_a_broken_run(tmp_path):
    code, out = run_compare({"LOKI_URL": "http://127.0.0.1:9", "LOKI_TIMEOUT": "2", "SLO_AT": str(T0),
                             "COMPARE_BASELINE": "v1", "COMPARE_CANDIDATE": "v2", "COMPARE_REPORT": str(tmp_path)})
    assert code == 3 and "unreachable" in out, out


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

    def lines(self, logs, start, end):
        """Loki's answer to a log query: the lines in streams, nanosecond timestamps."""
        from logslo.logfile import parse_rfc3339_ns
        found = list(self.file.lines(logs, start, end))
        self.range_answers[logs.render()] = {"status": "success", "data": {"resultType": "streams", "result": [
            {"stream": {"app": "classifier"},
             "values": [[str(parse_rfc3339_ns(f["timestamp"])), json.dumps(f)] for f in found]}]}}
        return iter(found)

    def range(self, query, start, end, step):
        matrix = self.file.range(query, start, end, step)
        self.range_answers[query.render()] = {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": dict(key), "values": [[t, repr(v)] for t, v in points]} for key, points in matrix.items()]}}
        return matrix


@pytest.mark.parametrize("canary,verdict", [(bad_canary, "hold"), (good_canary, "promote")])
def test_same_verdict_and_figures_from_the_file_and_from_loki(tmp_path, fake_loki, canary, verdict):
    log = write(tmp_path, baseline() + canary())
    recording = Recording(log)
    comparison = Comparison(recording, "classifier", T0, 3600, "v1", "v2")
    assert comparison.figures["v1"]["requests"] == comparison.samples["v1"].requests == 2000

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


def test_bounds_and_confidence_are_read_from_the_feature_text(tmp_path):
    """+5% latency: within the shipped 10% bound; held once the text says 0%; and a lower
    confidence level in the text gives a narrower interval."""
    lines = baseline() + traffic("v2", seed=3, latency=(3.05, 0.4))
    env = {"LOG_FILE": write(tmp_path, lines), "SLO_AT": str(T0), "COMPARE_BASELINE": "v1", "COMPARE_CANDIDATE": "v2"}
    text = CONTRACTS.joinpath("canary.feature").read_text()
    runs = {}
    for name, feature in (("shipped", text), ("strict", text.replace("at most 10% above", "at most 0% above")),
                          ("loose", text.replace("a confidence level of 99%", "a confidence level of 80%"))):
        path = tmp_path / f"{name}.feature"
        path.write_text(feature)
        code, out = run_compare({**env, "COMPARE_REPORT": str(tmp_path / name)}, features=path)
        doc = json.loads((tmp_path / name / "report.json").read_text())
        runs[name] = (code, out, next(c for c in doc["contracts"] if c["contract"].startswith("latency of")))
    assert runs["shipped"][2]["verdict"] == "promote", runs["shipped"][1]
    assert runs["strict"][0] == 1 and runs["strict"][2]["verdict"] == "hold", runs["strict"][1]
    shipped, loose = runs["shipped"][2], runs["loose"][2]
    assert loose["confidence"] == 0.8 and loose["high"] - loose["low"] < shipped["high"] - shipped["low"]


@pytest.mark.parametrize("case,code", [("promote", 0), ("hold", 1), ("inconclusive", 2), ("broken", 3)])
def test_make_compare_exits_with_the_verdicts_code(tmp_path, case, code):
    """Through `make compare`, not only the command: GNU make alone would exit 2 for 1, 2 and 3."""
    candidate = {"promote": good_canary, "hold": bad_canary, "inconclusive": lambda: traffic("v2", seed=4, n=60),
                 "broken": lambda: []}[case]()
    log = write(tmp_path, baseline() + candidate)
    done = subprocess.run(["make", "-s", "--no-print-directory", "compare", "BASELINE=v1", "CANDIDATE=v2",
                           f"LOG_FILE={log}", f"SLO_AT={T0}", f"COMPARE_REPORT={tmp_path / 'r'}"],
                          cwd=REPO, env=clean_env({}), capture_output=True, text=True, timeout=300)
    assert done.returncode == code, done.stdout[-2000:] + done.stderr[-2000:]
