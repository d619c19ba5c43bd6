"""GET /metrics in-process: label sets, bounded tenants, no request-shaped labels,
and what the app's traffic puts into the series."""
import random
import string
import threading

from support.functions.standin.handler import StandIn
from support.inprocess import InProcessFunction
from support.metrics import by_name, parse_samples
from torchfaas.identity import CurrentModel, ModelIdentity
from torchfaas.metrics import LATENCY_BUCKETS, MAX_TENANTS, Metrics, TenantLabels
from torchfaas.record import RequestRecord

OBJECTIVE_S = 0.25  # the function's latency objective where a test does not vary it


def samples(metrics: Metrics) -> list:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return parse_samples(body)


def answered(status: int, latency_s: float, tenant=None, objective_s: float = OBJECTIVE_S,
             **handler_fields) -> RequestRecord:
    """The record of a request answered `status` in `latency_s`; batch timings for 200s."""
    record = RequestRecord("r", 0.0, status=status, latency_s=latency_s, tenant=tenant,
                           handler_fields=handler_fields, slow=latency_s > objective_s)
    if status == 200:
        record.batch_size, record.queue_ms, record.inference_ms = 3, 1.5, 20.0
    return record


def loaded(tenants: str = "acme,globex") -> Metrics:
    """Metrics of a model named as the classifier's would be, loaded into a fresh
    identity, with a real loaded runtime behind the scrape-time gauges."""
    fn = InProcessFunction(StandIn(), function_name="classifier", tenants=tenants)
    assert fn.load()
    fn.close()  # only its state (in-flight, readiness, load times) is read
    model = CurrentModel(ModelIdentity("classifier"))
    metrics = Metrics(model, TenantLabels(tenants, "X-Tenant-Id"), fn.runtime, StandIn.prediction_metrics,
                      latency_objective_s=OBJECTIVE_S)
    model.loaded("efficientnet-lite0", "v3", "0123456789ab")
    return metrics


def test_tenant_mapping():
    t = TenantLabels("Acme, globex ,,none,other,bad tenant!", "X-Tenant-Id")
    assert t.allowed == ("acme", "globex", "badtenant")
    assert [t.label(x) for x in (None, "", "acme", "ACME", "globex", "initech", "none")] == \
        ["none", "none", "acme", "acme", "globex", "other", "other"]
    assert t.from_headers({}) is None
    assert t.from_headers({"X-Tenant-Id": "  "}) is None
    assert t.from_headers({"X-Tenant-Id": 'Ev"il <x>\tcorp' + "z" * 100}) == ("Evilxcorp" + "z" * 100)[:64]
    assert TenantLabels(",".join(f"t{i}" for i in range(500)), "X-Tenant-Id").allowed[-1] == f"t{MAX_TENANTS - 1}"
    assert TenantLabels("", header="X-Team").from_headers({"X-Team": "a"}) == "a"


def test_every_sample_carries_the_model_labels_and_nothing_unbounded():
    m = loaded()
    rng = random.Random(1)
    for i in range(300):
        tenant = "".join(rng.choices(string.ascii_letters, k=8)) if i % 3 else "acme"
        record = answered(rng.choice([200, 400, 413, 429, 500, 503]), rng.random() / 2, tenant,
                          top1_prob=0.9, top1_class="tabby")
        record.request_id = f"r{i}"
        m.observe_request(record)
    all_samples = samples(m)
    tenants = {s.labels["tenant"] for s in all_samples if "tenant" in s.labels}
    assert tenants == {"acme", "globex", "none", "other"}
    for s in all_samples:
        assert (s.labels["function"], s.labels["model_name"], s.labels["model_version"]) == \
            ("classifier", "efficientnet-lite0", "v3"), s
        assert not {"request_id", "top1_class"} & set(s.labels)
    names = {s.name for s in all_samples}
    assert not [n for n in names if n.endswith("_created")]
    info = [s for s in all_samples if s.name == "torchfaas_model_info"]
    assert info[0].labels["artifact_hash"] == "0123456789ab" and info[0].value == 1
    assert {"torchfaas_model_load_seconds", "torchfaas_model_warmup_seconds", "torchfaas_cold_start_seconds",
            "torchfaas_inflight_requests"} <= names


def test_success_series_exist_at_zero_once_loaded():
    got = {(s.labels["tenant"], s.labels["status"], s.value) for s in samples(loaded())
           if s.name == "torchfaas_requests_total"}
    assert got == {(t, status, 0) for t in ("acme", "globex", "none", "other")
                   for status in ("200", "500", "503", "504")}
    # before load, with no pinned version, nothing is invented for "unknown"
    unloaded = Metrics(CurrentModel(ModelIdentity("classifier")), TenantLabels("", "X-Tenant-Id"),
                       latency_objective_s=OBJECTIVE_S)
    assert not [s for s in samples(unloaded) if s.name == "torchfaas_requests_total"]


