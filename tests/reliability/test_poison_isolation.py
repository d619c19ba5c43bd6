"""One bad input must not sink its batch (poison isolation), and a request whose
client left before its batch ran is not computed.

In-process: the real app, runtime, batcher, log and metrics (`assemble`) around
a small model that raises for the whole batch when any item in it is poisoned,
driven with Flask's test client. Requests are forced into one batch by holding
the model on a first request until the others are queued.
"""
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from torchfaas import ModelHandler
from torchfaas.assembly import assemble
from torchfaas.settings import Settings


class Poisonable(ModelHandler):
    """predict() raises for the whole batch if any item starts with b"poison"; an
    item b"hold" waits for `gate` (so the next requests queue up behind it)."""

    model_name = "poisonable"
    model_version = "v1"

    def __init__(self):
        self.gate = threading.Event()
        self.batches: list[list[bytes]] = []

    def load(self, artifacts_dir, manifest, settings):
        pass

    def predict(self, items):
        self.batches.append(list(items))
        if b"hold" in items:
            self.gate.wait(10)
        if any(item.startswith(b"poison") for item in items):
            raise ValueError("this batch holds a poisoned input")
        return [len(item) for item in items]

    def postprocess(self, output, request):
        return {"length": output}


class Harness:
    def __init__(self, **settings):
        self.handler = Poisonable()
        self.stream = io.StringIO()
        settings = {"batch_size": 8, "queue_size": 16, "batch_delay_ms": 2.0, **settings}
        self.function = assemble(Settings(**settings), self.handler, self.stream)
        assert self.function.runtime.load()
        self.app = self.function.app

    def post(self, body: bytes, rid: str, environ: dict | None = None):
        client = self.app.test_client()
        return client.post("/", data=body, headers={"X-Request-Id": rid,
                                                    "Content-Type": "application/octet-stream"},
                           environ_base=environ or {})

    def lines(self, rid: str | None = None) -> list[dict]:
        lines = [json.loads(raw) for raw in self.stream.getvalue().splitlines()]
        return [line for line in lines if line.get("event") == "inference"
                and (rid is None or line.get("request_id") == rid)]

    def metric(self, name: str, **labels) -> float:
        text = self.app.test_client().get("/metrics").data.decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def wait_depth(self, depth: int, timeout: float = 5):
        deadline = time.monotonic() + timeout
        while self.function.runtime.queue_depth() < depth:
            assert time.monotonic() < deadline, f"queue never reached {depth}"
            time.sleep(0.005)

    def close(self):
        self.handler.gate.set()
        self.function.runtime.batcher.stop()


@pytest.fixture
def fn():
    harness = Harness()
    yield harness
    harness.close()


def hold_then(fn: Harness, bodies: list[bytes], prefix: str):
    """Hold the model, queue `bodies` (one request each), release: they form one batch."""
    with ThreadPoolExecutor(len(bodies) + 1) as pool:
        held = pool.submit(fn.post, b"hold", f"{prefix}-hold")
        while not fn.handler.batches:
            time.sleep(0.002)
        ids = [f"{prefix}-{i}" for i in range(len(bodies))]
        futures = [pool.submit(fn.post, body, rid) for body, rid in zip(bodies, ids)]
        fn.wait_depth(len(bodies))
        fn.handler.gate.set()
        responses = [f.result(10) for f in futures]
        assert held.result(10).status_code == 200
    return ids, responses


def test_only_the_poisoned_request_fails_and_its_batchmates_are_answered(fn):
    bodies = [b"ok-%d" % i for i in range(8)]
    bodies[5] = b"poison"
    ids, responses = hold_then(fn, bodies, "poison")
    assert sorted(len(b) for b in fn.handler.batches[1:2]) == [8]  # forced into one batch
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * 5 + [500] + [200] * 2, statuses
    bad = responses[5].get_json()
    assert bad["error"]["code"] == "internal_error" and "poisoned" not in json.dumps(bad)
    for body, res in zip(bodies, responses):
        if res.status_code == 200:
            assert res.get_json()["length"] == len(body)
    for rid, status in zip(ids, statuses):
        found = fn.lines(rid)
        assert len(found) == 1, found  # each logged once, none twice
        line = found[0]
        assert line["status"] == status and line["batch_retried"] is True, line
        if status == 500:
            assert "ValueError: this batch holds a poisoned input" in line["trace"]
        else:
            assert line["batch_size"] < 8
    # the poisoned item ran once per halving level: 8, 4, 2, 1
    assert sum(b"poison" in batch for batch in fn.handler.batches) == 4
    assert fn.metric("torchfaas_batch_failures_total") == 4
    assert fn.metric("torchfaas_batch_retries_total") == 6
    assert fn.metric("torchfaas_requests_total", status="500") == 1
    assert fn.metric("torchfaas_requests_total", status="200") == 8  # 7 + the held one


