"""`make load WORKERS=n`: Locust distributed (one master, two workers) against the real classifier."""
import csv
import json
import re
import signal
import subprocess
import sys
import time

import pytest

from loadkit.localrun import LOAD, REPO
from loadtools import clean_env, locust_args, run_distributed, slow_inputs_function
from test_locust_run import logged_lines


@pytest.fixture(scope="module")
def distributed_run(classifier_fn, tmp_path_factory):
    out = tmp_path_factory.mktemp("locust-distributed")
    result = run_distributed(2, classifier_fn.url, out, "--profile", "steady", "--peak-users", "4",
                             "--duration", "6", "--bad-ratio", "0.2", "--max-p99-ms", "60000",
                             "--max-fail-ratio", "0.0")
    return out, result, classifier_fn


def test_two_workers_connect_and_both_send_requests(distributed_run):
    _out, result, _fn = distributed_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 workers connected" in result.stderr  # Locust's master, once both reported ready
    made = re.search(r"2 workers made (\d+) requests: worker 0 (\d+), worker 1 (\d+)", result.stderr)
    assert made, result.stderr[-3000:]
    total, first, second = map(int, made.groups())
    assert first > 0 and second > 0 and first + second == total
    assert "thresholds met" in result.stderr


def test_the_master_reports_the_whole_run_and_one_sent_log(distributed_run):
    out, result, fn = distributed_run
    with open(out / "run_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) >= 4
    assert int(total["Failure Count"]) == 0  # bad requests got their 4xx: not failures
    assert any(name.startswith("POST / ") for name in rows)
    assert "<html" in (out / "run.html").read_text().lower()
    # the workers' sent-log lines reach the master: one file for the run, ids unique across workers
    sent = [json.loads(line) for line in (out / "sent.jsonl").read_text().splitlines()]
    made = int(re.search(r"2 workers made (\d+) requests", result.stderr).group(1))
    assert len(sent) == made and len({s["request_id"] for s in sent}) == len(sent)
    logged = logged_lines(fn, [s["request_id"] for s in sent])
    for s in sent:
        line = logged.get(s["request_id"])
        assert line is not None, f"no log line for {s['request_id']}"
        assert line["status"] == s["status"], s


def test_a_broken_threshold_fails_the_distributed_run(classifier_fn, tmp_path):
    result = run_distributed(2, classifier_fn.url, tmp_path, "--profile", "steady", "--peak-users", "2",
                             "--duration", "3", "--max-p95-ms", "1")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "2 workers connected" in result.stderr
    assert "threshold broken: p95 latency of good requests" in result.stderr
    assert (tmp_path / "run_stats.csv").is_file() and (tmp_path / "run.html").is_file()


def test_the_master_starts_the_clock_when_the_workers_can_send(classifier_fn, tmp_path):
    """Each worker builds its inputs (3 s here, as on a busy machine) before the master's
    2-s shape counts: both workers still send requests."""
    function = slow_inputs_function(tmp_path / "function", seconds=3)
    result = run_distributed(2, classifier_fn.url, tmp_path / "out", "--function", str(function), "--profile",
                             "steady", "--peak-users", "2", "--duration", "2", "--max-p99-ms", "60000",
                             "--max-fail-ratio", "0.0")
    assert result.returncode == 0, result.stderr[-3000:]
    made = re.search(r"2 workers made (\d+) requests: worker 0 (\d+), worker 1 (\d+)", result.stderr)
    assert made and int(made.group(2)) > 0 and int(made.group(3)) > 0, result.stderr[-3000:]
    assert "thresholds met" in result.stderr


def test_sigterm_ends_the_run_cleanly_and_leaves_nothing_running(classifier_fn, tmp_path):
    """What with_function.sh does on Ctrl-C or TERM: the master still reports, every process ends."""
    import psutil  # a Locust dependency

    cmd = [sys.executable, str(LOAD / "distributed.py"), "--workers", "2", "--max-wait", "60", "--",
           *locust_args(classifier_fn.url, tmp_path, "--profile", "steady", "--peak-users", "2", "--duration", "300",
                        "--max-p99-ms", "60000")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            sent = tmp_path / "sent.jsonl"
            children = psutil.Process(proc.pid).children()
            if len(children) == 3 and sent.is_file() and len(sent.read_text().splitlines()) >= 4:
                break  # master and both workers up, and their first reports in
            time.sleep(0.5)
        assert len(children) == 3, "master and two workers"
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert re.search(r"2 workers made \d+ requests", stderr) and "thresholds met" in stderr
    assert (tmp_path / "run_stats.csv").is_file() and (tmp_path / "run.html").is_file()
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
