"""The second function's image: functions/diabetes built from stack.yml as faas-cli does,
with the same build helper and stand-in base images as the classifier's (its torch
layers come from podman's cache), and run as faas-netes runs it: read-only root, only
/tmp writable, its non-root user, its own limits from stack.yml (1 CPU, 512 MiB).

What the template does whatever the function (the watchdog's environment, a read-only
/tmp refused, TEST_ENABLED=false, a failing test failing the build) is checked once, on
the classifier (test_image.py); this checks what is the diabetes function's own.
"""
import json
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from image_build import FACTS, READ_ONLY, TMP, function_tests_ran, memory_limit, sandbox_probe, start_as_faas_netes
from image_standins import podman

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "functions" / "diabetes" / "testdata" / "example.json"
# measured: 0.792 GB (base 199 MB, torch and the template's packages; no scikit-learn or
# SciPy: they stay in the build stages)
MAX_IMAGE_BYTES = 0.85e9
# the data set's targets (disease progression one year on) span 25-346
PLAUSIBLE = (0, 400)


def test_the_function_tests_ran_in_the_default_build(diabetes_image):
    """Its handler_test.py (training, the R² gate, real rows, bad instances) ran in the test
    stage of this build, or podman reused the layer an earlier build made by running it."""
    FACTS["diabetes tests in the build"] = function_tests_ran(diabetes_image["output"])


def test_image_size(diabetes_image):
    size = diabetes_image["size"]
    assert size <= MAX_IMAGE_BYTES, f"image is {size / 1e9:.3f} GB, over {MAX_IMAGE_BYTES / 1e9} GB"


def test_build_leftovers_stay_out_of_the_image(diabetes_image):
    """scikit-learn trains the model at build time only (build-requirements.txt): neither it
    nor SciPy, pytest or a compiler ship; the trained weights and their manifest do, with
    the held-out R² the build's gate passed."""
    absent = ("sklearn", "scipy", "joblib", "pytest", "pip")
    script = ("set -e; ! command -v g++; "
              + "".join(f"! python -c 'import {name}' 2>/dev/null; " for name in absent)
              + "python -c 'import torch, torchfaas.toolkit'; test -s function/artifacts/weights.pt; "
              "cat function/artifacts/manifest.json")
    result = podman("run", "--rm", *READ_ONLY, *TMP, diabetes_image["image"], "sh", "-c", script,
                    check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["model_name"] == "diabetes-linear"
    assert manifest["heldout_r2"] >= manifest["min_heldout_r2"], manifest


def test_runs_read_only_non_root_answers_its_example_logs_and_counts(diabetes_image):
    image, fn = diabetes_image["image"], diabetes_image["fn"]
    instances = json.loads(EXAMPLE.read_text())["instances"]
    container, url, ready = start_as_faas_netes(image, fn)
    try:
        FACTS["diabetes ready after"] = f"{ready:.1f} s (podman run to /ready 200)"
        probe = sandbox_probe(container)
        assert probe["uid"] != 0 and not probe["root_writable"] and probe["tmp_writable"], probe
        assert probe["memory"] == memory_limit(fn) == 512 * 1024 ** 2, probe

        # its example request (`make invoke FUNCTION=diabetes`), as sent
        answer = requests.post(url + "/", data=EXAMPLE.read_bytes(), timeout=60,
                               headers={"Content-Type": "application/json", "X-Request-Id": "image-example"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        predictions = body["predictions"]
        assert len(predictions) == len(instances) == 3, body
        assert all(isinstance(p, float) and PLAUSIBLE[0] < p < PLAUSIBLE[1] for p in predictions), body
        # patients 0-2 progressed by 151, 75 and 141: the second is predicted lowest
        assert min(predictions) == predictions[1], body
        assert body["model_name"] == "diabetes-linear" and body["request_id"] == "image-example", body
        bad = requests.post(url + "/", json={"instances": [{"age": 0.01}]}, headers={"X-Request-Id": "image-bad"},
                            timeout=30)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "missing_features", bad.text

        metrics = requests.get(url + "/metrics", timeout=30)
        assert metrics.status_code == 200, metrics.text
        code = container.terminate()
    finally:
        container.remove()
    assert code == 0, container.tail()

    # one JSON line per request: the function's name, its own fields, no classifier's
    lines = container.json_lines()
    assert all(line["function"] == "diabetes" for line in lines), lines
    logged = {line["request_id"]: (line["status"], line.get("instances"))
              for line in lines if line["event"] == "inference"}
    assert logged == {"image-example": (200, 3), "image-bad": (400, None)}, lines
    assert not [line for line in lines if any(key.startswith("top1_") for key in line)], lines

    # /metrics: its requests counted under function="diabetes"; no classifier-only series
    families = {family.name: family for family in text_string_to_metric_families(metrics.text)}
    served: dict[tuple, float] = {}  # (function, status) -> requests, over events and tenants
    for sample in families["torchfaas_requests"].samples:
        if sample.name == "torchfaas_requests_total":
            key = (sample.labels["function"], sample.labels["status"])
            served[key] = served.get(key, 0) + sample.value
    assert served.get(("diabetes", "200")) == 1 and served.get(("diabetes", "400")) == 1, served
    assert {function for function, _ in served} == {"diabetes"}, served
    assert "torchfaas_top1_probability" not in metrics.text
    assert "torchfaas_diabetes_prediction" in families, sorted(families)  # what its handler declares
