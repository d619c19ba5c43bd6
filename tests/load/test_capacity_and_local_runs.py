"""The capacity finder end to end, and the local-function wrapper behind make load/capacity/demo."""
import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from loadkit.localrun import CLASSIFIER_ARTIFACTS, LOAD, REPO, FunctionExited, FunctionProcess, free_port
from loadtools import clean_env, run_capacity

# a build whose function dies at start-up, saying why on stderr, as a missing model does
DYING_INDEX = "import sys\nprint('loading the model failed: no model.pt', file=sys.stderr)\nsys.exit(3)\n"


def test_capacity_finder_measures_steps_and_prints_labels(classifier_fn, tmp_path):
    out = tmp_path / "capacity.json"
    result = run_capacity(classifier_fn.url, "--start-users", "1", "--max-users", "2", "--warmup-seconds", "0.5",
                          "--step-seconds", "2", "--min-requests", "1", "--slo-p99-ms", "30000", "--peak-rps", "100",
                          "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "com.openfaas.scale.type: \"capacity\"" in result.stdout
    report = json.loads(out.read_text())
    assert [s["users"] for s in report["steps"]] == [1, 2]
    assert all(s["requests"] >= 1 and s["failures"] == 0 for s in report["steps"])  # CI machines are slow
    assert report["capacity"]["rps"] > 0 and report["capacity"]["concurrency"] in (1, 2)
    assert set(report["labels"]) == {f"com.openfaas.scale.{k}" for k in
                                     ("min", "max", "target", "type", "target-proportion")}


def test_capacity_finder_says_when_the_function_is_down(tmp_path):
    result = run_capacity(f"http://127.0.0.1:{free_port()}", "--json", "")
    assert result.returncode != 0 and "not reachable" in result.stderr


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_with_function_runs_the_command_then_stops_the_function(classifier_build, tmp_path):
    """What make load/capacity/demo use: the function is up for the command and gone after it."""
    port = free_port()
    probe = ("import os, sys, urllib.request; "
             "sys.exit(7 if urllib.request.urlopen(os.environ['FUNCTION_URL'] + '/ready').status == 200 else 1)")
    env = clean_env(PY=sys.executable, FN_BUILD=str(classifier_build), PORT=str(port),
                    FN_ENV=f"PORT={port} HOST=127.0.0.1 FUNCTION_NAME=classifier ARTIFACTS_DIR={CLASSIFIER_ARTIFACTS}")
    result = subprocess.run(["bash", str(LOAD / "with_function.sh"), str(tmp_path), sys.executable, "-c", probe],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 7, result.stdout + result.stderr  # the command's own exit code
    assert not _port_open(port)
    events = [json.loads(line)["event"] for line in (tmp_path / "function.log").read_text().splitlines()]
    assert events[0] == "startup" and "model_loaded" in events and events[-1] == "shutdown"
    assert "function stopped (exit 0)" in result.stdout


def test_with_function_stops_the_function_when_killed(classifier_build, tmp_path):
    port = free_port()
    env = clean_env(PY=sys.executable, FN_BUILD=str(classifier_build), PORT=str(port),
                    FN_ENV=f"PORT={port} HOST=127.0.0.1 FUNCTION_NAME=classifier ARTIFACTS_DIR={CLASSIFIER_ARTIFACTS}")
    proc = subprocess.Popen(["bash", str(LOAD / "with_function.sh"), str(tmp_path), "sleep", "60"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not _port_open(port) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _port_open(port), "the function never came up"
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    assert not _port_open(port)
    lines = (tmp_path / "function.log").read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "shutdown"


def test_a_function_that_dies_at_start_up_says_why(tmp_path):
    (tmp_path / "index.py").write_text(DYING_INDEX)
    with pytest.raises(FunctionExited, match=r"exited with 3(.|\n)*loading the model failed: no model.pt"):
        FunctionProcess(tmp_path).start(timeout=30)


def test_with_function_exits_3_with_the_stderr_of_a_function_that_dies(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    (build / "index.py").write_text(DYING_INDEX)
    port = free_port()
    env = clean_env(PY=sys.executable, FN_BUILD=str(build), PORT=str(port), FN_ENV=f"PORT={port}")
    result = subprocess.run(["bash", str(LOAD / "with_function.sh"), str(tmp_path / "logs"), "true"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the function exited during start-up" in result.stderr
    assert "loading the model failed: no model.pt" in result.stderr


def test_decode_memory_prints_each_format_answered():
    """load/benchmark/decode_memory.py (docs/settings.md, "Memory"): one row per format, each image answered."""
    result = subprocess.run([sys.executable, str(LOAD / "benchmark" / "decode_memory.py"), "--megapixels", "1"],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=clean_env(PYTHONPATH=str(LOAD)))  # as `make bench` runs the benchmark's tools
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["jpeg", "jpeg-progressive", "png", "webp"], result.stdout
    for row in rows:
        status, rss, peak, kept = int(row[4]), float(row[5]), float(row[7]), float(row[9])
        # VmHWM is never under VmRSS, but Linux folds each thread's cached RSS counts into
        # the high-water mark lazily: read a moment apart they can disagree by a few MiB
        # (a fresh-clone CI run read webp peak 46 MiB, kept 48 MiB)
        assert status == 200 and rss > 100 and peak >= kept - 4, result.stdout
