"""A short headless Locust run against the real classifier, as CI and users run it."""
import csv
import json
import time

import pytest

from loadtools import run_locust, slow_inputs_function


def logged_lines(fn, request_ids, timeout: float = 10) -> dict:
    """The function's inference lines by request id, once all of `request_ids` are in (or timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        logged = {line["request_id"]: line for line in fn.events("inference")}
        if all(rid in logged for rid in request_ids) or time.monotonic() > deadline:
            return logged
        time.sleep(0.05)


@pytest.fixture(scope="module")
def steady_run(classifier_fn, tmp_path_factory):
    out = tmp_path_factory.mktemp("locust-steady")
    result = run_locust(classifier_fn.url, out, "--profile", "steady", "--peak-users", "4", "--duration", "6",
                        "--bad-ratio", "0.2", "--max-p99-ms", "60000", "--max-fail-ratio", "0.0")
    # every request has been answered (and logged) before locust exits
    return out, result, classifier_fn


def test_run_passes_its_thresholds(steady_run):
    _out, result, _fn = steady_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "thresholds met" in result.stderr


def test_reports_are_written_and_parse(steady_run):
    out, _result, _fn = steady_run
    with open(out / "run_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) >= 4  # a shared 2-CPU CI box may answer slowly
    assert int(total["Failure Count"]) == 0  # bad requests got the 4xx they deserve: not failures
    assert float(total["99%"]) > 0
    assert any(name.startswith("POST / ") for name in rows)  # photos, by format
    with open(out / "run_stats_history.csv", newline="") as f:
        assert list(csv.DictReader(f))
    html = (out / "run.html").read_text()
    assert "<html" in html.lower() and "steady" in html  # the profile labels the report


def test_every_request_sent_has_its_log_line(steady_run):
    out, _result, fn = steady_run
    sent = [json.loads(line) for line in (out / "sent.jsonl").read_text().splitlines()]
    assert len(sent) >= 4
    assert len({s["request_id"] for s in sent}) == len(sent), "request ids must be unique"
    logged = logged_lines(fn, [s["request_id"] for s in sent])
    for s in sent:
        assert s["echoed_id"] == s["request_id"]
        line = logged.get(s["request_id"])
        assert line is not None, f"no log line for {s['request_id']}"
        assert line["status"] == s["status"], s
    assert 200 in {s["status"] for s in sent}
    assert all(line["status"] < 500 for line in logged.values())


def test_bad_requests_are_reported_apart_and_pass_on_the_expected_4xx(classifier_fn, tmp_path):
    result = run_locust(classifier_fn.url, tmp_path, "--profile", "steady", "--peak-users", "2",
                        "--duration", "2", "--bad-ratio", "1", "--max-fail-ratio", "0.0")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    names = set(rows) - {"Aggregated"}
    assert len(names) >= 3 and all(name.startswith("bad: ") for name in names)
    assert all(int(row["Failure Count"]) == 0 for row in rows.values())
    sent = [json.loads(line) for line in (tmp_path / "sent.jsonl").read_text().splitlines()]
    assert sent and {s["status"] for s in sent} <= {400, 415}
    logged = logged_lines(classifier_fn, [s["request_id"] for s in sent])
    assert all(logged[s["request_id"]]["status"] == s["status"] for s in sent)


def test_a_run_shorter_than_building_its_inputs_still_sends_its_requests(classifier_fn, tmp_path):
    """The shape's clock starts once the inputs are built: a 2-s run whose inputs take 3 s
    (a busy machine) sends for its 2 s instead of ending before its first request."""
    function = slow_inputs_function(tmp_path / "function", seconds=3)
    result = run_locust(classifier_fn.url, tmp_path / "out", "--function", str(function), "--profile", "steady",
                        "--peak-users", "2", "--duration", "2", "--max-p99-ms", "60000", "--max-fail-ratio", "0.0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "thresholds met" in result.stderr
    sent = [json.loads(line) for line in (tmp_path / "out" / "sent.jsonl").read_text().splitlines()]
    assert len(sent) >= 2 and {s["status"] for s in sent} == {200}


def test_a_broken_threshold_fails_the_run(classifier_fn, tmp_path):
    result = run_locust(classifier_fn.url, tmp_path, "--profile", "steady", "--peak-users", "2",
                        "--duration", "2", "--max-p95-ms", "1")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "threshold broken: p95 latency of good requests" in result.stderr
    assert (tmp_path / "run_stats.csv").is_file() and (tmp_path / "run.html").is_file()


def test_an_unknown_profile_is_refused(classifier_fn, tmp_path):
    result = run_locust(classifier_fn.url, tmp_path, "--profile", "sawtooth", "--duration", "1")
    assert result.returncode != 0
    assert "unknown load profile 'sawtooth'" in result.stderr


def test_split_hosts_share_one_run_between_two_functions(classifier_fn, classifier_build, tmp_path):
    """make review's traffic: one Locust run, each request to one of two functions served at
    the same time; every request reaches exactly one of them and is logged there once."""
    from loadkit.localrun import CLASSIFIER_ARTIFACTS
    from support.function_process import FunctionProcess

    env = {"ARTIFACTS_DIR": str(CLASSIFIER_ARTIFACTS), "MODEL_VERSION": "split-b"}
    with FunctionProcess(classifier_build, env=env) as other:
        result = run_locust(classifier_fn.url, tmp_path, "--profile", "steady", "--peak-users", "4",
                            "--duration", "6", "--seed", "3", "--split-hosts", f"{classifier_fn.url},{other.url}",
                            "--max-p99-ms", "60000", "--max-fail-ratio", "0.0")
        assert result.returncode == 0, result.stderr[-3000:]
        sent = [json.loads(line) for line in (tmp_path / "sent.jsonl").read_text().splitlines()]
        ids = [s["request_id"] for s in sent]
        deadline = time.monotonic() + 10
        while True:  # every request answered is logged by one of them
            here = {line["request_id"]: line for line in classifier_fn.events("inference")}
            there = {line["request_id"]: line for line in other.events("inference")}
            if set(ids) <= set(here) | set(there) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert len(sent) >= 8
    assert not set(here) & set(there), "a request reached both functions"
    assert set(here) | set(there) >= set(ids)
    assert here and there, "one side got no traffic"
    for s in sent:  # the sent log says which side answered
        side = there if s["request_id"] in there else here
        assert s["url"].startswith(other.url if side is there else classifier_fn.url)
