"""Readiness and drain states, and start-up failures, in-process.

(SIGTERM, the drain's timing, the listener closing and exit codes need a real
process: tests/integration/test_lifecycle.py, tests/reliability.)
"""
import pickle
import threading

import pytest

from support.classifier import classifier_module
from support.contract import assert_json_error
from support.damaged_artifacts import KINDS, RunsACommand, assert_failure_message, damaged_copy
from support.functions.standin.handler import StandIn
from support.inprocess import InProcessFunction
from torchfaas.artifacts import verify_in_background


def test_ready_only_after_the_model_is_loaded_and_warmed_up(make_function):
    gate = threading.Event()
    fn = make_function(StandIn(load_gate=gate, load_s=0.2), load=False)
    assert fn.get("/ready").status_code == 503  # before the load starts
    loader = fn.load_in_background()
    seen = [fn.get("/ready").status_code]
    gate.set()
    while loader.is_alive():
        seen.append(fn.get("/ready").status_code)
    loader.join()
    seen.append(fn.get("/ready").status_code)
    assert seen[0] == 503 and seen[-1] == 200 and set(seen) == {503, 200}
    assert fn.get("/ready").json == {"status": "ready"}
    assert fn.events("model_loaded")[0]["load_ms"] >= 200


def test_draining_still_serves_but_is_not_ready(standin):
    standin.runtime.begin_drain()
    ready = standin.get("/ready")
    assert ready.status_code == 503 and ready.json == {"status": "draining"}
    # Kubernetes and the gateway still route here for a while: serve
    res = standin.post(b"late but routed", headers={"X-Request-Id": "during-drain"})
    assert res.status_code == 200 and res.json["length"] == 15
    assert standin.get("/").json["ready"] is False
    assert standin.lines_for("during-drain")[0]["status"] == 200


def test_after_stop_accepting_requests_are_503_draining(standin):
    standin.runtime.begin_drain()
    standin.runtime.stop_accepting()
    res = standin.post(b"too late", headers={"X-Request-Id": "after-drain"})
    body = assert_json_error(res, 503, "draining")
    assert "shutting down" in body["error"]["message"]
    [line] = standin.lines_for("after-drain")
    assert line["status"] == 503 and line["level"] == "ERROR" and line["error"] == "draining"
    assert standin.get("/ready").json == {"status": "stopping"}


def test_a_drain_before_the_load_finished_never_turns_ready(make_function):
    gate = threading.Event()
    fn = make_function(StandIn(load_gate=gate), load=False)
    loader = fn.load_in_background()
    fn.runtime.begin_drain()
    gate.set()
    loader.join(10)
    assert fn.events("model_loaded")
    assert fn.get("/ready").json == {"status": "draining"}


def test_inflight_requests_are_counted_for_the_drain(make_function):
    gate = threading.Event()
    fn = make_function(StandIn(predict_gate=gate))
    worker = threading.Thread(target=lambda: fn.post(b"in flight"))
    worker.start()
    try:
        while not fn.handler.batches:
            gate.wait(0.005)
        assert fn.runtime.inflight == 1
        fn.get("/ready"), fn.get("/metrics")  # probes and scrapes are not requests in flight
        assert fn.runtime.inflight == 1
    finally:
        gate.set()
        worker.join(10)
    assert fn.runtime.inflight == 0


# -- damaged artifacts: never served ------------------------------------------
@pytest.mark.parametrize("early_check", [False, True], ids=["checked-at-load", "checked-in-background"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_artifact_fails_the_load_with_one_line(tmp_path, kind, early_check):
    module = classifier_module()
    marker = tmp_path / "pwned"
    artifacts = damaged_copy(tmp_path / "artifacts", kind, marker)
    # server.main() starts the check before the handler's imports (verify_in_background)
    check = verify_in_background(artifacts) if early_check else None
    fn = InProcessFunction(module.Classifier(module.ClassifierSettings(model_backend="eager")),
                           artifact_check=check, function_name="classifier", artifacts_dir=str(artifacts))
    assert fn.load() is False
    assert fn.get("/ready").status_code == 503
    assert_json_error(fn.post(b"x", "image/jpeg"), 503, "not_ready")
    lines = fn.lines()
    failed = [line for line in lines if line["event"] == "startup_failed"]
    assert len(failed) == 1 and failed[0]["level"] == "ERROR", lines
    assert failed[0]["error"] and failed[0]["error_message"]
    assert not [line for line in lines if line["event"] == "model_loaded"]
    assert not marker.exists(), "the pickled command ran"
    assert_failure_message(kind, failed[0]["error_message"])


def test_the_malicious_pickle_would_run_if_unpickled(tmp_path):
    """Control: the payload is real, so the test above proves something."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps({"w": RunsACommand(str(marker))}))
    assert marker.exists()