def test_a_request_alone_is_not_retried_and_says_nothing_about_it(fn):
    assert fn.post(b"poison-alone", "alone").status_code == 500
    assert fn.post(b"fine", "fine").status_code == 200
    for rid in ("alone", "fine"):
        (line,) = fn.lines(rid)
        assert "batch_retried" not in line
    assert fn.metric("torchfaas_batch_retries_total") == 0


def test_a_client_that_left_before_its_batch_ran_is_not_computed(fn):
    """Its request is taken out of the queue (the slot frees at once), never reaches
    predict(), gets one line with client_gone: true (499: nobody to answer) and
    is counted; a batchmate whose client stayed is answered as usual."""
    gone = threading.Event()
    disconnected = {"waitress.client_disconnected": gone.is_set}
    with ThreadPoolExecutor(3) as pool:
        held = pool.submit(fn.post, b"hold", "left-hold")
        while not fn.handler.batches:
            time.sleep(0.002)
        leaving = pool.submit(fn.post, b"never-computed", "left-gone", disconnected)
        staying = pool.submit(fn.post, b"stays", "left-stays")
        fn.wait_depth(2)
        gone.set()  # the client hangs up while its request waits for a batch
        deadline = time.monotonic() + 5
        while fn.function.runtime.queue_depth() != 1:
            assert time.monotonic() < deadline, "the gone request stayed in the queue"
            time.sleep(0.005)
        fn.handler.gate.set()
        assert leaving.result(10).status_code == 499
        assert staying.result(10).status_code == 200
        assert held.result(10).status_code == 200
    assert all(b"never-computed" not in batch for batch in fn.handler.batches)
    (line,) = fn.lines("left-gone")
    assert line["client_gone"] is True and line["error"] == "client_gone" and line["level"] == "WARNING"
    assert "client_gone" not in fn.lines("left-stays")[0]
    assert fn.metric("torchfaas_client_gone_total", skipped="true") == 1
    assert fn.function.runtime.batcher.stats.withdrawn == 1


def test_a_client_that_left_while_its_batch_ran_is_still_answered_and_logged_once(fn):
    """Too late to skip: the answer is computed and the line says the client is gone."""
    gone = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        res = pool.submit(fn.post, b"hold", "late-gone", {"waitress.client_disconnected": gone.is_set})
        while not fn.handler.batches:
            time.sleep(0.002)
        gone.set()
        time.sleep(0.15)  # a few polls see the client gone; the batch is running
        fn.handler.gate.set()
        assert res.result(10).status_code == 200
    (line,) = fn.lines("late-gone")
    assert line["client_gone"] is True and line["status"] == 200
    assert fn.metric("torchfaas_client_gone_total", skipped="false") == 1


def test_a_client_gone_before_preprocessing_costs_nothing(fn):
    res = fn.post(b"anything", "gone-early", {"waitress.client_disconnected": lambda: True})
    assert res.status_code == 499
    assert fn.handler.batches == []
    (line,) = fn.lines("gone-early")
    assert line["client_gone"] is True


def test_on_a_real_server_only_the_poisoned_request_fails_and_each_is_logged_once(function_process):
    """The same through waitress and a real process: the stand-in's b"boom" makes
    predict() raise for its whole batch, b"sleep:S" holds the model so the next
    eight requests queue and share one batch."""
    import uuid

    import requests

    from faultkit import lines_for, wait_line
    from support.metrics import parse_samples

    fn = function_process("standin", env={"BATCH_SIZE": "8", "BATCH_DELAY_MS": "50"})
    tag = uuid.uuid4().hex[:6]
    bodies = [b"ok-%d" % i for i in range(8)]
    bodies[2] = b"boom"
    ids = [f"real-poison-{tag}-{i}" for i in range(8)]
    with ThreadPoolExecutor(9) as pool:
        held = pool.submit(fn.post, b"sleep:0.8", "application/octet-stream")
        time.sleep(0.2)  # the model holds the first request; the eight below queue behind it
        futures = [pool.submit(fn.post, body, "application/octet-stream", headers={"X-Request-Id": rid})
                   for body, rid in zip(bodies, ids)]
        statuses = [f.result(30).status_code for f in futures]
        assert held.result(30).status_code == 200
    assert statuses == [200, 200, 500, 200, 200, 200, 200, 200], statuses
    for rid in ids:
        wait_line(fn, rid)
    time.sleep(0.2)
    for rid, status in zip(ids, statuses):
        found = lines_for(fn, rid)
        assert len(found) == 1 and found[0]["status"] == status and found[0]["batch_retried"] is True, found
    samples = parse_samples(requests.get(fn.url + "/metrics", timeout=5).content)
    value = {s.name: s.value for s in samples}
    # 4 and 6 when all eight share one batch (exact counts: the in-process test above)
    assert value["torchfaas_batch_failures_total"] >= 3 and value["torchfaas_batch_retries_total"] >= 4