def test_latency_buckets_resolve_the_slo():
    assert 0.25 in LATENCY_BUCKETS  # p99 <= 250 ms is read off a bucket boundary
    assert sum(0.05 <= b <= 0.3 for b in LATENCY_BUCKETS) >= 8


def test_latency_buckets_resolve_a_ten_percent_shift():
    """From 1 ms to 1 s every bucket is at most 9.1% above the one below: a candidate 10%
    slower moves its requests a bucket up (the comparison contracts' latency bound)."""
    dense = [b for b in LATENCY_BUCKETS if 0.001 <= b <= 1.0]
    ratios = [high / low for low, high in zip(dense, dense[1:])]
    assert len(dense) >= 70 and max(ratios) < 1.091 and min(ratios) > 1.089
    assert len(LATENCY_BUCKETS) <= 100  # series per label set stay bounded


def test_inflight_and_confidence_only_for_successes():
    m = loaded()
    # the runtime counts requests in the app (probes excluded); the gauge reads it
    m.runtime.enter()
    m.observe_request(answered(400, 0.001, top1_prob=0.5))
    m.observe_request(answered(200, 0.05, top1_prob=0.75))
    by_name = {}
    for s in samples(m):
        by_name.setdefault(s.name, []).append(s)
    assert by_name["torchfaas_inflight_requests"][0].value == 1
    assert by_name["torchfaas_top1_probability_count"][0].value == 1
    assert by_name["torchfaas_top1_probability_sum"][0].value == 0.75


# -- through the app ----------------------------------------------------------
def counts(fn: InProcessFunction) -> dict:
    """{(status, event, tenant): value} of torchfaas_requests_total, zero series left out."""
    return {(s.labels["status"], s.labels["event"], s.labels["tenant"]): s.value
            for s in fn.samples() if s.name == "torchfaas_requests_total" and s.value}


def test_requests_are_counted_by_status_event_and_tenant(make_function):
    fn = make_function(tenants="acme", queue_size=1, batch_size=1)
    fn.post(b"ok", headers={"X-Tenant-Id": "ACME"})
    fn.post(b"ok", headers={"X-Tenant-Id": "initech"})
    fn.post(b"bad")
    fn.post(b"preboom")
    fn.request("PUT", "/")
    fn.get("/")
    for _ in range(3):  # probes and scrapes are not counted
        fn.get("/ready"), fn.get("/metrics")
    assert counts(fn) == {("200", "inference", "acme"): 1, ("200", "inference", "other"): 1,
                          ("400", "inference", "none"): 1, ("500", "inference", "none"): 1,
                          ("405", "inference", "none"): 1, ("200", "metadata", "none"): 1}
    named = by_name(fn.samples())
    latency = {}
    for s in named["torchfaas_request_latency_seconds_count"]:
        latency[s.labels["event"]] = latency.get(s.labels["event"], 0) + s.value
    assert latency == {"inference": 5, "metadata": 1}
    # per-request histograms: only what reached the model
    assert named["torchfaas_batch_size_count"][0].value == 2
    assert named["torchfaas_queue_seconds_count"][0].value == 2
    assert named["torchfaas_inference_seconds_count"][0].value == 2
    assert named["torchfaas_top1_probability_count"][0].value == 2
    assert named["torchfaas_top1_probability_sum"][0].value == 2.0


def test_state_gauges_follow_the_runtime(make_function):
    gate, predicting = threading.Event(), threading.Event()
    handler = StandIn(predict_gate=gate)
    fn = make_function(handler, load=False, batch_size=1)
    named = by_name(fn.samples())
    assert named["torchfaas_ready"][0].value == 0
    assert "torchfaas_model_load_seconds" not in named  # nothing loaded yet
    assert fn.load()
    named = by_name(fn.samples())
    assert named["torchfaas_ready"][0].value == 1
    assert named["torchfaas_model_info"][0].labels["model_version"] == "v-test"
    for name in ("torchfaas_model_load_seconds", "torchfaas_model_warmup_seconds", "torchfaas_cold_start_seconds"):
        assert named[name][0].value >= 0
    # one request in the model, two queued behind it
    workers = [threading.Thread(target=fn.post, args=(b"x",)) for _ in range(3)]
    workers[0].start()
    while not handler.batches:
        predicting.wait(0.005)
    for w in workers[1:]:
        w.start()
    while fn.runtime.queue_depth() < 2:
        predicting.wait(0.005)
    named = by_name(fn.samples())
    assert named["torchfaas_inflight_requests"][0].value == 3
    assert named["torchfaas_queue_depth"][0].value == 2
    gate.set()
    for w in workers:
        w.join(10)
    named = by_name(fn.samples())
    assert named["torchfaas_inflight_requests"][0].value == 0 and named["torchfaas_queue_depth"][0].value == 0
    fn.runtime.begin_drain()
    assert by_name(fn.samples())["torchfaas_ready"][0].value == 0


