"""The diabetes function as the container runs it: a real server process, real rows of
scikit-learn's diabetes data set, its log lines and metrics, its 4xx answers, and the
build-time quality gate and artifact check (functions/diabetes)."""
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import requests

from loadkit.localrun import FUNCTIONS
from support.metrics import by_name, parse_samples

TESTDATA = FUNCTIONS / "diabetes" / "testdata"
FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
ROWS = [json.loads(line) for line in (TESTDATA / "rows.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def diabetes(function_process):
    return function_process("diabetes", env={"MAX_INSTANCES": "50"})


def post_json(fn, payload, **kwargs) -> requests.Response:
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return fn.post(body.encode() if isinstance(body, str) else body, content_type="application/json", **kwargs)


def test_real_rows_are_predicted_far_better_than_their_mean(diabetes):
    res = post_json(diabetes, {"instances": [r["instance"] for r in ROWS]}, headers={"X-Request-Id": "rows-1"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert set(body) == {"predictions", "model_name", "model_version", "request_id"}
    assert body["model_name"] == "diabetes-linear" and body["request_id"] == "rows-1"
    predictions = body["predictions"]
    assert len(predictions) == len(ROWS) and all(isinstance(p, float) and 0 < p < 400 for p in predictions)
    targets = [r["target"] for r in ROWS]
    mean = sum(targets) / len(targets)
    r2 = 1 - sum((t - p) ** 2 for t, p in zip(targets, predictions)) / sum((t - mean) ** 2 for t in targets)
    # measured 0.355 on these 41 rows (0.576 on the build's held-out 88); 0 is the mean's
    assert r2 > 0.25, f"R² {r2:.3f} on {len(ROWS)} real rows"
    # the same rows one at a time (batched with each other by the runtime) answer the same
    single = [post_json(diabetes, {"instances": [r["instance"]]}).json()["predictions"][0] for r in ROWS[:5]]
    assert single == pytest.approx(predictions[:5], abs=1e-3)


def test_example_request_answers_and_its_log_line_says_how_many(diabetes):
    res = post_json(diabetes, (TESTDATA / "example.json").read_bytes(), headers={"X-Request-Id": "example-1"})
    assert res.status_code == 200, res.text
    predictions = res.json()["predictions"]
    assert len(predictions) == 3
    line = next(x for x in diabetes.wait_for_lines("inference", 1) if x["request_id"] == "example-1")
    assert line["status"] == 200 and line["level"] == "INFO" and line["function"] == "diabetes"
    assert line["instances"] == 3
    assert line["prediction_mean"] == pytest.approx(sum(predictions) / 3, abs=1e-2)
    assert not [k for k in line if k.startswith("top1")]
    assert {"timestamp", "latency_ms", "model_version", "batch_size"} <= set(line)


def row(**changes) -> dict:
    return {**ROWS[0]["instance"], **changes}


BAD = [
    ("not json", 400, "invalid_json"),
    ({"rows": [row()]}, 400, "invalid_json"),
    ([row()], 400, "invalid_json"),
    ({"instances": []}, 400, "no_instances"),
    ({"instances": row()}, 400, "no_instances"),
    ({"instances": [row()] * 51}, 413, "too_many_instances"),
    ({"instances": [[0.1] * 10]}, 400, "invalid_instance"),
    ({"instances": [row(), {k: v for k, v in row().items() if k != "bmi"}]}, 400, "missing_features"),
    ({"instances": [row(glucose=0.1)]}, 400, "unknown_features"),
    ({"instances": [row(bmi="0.06")]}, 400, "invalid_feature_value"),
    ({"instances": [row(bmi=None)]}, 400, "invalid_feature_value"),
    ({"instances": [row(bmi=True)]}, 400, "invalid_feature_value"),
    ('{"instances": [' + json.dumps(row()).replace('"bmi": 0.061696', '"bmi": NaN') + ']}', 400,
     "invalid_feature_value"),
    ('{"instances": [' + json.dumps(row()).replace('"bmi": 0.061696', '"bmi": Infinity') + ']}', 400,
     "invalid_feature_value"),
    ({"instances": [row(bmi=10 ** 400)]}, 400, "invalid_feature_value"),
]


@pytest.mark.parametrize("payload,status,code", BAD, ids=[c for _, _, c in BAD])
def test_bad_input_is_a_json_4xx_with_its_code(diabetes, payload, status, code):
    res = post_json(diabetes, payload)
    assert res.status_code == status, res.text
    assert res.json()["error"]["code"] == code and res.json()["error"]["message"]


def test_other_media_types_are_refused(diabetes):
    res = diabetes.post(b"age=1", content_type="application/x-www-form-urlencoded")
    assert res.status_code == 415 and res.json()["error"]["code"] == "unsupported_media_type"


def test_metrics_know_only_the_declared_regression_series(diabetes):
    text = requests.get(diabetes.url + "/metrics", timeout=10).text
    named = by_name(parse_samples(text.encode()))
    assert not [n for n in named if "top1" in n]
    served = sum(s.value for s in named["torchfaas_requests_total"] if s.labels["status"] == "200"
                 and s.labels["event"] == "inference")
    assert served > 0 and named["torchfaas_diabetes_prediction_count"][0].value == served
    assert named["torchfaas_diabetes_prediction_count"][0].labels["function"] == "diabetes"


# -- build time -----------------------------------------------------------------
def prepare(build_dir, artifacts, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torchfaas.prepare"], cwd=build_dir, capture_output=True,
                          text=True, env={**os.environ, "ARTIFACTS_DIR": str(artifacts), **env}, timeout=300)


def test_the_build_fails_below_the_quality_gate_and_records_held_out_r2(build, tmp_path):
    folder = build("diabetes")
    failed = prepare(folder, tmp_path / "strict", MIN_HELDOUT_R2="0.9")
    assert failed.returncode != 0 and "below the gate 0.9" in failed.stderr
    assert not (tmp_path / "strict" / "manifest.json").exists()
    done = prepare(folder, tmp_path / "default")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "default" / "manifest.json").read_text())
    assert manifest["min_heldout_r2"] == 0.45 and 0.45 <= manifest["heldout_r2"] < 1
    assert manifest["heldout_rows"] == 88 and manifest["seed"] == 0 and set(manifest["files"]) == {"weights.pt"}
    assert manifest["features"] == list(FEATURES) and math.isfinite(manifest["train_r2"])


def test_a_swapped_artifact_stops_the_start(function_process, build, tmp_path):
    from loadkit.localrun import REPO

    artifacts = shutil.copytree(REPO / "artifacts" / "diabetes", tmp_path / "artifacts")
    weights = artifacts / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-20] ^= 0xFF
    weights.write_bytes(bytes(data))
    fn = function_process("diabetes", env={"ARTIFACTS_DIR": str(artifacts)}, wait_ready=False)
    assert fn.wait_exit(60) != 0
    failed = fn.events("startup_failed")
    assert failed and "weights.pt" in failed[0]["error_message"]
