"""A replica whose process restarts in its pod (an OOM kill, a failed liveness probe) keeps
its labels, so Prometheus sees its counters fall back to 0 in the middle of the window:
the comparison's counts (logslo.prometheus_aggregates) must still be what was served, not
`increase()`'s extrapolation of it. A real Prometheus scrapes a real classifier that is
stopped and started again on the same address."""
import math
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle, islice

import requests

from loadkit.photos import PHOTOS, photo_bytes

VERSION = "v9"
ANNOTATIONS = {"prometheus.io.scrape": "true", "prometheus.io.path": "/metrics"}


def send(fn, photos: int, bad: int) -> None:
    """`photos` real photos (4 at a time) and `bad` undecodable bodies (400)."""
    def post(name):
        return requests.post(fn.url + "/", data=photo_bytes(name), timeout=60,
                             headers={"Content-Type": "image/jpeg"}).status_code
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(post, islice(cycle(sorted(PHOTOS)), photos)))
    codes += [requests.post(fn.url + "/", data=b"not an image", timeout=60,
                            headers={"Content-Type": "image/jpeg"}).status_code for _ in range(bad)]
    assert codes == [200] * photos + [400] * bad, codes


def test_a_process_restarted_in_the_window_is_counted_exactly(function_process, metrics_artifacts, prometheus):
    from logslo.prometheus_aggregates import PrometheusAggregates

    fn = function_process("classifier", env={"ARTIFACTS_DIR": str(metrics_artifacts), "MODEL_VERSION": VERSION,
                                             "TORCH_THREADS": "1"})
    start = math.floor(time.time()) - 1
    prometheus.set_pods([{"name": "classifier-v9-abc", "port": fn.port,
                          "annotations": {**ANNOTATIONS, "prometheus.io.port": str(fn.port)}}])
    series = f'torchfaas_requests_total{{model_version="{VERSION}",status="200",event="inference"}}'
    prometheus.wait_for(series, bool)  # seen at 0 before its first request
    send(fn, 20, 2)
    prometheus.wait_for(series, lambda r: r and float(r[0]["value"][1]) == 20)
    fn.stop()
    fn.start()  # the same address, counters from 0
    send(fn, 12, 1)  # fewer than before: every counter is seen to fall
    prometheus.wait_for(series, lambda r: r and float(r[0]["value"][1]) == 12)
    end = math.ceil(time.time()) + 1
    end += (5 - (end - start) % 5) % 5  # a whole number of 5 s steps
    time.sleep(max(0.0, end - time.time()))

    fetcher = PrometheusAggregates(prometheus.url, timeout_s=10)
    assert fetcher.restarted("classifier", end - start, end) == {f"127.0.0.1:{fn.port}"}
    counts = fetcher.fetch("classifier", (VERSION,), start, end)[VERSION]
    assert counts["requests"] == 35 and counts["status"] == {"200": 32, "400": 3}, counts
    assert sum(n for _, n in counts["values"]["top1_prob"]) == 32
    stepped = fetcher.fetch_steps("classifier", (VERSION,), start, end, 5)[VERSION]
    assert stepped["latency_bins"] == counts["latency_bins"]
    assert sum(n for _, pairs in stepped["latency_steps"] for _, n in pairs) == 35
    assert all(start <= at < end for at, _ in stepped["latency_steps"])
    # what increase() would have said: an estimate, scaled by the window over the samples' span
    estimate = prometheus.api("query", time=str(end), query=f'sum(increase(torchfaas_requests_total'
                              f'{{model_version="{VERSION}",event="inference"}}[{end - start}s]))')["result"]
    print(f"\nrestarted replica: 35 requests served, counted {counts['requests']}; "
          f"increase() estimates {float(estimate[0]['value'][1]):.2f}" if estimate else "")
