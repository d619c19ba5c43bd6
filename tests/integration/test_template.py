"""The template as faas-cli uses it, and the process as the image's last stage runs it."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from support.function_process import (CLASSIFIER, CLASSIFIER_ARTIFACTS, TEMPLATE, FunctionProcess,
                                      prepare_artifacts, shrinkwrap)

HANDLERS = Path(__file__).parent / "handlers"


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


def test_index_py_runs_as_the_ship_stage_runs_it(classifier_build):
    env = {k: v for k, v in ship_stage_env().items() if k not in ("PORT", "HOME", "TMPDIR", "DRAIN_SECONDS")}
    env["ARTIFACTS_DIR"] = str(CLASSIFIER_ARTIFACTS)
    with FunctionProcess(classifier_build, env=env) as fn:
        assert requests.get(fn.url + "/ready", timeout=5).json() == {"status": "ready"}


@pytest.mark.parametrize("function_dir", [CLASSIFIER, TEMPLATE / "function"], ids=["classifier", "skeleton"])
def test_function_tests_pass_in_the_build_layout(tmp_path, function_dir):
    """What the image's test stage runs: `python -m pytest function`."""
    build = shrinkwrap(function_dir, tmp_path / "build")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "function"],
                         cwd=build, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:]


def test_skeleton_function_serves(tmp_path):
    build = shrinkwrap(TEMPLATE / "function", tmp_path / "build")
    artifacts = prepare_artifacts(build, tmp_path / "artifacts")
    with FunctionProcess(build, env={"ARTIFACTS_DIR": str(artifacts)}, function_name="myfn") as fn:
        res = fn.post(json.dumps({"features": [1, 2, 3, 4]}).encode(), "application/json")
        assert res.status_code == 200 and len(res.json()["scores"]) == 3
        assert fn.post(b'{"features": []}', "application/json").json()["error"]["code"] == "invalid_input"
        line = fn.wait_for_lines("inference", 2)[0]
        assert line["function"] == "myfn" and line["model_name"] == "tiny-linear"


def test_plain_python3_http_handler_keeps_working(tmp_path):
    build = shrinkwrap(HANDLERS / "plain", tmp_path / "build")
    with FunctionProcess(build, function_name="plain") as fn:
        payload = bytes(range(256)) * 4  # not UTF-8: python3-http would mangle it
        res = requests.post(fn.url + "/", data=payload, timeout=5)
        assert res.status_code == 200 and res.content == payload
        res = requests.put(fn.url + "/json", data=b"abc", timeout=5)
        assert res.status_code == 201 and res.json() == {"method": "PUT", "length": 3}
        assert requests.get(fn.url + "/text", timeout=5).text == "hello"
        statuses = [line["status"] for line in fn.wait_for_lines("inference", 3)]
        assert statuses == [200, 201, 200]
