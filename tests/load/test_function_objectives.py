"""The kit follows the function: the load tools hold each function to the p99 of its
own latency contract (classifier 250 ms, diabetes 50 ms) unless told otherwise, and soak,
goodput and bench send the function's own load inputs."""
import json
import shutil
import subprocess
import sys

import pytest

import capacity
import goodput
import serving
import soak
from loadkit import traffic
from loadkit.localrun import FUNCTIONS, LOAD, REPO
from loadtools import run_capacity, run_locust


@pytest.fixture(autouse=True)
def no_slo_from_the_shell(monkeypatch):
    monkeypatch.delenv("SLO_P99_MS", raising=False)


def test_each_function_is_held_to_its_own_contract():
    assert traffic.slo_features("diabetes") == FUNCTIONS / "diabetes" / "slo"
    assert traffic.slo_features("classifier") == REPO / "functions" / "classifier" / "slo"  # as make slo
    assert traffic.latency_objective_ms("classifier") == 250
    assert traffic.latency_objective_ms("diabetes") == 50
    assert traffic.latency_objective_ms(str(FUNCTIONS / "diabetes")) == 50  # a folder as well as a name


def test_capacity_defaults_to_the_functions_p99_and_takes_an_explicit_one(monkeypatch):
    assert capacity.parse_args([]).slo_p99_ms == 250
    assert capacity.parse_args(["--function", "diabetes"]).slo_p99_ms == 50
    assert capacity.parse_args(["--function", "diabetes", "--slo-p99-ms", "75"]).slo_p99_ms == 75
    monkeypatch.setenv("SLO_P99_MS", "40")  # what `make capacity SLO_P99_MS=40` hands it
    assert capacity.parse_args(["--function", "diabetes"]).slo_p99_ms == 40


def test_capacity_refuses_a_function_whose_contracts_promise_no_latency(tmp_path, capsys):
    folder = tmp_path / "nolatency"
    (folder / "slo").mkdir(parents=True)
    shutil.copy(FUNCTIONS / "diabetes" / "slo" / "errors.feature", folder / "slo")
    with pytest.raises(SystemExit) as exit_:
        capacity.parse_args(["--function", str(folder)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no latency contract" in err and "--slo-p99-ms" in err
    assert capacity.parse_args(["--function", str(folder), "--slo-p99-ms", "100"]).slo_p99_ms == 100


def test_soak_and_goodput_take_the_function():
    args = soak.parse_args(["--function", "diabetes", "--build", "build/diabetes", "--artifacts", "artifacts/diabetes"])
    assert (args.function, args.slo_p99_ms) == ("diabetes", 50)
    assert soak.parse_args(["--build", "b", "--artifacts", "a"]).function == "classifier"
    assert goodput.parse_args(["--host", "http://127.0.0.1:8080", "--function", "diabetes"]).function == "diabetes"
    assert goodput.parse_args(["--host", "http://127.0.0.1:8080"]).function == "classifier"


def test_bench_sends_the_functions_own_requests_by_weight():
    payloads, _ = traffic.load_inputs("diabetes")
    requests = serving.payload_requests(payloads, count=400)
    assert requests == serving.payload_requests(payloads, count=400)  # the same sequence every start
    rows = []
    for raw in requests:
        head, body = raw.split(b"\r\n\r\n", 1)
        assert head.startswith(b"POST / HTTP/1.1\r\n") and b"Content-Type: application/json" in head
        assert f"Content-Length: {len(body)}".encode() in head
        rows.append(len(json.loads(body)["instances"]))
    assert set(rows) == {1, 4, 16}
    assert rows.count(1) / len(rows) == pytest.approx(0.6, abs=0.08)  # load_inputs.py's BATCHES


@pytest.fixture(scope="module")
def diabetes(function_process):
    return function_process("diabetes")


def test_capacity_measures_diabetes_against_its_50_ms(diabetes, tmp_path):
    out = tmp_path / "capacity.json"
    result = run_capacity(diabetes.url, "--function", "diabetes", "--start-users", "1", "--max-users", "2",
                          "--warmup-seconds", "0.5", "--step-seconds", "2", "--confirm", "0", "--min-requests", "20",
                          "--json", str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "SLO p99 <= 50 ms" in result.stdout
    report = json.loads(out.read_text())
    assert report["slo_p99_ms"] == 50 and report["capacity"]["rps"] > 0
    assert report["labels"] and "  diabetes:" in result.stdout  # the stack.yml snippet names it


def test_locust_thresholds_default_to_diabetes_50_ms(diabetes, tmp_path):
    result = run_locust(diabetes.url, tmp_path, "--function", "diabetes", "--profile", "steady",
                        "--peak-users", "2", "--duration", "3", "--bad-ratio", "0")
    assert "p99 threshold 50 ms: diabetes's latency contract" in result.stderr, result.stderr[-2000:]
    assert result.returncode == 0 and "thresholds met" in result.stderr


def test_a_short_soak_of_diabetes_sends_its_rows_and_its_bad_requests(build, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(LOAD / "soak.py"), "--function", "diabetes", "--build", str(build("diabetes")),
         "--artifacts", str(REPO / "artifacts" / "diabetes"), "--rate", "40", "--bad-share", "0.2",
         "--duration", "8", "--warmup-s", "2", "--window-s", "2", "--sample-s", "1", "--report-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    summary = json.loads((tmp_path / "soak.json").read_text())
    assert proc.returncode == 0 and summary["failures"] == [], proc.stdout[-3000:] + proc.stderr[-2000:]
    assert summary["function"] == "diabetes" and summary["slo_p99_ms"] == 50
    assert summary["statuses"]["200"] > 100 and summary["lost_lines"] == 0
    bad_answers = set(summary["statuses"]) - {"200"}
    assert bad_answers and bad_answers <= {"400", "413", "415", "429"}  # its declared mistakes, each its 4xx
    lines = [json.loads(x) for x in (tmp_path / "function.log").read_text().splitlines()]
    assert {line["function"] for line in lines if line.get("event") == "inference"} == {"diabetes"}
    assert any(line.get("instances") == 16 for line in lines)  # its batches, not photos
