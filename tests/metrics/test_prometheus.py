"""A real Prometheus scrapes two real classifier processes (model versions v1 and
v2); PromQL over what it stored must match the traffic the test sent.

v1 is started and ready before traffic. v2 is scraped from its first second and
receives requests while its model is still loading, so it answers some 503s
(the cold-start faults a rollout really causes): a non-zero 5xx ratio with real
traffic. Counts are what the client saw come back, and the processes' log lines
must agree with them too.
"""
import itertools
import json
import math
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from loadkit.photos import PHOTOS, photo_bytes
from support.function_process import FunctionProcess
from support.prometheus import dashboard_queries

PHOTO_NAMES = sorted(PHOTOS)
ANNOTATIONS = {"prometheus.io.scrape": "true", "prometheus.io.path": "/metrics"}
TENANTS = "acme,globex"


def p95_nearest_rank(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def bucket_of(value: float, bounds) -> tuple[float, float]:
    """(lower, upper] of the histogram bucket holding value."""
    lower = 0.0
    for upper in bounds:
        if value <= upper:
            return lower, upper
        lower = upper
    return lower, math.inf


class Traffic:
    """Sends requests to one function and counts what came back."""

    def __init__(self, fn: FunctionProcess):
        self.fn = fn
        self.statuses: Counter = Counter()
        self.tenants: Counter = Counter()  # (tenant label expected, status)
        self.lock = threading.Lock()

    def send(self, method: str = "POST", body: bytes = b"", path: str = "/", params=None,
             content_type: str = "image/png", tenant: str | None = None, count: bool = True) -> int:
        headers = {"Content-Type": content_type}
        if tenant is not None:
            headers["X-Tenant-Id"] = tenant
        res = requests.request(method, self.fn.url + path, data=body, params=params, headers=headers,
                               timeout=60)
        if count:
            label = "none" if not tenant else tenant.lower() if tenant.lower() in TENANTS.split(",") else "other"
            with self.lock:
                self.statuses[res.status_code] += 1
                self.tenants[label] += 1
        return res.status_code

    def photos(self, n: int, tenants: list, workers: int = 4):
        """n real photos, concurrently (so batches form), tenants cycled."""
        jobs = zip(itertools.islice(itertools.cycle(PHOTO_NAMES), n), itertools.cycle(tenants))
        with ThreadPoolExecutor(workers) as pool:
            codes = list(pool.map(lambda job: self.send(body=photo_bytes(job[0]), tenant=job[1]), jobs))
        assert set(codes) == {200}, codes

    def client_errors(self):
        """Every kind of 4xx a caller can provoke; returns how many were sent."""
        sent = [
            self.send(body=b""),                                              # 400 empty
            self.send(body=b"not an image", content_type="image/jpeg"),        # 400 undecodable
            self.send(body=photo_bytes("coffee.png"), params={"topk": "x"}),   # 400 bad topk
            self.send(body=b"hello", content_type="text/plain", tenant="acme"),  # 415
            self.send(method="PUT", body=b"x", tenant="initech"),               # 405
            self.send(method="GET", path="/no/such/path"),                      # 404
        ]
        assert all(400 <= c < 500 for c in sent), sent
        return len(sent)


@pytest.fixture(scope="module")
def scenario(function_process, metrics_artifacts, prometheus):
    from torchfaas.metrics import LATENCY_BUCKETS as buckets
    env = {"ARTIFACTS_DIR": str(metrics_artifacts), "TENANTS": TENANTS, "TORCH_THREADS": "1",
           "BATCH_DELAY_MS": "5"}
    v1 = function_process("classifier", env={**env, "MODEL_VERSION": "v1"}, wait_ready=False)
    v2 = function_process("classifier", env={**env, "MODEL_VERSION": "v2"}, start=False)
    started = time.monotonic()
    try:
        v1.wait_ready(120)
        prometheus.set_pods([
            {"name": "classifier-v1-abc", "port": v1.port,
             "annotations": {**ANNOTATIONS, "prometheus.io.port": str(v1.port)}},
            {"name": "classifier-v2-def", "port": v2.port,
             "annotations": {**ANNOTATIONS, "prometheus.io.port": str(v2.port)}},
            # not annotated for scraping: must not become a target
            {"name": "other-fn-xyz", "port": v1.port,
             "annotations": {"prometheus.io.scrape": "false", "prometheus.io.port": str(v1.port)}},
        ])
        t1, t2 = Traffic(v1), Traffic(v2)
        # as in production, Prometheus has seen v1 before its traffic: the
        # series it exposes at 0 make rate() count every request
        prometheus.wait_for('torchfaas_requests_total{model_version="v1",status="200"}', bool)
        v2.start(wait_ready=False)
        # v2 cold start: callers arrive before the model is loaded. The first photo is
        # sent as soon as the port takes connections, so it waits in the listen backlog
        # and is answered first thing: the load and warm-up after that take ~50 ms
        # (the artifacts are hashed during `import torch`), too short to first poll
        # /metrics and /ready and then post
        while True:
            try:
                t2.send(body=photo_bytes("rocket.jpg"), content_type="image/jpeg")
            except requests.ConnectionError:
                v2.is_ready()  # raises if the process died
                time.sleep(0.01)  # not listening yet
                continue
            if v2.is_ready(probe_timeout=5):  # a slow answer (the model load holds the CPU) is a no
                break
            time.sleep(0.01)
        cold_503 = t2.statuses[503]
        # Prometheus has seen v2 before its photos: on a busy machine the first scrape
        # of a new target can come late, and a counter first seen at its final value
        # never increases in rate() (the 5xx ratio rule would answer NaN for v2)
        prometheus.wait_for('torchfaas_requests_total{model_version="v2",status="503"}', bool)
        t1.photos(30, ["acme", "Globex", None, "Evil \"Corp\" <script>"])
        t1.client_errors()
        t2.photos(18, [None, "acme"])
        t2.client_errors()
        # metadata reads are answered and counted, but are not inference traffic
        for t in (t1, t2):
            assert t.send(method="GET", count=False) == 200
        expected = {"v1": dict(t1.statuses), "v2": dict(t2.statuses)}
        total = sum(t1.statuses.values()) + sum(t2.statuses.values())
        prometheus.wait_for('sum(torchfaas_requests_total{event="inference"})',
                            lambda r: r and float(r[0]["value"][1]) == total)
        prometheus.wait_for('sum(torchfaas_requests_total{event="metadata"})',
                            lambda r: r and float(r[0]["value"][1]) == 2)
        yield {"v1": v1, "v2": v2, "expected": expected, "tenants": {"v1": t1.tenants, "v2": t2.tenants},
               "cold_503": cold_503, "buckets": buckets, "prom": prometheus,
               "seconds": time.monotonic() - started, "artifacts": metrics_artifacts}
    finally:
        for fn in (v1, v2):
            if fn.proc:
                fn.stop()


def inference_lines(fn: FunctionProcess) -> list[dict]:
    return [line for line in fn.lines() if line.get("event") == "inference"]


def test_targets_come_from_the_pod_annotations(scenario):
    prom = scenario["prom"]
    active = prom.api("targets")["activeTargets"]
    up = {t["labels"]["pod"]: t for t in active}
    assert set(up) == {"classifier-v1-abc", "classifier-v2-def"}
    for pod, target in up.items():
        fn = scenario["v1" if "v1" in pod else "v2"]
        assert target["scrapeUrl"] == f"http://127.0.0.1:{fn.port}/metrics"
        assert target["labels"]["namespace"] == "openfaas-fn"
        assert target["labels"]["faas_function"] == "classifier"
    assert prom.vector("up", "pod") == {"classifier-v1-abc": 1.0, "classifier-v2-def": 1.0}


def test_requests_by_version_and_status_match_what_was_sent(scenario):
    prom = scenario["prom"]
    # (> 0: success and 5xx series are exposed at 0 before their first request)
    got = prom.vector('sum by (model_version, status) (torchfaas_requests_total{event="inference"}) > 0',
                      ("model_version", "status"))
    sent = {(v, str(s)): float(n) for v, codes in scenario["expected"].items() for s, n in codes.items()}
    print("\nrequests by version and status (PromQL):", dict(sorted(got.items())))
    assert got == sent
    # ... and the function's own log lines say the same
    for version in ("v1", "v2"):
        logged = Counter(line["status"] for line in inference_lines(scenario[version]))
        assert dict(logged) == scenario["expected"][version]
    assert scenario["cold_503"] >= 1, "v2 answered no 503 while loading; the scenario lost its 5xx"


def test_every_series_names_function_and_model_version(scenario):
    prom = scenario["prom"]
    series = prom.api("series", **{"match[]": '{__name__=~"torchfaas_.+"}'})
    assert series
    names = set()
    for labels in series:
        names.add(labels["__name__"])
        assert labels["function"] == "classifier"
        assert labels["model_name"] == "efficientnet-lite0"
        assert labels["model_version"] in ("v1", "v2")
        assert not {"request_id", "top1_class", "class", "path"} & set(labels)
    assert {"torchfaas_requests_total", "torchfaas_request_latency_seconds_bucket",
            "torchfaas_queue_seconds_bucket", "torchfaas_batch_size_bucket", "torchfaas_inference_seconds_bucket",
            "torchfaas_top1_probability_bucket", "torchfaas_inflight_requests", "torchfaas_model_load_seconds",
            "torchfaas_cold_start_seconds", "torchfaas_model_info", "torchfaas_ready"} <= names
    info = prom.vector("torchfaas_model_info", ("model_version", "artifact_hash"))
    manifest = json.loads((scenario["artifacts"] / "manifest.json").read_text())
    from torchfaas.artifacts import manifest_version
    digest = manifest_version(manifest).removeprefix("sha256-")
    assert info == {("v1", digest): 1.0, ("v2", digest): 1.0}
    loads = prom.vector("torchfaas_model_load_seconds", "model_version")
    assert set(loads) == {"v1", "v2"} and all(0 < s < 120 for s in loads.values())


def test_p95_from_the_histogram_is_in_the_bucket_of_the_measured_p95(scenario):
    prom, bounds = scenario["prom"], scenario["buckets"]
    for version in ("v1", "v2"):
        measured_ms = [line["latency_ms"] for line in inference_lines(scenario[version])]
        true_p95 = p95_nearest_rank(measured_ms) / 1000
        promql = ('histogram_quantile(0.95, sum by (le) '
                  f'(torchfaas_request_latency_seconds_bucket{{event="inference",model_version="{version}"}}))')
        from_histogram = prom.scalar(promql)
        lower, upper = bucket_of(true_p95, bounds)
        print(f"\n{version}: p95 PromQL {from_histogram * 1000:.1f} ms, p95 of {len(measured_ms)} logged "
              f"latencies {true_p95 * 1000:.1f} ms, bucket ({lower * 1000:g}, {upper * 1000:g}] ms")
        assert lower < from_histogram <= upper
        # the histogram's sum is the exact total of the logged latencies
        selector = f'{{event="inference",model_version="{version}"}}'
        total = prom.scalar(f"sum(torchfaas_request_latency_seconds_sum{selector})")
        assert total == pytest.approx(sum(measured_ms) / 1000, abs=0.001 * len(measured_ms))


def test_error_ratios_match_what_was_sent(scenario):
    prom = scenario["prom"]
    server = prom.vector('sum by (model_version) (torchfaas_requests_total{event="inference",status=~"5.."})'
                         ' / sum by (model_version) (torchfaas_requests_total{event="inference"})', "model_version")
    client = prom.vector('sum by (model_version) (torchfaas_requests_total{event="inference",status=~"4.."})'
                         ' / sum by (model_version) (torchfaas_requests_total{event="inference"})', "model_version")
    print("\n5xx ratio (PromQL):", server, " 4xx ratio (PromQL):", client)
    for version, codes in scenario["expected"].items():
        total = sum(codes.values())
        faults = sum(n for s, n in codes.items() if s >= 500)
        mistakes = sum(n for s, n in codes.items() if 400 <= s < 500)
        assert client[version] == pytest.approx(mistakes / total, rel=1e-12)
        assert server[version] == pytest.approx(faults / total, rel=1e-12)  # 0 for v1: zero series
    # the recording rule gives 0, not "no data", for the version without faults
    ratios = prom.wait_for("model_version:torchfaas_requests_5xx:ratio_rate5m",
                           lambda r: {s["metric"]["model_version"] for s in r} == {"v1", "v2"}
                           and all(not math.isnan(float(s["value"][1])) for s in r))
    by_version = {s["metric"]["model_version"]: float(s["value"][1]) for s in ratios}
    print("model_version:torchfaas_requests_5xx:ratio_rate5m:", by_version)
    assert by_version["v1"] == 0
    # over a few seconds of samples, rate() extrapolates each series on its own
    # (and skips the first sample of series born during the traffic, the 4xx
    # ones here), so v2's windowed ratio is a number, not the exact ratio above
    assert 0 <= by_version["v2"] <= 1


def test_tenant_label_is_bounded_and_logged_sanitised(scenario):
    prom = scenario["prom"]
    # (> 0: allowed tenants are exposed at 0 before their first request)
    got = prom.vector('sum by (model_version, tenant) (torchfaas_requests_total{event="inference"}) > 0',
                      ("model_version", "tenant"))
    sent = {(v, t): float(n) for v, counts in scenario["tenants"].items() for t, n in counts.items()}
    print("\nrequests by version and tenant (PromQL):", dict(sorted(got.items())))
    assert got == sent
    assert {t for _, t in got} <= {"acme", "globex", "other", "none"}
    logged = {line.get("tenant") for line in inference_lines(scenario["v1"])}
    assert {"acme", "Globex", "EvilCorpscript", "initech", None} == logged


def test_queue_batch_and_confidence_histograms(scenario):
    prom = scenario["prom"]
    for version in ("v1", "v2"):
        lines = [line for line in inference_lines(scenario[version]) if line["status"] == 200]
        sel = f'{{model_version="{version}"}}'
        assert prom.scalar(f"sum(torchfaas_batch_size_count{sel})") == len(lines)
        assert prom.scalar(f"sum(torchfaas_batch_size_sum{sel})") == sum(line["batch_size"] for line in lines)
        assert prom.scalar(f"sum(torchfaas_queue_seconds_count{sel})") == len(lines)
        assert prom.scalar(f"sum(torchfaas_top1_probability_count{sel})") == len(lines)
        assert prom.scalar(f"sum(torchfaas_top1_probability_sum{sel})") == pytest.approx(
            sum(line["top1_prob"] for line in lines), abs=1e-3)
    assert prom.scalar("max(torchfaas_inflight_requests)") == 0


def test_rules_load_and_answer_per_version_traffic(scenario):
    prom = scenario["prom"]
    deadline = time.monotonic() + 15
    while True:
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        if all(r["health"] == "ok" for r in rules) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad and len(rules) == 25
    # retirement: the busiest hour of the last day per version (docs/metrics.md)
    retire = prom.wait_for("max_over_time(model_version:torchfaas_requests:rate1h[24h]) * 3600",
                           lambda r: {s["metric"]["model_version"] for s in r} == {"v1", "v2"})
    print("\nbusiest hour over 24h, requests (PromQL):",
          {s["metric"]["model_version"]: round(float(s["value"][1]), 1) for s in retire})
    assert all(float(s["value"][1]) > 0 for s in retire)
    # a version nobody called has no traffic at all
    assert prom.query('max_over_time(model_version:torchfaas_requests:rate1h{model_version="v0"}[24h])') == []


def test_dashboard_queries_run_and_return_data(scenario):
    prom = scenario["prom"]
    queries = dashboard_queries({"$__rate_interval": "1m", "$__range": "5m", "${__range}": "5m",
                                 "$__interval": "1s", "$function": "classifier", "$model_version": ".*",
                                 "$namespace": ".*", "$tenant": ".*", "${prediction}": "torchfaas_top1_probability"})
    for title, expr in queries:
        assert prom.query(expr), f"panel {title!r}: no data for {expr}"
    assert len(queries) >= 10


def whole_window() -> tuple[int, int]:
    """(start, end] of the last hour: this Prometheus started with the module, so it holds all it has."""
    end = math.ceil(time.time())
    return end - 3600, end


def test_aggregates_per_version_are_what_each_function_served(scenario):
    """The comparison's counts read from Prometheus (logslo.prometheus_aggregates) for the two
    versions equal what each process logged: requests by status, the latency histogram bucket
    by bucket, the top-1 probabilities; the per-step histograms add up to the window's."""
    from logslo.compare.binned import Binned
    from logslo.prometheus_aggregates import PrometheusAggregates

    prom = scenario["prom"]
    start, end = whole_window()
    fetcher = PrometheusAggregates(prom.url, timeout_s=10)
    counts = fetcher.fetch("classifier", ("v1", "v2"), start, end)
    for version in ("v1", "v2"):
        lines, got = inference_lines(scenario[version]), counts[version]
        assert got["requests"] == len(lines)
        assert got["status"] == {str(s): n for s, n in sorted(Counter(line["status"] for line in lines).items())}
        latencies = [line["latency_ms"] for line in lines]
        expected, lower = [], 0.0
        for upper, _ in got["latency_bins"]:
            expected.append(sum(lower < x <= upper for x in latencies))
            lower = upper
        # the log rounds latency to the microsecond: a request within half of one of a
        # bucket's edge may sit on the other side of it than in the histogram
        edges = [upper for upper, _ in got["latency_bins"]]
        near = sum(any(abs(x - e) <= 0.0005 for e in edges) for x in latencies)
        misses = sum(abs(n - e) for (_, n), e in zip(got["latency_bins"], expected))
        assert misses <= 2 * near, (version, got["latency_bins"], expected)
        probabilities = [line["top1_prob"] for line in lines if line["status"] == 200]
        lower = -math.inf
        for upper, n in got["values"]["top1_prob"]:
            assert n == sum(lower < p <= upper for p in probabilities), (version, upper)
            lower = upper
        Binned.from_counts({**got, "values": {}})  # the comparison's own check of the interface
        print(f"\n{version}: {got['requests']} requests, {len(got['latency_bins'])} latency bins, "
              f"status {got['status']}")


def test_a_stepped_read_tiles_the_window(scenario):
    """Per-10 s histograms from Prometheus that add up to the window's requests."""
    from logslo.prometheus_aggregates import PrometheusAggregates

    prom = scenario["prom"]
    start, end = whole_window()
    counts = PrometheusAggregates(prom.url, timeout_s=10).fetch("classifier", ("v1", "v2"), start, end)
    stepped = PrometheusAggregates(prom.url, timeout_s=10).fetch_steps("classifier", ("v1", "v2"), start, end, 10)
    for version in ("v1", "v2"):
        steps = stepped[version]["latency_steps"]
        assert sum(n for _, pairs in steps for _, n in pairs) == counts[version]["requests"]
        assert all(start <= at < end for at, _ in steps)


def test_the_aggregate_path_reads_each_version_as_bins(scenario):
    """The comparison's aggregate path: each version as bins, its figures read from them."""
    from logslo.prometheus_aggregates import PrometheusAggregates

    prom = scenario["prom"]
    start, end = whole_window()
    reader = PrometheusAggregates(prom.url, timeout_s=10)
    binned = reader.version_binned("classifier", ("v1", "v2"), start, end)
    for version in ("v1", "v2"):
        lines = inference_lines(scenario[version])
        assert binned[version].requests == len(lines) and binned[version].source == "aggregates"
        assert binned[version].faults == sum(line["status"] >= 500 for line in lines)
        answered = sum(line["status"] == 200 for line in lines)
        assert "top1_prob" in reader.unbounded or binned[version].values("top1_prob").n == answered


def test_a_watchs_looks_judge_every_request_once(scenario):
    """A watch's looks (NewCounts) each read the counts since the last one, on a 5 s grid:
    every request served is judged or warm-up, once."""
    from logslo.newcounts import NewCounts, add
    from logslo.prometheus_aggregates import PrometheusAggregates

    prom = scenario["prom"]
    start, end = whole_window()
    reader = NewCounts(PrometheusAggregates(prom.url, timeout_s=10), "classifier", ("v1", "v2"),
                       since=end - math.ceil(scenario["seconds"]) - 30, warmup_s=10, lag_s=0)
    kept, warming = {}, Counter()
    for until in range(int(reader.last) + 20, end + 20, 20):
        look = reader.read(until)
        for version in ("v1", "v2"):
            kept[version] = add(kept.get(version), look.counts[version])
            warming[version] += look.warming.get(version, 0)
    for version in ("v1", "v2"):
        assert kept[version]["requests"] + warming[version] == len(inference_lines(scenario[version]))
        assert warming[version] > 0


def test_each_look_costs_the_same_queries(scenario):
    """A fixed number of queries a look: a watch's cost grows linearly with its looks."""
    from logslo.prometheus_aggregates import PrometheusAggregates

    prom = scenario["prom"]
    start, end = whole_window()
    fetcher = PrometheusAggregates(prom.url, timeout_s=10)
    fetcher.fetch("classifier", ("v1", "v2"), start, end)
    one_look = fetcher.queries
    for _ in range(4):
        fetcher.fetch("classifier", ("v1", "v2"), start, end)
    assert fetcher.queries == 5 * one_look == 5 * 5  # restarts, status, latency, declared, top1_prob
    print(f"5 looks: {fetcher.queries} queries, {fetcher.bytes} bytes")


def test_a_comparison_reads_both_versions_from_prometheus(scenario):
    """PROMETHEUS_URL: `compare` reads each version as counts from the functions' own series
    (the aggregate path), its figures from the bins: what each process logged."""
    from logslo import settings
    from logslo.compare import paths
    from logslo.compare.judgements import latency_shift
    from logslo.compare.sampling import Comparison

    end = math.ceil(time.time())
    slo = settings.from_env({"PROMETHEUS_URL": scenario["prom"].url, "COMPARE_BASELINE": "v1",
                             "COMPARE_CANDIDATE": "v2", "SLO_AT": str(end)})
    reading = paths.choose(slo)
    assert reading.path == "aggregates" and "PROMETHEUS_URL" in reading.why
    comparison = Comparison(reading.backend, "classifier", end, 3600, "v1", "v2", path=reading.path, why=reading.why)
    assert comparison.path == "aggregates"
    for version in ("v1", "v2"):
        lines = inference_lines(scenario[version])
        figures = comparison.figures[version]
        assert figures["requests"] == len(lines)
        assert figures["ratio_5xx"] == sum(line["status"] >= 500 for line in lines) / len(lines)
    judged = latency_shift(comparison, 10, 0.99)
    assert judged.low <= judged.estimate <= judged.high and "bins resolve" in judged.note
    print(f"\nlatency shift v2 vs v1 from Prometheus: {judged.estimate:+.3f} [{judged.low:+.3f}, {judged.high:+.3f}] "
          f"{judged.verdict}; {judged.note}")
