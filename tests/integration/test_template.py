"""The template as faas-cli uses it, and the process as the image's last stage runs it."""
import os
import re
import shlex
import subprocess
import sys

import pytest
import requests
import yaml

from loadkit.localrun import CLASSIFIER, CLASSIFIER_ARTIFACTS, TEMPLATE, shrinkwrap


def ship_stage_env() -> dict:
    """ENV of the Dockerfile's final stage (and the stages it builds on)."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", (TEMPLATE / "Dockerfile").read_text())
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_template_yml_is_what_faas_cli_reads():
    spec = yaml.safe_load((TEMPLATE / "template.yml").read_text())
    assert spec["language"] == "python3-http-torch" and spec["fprocess"] == "python index.py"
    assert {"handler.py", "handler_test.py", "requirements.txt"} <= {p.name for p in (TEMPLATE / "function").iterdir()}


def test_watchdog_environment_keeps_the_log_contract():
    env = ship_stage_env()
    assert env["mode"] == "http" and env["upstream_url"] == "http://127.0.0.1:5000"
    assert env["prefix_logs"] == "false" and env["log_buffer_size"] == "-1"
    assert env["ready_path"] == "/ready"
    assert env["PORT"] == "5000" and env["fprocess"] == "python index.py"
    # the app keeps serving after SIGTERM at least as long as the watchdog keeps routing
    assert float(env["DRAIN_SECONDS"]) >= float(env["healthcheck_interval"].rstrip("s"))
    dockerfile = (TEMPLATE / "Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in dockerfile and "USER app" in dockerfile
    assert "python -m torchfaas.prepare" in dockerfile


def test_index_py_runs_as_the_ship_stage_runs_it(function_process):
    # the test's port, home and artifacts; a short drain
    env = {k: v for k, v in ship_stage_env().items()
           if k not in ("PORT", "HOME", "TMPDIR", "DRAIN_SECONDS", "ARTIFACTS_DIR")}
    with function_process("classifier", env=env) as fn:
        assert requests.get(fn.url + "/ready", timeout=5).json() == {"status": "ready"}
    # stdout is the log: every line JSON (json.loads raises on any stray output)
    lines = fn.lines()
    events = [line["event"] for line in lines]
    assert events[:2] == ["startup", "model_loaded"] and events[-1] == "shutdown"
    loaded = lines[1]
    assert loaded["load_ms"] > 0 and loaded["cold_start_ms"] >= loaded["load_ms"]
    # the start-up line shows the settings in force, the handler's defaults filled in
    assert lines[0]["function"] == "classifier" and lines[0]["settings"]["batch_workers"] >= 1


@pytest.mark.parametrize("function_dir", [CLASSIFIER, CLASSIFIER.parent / "diabetes", TEMPLATE / "function"],
                         ids=["classifier", "diabetes", "skeleton"])
def test_function_tests_pass_in_the_build_layout(tmp_path, function_dir):
    """What the image's test stage runs: `python -m pytest function`, after the prepare step
    (the classifier's test reuses its compiled packages, as in the image)."""
    build = shrinkwrap(function_dir, tmp_path / "build")
    env = {**os.environ, "ARTIFACTS_DIR": str(CLASSIFIER_ARTIFACTS)} if function_dir == CLASSIFIER else None
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "function"],
                         cwd=build, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-2000:]
