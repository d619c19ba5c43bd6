"""Adding a function touches nothing outside its own folder: a throwaway function made
from the template's skeleton (as `faas-cli new --lang python3-http-torch` makes it) with
its own model name is built, served, logged, scraped and judged by the SLO contracts the
skeleton ships (`Given the function being checked`: SLO_FUNCTION, as `make slo FUNCTION=`
sets it), with no edit to the runtime, the tests' support code or the SLO tool."""
import json
import os
import shutil
import subprocess
import sys
import time

import requests

from loadkit.localrun import LOAD, TEMPLATE, prepare_artifacts, shrinkwrap
from support.metrics import by_name, parse_samples

NAME = "tabular-throwaway"


def new_function(tmp_path):
    """What `faas-cli new` leaves, then what its author edits: the handler's model name.
    Everything inside functions/<name>/."""
    folder = shutil.copytree(TEMPLATE / "function", tmp_path / "functions" / NAME)
    handler = folder / "handler.py"
    handler.write_text(handler.read_text().replace('model_name = "tiny-linear"', 'model_name = "throwaway-mlp"'))
    return folder


def test_a_function_from_the_skeleton_is_served_logged_scraped_and_judged(tmp_path, function_process):
    folder = new_function(tmp_path)
    build = shrinkwrap(folder, tmp_path / "build" / NAME)
    artifacts = prepare_artifacts(build, tmp_path / "artifacts" / NAME)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "function"],
                           cwd=build, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout[-2000:]  # the image's test stage
    fn = function_process(build, env={"ARTIFACTS_DIR": str(artifacts)}, function_name=NAME)
    for i in range(5):
        res = fn.post(json.dumps({"features": [i, 1, 2, 3]}).encode(), content_type="application/json",
                      headers={"X-Request-Id": f"new-{i}"})
        assert res.status_code == 200 and len(res.json()["scores"]) == 3
        assert res.json()["model_name"] == "throwaway-mlp"
    invoked = subprocess.run([sys.executable, str(LOAD / "invoke.py"), str(folder), "--url", fn.url],
                             capture_output=True, text=True, timeout=60)  # what `make invoke` runs
    assert invoked.returncode == 0 and len(json.loads(invoked.stdout)["scores"]) == 3, invoked.stderr
    bad = fn.post(b'{"features": [1]}', content_type="application/json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_input"
    lines = fn.wait_for_lines("inference", 7)
    assert len(lines) == 7 and {x["function"] for x in lines} == {NAME}
    assert {x["model_name"] for x in lines} == {"throwaway-mlp"}
    assert [x["request_id"] for x in lines[:5]] == [f"new-{i}" for i in range(5)]
    named = by_name(parse_samples(requests.get(fn.url + "/metrics", timeout=10).content))
    served = [s for s in named["torchfaas_requests_total"] if s.labels["status"] == "200" and s.value]
    assert served[0].labels["function"] == NAME and served[0].labels["model_name"] == "throwaway-mlp"
    assert named["torchfaas_top1_probability_count"][0].value == 6  # what the skeleton declares
    fn.stop()
    log = tmp_path / "requests.jsonl"
    log.write_text("\n".join(fn.raw_lines) + "\n")
    slo = subprocess.run([sys.executable, "-m", "logslo", str(folder / "slo")], capture_output=True, text=True,
                         env={**os.environ, "LOG_FILE": str(log), "SLO_AT": str(int(time.time()) + 1),
                              "SLO_FUNCTION": NAME},  # what `make slo FUNCTION=...` passes
                         timeout=60)
    out = slo.stdout + slo.stderr
    assert slo.returncode == 0, out
    assert f"p99 latency of {NAME}" in out and f"5xx ratio of {NAME}" in out
