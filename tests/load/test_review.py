"""`make review`: base and candidate served at the same time under one split traffic, and
its verdict's exit code through make (0 promote, 1 hold, 2 inconclusive, 3 broken)."""
import json
import os
import subprocess

from loadkit.localrun import REPO, free_port
from logslo.logfile import parse_rfc3339_ns


def make_review(tmp_path, *args, seconds="8", users="4"):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env.update(REVIEW_DIR=str(tmp_path / "review"), REVIEW_SECONDS=seconds, REVIEW_USERS=users)
    return subprocess.run(["make", "-s", "--no-print-directory", "review", f"PORT={free_port()}", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


def inference_times(path):
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    return sorted(parse_rfc3339_ns(line["timestamp"]) / 1e9 for line in lines if line.get("event") == "inference")


def test_review_serves_both_sides_at_once_and_a_short_run_is_inconclusive(tmp_path):
    """A few seconds of traffic cannot tell identical code apart: inconclusive (2, through
    make), with each side's requests interleaved in time and the split in the report."""
    done = make_review(tmp_path, "BASE=HEAD")
    out = done.stdout + done.stderr
    assert done.returncode == 2, out[-4000:]
    review = tmp_path / "review"
    base = inference_times(review / "base" / "function.log")
    cand = inference_times(review / "candidate" / "function.log")
    assert len(base) >= 5 and len(cand) >= 5, out[-4000:]
    # served side by side: each side answered requests while the other was answering too
    assert base[0] < cand[-1] and cand[0] < base[-1]
    overlap = min(base[-1], cand[-1]) - max(base[0], cand[0])
    assert overlap > 0.7 * (max(base[-1], cand[-1]) - min(base[0], cand[0]))
    doc = json.loads((review / "report.json").read_text())
    assert doc["verdict"] == "inconclusive" and "alternating between them in random order" in doc["traffic"]
    latency = next(c for c in doc["contracts"] if c["contract"].startswith("latency of"))
    assert "2.0% between process starts" in latency["note"]  # each side is one process start
    md = (review / "report.md").read_text()
    assert "INCONCLUSIVE" in md and "requests a version would decide it" in md


def test_review_of_a_missing_commit_is_a_broken_run(tmp_path):
    done = make_review(tmp_path, "BASE=no-such-ref-anywhere")
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "no commit no-such-ref-anywhere" in done.stderr


def test_review_of_diabetes_sends_its_rows_and_judges_it_by_its_own_contracts(tmp_path):
    """FUNCTION=diabetes: both sides serve diabetes, the split load sends its real rows,
    and its comparison contracts (functions/diabetes/compare: no class mix) judge it."""
    done = make_review(tmp_path, "BASE=HEAD", "FUNCTION=diabetes")
    out = done.stdout + done.stderr
    assert done.returncode == 2, out[-4000:]
    review = tmp_path / "review"
    lines = [json.loads(line) for side in ("base", "candidate")
             for line in (review / side / "function.log").read_text().splitlines() if line.startswith("{")]
    served = [line for line in lines if line.get("event") == "inference" and line["status"] == 200]
    assert len(served) >= 10 and {line["function"] for line in served} == {"diabetes"}
    assert {line["instances"] for line in served} <= {1, 4, 16} and "top1_class" not in served[0]
    sent = [json.loads(line) for line in (review / "sent.jsonl").read_text().splitlines()]
    assert all(s["ok"] for s in sent) and any(s["payload"].startswith("patient") for s in sent)
    doc = json.loads((review / "report.json").read_text())
    contracts = [c["contract"] for c in doc["contracts"]]
    assert len(contracts) == 5 and not any("class" in c for c in contracts), contracts
    assert doc["timeline"]["slo_p99_ms"] == 50  # the SLO line: diabetes' latency contract, not the classifier's
    assert "at least 100 requests" in contracts[0] and any("5xx" in c for c in contracts)
    assert any("prediction_mean" in c for c in contracts)  # the regression's predicted value
    assert any(c.startswith("p99 latency") for c in contracts)


def test_canary_watches_a_live_pair_while_the_split_traffic_runs(tmp_path):
    """make canary BASE=HEAD: both sides served at once under one split traffic, the watch
    looking at both growing logs WHILE the traffic runs, each look reading only what is new
    (the looks' new lines add up to the requests served in the watch, none twice);
    identical code is never held (exit 0 promote or 2 inconclusive, through make). The
    contracts' warm-up is cut to 5 s here (a 30 s run); docs/canary.md has full runs."""
    features = tmp_path / "compare"
    features.mkdir()
    text = (REPO / "functions" / "classifier" / "compare" / "canary.feature").read_text()
    (features / "canary.feature").write_text(text.replace("the first 30 seconds", "the first 5 seconds"))
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env.update(REVIEW_USERS="4")
    report = tmp_path / "canary"
    done = subprocess.run(["make", "-s", "--no-print-directory", "canary", "BASE=HEAD", f"PORT={free_port()}",
                           "INTERVAL=3", "DEADLINE=30", f"COMPARE_FEATURES={features}", f"CANARY_REPORT={report}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode in (0, 2), out[-4000:]
    doc = json.loads((report / "watch.json").read_text())
    assert doc["verdict"] in ("promote", "inconclusive") and doc["final"]
    looks = doc["looks"]
    base, cand = (inference_times(report / side / "function.log") for side in ("base", "candidate"))
    # the looks came while both sides were serving, and more than one found new lines
    assert sum(1 for look in looks if base[0] < look["at"] < base[-1] and cand[0] < look["at"] < cand[-1]) >= 2
    assert sum(1 for look in looks if look["new_lines"] and min(look["new_lines"].values()) > 0) >= 2
    read = {side: sum(look["new_lines"][side] for look in looks if look["new_lines"]) for side in ("baseline",
                                                                                                 "candidate")}
    first, last = doc["started_at"], looks[-1]["at"]
    served = {"baseline": sum(first < t <= last for t in base), "candidate": sum(first < t <= last for t in cand)}
    # none read twice; at most a few logged just before the last look but written after it
    assert all(0 <= served[side] - read[side] <= 5 for side in read), (read, served)
    assert (report / "watch.html").is_file() and (report / "report.md").is_file()