def test_every_series_names_the_loaded_model(standin):
    standin.post(b"x")
    for s in standin.samples():
        assert (s.labels["function"], s.labels["model_name"], s.labels["model_version"]) == \
            ("standin", "standin", "v-test"), s


def test_zero_series_exist_as_soon_as_the_model_loads():
    """Not at the first scrape: a request answered before it would otherwise be the
    series' first sample (rate() would miss it)."""
    from prometheus_client import generate_latest

    model = CurrentModel(ModelIdentity("classifier"))
    metrics = Metrics(model, TenantLabels("", "X-Tenant-Id"), latency_objective_s=OBJECTIVE_S)
    assert b'status="200"' not in generate_latest(metrics.registry)  # nothing for "unknown"
    model.loaded("efficientnet-lite0", "v3")
    metrics.observe_request(answered(200, 0.01))  # answered before Prometheus scraped once
    body = generate_latest(metrics.registry).decode()
    assert 'status="500",tenant="none"} 0.0' in body and 'status="200",tenant="none"} 1.0' in body


def test_prediction_metrics_are_what_the_handler_declares():
    """No prediction series of its own: a regression's value histogram and a bounded
    label counter, fed from the declared log fields of 200 answers only."""
    from torchfaas import LabelCounter, ValueHistogram

    model = CurrentModel(ModelIdentity("diabetes"))
    metrics = Metrics(model, TenantLabels("", "X-Tenant-Id"), predictions=(
        ValueHistogram("prediction_mean", "diabetes_prediction", "Mean prediction.", buckets=(100, 200, 300)),
        LabelCounter("risk", "risk_class", "Answers by risk class.", values=("low", "high"), label="risk")),
        latency_objective_s=OBJECTIVE_S)
    model.loaded("diabetes-linear", "v1")
    metrics.observe_request(answered(200, 0.01, prediction_mean=150.0, risk="low"))
    metrics.observe_request(answered(200, 0.01, prediction_mean=250.0, risk="LOW; drop table"))
    metrics.observe_request(answered(400, 0.01, prediction_mean=999.0, risk="high"))
    named = by_name(samples(metrics))
    assert not [n for n in named if "top1" in n]
    assert named["torchfaas_diabetes_prediction_count"][0].value == 2
    assert named["torchfaas_diabetes_prediction_sum"][0].value == 400.0
    risk = {s.labels["risk"]: s.value for s in named["torchfaas_risk_class_total"]}
    assert risk == {"low": 1, "high": 0, "other": 1}
    info = {(s.labels["metric"], s.labels["kind"], s.labels["field"])
            for s in named["torchfaas_prediction_metric_info"]}
    # what the dashboard's `prediction` variable lists (kind="histogram")
    assert info == {("torchfaas_diabetes_prediction", "histogram", "prediction_mean"),
                    ("torchfaas_risk_class_total", "counter", "risk")}


def test_slow_requests_are_counted_and_the_objective_exposed():
    """The alert rules read torchfaas_slow_requests_total (the records the app marked
    slow against LATENCY_OBJECTIVE_MS; tests/metrics checks that end to end); the
    objective is a histogram boundary and a gauge."""
    counts = {}
    for objective_s in (0.02, 0.25):
        model = CurrentModel(ModelIdentity("diabetes"))
        metrics = Metrics(model, TenantLabels("", "X-Tenant-Id"), latency_objective_s=objective_s)
        model.loaded("diabetes-linear", "v1")
        for latency_s in (0.005, 0.02, 0.03, 0.3):  # at the objective is not slower than it
            metrics.observe_request(answered(200, latency_s, objective_s=objective_s))
        named = by_name(samples(metrics))
        counts[objective_s] = named["torchfaas_slow_requests_total"][0].value
        assert named["torchfaas_latency_objective_seconds"][0].value == objective_s
        bounds = {float(s.labels["le"]) for s in named["torchfaas_request_latency_seconds_bucket"]}
        assert objective_s in bounds and set(LATENCY_BUCKETS) <= bounds
    assert counts == {0.02: 2, 0.25: 1}
