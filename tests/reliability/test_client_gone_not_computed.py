"""On a real server: a request whose client hung up while it waited for its batch
is taken out of the queue and never computed (waitress's client_disconnected,
polled by the waiting request thread); its one log line says client_gone, 499,
and /metrics counts it. The stand-in's b"sleep:S" makes its batch take S s.
"""
import socket
import threading
import time
import uuid

import pytest
import requests

from faultkit import lines_for, wait_line
from support.metrics import parse_samples

ENV = {"BATCH_SIZE": "1", "BATCH_DELAY_MS": "0"}


@pytest.fixture(scope="module")
def fn(function_process):
    return function_process("standin", env=ENV)


def hang_up_after(port: int, rid: str, body: bytes, after_s: float):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                  f"X-Request-Id: {rid}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    time.sleep(after_s)
    sock.close()


def gone_count(fn, skipped: str) -> float:
    samples = parse_samples(requests.get(fn.url + "/metrics", timeout=5).content)
    return sum(s.value for s in samples if s.name == "torchfaas_client_gone_total"
               and s.labels.get("skipped") == skipped)


def test_queued_requests_of_clients_that_left_are_not_computed(fn):
    before = gone_count(fn, "true")
    busy = "busy-" + uuid.uuid4().hex[:6]
    holder = threading.Thread(target=lambda: fn.post(b"sleep:1.5", "application/octet-stream",
                                                     headers={"X-Request-Id": busy}, timeout=30))
    holder.start()
    time.sleep(0.2)  # the model is busy with `busy` for 1.5 s; the next ones queue
    gone = [f"gone-{i}-" + uuid.uuid4().hex[:6] for i in range(3)]
    leavers = [threading.Thread(target=hang_up_after, args=(fn.port, rid, b"sleep:1.0", 0.3)) for rid in gone]
    for t in leavers:
        t.start()
    for t in leavers:
        t.join(10)
    started = time.monotonic()
    holder.join(30)
    # had the three been computed, each would have slept 1 s after `busy`
    assert fn.post(b"after", "application/octet-stream").status_code == 200
    assert time.monotonic() - started < 2.0
    for rid in gone:
        found = wait_line(fn, rid)
        time.sleep(0.1)
        found = lines_for(fn, rid)
        assert len(found) == 1, found
        line = found[0]
        assert line["client_gone"] is True and line["status"] == 499 and line["error"] == "client_gone", line
        assert "batch_size" not in line and "inference_ms" not in line  # never reached the model
    assert len(lines_for(fn, busy)) == 1
    assert gone_count(fn, "true") - before == 3
