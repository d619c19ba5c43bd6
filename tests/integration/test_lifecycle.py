"""What a real process shows of the lifecycle: it listens (and says 503) while the
model loads, SIGTERM drains and exits 0, and stdout stays JSON whatever libraries print.

(Readiness and drain states, the 503 bodies and start-up failures' log lines
are tested in-process: tests/inprocess/test_lifecycle.py.)
"""
import signal
import threading
import time

import pytest
import requests


def test_ready_only_after_model_is_loaded(function_process):
    fn = function_process("standin", env={"SLOW_LOAD_S": "1.5"}, wait_ready=False)
    try:
        seen, while_loading = [], None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and 200 not in seen:
            try:
                seen.append(requests.get(fn.url + "/ready", timeout=2).status_code)
                if seen == [503]:  # listening while the model loads: requests are answered
                    while_loading = fn.post(b"x")
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        assert seen[0] == 503 and seen[-1] == 200
        assert while_loading.status_code == 503 and while_loading.json()["error"]["code"] == "not_ready"
        # (the runtime turns ready just before it writes the line: wait for the reader)
        loaded_at = fn.wait_for_lines("model_loaded", 1)[0]
        assert loaded_at["load_ms"] >= 1500
    finally:
        fn.stop()


def test_sigterm_during_a_request_completes_it_and_exits_zero(function_process):
    fn = function_process("standin", env={"SLOW_PREDICT_S": "1", "DRAIN_SECONDS": "0.5"})
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


def test_ctrl_c_when_idle_stops_at_once_and_says_so(function_process):
    """SIGINT (Ctrl-C on `make run`) skips the drain, which is for the watchdog's routing."""
    fn = function_process("standin", env={"DRAIN_SECONDS": "5"})
    assert fn.post(b"before").status_code == 200
    sent = time.monotonic()
    fn.proc.send_signal(signal.SIGINT)
    assert fn.wait_exit(10) == 0
    assert time.monotonic() - sent < 2  # not the 5 s drain
    time.sleep(0.2)  # the stderr reader
    said = [line for line in fn.stderr_lines if "Ctrl-C" in line]
    assert len(said) == 1 and "nothing in flight, stopping now" in said[0], fn.stderr_lines[-5:]
    assert [line["request_id"] for line in fn.events("inference")] == [fn.events("inference")[0]["request_id"]]
    assert fn.events("shutdown_started")[0]["signal"] == "SIGINT"
    assert fn.lines()[-1]["event"] == "shutdown" and fn.lines()[-1]["unfinished"] == 0


def test_ctrl_c_with_a_request_in_flight_answers_it_first(function_process):
    fn = function_process("standin", env={"SLOW_PREDICT_S": "1", "DRAIN_SECONDS": "5"})
    result = {}
    worker = threading.Thread(target=lambda: result.update(res=fn.post(b"in flight")))
    worker.start()
    time.sleep(0.3)  # the request is inside predict()
    sent = time.monotonic()
    fn.proc.send_signal(signal.SIGINT)
    worker.join(10)
    assert fn.wait_exit(10) == 0
    assert time.monotonic() - sent < 3  # the request's second, not the 5 s drain
    assert result["res"].status_code == 200
    time.sleep(0.2)
    said = [line for line in fn.stderr_lines if "Ctrl-C" in line]
    assert len(said) == 1 and "finishing 1 request(s) in flight" in said[0], said
    assert len(fn.events("inference")) == 1 and fn.lines()[-1]["event"] == "shutdown"


def test_libraries_that_print_cannot_corrupt_stdout(function_process):
    with function_process("standin", env={"NOISY_LOAD": "1"}) as fn:
        assert fn.post(b"x").status_code == 200
        fn.wait_for_lines("inference", 1)
    lines = fn.lines()  # every stdout line parses as JSON
    assert [line["event"] for line in lines][:2] == ["startup", "model_loaded"]
    assert "Loaded pretrained weights for something" in fn.stderr_lines
    assert "a C library writing to fd 1" in fn.stderr_lines
