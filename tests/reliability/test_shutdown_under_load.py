"""SIGTERM under load: every request the server accepted is answered and logged,
and the process exits 0.

Clients keep sending through the whole shutdown, on a new connection per request
and on keep-alive sessions, until the listener is closed. A request that got an
HTTP answer (200 while draining, 503 `draining` after the drain) must have
exactly one log line with that status; the only failure a client may see is
"connection refused" (the listener is gone: the request was never accepted).
A reset or a dropped connection after the request was sent would be a request lost.
"""
import signal
import threading
import time
import uuid

import pytest
import requests

ENV = {"SLOW_PREDICT_S": "0.1", "BATCH_SIZE": "4", "DRAIN_SECONDS": "1.5", "WORKER_THREADS": "16"}


def refused(exc: Exception) -> bool:
    """The connection was never made, so no request was sent: ECONNREFUSED, or a reset
    while connecting (a handshake that landed in the backlog as the listener closed).
    requests wraps both in ConnectionError(MaxRetryError(NewConnectionError))."""
    text = repr(exc)
    return "Connection refused" in text or "Errno 111" in text or "Failed to establish a new connection" in text


def sigterm_under_load(fn, keep_alive: bool) -> tuple[int, list]:
    """12 clients sending until the listener is closed, SIGTERM a second in -> (the exit
    code, (request id, status or exception) per request)."""
    outcomes = []
    lock = threading.Lock()
    done = threading.Event()

    def client(n: int):
        session = requests.Session() if keep_alive else requests
        while not done.is_set():
            rid = f"st-{n}-{uuid.uuid4().hex[:10]}"
            try:
                res = session.post(fn.url + "/", data=b"payload", timeout=30,
                                   headers={"X-Request-Id": rid, "Content-Type": "application/octet-stream"})
                result = res.status_code
            except requests.RequestException as exc:
                result = exc
            with lock:
                outcomes.append((rid, result))
            if isinstance(result, Exception) and refused(result):
                return  # the listener is closed: nothing more will be accepted

    clients = [threading.Thread(target=client, args=(n,)) for n in range(12)]
    for t in clients:
        t.start()
    time.sleep(1.0)
    fn.proc.send_signal(signal.SIGTERM)
    code = fn.wait_exit(60)
    done.set()
    for t in clients:
        t.join(30)
    return code, outcomes


@pytest.mark.parametrize("keep_alive", [False, True], ids=["new-connections", "keep-alive"])
def test_sigterm_under_load_loses_nothing_and_exits_zero(function_process, keep_alive):
    fn = function_process("standin", env=ENV)
    code, outcomes = sigterm_under_load(fn, keep_alive)

    assert code == 0
    answered = {rid: r for rid, r in outcomes if isinstance(r, int)}
    errors = [r for _, r in outcomes if isinstance(r, Exception)]
    lost = [e for e in errors if not refused(e)]
    assert not lost, lost[:3]
    assert {s for s in answered.values()} <= {200, 503}
    lines = fn.events("inference")
    by_id = {}
    for line in lines:
        by_id.setdefault(line["request_id"], []).append(line)
    for rid, status in answered.items():
        assert [found["status"] for found in by_id.get(rid, [])] == [status], rid
    # nothing logged that no client sent, and no request logged twice
    assert set(by_id) <= {rid for rid, _ in outcomes}
    assert all(len(v) == 1 for v in by_id.values())
    # served through the drain, then refused
    started = fn.events("shutdown_started")[0]["timestamp"]
    assert any(line["status"] == 200 and line["timestamp"] > started for line in lines)
    shutdown = fn.events("shutdown")
    assert len(shutdown) == 1 and shutdown[0]["unfinished"] == 0
    assert fn.lines()[-1]["event"] == "shutdown"
    print(f"{len(answered)} answered ({sum(s == 503 for s in answered.values())} x 503), "
          f"{len(errors)} refused after the listener closed")
