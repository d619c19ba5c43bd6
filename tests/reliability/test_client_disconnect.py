"""A client that hangs up mid-request still gets exactly one log line.

Three places a request can be when its client disconnects, each checked on a
real server process with the stand-in (b"sleep:S" makes its batch take S s):
- inside predict() (the model is busy with it);
- queued in the batcher behind another batch;
- queued in waitress, waiting for a free worker thread (all WORKER_THREADS busy).
The line carries `client_gone: true`. A request whose body never fully arrived
is not a request yet: waitress drops it before the app and there is no line.
"""
import socket
import threading
import time
import uuid

import pytest

from faultkit import lines_for, wait_line

ENV = {"WORKER_THREADS": "2", "BATCH_SIZE": "8", "BATCH_DELAY_MS": "50"}


@pytest.fixture(scope="module")
def fn(function_process):
    return function_process("standin", env=ENV)


def request_bytes(rid: str, body: bytes) -> bytes:
    return (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"X-Request-Id: {rid}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def send_and_hang_up(port: int, rid: str, body: bytes, after_s: float):
    """Send a whole request, then close the connection before the answer."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(request_bytes(rid, body))
    time.sleep(after_s)
    sock.close()


def background_post(fn, rid: str, body: bytes) -> threading.Thread:
    worker = threading.Thread(target=lambda: fn.post(body, "application/octet-stream",
                                                     headers={"X-Request-Id": rid}, timeout=30))
    worker.start()
    return worker


def assert_one_gone_line(fn, rid: str, timeout: float = 15):
    found = wait_line(fn, rid, timeout)
    time.sleep(0.3)  # a second line would come right after the first
    found = lines_for(fn, rid)
    assert len(found) == 1, found
    assert found[0]["client_gone"] is True, found[0]
    return found[0]


def test_disconnect_while_the_model_is_busy_with_it(fn):
    rid = "gone-in-predict-" + uuid.uuid4().hex[:6]
    send_and_hang_up(fn.port, rid, b"sleep:1.0", 0.3)
    line = assert_one_gone_line(fn, rid)
    assert line["status"] == 200  # the answer was computed, just not delivered


def test_disconnect_while_queued_behind_another_batch(fn):
    busy = "busy-" + uuid.uuid4().hex[:6]
    worker = background_post(fn, busy, b"sleep:1.0")
    time.sleep(0.2)  # the first batch (50 ms window) is in predict now
    rid = "gone-in-queue-" + uuid.uuid4().hex[:6]
    send_and_hang_up(fn.port, rid, b"queued", 0.3)
    worker.join(30)
    assert_one_gone_line(fn, rid)
    assert len(lines_for(fn, busy)) == 1


def test_disconnect_while_waiting_for_a_worker_thread(fn):
    busy = [f"busy-{i}-" + uuid.uuid4().hex[:6] for i in range(2)]
    workers = [background_post(fn, rid, b"sleep:1.0") for rid in busy]  # both threads taken
    time.sleep(0.2)
    rid = "gone-before-thread-" + uuid.uuid4().hex[:6]
    send_and_hang_up(fn.port, rid, b"waiting", 0.3)
    for worker in workers:
        worker.join(30)
    assert_one_gone_line(fn, rid)
    assert all(len(lines_for(fn, b)) == 1 for b in busy)


def test_many_clients_hanging_up_at_random_points(fn):
    """24 requests, each client hangs up after 0-1.2 s: one line each, none lost."""
    ids = [f"hangup-{i}-" + uuid.uuid4().hex[:6] for i in range(24)]
    threads = [threading.Thread(target=send_and_hang_up,
                                args=(fn.port, rid, b"sleep:0.3", (i % 7) * 0.2))
               for i, rid in enumerate(ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(lines_for(fn, rid) for rid in ids):
        time.sleep(0.05)
    time.sleep(0.3)
    counts = {rid: len(lines_for(fn, rid)) for rid in ids}
    assert set(counts.values()) == {1}, counts
    assert fn.post(b"after", "application/octet-stream").status_code == 200


def test_a_request_whose_body_never_arrived_has_no_line_and_harms_nothing(fn):
    rid = "half-upload-" + uuid.uuid4().hex[:6]
    sock = socket.create_connection(("127.0.0.1", fn.port))
    head = request_bytes(rid, b"x" * 1000)[:-990]  # headers + 10 of 1000 body bytes
    sock.sendall(head)
    time.sleep(0.3)
    sock.close()
    assert fn.post(b"next", "application/octet-stream").status_code == 200
    time.sleep(0.3)
    assert lines_for(fn, rid) == []
