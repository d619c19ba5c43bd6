"""Cold start, readiness, SIGTERM draining and start-up failure, on real processes."""
import json
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
from support.function_process import CLASSIFIER_ARTIFACTS, FunctionProcess, shrinkwrap

HANDLERS = Path(__file__).parent / "handlers"


@pytest.fixture(scope="module")
def slow_build(tmp_path_factory):
    return shrinkwrap(HANDLERS / "slow", tmp_path_factory.mktemp("slow") / "build")


def test_ready_only_after_model_is_loaded(slow_build):
    fn = FunctionProcess(slow_build, env={"SLOW_LOAD_S": "1.5"}).start(wait_ready=False)
    try:
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and 200 not in seen:
            try:
                seen.append(requests.get(fn.url + "/ready", timeout=2).status_code)
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        assert seen[0] == 503 and seen[-1] == 200
        loaded_at = fn.events("model_loaded")[0]
        assert loaded_at["load_ms"] >= 1500
    finally:
        fn.stop()


def test_sigterm_during_a_request_completes_it_and_exits_zero(slow_build):
    fn = FunctionProcess(slow_build, env={"SLOW_PREDICT_S": "1", "DRAIN_SECONDS": "0.5"}).start()
    result = {}

    def slow_request():
        result["res"] = fn.post(b"in flight", headers={"X-Request-Id": "inflight-1"})

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.3)  # the request is inside predict()
    fn.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    assert requests.get(fn.url + "/ready", timeout=2).status_code == 503  # not ready, still up
    during_drain = fn.post(b"late but routed", headers={"X-Request-Id": "during-drain"})
    worker.join(10)
    assert fn.wait_exit(15) == 0
    assert result["res"].status_code == 200 and result["res"].json()["length"] == 9
    assert during_drain.status_code == 200
    ids = [line["request_id"] for line in fn.events("inference")]
    assert sorted(ids) == ["during-drain", "inflight-1"]
    shutdown = fn.events("shutdown")
    assert len(shutdown) == 1 and shutdown[0]["unfinished"] == 0
    assert fn.lines()[-1]["event"] == "shutdown"
    with pytest.raises(requests.ConnectionError):
        requests.get(fn.url + "/ready", timeout=2)


def classifier_with(artifacts: Path, classifier_build) -> FunctionProcess:
    return FunctionProcess(classifier_build, env={"ARTIFACTS_DIR": str(artifacts)}).start(wait_ready=False)


@pytest.mark.parametrize("damage", ["missing", "tampered"])
def test_bad_artifact_fails_start_up(tmp_path, classifier_build, damage):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(CLASSIFIER_ARTIFACTS, artifacts)
    if damage == "missing":
        (artifacts / "weights.pt").unlink()
    else:
        labels = json.loads((artifacts / "labels.json").read_text())
        labels[0] = "something else"
        (artifacts / "labels.json").write_text(json.dumps(labels))
    fn = classifier_with(artifacts, classifier_build)
    assert fn.wait_exit(60) == 1
    failed = fn.events("startup_failed")
    assert len(failed) == 1 and failed[0]["level"] == "ERROR"
    assert ("missing artifact" if damage == "missing" else "sha256") in failed[0]["error_message"]
    assert not fn.events("model_loaded")


def test_libraries_that_print_cannot_corrupt_stdout(slow_build):
    with FunctionProcess(slow_build, env={"NOISY_LOAD": "1"}) as fn:
        assert fn.post(b"x").status_code == 200
        fn.wait_for_lines("inference", 1)
    lines = fn.lines()  # every stdout line parses as JSON
    assert [line["event"] for line in lines][:2] == ["startup", "model_loaded"]
    assert "Loaded pretrained weights for something" in fn.stderr_lines
    assert "a C library writing to fd 1" in fn.stderr_lines
