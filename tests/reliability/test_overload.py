"""Overload at several times capacity: quick 429s with Retry-After, bounded latency
for the requests that are accepted, a queue that never grows past QUEUE_SIZE, and
one line per request.

The stand-in's predict takes SLOW_PREDICT_S per batch, so capacity is
known: BATCH_SIZE / SLOW_PREDICT_S = 4 / 0.05 s = 80 requests/s at best. 48 clients
send back to back (no think time) for LOAD_SECONDS.

Bounds are generous on purpose (this runs on a shared 2-core machine next to the
clients): an accepted request waits at most for the batch in predict plus
QUEUE_SIZE / BATCH_SIZE batches ahead of it, about (1 + 8/4 + 1) x 50 ms = 0.2 s
in the runtime; the bound is 2 s. A queue that grew without bound would make that
wait grow with the run (48 clients x 4 s); 429s would stop being quick.
"""
import concurrent.futures
import threading
import time
import uuid

import pytest
import requests

from faultkit import threads_of
from support.contract import assert_json_error
from support.metrics import gauge

ENV = {"SLOW_PREDICT_S": "0.05", "BATCH_SIZE": "4", "BATCH_DELAY_MS": "2", "QUEUE_SIZE": "8",
       "WORKER_THREADS": "16", "RETRY_AFTER_SECONDS": "2"}
CLIENTS = 48
LOAD_SECONDS = 4.0
ACCEPTED_RUNTIME_BOUND_MS = 2000   # latency_ms of a 200 in the log (theory: ~200 ms)
ACCEPTED_CLIENT_BOUND_S = 6.0      # client-side, including the wait for a worker thread
QUICK_429_P95_S = 1.0              # client-side; typically a few ms


@pytest.fixture(scope="module")
def fn(function_process):
    return function_process("standin", env=ENV)


def overload(fn) -> tuple[list, list, list, float]:
    """CLIENTS back to back for LOAD_SECONDS, the queue depth and the thread count sampled
    beside them -> (results: (request id, status, client seconds, Retry-After) per request,
    queue depths, thread counts, seconds)."""
    stop = time.monotonic() + LOAD_SECONDS
    results = []
    lock = threading.Lock()
    depths, thread_counts = [], []

    def client(n: int):
        session = requests.Session()
        while time.monotonic() < stop:
            rid = f"ov-{n}-{uuid.uuid4().hex[:10]}"
            started = time.perf_counter()
            res = session.post(fn.url + "/", data=b"x", timeout=30,
                               headers={"X-Request-Id": rid, "Content-Type": "application/octet-stream"})
            elapsed = time.perf_counter() - started
            if res.status_code == 429:
                assert_json_error(res, 429, "queue_full")
            with lock:
                results.append((rid, res.status_code, elapsed, res.headers.get("Retry-After")))

    def sampler():
        while time.monotonic() < stop:
            text = requests.get(fn.url + "/metrics", timeout=10).text
            depths.append(gauge(text, "torchfaas_queue_depth"))
            thread_counts.append(threads_of(fn.proc.pid))
            time.sleep(0.1)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS + 1) as pool:
        futures = [pool.submit(client, n) for n in range(CLIENTS)] + [pool.submit(sampler)]
        for f in futures:
            f.result()  # a connection error or timeout fails the test here
    return results, depths, thread_counts, time.monotonic() - started


def test_overload_gives_quick_429s_and_bounded_latency(fn):
    results, depths, thread_counts, duration = overload(fn)

    statuses = {status for _, status, _, _ in results}
    assert statuses <= {200, 429}, statuses
    accepted = [r for r in results if r[1] == 200]
    rejected = [r for r in results if r[1] == 429]
    offered_rps, accepted_rps = len(results) / duration, len(accepted) / duration
    print(f"offered {offered_rps:.0f} req/s, accepted {accepted_rps:.0f} req/s, "
          f"{len(rejected)} x 429, max queue depth {max(depths)}, max threads {max(thread_counts)}, "
          f"max accepted latency {max(r[2] for r in accepted):.2f} s client-side")
    assert accepted and len(rejected) > len(accepted)
    assert offered_rps > 3 * accepted_rps  # several times what it can serve
    assert all(r[3] == "2" for r in rejected)
    rejected_times = sorted(r[2] for r in rejected)
    assert rejected_times[int(len(rejected_times) * 0.95)] < QUICK_429_P95_S
    assert max(r[2] for r in accepted) < ACCEPTED_CLIENT_BOUND_S

    # the queue: never above QUEUE_SIZE, threads bounded by the pool
    assert depths and max(depths) <= 8
    assert max(thread_counts) <= 16 + 12  # workers + waitress/batcher/loader/torch helpers

    # one line per request; the runtime latency of every accepted request is bounded
    lines = {line["request_id"]: line for line in fn.wait_for_lines("inference", len(results), 20)}
    assert len(fn.events("inference")) == len(results)
    assert set(lines) == {r[0] for r in results}
    accepted_ms = [lines[r[0]]["latency_ms"] for r in accepted]
    assert max(accepted_ms) < ACCEPTED_RUNTIME_BOUND_MS, max(accepted_ms)
    assert max(lines[r[0]]["queue_ms"] for r in accepted) < ACCEPTED_RUNTIME_BOUND_MS
    assert all(lines[r[0]]["error"] == "queue_full" for r in rejected)

    # and it recovers at once
    time.sleep(0.5)
    started = time.perf_counter()
    assert fn.post(b"after", "application/octet-stream").status_code == 200
    assert time.perf_counter() - started < 2
    assert requests.get(fn.url + "/ready", timeout=5).status_code == 200
